/**
 * What a node sends after Hello, made storable or ignored instead of failing its stream (a refused
 * message would come back at every reconnect): against a real control plane, each message below
 * is acked, the stream goes on, and what is stored holds no NUL, no NaN and no unbounded map.
 */
import assert from "node:assert/strict";
import { create } from "@bufbuild/protobuf";
import type { MessageInitShape } from "@bufbuild/protobuf";
import { createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import type { AsyncQueue } from "../../src/node-agent/async-queue.ts";
import { createAsyncQueue } from "../../src/node-agent/async-queue.ts";
import type { SessionRequest, SessionResponse } from "../../src/gen/gpuagent/agent/v1/agent_pb.ts";
import { AgentService, Outcome, SessionRequestSchema } from "../../src/gen/gpuagent/agent/v1/agent_pb.ts";
import type { TestControlPlane } from "../support/control-plane.ts";
import { adminRequest, startTestControlPlane, waitFor } from "../support/control-plane.ts";
import { seedRunningUnit } from "../telemetry/support.ts";

type Body = NonNullable<MessageInitShape<typeof SessionRequestSchema>["body"]>;

describe("later Session messages from a hostile node", function () {
  this.timeout(60_000);
  let cp: TestControlPlane;
  let client: ReturnType<typeof createClient<typeof AgentService>>;
  let nodeId: string;
  let credential: string;

  before(async () => {
    cp = await startTestControlPlane();
    client = createClient(AgentService, createGrpcTransport({ baseUrl: cp.url }));
    const token = (await adminRequest(cp, "POST", "/api/v1/admin/enrollment-tokens", { trust_level: "verified" }))["token"] as string;
    const enrolled = await client.enroll({ token, capabilities: { cpuCores: 2, hostname: "hostile" } });
    nodeId = enrolled.nodeId;
    credential = enrolled.nodeCredential;
  });
  after(() => cp?.stop());

  async function runningUnit(): Promise<{ jobId: string; unitId: string }> {
    const seeded = await seedRunningUnit(cp.plane.deps.db);
    await cp.plane.deps.db.query(`UPDATE compute_units SET node_id = $2 WHERE id = $1`, [seeded.unitId, nodeId]);
    return { jobId: seeded.jobId, unitId: seeded.unitId };
  }

  /** Opens a session, sends `bodies` after Hello, and resolves once each is acked and a heartbeat after them is too. */
  async function sendAll(running: { unitId: string; attempt: number }[], bodies: Body[]): Promise<void> {
    const requests: AsyncQueue<SessionRequest> = createAsyncQueue(64);
    const abort = new AbortController();
    const received: SessionResponse[] = [];
    let failure: unknown;
    let seq = 0n;
    const send = (body: Body) => requests.put(create(SessionRequestSchema, { seq: ++seq, body }));
    await send({ case: "hello", value: { protocolVersion: 1, nodeId, running } });
    const reading = (async () => {
      try {
        for await (const m of client.session(requests, { signal: abort.signal, headers: { authorization: `Bearer ${credential}` } })) received.push(m);
      } catch (err) {
        if (!abort.signal.aborted) failure = err;
      }
    })();
    for (const body of bodies) await send(body);
    await send({ case: "heartbeat", value: {} });
    const last = seq;
    const acked = () => new Set(received.flatMap((m) => (m.body.case === "ack" ? [m.body.value.seq] : [])));
    await waitFor("every ack", async () => (failure !== undefined || acked().size === Number(last) ? true : undefined), 10_000);
    assert.equal(failure, undefined, `the stream failed: ${String(failure)}`);
    assert.deepEqual([...acked()].sort((a, b) => Number(a - b)), Array.from({ length: Number(last) }, (_, i) => BigInt(i + 1)));
    requests.close();
    abort.abort();
    await reading;
  }

  it("acks and ignores messages naming a unit that is not a UUID", async () => {
    const unit = { unitId: "../../etc/passwd", attempt: 1 };
    await sendAll(
      [],
      [
        { case: "accepted", value: { assignmentId: "a", unit } },
        { case: "rejected", value: { assignmentId: "a", unit, reason: "no" } },
        { case: "progress", value: { unit, progress: 0.5 } },
        { case: "log", value: { unit, stream: "stdout", lines: ["x"] } },
        { case: "artifactReady", value: { unit, name: "model.pt", kind: "checkpoint", sizeBytes: 1n, sha256: "00" } },
        { case: "finished", value: { unit, outcome: Outcome.SUCCEEDED, runSeconds: 1 } },
      ],
    );
  });

  it("acks and ignores an ArtifactReady whose name the upload route would refuse", async () => {
    const { unitId } = await runningUnit();
    await sendAll([{ unitId, attempt: 1 }], [{ case: "artifactReady", value: { unit: { unitId, attempt: 1 }, name: "../../../../etc/passwd", kind: "other", sizeBytes: 1n, sha256: "00" } }]);
    const [row] = await cp.plane.deps.db.query<{ n: number }>(`SELECT count(*)::int AS n FROM artifacts WHERE compute_unit_id = $1`, [unitId]);
    assert.equal(row?.n, 0);
  });

  it("stores a Finished whose error holds NUL and control characters, and whose run time is NaN", async () => {
    const { jobId, unitId } = await runningUnit();
    await sendAll([{ unitId, attempt: 1 }], [{ case: "finished", value: { unit: { unitId, attempt: 1 }, outcome: Outcome.TIMED_OUT, exitCode: -9, error: "killed\u0000\u0007 at deadline", runSeconds: Number.NaN } }]);
    const [unit] = await cp.plane.deps.db.query<{ status: string; error: string; run_seconds: number }>(`SELECT status, error, run_seconds FROM compute_units WHERE id = $1`, [unitId]);
    assert.equal(unit?.status, "failed");
    assert.equal(unit?.error, "killed\uFFFD\uFFFD at deadline");
    assert.equal(unit?.run_seconds, 0);
    const [job] = await cp.plane.deps.db.query<{ status: string }>(`SELECT status FROM training_jobs WHERE id = $1`, [jobId]);
    assert.equal(job?.status, "failed");
  });

  it("stores a Rejected whose reason holds NUL, cut to 2,000 characters", async () => {
    const { unitId } = await runningUnit();
    await sendAll([{ unitId, attempt: 1 }], [{ case: "rejected", value: { assignmentId: "a", unit: { unitId, attempt: 1 }, reason: `no\u0000${"r".repeat(10_000)}` } }]);
    const [unit] = await cp.plane.deps.db.query<{ status: string; error: string }>(`SELECT status, error FROM compute_units WHERE id = $1`, [unitId]);
    assert.notEqual(unit?.status, "running");
    assert.ok(!unit?.error.includes("\u0000"));
    assert.ok(unit?.error.includes("no\uFFFDrrr"), unit?.error.slice(0, 80));
    assert.ok((unit?.error.length ?? 0) <= 2100, `error of ${unit?.error.length} characters`);
  });

  it("keeps at most 32 metric names of a report, none with control characters, none not finite", async () => {
    const { unitId } = await runningUnit();
    const metrics: Record<string, number> = { "bad\u0000name": 1, nan: Number.NaN, inf: Number.POSITIVE_INFINITY };
    for (let i = 0; i < 100; i++) metrics[`m${String(i).padStart(3, "0")}`] = i;
    await sendAll([{ unitId, attempt: 1 }], [{ case: "progress", value: { unit: { unitId, attempt: 1 }, progress: 0.5, metrics, sample: 0n } }]);
    const [unit] = await cp.plane.deps.db.query<{ metrics: Record<string, number> }>(`SELECT metrics FROM compute_units WHERE id = $1`, [unitId]);
    const names = Object.keys(unit?.metrics ?? {});
    assert.equal(names.length, 32);
    assert.deepEqual(names.sort(), Array.from({ length: 32 }, (_, i) => `m${String(i).padStart(3, "0")}`));
  });
});
