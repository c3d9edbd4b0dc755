/** The unit's work directory (dataset, package, artifacts) must fit on the node's free disk. */
import type { NodeView } from "../cycle-state.ts";
import { ok, Reason, unschedulable } from "../reasons.ts";
import type { UnitRequest } from "../types.ts";
import type { FilterPlugin } from "./plugin.ts";

/** Rejects nodes with less free disk than the unit asks for (insufficient_disk). */
export const diskFit = {
  name: "DiskFit",
  filter(unit: UnitRequest, node: NodeView) {
    return node.diskFreeMb >= unit.diskMb ? ok : unschedulable(Reason.InsufficientDisk);
  },
} as const satisfies FilterPlugin;
