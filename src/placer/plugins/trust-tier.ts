/**
 * A unit never runs below its sensitivity tier. Unresolvable: no amount of
 * waiting raises a node's trust level, so the caller should not retry there.
 */
import type { NodeView } from "../cycle-state.ts";
import { ok, Reason, unresolvable } from "../reasons.ts";
import { minimumTrust, trustRank } from "../trust.ts";
import type { UnitRequest } from "../types.ts";
import type { FilterPlugin } from "./plugin.ts";

/** Rejects nodes whose trust level is below the unit's tier (trust_below_tier, unresolvable). */
export const trustTier = {
  name: "TrustTier",
  filter(unit: UnitRequest, node: NodeView) {
    return trustRank(node.node.trustLevel) >= trustRank(minimumTrust(unit.sensitivity))
      ? ok
      : unresolvable(Reason.TrustBelowTier);
  },
} as const satisfies FilterPlugin;
