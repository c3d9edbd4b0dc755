/**
 * A home node's owner decides when it works: `gpu-agent pause` stops new units (running ones
 * finish), and an availability window ("Mon-Fri 18:00-08:00", the node's local time) keeps units
 * away outside it. Both pass by themselves (the owner resumes, the window opens), so unschedulable.
 */
import type { NodeView } from "../cycle-state.ts";
import { ownerBar } from "../node-rules.ts";
import { ok, unschedulable } from "../reasons.ts";
import type { UnitRequest } from "../types.ts";
import type { FilterPlugin } from "./plugin.ts";

/** Rejects nodes their owner paused (node_paused) or that are outside their availability window (outside_window). */
export const ownerAvailability = {
  name: "OwnerAvailability",
  filter(_unit: UnitRequest, node: NodeView) {
    const bar = ownerBar(node.node);
    return bar === undefined ? ok : unschedulable(bar);
  },
} as const satisfies FilterPlugin;
