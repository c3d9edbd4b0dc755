/**
 * One placement cycle of the leader: read a snapshot (ready units, schedulable
 * nodes, resources held by assigned/running units) → the pure placer → commit
 * the plan in one transaction fenced by the leader's term → tell the nodes.
 *
 * The commit re-checks each unit is still `ready` (a cancel may have won the
 * race) and that the term it was planned under is still the current one, so a
 * deposed leader cannot commit anything (src/store/placement.ts).
 *
 * The placer lives across cycles (one {@link CyclePlacer} per leader loop, so
 * per control plane): each cycle hands it the fresh snapshot through `sync`,
 * which moves only the index entries of nodes whose free resources changed,
 * instead of rebuilding the copy and its indexes (O(n log n)) every cycle. The
 * plan is exactly the one a placer built from that snapshot would make, so
 * nothing it reserved in an earlier cycle (committed or not) can leak into the
 * next.
 */
import { allowedTrustLevels, createDemandWindow, createPlacer, sandboxRequired } from "../placer/index.ts";
import type { ClusterSnapshot, NodeSnapshot, Placer, PlacementResult, UnitRequest } from "../placer/index.ts";
import type { Clock } from "../platform/clock.ts";
import { monotonicMs } from "../platform/clock.ts";
import type { SchedulerConfig, ScoreWeights } from "../platform/config.ts";
import { newId } from "../platform/ids.ts";
import type { Database, Sql } from "../store/database.ts";
import { listOnlineNodes } from "../store/nodes.ts";
import type { HeldRow, PlannedAssignment, ReadyUnitRow } from "../store/placement.ts";
import { assignReadyUnitsUnderTerm, listHeldResources, listReadyUnits, setUnschedulableReason } from "../store/placement.ts";
import { transactionWithJobEvents } from "../store/job-events.ts";
import { listWaitingUnitNeeds, setPendingReasons } from "../store/jobs.ts";
import { jobsChanged } from "../jobs/job-changes.ts";
import type { FleetCache } from "./fleet-cache.ts";
import { NodeHistory } from "./node-history.ts";
import type { NodeSnapshotMemo } from "./node-snapshots.ts";
import { buildNodeSnapshots } from "./node-snapshots.ts";
import type { GatingDecision } from "./stage-gating.ts";
import { gateReadyUnits, OnlineCapacities } from "./stage-gating.ts";

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
  /** Online nodes' static capacity for stage gating, kept across cycles (default: converted afresh). */
  capacities?: OnlineCapacities;
  /** The cycle's time, for nodes held full after a busy answer (`busy_until`); absent: none is held. */
  nowMs?: number;
}

/** A cycle's snapshot: the fleet, the units offered to the placer, and what stage gating held back. */
export interface CycleSnapshot {
  snapshot: ClusterSnapshot;
  units: UnitRequest[];
  /** Ready units held back and jobs waiting for a stage's capable node (./stage-gating.ts). */
  gating: GatingDecision;
  /** Each ready unit's job and name, offered or held. */
  readyUnits: ReadonlyMap<string, { jobId: string; name: string }>;
}

/** Reads the snapshot the placer works on. Liveness limits placement to nodes with a live stream (on any replica). */
export async function readSnapshot(sql: Sql, sources: SnapshotSources): Promise<CycleSnapshot> {
  const { liveness, history, fleet, snapshots, maxUnits = 1000 } = sources;
  const ready = await listReadyUnits(sql, maxUnits);
  // Nothing waits: skip reading the fleet (an idle cycle must stay cheap with thousands of nodes).
  if (ready.length === 0) return { snapshot: { nodes: [] }, units: [], gating: { heldUnits: new Map(), jobReasons: new Map() }, readyUnits: new Map() };
  // Independent reads, side by side: on PostgreSQL each takes its own pooled connection.
  const [, onlineRows, held, reliability, datasetsByNode, waiting] = await Promise.all([
    liveness.refresh?.(sql),
    fleet === undefined ? listOnlineNodes(sql) : fleet.onlineNodes(sql),
    listHeldResources(sql),
    history.reliability(sql),
    history.datasetsByNode(sql, ready.map((u) => u.dataset_id)),
    listWaitingUnitNeeds(sql, [...new Set(ready.map((u) => u.job_id))]),
  ]);
  const heldByNode = new Map<string, HeldRow[]>();
  for (const h of held) {
    const rows = heldByNode.get(h.node_id);
    if (rows === undefined) heldByNode.set(h.node_id, [h]);
    else rows.push(h);
  }
  const inputs = { held: heldByNode, datasets: datasetsByNode, isLive: (id: string) => liveness.isLive(id), reliability, nowMs: sources.nowMs };
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
  const online = (sources.capacities ?? new OnlineCapacities()).of(onlineRows, (id) => liveness.isLive(id));
  const gating = gateReadyUnits(ready, waiting, online);
  const readyUnits = new Map(ready.map((u) => [u.id, { jobId: u.job_id, name: u.name }]));
  const units = ready.filter((u) => !gating.heldUnits.has(u.id)).map(
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
      ...(u.kind === "gpu" ? gpuAsks(u) : {}),
    }),
  );
  return { snapshot, units, gating, readyUnits };
}

