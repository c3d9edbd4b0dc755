/**
 * What an operator does to nodes, whichever protocol asked: mints enrollment tokens, and cordons,
 * uncordons, drains or revokes a node. A state change is written first, then the node's stream (if
 * this replica holds it) is told, and the leader's placement loop is woken, since what may run
 * where has changed.
 */
import type { Clock } from "../platform/clock.ts";
import { ApiError, validationError } from "../platform/errors.ts";
import { hashSecret, isUuid, newId, newSecret } from "../platform/ids.ts";
import { requeueUnitsOfNode } from "../jobs/lifecycle.ts";
import type { Database } from "../store/database.ts";
import type { NodeRow, NodeState, TrustLevel } from "../store/nodes.ts";
import { insertEnrollmentToken, setNodeState } from "../store/nodes.ts";
import { sendCancel, sendDrain } from "./assignments.ts";
import type { SessionRegistry } from "./session-registry.ts";

/** An enrollment token's life when the operator names none, and its bounds. */
const defaultEnrollmentTtlSeconds = 3600;
const minEnrollmentTtlSeconds = 60;
const maxEnrollmentTtlSeconds = 30 * 24 * 3600;

/** What node administration needs (a subset of ControlPlaneDeps). */
export interface NodeAdminDeps {
  readonly db: Database;
  readonly clock: Clock;
  /** Asks the leader's placement loop to run soon (a node's state changed). */
  readonly wakePlacer: () => void;
}

/**
 * Mints a single-use token a node enrolls with at `trustLevel`; `ttlSeconds` 0 means an hour.
 * Returns the plaintext (shown once; only its hash is stored) and when it expires.
 */
export async function mintEnrollmentToken(
  deps: Pick<NodeAdminDeps, "db" | "clock">,
  trustLevel: TrustLevel,
  ttlSeconds: number,
): Promise<{ token: string; expiresAt: Date }> {
  const ttl = ttlSeconds === 0 ? defaultEnrollmentTtlSeconds : ttlSeconds;
  if (ttl < minEnrollmentTtlSeconds || ttl > maxEnrollmentTtlSeconds) {
    throw validationError(`ttl_seconds must be between ${minEnrollmentTtlSeconds} and ${maxEnrollmentTtlSeconds}`, { field: "ttl_seconds" });
  }
  const token = newSecret("et_");
  const now = new Date(deps.clock.now());
  const expiresAt = new Date(now.getTime() + ttl * 1000);
  await insertEnrollmentToken(deps.db, { id: newId(), tokenHash: hashSecret(token), trustLevel, expiresAt }, now);
  return { token, expiresAt };
}

/**
 * Sets a node's state as an operator asked. A revoked node runs nothing more: its units go back to
 * the queue, it is told to stop them, and its stream closes. A draining node is told to take no new
 * units (it hears it again on its next Hello). Unknown and malformed ids are RESOURCE_NOT_FOUND.
 */
export async function changeNodeState(deps: NodeAdminDeps, sessions: SessionRegistry, id: string, state: NodeState): Promise<NodeRow> {
  if (!isUuid(id)) throw new ApiError("RESOURCE_NOT_FOUND", `node ${id} not found`);
  const row = await setNodeState(deps.db, id, state, new Date(deps.clock.now()));
  if (row === undefined) throw new ApiError("RESOURCE_NOT_FOUND", `node ${id} not found`);
  if (state === "revoked") {
    const taken = await requeueUnitsOfNode(deps.db, id, "the node was revoked by an operator", { now: new Date(deps.clock.now()) });
    for (const t of taken) sendCancel(sessions, id, t.unitId, t.attempt, "node revoked");
    sessions.get(id)?.outbound.close();
  }
  if (state === "draining") sendDrain(sessions, id, "the node is being drained by an operator");
  deps.wakePlacer();
  return row;
}
