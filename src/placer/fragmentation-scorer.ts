/**
 * The fragmentation score on the placer's working state: the numbers of
 * plugins/gpu-fragmentation.ts (and the GPU choice of `chooseGpus` with the
 * asks), computed for the placer's fused scorer (place-units.ts) without
 * the plugin's cost. A property test compares the two.
 *
 * Why it is a separate path: the plugin re-tallies every ask over every GPU
 * of a scored node, and does so up to three times per node (to choose the
 * GPU, to score it, to reserve it), which made the score 10× slower than the
 * rest of a decision. Here:
 * - the asks are compiled once per cycle into typed arrays, and each ask's
 *   model allow-list is judged once per kind of GPU in the cluster
 *   (`ClusterState.gpuKinds`), not once per GPU visited;
 * - a node's tallies per ask and its F_n before the unit are kept until
 *   something is reserved on it or a sync changes it (`ClusterState.version`)
 *   or the asks change: the many units of a cycle that score a node tally it
 *   once;
 * - the GPU a one-GPU unit would get (where F grows least) is found while
 *   scoring and returned, so choosing it and breaking ties recompute nothing.
 * The arithmetic is `askFragmentationOf` (fragmentation.ts), summed in the
 * plugin's order, so the numbers are equal, not merely close.
 */
import type { ClusterState } from "./cycle-state.ts";
import { askFragmentationOf, counted, freeOf, slotsOn } from "./fragmentation.ts";
import { fragmentationScore, typicalVramMb } from "./plugins/gpu-fragmentation.ts";
import { gpuModelAllowed } from "../planner/gpu-constraints.ts";
import type { DemandAsk } from "./types.ts";

/** Per node cache entry: 3 numbers per ask (usable GPUs, their free VRAM, units they hold), then F_n before. */
const perAsk = 3;

/** The cycle's asks compiled against one state, and the per-node tallies computed so far. */
export interface FragmentationTable {
  /** The asks it was compiled from (the cycle's `DemandProfile.asks`); a new array means a new table. */
  readonly asks: readonly DemandAsk[];
  readonly state: ClusterState;
  /** Counted asks (gpu asks with a weight), in the profile's order. */
  readonly n: number;
  readonly gpuCount: Float64Array;
  readonly vramMb: Float64Array;
  readonly cpuCores: Float64Array;
  readonly memoryMb: Float64Array;
  readonly weight: Float64Array;
  readonly weights: number;
  /** allowed[m × kinds + kind] = 1 when ask m may use a GPU of kind `kind` (`ClusterState.gpuKind`). */
  readonly allowed: Uint8Array;
  readonly kinds: number;
  /** The score's scale: the mean VRAM a typical gpu ask takes. */
  readonly scaleMb: number;
  /** Node i's tallies (see `perAsk`) from `i × stride`, valid while `version[i]` equals the state's. */
  readonly tallies: Float64Array;
  readonly stride: number;
  readonly version: Int32Array;
  /** Scratch: the tallies after the unit takes the GPU being tried. */
  readonly after: Float64Array;
}

/** Compiles `asks` for `state`; undefined when no gpu ask weighs anything (every node then scores neutral). */
export function fragmentationTable(state: ClusterState, asks: readonly DemandAsk[], previous?: FragmentationTable): FragmentationTable | undefined {
  const { kept, weights } = counted(asks);
  if (weights === 0) return undefined;
  const n = kept.length;
  const kinds = state.gpuKinds.length;
  const allowed = new Uint8Array(n * kinds);
  kept.forEach((ask, m) => {
    for (let k = 0; k < kinds; k++) {
      allowed[m * kinds + k] = ask.gpuModels.length === 0 || gpuModelAllowed(state.gpuKinds[k]?.name ?? "", ask.gpuModels) ? 1 : 0;
    }
  });
  // The last table's buffers are taken over when they are large enough: a new table every cycle, little new memory.
  const stride = n * perAsk + 1;
  const size = state.size * stride;
  const tallies = previous !== undefined && previous.tallies.length >= size ? previous.tallies : new Float64Array(size);
  const version = previous !== undefined && previous.version.length >= state.size ? previous.version : new Int32Array(state.size);
  version.fill(-1);
  return {
    asks,
    state,
    n,
    gpuCount: Float64Array.from(kept, (a) => a.gpuCount),
    vramMb: Float64Array.from(kept, (a) => a.vramMb),
    cpuCores: Float64Array.from(kept, (a) => a.cpuCores),
    memoryMb: Float64Array.from(kept, (a) => a.memoryMb),
    weight: Float64Array.from(kept, (a) => a.weight),
    weights,
    allowed,
    kinds,
    scaleMb: typicalVramMb(asks),
    tallies,
    stride,
    version,
    after: new Float64Array(n * perAsk),
  };
}

