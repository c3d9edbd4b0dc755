/**
 * A job may need a lowest compute capability (`min_compute_capability`, "major.minor": 8.0 for bf16,
 * 8.0+ for FlashAttention 2), compared numerically ("8.10" > "8.9"). A GPU whose capability the agent
 * did not report satisfies no minimum. Counted over the GPUs that also pass the model allow-list, so a
 * node qualifies only with `gpuCount` GPUs that satisfy both. Hardware does not change: unresolvable.
 */
import { GpuConstraint } from "../gpu-rules.ts";
import { constraintFilter } from "./gpu-constraint-filter.ts";
import { Reason } from "../reasons.ts";

/** Rejects nodes with fewer than `gpuCount` allowed GPUs of at least the capability asked (compute_capability_too_low, unresolvable). */
export const computeCapability = constraintFilter("ComputeCapability", GpuConstraint.ComputeCapability, Reason.ComputeCapabilityTooLow, (unit) => (unit.minComputeCapability ?? "") !== "");
