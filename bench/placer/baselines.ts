/**
 * A flat (struct-of-arrays) copy of a cluster, the two baseline placers the
 * benchmark compares against, and the stranded-VRAM metric. The baselines
 * check exactly the placer's hard rules (schedulable, trust tier, `gpuCount`
 * GPUs of one node that satisfy the unit's GPU constraints, each with enough
 * free VRAM, excluded nodes, disk, cores, memory, a free unit slot) and
 * differ only in which feasible node (and GPUs) they take.
 */
import { failedConstraint, GpuConstraint, gpuCountOf, hasGpuConstraints } from "../../src/placer/gpu-rules.ts";
import { allowedTrustLevels } from "../../src/placer/trust.ts";
import type { GpuView, NodeSnapshot, Placement, TrustLevel, UnitRequest } from "../../src/placer/types.ts";
import type { Rng } from "./generate.ts";

const trustOrder: readonly TrustLevel[] = ["community", "verified", "controlled"];

/** Nodes sorted by id (first-fit's order), resources in typed arrays, GPUs in one CSR array. */
export interface FlatCluster {
  readonly n: number;
  readonly ids: readonly string[];
  readonly indexOf: ReadonlyMap<string, number>;
  readonly trust: Int8Array;
  readonly schedulable: Uint8Array;
  readonly cpu: Float64Array;
  readonly mem: Float64Array;
  readonly disk: Float64Array;
  /** Free unit slots (Infinity: no limit told). */
  readonly slots: Float64Array;
  /** GPUs of node i are gpuStart[i] .. gpuStart[i+1]-1. */
  readonly gpuStart: Int32Array;
  readonly gpuFree: Float64Array;
  readonly gpuTotal: Float64Array;
  readonly gpuDevice: Int32Array;
  /** Per GPU: its kind (model and versions), an index into `kinds`, so a unit's constraints are judged per kind. */
  readonly gpuKind: Int32Array;
  readonly kinds: readonly GpuView[];
}

/** A flat copy of `nodes` (the snapshot itself is left alone). */
export function flatten(nodes: readonly NodeSnapshot[]): FlatCluster {
  const sorted = [...nodes].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  const n = sorted.length;
  const gpuCount = sorted.reduce((a, node) => a + node.gpus.length, 0);
  const c: FlatCluster = {
    n,
    ids: sorted.map((node) => node.id),
    indexOf: new Map(sorted.map((node, i) => [node.id, i])),
    trust: new Int8Array(n),
    schedulable: new Uint8Array(n),
    cpu: new Float64Array(n),
    mem: new Float64Array(n),
    disk: new Float64Array(n),
    slots: new Float64Array(n),
    gpuStart: new Int32Array(n + 1),
    gpuFree: new Float64Array(gpuCount),
    gpuTotal: new Float64Array(gpuCount),
    gpuDevice: new Int32Array(gpuCount),
    gpuKind: new Int32Array(gpuCount),
    kinds: [],
  };
  const kinds = c.kinds as GpuView[];
  const kindIds = new Map<string, number>();
  let g = 0;
  sorted.forEach((node, i) => {
    c.trust[i] = trustOrder.indexOf(node.trustLevel);
    c.schedulable[i] = node.schedulable ? 1 : 0;
    c.cpu[i] = node.freeCpuCores;
    c.mem[i] = node.freeMemoryMb;
    c.disk[i] = node.diskFreeMb;
    c.slots[i] = node.freeUnitSlots ?? Infinity;
    c.gpuStart[i] = g;
    for (const gpu of node.gpus) {
      c.gpuFree[g] = gpu.freeVramMb;
      c.gpuTotal[g] = gpu.vramMb;
      c.gpuDevice[g] = gpu.index;
      const key = `${gpu.name}\u0000${gpu.computeCapability ?? ""}\u0000${gpu.cudaVersion ?? ""}`;
      let kind = kindIds.get(key);
      if (kind === undefined) {
        kind = kinds.length;
        kindIds.set(key, kind);
        kinds.push(gpu);
      }
      c.gpuKind[g] = kind;
      g++;
    }
  });
  c.gpuStart[n] = g;
  return c;
}

/** The least trust rank a unit may run at. */
export function minTrustOf(unit: UnitRequest): number {
  return trustOrder.indexOf(allowedTrustLevels(unit.sensitivity)[0] as TrustLevel);
}

/** Per GPU kind of `c`: whether the unit's constraints allow it (undefined: the unit has none). */
export function allowedKinds(c: FlatCluster, unit: UnitRequest): Uint8Array | undefined {
  if (!hasGpuConstraints(unit)) return undefined;
  return Uint8Array.from(c.kinds, (g) => (failedConstraint(unit, g) === GpuConstraint.None ? 1 : 0));
}

/** Whether GPU g of the flat cluster may run the unit and has its VRAM free. */
export function gpuFits(c: FlatCluster, g: number, unit: UnitRequest, allowed: Uint8Array | undefined): boolean {
  return (c.gpuFree[g] as number) >= unit.vramMb && (allowed === undefined || allowed[c.gpuKind[g] as number] === 1);
}

/**
 * Whether node i can take the unit, and on which GPUs: undefined no, [] yes
 * (cpu unit), else the CSR positions of the `gpuCount` GPUs it gets (without
 * `rng`: the lowest positions that fit; with it: a uniformly random set of
 * those that fit, drawn from `rng`).
 */
