/**
 * A gpu unit needs `gpuCount` GPUs of one node that satisfy its constraints (gpu-rules.ts), each with
 * free VRAM ≥ its request. Free VRAM on two GPUs never adds up: a unit gets whole devices
 * (CUDA_VISIBLE_DEVICES). A cpu unit needs no GPU and always passes. What the node's owner reserves on
 * each GPU (`--reserve-vram-mb`) is never free: a view's free VRAM is already less it (`usableVramMb`,
 * node-rules.ts), so the index agrees with this filter. None of those GPUs fits now:
 * insufficient_vram; some but fewer than `gpuCount`: insufficient_gpus. Both may pass once units end.
 */
import { chooseGpus, type NodeView } from "../cycle-state.ts";
import { failedConstraint, GpuConstraint, gpuCountOf } from "../gpu-rules.ts";
import { ok, Reason, unschedulable } from "../reasons.ts";
import type { UnitRequest } from "../types.ts";
import type { FilterPlugin } from "./plugin.ts";

/** Rejects gpu units on nodes without `gpuCount` allowed GPUs of enough free VRAM (insufficient_vram: none; insufficient_gpus: too few). */
export const gpuVram = {
  name: "GpuVram",
  filter(unit: UnitRequest, node: NodeView) {
    const count = gpuCountOf(unit);
    if (count === 0 || chooseGpus(node, unit).length === count) return ok;
    let fits = 0;
    node.gpuFreeVramMb.forEach((free, pos) => {
      if (free >= unit.vramMb && failedConstraint(unit, node.node.gpus[pos] as (typeof node.node.gpus)[number]) === GpuConstraint.None) fits++;
    });
    return unschedulable(fits === 0 ? Reason.InsufficientVram : Reason.InsufficientGpus);
  },
} as const satisfies FilterPlugin;
