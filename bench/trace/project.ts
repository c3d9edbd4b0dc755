/**
 * The project's placer as a trace policy: one placer over the trace's nodes
 * for the whole replay (reservations stay, as committed placements would),
 * one arrival per cycle through its public API (`createPlacer(…).place`).
 * What it is told beyond the arriving unit is what the scheduling loop knows
 * too: the asks of recently arrived units (its demand window, profile.ts).
 */
import { createPlacer } from "../../src/placer/index.ts";
import { createDemandWindow } from "../../src/placer/profile.ts";
import type { PlacerOptions } from "../../src/placer/types.ts";
import type { ScoreWeights } from "../../src/platform/config.ts";
import { toNodeSnapshot, toUnitRequest, type TraceNode } from "./openb.ts";
import type { TraceScheduler } from "./replay.ts";

/** A trace scheduler backed by the project's placer; `weights` default to the placer's. */
export function createProjectScheduler(nodes: readonly TraceNode[], seed: string, weights?: ScoreWeights, maxScored?: number): TraceScheduler {
  const placer = createPlacer({ nodes: nodes.map(toNodeSnapshot) });
  const window = createDemandWindow();
  return {
    place(task, arrival) {
      const unit = toUnitRequest(task, `u${arrival}`, arrival);
      // As the scheduling loop does: the cycle's ready units join the window before the cycle is planned.
      window.record([unit]);
      const options: PlacerOptions = { seed: `${seed}:${arrival}`, recentAsks: window.asks() };
      if (weights !== undefined) options.weights = weights;
      if (maxScored !== undefined) options.maxScored = maxScored;
      return placer.place([unit], options).placements.length === 1;
    },
  };
}
