/**
 * A node runs a stranger's code next to its owner's files. Where the sandbox cannot start
 * ("unavailable") the node takes no unit until its operator fixes it or accepts running without one;
 * a node without a sandbox ("none", the operator's explicit choice) takes public units only, since a
 * sensitive unit's data would be open to everything else on that machine. The first may pass later
 * (unschedulable); the second never will for a sensitive unit (unresolvable), like a trust tier.
 */
import type { NodeView } from "../cycle-state.ts";
import { sandboxRequired } from "../node-rules.ts";
import { ok, Reason, unresolvable, unschedulable } from "../reasons.ts";
import type { UnitRequest } from "../types.ts";
import type { FilterPlugin } from "./plugin.ts";

/** Rejects nodes whose sandbox is unavailable (sandbox_unavailable), and sensitive units on nodes without one (sandbox_required). */
export const nodeIsolation = {
  name: "NodeIsolation",
  filter(unit: UnitRequest, node: NodeView) {
    if (node.node.isolation === "unavailable") return unschedulable(Reason.SandboxUnavailable);
    if (node.node.isolation === "none" && sandboxRequired(unit.sensitivity)) return unresolvable(Reason.SandboxRequired);
    return ok;
  },
} as const satisfies FilterPlugin;
