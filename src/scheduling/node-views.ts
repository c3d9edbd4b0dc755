/**
 * The operator's view of nodes: each node's row with what the scheduler knows
 * of it — units running there now, attempts completed and lost over the
 * reliability window, the reliability the placer scores it by, and why the
 * placer sends it nothing now. Here, beside the placer's own reading of the
 * same history (node-history.ts) and rows (node-snapshots.ts), so the admin
 * view and the placer never disagree on a node.
 */
import type { Clock } from "../platform/clock.ts";
import type { Database } from "../store/database.ts";
import type { NodeRow, NodeState, TrustLevel } from "../store/nodes.ts";
import { listNodes, readNodeAttemptCounts, runningUnitsByNode, setNodeTrustLevel } from "../store/nodes.ts";
import type { PageRequest } from "../store/pagination.ts";
import { toPage } from "../store/pagination.ts";
import { isUuid } from "../platform/ids.ts";
import { ApiError } from "../platform/errors.ts";
import { nodeReliability, reliabilityWindowMs } from "./node-history.ts";

export interface NodeViewDeps {
  readonly db: Database;
  readonly clock: Clock;
}

/** A node as the operator sees it. */
export interface NodeView {
  readonly row: NodeRow;
  readonly runningUnits: number;
  readonly unitsCompleted: number;
  readonly unitsLost: number;
  readonly reliability: number;
  /** Why the placer sends this node no unit now, in words; "" when it may take some. */
  readonly notPlacingReason: string;
}

/** An operator's node state, in words, when it keeps units away. */
const stateReasons: Partial<Record<NodeState, string>> = {
  unreachable: "unreachable: no heartbeat within the grace period",
  cordoned: "cordoned",
  draining: "draining",
  revoked: "revoked",
};

/**
 * Why the placer sends a node nothing now, in words, every reason that holds, in the placer's order
 * (its state, its owner's pause and window, its sandbox): e.g. "paused by its owner; outside its
 * availability window Mon-Fri 18:00-08:00". "" when it may take units. A node without a sandbox
 * ("none") still takes public units, so that is no reason here; its `isolation` says so.
 */
export function notPlacingReason(row: NodeRow): string {
  const reasons: string[] = [];
  const state = stateReasons[row.state];
  if (state !== undefined) reasons.push(state);
  if (row.owner_paused) reasons.push("paused by its owner");
  if (!row.owner_within_window) reasons.push(`outside its availability window ${row.owner_available}`.trimEnd());
  if (row.isolation === "unavailable") reasons.push(row.isolation_reason === "" ? "sandbox unavailable" : `sandbox unavailable: ${row.isolation_reason}`);
  return reasons.join("; ");
}

type AttemptCounts = Map<string, { completed: number; lost: number }>;

function viewOf(row: NodeRow, running: Map<string, number>, attempts: AttemptCounts): NodeView {
  const history = attempts.get(row.id) ?? { completed: 0, lost: 0 };
  return {
    row,
    runningUnits: running.get(row.id) ?? 0,
    unitsCompleted: history.completed,
    unitsLost: history.lost,
    reliability: nodeReliability(history.completed, history.lost),
    notPlacingReason: notPlacingReason(row),
  };
}

async function viewsOf(deps: NodeViewDeps, rows: readonly NodeRow[]): Promise<NodeView[]> {
  const running = await runningUnitsByNode(deps.db);
  const attempts = await readNodeAttemptCounts(
    deps.db,
    new Date(deps.clock.now() - reliabilityWindowMs),
    rows.map((r) => r.id),
  );
  return rows.map((r) => viewOf(r, running, attempts));
}

/** One node's view (e.g. after an operator changed its state). */
export async function nodeView(deps: NodeViewDeps, row: NodeRow): Promise<NodeView> {
  const [view] = await viewsOf(deps, [row]);
  return view!;
}

/** A page of node views, in enrolment order. */
export async function nodeViewsPage(deps: NodeViewDeps, page: PageRequest) {
  const rows = await listNodes(deps.db, page.limit + 1, page.after);
  const cut = toPage(rows, page, (r) => ({ at: r.enrolled_at, id: r.id }));
  return { views: await viewsOf(deps, cut.rows), page: cut.page };
}

/** Sets a node's trust level; an unknown node is RESOURCE_NOT_FOUND. */
export async function changeNodeTrustLevel(deps: NodeViewDeps, id: string, level: TrustLevel): Promise<NodeView> {
  const row = isUuid(id) ? await setNodeTrustLevel(deps.db, id, level) : undefined;
  if (row === undefined) throw new ApiError("RESOURCE_NOT_FOUND", `node ${id} not found`);
  return nodeView(deps, row);
}
