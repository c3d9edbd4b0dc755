/**
 * A job may name the GPU models it runs on (`gpu_models`, an allow-list matched case-insensitively as
 * substrings of the model the driver reports, e.g. "4090" or "A100"). A node qualifies only with
 * `gpuCount` GPUs of an allowed model. The model of a GPU never changes: unresolvable.
 */
import { GpuConstraint } from "../gpu-rules.ts";
import { constraintFilter } from "./gpu-constraint-filter.ts";
import { Reason } from "../reasons.ts";

/** Rejects nodes with fewer than `gpuCount` GPUs of an allowed model (gpu_model_not_allowed, unresolvable). */
export const gpuModel = constraintFilter("GpuModel", GpuConstraint.Model, Reason.GpuModelNotAllowed, (unit) => unit.gpuModels !== undefined && unit.gpuModels.length > 0);
