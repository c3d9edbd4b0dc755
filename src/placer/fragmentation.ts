/**
 * GPU fragmentation of a node against the work that is arriving, after FGD
 * (Weng et al., "Beware of Fragmentation: Scheduling GPU-Sharing Workloads
 * with Fragmentation Gradient Descent", USENIX ATC '23).
 *
 * For one ask m (a typical unit: `gpuCount` K GPUs with `vramMb` v free each,
 * maybe of some models, with c cores and M memory), a node's fragmentation
 * F_n(m) is the free VRAM that units like m could not use there. Two
 * measures of it, and F_n(m) is their mean:
 * - FGD's: the free VRAM of the GPUs m could not take (of a model it does not
 *   allow, or with less than v free), or of every GPU when m cannot run on the
 *   node at all (fewer than K GPUs it could take, fewer than c cores or M
 *   memory free);
 * - fill: the free VRAM left after filling the node with units like m as far
 *   as its GPUs, cores and memory allow: h = min(Σ ⌊free_g / v⌋ over the GPUs
 *   m could take (K = 1) or ⌊their count / K⌋, ⌊cores / c⌋, ⌊memory / M⌋) of
 *   them fit, so F = total free − h·K·v.
 * FGD's measure sees a GPU only as usable or not, and the host only as able
 * to run one more m or not; fill also sees the remainder of a GPU that m
 * cannot fill (600 free for 400-MB asks strands 200) and the cores that run
 * out before the GPUs do (a node of 8 free GPUs and cores for two units is
 * mostly stranded). On the openb trace (bench:trace) the mean packs more than
 * either alone: FGD's measure alone places like best-fit or worse on the
 * GPU-sharing workloads, whose cores run out first; fill alone does less well
 * on the multi-GPU one.
 *
 * Against a distribution of asks (weights wₘ), F_n = Σ wₘ F_n(m) / Σ wₘ: the
 * expected VRAM a unit drawn from the arriving work could not use. The unit
 * goes where F grows least (it may shrink: a unit that fills a hole no
 * typical ask fits takes fragmented VRAM off the books).
 *
 * Asks of cpu units are left out: all of a node's free VRAM is useless to
 * them wherever a unit goes, so they would add the same to every node's
 * growth (the paper's artifact counts them that way; it changes no choice).
 * Pure: no I/O; model matches are remembered per ask object.
 */
import { gpuModelAllowed } from "../planner/gpu-constraints.ts";
import type { DemandAsk } from "./types.ts";

/** What fragmentation reads of a node: free VRAM per GPU (what units may use), the GPUs' names, free cores and memory. */
export interface FragmentationNode {
  readonly gpuFreeVramMb: ArrayLike<number>;
  /** Parallel to `gpuFreeVramMb`; only `name` is read (a NodeSnapshot's `gpus` will do). */
  readonly gpus: readonly { readonly name: string }[];
  readonly freeCpuCores: number;
  readonly freeMemoryMb: number;
}

/** Per ask: the GPU names met and whether its allow-list takes each, and the last name asked (a node's GPUs are usually one model). */
interface AllowMemo {
  readonly byName: Map<string, boolean>;
  lastName: string | undefined;
  lastAllowed: boolean;
}
/** Asks live for a cycle or a window, GPU names repeat across nodes: the substring search runs once per pair. */
const allowedByAsk = new WeakMap<DemandAsk, AllowMemo>();

/** Whether `ask` may use a GPU named `name` (the GPU model rule, as the GpuModel filter reads it), remembered per ask. */
function askAllows(ask: DemandAsk, name: string): boolean {
  if (ask.gpuModels.length === 0) return true;
  let memo = allowedByAsk.get(ask);
  if (memo === undefined) {
    memo = { byName: new Map(), lastName: undefined, lastAllowed: false };
    allowedByAsk.set(ask, memo);
  }
  if (memo.lastName === name) return memo.lastAllowed;
  let allowed = memo.byName.get(name);
  if (allowed === undefined) {
    allowed = gpuModelAllowed(name, ask.gpuModels);
    memo.byName.set(name, allowed);
  }
  memo.lastName = name;
  memo.lastAllowed = allowed;
  return allowed;
}

/** Free VRAM below 0 (an over-committed GPU) counts as 0. */
export const freeOf = (x: number): number => (x > 0 ? x : 0);

/** How many units of one ask, `vramMb` each, a GPU with `free` it may take holds (one when the ask takes no VRAM). */
export function slotsOn(free: number, vramMb: number): number {
  return vramMb > 0 ? Math.floor(free / vramMb) : 1;
}

