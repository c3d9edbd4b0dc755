/**
 * Fragmentation-aware placement (FGD, Weng et al., ATC '23; the math is in
 * ../fragmentation.ts): a node scores higher the less its fragmentation, the
 * free VRAM a unit drawn from the arriving work could not use there, grows
 * when this unit takes its GPUs (or, for a cpu unit, its cores and memory,
 * which can leave the GPUs next to them unusable). The arriving work is the
 * cycle's DemandProfile `asks`: the asks of recently arrived units (a
 * DemandWindow, profile.ts), or of the cycle's own units.
 *
 * Growth Δ (MB, may be negative: a unit filling a hole no typical ask fits)
 * becomes 100 / (1 + e^(Δ / s)), with s the mean VRAM a typical gpu ask takes:
 * 50 for no change, above 50 when the unit reduces fragmentation, and one
 * typical ask's worth of growth costs about 23 points. With no asks every
 * node scores 50 (no preference).
 */
import { chooseGpus, type NodeView } from "../cycle-state.ts";
import { fragmentationGrowth, type FragmentationNode } from "../fragmentation.ts";
import type { CycleContext, DemandAsk, UnitRequest } from "../types.ts";
import type { ScorePlugin } from "./plugin.ts";

/** The score of a node where the unit leaves fragmentation unchanged (and of every node when nothing is known of the work). */
export const neutralFragmentationScore = 50;

/** The mean VRAM a gpu ask of the distribution takes in all (`gpuCount` × `vramMb`); 0 when there is none. */
export function typicalVramMb(asks: readonly DemandAsk[]): number {
  let sum = 0;
  let weights = 0;
  for (const ask of asks) {
    if (ask.gpuCount === 0 || ask.weight <= 0) continue;
    sum += ask.weight * ask.gpuCount * ask.vramMb;
    weights += ask.weight;
  }
  return weights === 0 ? 0 : sum / weights;
}

/** Growth Δ (MB) on a scale of `scaleMb` as a score 0..100, higher for less growth. */
export function fragmentationScore(growthMb: number, scaleMb: number): number {
  if (!(scaleMb > 0)) return neutralFragmentationScore;
  return 100 / (1 + Math.exp(growthMb / scaleMb));
}

/** A NodeView as fragmentation.ts reads it. */
function fragmentationView(node: NodeView): FragmentationNode {
  return { gpuFreeVramMb: node.gpuFreeVramMb, gpus: node.node.gpus, freeCpuCores: node.freeCpuCores, freeMemoryMb: node.freeMemoryMb };
}

/**
 * How much the node's fragmentation grows (MB) when `unit` goes there, on
 * the GPUs the placer would give it (`chooseGpus` with the same asks).
 */
export function growthOnNode(unit: UnitRequest, node: NodeView, asks: readonly DemandAsk[]): number {
  const gpus = unit.kind === "gpu" ? chooseGpus(node, unit, asks) : [];
  const ask = { gpuCount: gpus.length, vramMb: unit.vramMb, cpuCores: unit.cpuCores, memoryMb: unit.memoryMb };
  return fragmentationGrowth(fragmentationView(node), ask, gpus, asks);
}

/** Scores a node by how little its GPU fragmentation grows against the cycle's demand distribution. */
export const gpuFragmentation = {
  name: "GpuFragmentation",
  weight: "gpuFragmentation",
  score(unit: UnitRequest, node: NodeView, cycle: CycleContext) {
    const asks = cycle.profile.asks;
    if (asks === undefined || asks.length === 0) return neutralFragmentationScore;
    return fragmentationScore(growthOnNode(unit, node, asks), typicalVramMb(asks));
  },
} as const satisfies ScorePlugin;