function fit(c: FlatCluster, i: number, unit: UnitRequest, minTrust: number, allowed: Uint8Array | undefined, rng?: Rng): number[] | undefined {
  if (c.schedulable[i] === 0 || (c.trust[i] as number) < minTrust || (c.slots[i] as number) < 1) return undefined;
  if ((c.disk[i] as number) < unit.diskMb || (c.cpu[i] as number) < unit.cpuCores || (c.mem[i] as number) < unit.memoryMb) return undefined;
  if (unit.excludedNodeIds.length > 0 && unit.excludedNodeIds.includes(c.ids[i] as string)) return undefined;
  const count = gpuCountOf(unit);
  if (count === 0) return [];
  const end = c.gpuStart[i + 1] as number;
  if (end - (c.gpuStart[i] as number) < count) return undefined;
  const fitting: number[] = [];
  for (let g = c.gpuStart[i] as number; g < end; g++) if (gpuFits(c, g, unit, allowed)) fitting.push(g);
  if (fitting.length < count) return undefined;
  if (rng === undefined) return fitting.slice(0, count);
  // A partial Fisher–Yates: every set of `count` fitting GPUs is equally likely.
  for (let k = 0; k < count; k++) {
    const j = k + Math.floor(rng.next() * (fitting.length - k));
    const x = fitting[k] as number;
    fitting[k] = fitting[j] as number;
    fitting[j] = x;
  }
  return fitting.slice(0, count);
}

/** Takes the unit's resources on node i (`vramMb` on each of the GPUs at CSR positions `gpus`) and one unit slot. */
export function take(c: FlatCluster, i: number, gpus: readonly number[], unit: UnitRequest): void {
  c.cpu[i] = (c.cpu[i] as number) - unit.cpuCores;
  c.mem[i] = (c.mem[i] as number) - unit.memoryMb;
  c.disk[i] = (c.disk[i] as number) - unit.diskMb;
  c.slots[i] = (c.slots[i] as number) - 1;
  for (const g of gpus) c.gpuFree[g] = (c.gpuFree[g] as number) - unit.vramMb;
}

/** Applies the placer's placements to the flat copy (to measure what it left). */
export function applyPlacements(c: FlatCluster, units: ReadonlyMap<string, UnitRequest>, placements: readonly Placement[]): void {
  for (const p of placements) {
    const i = c.indexOf.get(p.nodeId) as number;
    const unit = units.get(p.unitId) as UnitRequest;
    const gpus: number[] = [];
    for (let k = c.gpuStart[i] as number; k < (c.gpuStart[i + 1] as number); k++) if (p.gpuIndexes.includes(c.gpuDevice[k] as number)) gpus.push(k);
    take(c, i, gpus, unit);
  }
}

/** First fit: the first node in id order that fits, its lowest GPU that fits. Returns the unplaced units. */
export function firstFit(c: FlatCluster, ordered: readonly UnitRequest[]): UnitRequest[] {
  const unplaced: UnitRequest[] = [];
  for (const unit of ordered) {
    const minTrust = minTrustOf(unit);
    const allowed = allowedKinds(c, unit);
    let done = false;
    for (let i = 0; i < c.n && !done; i++) {
      const gpus = fit(c, i, unit, minTrust, allowed);
      if (gpus !== undefined) {
        take(c, i, gpus, unit);
        done = true;
      }
    }
    if (!done) unplaced.push(unit);
  }
  return unplaced;
}

/**
 * Random feasible: a uniformly random node among those that fit, then a
 * uniformly random GPU on it that fits. Draws nodes uniformly and keeps the
 * first that fits (uniform over the feasible ones); after 64 misses it lists
 * the feasible nodes and draws from the list, which is uniform too.
 */
export function randomFeasible(c: FlatCluster, ordered: readonly UnitRequest[], rng: Rng): UnitRequest[] {
  const unplaced: UnitRequest[] = [];
  const feasible = new Int32Array(c.n);
  for (const unit of ordered) {
    const minTrust = minTrustOf(unit);
    const allowed = allowedKinds(c, unit);
    let done = false;
    for (let t = 0; t < 64 && !done && c.n > 0; t++) {
      const i = rng.int(0, c.n - 1);
      const gpus = fit(c, i, unit, minTrust, allowed, rng);
      if (gpus !== undefined) {
        take(c, i, gpus, unit);
        done = true;
      }
    }
    if (!done) {
      let k = 0;
      for (let i = 0; i < c.n; i++) if (fit(c, i, unit, minTrust, allowed) !== undefined) feasible[k++] = i;
      if (k > 0) {
        const i = feasible[rng.int(0, k - 1)] as number;
        take(c, i, fit(c, i, unit, minTrust, allowed, rng) as number[], unit);
        done = true;
      }
    }
    if (!done) unplaced.push(unit);
  }
  return unplaced;
}

/**
 * Stranded VRAM, % of the total VRAM of schedulable nodes: free VRAM on
 * GPUs of schedulable nodes where some unplaced gpu unit may run (trust
 * tier) but every such unit asks for more VRAM than the GPU has free. Free
 * VRAM that no unplaced unit is even allowed to use is idle, not stranded.
 */
export function strandedVramPct(c: FlatCluster, unplaced: readonly UnitRequest[]): number {
  // Smallest unplaced gpu ask allowed at each trust rank.
  const smallest = [Infinity, Infinity, Infinity];
  for (const unit of unplaced) {
    if (unit.kind !== "gpu") continue;
    for (let t = minTrustOf(unit); t < 3; t++) smallest[t] = Math.min(smallest[t] as number, unit.vramMb);
  }
  let stranded = 0;
  let total = 0;
  for (let i = 0; i < c.n; i++) {
    if (c.schedulable[i] === 0) continue;
    const need = smallest[c.trust[i] as number] as number;
    for (let g = c.gpuStart[i] as number; g < (c.gpuStart[i + 1] as number); g++) {
      total += c.gpuTotal[g] as number;
      const free = c.gpuFree[g] as number;
      if (need !== Infinity && free > 0 && free < need) stranded += free;
    }
  }
  return total === 0 ? 0 : (100 * stranded) / total;
}
