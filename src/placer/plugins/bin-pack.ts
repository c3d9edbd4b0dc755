/**
 * Best fit: prefer the node (and GPU) that the unit fills most tightly, so
 * large GPUs and big disks stay free for the large units that need them.
 */
import { bestGpu, type NodeView } from "../cycle-state.ts";
import type { UnitRequest } from "../types.ts";
import type { ScorePlugin } from "./plugin.ts";

/** The share of a free amount a request would take: 1 means nothing left over. A request of 0 on nothing free is a perfect fit. */
function fit(need: number, free: number): number {
  if (free <= 0) return 1;
  return Math.min(1, Math.max(0, need / free));
}

/** Share of the bin-pack score that VRAM fit carries for a gpu unit; disk fit carries the rest. */
export const vramShare = 0.75;

/**
 * The bin-pack score, 0..100 (Nomad's ScoreFitBinPack, for VRAM and disk):
 *
 *   gpu unit: 100 × (0.75 × vram/freeVramOfChosenGpu + 0.25 × disk/freeDisk)
 *   cpu unit: 100 × disk/freeDisk
 *
 * Each ratio is the share of the free amount the unit would take (1 = nothing
 * left over, towards 0 = a small unit on a big free space), clamped to 0..1,
 * and 1 when nothing is free and nothing is asked. For a fixed unit, need/free
 * falls as free rises, so a higher VRAM term means strictly less VRAM left
 * over; VRAM weighs three times disk, so VRAM leftover decides and disk
 * mostly breaks near-ties.
 *
 * @param freeVramMb free VRAM of the GPU the unit would get (ignored for cpu units)
 */
export function binPackScore(
  unit: { kind: "cpu" | "gpu"; vramMb: number; diskMb: number },
  freeVramMb: number,
  diskFreeMb: number,
): number {
  const disk = fit(unit.diskMb, diskFreeMb);
  if (unit.kind === "cpu") return 100 * disk;
  return 100 * (vramShare * fit(unit.vramMb, freeVramMb) + (1 - vramShare) * disk);
}

/** Scores a node by {@link binPackScore} on its best-fit GPU. */
export const binPack = {
  name: "BinPack",
  weight: "binPack",
  score(unit: UnitRequest, node: NodeView) {
    const pos = unit.kind === "gpu" ? bestGpu(node, unit.vramMb) : -1;
    return binPackScore(unit, node.gpuFreeVramMb[pos] ?? 0, node.diskFreeMb);
  },
} as const satisfies ScorePlugin;
