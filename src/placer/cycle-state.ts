/**
 * The placer's working copy of the cluster and the indexes over it.
 *
 * The snapshot is never mutated: each node gets a WorkingNode holding its
 * free CPU, memory, disk and per-GPU VRAM, and reserving a unit subtracts
 * from it, so later units (in this cycle and, for a long-lived placer, in
 * later cycles) see what earlier ones took and nothing is over-committed.
 *
 * Indexes, one set per trust level, over schedulable nodes only (built once,
 * O(n log n); kept up to date by every reservation, O(log n) search plus a
 * memmove):
 *
 * - slots: every GPU, sorted by (free VRAM, tie rank, device position).
 *   For a gpu unit of v MB a binary search finds the first GPU with free ≥ v;
 *   walking on from there visits GPUs in best-fit order, and the first GPU met
 *   of a node is that node's best-fit GPU. Nodes never met have no GPU that
 *   fits, so they are counted as `insufficient_vram` without a visit.
 * - byDisk: every node, sorted by (free disk, tie rank), nodes without a GPU
 *   apart from nodes with one: the same for cpu units, whose bin-pack score
 *   is the disk fit.
 *
 * Trust groups below a unit's tier are skipped whole. Because the index
 * settles schedulability, trust and VRAM (and disk for cpu units) without
 * visiting a node, those filters come first in plugins/index.ts: the skipped
 * counts then equal what a full scan would report.
 *
 * Ties sort by the node's rank in a seeded shuffle of the node ids, so equal
 * fits are visited in an order that changes with the cycle's seed instead of
 * always favouring the same ids; `reseed` re-ranks and re-sorts, O(n log n).
 */
import { seededShuffle } from "./prng.ts";
import { trustLevels } from "./trust.ts";
import type { ClusterSnapshot, NodeSnapshot, TrustLevel } from "./types.ts";

/** A node as plugins see it: the snapshot plus what is still free after the reservations made so far. */
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

/** The placer's mutable copy of one node (a NodeView to plugins). */
export interface WorkingNode extends NodeView {
  freeCpuCores: number;
  freeMemoryMb: number;
  diskFreeMb: number;
  gpuFreeVramMb: number[];
  maxFreeVramMb: number;
  /** Position in `ClusterState.nodes` and the typed arrays. */
  readonly idx: number;
  /** Position of the node's trust level in `trustLevels`. */
  readonly trust: number;
}

/**
 * Schedulable nodes of one trust level and their indexes. The indexes are
 * typed arrays (not arrays of objects) because a unit nothing takes walks
 * every candidate: sequential numbers stay in cache where object pointers
 * would not.
 */
export interface TrustGroup {
  readonly level: TrustLevel;
  /** Schedulable nodes of this level. */
  readonly size: number;
  /** Of which with at least one GPU. */
  readonly gpuNodes: number;
  /** GPUs sorted by (free VRAM, node rank, position): free VRAM, node idx and GPU position, parallel. */
  readonly slotFree: Float64Array;
  readonly slotNode: Int32Array;
  readonly slotPos: Int32Array;
  /**
   * Node idxs sorted by (free disk, rank): [0] nodes without a GPU, [1]
   * nodes with one. A cpu unit tries [0] first (see place-units.ts).
   */
  readonly byDisk: readonly [Int32Array, Int32Array];
}

/**
 * The placer's state: working nodes, per-node numbers the hot loop reads
 * (kept equal to the WorkingNode fields), indexes by trust level (in
 * `trustLevels` order) and counts.
 */
export interface ClusterState {
  readonly nodes: readonly WorkingNode[];
  readonly byId: ReadonlyMap<string, WorkingNode>;
  readonly cpu: Float64Array;
  readonly memory: Float64Array;
  readonly disk: Float64Array;
  /** Position in the seeded shuffle of node ids; lower wins a score tie. */
  readonly rank: Int32Array;
  /** The last decision that visited each node, so a node with several fitting GPUs is scored once. */
  readonly stamp: Int32Array;
  readonly groups: readonly TrustGroup[];
  /** Nodes the snapshot marks unschedulable (never indexed). */
  readonly unschedulable: number;
  /** Every node in the snapshot. */
  readonly size: number;
  /** Node idxs sorted by node id: the input to the seeded shuffle. */
  readonly sortedById: readonly number[];
  /** Decision counter for `stamp`. */
  seq: number;
}

