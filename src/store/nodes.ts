/** SQL for nodes and enrollment tokens. */
import type { Sql } from "./database.ts";
import { sqlStatusList, unitsOnNodeStatuses } from "./state-machines.ts";

/** Trust levels, lowest first. */
export type TrustLevel = "community" | "verified" | "controlled";

/**
 * Node states: `online` takes units; `unreachable` is silent past the grace period (a heartbeat brings
 * it back); `cordoned` and `draining` are an operator's (no new units; a draining node is asked to stop
 * taking any); `revoked` is final.
 */
export const nodeStates = ["online", "unreachable", "cordoned", "draining", "revoked"] as const;
export type NodeState = (typeof nodeStates)[number];
/** States in which a node keeps its units, so its heartbeat is expected (the silent-node sweep). */
export const attendedNodeStates = ["online", "cordoned", "draining"] as const satisfies readonly NodeState[];

/**
 * A node state (or a set of them) as SQL literal text, for the statement text like
 * `sqlStatusList`: only these constants reach it.
 */
export function sqlNodeState(state: NodeState): string {
  return `'${state}'`;
}
export function sqlNodeStateList(states: readonly NodeState[]): string {
  return `(${states.map(sqlNodeState).join(", ")})`;
}

/** A heard-from node comes back online unless an operator cordoned, drained or revoked it. */
const stateOnHeartbeatSql = `CASE WHEN state = ${sqlNodeState("unreachable")} THEN ${sqlNodeState("online")} ELSE state END`;
/** Revoked is final: no write brings such a node back. */
const notRevokedSql = `state <> ${sqlNodeState("revoked")}`;

/** One GPU as stored in `capabilities.gpus`; the version fields are absent for agents older than them. */
export interface StoredGpu {
  index?: number;
  name?: string;
  vramMb?: number;
  uuid?: string;
  declared?: boolean;
  /** "major.minor", or "" when unknown. */
  computeCapability?: string;
  driverVersion?: string;
  /** The highest CUDA version the driver supports, "major.minor", or "" when unknown. */
  cudaVersion?: string;
}

/** Capabilities as stored (the agent's Capabilities message in proto JSON). */
export interface StoredCapabilities {
  cpuCores?: number;
  memoryMb?: number;
  diskFreeMb?: number;
  gpus?: StoredGpu[];
  hostname?: string;
  os?: string;
  arch?: string;
  pythonVersion?: string;
  agentVersion?: string;
}

/**
 * How a node contains its units (schema-0007.ts): "bubblewrap" (every unit in its own namespaces),
 * "none" (its operator chose `--isolation none`, or the agent predates the sandbox) or "unavailable"
 * (the sandbox cannot start there and the operator did not accept running without it).
 */
export const isolationMechanisms = ["bubblewrap", "none", "unavailable"] as const;
export type IsolationMechanism = (typeof isolationMechanisms)[number];

/** What a node reported about its isolation (Hello's `capabilities.isolation`). */
export interface StoredIsolation {
  mechanism: IsolationMechanism;
  reason: string;
  /** Which mechanism enforces each limit ("memory" → "cgroup", …). */
  limits: Record<string, string>;
}

/** What the node's owner decided (Hello's `capabilities.owner`, then every heartbeat's `owner`). */
export interface StoredOwnerPolicy {
  paused: boolean;
  /** The availability window as the owner wrote it; "" when always available. */
  available: string;
  /** Inside the window now, by the node's local clock. */
  withinWindow: boolean;
  /** VRAM per GPU the owner keeps; never free for units. */
  reservedVramMb: number;
}

/** A nodes row. */
export interface NodeRow {
  id: string;
  hostname: string;
  trust_level: TrustLevel;
  state: NodeState;
  credential_hash: string;
  capabilities: StoredCapabilities;
  enrolled_at: Date;
  last_heartbeat_at: Date | null;
  revoked_at: Date | null;
  isolation: IsolationMechanism;
  isolation_reason: string;
  isolation_limits: Record<string, string>;
  owner_paused: boolean;
  owner_available: string;
  owner_within_window: boolean;
  reserved_vram_mb: number;
  /** Most units the agent runs at once (`--max-units`); 0: not told, no limit (schema-0011.ts). */
  max_units: number;
  /** Until then the node counts as full: it answered an assignment busy (schema-0013.ts); null when not held. */
  busy_until: Date | null;
}

