/**
 * Busy is not broken: an agent runs at most `--max-units` units at once, and a node at its limit takes
 * no new unit until one ends (unschedulable, never unresolvable: the unit stays ready for that node).
 * The placer counts each unit it reserves against the node's free slots, so one cycle never sends a
 * node more units than it has room for.
 */
import type { NodeView } from "../cycle-state.ts";
import { ok, Reason, unschedulable } from "../reasons.ts";
import type { UnitRequest } from "../types.ts";
import type { FilterPlugin } from "./plugin.ts";

/** Rejects nodes with no free unit slot (node_full). */
export const nodeConcurrency = {
  name: "NodeConcurrency",
  filter(_unit: UnitRequest, node: NodeView) {
    return node.freeUnitSlots >= 1 ? ok : unschedulable(Reason.NodeFull);
  },
} as const satisfies FilterPlugin;
