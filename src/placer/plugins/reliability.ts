/** Home nodes go away; prefer the ones that have finished their work before. */
import type { NodeView } from "../cycle-state.ts";
import type { UnitRequest } from "../types.ts";
import type { ScorePlugin } from "./plugin.ts";

/** 100 × a node's reliability, clamped to 0..1 (NaN counts as 0). */
export function reliabilityScore(r: number): number {
  return Number.isNaN(r) ? 0 : 100 * Math.min(1, Math.max(0, r));
}

/** Scores a node by {@link reliabilityScore}. */
export const reliability = {
  name: "Reliability",
  weight: "reliability",
  score(_unit: UnitRequest, node: NodeView) {
    return reliabilityScore(node.node.reliability);
  },
} as const satisfies ScorePlugin;
