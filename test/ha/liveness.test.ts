/** Which nodes the leader may place on (src/ha/liveness.ts): local streams exactly, other replicas' nodes by a persisted-heartbeat set read off the cycle's path. */
import assert from "node:assert/strict";
import type { LocalStream } from "../../src/ha/liveness.ts";
import { NodeLiveness } from "../../src/ha/liveness.ts";
import type { Sql } from "../../src/store/database.ts";
import type { AgentSession } from "../../src/agent-streams/session-registry.ts";
import { SessionRegistry } from "../../src/agent-streams/session-registry.ts";

/** A database whose heartbeat reads the test answers one at a time. */
function heartbeatReads() {
  const pending: { since: Date; answer: (ids: string[]) => void; fail: (error: Error) => void }[] = [];
  const sql = {
    query: (_text: string, params: unknown[]) =>
      new Promise((resolve, reject) => {
        pending.push({ since: params[0] as Date, answer: (ids) => resolve(ids.map((id) => ({ id }))), fail: reject });
      }),
  } as unknown as Sql;
  return { sql, pending };
}

describe("NodeLiveness", () => {
  let now: number;
  const clock = { now: () => now, sleep: async () => {} };
  const streams = new Map<string, LocalStream>();
  const liveness = (maxAgeMs = 1000) => new NodeLiveness(clock, { silenceMs: 30_000, local: (id) => streams.get(id), maxAgeMs });

  beforeEach(() => {
    now = 1_000_000;
    streams.clear();
  });

  it("counts a local stream locally live until it has been silent for the grace period", () => {
    const l = liveness();
    streams.set("here", { lastSeenMs: now });
    assert.equal(l.isLocallyLive("here"), true);
    now += 29_999;
    assert.equal(l.isLocallyLive("here"), true);
    now += 1;
    assert.equal(l.isLocallyLive("here"), false);
  });

  it("lets placement use a node while its stream is held here, until the re-scan closes it", () => {
    const l = liveness();
    streams.set("here", { lastSeenMs: now - 31_000 });
    assert.equal(l.isLive("here"), true);
    streams.delete("here");
    assert.equal(l.isLive("here"), false);
    assert.equal(l.isLive("nowhere"), false);
  });

  it("names the nodes whose liveness may have changed: all at first, then streams opened or closed here and nodes entering or leaving the heartbeat set", async () => {
    const { sql, pending } = heartbeatReads();
    const l = liveness(1000);
    const first = l.refresh(sql);
    pending[0]!.answer(["a", "b"]);
    await first;
    assert.equal(l.takeChanged(), "all");
    assert.deepEqual([...(l.takeChanged() as Set<string>)], []);
    l.localChanged("here");
    now += 1000;
    await l.refresh(sql);
    pending[1]!.answer(["b", "c"]);
    await l.whenRead();
    assert.deepEqual([...(l.takeChanged() as Set<string>)].sort(), ["a", "c", "here"]);
    assert.deepEqual([...(l.takeChanged() as Set<string>)], []);
  });

  it("waits for the first read of persisted heartbeats, asking for those within the grace period", async () => {
    const { sql, pending } = heartbeatReads();
    const l = liveness();
    const refreshed = l.refresh(sql);
    assert.equal(pending.length, 1);
    assert.equal(pending[0]!.since.getTime(), now - 30_000);
    pending[0]!.answer(["remote"]);
    await refreshed;
    assert.equal(l.isLive("remote"), true);
    assert.equal(l.isLocallyLive("remote"), false);
  });

  it("then reads at most once per max age, in the background, keeping the set it has meanwhile", async () => {
    const { sql, pending } = heartbeatReads();
    const l = liveness(1000);
    const first = l.refresh(sql);
    pending[0]!.answer(["a"]);
    await first;
    now += 999;
    await l.refresh(sql);
    assert.equal(pending.length, 1, "no read within the max age");
    now += 1;
    await l.refresh(sql); // returns without waiting for the read it started
    assert.equal(pending.length, 2);
    await l.refresh(sql);
    assert.equal(pending.length, 2, "one read at a time");
    assert.equal(l.isLive("a"), true, "the old set serves until the read lands");
    pending[1]!.answer(["b"]);
    await l.whenRead();
    assert.deepEqual([l.isLive("a"), l.isLive("b")], [false, true]);
  });

  it("reports a failed background read on the next refresh, then waits for a fresh read", async () => {
    const { sql, pending } = heartbeatReads();
    const l = liveness(1000);
    const first = l.refresh(sql);
    pending[0]!.answer(["a"]);
    await first;
    now += 1000;
    await l.refresh(sql);
    pending[1]!.fail(new Error("connection lost"));
    await l.whenRead();
    await assert.rejects(l.refresh(sql), /connection lost/);
    const again = l.refresh(sql);
    assert.equal(pending.length, 3, "the next refresh reads again and waits for it");
    pending[2]!.answer([]);
    await again;
    assert.equal(l.isLive("a"), false);
  });

  it("says a persisted heartbeat older than the grace period is silent", () => {
    assert.equal(liveness().silentBefore().getTime(), now - 30_000);
  });
});

describe("SessionRegistry.watch: the leader hears of every stream opened or closed here", () => {
  const session = (nodeId: string, sessionId: string) =>
    ({ nodeId, sessionId, outbound: { close: () => undefined }, sentAssignments: new Set(), lastSeenMs: 0, lastPersistedMs: 0, nextSeq: 1n }) as unknown as AgentSession;

  it("on register, on the current session's unregister, and on closeAll; not on a stale session's unregister", () => {
    const registry = new SessionRegistry();
    const heard: string[] = [];
    registry.watch((nodeId) => heard.push(nodeId));
    const old = session("n1", "s1");
    registry.register(old);
    registry.register(session("n1", "s2"));
    registry.unregister(old);
    registry.register(session("n2", "s3"));
    registry.unregister(session("n1", "s2"));
    registry.closeAll();
    assert.deepEqual(heard, ["n1", "n1", "n2", "n1", "n2"]);
  });
});
