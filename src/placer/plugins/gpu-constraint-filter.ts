/** The shape the three GPU constraint filters share (gpu-model.ts, compute-capability.ts, cuda-version.ts). */
import { type GpuConstraintStage, gpuCountOf, gpusPassing } from "../gpu-rules.ts";
import { ok, type ReasonCode, unresolvable } from "../reasons.ts";
import type { UnitRequest } from "../types.ts";
import type { FilterPlugin } from "./plugin.ts";

/**
 * The filter of one GPU constraint: it applies to gpu units that `constrains` says have it, and rejects,
 * for good, a node with fewer than `gpuCount` GPUs that satisfy it and every constraint before it.
 */
export function constraintFilter(name: string, stage: GpuConstraintStage, reason: ReasonCode, constrains: (unit: UnitRequest) => boolean): FilterPlugin {
  return {
    name,
    filter(unit, node) {
      const count = gpuCountOf(unit);
      if (count === 0 || !constrains(unit)) return ok;
      return gpusPassing(unit, node.node.gpus, stage) >= count ? ok : unresolvable(reason);
    },
  };
}
