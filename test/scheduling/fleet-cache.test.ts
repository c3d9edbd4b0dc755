/** The leader's copy of the online nodes' rows (src/scheduling/fleet-cache.ts). */
import assert from "node:assert/strict";
import { FleetCache } from "../../src/scheduling/fleet-cache.ts";
import type { Sql } from "../../src/store/database.ts";

function countingSql(): { sql: Sql; reads: () => number } {
  let reads = 0;
  const sql = {
    query: async () => {
      reads++;
      return [{ id: `node-${reads}` }];
    },
  } as unknown as Sql;
  return { sql, reads: () => reads };
}

describe("FleetCache", () => {
  it("reads the nodes once per max age, then again once the copy is older", async () => {
    let now = 1_000;
    const clock = { now: () => now, sleep: async () => {} };
    const { sql, reads } = countingSql();
    const fleet = new FleetCache(clock, 1000);
    const first = await fleet.onlineNodes(sql);
    now += 999;
    assert.equal(await fleet.onlineNodes(sql), first);
    assert.equal(reads(), 1);
    now += 1;
    assert.notEqual(await fleet.onlineNodes(sql), first);
    assert.equal(reads(), 2);
  });

  it("reads again at once after invalidate", async () => {
    const clock = { now: () => 5_000, sleep: async () => {} };
    const { sql, reads } = countingSql();
    const fleet = new FleetCache(clock);
    await fleet.onlineNodes(sql);
    fleet.invalidate();
    await fleet.onlineNodes(sql);
    assert.equal(reads(), 2);
  });
});