/**
 * The isolation mechanisms that contain a unit (its own namespaces, its own user id): only nodes
 * with one of these take `low_sensitive` and `high_sensitive` units. Also as SQL literal text.
 */
export const sandboxMechanisms = ["bubblewrap"] as const satisfies readonly IsolationMechanism[];
export const sandboxMechanismsSql = `(${sandboxMechanisms.map((m) => `'${m}'`).join(", ")})`;

/** SQL condition on a nodes row `n`: its owner lets it take units now, and it can run them (not "unavailable"). */
export const nodeTakesUnitsSql = `NOT n.owner_paused AND n.owner_within_window AND n.isolation <> 'unavailable'`;

/** Inserts an enrollment token (hash only). */
export async function insertEnrollmentToken(
  sql: Sql,
  row: { id: string; tokenHash: string; trustLevel: TrustLevel; expiresAt: Date },
  now: Date,
): Promise<void> {
  await sql.query(`INSERT INTO enrollment_tokens (id, token_hash, trust_level, expires_at, created_at) VALUES ($1, $2, $3, $4, $5)`, [
    row.id,
    row.tokenHash,
    row.trustLevel,
    row.expiresAt,
    now,
  ]);
}

/** Uses a token once: returns its trust level, or undefined when unknown, used or expired. */
export async function consumeEnrollmentToken(sql: Sql, tokenHash: string, nodeId: string, now: Date): Promise<TrustLevel | undefined> {
  const [row] = await sql.query<{ trust_level: TrustLevel }>(
    `UPDATE enrollment_tokens SET used_at = $3, node_id = $2
     WHERE token_hash = $1 AND used_at IS NULL AND expires_at > $3 RETURNING trust_level`,
    [tokenHash, nodeId, now],
  );
  return row?.trust_level;
}

/**
 * Inserts an enrolled node. Its `placement_changed_at` is left to the column's default, the
 * database's `clock_timestamp()`: the point, since {@link listNodesChangedSince} compares it with a
 * watermark read on that clock.
 */
export async function insertNode(
  sql: Sql,
  row: { id: string; hostname: string; trustLevel: TrustLevel; credentialHash: string; capabilities: StoredCapabilities; isolation?: StoredIsolation },
  now: Date,
): Promise<NodeRow> {
  // The isolation the enrolling agent reported counts from enrollment on (admission reads it: a
  // sensitive job is refused while no node sandboxes); each Hello records it again.
  const isolation = row.isolation ?? { mechanism: "none", reason: "", limits: {} };
  const [created] = await sql.query<NodeRow>(
    `INSERT INTO nodes (id, hostname, trust_level, state, credential_hash, capabilities, enrolled_at, isolation, isolation_reason, isolation_limits)
     VALUES ($1, $2, $3, ${sqlNodeState("unreachable")}, $4, $5::jsonb, $6, $7, $8, $9::jsonb) RETURNING *`,
    [row.id, row.hostname, row.trustLevel, row.credentialHash, JSON.stringify(row.capabilities), now, isolation.mechanism, isolation.reason, JSON.stringify(isolation.limits)],
  );
  return created!;
}

/** A node by credential hash. */
export async function findNodeByCredential(sql: Sql, credentialHash: string): Promise<NodeRow | undefined> {
  const [row] = await sql.query<NodeRow>(`SELECT * FROM nodes WHERE credential_hash = $1`, [credentialHash]);
  return row;
}

/** A node by id. */
export async function findNode(sql: Sql, id: string): Promise<NodeRow | undefined> {
  const [row] = await sql.query<NodeRow>(`SELECT * FROM nodes WHERE id = $1`, [id]);
  return row;
}