/** Node i's total free VRAM, summed as fragmentation.ts sums it (GPU order, below 0 as 0). */
function totalFree(state: ClusterState, i: number): number {
  const { gpuBase, gpuFree } = state;
  const to = gpuBase[i + 1] as number;
  let total = 0;
  for (let k = gpuBase[i] as number; k < to; k++) total += freeOf(gpuFree[k] as number);
  return total;
}

/** Where node i's tallies per ask and F_n before start in `t.tallies`: from the cache, or computed now. */
function talliesOf(t: FragmentationTable, i: number): number {
  const state = t.state;
  const out = t.tallies;
  const at0 = i * t.stride;
  if (t.version[i] === state.version[i]) return at0;
  const { n, kinds, allowed, weight, gpuCount, cpuCores: askCores, memoryMb: askMemory } = t;
  const askVram = t.vramMb;
  const { gpuBase, gpuFree, gpuKind } = state;
  const from = gpuBase[i] as number;
  const to = gpuBase[i + 1] as number;
  const total = totalFree(state, i);
  const cores = state.cpu[i] as number;
  const memory = state.memory[i] as number;
  let sum = 0;
  for (let m = 0; m < n; m++) {
    const v = askVram[m] as number;
    const row = m * kinds;
    let usable = 0;
    let usableVram = 0;
    let slots = 0;
    for (let k = from; k < to; k++) {
      const f = freeOf(gpuFree[k] as number);
      if (f < v || allowed[row + (gpuKind[k] as number)] === 0) continue;
      usable++;
      usableVram += f;
      slots += slotsOn(f, v);
    }
    const at = at0 + m * perAsk;
    out[at] = usable;
    out[at + 1] = usableVram;
    out[at + 2] = slots;
    sum += (weight[m] as number) * askFragmentationOf(gpuCount[m] as number, v, askCores[m] as number, askMemory[m] as number, usable, usableVram, slots, total, cores, memory);
  }
  out[at0 + n * perAsk] = sum / t.weights;
  t.version[i] = state.version[i] as number;
  return at0;
}

/**
 * F_n of node i after a unit of `vramMb` per GPU, `cpuCores` and `memoryMb`
 * takes the GPUs at flat positions `gpus[0 .. count-1]` (`ClusterState.gpuBase`
 * layout): only those GPUs are re-tallied, in the order fragmentation.ts does.
 */
function fragmentationAfter(t: FragmentationTable, i: number, at0: number, vramMb: number, cpuCores: number, memoryMb: number, gpus: ArrayLike<number>, count: number): number {
  const state = t.state;
  const { gpuFree, gpuKind } = state;
  let total = totalFree(state, i);
  for (let c = 0; c < count; c++) {
    const f = gpuFree[gpus[c] as number] as number;
    total += freeOf(f - vramMb) - freeOf(f);
  }
  const cores = (state.cpu[i] as number) - cpuCores;
  const memory = (state.memory[i] as number) - memoryMb;
  const { n, kinds, allowed, weight, gpuCount, cpuCores: askCores, memoryMb: askMemory } = t;
  const askVram = t.vramMb;
  const before = t.tallies;
  let sum = 0;
  for (let m = 0; m < n; m++) {
    const v = askVram[m] as number;
    const row = m * kinds;
    const at = at0 + m * perAsk;
    let usable = before[at] as number;
    let usableVram = before[at + 1] as number;
    let slots = before[at + 2] as number;
    for (let c = 0; c < count; c++) {
      const k = gpus[c] as number;
      if (allowed[row + (gpuKind[k] as number)] === 0) continue;
      const f = freeOf(gpuFree[k] as number);
      if (f < v) continue; // then what is left is below v too: the tally does not change
      usable--;
      usableVram -= f;
      slots -= slotsOn(f, v);
      const left = freeOf(f - vramMb);
      if (left >= v) {
        usable++;
        usableVram += left;
        slots += slotsOn(left, v);
      }
    }
    sum += (weight[m] as number) * askFragmentationOf(gpuCount[m] as number, v, askCores[m] as number, askMemory[m] as number, usable, usableVram, slots, total, cores, memory);
  }
  return sum / t.weights;
}

