/**
 * A node that already failed a unit never gets it again (the scheduling loop
 * lists such nodes in `excludedNodeIds`). Unresolvable for the same reason as
 * trust: retrying on that node is exactly what this rule forbids.
 */
import type { NodeView } from "../cycle-state.ts";
import { ok, Reason, unresolvable } from "../reasons.ts";
import type { UnitRequest } from "../types.ts";
import type { FilterPlugin } from "./plugin.ts";

/** Rejects nodes listed in the unit's `excludedNodeIds` (node_excluded, unresolvable). */
export const nodeExcluded = {
  name: "NodeExcluded",
  filter(unit: UnitRequest, node: NodeView) {
    return unit.excludedNodeIds.includes(node.node.id) ? unresolvable(Reason.NodeExcluded) : ok;
  },
} as const satisfies FilterPlugin;