/** All nodes (operators' list), oldest first. */
export async function listNodes(sql: Sql, limit: number, after?: { at: Date; id: string }): Promise<NodeRow[]> {
  return after === undefined
    ? sql.query<NodeRow>(`SELECT * FROM nodes ORDER BY enrolled_at, id LIMIT $1`, [limit])
    : sql.query<NodeRow>(`SELECT * FROM nodes WHERE (enrolled_at, id) > ($2, $3) ORDER BY enrolled_at, id LIMIT $1`, [
        limit,
        after.at,
        after.id,
      ]);
}

/**
 * A node connected: record capabilities, isolation and its owner's controls, and come online unless
 * an operator cordoned, drained or revoked it.
 */
export async function markNodeConnected(
  sql: Sql,
  id: string,
  report: { capabilities: StoredCapabilities; isolation: StoredIsolation; owner: StoredOwnerPolicy; maxUnits?: number },
  now: Date,
): Promise<NodeRow | undefined> {
  const { capabilities, isolation, owner } = report;
  const [row] = await sql.query<NodeRow>(
    `UPDATE nodes SET capabilities = $2::jsonb, hostname = COALESCE(NULLIF($4, ''), hostname), last_heartbeat_at = $3,
       state = ${stateOnHeartbeatSql},
       isolation = $5, isolation_reason = $6, isolation_limits = $7::jsonb,
       owner_paused = $8, owner_available = $9, owner_within_window = $10, reserved_vram_mb = $11, max_units = $12
     WHERE id = $1 AND ${notRevokedSql} RETURNING *`,
    [
      id,
      JSON.stringify(capabilities),
      now,
      capabilities.hostname ?? "",
      isolation.mechanism,
      isolation.reason,
      JSON.stringify(isolation.limits),
      owner.paused,
      owner.available,
      owner.withinWindow,
      owner.reservedVramMb,
      report.maxUnits ?? 0,
    ],
  );
  return row;
}

/**
 * Records the owner's controls a heartbeat reported (the caller writes only when they changed).
 * Returns the row, or undefined for a revoked or unknown node.
 */
export async function setNodeOwnerPolicy(sql: Sql, id: string, owner: StoredOwnerPolicy): Promise<NodeRow | undefined> {
  const [row] = await sql.query<NodeRow>(
    `UPDATE nodes SET owner_paused = $2, owner_available = $3, owner_within_window = $4, reserved_vram_mb = $5
     WHERE id = $1 AND ${notRevokedSql} RETURNING *`,
    [id, owner.paused, owner.available, owner.withinWindow, owner.reservedVramMb],
  );
  return row;
}

/** The node answered an assignment busy: it counts as full until `until` (schema-0013.ts). */
export async function holdNodeBusy(sql: Sql, id: string, until: Date): Promise<void> {
  await sql.query(`UPDATE nodes SET busy_until = $2 WHERE id = $1 AND ${notRevokedSql}`, [id, until]);
}

/** Ends the node's busy hold early (it has room again); a node not held is not written, so its stamp stays. */
export async function releaseNodeBusy(sql: Sql, id: string): Promise<void> {
  await sql.query(`UPDATE nodes SET busy_until = NULL WHERE id = $1 AND busy_until IS NOT NULL`, [id]);
}

/**
 * Persists the liveness of many nodes in one statement, all heard at `at` (throttled and batched by
 * the caller, src/agent-streams/heartbeat-batch.ts; heartbeats do not write on every beat).
 */
export async function touchNodeHeartbeats(sql: Sql, ids: readonly string[], at: Date): Promise<void> {
  await sql.query(`UPDATE nodes SET last_heartbeat_at = $2, state = ${stateOnHeartbeatSql} WHERE id = ANY($1::uuid[]) AND ${notRevokedSql}`, [
    [...ids],
    at,
  ]);
}

