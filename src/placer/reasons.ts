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
  InsufficientVram: "insufficient_vram",
  NodeExcluded: "node_excluded",
  InsufficientDisk: "insufficient_disk",
  InsufficientCpu: "insufficient_cpu",
  InsufficientMemory: "insufficient_memory",
} as const;

/** One of the {@link Reason} values. */
export type ReasonCode = (typeof Reason)[keyof typeof Reason];

/**
 * A filter's verdict, as in kube-scheduler: `unschedulable` may pass on a
 * later cycle (resources free up, the owner resumes); `unresolvable` never
 * will on this node (its trust level is below the unit's tier, it runs units
 * without a sandbox and the unit is sensitive, or it already failed the unit).
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
