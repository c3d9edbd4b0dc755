/**
 * One placement cycle of the leader: read a snapshot (ready units, schedulable
 * nodes, resources held by assigned/running units) → the pure placer → commit
 * the plan in one transaction fenced by the leader's term → tell the nodes.
 *
 * The commit re-checks each unit is still `ready` (a cancel may have won the
 * race) and that the term it was planned under is still the current one, so a
 * deposed leader cannot commit anything.
 *
 * The placer lives across cycles (one per control plane): each cycle hands it
 * the fresh snapshot through `sync`, which moves only the index entries of
 * nodes whose free resources changed, instead of rebuilding the copy and its
 * indexes (O(n log n)) every cycle. The plan is exactly the one a placer
 * built from that snapshot would make, so nothing it reserved in an earlier
 * cycle (committed or not) can leak into the next.
 */
import { allowedTrustLevels, createPlacer } from "../placer/index.ts";
import type { ClusterSnapshot, NodeSnapshot, Placer, PlacementResult, UnitRequest } from "../placer/index.ts";
import type { Clock } from "../platform/clock.ts";
import type { SchedulerConfig, ScoreWeights } from "../platform/config.ts";
import { newId } from "../platform/ids.ts";
import type { Database, Sql } from "../store/database.ts";
import { lockFencingTerm } from "../store/leases.ts";
import type { NodeRow } from "../store/nodes.ts";
import type { FleetCache } from "./fleet-cache.ts";
import { NodeHistory } from "./node-history.ts";
import type { HeldRow, NodeSnapshotMemo } from "./node-snapshots.ts";
import { buildNodeSnapshots } from "./node-snapshots.ts";

/** What a cycle did. */
export interface CycleResult {
  /** Units placed, with how long each waited in `ready` (placement latency). */
  placed: { unitId: string; nodeId: string; waitedMs: number }[];
  unplaced: number;
  /** False when the term was no longer current (nothing committed). */
  committed: boolean;
  /** Milliseconds spent reading the snapshot, planning and committing (planning and commit are 0 when nothing waited). */
  phasesMs: { snapshot: number; plan: number; commit: number };
}

interface ReadyUnitRow {
  id: string;
  job_id: string;
  customer_id: string;
  kind: "cpu" | "gpu";
  required_vram_mb: number;
  required_disk_mb: number;
  required_cpu_cores: number;
  required_memory_mb: number;
  excluded_node_ids: string[];
  ready_at: Date | null;
  created_at: Date;
  sensitivity: "public" | "low_sensitive" | "high_sensitive";
  dataset_id: string;
}

/** Which nodes may take units: `isLive` says whether the node's agent is connected and heard from. */
export interface PlacementLiveness {
  isLive(nodeId: string): boolean;
  /** The nodes whose liveness may have changed since the last call ("all": any); needed with a snapshot memo. */
  takeChanged?(): ReadonlySet<string> | "all";
  /** Brings what `isLive` knows up to date; called only by cycles with units waiting. */
  refresh?(sql: Sql): Promise<void>;
  /** Whether this replica holds the node's live stream (the commit re-checks the others' persisted heartbeat). */
  isLocallyLive?(nodeId: string): boolean;
  /** A persisted heartbeat older than this says the node is silent. */
  silentBefore?(): Date;
}

/** What a cycle reads its snapshot with, beyond the database. */
export interface SnapshotSources {
  liveness: PlacementLiveness;
  history: NodeHistory;
  fleet?: FleetCache;
  snapshots?: NodeSnapshotMemo;
  maxUnits?: number;
}

