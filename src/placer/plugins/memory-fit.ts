/** RAM is counted like cores, so units on one node cannot push it into swap or the OOM killer. */
import type { NodeView } from "../cycle-state.ts";
import { ok, Reason, unschedulable } from "../reasons.ts";
import type { UnitRequest } from "../types.ts";
import type { FilterPlugin } from "./plugin.ts";

/** Rejects nodes with less free memory than the unit asks for (insufficient_memory). */
export const memoryFit = {
  name: "MemoryFit",
  filter(unit: UnitRequest, node: NodeView) {
    return node.freeMemoryMb >= unit.memoryMb ? ok : unschedulable(Reason.InsufficientMemory);
  },
} as const satisfies FilterPlugin;