/** A gpu unit's GPU count and constraints as the placer takes them (absent: any). */
function gpuAsks(u: ReadyUnitRow): Pick<UnitRequest, "gpuCount" | "gpuModels" | "minComputeCapability" | "minCudaVersion"> {
  return {
    gpuCount: u.required_gpu_count,
    ...(u.gpu_models.length > 0 ? { gpuModels: u.gpu_models } : {}),
    ...(u.min_compute_capability !== "" ? { minComputeCapability: u.min_compute_capability } : {}),
    ...(u.min_cuda_version !== "" ? { minCudaVersion: u.min_cuda_version } : {}),
  };
}

/**
 * Why each queued job of this cycle's ready units waits: the stage gating's reason, else the placer's
 * for the first of its units it could not place, else "" (everything offered was placed).
 */
function pendingReasons(cycle: CycleSnapshot, unplaced: readonly { unitId: string; message: string }[]): Map<string, string> {
  const reasons = new Map<string, string>();
  for (const { jobId } of cycle.readyUnits.values()) reasons.set(jobId, cycle.gating.jobReasons.get(jobId) ?? "");
  for (const u of unplaced) {
    const unit = cycle.readyUnits.get(u.unitId);
    if (unit === undefined || reasons.get(unit.jobId) !== "") continue;
    reasons.set(unit.jobId, `stage "${unit.name}": ${u.message}`);
  }
  return reasons;
}

/**
 * Writes what this cycle learnt about waiting: the held units' reasons, and the queued jobs' pending
 * reasons. Returns the jobs whose reason changed, whose cached views must be forgotten. A changed
 * reason is a job event (staged by setPendingReasons), so a watch shows why its job waits as the
 * reason changes; an unchanged one writes nothing, so cycles that learn nothing new add no events.
 */
async function recordWaiting(tx: Sql, cycle: CycleSnapshot, unplaced: readonly { unitId: string; message: string }[]): Promise<string[]> {
  for (const [unitId, reason] of cycle.gating.heldUnits) await setUnschedulableReason(tx, unitId, reason);
  return setPendingReasons(tx, pendingReasons(cycle, unplaced));
}

/** What a placement cycle needs (a subset of ControlPlaneDeps). */
export interface PlacementCycleDeps {
  readonly config: SchedulerConfig;
  readonly db: Database;
  readonly clock: Clock;
}

/** The placer that lives across one control plane's cycles. */
export interface CyclePlacer {
  /**
   * Plans one cycle, synced to `snapshot` first: the same plan as
   * `placeUnits(snapshot, units, { seed, weights, recentAsks })`, where
   * `recentAsks` are the asks of the last units that became ready (a
   * DemandWindow, src/placer/profile.ts, this cycle's included): the arriving
   * work the fragmentation score keeps room for (it reads nothing else).
   * `nowMs` (the injected clock) lets a unit waiting past the placer's
   * `reserveAfterMs` go first and keep a node (src/placer/README.md,
   * "Reservations"); without it no unit is ever overdue.
   */
  plan(snapshot: ClusterSnapshot, units: readonly UnitRequest[], seed: string, weights?: ScoreWeights, nowMs?: number): PlacementResult;
}

