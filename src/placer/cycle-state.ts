/**
 * A cycle's working copy of the cluster and the index over it.
 *
 * The snapshot is never mutated: each node gets a NodeView holding its free
 * CPU, memory, disk and per-GPU VRAM, and reserving a unit subtracts from the
 * view, so later units in the same cycle see what earlier ones took and the
 * cycle never over-commits.
 *
 * Index: schedulable nodes are grouped by trust level; within a group the
 * nodes with GPUs are kept sorted by (largest free VRAM on one GPU, node id).
 * For a gpu unit a binary search skips every node whose best GPU is too
 * small, and whole trust groups below the unit's tier are skipped, so only
 * nodes that pass the schedulable, trust and VRAM filters are visited. The
 * skipped nodes are still counted under the reason a full scan would give
 * them (the filter order in plugins/index.ts puts those three filters first
 * for exactly that reason).
 */
import { seededShuffle } from "./prng.ts";
import { Reason, type ReasonCode } from "./reasons.ts";
import { allowedTrustLevels, trustLevels } from "./trust.ts";
import type { ClusterSnapshot, NodeSnapshot, TrustLevel, UnitRequest } from "./types.ts";

/** A node as plugins see it during a cycle: the snapshot plus what is still free after this cycle's reservations. */
export interface NodeView {
  readonly node: NodeSnapshot;
  readonly freeCpuCores: number;
  readonly freeMemoryMb: number;
  readonly diskFreeMb: number;
  /** Free VRAM per GPU, parallel to `node.gpus`. */
  readonly gpuFreeVramMb: readonly number[];
  /** The largest entry of `gpuFreeVramMb`, or -1 for a node without GPUs. */
  readonly maxFreeVramMb: number;
}

interface WorkingNode {
  readonly node: NodeSnapshot;
  freeCpuCores: number;
  freeMemoryMb: number;
  diskFreeMb: number;
  gpuFreeVramMb: number[];
  maxFreeVramMb: number;
}

interface TrustGroup {
  /** Every schedulable node of this trust level. */
  readonly all: WorkingNode[];
  /** Schedulable nodes with at least one GPU, sorted by (maxFreeVramMb, id). */
  readonly byFreeVram: WorkingNode[];
  /** Schedulable nodes without a GPU. */
  readonly gpuless: number;
}

/** The nodes worth running the filters on, and the counts of the nodes the index skipped, by reason. */
export interface Candidates {
  readonly nodes: readonly NodeView[];
  readonly skipped: ReadonlyMap<ReasonCode, number>;
}

/** A cycle's mutable state: working node views, the index, and the seeded tie-break ranks. */
export interface Cycle {
  /** Nodes that could take `unit` as far as schedulability, trust and VRAM go. */
  candidates(unit: UnitRequest): Candidates;
  /** Position of a node in the seeded shuffle; lower wins a score tie. */
  tieRank(nodeId: string): number;
  /** Subtracts the unit's resources from the node (and GPU position `gpuPos` for a gpu unit). */
  reserve(view: NodeView, unit: UnitRequest, gpuPos: number): void;
  /** The number of nodes in the snapshot. */
  readonly size: number;
}

function compareKey(a: WorkingNode, maxFree: number, id: string): number {
  if (a.maxFreeVramMb !== maxFree) return a.maxFreeVramMb - maxFree;
  return a.node.id < id ? -1 : a.node.id > id ? 1 : 0;
}