/** Operator state change; returns the row, or undefined for an unknown node. */
export async function setNodeState(sql: Sql, id: string, state: NodeState, now: Date): Promise<NodeRow | undefined> {
  const [row] = await sql.query<NodeRow>(
    `UPDATE nodes SET state = $2, revoked_at = CASE WHEN $2 = ${sqlNodeState("revoked")} THEN $3::timestamptz ELSE revoked_at END
     WHERE id = $1 AND ${notRevokedSql} RETURNING *`,
    [id, state, now],
  );
  return row ?? findNode(sql, id);
}

/** Sets the trust level. */
export async function setNodeTrustLevel(sql: Sql, id: string, trustLevel: TrustLevel): Promise<NodeRow | undefined> {
  const [row] = await sql.query<NodeRow>(`UPDATE nodes SET trust_level = $2 WHERE id = $1 RETURNING *`, [id, trustLevel]);
  return row;
}

/**
 * A node not heard from since `silentSince` becomes unreachable (an operator's
 * cordoned, draining or revoked stays). Returns whether it was still silent:
 * one that reconnected a moment ago keeps its units.
 */
export async function markNodeUnreachableIfSilent(sql: Sql, nodeId: string, silentSince: Date): Promise<boolean> {
  const still = await sql.query(
    `UPDATE nodes SET state = CASE WHEN state = ${sqlNodeState("online")} THEN ${sqlNodeState("unreachable")} ELSE state END
     WHERE id = $1 AND (last_heartbeat_at IS NULL OR last_heartbeat_at < $2) RETURNING id`,
    [nodeId, silentSince],
  );
  return still.length === 1;
}

/** Attended nodes (online, cordoned, draining) whose last persisted heartbeat is older than `before`. */
export async function findSilentNodes(sql: Sql, before: Date): Promise<NodeRow[]> {
  return sql.query<NodeRow>(
    `SELECT * FROM nodes WHERE state IN ${sqlNodeStateList(attendedNodeStates)} AND (last_heartbeat_at IS NULL OR last_heartbeat_at < $1)`,
    [before],
  );
}

/** What admission reads of a node: whatever it is, not what it has free. */
export type NodeCapacityRow = Pick<NodeRow, "id" | "trust_level" | "isolation" | "capabilities">;

/** Every enrolled node that is not revoked, whatever its state: the fleet a new job is admitted against. */
export async function listEnrolledNodeCapacities(sql: Sql): Promise<NodeCapacityRow[]> {
  return sql.query<NodeCapacityRow>(`SELECT id, trust_level, isolation, capabilities FROM nodes WHERE ${notRevokedSql} ORDER BY id`);
}

/** Every online node's row (placement's fleet). */
export async function listOnlineNodes(sql: Sql): Promise<NodeRow[]> {
  return sql.query<NodeRow>(`SELECT * FROM nodes WHERE state = ${sqlNodeState("online")}`);
}

/** Ids of online nodes whose persisted heartbeat is at or after `since`. */
export async function findOnlineNodesHeardSince(sql: Sql, since: Date): Promise<Set<string>> {
  const rows = await sql.query<{ id: string }>(`SELECT id FROM nodes WHERE state = ${sqlNodeState("online")} AND last_heartbeat_at >= $1`, [since]);
  return new Set(rows.map((r) => r.id));
}

/**
 * The database's clock now, as PostgreSQL writes it (microseconds; a JS Date would cut them): the
 * watermark of {@link listNodesChangedSince}. The database's time is the point here: the rows'
 * `placement_changed_at` stamps are written by a trigger on that clock, and a read must be compared
 * with them on the same clock, not on this process's. `clock_timestamp()`, not `now()`: the time of
 * the read itself, not of the start of a transaction.
 */
export async function readDatabaseClock(sql: Sql): Promise<string> {
  const [{ at }] = (await sql.query<{ at: string }>(`SELECT clock_timestamp()::text AS at`)) as [{ at: string }];
  return at;
}

