/**
 * The rules about which GPUs of a node a gpu unit may use: its constraints (model allow-list, lowest
 * compute capability, lowest CUDA version), one definition shared by the filter plugins
 * (plugins/gpu-count.ts, gpu-model.ts, compute-capability.ts, cuda-version.ts, gpu-vram.ts) and by
 * the placer's index walk (place-units.ts), so the two can never disagree.
 *
 * The constraints apply per GPU and add up: a node qualifies only with `gpuCount` GPUs that satisfy
 * every constraint and have the VRAM. Each constraint filter therefore counts the GPUs that satisfy
 * it AND every constraint before it (model, then compute capability, then CUDA): a node with one
 * allowed GPU of too low a capability and one fast GPU of another model has no GPU the unit can use.
 * Models and versions read as src/planner/gpu-constraints.ts reads them for admission: an allow-list
 * of case-insensitive substrings, "major.minor" compared part by part ("8.10" > "8.9"), an unknown
 * version meeting no minimum.
 */
import { gpuModelAllowed, meetsMinimum } from "../planner/gpu-constraints.ts";
import type { GpuView, UnitRequest } from "./types.ts";

/** How many GPUs a gpu unit needs on one node (1 when absent); 0 for a cpu unit. */
export function gpuCountOf(unit: Pick<UnitRequest, "kind" | "gpuCount">): number {
  return unit.kind === "gpu" ? (unit.gpuCount ?? 1) : 0;
}

/** Whether the unit constrains which GPUs it may use at all (model, compute capability or CUDA version). */
export function hasGpuConstraints(unit: UnitRequest): boolean {
  return (unit.gpuModels !== undefined && unit.gpuModels.length > 0) || (unit.minComputeCapability ?? "") !== "" || (unit.minCudaVersion ?? "") !== "";
}

/** The constraints in the order they are checked; a GPU is judged by the first one it fails. */
export const GpuConstraint = { None: 0, Model: 1, ComputeCapability: 2, CudaVersion: 3 } as const;
export type GpuConstraintStage = (typeof GpuConstraint)[keyof typeof GpuConstraint];

/** The first constraint `gpu` fails for `unit` (model, then compute capability, then CUDA), or None. */
export function failedConstraint(unit: UnitRequest, gpu: GpuView): GpuConstraintStage {
  if (!gpuModelAllowed(gpu.name, unit.gpuModels ?? [])) return GpuConstraint.Model;
  if (!meetsMinimum(gpu.computeCapability, unit.minComputeCapability ?? "")) return GpuConstraint.ComputeCapability;
  if (!meetsMinimum(gpu.cudaVersion, unit.minCudaVersion ?? "")) return GpuConstraint.CudaVersion;
  return GpuConstraint.None;
}

/** Whether a GPU that first fails `failed` satisfies every constraint up to and including `stage`. */
export function passesUpTo(failed: GpuConstraintStage, stage: GpuConstraintStage): boolean {
  return failed === GpuConstraint.None || failed > stage;
}

/** How many of `gpus` satisfy the unit's constraints up to and including `stage`. */
export function gpusPassing(unit: UnitRequest, gpus: readonly GpuView[], stage: GpuConstraintStage): number {
  let n = 0;
  for (const g of gpus) if (passesUpTo(failedConstraint(unit, g), stage)) n++;
  return n;
}
