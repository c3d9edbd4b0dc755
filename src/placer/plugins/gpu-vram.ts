/**
 * A gpu unit needs one GPU with enough free VRAM. Free VRAM on two GPUs never
 * adds up: a unit gets exactly one device (CUDA_VISIBLE_DEVICES). A cpu unit
 * needs no GPU and always passes. What the node's owner reserves on each GPU
 * (`--reserve-vram-mb`) is never free: a view's free VRAM is already less it
 * (`usableVramMb`, node-rules.ts), so the index agrees with this filter.
 */
import { bestGpu, type NodeView } from "../cycle-state.ts";
import { ok, Reason, unschedulable } from "../reasons.ts";
import type { UnitRequest } from "../types.ts";
import type { FilterPlugin } from "./plugin.ts";

/** Rejects gpu units on nodes without a GPU (no_gpu) or without one GPU that fits (insufficient_vram). */
export const gpuVram = {
  name: "GpuVram",
  filter(unit: UnitRequest, node: NodeView) {
    if (unit.kind !== "gpu") return ok;
    if (node.node.gpus.length === 0) return unschedulable(Reason.NoGpu);
    return bestGpu(node, unit.vramMb) === -1 ? unschedulable(Reason.InsufficientVram) : ok;
  },
} as const satisfies FilterPlugin;