/** First position whose (maxFree, id) is ≥ the key. */
function lowerBound(sorted: readonly WorkingNode[], maxFree: number, id: string): number {
  let lo = 0;
  let hi = sorted.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (compareKey(sorted[mid] as WorkingNode, maxFree, id) < 0) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

function maxOf(values: readonly number[]): number {
  return values.reduce((m, v) => Math.max(m, v), -1);
}

/**
 * The position in `view.gpuFreeVramMb` of the best-fit GPU for `vramMb`: the
 * one with the least free VRAM that is still enough (lowest position on a
 * tie), or -1 when no single GPU has enough. VRAM on two GPUs never adds up.
 */
export function bestGpu(view: NodeView, vramMb: number): number {
  let best = -1;
  view.gpuFreeVramMb.forEach((free, pos) => {
    if (free >= vramMb && (best === -1 || free < (view.gpuFreeVramMb[best] as number))) best = pos;
  });
  return best;
}

/** A NodeView over a snapshot node with nothing reserved yet (also handy for testing plugins alone). */
export function viewOf(node: NodeSnapshot): NodeView {
  const gpuFreeVramMb = node.gpus.map((g) => g.freeVramMb);
  return {
    node,
    freeCpuCores: node.freeCpuCores,
    freeMemoryMb: node.freeMemoryMb,
    diskFreeMb: node.diskFreeMb,
    gpuFreeVramMb,
    maxFreeVramMb: maxOf(gpuFreeVramMb),
  };
}

/**
 * Builds a cycle over `snapshot`: O(n log n) to index. Node ids must be unique.
 * The tie ranks come from a seeded shuffle of the ids in sorted order, so they
 * depend on the seed and the set of ids, never on the snapshot's order.
 */
export function createCycle(snapshot: ClusterSnapshot, seed: string): Cycle {
  const working = new Map<string, WorkingNode>();
  for (const node of snapshot.nodes) {
    if (working.has(node.id)) throw new Error(`placer: duplicate node id ${node.id} in snapshot`);
    const view = viewOf(node);
    working.set(node.id, { ...view, gpuFreeVramMb: [...view.gpuFreeVramMb] });
  }

  const groups = new Map<TrustLevel, TrustGroup>();
  let unschedulable = 0;
  for (const level of trustLevels) {
    const all = [...working.values()].filter((w) => w.node.schedulable && w.node.trustLevel === level);
    const byFreeVram = all
      .filter((w) => w.node.gpus.length > 0)
      .sort((a, b) => compareKey(a, b.maxFreeVramMb, b.node.id));
    groups.set(level, { all, byFreeVram, gpuless: all.length - byFreeVram.length });
  }
  for (const w of working.values()) if (!w.node.schedulable) unschedulable++;

  const ids = [...working.keys()].sort();
  const ranks = new Map<string, number>();
  seededShuffle(ids, seed).forEach((id, rank) => ranks.set(id, rank));

  return {
    size: working.size,
    candidates(unit) {
      const allowed = new Set(allowedTrustLevels(unit.sensitivity));
      const skipped = new Map<ReasonCode, number>();
      const add = (reason: ReasonCode, n: number) => {
        if (n > 0) skipped.set(reason, (skipped.get(reason) ?? 0) + n);
      };
      add(Reason.NodeUnschedulable, unschedulable);
      const nodes: WorkingNode[] = [];
      for (const [level, group] of groups) {
        if (!allowed.has(level)) {
          add(Reason.TrustBelowTier, group.all.length);
        } else if (unit.kind === "cpu") {
          nodes.push(...group.all);
        } else {
          // Every node before `from` has no GPU with enough free VRAM: skipped by binary search.
          const from = lowerBound(group.byFreeVram, unit.vramMb, "");
          add(Reason.NoGpu, group.gpuless);
          add(Reason.InsufficientVram, from);
          nodes.push(...group.byFreeVram.slice(from));
        }
      }
      return { nodes, skipped };
    },
    tieRank(nodeId) {
      return ranks.get(nodeId) ?? Number.MAX_SAFE_INTEGER;
    },
    reserve(view, unit, gpuPos) {
      const w = working.get(view.node.id);
      if (w === undefined) throw new Error(`placer: node ${view.node.id} is not in this cycle`);
      w.freeCpuCores -= unit.cpuCores;
      w.freeMemoryMb -= unit.memoryMb;
      w.diskFreeMb -= unit.diskMb;
      if (unit.kind !== "gpu") return;
      const free = w.gpuFreeVramMb[gpuPos];
      if (free === undefined) throw new Error(`placer: node ${w.node.id} has no GPU at position ${gpuPos}`);
      w.gpuFreeVramMb[gpuPos] = free - unit.vramMb;
      // Re-key the node in its sorted group: remove at the old key, insert at the new one.
      const sorted = (groups.get(w.node.trustLevel) as TrustGroup).byFreeVram;
      const at = lowerBound(sorted, w.maxFreeVramMb, w.node.id);
      if (sorted[at] !== w) throw new Error(`placer: index lost node ${w.node.id}`);
      sorted.splice(at, 1);
      w.maxFreeVramMb = maxOf(w.gpuFreeVramMb);
      sorted.splice(lowerBound(sorted, w.maxFreeVramMb, w.node.id), 0, w);
    },
  };
}
