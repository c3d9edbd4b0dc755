/**
 * The placer's input and output. The snapshot is immutable for the placer:
 * a cycle works on its own copy of the free resources (see cycle-state.ts).
 */
import type { UnitKind } from "../planner/plan.ts";
import type { ScoreWeights } from "../platform/config.ts";
import type { ReasonCode } from "./reasons.ts";

/** Re-exported so placer callers need not import the planner for it. */
export type { UnitKind };

/** How far the operator trusts a node; ordered community < verified < controlled. */
export type TrustLevel = "community" | "verified" | "controlled";

/** A job's data sensitivity tier; decides the lowest trust level its units may run at. */
export type Sensitivity = "public" | "low_sensitive" | "high_sensitive";

/**
 * How a node contains the units it runs: `sandboxed` (each unit in its own namespaces, under its own
 * user id: any sensitivity), `none` (units run as plain processes: public units only) or
 * `unavailable` (the sandbox cannot start there: no unit at all).
 */
export type NodeIsolation = "sandboxed" | "none" | "unavailable";

/** What a home node's owner decided about their machine. */
export interface OwnerPolicy {
  /** Paused by its owner: no new units. */
  paused: boolean;
  /** Inside the owner's availability window now (true when there is none). */
  withinWindow: boolean;
  /** VRAM per GPU the owner keeps for themself; the placer never counts it as free. */
  reservedVramMb: number;
}

/** One GPU of a node as last reported: its device index, model, total and free VRAM, and what it can run. */
export interface GpuView {
  index: number;
  /** The model as the driver names it, e.g. "NVIDIA GeForce RTX 4090"; `gpu_models` match against it. */
  name: string;
  vramMb: number;
  freeVramMb: number;
  /** As the driver reports it; absent when unknown. */
  uuid?: string;
  /** "major.minor", e.g. "8.6"; absent when unknown (a unit with `minComputeCapability` then does not fit). */
  computeCapability?: string;
  /** The highest CUDA version the driver supports, "major.minor"; absent when unknown. */
  cudaVersion?: string;
}

/** One node as the leader sees it at the start of a cycle (free = capacity − running − assumed). */
export interface NodeSnapshot {
  id: string;
  trustLevel: TrustLevel;
  /** Online and not cordoned, draining or revoked. */
  schedulable: boolean;
  cpuCores: number;
  freeCpuCores: number;
  memoryMb: number;
  freeMemoryMb: number;
  diskFreeMb: number;
  gpus: GpuView[];
  cachedDatasetIds: ReadonlySet<string>;
  /** 0..1, e.g. the share of recent attempts the node finished; values outside are clamped. */
  reliability: number;
  isolation: NodeIsolation;
  /** Absent: no owner controls (always available, nothing reserved). */
  owner?: OwnerPolicy;
  /**
   * How many more units the agent accepts now: its `--max-units` less the units assigned to or running on it.
   * Absent: no limit told. A node at 0 is full (busy, not broken): it takes no unit until one ends.
   */
  freeUnitSlots?: number;
}

/** Every node the cycle may consider. */
export interface ClusterSnapshot {
  nodes: readonly NodeSnapshot[];
}

/** A ready compute unit waiting for a node. */
export interface UnitRequest {
  id: string;
  jobId: string;
  customerId: string;
  kind: UnitKind;
  /** Free VRAM each of its GPUs must have (gpu units). */
  vramMb: number;
  /** GPUs of one node the unit needs, 1 to 8 (gpu units; absent: 1). Each has `vramMb` free. */
  gpuCount?: number;
  /** GPU model allow-list (case-insensitive substrings of `GpuView.name`); absent or empty: any. */
  gpuModels?: readonly string[];
  /** Lowest compute capability, "major.minor"; absent: any. */
  minComputeCapability?: string;
  /** Lowest CUDA version of the node's driver, "major.minor"; absent: any. */
  minCudaVersion?: string;
  diskMb: number;
  cpuCores: number;
  memoryMb: number;
  sensitivity: Sensitivity;
  datasetId: string;
  /** Nodes that already failed this unit; never placed there again. */
  excludedNodeIds: readonly string[];
  /** When the unit became ready (ms since the epoch); older goes first within a customer. */
  readySinceMs: number;
}

