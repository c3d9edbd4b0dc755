/**
 * Multi-resource fit: put the unit where it uses up the least of what the
 * work waiting now could still use, so no resource of a node is stranded
 * because another ran out first (VRAM left on a node with no cores, cores on
 * a node with no VRAM).
 *
 * A node's capacity is counted in typical gpu units (the cycle's
 * DemandProfile): per resource r, U_r = free_r / profile_r, and the node can
 * still host U = min_r U_r of them; the resources above the minimum are its
 * surplus. A unit asking a_r = ask_r / profile_r takes
 *
 *   loss = U − min_r (U_r − a_r) = max_r (a_r − (U_r − U))
 *
 * of that capacity: nothing when it only uses surplus (a cpu unit on the
 * spare cores of a node whose VRAM is nearly gone), all of its dominant
 * share when it hits the node's bottleneck. VRAM counts as the node's total
 * free VRAM here, and a unit of `gpuCount` GPUs asks `gpuCount` × its VRAM of
 * it; which GPUs the unit gets is a best fit (`chooseGpus`), and the placer
 * breaks score ties towards the GPUs with the least VRAM left.
 */
import { chooseGpus, type NodeView } from "../cycle-state.ts";
import type { CycleContext, DemandAsk, DemandProfile, UnitRequest } from "../types.ts";
import type { ScorePlugin } from "./plugin.ts";

/** Share of the bin-pack score that the fit (capacity lost) carries; the room left on the node carries the rest. */
export const fitShare = 0.5;

/** The room left (in typical units) at which the room term is half way to its maximum. */
export const roomHalf = 2;

/** Free resources of a node (VRAM: the total over its GPUs). */
export interface FreeResources {
  vramMb: number;
  cpuCores: number;
  memoryMb: number;
  diskMb: number;
  /** Free unit slots (`NodeSnapshot.freeUnitSlots`); absent or Infinity: the node told no limit. */
  unitSlots?: number;
}

/**
 * The bin-pack score, 0..100 (higher is better):
 *
 *   100 × (0.5 × (1 − loss / size) + 0.5 × R / (2 + R))
 *
 * - `loss` (above) is the capacity, in typical units, the unit takes from the
 *   node; `size` = max_r a_r is the most it can take (its dominant share), so
 *   the first term is 1 when the unit only uses surplus and 0 when its
 *   dominant resource is the node's bottleneck. A unit asking nothing fits
 *   perfectly.
 * - R is the room left after the unit on the host resources (cores, memory,
 *   disk), in typical units: R / (2 + R) runs from 0 (full) towards 1 (half
 *   way at 2 typical units), so between similar fits the unit goes where
 *   more host capacity is left, and cores and memory run out evenly instead
 *   of node by node (which would strand the VRAM next to them).
 *
 * A resource the profile does not ask for (0) is left out; free amounts
 * below 0 count as 0. Pure; the VRAM ask counts only for a gpu unit, once
 * per GPU it asks for.
 *
 * A node with a unit limit has one more resource: its free unit slots,
 * U_s = slots (every unit, typical or not, takes one: a_s = 1). It counts in
 * the capacity and the loss but not in `size`, so a unit that takes the slot
 * a node's capacity hangs on loses all its fit: small units go where slots are
 * not the bottleneck, and a node with few slots left gets the units that use
 * its VRAM, cores and memory best, instead of running out of slots with its
 * GPU nearly idle. The room R is also at most U_s − 1, so between similar
 * fits units go where slots are left. A node without a limit scores as before.
 */
export function binPackScore(
  unit: { kind: "cpu" | "gpu"; vramMb: number; gpuCount?: number; diskMb: number; cpuCores: number; memoryMb: number },
  free: FreeResources,
  profile: DemandProfile,
): number {
  return binPackScoreOf(binPackAskOf(unit, profile), free, profile);
}

/** A unit's asks in the profile's typical units (a_r; NaN: a resource the profile leaves out) and its size, max_r a_r. */
export interface BinPackAsk {
  vram: number;
  cpu: number;
  memory: number;
  disk: number;
  size: number;
}

/** {@link BinPackAsk} of `unit`: the same for every node it is scored on, so the placer computes it once per decision. */
export function binPackAskOf(
  unit: { kind: "cpu" | "gpu"; vramMb: number; gpuCount?: number; diskMb: number; cpuCores: number; memoryMb: number },
  profile: DemandProfile,
  into: BinPackAsk = { vram: 0, cpu: 0, memory: 0, disk: 0, size: 0 },
): BinPackAsk {
  into.vram = units(unit.kind === "gpu" ? unit.vramMb * (unit.gpuCount ?? 1) : 0, profile.vramMb);
  into.cpu = units(unit.cpuCores, profile.cpuCores);
  into.memory = units(unit.memoryMb, profile.memoryMb);
  into.disk = units(unit.diskMb, profile.diskMb);
  into.size = Math.max(0, maxOf(into.vram, into.cpu, into.memory, into.disk));
  return into;
}

