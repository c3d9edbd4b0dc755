/**
 * Metric helper: why units stayed unplaced, by reason, with every reason
 * present (zeros included) so a metric's label set stays stable.
 */
import { Reason, type ReasonCode } from "./reasons.ts";
import type { PlacementResult } from "./types.ts";

const reasonOrder: readonly ReasonCode[] = Object.values(Reason);

/** Unplaced units and node rejections of one cycle, by reason. */
export interface ReasonCounts {
  /**
   * Each unplaced unit once, under its main reason: the one that rejected
   * the most nodes (a tie goes to the earlier filter). A unit in a cluster
   * with no nodes counts nowhere. For e.g. `placement_unplaced_units{reason}`.
   */
  readonly units: Record<ReasonCode, number>;
  /**
   * Node rejections summed over the unplaced units (each unit's counts add up
   * to the node count). For e.g. `placement_filtered_total{reason}`.
   */
  readonly nodes: Record<ReasonCode, number>;
}

function zeros(): Record<ReasonCode, number> {
  return Object.fromEntries(reasonOrder.map((r) => [r, 0])) as Record<ReasonCode, number>;
}

/** Summarises `result.unplaced` by reason (pure; see {@link ReasonCounts}). */
export function reasonCounts(result: Pick<PlacementResult, "unplaced">): ReasonCounts {
  const units = zeros();
  const nodes = zeros();
  for (const u of result.unplaced) {
    let main: ReasonCode | undefined;
    let mainCount = 0;
    for (const reason of reasonOrder) {
      const n = u.reasons[reason] ?? 0;
      nodes[reason] += n;
      if (n > mainCount) {
        main = reason;
        mainCount = n;
      }
    }
    if (main !== undefined) units[main]++;
  }
  return { units, nodes };
}
