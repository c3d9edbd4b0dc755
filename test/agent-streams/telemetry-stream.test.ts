/**
 * Log lines and progress reports over a real Session stream (gRPC, Connect's
 * node client) into a real control plane, read back over REST:
 *  - once their acks come, they are readable (acks follow the batch's write);
 *  - a batch resent in a new session (as the agent does with what is unacked)
 *    is stored once;
 *  - Finished writes the attempt's buffered lines at once, before the unit ends;
 *  - only the job's customer reads them (another customer's job → 404 JOB_NOT_FOUND,
 *    a unit of another job → 404 RESOURCE_NOT_FOUND), and bad cursors are 400s.
 */
import assert from "node:assert/strict";
import { create } from "@bufbuild/protobuf";
import type { MessageInitShape } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import type { AsyncQueue } from "../../src/node-agent/async-queue.ts";
import { createAsyncQueue } from "../../src/node-agent/async-queue.ts";
import type { SessionRequest, SessionResponse } from "../../src/gen/gpuagent/agent/v1/agent_pb.ts";
import { AgentService, Outcome, SessionRequestSchema } from "../../src/gen/gpuagent/agent/v1/agent_pb.ts";
import type { TestControlPlane } from "../support/control-plane.ts";
import { adminRequest, createCustomer, request, startTestControlPlane, waitFor } from "../support/control-plane.ts";
import { seedRunningUnit } from "../telemetry/support.ts";

type Body = NonNullable<MessageInitShape<typeof SessionRequestSchema>["body"]>;