/** Scratch for one GPU position. */
const one = new Int32Array(1);

/**
 * The fragmentation score (0..100) of node i for a unit, and for a one-GPU
 * unit the GPU it would get, written to `choice[0]` as a position in the
 * node's GPUs (-1 for other units: their GPUs are chosen without the asks).
 * `eligible` lists the node's GPU positions (0-based within the node) that fit
 * the unit, `eligibleCount` of them, in position order; for a unit of K > 1
 * GPUs they must be the K it gets (`chooseGpus`), for a cpu unit none.
 * Equal to `gpuFragmentation.score` on the node's view, with the GPU
 * `chooseGpus` gives with the asks (least growth, then least free, then
 * lowest position).
 */
export function fragmentationScoreOn(
  t: FragmentationTable,
  i: number,
  unit: { readonly vramMb: number; readonly cpuCores: number; readonly memoryMb: number },
  oneGpu: boolean,
  eligible: Int32Array,
  eligibleCount: number,
  choice: Int32Array,
): number {
  const state = t.state;
  choice[0] = -1;
  // A node without GPUs has no VRAM to fragment: F_n is 0 before and after whatever a (cpu) unit takes.
  if (state.gpuBase[i + 1] === state.gpuBase[i]) return fragmentationScore(0, t.scaleMb);
  const before = talliesOf(t, i);
  const f0 = t.tallies[before + t.n * perAsk] as number;
  const base = state.gpuBase[i] as number;
  if (!oneGpu) {
    for (let c = 0; c < eligibleCount; c++) eligible[c] = base + (eligible[c] as number);
    const growth = fragmentationAfter(t, i, before, unit.vramMb, unit.cpuCores, unit.memoryMb, eligible, eligibleCount) - f0;
    for (let c = 0; c < eligibleCount; c++) eligible[c] = (eligible[c] as number) - base;
    return fragmentationScore(growth, t.scaleMb);
  }
  const free = state.gpuFree;
  let best = -1;
  let bestGrowth = Infinity;
  let bestFree = Infinity;
  const kind = state.gpuKind;
  for (let c = 0; c < eligibleCount; c++) {
    const pos = eligible[c] as number;
    const f = free[base + pos] as number;
    // A GPU of the same kind and free VRAM as one tried before leaves the node in the same state: same growth.
    let seen = false;
    for (let d = 0; d < c && !seen; d++) {
      const q = base + (eligible[d] as number);
      seen = free[q] === f && kind[q] === kind[base + pos];
    }
    if (seen) continue;
    one[0] = base + pos;
    const growth = fragmentationAfter(t, i, before, unit.vramMb, unit.cpuCores, unit.memoryMb, one, 1) - f0;
    // Least growth; then the least free (best fit); positions come in order, so a tie there keeps the lower.
    if (best === -1 || growth < bestGrowth || (growth === bestGrowth && f < bestFree)) {
      best = pos;
      bestGrowth = growth;
      bestFree = f;
    }
  }
  choice[0] = best;
  return best === -1 ? fragmentationScore(0, t.scaleMb) : fragmentationScore(bestGrowth, t.scaleMb);
}

/**
 * The most the fragmentation score of node i can be for a unit that takes
 * `takesMb` of its VRAM in all (K GPUs × the per-GPU ask; 0 for a cpu
 * unit). Growth is at least −min(F_n before, takesMb) (less 1 MB of slack
 * for float noise): F_n cannot fall below 0, and no F_n(m) falls by more
 * than the VRAM taken (each of its two measures falls by at most that: the
 * taken VRAM leaves the total, a GPU leaving the usable ones raises FGD's
 * measure, and fewer resources never host more units). The placer skips
 * scoring a candidate whose other scores plus this ceiling cannot reach the
 * best score found (place-units.ts). The node's tallies (for F_n) are read
 * only when the ceiling from `takesMb` and its free VRAM is at least `bar`,
 * the score the candidate needs.
 */
export function fragmentationCeiling(t: FragmentationTable, i: number, takesMb: number, bar: number): number {
  const loose = fragmentationScore(-Math.min(takesMb, totalFree(t.state, i)) - 1, t.scaleMb);
  if (loose < bar) return loose;
  const at0 = talliesOf(t, i);
  const before = t.tallies[at0 + t.n * perAsk] as number;
  return fragmentationScore(-Math.min(takesMb, before) - 1, t.scaleMb);
}
