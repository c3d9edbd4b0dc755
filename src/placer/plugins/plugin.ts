/**
 * The two plugin shapes (kube-scheduler's Filter and Score extension points).
 * A plugin is a plain object over one unit and one NodeView (and, for a
 * scorer, the cycle's context); it reads nothing else, so each can be tested
 * alone with `viewOf(nodeWith({...}))`.
 */
import type { NodeView } from "../cycle-state.ts";
import type { Status } from "../reasons.ts";
import type { ScoreWeights } from "../../platform/config.ts";
import type { CycleContext, UnitRequest } from "../types.ts";

/** Hard policy: may this node take this unit now? */
export interface FilterPlugin {
  readonly name: string;
  filter(unit: UnitRequest, node: NodeView): Status;
}

/**
 * Preference among feasible nodes: 0..100, higher is better; `weight` names
 * its weight in the options. `cycle` carries what the whole cycle knows (the
 * demand profile of its waiting units).
 */
export interface ScorePlugin {
  readonly name: string;
  readonly weight: keyof ScoreWeights;
  score(unit: UnitRequest, node: NodeView, cycle: CycleContext): number;
}