describe("unit telemetry over the agent stream, read back by the job's customer", function () {
  this.timeout(60_000);
  const flushIntervalMs = 400;
  let cp: TestControlPlane;
  let client: ReturnType<typeof createClient<typeof AgentService>>;
  let nodeId: string;
  let credential: string;
  let customer: { customerId: string; apiKey: string };
  let other: { customerId: string; apiKey: string };

  before(async () => {
    cp = await startTestControlPlane({ telemetry: { flushIntervalMs } });
    client = createClient(AgentService, createGrpcTransport({ baseUrl: cp.url }));
    const token = (await adminRequest(cp, "POST", "/api/v1/admin/enrollment-tokens", { trust_level: "verified" }))["token"] as string;
    const enrolled = await client.enroll({ token, capabilities: { cpuCores: 2, memoryMb: 2048, diskFreeMb: 10_000, hostname: "telemetry" } });
    nodeId = enrolled.nodeId;
    credential = enrolled.nodeCredential;
    customer = await createCustomer(cp);
    other = await createCustomer(cp);
  });
  after(() => cp?.stop());

  /** A running unit of the customer's, placed on the test node. */
  async function runningUnit(): Promise<{ jobId: string; unitId: string }> {
    const seeded = await seedRunningUnit(cp.plane.deps.db, { customerId: customer.customerId });
    await cp.plane.deps.db.query(`UPDATE compute_units SET node_id = $2 WHERE id = $1`, [seeded.unitId, nodeId]);
    return { jobId: seeded.jobId, unitId: seeded.unitId };
  }

  /** One session: Hello (reporting `running`), Welcome, then whatever the test sends. */
  async function openSession(running: { unitId: string; attempt: number }[]) {
    const requests: AsyncQueue<SessionRequest> = createAsyncQueue(64);
    const abort = new AbortController();
    const received: SessionResponse[] = [];
    let seq = 0n;
    const send = (body: Body) => requests.put(create(SessionRequestSchema, { seq: ++seq, body }));
    await send({ case: "hello", value: { protocolVersion: 1, nodeId, running } });
    const reading = (async () => {
      try {
        for await (const m of client.session(requests, { signal: abort.signal, headers: { authorization: `Bearer ${credential}` } })) received.push(m);
      } catch {
        // closed by the test
      }
    })();
    await waitFor("Welcome", async () => (received.some((m) => m.body.case === "welcome") ? true : undefined), 10_000);
    const acked = (s: bigint) => received.some((m) => m.body.case === "ack" && m.body.value.seq === s);
    return {
      send: async (body: Body) => {
        await send(body);
        return seq;
      },
      acked,
      async close() {
        requests.close();
        abort.abort();
        await reading;
      },
    };
  }

  const logs = (jobId: string, unitId: string, query = "", apiKey = customer.apiKey) =>
    request(cp, "GET", `/api/v1/customer/training-jobs/${jobId}/compute-units/${unitId}/logs${query}`, { headers: { "x-api-key": apiKey } });
  const texts = (body: Record<string, unknown>) => (body["lines"] as { text: string }[]).map((l) => l.text);
  const logLines = (unitId: string, firstLine: number, lines: string[]): Body => ({
    case: "log",
    value: { unit: { unitId, attempt: 1 }, stream: "stdout", lines, firstLine: BigInt(firstLine), at: timestampFromMs(Date.now()) },
  });

  it("acks lines and reports only once written, and stores a batch resent in a new session once", async () => {
    const { jobId, unitId } = await runningUnit();
    const first = await openSession([{ unitId, attempt: 1 }]);
    const s1 = await first.send(logLines(unitId, 0, ["epoch 1 loss=0.9", "epoch 2 loss=0.7"]));
    const s2 = await first.send({ case: "progress", value: { unit: { unitId, attempt: 1 }, progress: 0.5, metrics: { epoch: 2, loss: 0.7 }, sample: 0n } });
    // The acks come with the batch's write (src/telemetry/recorder.ts; the fake-clock tests there show
    // that nothing is written or acked before the interval): once they are here, the lines are readable.
    await waitFor("the acks", async () => (first.acked(s1) && first.acked(s2) ? true : undefined), 5000);
    const read = await logs(jobId, unitId);
    assert.equal(read.status, 200, JSON.stringify(read.body));
    assert.deepEqual(texts(read.body), ["epoch 1 loss=0.9", "epoch 2 loss=0.7"]);
    assert.equal(read.body["attempt"], 1);
    assert.equal(read.body["unit_status"], "running");
    assert.equal(read.body["next_after"], "2");
    // The agent lost the acks (say) and reconnects: it resends the batch with new seqs, then goes on.
    await first.close();
    const second = await openSession([{ unitId, attempt: 1 }]);
    await second.send(logLines(unitId, 0, ["epoch 1 loss=0.9", "epoch 2 loss=0.7"]));
    const s3 = await second.send(logLines(unitId, 2, ["epoch 3 loss=0.5"]));
    await second.send({ case: "progress", value: { unit: { unitId, attempt: 1 }, progress: 0.5, metrics: { epoch: 2, loss: 0.7 }, sample: 0n } });
    const s4 = await second.send({ case: "progress", value: { unit: { unitId, attempt: 1 }, progress: 0.75, metrics: { epoch: 3, loss: 0.5 }, sample: 1n } });
    await waitFor("the acks", async () => (second.acked(s3) && second.acked(s4) ? true : undefined), 5000);
    const incremental = await logs(jobId, unitId, "?after=2");
    assert.deepEqual(texts(incremental.body), ["epoch 3 loss=0.5"]);
    assert.equal(incremental.body["dropped_lines"], "0");
    const all = await logs(jobId, unitId);
    assert.deepEqual(texts(all.body), ["epoch 1 loss=0.9", "epoch 2 loss=0.7", "epoch 3 loss=0.5"]);
    const metrics = await request(cp, "GET", `/api/v1/customer/training-jobs/${jobId}/metrics`, { headers: { "x-api-key": customer.apiKey } });
    assert.equal(metrics.status, 200, JSON.stringify(metrics.body));
    const [unit] = metrics.body["units"] as { unit_id: string; reports: string; points: { progress: number; metrics: Record<string, number> }[] }[];
    assert.equal(unit?.unit_id, unitId);
    assert.equal(unit?.reports, "2");
    assert.deepEqual(
      unit?.points.map((p) => p.metrics["loss"]),
      [0.7, 0.5],
    );
    await second.close();
  });

  it("writes an attempt's buffered lines as soon as its Finished arrives", async () => {
    const { jobId, unitId } = await runningUnit();
    const session = await openSession([{ unitId, attempt: 1 }]);
    await session.send(logLines(unitId, 0, ["last words"]));
    const fin = await session.send({ case: "finished", value: { unit: { unitId, attempt: 1 }, outcome: Outcome.SUCCEEDED, exitCode: 0, runSeconds: 1 } });
    await waitFor("the Finished ack", async () => (session.acked(fin) ? true : undefined), 5000);
    // The Finished ack means it was applied, and the lines were written before it.
    const read = await logs(jobId, unitId);
    assert.deepEqual(texts(read.body), ["last words"]);
    assert.equal(read.body["unit_status"], "completed");
    await session.close();
  });

  it("shows the logs and metrics only to the job's customer, and refuses bad cursors", async () => {
    const { jobId, unitId } = await runningUnit();
    const theirs = await seedRunningUnit(cp.plane.deps.db, { customerId: other.customerId });
    const otherJobOfMine = await runningUnit();
    const cases: { name: string; path: string; apiKey?: string; status: number; code: string }[] = [
      { name: "another customer's job", path: `/api/v1/customer/training-jobs/${jobId}/compute-units/${unitId}/logs`, apiKey: other.apiKey, status: 404, code: "JOB_NOT_FOUND" },
      { name: "another customer's metrics", path: `/api/v1/customer/training-jobs/${jobId}/metrics`, apiKey: other.apiKey, status: 404, code: "JOB_NOT_FOUND" },
      { name: "another customer's unit under my job", path: `/api/v1/customer/training-jobs/${jobId}/compute-units/${theirs.unitId}/logs`, status: 404, code: "RESOURCE_NOT_FOUND" },
      { name: "my unit under my other job", path: `/api/v1/customer/training-jobs/${jobId}/compute-units/${otherJobOfMine.unitId}/logs`, status: 404, code: "RESOURCE_NOT_FOUND" },
      { name: "a malformed unit id", path: `/api/v1/customer/training-jobs/${jobId}/compute-units/nope/logs`, status: 404, code: "RESOURCE_NOT_FOUND" },
      { name: "a malformed job id", path: `/api/v1/customer/training-jobs/nope/metrics`, status: 404, code: "JOB_NOT_FOUND" },
      { name: "a negative cursor", path: `/api/v1/customer/training-jobs/${jobId}/compute-units/${unitId}/logs?after=-1`, status: 400, code: "VALIDATION_FAILED" },
      { name: "a cursor that is not a number", path: `/api/v1/customer/training-jobs/${jobId}/compute-units/${unitId}/logs?after=x`, status: 400, code: "VALIDATION_FAILED" },
      { name: "an attempt the unit never had", path: `/api/v1/customer/training-jobs/${jobId}/compute-units/${unitId}/logs?attempt=7`, status: 400, code: "VALIDATION_FAILED" },
    ];
    for (const tc of cases) {
      const res = await request(cp, "GET", tc.path, { headers: { "x-api-key": tc.apiKey ?? customer.apiKey } });
      assert.equal(res.status, tc.status, `${tc.name}: ${JSON.stringify(res.body)}`);
      assert.equal((res.body["error"] as { code: string }).code, tc.code, tc.name);
    }
    // The owner reads them; a unit with nothing reported answers empty, not an error.
    const mine = await logs(jobId, unitId);
    assert.equal(mine.status, 200);
    assert.deepEqual(mine.body["lines"] ?? [], []);
    assert.equal(mine.body["next_after"] ?? "0", "0");
  });
});
