/**
 * A gpu unit asks for `gpuCount` GPUs of one node (1 to 8). A node without a GPU cannot run it
 * (no_gpu, unschedulable as it always was); a node with fewer GPUs than that in all never can
 * (gpu_count_too_low, unresolvable: a node does not grow GPUs while it waits, and free VRAM on GPUs
 * of two nodes never adds up). A node with enough GPUs whose VRAM is busy now is GpuVram's to judge.
 */
import type { NodeView } from "../cycle-state.ts";
import { gpuCountOf } from "../gpu-rules.ts";
import { ok, Reason, unresolvable, unschedulable } from "../reasons.ts";
import type { UnitRequest } from "../types.ts";
import type { FilterPlugin } from "./plugin.ts";

/** Rejects gpu units on nodes without a GPU (no_gpu) or with fewer GPUs than they ask for (gpu_count_too_low, unresolvable). */
export const gpuCount = {
  name: "GpuCount",
  filter(unit: UnitRequest, node: NodeView) {
    const count = gpuCountOf(unit);
    if (count === 0) return ok;
    const gpus = node.node.gpus.length;
    if (gpus === 0) return unschedulable(Reason.NoGpu);
    return gpus < count ? unresolvable(Reason.GpuCountTooLow) : ok;
  },
} as const satisfies FilterPlugin;
