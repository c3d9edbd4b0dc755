/** Only online nodes that are not cordoned, draining or revoked take new work. */
import type { NodeView } from "../cycle-state.ts";
import { ok, Reason, unschedulable } from "../reasons.ts";
import type { UnitRequest } from "../types.ts";
import type { FilterPlugin } from "./plugin.ts";

/** Rejects nodes the snapshot marks unschedulable (node_unschedulable). */
export const nodeSchedulable = {
  name: "NodeSchedulable",
  filter(_unit: UnitRequest, node: NodeView) {
    return node.node.schedulable ? ok : unschedulable(Reason.NodeUnschedulable);
  },
} as const satisfies FilterPlugin;