/**
 * What F_n(m) is made of on one node for one ask: the GPUs m may take
 * (allowed model, ≥ v free): how many (`usable`), their free VRAM (`usableVram`)
 * and the units of m they hold (`slots`).
 */
interface AskTally {
  usable: number;
  usableVram: number;
  slots: number;
}

/** F_n(m) from a tally, the node's total free VRAM and its free cores and memory. */
function fromTally(ask: DemandAsk, t: AskTally, total: number, cores: number, memory: number): number {
  return askFragmentationOf(ask.gpuCount, ask.vramMb, ask.cpuCores, ask.memoryMb, t.usable, t.usableVram, t.slots, total, cores, memory);
}

/**
 * F_n(m) from its parts, as numbers: the ask (K GPUs of v MB, c cores, M
 * memory), its tally on the node (`usable` GPUs with `usableVram` free,
 * holding `slots` units of v) and the node's total free VRAM, cores and
 * memory. The one formula, shared by the plugin and the placer's fused
 * scorer (fragmentation-scorer.ts), so both compute the same numbers.
 */
export function askFragmentationOf(
  gpuCount: number,
  vramMb: number,
  cpuCores: number,
  memoryMb: number,
  usable: number,
  usableVram: number,
  slots: number,
  total: number,
  cores: number,
  memory: number,
): number {
  let hosts = gpuCount === 1 ? slots : Math.floor(usable / gpuCount);
  // The slack keeps float noise in fractional cores (3 × 3.152 taken off 9.456) from losing a whole unit.
  if (cpuCores > 0) hosts = Math.min(hosts, Math.floor(cores / cpuCores + 1e-9));
  else if (cores < 0) hosts = 0;
  if (memoryMb > 0) hosts = Math.min(hosts, Math.floor(memory / memoryMb + 1e-9));
  else if (memory < 0) hosts = 0;
  if (hosts <= 0) return total;
  const fgd = total - usableVram;
  const fill = total - hosts * gpuCount * vramMb;
  return (fgd + fill) / 2;
}

function tally(node: FragmentationNode, ask: DemandAsk): AskTally {
  const free = node.gpuFreeVramMb;
  const t: AskTally = { usable: 0, usableVram: 0, slots: 0 };
  for (let g = 0; g < free.length; g++) {
    const f = freeOf(free[g] as number);
    if (f < ask.vramMb || !askAllows(ask, node.gpus[g]?.name ?? "")) continue;
    t.usable++;
    t.usableVram += f;
    t.slots += slotsOn(f, ask.vramMb);
  }
  return t;
}

function totalFree(node: FragmentationNode): number {
  let total = 0;
  for (let g = 0; g < node.gpuFreeVramMb.length; g++) total += freeOf(node.gpuFreeVramMb[g] as number);
  return total;
}

/** F_n(m): the free VRAM (MB) on `node` that units like `ask` could not use (see the file comment). */
export function askFragmentation(node: FragmentationNode, ask: DemandAsk): number {
  return fromTally(ask, tally(node, ask), totalFree(node), node.freeCpuCores, node.freeMemoryMb);
}

/** The gpu asks that count (cpu asks and weightless ones are left out) and their total weight. */
export function counted(asks: readonly DemandAsk[]): { kept: DemandAsk[]; weights: number } {
  const kept: DemandAsk[] = [];
  let weights = 0;
  for (const ask of asks) {
    if (ask.gpuCount === 0 || !(ask.weight > 0)) continue;
    kept.push(ask);
    weights += ask.weight;
  }
  return { kept, weights };
}

/** F_n: the weighted mean of {@link askFragmentation} over the gpu asks (0 when there are none). */
export function nodeFragmentation(node: FragmentationNode, asks: readonly DemandAsk[]): number {
  const { kept, weights } = counted(asks);
  if (weights === 0) return 0;
  const total = totalFree(node);
  let sum = 0;
  for (const ask of kept) sum += ask.weight * fromTally(ask, tally(node, ask), total, node.freeCpuCores, node.freeMemoryMb);
  return sum / weights;
}

/** A unit's ask as fragmentation reads it. */
export interface FragmentationUnit {
  readonly gpuCount: number;
  readonly vramMb: number;
  readonly cpuCores: number;
  readonly memoryMb: number;
}

/** A node's tallies per counted ask, so that the state after a unit takes a few GPUs is found without a full pass. */
interface Prepared {
  readonly kept: readonly DemandAsk[];
  readonly weights: number;
  readonly total: number;
  readonly tallies: readonly AskTally[];
}

