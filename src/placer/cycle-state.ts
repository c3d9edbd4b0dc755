/**
 * The placer's working copy of the cluster and the indexes over it.
 *
 * The snapshot is never mutated: each node gets a WorkingNode holding its
 * free CPU, memory, disk and per-GPU VRAM, and reserving a unit subtracts
 * from it, so later units (in this cycle and, for a long-lived placer, in
 * later cycles) see what earlier ones took and nothing is over-committed.
 *
 * Indexes, one set per group of nodes that the same units may use (a trust
 * level, sandboxed or not), over the nodes that may take some unit only
 * (online, not paused or outside their owner's window, able to run units):
 * built once, O(n log n); kept up to date by every reservation and by
 * `syncState`, O(log n) search plus a memmove per changed entry.
 *
 * - slots: every GPU, sorted by (free VRAM, node id order, device position).
 *   For a gpu unit of v MB a binary search finds the first GPU with free ≥ v;
 *   the GPUs from there on are exactly those that fit, and nodes with none
 *   of them are counted as `insufficient_vram` without a visit.
 * - byDisk: every node, sorted by (free disk, node id order), nodes without
 *   a GPU apart from nodes with one: the same for cpu units.
 *
 * Groups below a unit's trust tier, and the unsandboxed groups for a
 * sensitive unit, are skipped whole. Because the index settles the node-level
 * rules (node-rules.ts), isolation, trust and VRAM (and disk for cpu units)
 * without visiting a node, those filters come first in plugins/index.ts: the
 * skipped counts then equal what a full scan would report.
 *
 * VRAM here is always what units may use: a GPU's free VRAM less what the
 * node's owner keeps (`usableVramMb`).
 *
 * The index order never depends on the seed (equal keys sort by node id), so
 * a cycle does not re-sort anything; the seed only sets `rank`, the score
 * tie-break (`reseed`, O(n)), and the placer's walk over the index.
 */
import type { GpuEligibility } from "./gpu-eligibility.ts";
import { failedConstraint, GpuConstraint, gpuCountOf, hasGpuConstraints } from "./gpu-rules.ts";
import { leastFragmentingGpus } from "./fragmentation.ts";
import { nodeBar, usableVramMb } from "./node-rules.ts";
import { seededShuffle } from "./prng.ts";
import type { ReasonCode } from "./reasons.ts";
import { trustLevels } from "./trust.ts";
import type { ClusterSnapshot, DemandAsk, GpuView, NodeSnapshot, TrustLevel, UnitRequest } from "./types.ts";

/** A node as plugins see it: the snapshot plus what is still free after the reservations made so far. */
export interface NodeView {
  readonly node: NodeSnapshot;
  readonly freeCpuCores: number;
  readonly freeMemoryMb: number;
  readonly diskFreeMb: number;
  /** Free VRAM per GPU that units may use (the owner's reserve left out), parallel to `node.gpus`. */
  readonly gpuFreeVramMb: readonly number[];
  /** How many more units the node accepts now (`NodeSnapshot.freeUnitSlots`; Infinity when it told no limit). */
  readonly freeUnitSlots: number;
}

/** The placer's mutable copy of one node (a NodeView to plugins). */
export interface WorkingNode extends NodeView {
  node: NodeSnapshot;
  freeCpuCores: number;
  freeMemoryMb: number;
  diskFreeMb: number;
  gpuFreeVramMb: number[];
  freeUnitSlots: number;
  /** Position in `ClusterState.nodes` and the typed arrays. */
  readonly idx: number;
  /** Position of the node's trust level in `trustLevels`. */
  readonly trust: number;
  /** Position of the node's group in `ClusterState.groups`; -1 for a node that takes no unit (never indexed). */
  readonly group: number;
}

/** Groups per trust level: sandboxed nodes, then nodes without a sandbox (public units only). */
const groupsPerTrust = 2;
/** How many groups a state has: in `trustLevels` order, each level's sandboxed group before its unsandboxed one. */
export const groupCount = trustLevels.length * groupsPerTrust;

/** The group a node is indexed in, or -1 when it takes no unit now (see `nodeBar`). */
function groupOf(node: NodeSnapshot): number {
  if (nodeBar(node) !== undefined) return -1;
  return trustLevels.indexOf(node.trustLevel) * groupsPerTrust + (node.isolation === "none" ? 1 : 0);
}

