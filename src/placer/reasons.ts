/**
 * Why a node was rejected for a unit. Every filter returns a Status with one
 * of these codes, so an unplaced unit can say exactly why (and metrics can
 * count `placement_filtered_total{reason}`).
 */

/** Reason codes, one per filter rule, in filter order; the values are what the API and metrics show. */
export const Reason = {
  NodeUnschedulable: "node_unschedulable",
  NodePaused: "node_paused",
  OutsideWindow: "outside_window",
  SandboxUnavailable: "sandbox_unavailable",
  SandboxRequired: "sandbox_required",
  TrustBelowTier: "trust_below_tier",
  NoGpu: "no_gpu",
  GpuCountTooLow: "gpu_count_too_low",
  GpuModelNotAllowed: "gpu_model_not_allowed",
  ComputeCapabilityTooLow: "compute_capability_too_low",
  CudaVersionTooLow: "cuda_version_too_low",
  InsufficientVram: "insufficient_vram",
  InsufficientGpus: "insufficient_gpus",
  NodeExcluded: "node_excluded",
  InsufficientDisk: "insufficient_disk",
  InsufficientCpu: "insufficient_cpu",
  InsufficientMemory: "insufficient_memory",
  NodeFull: "node_full",
  NodeReserved: "node_reserved",
} as const;

/** One of the {@link Reason} values. */
export type ReasonCode = (typeof Reason)[keyof typeof Reason];

/**
 * A filter's verdict, as in kube-scheduler: `unschedulable` may pass on a
 * later cycle (resources free up, the owner resumes); `unresolvable` never
 * will on this node (its trust level is below the unit's tier, it runs units
 * without a sandbox and the unit is sensitive, it already failed the unit, or
 * its GPUs are too few, of another model, or too old for the unit).
 */
export type Status =
  | { readonly code: "success" }
  | { readonly code: "unschedulable" | "unresolvable"; readonly reason: ReasonCode };

/** The passing status (shared; statuses are immutable). */
export const ok: Status = { code: "success" };

/** A rejection that may clear when resources free up. */
export function unschedulable(reason: ReasonCode): Status {
  return { code: "unschedulable", reason };
}

/** A rejection that retrying on this node cannot fix. */
export function unresolvable(reason: ReasonCode): Status {
  return { code: "unresolvable", reason };
}
