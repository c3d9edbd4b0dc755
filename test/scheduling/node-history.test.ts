/** What NodeHistory (src/scheduling/node-history.ts) tells the snapshot memo about reliability that moved. */
import assert from "node:assert/strict";
import { NodeHistory, nodeReliability } from "../../src/scheduling/node-history.ts";
import type { Sql } from "../../src/store/database.ts";

describe("NodeHistory", () => {
  let now = 0;
  const clock = { now: () => now, sleep: async () => {} };
  let counts: { node_id: string; completed: number; lost: number }[] = [];
  let reads = 0;
  const sql = {
    query: async () => {
      reads += 1;
      return counts;
    },
  } as unknown as Sql;

  beforeEach(() => {
    now = 1_000_000;
    reads = 0;
    counts = [
      { node_id: "a", completed: 5, lost: 0 },
      { node_id: "b", completed: 1, lost: 1 },
    ];
  });

  it("reads the counts at most once per refresh period", async () => {
    const history = new NodeHistory(clock, { refreshMs: 30_000 });
    const reliability = await history.reliability(sql);
    assert.equal(reliability("a"), nodeReliability(5, 0));
    assert.equal(reliability("new"), nodeReliability(0, 0));
    now += 29_999;
    await history.reliability(sql);
    assert.equal(reads, 1);
    now += 1;
    await history.reliability(sql);
    assert.equal(reads, 2);
  });

  it("names all nodes at first, then those whose counts changed, appeared or vanished at a refresh", async () => {
    const history = new NodeHistory(clock, { refreshMs: 30_000 });
    await history.reliability(sql);
    assert.equal(history.takeChanged(), "all");
    counts = [
      { node_id: "a", completed: 5, lost: 0 },
      { node_id: "c", completed: 1, lost: 0 },
    ];
    now += 30_000;
    await history.reliability(sql);
    assert.deepEqual([...(history.takeChanged() as Set<string>)].sort(), ["b", "c"]);
    assert.deepEqual([...(history.takeChanged() as Set<string>)], []);
    history.invalidate();
    assert.equal(history.takeChanged(), "all");
  });
});
