import assert from "node:assert/strict";
import { create } from "@bufbuild/protobuf";
import { createClient, createRouterTransport } from "@connectrpc/connect";
import {
  AcceptedSchema,
  AckSchema,
  AgentService,
  AssignSchema,
  CapabilitiesSchema,
  ProgressSchema,
  SessionResponseSchema,
  UnitRefSchema,
  WelcomeSchema,
} from "../../src/gen/gpuagent/agent/v1/agent_pb.ts";
import type { SessionRequest, SessionResponse } from "../../src/gen/gpuagent/agent/v1/agent_pb.ts";
import { createAsyncQueue } from "../../src/node-agent/async-queue.ts";
import { silentLogger } from "../../src/node-agent/logger.ts";
import { backoffDelay, createAgentSession } from "../../src/node-agent/session.ts";
import type { ControlMessage } from "../../src/node-agent/session.ts";
import { systemClock } from "../../src/platform/clock.ts";

const welcome = (seq: bigint) =>
  create(SessionResponseSchema, {
    seq,
    body: { case: "welcome", value: create(WelcomeSchema, { nodeId: "n1", sessionId: `s${seq}`, heartbeatIntervalSeconds: 1, protocolVersion: 1 }) },
  });
const ack = (seq: bigint) => create(SessionResponseSchema, { seq: 0n, body: { case: "ack", value: create(AckSchema, { seq }) } });
const unit = create(UnitRefSchema, { unitId: "u1", attempt: 1 });

