/**
 * The control plane's side of a busy answer (issue 15 point 4, src/agent-streams/busy-nodes.ts), against a
 * real control plane and a real stream: `Rejected{busy}` holds the node full for the heartbeat interval;
 * a heartbeat that still shows the owner's VRAM keeps the hold, one that shows it free ends it.
 */
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { create } from "@bufbuild/protobuf";
import type { MessageInitShape } from "@bufbuild/protobuf";
import { createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import type { SessionRequest, SessionResponse } from "../../src/gen/gpuagent/agent/v1/agent_pb.ts";
import { AgentService, SessionRequestSchema } from "../../src/gen/gpuagent/agent/v1/agent_pb.ts";
import { createAsyncQueue } from "../../src/node-agent/async-queue.ts";
import type { TestControlPlane } from "../support/control-plane.ts";
import { adminRequest, startTestControlPlane, waitFor } from "../support/control-plane.ts";
import { insertJob } from "../support/rows.ts";

type Body = NonNullable<MessageInitShape<typeof SessionRequestSchema>["body"]>;

describe("a busy answer on the agent stream", function () {
  this.timeout(60_000);
  let cp: TestControlPlane;

  before(async () => {
    cp = await startTestControlPlane({ agents: { heartbeatIntervalSeconds: 10 } });
  });
  after(() => cp?.stop());

  it("holds the node full until a heartbeat shows the unit's VRAM free again", async () => {
    const db = cp.plane.deps.db;
    const client = createClient(AgentService, createGrpcTransport({ baseUrl: cp.url }));
    const gpus = [{ index: 0, name: "RTX 4090", vramMb: 24_576 }];
    const token = (await adminRequest(cp, "POST", "/api/v1/admin/enrollment-tokens", { trust_level: "verified" }))["token"] as string;
    const { nodeId, nodeCredential } = await client.enroll({ token, capabilities: { cpuCores: 8, memoryMb: 16_384, hostname: "home", gpus } });
    const { customerId, jobId } = await insertJob(db, { status: "running" });
    const unitId = randomUUID();
    await db.query(
      `INSERT INTO compute_units (id, job_id, customer_id, name, kind, status, entrypoint, attempt, max_attempts, node_id, gpu_index, gpu_indexes,
         assignment_id, assigned_at, required_vram_mb, ready_at)
       VALUES ($1, $2, $3, 'train', 'gpu', 'assigned', 'train.py', 1, 3, $4, 0, '{0}', $5, now(), 8000, now())`,
      [unitId, jobId, customerId, nodeId, randomUUID()],
    );

    const requests = createAsyncQueue<SessionRequest>(64);
    const abort = new AbortController();
    const acked = new Set<bigint>();
    let seq = 0n;
    const reading = (async () => {
      try {
        for await (const m of client.session(requests, { signal: abort.signal, headers: { authorization: `Bearer ${nodeCredential}` } }) as AsyncIterable<SessionResponse>) {
          if (m.body.case === "ack") acked.add(m.body.value.seq);
        }
      } catch (err) {
        if (!abort.signal.aborted) throw err;
      }
    })();
    /** Sends `body` and resolves once the control plane acked it (its effect is committed). */
    const send = async (body: Body) => {
      const mine = ++seq;
      await requests.put(create(SessionRequestSchema, { seq: mine, body }));
      await waitFor(`ack of ${body.case}`, async () => (acked.has(mine) ? true : undefined), 10_000);
    };
    const busyUntil = async () => (await db.query<{ busy_until: Date | null }>(`SELECT busy_until FROM nodes WHERE id = $1`, [nodeId]))[0]!.busy_until;
    const heartbeat = (ownerUsesMb: number): Body => ({ case: "heartbeat", value: { gpus: [{ index: 0, vramUsedMb: ownerUsesMb }] } });
    try {
      await send({ case: "hello", value: { protocolVersion: 1, nodeId, capabilities: { cpuCores: 8, memoryMb: 16_384, hostname: "home", gpus } } });
      const before = cp.plane.deps.clock.now();
      await send({ case: "rejected", value: { unit: { unitId, attempt: 1 }, reason: "GPU 0 has 4576 MB free for units now", busy: true } });
      const held = await busyUntil();
      assert.ok(held !== null, "held full");
      const heldForMs = held.getTime() - before;
      assert.ok(heldForMs > 8000 && heldForMs <= 10_000 + 2000, `held for the heartbeat interval (10 s), not ${heldForMs} ms`);
      await send(heartbeat(20_000));
      assert.deepEqual(await busyUntil(), held, "the owner still uses the VRAM");
      await send(heartbeat(500));
      assert.equal(await busyUntil(), null, "the owner freed the VRAM");
    } finally {
      requests.close();
      abort.abort();
      await reading;
    }
  });
});
