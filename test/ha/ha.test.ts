/**
 * Unit checks of the HA pieces that need no etcd: elector timing rules, the
 * cluster-bus envelope, cancel relaying to the replica that holds a stream,
 * the database fence, and the metrics' route labels. (Elections, failover and
 * fencing with real processes: test/integration/failover.test.ts.)
 */
import assert from "node:assert/strict";
import { create } from "@bufbuild/protobuf";
import { sendCancel } from "../../src/agent-streams/assignments.ts";
import type { AgentSession } from "../../src/agent-streams/session-registry.ts";
import { SessionResponseSchema } from "../../src/gen/gpuagent/agent/v1/agent_pb.ts";
import type { ClusterBus, ClusterMessage } from "../../src/ha/cluster-bus.ts";
import { parseEnvelope } from "../../src/ha/cluster-bus.ts";
import { ClusterSessionRegistry } from "../../src/ha/cluster-sessions.ts";
import { claimFencingTerm, currentFencingTerm } from "../../src/store/leases.ts";
import { LeaderTimingError, defaultTiming, validateTiming } from "../../src/ha/leader-elector.ts";
import { routeLabel } from "../../src/observability/metrics.ts";
import { AsyncQueue } from "../../src/platform/async-queue.ts";
import { openMigratedPGlite } from "../support/database-template.ts";


describe("LeaderElector timing (client-go's rules)", () => {
  it("accepts the defaults derived from any TTL ≥ 1 s", () => {
    for (const ttl of [1, 2, 5, 15, 60]) validateTiming(defaultTiming(ttl));
    assert.deepEqual(defaultTiming(5), { leaseTtlSeconds: 5, renewDeadlineMs: 3333, retryPeriodMs: 1000 });
  });

  it("rejects a TTL that is not a whole number of seconds ≥ 1", () => {
    assert.throws(() => validateTiming({ leaseTtlSeconds: 0, renewDeadlineMs: 100, retryPeriodMs: 10 }), LeaderTimingError);
    assert.throws(() => validateTiming({ leaseTtlSeconds: 1.5, renewDeadlineMs: 100, retryPeriodMs: 10 }), LeaderTimingError);
  });

  it("rejects a renew deadline not below the TTL, or not above 1.2 × the retry period", () => {
    assert.throws(() => validateTiming({ leaseTtlSeconds: 2, renewDeadlineMs: 2000, retryPeriodMs: 100 }), /shorter than the lease TTL/);
    assert.throws(() => validateTiming({ leaseTtlSeconds: 5, renewDeadlineMs: 1200, retryPeriodMs: 1000 }), /1.2 × retry period/);
    assert.throws(() => validateTiming({ leaseTtlSeconds: 5, renewDeadlineMs: 1000, retryPeriodMs: 0 }), /retry period must be positive/);
  });
});

describe("cluster bus envelope", () => {
  it("parses what replicas send and drops anything malformed", () => {
    assert.deepEqual(parseEnvelope(JSON.stringify({ from: "a", type: "dispatch", nodeId: "n1" })), { from: "a", message: { type: "dispatch", nodeId: "n1" } });
    assert.deepEqual(parseEnvelope(JSON.stringify({ from: "a", type: "cancel", nodeId: "n", unitId: "u", attempt: 2, reason: "r" })), {
      from: "a",
      message: { type: "cancel", nodeId: "n", unitId: "u", attempt: 2, reason: "r" },
    });
    for (const bad of ["", "null", "[]", `{"type":"wake"}`, `{"from":"a","type":"cancel","nodeId":"n","unitId":"u","attempt":"2"}`, `{"from":"a","type":"rm -rf"}`]) {
      assert.equal(parseEnvelope(bad), undefined, bad);
    }
  });
});

describe("ClusterSessionRegistry", () => {
  const recordingBus = () => {
    const sent: ClusterMessage[] = [];
    const bus: ClusterBus = { publish: (m) => void sent.push(m), subscribe: () => undefined, close: async () => undefined };
    return { bus, sent };
  };
  const localSession = (nodeId: string): AgentSession => ({
    nodeId,
    sessionId: "s1",
    outbound: new AsyncQueue(16),
    sentAssignments: new Set(),
    lastSeenMs: 0,
    lastPersistedMs: 0,
    nextSeq: 1n,
  });

  it("sends a cancel down a local stream, and relays it over the bus for a stream held elsewhere", () => {
    const { bus, sent } = recordingBus();
    const sessions = new ClusterSessionRegistry(bus);
    const here = localSession("node-here");
    sessions.register(here);
    assert.equal(sendCancel(sessions, "node-here", "u1", 1, "job ended"), true);
    assert.equal(here.outbound.size, 1);
    assert.deepEqual(sent, []);
    assert.equal(sendCancel(sessions, "node-elsewhere", "u2", 3, "cancelled by the customer"), true);
    assert.deepEqual(sent, [{ type: "cancel", nodeId: "node-elsewhere", unitId: "u2", attempt: 3, reason: "cancelled by the customer" }]);
  });

  it("never relays an Assign (the holder builds its own), relays close, and counts only local streams", () => {
    const { bus, sent } = recordingBus();
    const sessions = new ClusterSessionRegistry(bus);
    const relay = sessions.get("remote")!;
    assert.equal(relay.outbound.push(create(SessionResponseSchema, { seq: 1n, body: { case: "assign", value: {} as never } })), false);
    relay.outbound.close();
    assert.deepEqual(sent, [{ type: "close-stream", nodeId: "remote" }]);
    assert.equal(sessions.size, 0);
    assert.equal(sessions.getLocal("remote"), undefined);
  });
});

describe("database fence for etcd terms", function () {
  this.timeout(30_000);
  it("only ever moves the term up; a stale leader's claim fails and the fence keeps the newer term", async () => {
    const db = await openMigratedPGlite();
    try {
      assert.equal(await claimFencingTerm(db, 10, "a"), true);
      assert.equal(await claimFencingTerm(db, 10, "a"), true, "re-claiming one's own term is idempotent");
      assert.equal(await claimFencingTerm(db, 10, "b"), false, "the same term for another holder is refused");
      assert.equal(await claimFencingTerm(db, 17, "b"), true);
      assert.equal(await claimFencingTerm(db, 10, "a"), false, "the older leader cannot take it back");
      assert.deepEqual(await currentFencingTerm(db), { term: 17, holder: "b" });
    } finally {
      await db.close();
    }
  });
});

describe("metrics route label", () => {
  it("keeps RPC paths, templates ids, collapses blob URLs and unmatched routes", () => {
    assert.equal(routeLabel("/gpuagent.customer.v1.CustomerService/GetTrainingJob", 200), "/gpuagent.customer.v1.CustomerService/GetTrainingJob");
    assert.equal(routeLabel("/api/v1/customer/training-jobs/0b7d8f4e-1c2a-4b3c-9d8e-7f6a5b4c3d2e/cancel", 200), "/api/v1/customer/training-jobs/{id}/cancel");
    assert.equal(routeLabel("/blobs/datasets/abc", 200), "/blobs/{key}");
    assert.equal(routeLabel("/no/such/thing", 404), "unmatched");
  });
});