describe("agent session", () => {
  it("re-sends unacknowledged messages on the next session and acks control messages", async () => {
    const sessions: SessionRequest[][] = [];
    const auth: (string | null)[] = [];
    const transport = createRouterTransport(({ service }) => {
      service(AgentService, {
        enroll: () => {
          throw new Error("unused");
        },
        async *session(requests, ctx) {
          const seen: SessionRequest[] = [];
          sessions.push(seen);
          auth.push(ctx.requestHeader.get("authorization"));
          const it = requests[Symbol.asyncIterator]();
          const next = async () => {
            const r = await it.next();
            if (r.done) throw new Error("agent closed the stream");
            seen.push(r.value);
            return r.value;
          };
          const hello = await next();
          assert.equal(hello.body.case, "hello");
          yield welcome(1n);
          yield create(SessionResponseSchema, {
            seq: 2n,
            body: { case: "assign", value: create(AssignSchema, { assignmentId: "a1", unit }) },
          });
          if (sessions.length === 1) {
            // Read until the Accepted arrives, then drop the stream without acking it.
            while ((await next()).body.case !== "accepted");
            throw new Error("connection lost");
          }
          // Second session: the Accepted comes again; ack it this time.
          for (;;) {
            const m = await next();
            if (m.body.case === "accepted") {
              yield ack(m.seq);
              break;
            }
          }
          // Keep the stream open until the agent leaves.
          for (;;) await next();
        },
      });
    });

    const control: ControlMessage[] = [];
    const session = createAgentSession({
      client: createClient(AgentService, transport),
      nodeId: "n1",
      nodeCredential: "nc_secret",
      hello: async () => ({ capabilities: create(CapabilitiesSchema, { cpuCores: 2 }), running: [] }),
      heartbeat: async () => ({ diskFreeMb: 100 }),
      onControl: (m) => control.push(m),
      clock: systemClock,
      logger: silentLogger,
      backoff: { initialMs: 10, maxMs: 20 },
    });
    // As the runner would answer an Assign: queued before the stream is up.
    session.send({ case: "accepted", value: create(AcceptedSchema, { assignmentId: "a1", unit }) });
    const stop = new AbortController();
    const running = session.run(stop.signal);
    assert.equal(await session.flushed(5000), true, "every durable message acked");
    assert.ok(sessions.length >= 2);
    // The Ack for the second session's Assign may still be on its way.
    const acksIn = (s: SessionRequest[] | undefined) => (s ?? []).filter((m) => m.body.case === "ack").length;
    for (let i = 0; i < 100 && acksIn(sessions[1]) < 2; i++) await new Promise((r) => setTimeout(r, 20));
    stop.abort();
    await running;

    assert.deepEqual(auth.slice(0, 2), ["Bearer nc_secret", "Bearer nc_secret"]);
    const [first, second] = sessions as [SessionRequest[], SessionRequest[]];
    for (const s of [first, second]) {
      assert.equal(s[0]?.body.case, "hello");
      assert.equal(s[0]?.seq, 1n);
      // Every message but Ack has a seq, strictly increasing.
      const seqs = s.filter((m) => m.body.case !== "ack").map((m) => m.seq);
      assert.ok(seqs.every((q, i) => q > 0n && (i === 0 || q > (seqs[i - 1] ?? 0n))));
      // Acks carry seq 0 and name the control message's seq.
      const acks = s.filter((m) => m.body.case === "ack");
      assert.ok(acks.every((m) => m.seq === 0n));
      assert.equal(acks[0]?.body.case === "ack" && acks[0].body.value.seq, 1n, "Welcome acked first");
    }
    // The first stream was cut early; on the second both Welcome and Assign were acked.
    const secondAcks = second.flatMap((m) => (m.body.case === "ack" ? [m.body.value.seq] : []));
    assert.deepEqual(secondAcks.sort(), [1n, 2n]);
    assert.equal(second.filter((m) => m.body.case === "accepted").length, 1, "Accepted re-sent after reconnect");
    assert.equal(control.filter((m) => m.body.case === "assign").length, 2);
  });

  it("drops the oldest progress first when the outbox overflows, never results", async () => {
    const transport = createRouterTransport(({ service }) => {
      service(AgentService, {
        enroll: () => {
          throw new Error("unused");
        },
        // eslint-disable-next-line require-yield
        async *session(): AsyncGenerator<SessionResponse> {
          throw new Error("unreachable control plane");
        },
      });
    });
    const session = createAgentSession({
      client: createClient(AgentService, transport),
      nodeId: "n1",
      nodeCredential: "c",
      hello: async () => ({ capabilities: create(CapabilitiesSchema), running: [] }),
      heartbeat: async () => ({}),
      onControl: () => {},
      clock: systemClock,
      logger: silentLogger,
      maxUnacked: 3,
    });
    const accepted = { case: "accepted" as const, value: create(AcceptedSchema, { assignmentId: "a", unit }) };
    const progress = (p: number) => ({ case: "progress" as const, value: create(ProgressSchema, { unit, progress: p }) });
    session.send(progress(0.1));
    session.send(accepted);
    session.send(progress(0.2));
    session.send(progress(0.3)); // full: 0.1 goes
    assert.equal(session.unacked(), 3);
    session.send(accepted); // full: 0.2 goes
    session.send(accepted); // full: 0.3 goes
    session.send(progress(0.4)); // full of results: this progress is dropped
    session.send(accepted); // results are kept even past the bound
    assert.equal(session.unacked(), 4);
  });

  it("backs off exponentially with jitter up to the ceiling", () => {
    const opts = { initialMs: 500, maxMs: 30_000 };
    assert.equal(backoffDelay(0, opts, () => 0), 250);
    assert.equal(backoffDelay(0, opts, () => 1), 500);
    assert.equal(backoffDelay(3, opts, () => 1), 4000);
    assert.equal(backoffDelay(20, opts, () => 1), 30_000);
    assert.equal(backoffDelay(20, opts, () => 0), 15_000);
  });
});

describe("async queue", () => {
  it("makes writers wait while full and ends iteration on close", async () => {
    const q = createAsyncQueue<number>(2);
    assert.equal(await q.put(1), true);
    assert.equal(await q.put(2), true);
    let third = false;
    const pending = q.put(3).then((ok) => (third = ok));
    await new Promise((r) => setImmediate(r));
    assert.equal(third, false, "third put waits for room");
    const it = q[Symbol.asyncIterator]();
    assert.deepEqual(await it.next(), { value: 1, done: false });
    await pending;
    assert.equal(third, true);
    q.close();
    assert.equal((await it.next()).done, true);
    assert.equal(await q.put(4), false);
  });
});