function prepare(node: FragmentationNode, asks: readonly DemandAsk[]): Prepared {
  const { kept, weights } = counted(asks);
  return { kept, weights, total: totalFree(node), tallies: kept.map((ask) => tally(node, ask)) };
}

function fragmentationOf(p: Prepared, cores: number, memory: number): number {
  if (p.weights === 0) return 0;
  let sum = 0;
  p.kept.forEach((ask, i) => {
    sum += ask.weight * fromTally(ask, p.tallies[i] as AskTally, p.total, cores, memory);
  });
  return sum / p.weights;
}

/** F_n after `unit` takes `vramMb` on each GPU position in `gpus`, its cores and its memory: only those GPUs are re-tallied. */
function fragmentationAfter(p: Prepared, node: FragmentationNode, unit: FragmentationUnit, gpus: readonly number[]): number {
  if (p.weights === 0) return 0;
  let total = p.total;
  for (const g of gpus) {
    const f = node.gpuFreeVramMb[g] as number;
    total += freeOf(f - unit.vramMb) - freeOf(f);
  }
  const cores = node.freeCpuCores - unit.cpuCores;
  const memory = node.freeMemoryMb - unit.memoryMb;
  let sum = 0;
  p.kept.forEach((ask, i) => {
    const before = p.tallies[i] as AskTally;
    const t: AskTally = { usable: before.usable, usableVram: before.usableVram, slots: before.slots };
    for (const g of gpus) {
      if (!askAllows(ask, node.gpus[g]?.name ?? "")) continue;
      const f = freeOf(node.gpuFreeVramMb[g] as number);
      const after = freeOf(f - unit.vramMb);
      if (f >= ask.vramMb) {
        t.usable--;
        t.usableVram -= f;
        t.slots -= slotsOn(f, ask.vramMb);
      }
      if (after >= ask.vramMb) {
        t.usable++;
        t.usableVram += after;
        t.slots += slotsOn(after, ask.vramMb);
      }
    }
    sum += ask.weight * fromTally(ask, t, total, cores, memory);
  });
  return sum / p.weights;
}

/** The growth of F_n when `unit` takes GPU positions `gpus` (none for a cpu unit) of `node`: after − before, in MB. */
export function fragmentationGrowth(node: FragmentationNode, unit: FragmentationUnit, gpus: readonly number[], asks: readonly DemandAsk[]): number {
  const p = prepare(node, asks);
  return fragmentationAfter(p, node, unit, gpus) - fragmentationOf(p, node.freeCpuCores, node.freeMemoryMb);
}

/**
 * Which of the `eligible` GPU positions of `node` (each fits the unit: its
 * constraints, `vramMb` free) a unit asking `gpuCount` of them should take
 * so that fragmentation grows least, and that growth; undefined when fewer
 * than `gpuCount` are eligible. One GPU: each eligible GPU is tried (one per
 * distinct free amount and model); ties go to the least free, then the
 * lowest position. Several: the `gpuCount` eligible GPUs with the least
 * free VRAM (lowest position on ties), which leaves the roomier GPUs whole.
 */
export function leastFragmentingGpus(
  node: FragmentationNode,
  unit: FragmentationUnit,
  eligible: readonly number[],
  asks: readonly DemandAsk[],
): { gpus: number[]; growth: number } | undefined {
  const free = node.gpuFreeVramMb;
  const count = Math.max(1, unit.gpuCount);
  if (eligible.length < count) return undefined;
  // Least free first, then position: the best-fit order.
  const order = [...eligible].sort((a, b) => (free[a] as number) - (free[b] as number) || a - b);
  const p = prepare(node, asks);
  const before = fragmentationOf(p, node.freeCpuCores, node.freeMemoryMb);
  if (count > 1) {
    const gpus = order.slice(0, count).sort((a, b) => a - b);
    return { gpus, growth: fragmentationAfter(p, node, unit, gpus) - before };
  }
  let best: { gpus: number[]; growth: number } | undefined;
  let lastFree = NaN;
  let lastName = "";
  for (const g of order) {
    // GPUs with the same free VRAM and model leave the node in the same state: try one of them
    // (equal free amounts are next to each other in the order; a mixed node may repeat a state).
    const name = node.gpus[g]?.name ?? "";
    if (free[g] === lastFree && name === lastName) continue;
    lastFree = free[g] as number;
    lastName = name;
    const growth = fragmentationAfter(p, node, unit, [g]) - before;
    if (best === undefined || growth < best.growth) best = { gpus: [g], growth };
  }
  return best;
}
