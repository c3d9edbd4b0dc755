/** Why the placer sends a node nothing, in the operator's words (src/scheduling/node-views.ts). */
import assert from "node:assert/strict";
import { notPlacingReason } from "../../src/scheduling/node-views.ts";
import type { NodeRow } from "../../src/store/nodes.ts";

/** An online, sandboxed node its owner lets work, changed by `change`. */
const row = (change: Partial<NodeRow>): NodeRow =>
  ({
    state: "online",
    isolation: "bubblewrap",
    isolation_reason: "",
    owner_paused: false,
    owner_available: "",
    owner_within_window: true,
    ...change,
  }) as NodeRow;

describe("notPlacingReason", () => {
  const cases: { node: string; change: Partial<NodeRow>; reason: string }[] = [
    { node: "an online node that may take units", change: {}, reason: "" },
    { node: "a node without a sandbox (it still takes public units)", change: { isolation: "none" }, reason: "" },
    { node: "a node its owner paused", change: { owner_paused: true }, reason: "paused by its owner" },
    {
      node: "a node outside its availability window",
      change: { owner_available: "Mon-Fri 18:00-08:00", owner_within_window: false },
      reason: "outside its availability window Mon-Fri 18:00-08:00",
    },
    {
      node: "a node whose sandbox is unavailable",
      change: { isolation: "unavailable", isolation_reason: "user namespaces are disabled" },
      reason: "sandbox unavailable: user namespaces are disabled",
    },
    { node: "a node whose sandbox is unavailable for no reason given", change: { isolation: "unavailable" }, reason: "sandbox unavailable" },
    { node: "a cordoned node", change: { state: "cordoned" }, reason: "cordoned" },
    { node: "a draining node", change: { state: "draining" }, reason: "draining" },
    { node: "a revoked node", change: { state: "revoked" }, reason: "revoked" },
    { node: "an unreachable node", change: { state: "unreachable" }, reason: "unreachable: no heartbeat within the grace period" },
    {
      node: "a cordoned node its owner paused, outside its window, whose sandbox is unavailable",
      change: { state: "cordoned", owner_paused: true, owner_available: "Sat 09:00-17:00", owner_within_window: false, isolation: "unavailable", isolation_reason: "no bwrap" },
      reason: "cordoned; paused by its owner; outside its availability window Sat 09:00-17:00; sandbox unavailable: no bwrap",
    },
  ];
  for (const c of cases) {
    it(`says ${JSON.stringify(c.reason)} for ${c.node}`, () => assert.equal(notPlacingReason(row(c.change)), c.reason));
  }
});