/** First slot position whose key (free, rank, pos) is ≥ the given key; (v, -1, -1) finds the first GPU with free ≥ v. */
export function lowerBoundSlot(state: ClusterState, group: TrustGroup, free: number, rank: number, pos: number): number {
  const { slotFree, slotNode, slotPos } = group;
  let lo = 0;
  let hi = slotFree.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    const f = slotFree[mid] as number;
    const r = state.rank[slotNode[mid] as number] as number;
    if (f < free || (f === free && (r < rank || (r === rank && (slotPos[mid] as number) < pos)))) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/** First position in `order` (one of a group's `byDisk`) whose key (free disk, rank) is ≥ the given key. */
export function lowerBoundDisk(state: ClusterState, order: Int32Array, disk: number, rank: number): number {
  let lo = 0;
  let hi = order.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    const i = order[mid] as number;
    const d = state.disk[i] as number;
    if (d < disk || (d === disk && (state.rank[i] as number) < rank)) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/**
 * The position in `view.gpuFreeVramMb` of the best-fit GPU for `vramMb`: the
 * one with the least free VRAM that is still enough (lowest position on a
 * tie), or -1 when no single GPU has enough. VRAM on two GPUs never adds up.
 */
export function bestGpu(view: NodeView, vramMb: number): number {
  const free = view.gpuFreeVramMb;
  let best = -1;
  for (let pos = 0; pos < free.length; pos++) {
    const f = free[pos] as number;
    if (f >= vramMb && (best === -1 || f < (free[best] as number))) best = pos;
  }
  return best;
}

function maxOf(values: readonly number[]): number {
  let m = -1;
  for (const v of values) if (v > m) m = v;
  return m;
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
 * Builds the working copy and indexes over `snapshot`: O(n log n). Node ids
 * must be unique. Call {@link reseed} before placing (it sets the tie ranks).
 */
export function createState(snapshot: ClusterSnapshot): ClusterState {
  const byId = new Map<string, WorkingNode>();
  const nodes: WorkingNode[] = [];
  for (const node of snapshot.nodes) {
    if (byId.has(node.id)) throw new Error(`placer: duplicate node id ${node.id} in snapshot`);
    const gpuFreeVramMb = node.gpus.map((g) => g.freeVramMb);
    const w: WorkingNode = {
      node,
      freeCpuCores: node.freeCpuCores,
      freeMemoryMb: node.freeMemoryMb,
      diskFreeMb: node.diskFreeMb,
      gpuFreeVramMb,
      maxFreeVramMb: maxOf(gpuFreeVramMb),
      idx: nodes.length,
      trust: trustLevels.indexOf(node.trustLevel),
    };
    nodes.push(w);
    byId.set(node.id, w);
  }
  const n = nodes.length;
  const groups = trustLevels.map((level, trust): TrustGroup => {
    const members = nodes.filter((w) => w.node.schedulable && w.trust === trust);
    const slots = members.flatMap((w) => w.gpuFreeVramMb.map((free, pos) => ({ free, idx: w.idx, pos })));
    return {
      level,
      size: members.length,
      gpuNodes: members.filter((w) => w.gpuFreeVramMb.length > 0).length,
      slotFree: Float64Array.from(slots, (s) => s.free),
      slotNode: Int32Array.from(slots, (s) => s.idx),
      slotPos: Int32Array.from(slots, (s) => s.pos),
      byDisk: [
        Int32Array.from(members.filter((w) => w.gpuFreeVramMb.length === 0), (w) => w.idx),
        Int32Array.from(members.filter((w) => w.gpuFreeVramMb.length > 0), (w) => w.idx),
      ],
    };
  });
  const sortedById = nodes
    .map((w) => w.idx)
    .sort((a, b) => {
      const x = (nodes[a] as WorkingNode).node.id;
      const y = (nodes[b] as WorkingNode).node.id;
      return x < y ? -1 : x > y ? 1 : 0;
    });
  return {
    nodes,
    byId,
    cpu: Float64Array.from(nodes, (w) => w.freeCpuCores),
    memory: Float64Array.from(nodes, (w) => w.freeMemoryMb),
    disk: Float64Array.from(nodes, (w) => w.diskFreeMb),
    rank: new Int32Array(n),
    stamp: new Int32Array(n),
    groups,
    unschedulable: nodes.filter((w) => !w.node.schedulable).length,
    size: n,
    sortedById,
    seq: 0,
  };
}

/**
 * Sets the tie ranks from a seeded shuffle of the sorted node ids (so they
 * depend on the seed and the set of ids, never on the snapshot's order) and
 * re-sorts the indexes by the new ranks: O(n log n).
 */
export function reseed(state: ClusterState, seed: string): void {
  const idxByRank = new Int32Array(state.size);
  seededShuffle(state.sortedById, seed).forEach((idx, rank) => {
    state.rank[idx] = rank;
    idxByRank[rank] = idx;
  });
  const { rank, disk } = state;
  const small = (x: number, bits: number) => Number.isInteger(x) && x >= 0 && x < 2 ** bits;
  const packable = state.size < 2 ** 24;
  for (const group of state.groups) {
    const { slotFree, slotNode, slotPos } = group;
    if (packable && slotFree.every((f) => small(f, 20)) && slotPos.every((p) => small(p, 8))) {
      // The usual case (whole MB, < 1 TB per GPU): sort one packed number per slot natively, no comparator.
      const keys = Float64Array.from(slotFree, (f, k) => f * 2 ** 32 + (rank[slotNode[k] as number] as number) * 2 ** 8 + (slotPos[k] as number)).sort();
      keys.forEach((key, k) => {
        slotFree[k] = Math.floor(key / 2 ** 32);
        slotNode[k] = idxByRank[Math.floor(key / 2 ** 8) % 2 ** 24] as number;
        slotPos[k] = key % 2 ** 8;
      });
    } else {
      const order = Array.from(slotFree, (_, k) => k).sort(
        (a, b) =>
          (slotFree[a] as number) - (slotFree[b] as number) ||
          (rank[slotNode[a] as number] as number) - (rank[slotNode[b] as number] as number) ||
          (slotPos[a] as number) - (slotPos[b] as number),
      );
      const free = Float64Array.from(order, (k) => slotFree[k] as number);
      const node = Int32Array.from(order, (k) => slotNode[k] as number);
      const pos = Int32Array.from(order, (k) => slotPos[k] as number);
      slotFree.set(free);
      slotNode.set(node);
      slotPos.set(pos);
    }
    for (const byDisk of group.byDisk) {
      if (packable && byDisk.every((i) => small(disk[i] as number, 28))) {
        const keys = Float64Array.from(byDisk, (i) => (disk[i] as number) * 2 ** 24 + (rank[i] as number)).sort();
        keys.forEach((key, k) => {
          byDisk[k] = idxByRank[key % 2 ** 24] as number;
        });
      } else {
        byDisk.sort((a, b) => (disk[a] as number) - (disk[b] as number) || (rank[a] as number) - (rank[b] as number));
      }
    }
  }
}

/** Moves entry `from` to `to` (≤ from) in each array, shifting the ones between right: a memmove, no allocation. */
function moveLeft(arrays: readonly (Float64Array | Int32Array)[], from: number, to: number): void {
  if (to === from) return;
  for (const a of arrays) {
    const item = a[from] as number;
    a.copyWithin(to + 1, to, from);
    a[to] = item;
  }
}

/**
 * Subtracts a unit's resources from `w` (and from its GPU at `gpuPos` for a
 * gpu unit; -1 for a cpu unit) and re-keys the node's index entries. Requests
 * are non-negative, so keys only fall and entries only move left.
 */
export function reserve(
  state: ClusterState,
  w: WorkingNode,
  unit: { vramMb: number; diskMb: number; cpuCores: number; memoryMb: number },
  gpuPos: number,
): void {
  const group = state.groups[w.trust];
  if (group === undefined || !w.node.schedulable) throw new Error(`placer: node ${w.node.id} is not schedulable`);
  const rank = state.rank[w.idx] as number;
  w.freeCpuCores -= unit.cpuCores;
  w.freeMemoryMb -= unit.memoryMb;
  state.cpu[w.idx] = w.freeCpuCores;
  state.memory[w.idx] = w.freeMemoryMb;
  if (unit.diskMb !== 0) {
    const order = group.byDisk[w.gpuFreeVramMb.length > 0 ? 1 : 0];
    const at = lowerBoundDisk(state, order, w.diskFreeMb, rank);
    if (order[at] !== w.idx) throw new Error(`placer: disk index lost node ${w.node.id}`);
    // Where the new key goes, found before the entry changes (the array stays sorted for the search).
    const to = lowerBoundDisk(state, order, w.diskFreeMb - unit.diskMb, rank);
    w.diskFreeMb -= unit.diskMb;
    state.disk[w.idx] = w.diskFreeMb;
    moveLeft([order], at, to);
  }
  if (gpuPos === -1) return;
  const free = w.gpuFreeVramMb[gpuPos];
  if (free === undefined) throw new Error(`placer: node ${w.node.id} has no GPU at position ${gpuPos}`);
  if (unit.vramMb !== 0) {
    const at = lowerBoundSlot(state, group, free, rank, gpuPos);
    if (group.slotNode[at] !== w.idx || group.slotPos[at] !== gpuPos) throw new Error(`placer: VRAM index lost GPU ${gpuPos} of node ${w.node.id}`);
    const to = lowerBoundSlot(state, group, free - unit.vramMb, rank, gpuPos);
    group.slotFree[at] = free - unit.vramMb;
    moveLeft([group.slotFree, group.slotNode, group.slotPos], at, to);
  }
  w.gpuFreeVramMb[gpuPos] = free - unit.vramMb;
  w.maxFreeVramMb = maxOf(w.gpuFreeVramMb);
}