/**
 * The nodes of one trust level, sandboxed or not, that may take units now,
 * and their indexes. The indexes are typed arrays (not arrays of objects)
 * because a unit nothing takes walks every candidate: sequential numbers stay
 * in cache where object pointers would not.
 */
export interface NodeGroup {
  readonly level: TrustLevel;
  /** Position of `level` in `trustLevels`. */
  readonly trust: number;
  /** False for nodes that run units without a sandbox (isolation "none"): public units only. */
  readonly sandboxed: boolean;
  /** Nodes in the group. */
  readonly size: number;
  /** Of which with at least one GPU. */
  readonly gpuNodes: number;
  /** GPUs sorted by (free VRAM, node id order, position): free VRAM, node idx and GPU position, parallel. */
  readonly slotFree: Float64Array;
  readonly slotNode: Int32Array;
  readonly slotPos: Int32Array;
  /**
   * Node idxs sorted by (free disk, node id order): [0] nodes without a GPU,
   * [1] nodes with one. A cpu unit tries [0] first (see place-units.ts).
   */
  readonly byDisk: readonly [Int32Array, Int32Array];
}

/**
 * The placer's state: working nodes, per-node numbers the hot loop reads
 * (kept equal to the WorkingNode fields), indexes by group (see
 * `groupCount`) and counts.
 */
export interface ClusterState {
  readonly nodes: readonly WorkingNode[];
  readonly byId: ReadonlyMap<string, WorkingNode>;
  readonly cpu: Float64Array;
  readonly memory: Float64Array;
  readonly disk: Float64Array;
  /** Free unit slots per node (Infinity: no limit told). */
  readonly slots: Float64Array;
  /** GPUs of node idx are `gpuBase[idx]` .. `gpuBase[idx + 1] - 1` in the per-GPU arrays below. */
  readonly gpuBase: Int32Array;
  /**
   * Per GPU: which kind it is (model name, compute capability, CUDA version, total VRAM), an index
   * into `gpuKinds`. A unit's constraints are judged once per kind, not once per GPU (gpu-eligibility.ts).
   */
  readonly gpuKind: Int32Array;
  readonly gpuKinds: readonly GpuView[];
  /** Per GPU (`gpuBase` layout): its free VRAM that units may use, kept equal to `WorkingNode.gpuFreeVramMb`. */
  readonly gpuFree: Float64Array;
  /**
   * Per GPU kind: the free VRAM (below 0 counts as 0) of its GPUs on the nodes that may take units, kept up
   * to date with `gpuFree`: what each model has to offer, for GpuScarcity (scarcity.ts), in O(kinds).
   */
  readonly kindFree: Float64Array;
  /** Per node: `NodeSnapshot.reliability`. */
  readonly reliability: Float64Array;
  /** The datasets nodes cache (`NodeSnapshot.cachedDatasetIds`), as numbers (see {@link cachesDataset}). */
  datasets: DatasetIndex;
  /** Per-constraint GPU eligibility computed so far (gpu-eligibility.ts), by the constraints' key. */
  readonly eligibility: Map<string, GpuEligibility>;
  /** Position in node id order: the index's tie-break, fixed for the state's life. */
  readonly tie: Int32Array;
  /** Position in the cycle's seeded shuffle of node ids; lower wins a score tie (`reseed`). */
  readonly rank: Int32Array;
  /** The last decision that visited each node, so a node with several fitting GPUs is visited once. */
  readonly stamp: Int32Array;
  /** 1 for a node something was reserved on since the state was built or last synced (`syncState` skips the others). */
  readonly dirty: Uint8Array;
  /** Per node: bumped whenever its free resources change (a reservation, a sync), so per-node caches know they are stale. */
  readonly version: Int32Array;
  readonly groups: readonly NodeGroup[];
  /** Nodes that take no unit now (never indexed), by the first node-level rule that bars them. */
  readonly barred: ReadonlyMap<ReasonCode, number>;
  /** Every node in the snapshot. */
  readonly size: number;
  /** Node idxs sorted by node id: the input to the seeded shuffle. */
  readonly sortedById: readonly number[];
  /** Decision counter for `stamp`. */
  seq: number;
}