/** Reads the snapshot the placer works on. Liveness limits placement to nodes with a live stream (on any replica). */
export async function readSnapshot(sql: Sql, sources: SnapshotSources): Promise<{ snapshot: ClusterSnapshot; units: UnitRequest[] }> {
  const { liveness, history, fleet, snapshots, maxUnits = 1000 } = sources;
  const ready = await sql.query<ReadyUnitRow>(
    `SELECT u.id, u.job_id, u.customer_id, u.kind, u.required_vram_mb, u.required_disk_mb, u.required_cpu_cores,
            u.required_memory_mb, u.excluded_node_ids, u.ready_at, u.created_at, j.sensitivity, j.dataset_id
     FROM compute_units u JOIN training_jobs j ON j.id = u.job_id
     WHERE u.status = 'ready' AND j.status IN ('queued', 'running')
     ORDER BY u.ready_at, u.id LIMIT $1`,
    [maxUnits],
  );
  // Nothing waits: skip reading the fleet (an idle cycle must stay cheap with thousands of nodes).
  if (ready.length === 0) return { snapshot: { nodes: [] }, units: [] };
  // Independent reads, side by side: on PostgreSQL each takes its own pooled connection.
  const [, onlineRows, held, reliability, datasetsByNode] = await Promise.all([
    liveness.refresh?.(sql),
    fleet === undefined ? sql.query<NodeRow>(`SELECT * FROM nodes WHERE state = 'online'`) : fleet.onlineNodes(sql),
    sql.query<HeldRow>(
      `SELECT node_id, gpu_index, sum(required_vram_mb)::int AS vram, sum(required_disk_mb)::int AS disk,
              sum(required_cpu_cores)::int AS cpu, sum(required_memory_mb)::int AS memory
       FROM compute_units WHERE status IN ('assigned', 'running') AND node_id IS NOT NULL GROUP BY node_id, gpu_index`,
    ),
    history.reliability(sql),
    history.datasetsByNode(sql, ready.map((u) => u.dataset_id)),
  ]);
  const heldByNode = new Map<string, HeldRow[]>();
  for (const h of held) {
    const rows = heldByNode.get(h.node_id);
    if (rows === undefined) heldByNode.set(h.node_id, [h]);
    else rows.push(h);
  }
  const inputs = { held: heldByNode, datasets: datasetsByNode, isLive: (id: string) => liveness.isLive(id), reliability };
  let nodes: readonly NodeSnapshot[];
  if (fleet !== undefined && snapshots !== undefined) {
    // Each source says which nodes moved since the last cycle that read it; any "all" looks at every node.
    const moved = [fleet.takeChanged(), liveness.takeChanged?.() ?? "all", history.takeChanged()];
    const changed = moved.includes("all") ? "all" : new Set(moved.flatMap((ids) => [...(ids as ReadonlySet<string>)]));
    nodes = snapshots.snapshots({ rows: onlineRows, row: (id) => fleet.row(id) }, changed, inputs);
  } else {
    nodes = buildNodeSnapshots(onlineRows, inputs);
  }
  const snapshot: ClusterSnapshot = { nodes };
  const units = ready.map(
    (u): UnitRequest => ({
      id: u.id,
      jobId: u.job_id,
      customerId: u.customer_id,
      kind: u.kind,
      vramMb: u.kind === "gpu" ? u.required_vram_mb : 0,
      diskMb: u.required_disk_mb,
      cpuCores: u.required_cpu_cores,
      memoryMb: u.required_memory_mb,
      sensitivity: u.sensitivity,
      datasetId: u.dataset_id,
      excludedNodeIds: u.excluded_node_ids,
      readySinceMs: (u.ready_at ?? u.created_at).getTime(),
    }),
  );
  return { snapshot, units };
}

/** What a placement cycle needs (a subset of ControlPlaneDeps); the object also keys its long-lived placer. */
export interface PlacementCycleDeps {
  readonly config: SchedulerConfig;
  readonly db: Database;
  readonly clock: Clock;
}

/** One long-lived placer per control plane (keyed by its deps, so test control planes never share one). */
const placers = new WeakMap<PlacementCycleDeps, Placer>();

/**
 * Plans one cycle on the control plane's long-lived placer, synced to
 * `snapshot` first: the same plan as `placeUnits(snapshot, units, { seed })`.
 */
