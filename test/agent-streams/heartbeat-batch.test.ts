import assert from "node:assert/strict";
import { createHeartbeatBatcher } from "../../src/agent-streams/heartbeat-batch.ts";
import type { Sql } from "../../src/store/database.ts";

/** An Sql that records statements and completes each when the test says so. */
function gatedSql() {
  const calls: { text: string; params: readonly unknown[]; release: () => void; fail: (e: unknown) => void }[] = [];
  const sql: Sql = {
    query<T>(text: string, params: readonly unknown[] = []): Promise<T[]> {
      return new Promise<T[]>((resolve, reject) => {
        calls.push({ text, params, release: () => resolve([]), fail: reject });
      });
    },
  };
  return { sql, calls };
}

const tick = () => new Promise<void>((r) => setImmediate(r));

/** A clock whose sleeps end when the test says so. */
function manualClock() {
  let now = 0;
  const sleeps: { until: number; wake: () => void }[] = [];
  return {
    clock: {
      now: () => now,
      sleep: (ms: number) => new Promise<void>((wake) => void sleeps.push({ until: now + ms, wake })),
    },
    sleeps,
    advance(ms: number) {
      now += ms;
      for (const s of sleeps.splice(0)) {
        if (s.until <= now) s.wake();
        else sleeps.push(s);
      }
    },
  };
}

/** Writes back to back, as the first tests describe the batching itself. */
const backToBack = { clock: manualClock().clock, spacingMs: 0 };

describe("heartbeat batcher", () => {
  it("writes heartbeats that arrive together, and those arriving during a write, in one UPDATE each", async () => {
    const { sql, calls } = gatedSql();
    const batcher = createHeartbeatBatcher(sql, backToBack);
    const a = batcher.touch("00000000-0000-4000-8000-00000000000a", new Date(2000));
    const b = batcher.touch("00000000-0000-4000-8000-00000000000b", new Date(1000));
    await tick();
    assert.equal(calls.length, 1);
    assert.deepEqual(calls[0]!.params, [["00000000-0000-4000-8000-00000000000a", "00000000-0000-4000-8000-00000000000b"], new Date(1000)]);
    // Arrives while the first write is in flight: waits for the next one, which covers all such nodes.
    let cSettled = false;
    const c = batcher.touch("00000000-0000-4000-8000-00000000000c", new Date(3000)).then(() => void (cSettled = true));
    const d = batcher.touch("00000000-0000-4000-8000-00000000000d", new Date(3000));
    await tick();
    assert.equal(calls.length, 1, "no second write while one is in flight");
    calls[0]!.release();
    await Promise.all([a, b]);
    await tick();
    assert.equal(cSettled, false, "a heartbeat is acknowledged only once its own row is written");
    assert.equal(calls.length, 2);
    assert.deepEqual(calls[1]!.params[0], ["00000000-0000-4000-8000-00000000000c", "00000000-0000-4000-8000-00000000000d"]);
    calls[1]!.release();
    await Promise.all([c, d]);
  });

  it("rejects the waiters of a failed write and keeps writing later batches", async () => {
    const { sql, calls } = gatedSql();
    const batcher = createHeartbeatBatcher(sql, backToBack);
    const a = batcher.touch("00000000-0000-4000-8000-00000000000a", new Date(1));
    await tick();
    calls[0]!.fail(new Error("connection lost"));
    await assert.rejects(a, /connection lost/);
    const b = batcher.touch("00000000-0000-4000-8000-00000000000b", new Date(2));
    await tick();
    assert.equal(calls.length, 2);
    calls[1]!.release();
    await b;
  });

  it("starts writes at most once per spacing, so the database is not kept busy by heartbeats", async () => {
    const { sql, calls } = gatedSql();
    const time = manualClock();
    const batcher = createHeartbeatBatcher(sql, { clock: time.clock, spacingMs: 250 });
    const a = batcher.touch("00000000-0000-4000-8000-00000000000a", new Date(1));
    await tick();
    assert.equal(calls.length, 1, "an idle batcher writes at once");
    time.advance(10);
    calls[0]!.release();
    await a;
    const b = batcher.touch("00000000-0000-4000-8000-00000000000b", new Date(2));
    const c = batcher.touch("00000000-0000-4000-8000-00000000000c", new Date(3));
    await tick();
    assert.equal(calls.length, 1, "the next write waits for the spacing");
    assert.deepEqual(time.sleeps.map((s) => s.until), [250]);
    time.advance(240);
    await tick();
    assert.equal(calls.length, 2);
    assert.deepEqual(calls[1]!.params[0], ["00000000-0000-4000-8000-00000000000b", "00000000-0000-4000-8000-00000000000c"]);
    calls[1]!.release();
    await Promise.all([b, c]);
  });
});
