/** CPU cores are counted, not shared: a node never runs more requested cores than it has free. */
import type { NodeView } from "../cycle-state.ts";
import { ok, Reason, unschedulable } from "../reasons.ts";
import type { UnitRequest } from "../types.ts";
import type { FilterPlugin } from "./plugin.ts";

/** Rejects nodes with fewer free CPU cores than the unit asks for (insufficient_cpu). */
export const cpuFit = {
  name: "CpuFit",
  filter(unit: UnitRequest, node: NodeView) {
    return node.freeCpuCores >= unit.cpuCores ? ok : unschedulable(Reason.InsufficientCpu);
  },
} as const satisfies FilterPlugin;