export function planCycle(
  deps: PlacementCycleDeps,
  snapshot: ClusterSnapshot,
  units: readonly UnitRequest[],
  seed: string,
  weights?: ScoreWeights,
): PlacementResult {
  let placer = placers.get(deps);
  if (placer === undefined) {
    placer = createPlacer(snapshot);
    placers.set(deps, placer);
  } else {
    placer.sync(snapshot);
  }
  return placer.place(units, weights === undefined ? { seed } : { seed, weights });
}

/** Runs one cycle under `term`. */
export async function runPlacementCycle(deps: PlacementCycleDeps, term: number, sources: SnapshotSources): Promise<CycleResult> {
  const { db, clock } = deps;
  const { liveness } = sources;
  // Wall time for the phases, not the injected clock: they are diagnostics, and a fake clock stands still.
  const started = performance.now();
  const { snapshot, units } = await readSnapshot(db, sources);
  const read = performance.now();
  if (units.length === 0) return { placed: [], unplaced: 0, committed: true, phasesMs: { snapshot: read - started, plan: 0, commit: 0 } };
  const cycleId = newId();
  const plan = planCycle(deps, snapshot, units, cycleId, deps.config.placerWeights);
  const planned = performance.now();
  const now = new Date(clock.now());
  const phasesMs = { snapshot: read - started, plan: planned - read, commit: 0 };
  const result = await db.transaction(async (tx): Promise<CycleResult> => {
    // Fencing: the lease row is locked and must still carry our term.
    if ((await lockFencingTerm(tx)) !== term) return { placed: [], unplaced: plan.unplaced.length, committed: false, phasesMs };
    const placed: CycleResult["placed"] = [];
    const sensitivityOf = new Map(units.map((u) => [u.id, u.sensitivity]));
    const readySince = new Map(units.map((u) => [u.id, u.readySinceMs]));
    // A node whose stream another replica holds was live by a heartbeat set a few seconds old: its
    // persisted heartbeat is checked again here, in the statement that assigns.
    const silentBefore = liveness.silentBefore?.() ?? new Date(0);
    // Unit ids in order, so concurrent transactions touching the same units lock them in the same order.
    for (const p of [...plan.placements].sort((a, b) => (a.unitId < b.unitId ? -1 : 1))) {
      // Re-checked against fresh rows: an operator may have cordoned the node or lowered its trust since the snapshot.
      const rows = await tx.query(
        `UPDATE compute_units SET status = 'assigned', node_id = $2, gpu_index = $3, assignment_id = $4, assigned_at = $5,
           leader_term = $6, unschedulable_reason = ''
         WHERE id = $1 AND status = 'ready'
           AND EXISTS (SELECT 1 FROM nodes n WHERE n.id = $2 AND n.state = 'online' AND n.trust_level = ANY($7::text[])
                         AND ($8::boolean OR n.last_heartbeat_at >= $9))
         RETURNING id`,
        [
          p.unitId,
          p.nodeId,
          p.gpuIndex,
          newId(),
          now,
          term,
          allowedTrustLevels(sensitivityOf.get(p.unitId) ?? "high_sensitive"),
          liveness.isLocallyLive?.(p.nodeId) ?? true,
          silentBefore,
        ],
      );
      if (rows.length === 1) placed.push({ unitId: p.unitId, nodeId: p.nodeId, waitedMs: Math.max(0, now.getTime() - (readySince.get(p.unitId) ?? now.getTime())) });
    }
    for (const u of plan.unplaced) {
      await tx.query(`UPDATE compute_units SET unschedulable_reason = $2 WHERE id = $1 AND status = 'ready'`, [u.unitId, u.message.slice(0, 500)]);
    }
    return { placed, unplaced: plan.unplaced.length, committed: true, phasesMs };
  });
  phasesMs.commit = performance.now() - planned;
  return result;
}
