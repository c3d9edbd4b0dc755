/**
 * AdminService: operators create customers (with an opening credit grant and a
 * first API key), grant credits, mint node enrollment tokens and manage nodes.
 */
import type { MessageInitShape } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import type { HandlerContext, ServiceImpl } from "@connectrpc/connect";
import { sendCancel, sendDrain } from "../agent-streams/assignments.ts";
import type { SessionRegistry } from "../agent-streams/session-registry.ts";
import { requeueUnitsOfNode } from "../jobs/lifecycle.ts";
import { requireAdmin } from "../auth/authenticate.ts";
import { grantCredits } from "../billing/ledger.ts";
import { hashPassword } from "../auth/passwords.ts";
import { allScopes } from "../auth/scopes.ts";
import type { AdminService, NodeSchema } from "../gen/gpuagent/admin/v1/admin_pb.ts";
import type { Clock } from "../platform/clock.ts";
import { hashSecret, isUuid, newId, newSecret } from "../platform/ids.ts";
import type { Database } from "../store/database.ts";
import { isUniqueViolation } from "../store/database.ts";
import { creditBalance, findCustomer, insertApiKey, insertCustomer, insertGrant, listCustomers } from "../store/customers.ts";
import type { NodeRow, NodeState, TrustLevel } from "../store/nodes.ts";
import { insertEnrollmentToken, listNodes, readNodeAttemptCounts, runningUnitsByNode, setNodeState, setNodeTrustLevel } from "../store/nodes.ts";
import { nodeReliability, reliabilityWindowMs } from "../scheduling/node-history.ts";
import { pageRequest, toPage } from "../store/pagination.ts";
import { ApiError, validationError } from "../platform/errors.ts";

const trustLevels: readonly TrustLevel[] = ["community", "verified", "controlled"];
const emailPattern = /^[^\s@]{1,64}@[^\s@]{1,255}\.[^\s@]{2,}$/;

/** The API key prefix: `sk_<env>_` (seed 001 shows `sk_alpha_`). */
export function apiKeyPrefix(env: string): string {
  return `sk_${env}_`;
}

/** Mints a customer API key; returns the plaintext (shown once) and stores its hash. */
export async function mintApiKey(
  sql: Parameters<typeof insertApiKey>[0],
  customerId: string,
  name: string,
  scopes: readonly string[],
  env = "live",
): Promise<string> {
  const key = newSecret(apiKeyPrefix(env));
  await insertApiKey(sql, { id: newId(), customerId, name, prefix: key.slice(0, apiKeyPrefix(env).length + 4), keyHash: hashSecret(key), scopes });
  return key;
}

/** What the AdminService needs (a subset of ControlPlaneDeps). */
export interface AdminServiceDeps {
  readonly db: Database;
  readonly clock: Clock;
  /** Asks the leader's placement loop to run soon (a node's state changed). */
  readonly wakePlacer: () => void;
}