/**
 * Nodes (in any state) whose placement-relevant columns changed at or after `watermark` (from
 * {@link readDatabaseClock}) less `overlapMs`: the overlap catches a change stamped before the
 * watermark but committed after it. The arithmetic stays on the database's clock, like the stamps.
 */
export async function listNodesChangedSince(sql: Sql, watermark: string, overlapMs: number): Promise<NodeRow[]> {
  return sql.query<NodeRow>(`SELECT * FROM nodes WHERE placement_changed_at >= $1::timestamptz - make_interval(secs => $2::double precision / 1000)`, [
    watermark,
    overlapMs,
  ]);
}

/** Count of units running or assigned per node. */
export async function runningUnitsByNode(sql: Sql): Promise<Map<string, number>> {
  const rows = await sql.query<{ node_id: string; n: number }>(
    `SELECT node_id, count(*)::int AS n FROM compute_units WHERE status IN ${sqlStatusList(unitsOnNodeStatuses)} AND node_id IS NOT NULL GROUP BY node_id`,
  );
  return new Map(rows.map((r) => [r.node_id, r.n]));
}

/** How an attempt ended for the node that ran it (see schema-0002.ts). */
export type NodeAttemptOutcome = "completed" | "lost";

/** Records that `nodeId` completed or lost an attempt; a replayed event counts once. */
export async function recordNodeAttempt(
  sql: Sql,
  row: { unitId: string; attempt: number; nodeId: string; outcome: NodeAttemptOutcome; at: Date },
): Promise<void> {
  await sql.query(
    `INSERT INTO node_attempts (unit_id, attempt, node_id, outcome, finished_at) VALUES ($1, $2, $3, $4, $5)
     ON CONFLICT (unit_id, attempt) DO NOTHING`,
    [row.unitId, row.attempt, row.nodeId, row.outcome, row.at],
  );
}

/** Records that `nodeId` holds `datasetId` (it fetched it for a unit that completed). */
export async function recordNodeDataset(sql: Sql, nodeId: string, datasetId: string, at: Date): Promise<void> {
  await sql.query(
    `INSERT INTO node_datasets (node_id, dataset_id, last_used_at) VALUES ($1, $2, $3)
     ON CONFLICT (node_id, dataset_id) DO UPDATE SET last_used_at = GREATEST(node_datasets.last_used_at, EXCLUDED.last_used_at)`,
    [nodeId, datasetId, at],
  );
}

/** Attempts each node completed and lost since `since` (nodes with none are absent). */
export async function readNodeAttemptCounts(
  sql: Sql,
  since: Date,
  nodeIds?: readonly string[],
): Promise<Map<string, { completed: number; lost: number }>> {
  const rows = await sql.query<{ node_id: string; completed: number; lost: number }>(
    `SELECT node_id, count(*) FILTER (WHERE outcome = 'completed')::int AS completed, count(*) FILTER (WHERE outcome = 'lost')::int AS lost
     FROM node_attempts WHERE finished_at >= $1 AND ($2::uuid[] IS NULL OR node_id = ANY($2::uuid[])) GROUP BY node_id`,
    [since, nodeIds === undefined ? null : [...nodeIds]],
  );
  return new Map(rows.map((r) => [r.node_id, { completed: r.completed, lost: r.lost }]));
}

/** Nodes that fetched each of `datasetIds` since `since`: dataset id → node ids. */
export async function readNodesHoldingDatasets(sql: Sql, datasetIds: readonly string[], since: Date): Promise<Map<string, Set<string>>> {
  const held = new Map<string, Set<string>>();
  if (datasetIds.length === 0) return held;
  const rows = await sql.query<{ node_id: string; dataset_id: string }>(
    `SELECT node_id, dataset_id FROM node_datasets WHERE dataset_id = ANY($1::uuid[]) AND last_used_at >= $2`,
    [[...new Set(datasetIds)], since],
  );
  for (const r of rows) {
    let nodes = held.get(r.dataset_id);
    if (nodes === undefined) held.set(r.dataset_id, (nodes = new Set()));
    nodes.add(r.node_id);
  }
  return held;
}