/** A decision: run the unit on this node (and these GPU device indexes; -1 and [] for a cpu unit). */
export interface Placement {
  unitId: string;
  nodeId: string;
  /** The first of `gpuIndexes`; -1 for a cpu unit. */
  gpuIndex: number;
  /** Every GPU the unit gets, `gpuCount` of them, ascending; empty for a cpu unit. */
  gpuIndexes: number[];
  /** The weighted score 0..100 of the chosen node, rounded to 3 decimals. */
  score: number;
}

/** A unit no node could take this cycle, and why. */
export interface Unplaced {
  unitId: string;
  /** How many nodes each reason rejected; every node is counted once, under its first failing filter. */
  reasons: Partial<Record<ReasonCode, number>>;
  /** True when every node rejected the unit for a reason retrying cannot fix (trust, no sandbox, excluded node). */
  unresolvable: boolean;
  /** For the customer, e.g. "no online node with a GPU of ≥ 24000 MB free VRAM at trust ≥ verified (3 nodes: …)". */
  message: string;
  /**
   * The node this cycle kept for the unit because it has waited past `PlacerOptions.reserveAfterMs`:
   * the capable node closest to fitting it, which took no other unit this cycle. Absent otherwise.
   */
  reservedNodeId?: string;
}

/** The cycle's plan; the caller commits it (re-checking against fresh state). */
export interface PlacementResult {
  placements: Placement[];
  unplaced: Unplaced[];
}

/**
 * The typical gpu unit of a cycle: the mean ask of its ready gpu units (see
 * profile.ts). BinPack measures a node's capacity in these units, so the
 * scarce resource is whichever the waiting work needs most of.
 */
export interface DemandProfile {
  vramMb: number;
  cpuCores: number;
  memoryMb: number;
  diskMb: number;
  /**
   * The arriving work as a distribution of asks (profile.ts): what GpuFragmentation
   * measures a node's fragmentation against. Absent or empty: no fragmentation score.
   */
  asks?: readonly DemandAsk[];
}

/** One kind of ask in the arriving work, and how often it comes (`weight`, relative). */
export interface DemandAsk {
  /** GPUs of one node, each with `vramMb` free; 0 for a cpu unit. */
  gpuCount: number;
  vramMb: number;
  /** GPU model allow-list as in UnitRequest.gpuModels; empty: any. */
  gpuModels: readonly string[];
  cpuCores: number;
  memoryMb: number;
  weight: number;
}

/** What the score plugins know of the cycle beyond one unit and one node. */
export interface CycleContext {
  readonly profile: DemandProfile;
  /**
   * Per GPU model name: the share of its free VRAM the constrained asks of
   * `profile.asks` will claim (scarcity.ts), for GpuScarcity. Absent when no
   * ask constrains the model (or that score weighs nothing).
   */
  readonly modelPressure?: ReadonlyMap<string, number>;
}

/** Per-call options: the seed (tie-breaks and the order candidates are visited in) and score weights. */
export interface PlacerOptions {
  seed: string;
  weights?: ScoreWeights;
  /**
   * At most this many feasible nodes are scored per unit, met in a seeded
   * pseudo-random walk over the nodes the index says may fit (see
   * place-units.ts). Default 32 (`defaultMaxScored`). With no more feasible
   * nodes than this, every one is scored; a unit no node takes is still
   * checked against every candidate, so none is left unplaced while a node
   * could take it.
   */
  maxScored?: number;
  /**
   * The time of the cycle (ms since the epoch, as `UnitRequest.readySinceMs`). With it, a unit that has
   * waited at least `reserveAfterMs` goes first and, when it fits nowhere, reserves the capable node
   * closest to fitting it (see README, "Reservations"). Absent: no unit is overdue (the rule is off).
   */
  nowMs?: number;
  /** How long a unit waits before it goes first and reserves a node; default `defaultReserveAfterMs` (5 minutes). */
  reserveAfterMs?: number;
  /**
   * The asks of recently arrived units (a DemandWindow's, profile.ts): the
   * distribution GpuFragmentation measures fragmentation against. Absent: the
   * asks of the cycle's own units.
   */
  recentAsks?: readonly DemandAsk[];
}
