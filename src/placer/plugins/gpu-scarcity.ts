/**
 * Keep each GPU model for the units that may run on nothing else (the math
 * is in ../scarcity.ts): a node scores higher the less of its GPUs' model the
 * constrained part of the arriving work will claim, so a unit that several
 * models will do goes to the one the others need least.
 *
 * The score is the mean, over the node's GPUs the unit may take (its model
 * and version rules, enough free VRAM), of 100 × (1 − min(1, ρ)²) with ρ the
 * pressure on the GPU's model (`CycleContext.modelPressure`). It only ranks
 * nodes of different models: nodes of one model score the same. A cpu unit
 * takes no GPU and scores 100 everywhere; a cycle whose asks constrain no
 * model has no pressure, and the placer then leaves this score out of the
 * weighted mean (every node would score 100).
 */
import type { NodeView } from "../cycle-state.ts";
import { failedConstraint, GpuConstraint, hasGpuConstraints } from "../gpu-rules.ts";
import { scarcityScore } from "../scarcity.ts";
import type { CycleContext, UnitRequest } from "../types.ts";
import type { ScorePlugin } from "./plugin.ts";

/** The score where no model is wanted by constrained work (and of a cpu unit everywhere). */
export const plentifulScore = 100;

/** Scores a node by how little the constrained arriving work needs the models of the GPUs the unit may take there. */
export const gpuScarcity = {
  name: "GpuScarcity",
  weight: "gpuScarcity",
  score(unit: UnitRequest, node: NodeView, cycle: CycleContext) {
    const pressure = cycle.modelPressure;
    if (pressure === undefined || unit.kind !== "gpu") return plentifulScore;
    const constrained = hasGpuConstraints(unit);
    let sum = 0;
    let n = 0;
    node.node.gpus.forEach((gpu, pos) => {
      if ((node.gpuFreeVramMb[pos] as number) < unit.vramMb) return;
      if (constrained && failedConstraint(unit, gpu) !== GpuConstraint.None) return;
      sum += scarcityScore(pressure.get(gpu.name) ?? 0);
      n++;
    });
    return n === 0 ? plentifulScore : sum / n;
  },
} as const satisfies ScorePlugin;
