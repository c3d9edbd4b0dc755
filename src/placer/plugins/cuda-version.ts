/**
 * A job may need a lowest CUDA version of the node's driver (`min_cuda_version`, "major.minor"),
 * compared numerically ("12.10" > "12.4"); a GPU whose CUDA version is unknown satisfies no minimum.
 * Counted over the GPUs that also pass the model and capability rules. Unresolvable: waiting does not
 * upgrade a driver (an owner who does reconnects the agent, and the next snapshot shows it).
 */
import { GpuConstraint } from "../gpu-rules.ts";
import { constraintFilter } from "./gpu-constraint-filter.ts";
import { Reason } from "../reasons.ts";

/** Rejects nodes with fewer than `gpuCount` otherwise allowed GPUs of at least the CUDA version asked (cuda_version_too_low, unresolvable). */
export const cudaVersion = constraintFilter("CudaVersion", GpuConstraint.CudaVersion, Reason.CudaVersionTooLow, (unit) => (unit.minCudaVersion ?? "") !== "");