/**
 * Which datasets each node caches, with the ids numbered: node i's are `ids[base[i]] .. ids[base[i + 1] - 1]`.
 * The scorer reads a few numbers of one array per scored node instead of following the node to its Set.
 */
export interface DatasetIndex {
  readonly numberOf: ReadonlyMap<string, number>;
  readonly base: Int32Array;
  readonly ids: Int32Array;
}

function datasetIndex(nodes: readonly { node: NodeSnapshot }[]): DatasetIndex {
  const numberOf = new Map<string, number>();
  const base = new Int32Array(nodes.length + 1);
  const ids: number[] = [];
  nodes.forEach((w, i) => {
    for (const id of w.node.cachedDatasetIds) {
      let k = numberOf.get(id);
      if (k === undefined) {
        k = numberOf.size;
        numberOf.set(id, k);
      }
      ids.push(k);
    }
    base[i + 1] = ids.length;
  });
  return { numberOf, base, ids: Int32Array.from(ids) };
}

/** Whether node `i` caches the dataset numbered `dataset` (`DatasetIndex.numberOf`; -1, a dataset no node caches: false). */
export function cachesDataset(state: ClusterState, i: number, dataset: number): boolean {
  if (dataset < 0) return false;
  const { base, ids } = state.datasets;
  const to = base[i + 1] as number;
  for (let k = base[i] as number; k < to; k++) if (ids[k] === dataset) return true;
  return false;
}

/** Whether two nodes cache the same datasets. */
function sameDatasets(a: ReadonlySet<string>, b: ReadonlySet<string>): boolean {
  if (a === b) return true;
  if (a.size !== b.size) return false;
  for (const id of a) if (!b.has(id)) return false;
  return true;
}