/** {@link binPackScore} of a unit whose asks are `ask` (binPackAskOf with the same profile). */
export function binPackScoreOf(ask: BinPackAsk, free: FreeResources, profile: DemandProfile): number {
  // Capacity (U_r) and ask (a_r) per resource in typical units; NaN marks a resource the profile leaves out.
  const uV = units(free.vramMb, profile.vramMb);
  const uC = units(free.cpuCores, profile.cpuCores);
  const uM = units(free.memoryMb, profile.memoryMb);
  const uD = units(free.diskMb, profile.diskMb);
  const { vram: aV, cpu: aC, memory: aM, disk: aD, size } = ask;
  // Math.min/max ignore nothing, so NaN (left out) is filtered by hand.
  const uS = free.unitSlots === undefined || free.unitSlots === Infinity ? NaN : Math.max(0, free.unitSlots);
  const cap = Math.min(minOf(uV, uC, uM, uD), Number.isNaN(uS) ? Infinity : uS);
  const loss = Math.max(0, maxOf(aV - (uV - cap), aC - (uC - cap), aM - (uM - cap), aD - (uD - cap)), Number.isNaN(uS) ? 0 : 1 - (uS - cap));
  const room = Math.min(minOf(uC - aC, uM - aM, uD - aD, NaN), Number.isNaN(uS) ? Infinity : uS - 1);
  // loss ≤ size but through the slots (clamped: no fit); the ratio is NaN only for absurd inputs (a vanishing profile: ∞/∞), counted as no fit.
  const ratio = loss / size;
  const fit = size === 0 ? 1 : Number.isNaN(ratio) ? 0 : 1 - Math.min(1, ratio);
  const left = room === Infinity ? 0 : Math.max(0, room);
  return 100 * (fitShare * fit + (1 - fitShare) * (left / (roomHalf + left)));
}

/** An amount in typical units (negative free counts as 0), or NaN when the profile does not ask for the resource. */
function units(amount: number, per: number): number {
  return per > 0 ? Math.max(0, amount) / per : NaN;
}

/** The least of the values that are not NaN (Infinity when all are). */
function minOf(a: number, b: number, c: number, d: number): number {
  let m = Infinity;
  if (a < m) m = a;
  if (b < m) m = b;
  if (c < m) m = c;
  if (d < m) m = d;
  return m;
}

/** The greatest of the values that are not NaN (-Infinity when all are). */
function maxOf(a: number, b: number, c: number, d: number): number {
  let m = -Infinity;
  if (a > m) m = a;
  if (b > m) m = b;
  if (c > m) m = c;
  if (d > m) m = d;
  return m;
}

/** A node's free resources as {@link binPackScore} reads them. */
export function freeOf(node: NodeView): FreeResources {
  let vramMb = 0;
  for (const f of node.gpuFreeVramMb) vramMb += Math.max(0, f);
  return { vramMb, cpuCores: node.freeCpuCores, memoryMb: node.freeMemoryMb, diskMb: node.diskFreeMb, unitSlots: node.freeUnitSlots };
}

/** Scores a node by {@link binPackScore} against the cycle's demand profile. */
export const binPack = {
  name: "BinPack",
  weight: "binPack",
  score(unit: UnitRequest, node: NodeView, cycle: CycleContext) {
    return binPackScore(unit, freeOf(node), cycle.profile);
  },
} as const satisfies ScorePlugin;

/**
 * What the placer compares when two nodes score the same: the free VRAM
 * left on the GPUs the unit would get (a gpu unit, `chooseGpus`, given the
 * same `asks` the placer chooses them with when the fragmentation score is
 * on) or the free disk left (a cpu unit); less wins, so equal scores go to
 * the tighter fit.
 */
export function leftOver(unit: UnitRequest, node: NodeView, asks?: readonly DemandAsk[]): number {
  if (unit.kind !== "gpu") return node.diskFreeMb - unit.diskMb;
  const positions = chooseGpus(node, unit, asks);
  if (positions.length === 0) return Infinity;
  let left = 0;
  for (const pos of positions) left += (node.gpuFreeVramMb[pos] as number) - unit.vramMb;
  return left;
}