/** A placer for one control plane's cycles; built on the first cycle's snapshot, synced on each later one. */
export function createCyclePlacer(): CyclePlacer {
  let placer: Placer | undefined;
  const window = createDemandWindow();
  return {
    plan(snapshot, units, seed, weights, nowMs) {
      if (placer === undefined) placer = createPlacer(snapshot);
      else placer.sync(snapshot);
      window.record(units);
      const recentAsks = window.asks();
      return placer.place(units, {
        seed,
        recentAsks,
        ...(weights === undefined ? {} : { weights }),
        ...(nowMs === undefined ? {} : { nowMs }),
      });
    },
  };
}

/** What one cycle works with across cycles: its snapshot's sources and the long-lived placer. */
export interface CycleState extends SnapshotSources {
  placer: CyclePlacer;
}

/** Runs one cycle under `term`. */
export async function runPlacementCycle(deps: PlacementCycleDeps, term: number, state: CycleState): Promise<CycleResult> {
  const { db, clock } = deps;
  const { liveness, placer } = state;
  // Real elapsed time for the phases, not the injected clock: they are diagnostics, and a fake clock stands still.
  const started = monotonicMs();
  const cycle = await readSnapshot(db, { ...state, nowMs: clock.now() });
  const { snapshot, units } = cycle;
  const read = monotonicMs();
  if (units.length === 0) {
    // Everything waiting is held: say why, and nothing more.
    if (cycle.readyUnits.size > 0) jobsChanged(db, await transactionWithJobEvents(db, (tx) => recordWaiting(tx, cycle, [])));
    return { placed: [], unplaced: cycle.gating.heldUnits.size, committed: true, phasesMs: { snapshot: read - started, plan: 0, commit: 0 } };
  }
  const cycleId = newId();
  const plan = placer.plan(snapshot, units, cycleId, deps.config.placerWeights, clock.now());
  const planned = monotonicMs();
  const now = new Date(clock.now());
  const phasesMs = { snapshot: read - started, plan: planned - read, commit: 0 };
  const sensitivityOf = new Map(units.map((u) => [u.id, u.sensitivity]));
  const readySince = new Map(units.map((u) => [u.id, u.readySinceMs]));
  let waitingChanged: string[] = [];
  // With event staging: each unit placed is an event of its job, appended as the commit's last statement.
  const result = await transactionWithJobEvents(db, async (tx): Promise<CycleResult> => {
    // Liveness as of the commit. A node whose stream another replica holds was live by a heartbeat set
    // a few seconds old: its persisted heartbeat is checked again in the statement that assigns.
    const silentBefore = liveness.silentBefore?.() ?? new Date(0);
    const assignments = plan.placements.map(
      (p): PlannedAssignment => ({
        unitId: p.unitId,
        nodeId: p.nodeId,
        gpuIndex: p.gpuIndex,
        ...(p.gpuIndexes !== undefined ? { gpuIndexes: p.gpuIndexes } : {}),
        assignmentId: newId(),
        trustLevels: allowedTrustLevels(sensitivityOf.get(p.unitId) ?? "high_sensitive"),
        sandboxRequired: sandboxRequired(sensitivityOf.get(p.unitId) ?? "high_sensitive"),
        nodeLocallyLive: liveness.isLocallyLive?.(p.nodeId) ?? true,
      }),
    );
    // Fencing: the lease row is locked and must still carry our term, or nothing is written.
    const assigned = await assignReadyUnitsUnderTerm(tx, term, assignments, silentBefore, now);
    if (assigned === undefined) return { placed: [], unplaced: plan.unplaced.length, committed: false, phasesMs };
    const placed = assigned.map((p) => ({ unitId: p.unitId, nodeId: p.nodeId, waitedMs: Math.max(0, now.getTime() - (readySince.get(p.unitId) ?? now.getTime())) }));
    for (const u of plan.unplaced) await setUnschedulableReason(tx, u.unitId, u.message.slice(0, 500));
    waitingChanged = await recordWaiting(tx, cycle, plan.unplaced);
    return { placed, unplaced: plan.unplaced.length + cycle.gating.heldUnits.size, committed: true, phasesMs };
  });
  jobsChanged(db, waitingChanged);
  phasesMs.commit = monotonicMs() - planned;
  return result;
}