/** First slot position whose key (free, tie, pos) is ≥ the given key; (v, -1, -1) finds the first GPU with free ≥ v. */
export function lowerBoundSlot(state: ClusterState, group: NodeGroup, free: number, tie: number, pos: number): number {
  const { slotFree, slotNode, slotPos } = group;
  let lo = 0;
  let hi = slotFree.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    const f = slotFree[mid] as number;
    const t = state.tie[slotNode[mid] as number] as number;
    if (f < free || (f === free && (t < tie || (t === tie && (slotPos[mid] as number) < pos)))) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/** First position in `order` (one of a group's `byDisk`) whose key (free disk, tie) is ≥ the given key. */
export function lowerBoundDisk(state: ClusterState, order: Int32Array, disk: number, tie: number): number {
  let lo = 0;
  let hi = order.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    const i = order[mid] as number;
    const d = state.disk[i] as number;
    if (d < disk || (d === disk && (state.tie[i] as number) < tie)) lo = mid + 1;
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

/**
 * Which GPUs of the node a gpu unit gets: positions in `view.gpuFreeVramMb`,
 * ascending, `gpuCount` of them, each satisfying the unit's constraints
 * (gpu-rules.ts) with free VRAM ≥ its `vramMb`; empty when the node has fewer
 * such GPUs (and for a cpu unit). The rule is best fit: the GPUs with the
 * least free VRAM that is still enough (lower position on a tie), so the
 * roomier GPUs stay whole for larger units. The one place the choice is
 * made: the placer reserves exactly these and breaks score ties on what
 * they leave free (`leftOver`).
 *
 * Given the arriving work's `asks` (when the fragmentation score is on), a
 * one-GPU unit gets instead the GPU where fragmentation grows least
 * (fragmentation.ts), best fit among equals: the GPU choice FGD makes.
 */
export function chooseGpus(view: NodeView, unit: UnitRequest, asks?: readonly DemandAsk[]): number[] {
  const count = gpuCountOf(unit);
  if (count === 0) return [];
  const constrained = hasGpuConstraints(unit);
  const byFragmentation = count === 1 && asks !== undefined && asks.length > 0;
  if (count === 1 && !constrained && !byFragmentation) {
    const pos = bestGpu(view, unit.vramMb);
    return pos === -1 ? [] : [pos];
  }
  const free = view.gpuFreeVramMb;
  const fits: number[] = [];
  for (let pos = 0; pos < free.length; pos++) {
    if ((free[pos] as number) < unit.vramMb) continue;
    if (constrained && failedConstraint(unit, view.node.gpus[pos] as GpuView) !== GpuConstraint.None) continue;
    fits.push(pos);
  }
  if (fits.length < count) return [];
  if (byFragmentation) {
    const node = { gpuFreeVramMb: free, gpus: view.node.gpus, freeCpuCores: view.freeCpuCores, freeMemoryMb: view.freeMemoryMb };
    return leastFragmentingGpus(node, { gpuCount: 1, vramMb: unit.vramMb, cpuCores: unit.cpuCores, memoryMb: unit.memoryMb }, fits, asks)?.gpus ?? [];
  }
  fits.sort((a, b) => (free[a] as number) - (free[b] as number) || a - b);
  return fits.slice(0, count).sort((a, b) => a - b);
}

/** A NodeView over a snapshot node with nothing reserved yet (also handy for testing plugins alone). */
export function viewOf(node: NodeSnapshot): NodeView {
  return {
    node,
    freeCpuCores: node.freeCpuCores,
    freeMemoryMb: node.freeMemoryMb,
    diskFreeMb: node.diskFreeMb,
    gpuFreeVramMb: node.gpus.map((g) => usableVramMb(node, g)),
    freeUnitSlots: slotsOf(node),
  };
}

/** The node's free unit slots, Infinity when it told no limit. */
function slotsOf(node: NodeSnapshot): number {
  return node.freeUnitSlots ?? Infinity;
}

/** What makes two GPUs the same kind for the unit constraints and capability checks. */
function kindKey(g: GpuView): string {
  return `${g.vramMb}\u0000${g.name}\u0000${g.computeCapability ?? ""}\u0000${g.cudaVersion ?? ""}`;
}

/** Whether two GPU views are the same device of the same kind. */
function sameGpu(a: GpuView, b: GpuView): boolean {
  return a.index === b.index && a.name === b.name && a.vramMb === b.vramMb && a.computeCapability === b.computeCapability && a.cudaVersion === b.cudaVersion;
}

const small = (x: number, bits: number) => Number.isInteger(x) && x >= 0 && x < 2 ** bits;

/** Sorts a group's slots by (free, tie, pos) in place. */
function sortSlots(tie: Int32Array, group: NodeGroup): void {
  const { slotFree, slotNode, slotPos } = group;
  const n = slotFree.length;
  if (tie.length < 2 ** 24 && slotFree.every((f) => small(f, 20)) && slotPos.every((p) => small(p, 8))) {
    // The usual case (whole MB, < 1 TB per GPU): sort one packed number per slot natively, no comparator.
    const byTie = new Int32Array(tie.length);
    for (let k = 0; k < n; k++) byTie[tie[slotNode[k] as number] as number] = slotNode[k] as number;
    const keys = Float64Array.from(slotFree, (f, k) => f * 2 ** 32 + (tie[slotNode[k] as number] as number) * 2 ** 8 + (slotPos[k] as number)).sort();
    for (let k = 0; k < n; k++) {
      const key = keys[k] as number;
      slotFree[k] = Math.floor(key / 2 ** 32);
      slotNode[k] = byTie[Math.floor(key / 2 ** 8) % 2 ** 24] as number;
      slotPos[k] = key % 2 ** 8;
    }
    return;
  }
  const order = Array.from(slotFree, (_, k) => k).sort(
    (a, b) =>
      (slotFree[a] as number) - (slotFree[b] as number) ||
      (tie[slotNode[a] as number] as number) - (tie[slotNode[b] as number] as number) ||
      (slotPos[a] as number) - (slotPos[b] as number),
  );
  const free = Float64Array.from(order, (k) => slotFree[k] as number);
  const node = Int32Array.from(order, (k) => slotNode[k] as number);
  const pos = Int32Array.from(order, (k) => slotPos[k] as number);
  slotFree.set(free);
  slotNode.set(node);
  slotPos.set(pos);
}

/** Sorts one of a group's `byDisk` arrays by (free disk, tie) in place. */
function sortByDisk(state: { disk: Float64Array; tie: Int32Array }, byDisk: Int32Array): void {
  const { disk, tie } = state;
  if (tie.length < 2 ** 24 && byDisk.every((i) => small(disk[i] as number, 28))) {
    const byTie = new Int32Array(tie.length);
    for (const i of byDisk) byTie[tie[i] as number] = i;
    const keys = Float64Array.from(byDisk, (i) => (disk[i] as number) * 2 ** 24 + (tie[i] as number)).sort();
    keys.forEach((key, k) => {
      byDisk[k] = byTie[key % 2 ** 24] as number;
    });
  } else {
    byDisk.sort((a, b) => (disk[a] as number) - (disk[b] as number) || (tie[a] as number) - (tie[b] as number));
  }
}

/** Nodes that take no unit, counted by the rule that bars each. */
function barredCounts(nodes: readonly WorkingNode[]): Map<ReasonCode, number> {
  const barred = new Map<ReasonCode, number>();
  for (const w of nodes) {
    if (w.group !== -1) continue;
    const reason = nodeBar(w.node) as ReasonCode;
    barred.set(reason, (barred.get(reason) ?? 0) + 1);
  }
  return barred;
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
    const w: WorkingNode = {
      node,
      freeCpuCores: node.freeCpuCores,
      freeMemoryMb: node.freeMemoryMb,
      diskFreeMb: node.diskFreeMb,
      gpuFreeVramMb: node.gpus.map((g) => usableVramMb(node, g)),
      freeUnitSlots: slotsOf(node),
      idx: nodes.length,
      trust: trustLevels.indexOf(node.trustLevel),
      group: groupOf(node),
    };
    nodes.push(w);
    byId.set(node.id, w);
  }
  const n = nodes.length;
  const sortedById = nodes
    .map((w) => w.idx)
    .sort((a, b) => {
      const x = (nodes[a] as WorkingNode).node.id;
      const y = (nodes[b] as WorkingNode).node.id;
      return x < y ? -1 : x > y ? 1 : 0;
    });
  const tie = new Int32Array(n);
  sortedById.forEach((idx, k) => {
    tie[idx] = k;
  });
  const disk = Float64Array.from(nodes, (w) => w.diskFreeMb);
  const groups = Array.from({ length: groupCount }, (_, g): NodeGroup => {
    const trust = Math.floor(g / groupsPerTrust);
    const members = nodes.filter((w) => w.group === g);
    const slots = members.flatMap((w) => w.gpuFreeVramMb.map((free, pos) => ({ free, idx: w.idx, pos })));
    const group: NodeGroup = {
      level: trustLevels[trust] as TrustLevel,
      trust,
      sandboxed: g % groupsPerTrust === 0,
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
    sortSlots(tie, group);
    for (const order of group.byDisk) sortByDisk({ disk, tie }, order);
    return group;
  });
  const gpuBase = new Int32Array(n + 1);
  for (let i = 0; i < n; i++) gpuBase[i + 1] = (gpuBase[i] as number) + (nodes[i] as WorkingNode).node.gpus.length;
  const gpuKind = new Int32Array(gpuBase[n] as number);
  const gpuKinds: GpuView[] = [];
  const kindIds = new Map<string, number>();
  for (const w of nodes) {
    w.node.gpus.forEach((g, pos) => {
      const key = kindKey(g);
      let id = kindIds.get(key);
      if (id === undefined) {
        id = gpuKinds.length;
        kindIds.set(key, id);
        gpuKinds.push(g);
      }
      gpuKind[(gpuBase[w.idx] as number) + pos] = id;
    });
  }
  const gpuFree = new Float64Array(gpuBase[n] as number);
  for (const w of nodes) gpuFree.set(w.gpuFreeVramMb, gpuBase[w.idx] as number);
  const kindFree = new Float64Array(gpuKinds.length);
  for (const w of nodes) {
    if (w.group === -1) continue;
    const base = gpuBase[w.idx] as number;
    w.gpuFreeVramMb.forEach((free, pos) => {
      const kind = gpuKind[base + pos] as number;
      kindFree[kind] = (kindFree[kind] as number) + Math.max(0, free);
    });
  }
  return {
    nodes,
    byId,
    gpuFree,
    kindFree,
    reliability: Float64Array.from(nodes, (w) => w.node.reliability),
    datasets: datasetIndex(nodes),
    cpu: Float64Array.from(nodes, (w) => w.freeCpuCores),
    memory: Float64Array.from(nodes, (w) => w.freeMemoryMb),
    disk,
    slots: Float64Array.from(nodes, (w) => w.freeUnitSlots),
    gpuBase,
    gpuKind,
    gpuKinds,
    eligibility: new Map(),
    tie,
    rank: new Int32Array(n),
    stamp: new Int32Array(n),
    dirty: new Uint8Array(n),
    version: new Int32Array(n),
    groups,
    barred: barredCounts(nodes),
    size: n,
    sortedById,
    seq: 0,
  };
}

/** The free VRAM (MB) of each GPU model, by name, on the nodes that may take units: O(GPU kinds). */
export function freeVramByModel(state: ClusterState): Map<string, number> {
  const byName = new Map<string, number>();
  state.gpuKinds.forEach((kind, k) => {
    byName.set(kind.name, (byName.get(kind.name) ?? 0) + (state.kindFree[k] as number));
  });
  return byName;
}

/**
 * Sets the score tie ranks from a seeded shuffle of the sorted node ids (so
 * they depend on the seed and the set of ids, never on the snapshot's
 * order): O(n). The indexes do not depend on the seed.
 */
export function reseed(state: ClusterState, seed: string): void {
  seededShuffle(state.sortedById, seed).forEach((idx, rank) => {
    state.rank[idx] = rank;
  });
}

/**
 * Moves entry `from` of each array to `to`, shifting the ones between by one
 * (a memmove, no allocation).
 */
function move(arrays: readonly (Float64Array | Int32Array)[], from: number, to: number): void {
  if (to === from) return;
  for (const a of arrays) {
    const item = a[from] as number;
    if (to < from) a.copyWithin(to + 1, to, from);
    else a.copyWithin(from, from + 1, to + 1);
    a[to] = item;
  }
}

/** Sets node `w`'s free disk to `value` and moves its `byDisk` entry to match. */
function setDisk(state: ClusterState, w: WorkingNode, value: number): void {
  if (value === w.diskFreeMb) return;
  if (w.group !== -1) {
    const group = state.groups[w.group] as NodeGroup;
    const order = group.byDisk[w.gpuFreeVramMb.length > 0 ? 1 : 0];
    const tie = state.tie[w.idx] as number;
    const at = lowerBoundDisk(state, order, w.diskFreeMb, tie);
    if (order[at] !== w.idx) throw new Error(`placer: disk index lost node ${w.node.id}`);
    // Where the new key goes, found while the array is still sorted; an entry moving right lands one before it.
    const found = lowerBoundDisk(state, order, value, tie);
    move([order], at, found > at ? found - 1 : found);
  }
  w.diskFreeMb = value;
  state.disk[w.idx] = value;
}

/** Sets the free VRAM of GPU `pos` of node `w` to `value` and moves its slot to match. */
function setVram(state: ClusterState, w: WorkingNode, pos: number, value: number): void {
  const free = w.gpuFreeVramMb[pos];
  if (free === undefined) throw new Error(`placer: node ${w.node.id} has no GPU at position ${pos}`);
  if (value === free) return;
  if (w.group !== -1) {
    const group = state.groups[w.group] as NodeGroup;
    const tie = state.tie[w.idx] as number;
    const at = lowerBoundSlot(state, group, free, tie, pos);
    if (group.slotNode[at] !== w.idx || group.slotPos[at] !== pos) throw new Error(`placer: VRAM index lost GPU ${pos} of node ${w.node.id}`);
    const found = lowerBoundSlot(state, group, value, tie, pos);
    group.slotFree[at] = value;
    move([group.slotFree, group.slotNode, group.slotPos], at, found > at ? found - 1 : found);
    const kind = state.gpuKind[(state.gpuBase[w.idx] as number) + pos] as number;
    state.kindFree[kind] = (state.kindFree[kind] as number) + Math.max(0, value) - Math.max(0, free);
  }
  w.gpuFreeVramMb[pos] = value;
  state.gpuFree[(state.gpuBase[w.idx] as number) + pos] = value;
}

/**
 * Subtracts a unit's resources from `w` (`vramMb` from each of its GPUs at
 * `gpuPositions`; none for a cpu unit) and one of its free unit slots, and
 * re-keys the node's index entries.
 */
export function reserve(
  state: ClusterState,
  w: WorkingNode,
  unit: { vramMb: number; diskMb: number; cpuCores: number; memoryMb: number },
  gpuPositions: readonly number[],
): void {
  if (w.group === -1) throw new Error(`placer: node ${w.node.id} takes no unit`);
  state.dirty[w.idx] = 1;
  state.version[w.idx] = (state.version[w.idx] as number) + 1;
  w.freeCpuCores -= unit.cpuCores;
  w.freeMemoryMb -= unit.memoryMb;
  w.freeUnitSlots -= 1;
  state.cpu[w.idx] = w.freeCpuCores;
  state.memory[w.idx] = w.freeMemoryMb;
  state.slots[w.idx] = w.freeUnitSlots;
  setDisk(state, w, w.diskFreeMb - unit.diskMb);
  for (const pos of gpuPositions) setVram(state, w, pos, (w.gpuFreeVramMb[pos] ?? NaN) - unit.vramMb);
}

/**
 * Makes `state` what {@link createState} would build from `snapshot`, in
 * place, when the snapshot has the same nodes (ids), each with the same
 * trust level, group (whether it takes units, and with a sandbox or not),
 * node-level bar and GPU devices (index, model, size, compute capability and
 * CUDA version: the GPU eligibility cached in the state depends on them):
 * free resources (and free unit slots) are copied
 * and only the index entries that changed move (a node that is the same
 * snapshot object as last time, with nothing reserved on it since, is
 * skipped). Returns false, with the state untouched, when the cluster's
 * shape changed; then build a new one. O(n) plus O(log n + memmove) per
 * changed entry.
 */
export function syncState(state: ClusterState, snapshot: ClusterSnapshot): boolean {
  const n = state.size;
  if (snapshot.nodes.length !== n) return false;
  // Which working node each snapshot node is; a node met twice is a duplicate id.
  const at = new Int32Array(n);
  const met = new Uint8Array(n);
  for (let k = 0; k < n; k++) {
    const node = snapshot.nodes[k] as NodeSnapshot;
    // Usually the snapshot lists the nodes in the same order as before: no map lookup then.
    const same = state.nodes[k] as WorkingNode;
    const w = same.node.id === node.id ? same : state.byId.get(node.id);
    if (w === undefined) return false;
    if (met[w.idx] === 1) throw new Error(`placer: duplicate node id ${node.id} in snapshot`);
    met[w.idx] = 1;
    at[k] = w.idx;
    if (w.node === node) continue;
    if (w.node.trustLevel !== node.trustLevel || w.group !== groupOf(node) || nodeBar(w.node) !== nodeBar(node)) return false;
    const before = w.node.gpus;
    const after = node.gpus;
    if (before.length !== after.length) return false;
    for (let pos = 0; pos < after.length; pos++) if (!sameGpu(before[pos] as GpuView, after[pos] as GpuView)) return false;
  }
  let datasetsChanged = false;
  for (let k = 0; k < n; k++) {
    const node = snapshot.nodes[k] as NodeSnapshot;
    const w = state.nodes[at[k] as number] as WorkingNode;
    // The same (immutable) snapshot node and nothing reserved on it since: the copy already matches it.
    if (w.node === node && state.dirty[w.idx] === 0) continue;
    state.dirty[w.idx] = 0;
    state.version[w.idx] = (state.version[w.idx] as number) + 1;
    if (!datasetsChanged && !sameDatasets(w.node.cachedDatasetIds, node.cachedDatasetIds)) datasetsChanged = true;
    state.reliability[w.idx] = node.reliability;
    w.node = node;
    w.freeCpuCores = node.freeCpuCores;
    w.freeMemoryMb = node.freeMemoryMb;
    w.freeUnitSlots = slotsOf(node);
    state.cpu[w.idx] = node.freeCpuCores;
    state.memory[w.idx] = node.freeMemoryMb;
    state.slots[w.idx] = w.freeUnitSlots;
    setDisk(state, w, node.diskFreeMb);
    const gpus = node.gpus;
    for (let pos = 0; pos < gpus.length; pos++) setVram(state, w, pos, usableVramMb(node, gpus[pos] as GpuView));
  }
  if (datasetsChanged) state.datasets = datasetIndex(state.nodes);
  return true;
}
