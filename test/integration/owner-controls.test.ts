/**
 * A node's isolation and its owner's controls as the scheduler sees them, through the real
 * AgentService stream of a real control plane. The nodes here are test clients speaking the agent
 * protocol (Enroll, Hello with capabilities, heartbeats carrying the owner's controls, as
 * `gpu-agent pause`/`resume`, an availability window and `--reserve-vram-mb` make a real agent send
 * them), so each case sets exactly what a node reports: a paused node gets nothing and the admin
 * view says why, resuming lets the unit place; a node outside its window and one whose sandbox is
 * unavailable get nothing; a node without a sandbox gets public units but no high_sensitive one; and
 * the VRAM an owner reserves never fits a unit.
 */
import assert from "node:assert/strict";
import { create } from "@bufbuild/protobuf";
import type { MessageInitShape } from "@bufbuild/protobuf";
import { createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import type { CapabilitiesSchema, OwnerPolicySchema, SessionRequest } from "../../src/gen/gpuagent/agent/v1/agent_pb.ts";
import { AgentService, SessionRequestSchema } from "../../src/gen/gpuagent/agent/v1/agent_pb.ts";
import { AsyncQueue } from "../../src/platform/async-queue.ts";
import { zipOf } from "../node-agent/helpers.ts";
import type { TestControlPlane } from "../support/control-plane.ts";
import { adminRequest, createCustomer, request, startTestControlPlane, uploadResource, waitFor } from "../support/control-plane.ts";

type Json = Record<string, unknown>;
type CapabilitiesInit = MessageInitShape<typeof CapabilitiesSchema>;
type OwnerInit = MessageInitShape<typeof OwnerPolicySchema>;
type Body = NonNullable<MessageInitShape<typeof SessionRequestSchema>["body"]>;

/** A node as the control plane hears it: one open Session stream. */
interface TestNode {
  readonly id: string;
  /** Units of the Assign messages received so far, with their GPU index. */
  readonly assigned: { unitId: string; gpuIndex: number }[];
  /** Resolves with the next Assign's unit (or one received already and not yet taken). */
  nextAssign(): Promise<{ unitId: string; gpuIndex: number }>;
  /** The owner changed their controls: a heartbeat carrying them goes out at once; resolves when acked. */
  setOwner(owner: OwnerInit): Promise<void>;
  close(): void;
}

/** Eight cores, 16 GB of memory, 100 GB of disk, and these GPUs. */
const machine = (gpus: { index: number; vramMb: number }[] = []) => ({
  cpuCores: 8,
  memoryMb: 16_384,
  diskFreeMb: 100_000,
  gpus: gpus.map((g) => ({ ...g, name: "GPU", uuid: `GPU-${g.index}` })),
  os: "linux",
  arch: "x64",
  hostname: "home",
});
const sandboxed = { mechanism: "bubblewrap", limits: { memory: "rlimit", cpu: "affinity", pids: "rlimit", disk: "watch" } };

describe("placement honours a node's isolation and its owner's controls (real Session streams)", function () {
  this.timeout(120_000);
  let cp: TestControlPlane;
  let client: ReturnType<typeof createClient<typeof AgentService>>;
  let apiKey: string;
  let datasetId: string;
  let cpuPackageId: string;
  let gpuPackageId: string;
  /** What the current test opened: revoked and cancelled after it, so no later test's placement sees them. */
  let nodes: TestNode[] = [];
  let jobs: string[] = [];

  before(async () => {
    cp = await startTestControlPlane({ agents: { heartbeatIntervalSeconds: 1 } });
    client = createClient(AgentService, createGrpcTransport({ baseUrl: cp.url }));
    ({ apiKey } = await createCustomer(cp, 100_000));
    datasetId = (await uploadResource(cp, apiKey, "datasets", "d", Buffer.from("x,y\n1,2\n")))["id"] as string;
    const packageOf = async (kind: "cpu" | "gpu") =>
      (await uploadResource(cp, apiKey, "training-packages", kind, await zipOf({ "train.py": "print('hi')\n", "gpu-agent.json": JSON.stringify({ stages: [{ name: "work", kind }] }) })))[
        "id"
      ] as string;
    cpuPackageId = await packageOf("cpu");
    gpuPackageId = await packageOf("gpu");
  });

  afterEach(async () => {
    for (const id of jobs) await request(cp, "POST", `/api/v1/customer/training-jobs/${id}/cancel`, { headers: { "x-api-key": apiKey }, body: {} });
    for (const node of nodes) {
      await adminRequest(cp, "POST", `/api/v1/admin/nodes/${node.id}/revoke`, {});
      node.close();
    }
    nodes = [];
    jobs = [];
  });

  after(() => cp?.stop());

  /** Enrolls a node at `trustLevel` and opens its stream with a Hello carrying `capabilities`. */
  async function connectNode(trustLevel: "community" | "verified" | "controlled", capabilities: CapabilitiesInit): Promise<TestNode> {
    const token = (await adminRequest(cp, "POST", "/api/v1/admin/enrollment-tokens", { trust_level: trustLevel }))["token"] as string;
    const { nodeId, nodeCredential } = await client.enroll({ token, capabilities });
    const requests = new AsyncQueue<SessionRequest>(64);
    const abort = new AbortController();
    const acks = new Map<bigint, () => void>();
    const assigned: { unitId: string; gpuIndex: number }[] = [];
    let taken = 0;
    let assignArrived: (() => void) | undefined;
    let welcomed!: () => void;
    const welcome = new Promise<void>((resolve) => (welcomed = resolve));
    let owner: OwnerInit = capabilities.owner ?? {};
    let failure: unknown;
    let seq = 0n;
    const send = (body: Body): Promise<void> => {
      const mine = ++seq;
      const acked = new Promise<void>((resolve) => acks.set(mine, resolve));
      requests.push(create(SessionRequestSchema, { seq: mine, body }));
      return acked;
    };
    const heartbeat = () => send({ case: "heartbeat", value: { diskFreeMb: 100_000, owner } });
    void send({ case: "hello", value: { protocolVersion: 1, nodeId, capabilities } });
    void (async () => {
      try {
        for await (const m of client.session(requests, { signal: abort.signal, headers: { authorization: `Bearer ${nodeCredential}` } })) {
          if (m.body.case === "welcome") welcomed();
          if (m.body.case === "ack") acks.get(m.body.value.seq)?.();
          if (m.body.case === "assign") {
            assigned.push({ unitId: m.body.value.unit?.unitId ?? "", gpuIndex: m.body.value.gpuIndex });
            assignArrived?.();
          }
        }
      } catch (error) {
        if (!abort.signal.aborted) failure = error;
      }
      // Whatever ended the stream, a test waiting for an Assign hears of it.
      assignArrived?.();
    })();
    await welcome;
    // A real agent's heartbeats, each with the owner's controls as they stand.
    const beating = setInterval(() => void heartbeat(), 1000);
    const node: TestNode = {
      id: nodeId,
      assigned,
      async nextAssign() {
        while (taken === assigned.length) {
          if (failure !== undefined) throw new Error(`the node's stream failed: ${String(failure)}`);
          await new Promise<void>((resolve) => (assignArrived = resolve));
        }
        return assigned[taken++]!;
      },
      setOwner(next) {
        owner = next;
        return heartbeat();
      },
      close() {
        clearInterval(beating);
        requests.close();
        abort.abort();
      },
    };
    nodes.push(node);
    return node;
  }

  async function createJob(body: Json): Promise<string> {
    const created = await request(cp, "POST", "/api/v1/customer/training-jobs", {
      headers: { "x-api-key": apiKey },
      body: { name: "j", dataset_id: datasetId, max_runtime_seconds: 600, ...body },
    });
    assert.equal(created.status, 201, JSON.stringify(created.body));
    jobs.push(created.body["id"] as string);
    return created.body["id"] as string;
  }
  const cpuJob = (sensitivity: string) => createJob({ training_package_id: cpuPackageId, required_vram_mb: 0, sensitivity });
  const gpuJob = (vramMb: number) => createJob({ training_package_id: gpuPackageId, required_vram_mb: vramMb, sensitivity: "public" });

  /** The job's one unit. */
  async function unitOf(jobId: string): Promise<Json> {
    const res = await request(cp, "GET", `/api/v1/customer/training-jobs/${jobId}/compute-units`, { headers: { "x-api-key": apiKey } });
    return (res.body["data"] as Json[])[0]!;
  }

  /**
   * The unit once a placement cycle has left it waiting for the reason `why` names. (An earlier cycle
   * may still have planned on the fleet as it was before the test's node connected, and said so.)
   */
  async function waiting(jobId: string, why: RegExp): Promise<Json> {
    let last: Json = {};
    return waitFor(
      `the unit to wait with a reason matching ${why}`,
      async () => {
        last = await unitOf(jobId);
        return last["status"] === "ready" && why.test(last["unschedulable_reason"] as string) ? last : undefined;
      },
      30_000,
      () => `last seen: ${JSON.stringify({ status: last["status"], unschedulable_reason: last["unschedulable_reason"] })}`,
    );
  }

  /** The node as the admin API shows it. */
  async function adminNode(id: string): Promise<Json> {
    const list = (await adminRequest(cp, "GET", "/api/v1/admin/nodes?limit=100"))["data"] as Json[];
    return list.find((n) => n["id"] === id)!;
  }

  it("sends a paused node nothing, shows why, and places on it once its owner resumes", async () => {
    const node = await connectNode("controlled", { ...machine(), isolation: sandboxed, owner: { paused: true } });
    const jobId = await cpuJob("public");
    const unit = await waiting(jobId, /\(1 node: 1 node_paused\)/);
    assert.deepEqual(node.assigned, []);
    const shown = await adminNode(node.id);
    assert.equal(shown["paused"], true);
    assert.equal(shown["not_placing_reason"], "paused by its owner");

    await node.setOwner({ paused: false });
    assert.equal((await node.nextAssign()).unitId, unit["id"]);
    assert.equal((await unitOf(jobId))["node_id"], node.id);
    const resumed = await adminNode(node.id);
    assert.equal(resumed["paused"], false);
    assert.equal(resumed["not_placing_reason"] ?? "", "");
  });

  it("sends a node outside its owner's availability window nothing until the window opens", async () => {
    const window = "Mon-Fri 18:00-08:00";
    const node = await connectNode("controlled", { ...machine(), isolation: sandboxed, owner: { available: window, withinWindow: false } });
    const jobId = await cpuJob("public");
    await waiting(jobId, /\(1 node: 1 outside_window\)/);
    assert.deepEqual(node.assigned, []);
    const shown = await adminNode(node.id);
    assert.deepEqual([shown["available"], shown["within_window"], shown["not_placing_reason"]], [window, false, `outside its availability window ${window}`]);

    await node.setOwner({ available: window, withinWindow: true });
    await node.nextAssign();
    assert.equal((await unitOf(jobId))["node_id"], node.id);
  });

  it("sends a node whose sandbox is unavailable nothing, and shows why", async () => {
    const node = await connectNode("controlled", { ...machine(), isolation: { mechanism: "unavailable", reason: "user namespaces are disabled" } });
    const jobId = await cpuJob("public");
    await waiting(jobId, /\(1 node: 1 sandbox_unavailable\)/);
    assert.deepEqual(node.assigned, []);
    const shown = await adminNode(node.id);
    assert.deepEqual(
      [shown["isolation"], shown["isolation_reason"], shown["not_placing_reason"]],
      ["unavailable", "user namespaces are disabled", "sandbox unavailable: user namespaces are disabled"],
    );
  });

  it("sends a node without a sandbox a public unit, never a high_sensitive one", async () => {
    const node = await connectNode("controlled", { ...machine(), isolation: { mechanism: "none", reason: "--isolation none" } });
    const secret = await cpuJob("high_sensitive");
    await waiting(secret, /\(1 node: 1 sandbox_required\)/);
    const open = await cpuJob("public");
    const placed = await node.nextAssign();
    assert.equal(placed.unitId, (await unitOf(open))["id"]);
    assert.deepEqual(
      node.assigned.map((a) => a.unitId),
      [placed.unitId],
      "the high_sensitive unit never reached the node",
    );
    assert.equal((await unitOf(secret))["status"], "ready");
    const shown = await adminNode(node.id);
    assert.deepEqual([shown["isolation"], shown["not_placing_reason"] ?? ""], ["none", ""]);
  });

  it("counts a node whose agent reports no isolation as one without a sandbox", async () => {
    const node = await connectNode("controlled", machine());
    const jobId = await cpuJob("low_sensitive");
    await waiting(jobId, /\(1 node: 1 sandbox_required\)/);
    assert.deepEqual(node.assigned, []);
    assert.equal((await adminNode(node.id))["isolation"], "none");
  });

  it("never fits a unit into the VRAM its owner reserves", async () => {
    const node = await connectNode("controlled", { ...machine([{ index: 0, vramMb: 24_576 }]), isolation: sandboxed, owner: { reservedVramMb: 12_288 } });
    const jobId = await gpuJob(16_000);
    await waiting(jobId, /\(1 node: 1 insufficient_vram\)/);
    assert.deepEqual(node.assigned, []);
    assert.equal((await adminNode(node.id))["reserved_vram_mb"], 12_288);

    // The owner keeps less: 24,576 − 4,096 MB now fits the unit.
    await node.setOwner({ reservedVramMb: 4096 });
    assert.deepEqual(await node.nextAssign(), { unitId: (await unitOf(jobId))["id"], gpuIndex: 0 });
  });
});
