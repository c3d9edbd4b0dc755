/**
 * Node administration as a domain service (src/agent-streams/node-admin.ts), called directly, on
 * both backends, with a real session registry: enrollment tokens within their lifetime bounds, and
 * state changes that tell the node's stream and wake the placer; unknown nodes change nothing.
 */
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import type { NodeAdminDeps } from "../../src/agent-streams/node-admin.ts";
import { changeNodeState, mintEnrollmentToken } from "../../src/agent-streams/node-admin.ts";
import type { AgentSession } from "../../src/agent-streams/session-registry.ts";
import { SessionRegistry } from "../../src/agent-streams/session-registry.ts";
import type { SessionResponse } from "../../src/gen/gpuagent/agent/v1/agent_pb.ts";
import { AsyncQueue } from "../../src/platform/async-queue.ts";
import { FakeClock } from "../../src/platform/clock.ts";
import { hashSecret } from "../../src/platform/ids.ts";
import { insertCustomer } from "../../src/store/customers.ts";
import { findUnit } from "../../src/store/jobs.ts";
import { consumeEnrollmentToken, findNode } from "../../src/store/nodes.ts";
import { seedJob, seedNode } from "../blobs/support.ts";
import { describeOnEachBackend } from "../support/billing-rows.ts";
import { refusedWith } from "../support/refusals.ts";

/** The body cases of what was queued to a session, in order (the queue is closed first if still open). */
async function sent(session: AgentSession): Promise<string[]> {
  if (!session.outbound.isClosed) session.outbound.close();
  const cases: string[] = [];
  for await (const message of session.outbound) cases.push(message.body.case ?? "");
  return cases;
}

describeOnEachBackend("node administration", (on) => {
  const clock = new FakeClock();
  let wakes: number;
  beforeEach(() => {
    wakes = 0;
  });
  const deps = (): NodeAdminDeps => ({ db: on.db, clock, wakePlacer: () => void wakes++ });

  async function tokenCount(): Promise<number> {
    const [row] = await on.db.query<{ n: number }>(`SELECT count(*)::int AS n FROM enrollment_tokens`);
    return row!.n;
  }

  function openSession(sessions: SessionRegistry, nodeId: string): AgentSession {
    const session: AgentSession = {
      nodeId,
      sessionId: randomUUID(),
      outbound: new AsyncQueue<SessionResponse>(16),
      sentAssignments: new Set(),
      lastSeenMs: 0,
      lastPersistedMs: 0,
      nextSeq: 1n,
    };
    sessions.register(session);
    return session;
  }

  it("mints a single-use enrollment token at its trust level, an hour long when no lifetime is given", async () => {
    const { token, expiresAt } = await mintEnrollmentToken(deps(), "verified", 0);
    assert.match(token, /^et_/);
    assert.equal(expiresAt.getTime(), clock.now() + 3600 * 1000);
    const nodeId = (await seedNode(on.db, new Date(clock.now()))).nodeId;
    assert.equal(await consumeEnrollmentToken(on.db, hashSecret(token), nodeId, new Date(clock.now())), "verified");
    assert.equal(await consumeEnrollmentToken(on.db, hashSecret(token), nodeId, new Date(clock.now())), undefined);
  });

  const lifetimes: { ttlSeconds: number; ok: boolean }[] = [
    { ttlSeconds: 59, ok: false },
    { ttlSeconds: 60, ok: true },
    { ttlSeconds: 30 * 24 * 3600, ok: true },
    { ttlSeconds: 30 * 24 * 3600 + 1, ok: false },
    { ttlSeconds: -1, ok: false },
  ];
  for (const l of lifetimes) {
    it(`${l.ok ? "accepts" : "refuses (VALIDATION_FAILED on ttl_seconds, storing nothing)"} a lifetime of ${l.ttlSeconds} s`, async () => {
      const before = await tokenCount();
      const minting = mintEnrollmentToken(deps(), "community", l.ttlSeconds);
      if (l.ok) {
        assert.equal((await minting).expiresAt.getTime(), clock.now() + l.ttlSeconds * 1000);
        assert.equal(await tokenCount(), before + 1);
      } else {
        assert.equal((await refusedWith(minting, "VALIDATION_FAILED")).details["field"], "ttl_seconds");
        assert.equal(await tokenCount(), before);
      }
    });
  }

  it("cordons a node: its state changes, the placer wakes, nothing is sent to its stream", async () => {
    const sessions = new SessionRegistry();
    const { nodeId } = await seedNode(on.db, new Date(clock.now()));
    const session = openSession(sessions, nodeId);
    const row = await changeNodeState(deps(), sessions, nodeId, "cordoned");
    assert.equal(row.state, "cordoned");
    assert.equal((await findNode(on.db, nodeId))?.state, "cordoned");
    assert.equal(wakes, 1);
    assert.deepEqual(await sent(session), []);
  });

  it("drains a node: its stream is told to take no new units", async () => {
    const sessions = new SessionRegistry();
    const { nodeId } = await seedNode(on.db, new Date(clock.now()));
    const session = openSession(sessions, nodeId);
    await changeNodeState(deps(), sessions, nodeId, "draining");
    assert.deepEqual(await sent(session), ["drain"]);
    assert.equal(wakes, 1);
  });

  it("revokes a node: its running unit goes back to the queue, the node is told to stop it, and its stream closes", async () => {
    const sessions = new SessionRegistry();
    const { nodeId } = await seedNode(on.db, new Date(clock.now()));
    const customer = await insertCustomer(on.db, { id: randomUUID(), email: `${randomUUID()}@example.com`, passwordHash: "x" }, new Date(clock.now()));
    const { unitId } = await seedJob(on.db, customer.id, { nodeId });
    const session = openSession(sessions, nodeId);
    await changeNodeState(deps(), sessions, nodeId, "revoked");
    assert.ok(session.outbound.isClosed);
    assert.deepEqual(await sent(session), ["cancel"]);
    const unit = await findUnit(on.db, unitId);
    assert.equal(unit?.node_id, null);
    assert.notEqual(unit?.status, "running");
    assert.equal(wakes, 1);
  });

  it("answers an unknown and a malformed node id with RESOURCE_NOT_FOUND, waking no one", async () => {
    for (const id of [randomUUID(), "node-1"]) {
      const error = await refusedWith(changeNodeState(deps(), new SessionRegistry(), id, "cordoned"), "RESOURCE_NOT_FOUND");
      assert.equal(error.message, `node ${id} not found`);
    }
    assert.equal(wakes, 0);
  });
});