/** Builds the AdminService implementation. */
export function createAdminService(deps: AdminServiceDeps, sessions: SessionRegistry, adminToken: string): Partial<ServiceImpl<typeof AdminService>> {
  const { db, clock } = deps;
  const now = () => new Date(clock.now());
  const admin = (ctx: HandlerContext) => requireAdmin(ctx.requestHeader, adminToken);

  function trustLevelOf(value: string): TrustLevel {
    if (!(trustLevels as readonly string[]).includes(value)) throw validationError(`trust_level must be one of ${trustLevels.join(", ")}`, { field: "trust_level" });
    return value as TrustLevel;
  }

  type AttemptCounts = Map<string, { completed: number; lost: number }>;
  const attemptCounts = (nodeIds?: readonly string[]): Promise<AttemptCounts> =>
    readNodeAttemptCounts(db, new Date(clock.now() - reliabilityWindowMs), nodeIds);

  async function nodeMessage(row: NodeRow, running?: Map<string, number>, attempts?: AttemptCounts): Promise<MessageInitShape<typeof NodeSchema>> {
    const counts = running ?? (await runningUnitsByNode(db));
    const history = (attempts ?? (await attemptCounts([row.id]))).get(row.id) ?? { completed: 0, lost: 0 };
    const c = row.capabilities;
    return {
      id: row.id,
      hostname: row.hostname,
      trustLevel: row.trust_level,
      state: row.state,
      cpuCores: c.cpuCores ?? 0,
      memoryMb: c.memoryMb ?? 0,
      diskFreeMb: c.diskFreeMb ?? 0,
      gpus: (c.gpus ?? []).map((g) => ({ index: g.index ?? 0, name: g.name ?? "", vramMb: g.vramMb ?? 0, declared: g.declared ?? false })),
      lastHeartbeatAt: row.last_heartbeat_at === null ? undefined : timestampFromDate(row.last_heartbeat_at),
      enrolledAt: timestampFromDate(row.enrolled_at),
      runningUnits: counts.get(row.id) ?? 0,
      unitsCompleted30d: history.completed,
      unitsLost30d: history.lost,
      reliability: nodeReliability(history.completed, history.lost),
    };
  }

  async function changeState(ctx: HandlerContext, id: string, state: NodeState) {
    admin(ctx);
    if (!isUuid(id)) throw new ApiError("RESOURCE_NOT_FOUND", `node ${id} not found`);
    const row = await setNodeState(db, id, state, now());
    if (row === undefined) throw new ApiError("RESOURCE_NOT_FOUND", `node ${id} not found`);
    if (state === "revoked") {
      // A revoked node runs nothing more: its units go elsewhere, and it is told to stop them before its stream closes.
      const taken = await requeueUnitsOfNode(db, id, "the node was revoked by an operator", { now: new Date(clock.now()) });
      for (const t of taken) sendCancel(sessions, id, t.unitId, t.attempt, "node revoked");
      sessions.get(id)?.outbound.close();
    }
    // The agent stops taking units itself too (and hears it again on its next Hello).
    if (state === "draining") sendDrain(sessions, id, "the node is being drained by an operator");
    deps.wakePlacer();
    return { node: await nodeMessage(row) };
  }

  return {
    async createCustomer(req, ctx) {
      admin(ctx);
      const email = req.email.trim();
      if (!emailPattern.test(email) || email.includes("\u0000")) throw validationError("email must be a valid e-mail address", { field: "email" });
      if (req.password.length < 8 || req.password.length > 256) throw validationError("password must be 8 to 256 characters", { field: "password" });
      const credits = Number(req.credits);
      if (!Number.isSafeInteger(credits) || credits < 0) throw validationError("credits must be a non-negative integer", { field: "credits" });
      const passwordHash = await hashPassword(req.password);
      try {
        return await db.transaction(async (tx) => {
          const customer = await insertCustomer(tx, { id: newId(), email, passwordHash });
          if (credits > 0) await insertGrant(tx, { id: newId(), customerId: customer.id, amount: credits, description: "opening grant" });
          const apiKey = await mintApiKey(tx, customer.id, "default", allScopes);
          return {
            customerId: customer.id,
            apiKey,
            customer: { id: customer.id, email: customer.email, creditsBalance: BigInt(credits), createdAt: timestampFromDate(customer.created_at) },
          };
        });
      } catch (error) {
        if (isUniqueViolation(error)) throw new ApiError("STATE_CONFLICT", `a customer with e-mail ${email} already exists`);
        throw error;
      }
    },

    async listCustomers(req, ctx) {
      admin(ctx);
      const page = pageRequest(req.limit, req.cursor);
      const rows = await listCustomers(db, page.limit + 1, page.after);
      const cut = toPage(rows, page, (r) => ({ at: r.created_at, id: r.id }));
      return {
        data: await Promise.all(
          cut.rows.map(async (c) => ({ id: c.id, email: c.email, creditsBalance: BigInt(await creditBalance(db, c.id)), createdAt: timestampFromDate(c.created_at) })),
        ),
        page: cut.page,
      };
    },

    async grantCredits(req, ctx) {
      admin(ctx);
      const amount = Number(req.amount);
      if (!Number.isSafeInteger(amount) || amount <= 0) throw validationError("amount must be a positive integer", { field: "amount" });
      if (req.reason.includes("\u0000") || req.reason.length > 500) throw validationError("reason must be at most 500 characters of text", { field: "reason" });
      if (!isUuid(req.customerId) || (await findCustomer(db, req.customerId)) === undefined) {
        throw new ApiError("RESOURCE_NOT_FOUND", `customer ${req.customerId} not found`);
      }
      const { entry, balance } = await grantCredits(db, req.customerId, amount, req.reason.trim() || "credit grant");
      return { ledgerEntryId: entry.id, creditsBalance: BigInt(balance) };
    },

    async createEnrollmentToken(req, ctx) {
      admin(ctx);
      const trustLevel = trustLevelOf(req.trustLevel);
      const ttl = req.ttlSeconds === 0 ? 3600 : req.ttlSeconds;
      if (ttl < 60 || ttl > 30 * 24 * 3600) throw validationError("ttl_seconds must be between 60 and 2592000", { field: "ttl_seconds" });
      const token = newSecret("et_");
      const expiresAt = new Date(clock.now() + ttl * 1000);
      await insertEnrollmentToken(db, { id: newId(), tokenHash: hashSecret(token), trustLevel, expiresAt });
      return { token, expiresAt: timestampFromDate(expiresAt), trustLevel };
    },

    async listNodes(req, ctx) {
      admin(ctx);
      const page = pageRequest(req.limit, req.cursor);
      const rows = await listNodes(db, page.limit + 1, page.after);
      const cut = toPage(rows, page, (r) => ({ at: r.enrolled_at, id: r.id }));
      const running = await runningUnitsByNode(db);
      const attempts = await attemptCounts(cut.rows.map((r) => r.id));
      return { data: await Promise.all(cut.rows.map((r) => nodeMessage(r, running, attempts))), page: cut.page };
    },

    cordonNode: (req, ctx) => changeState(ctx, req.id, "cordoned"),
    uncordonNode: (req, ctx) => changeState(ctx, req.id, "online"),
    drainNode: (req, ctx) => changeState(ctx, req.id, "draining"),
    revokeNode: (req, ctx) => changeState(ctx, req.id, "revoked"),

    async setNodeTrustLevel(req, ctx) {
      admin(ctx);
      const level = trustLevelOf(req.trustLevel);
      const row = isUuid(req.id) ? await setNodeTrustLevel(db, req.id, level) : undefined;
      if (row === undefined) throw new ApiError("RESOURCE_NOT_FOUND", `node ${req.id} not found`);
      return { node: await nodeMessage(row) };
    },
  };
}
