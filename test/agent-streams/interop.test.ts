/**
 * The agent side of the stream driven by a different gRPC stack
 * (@grpc/grpc-js with a stub loaded from the .proto at run time): enroll,
 * Hello, Welcome, acks both ways; an operator's Drain reaches the open stream;
 * a revoked node's open stream is closed at once and it cannot open another.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import type { TestControlPlane } from "../support/control-plane.ts";
import { adminRequest, startTestControlPlane } from "../support/control-plane.ts";

const repoRoot = join(import.meta.dirname, "..", "..");

type Json = Record<string, unknown>;
interface AgentStub extends grpc.Client {
  Enroll(req: Json, cb: (err: grpc.ServiceError | null, res: Json) => void): void;
  Session(metadata: grpc.Metadata): grpc.ClientDuplexStream<Json, Json>;
}

function loadStub(port: number): AgentStub {
  const definition = protoLoader.loadSync("gpuagent/agent/v1/agent.proto", {
    keepCase: true,
    longs: String,
    defaults: true,
    oneofs: true,
    includeDirs: [join(repoRoot, "proto"), join(repoRoot, ".buf-deps")],
  });
  const loaded = grpc.loadPackageDefinition(definition) as unknown as { gpuagent: { agent: { v1: { AgentService: grpc.ServiceClientConstructor } } } };
  return new loaded.gpuagent.agent.v1.AgentService(`127.0.0.1:${port}`, grpc.credentials.createInsecure()) as unknown as AgentStub;
}

/** Reads a duplex stream into a queue, so a test can await the next message of a kind. */
function reader(call: grpc.ClientDuplexStream<Json, Json>) {
  const received: Json[] = [];
  let ended: Error | "end" | undefined;
  let wake: (() => void) | undefined;
  call.on("data", (m: Json) => {
    received.push(m);
    wake?.();
  });
  call.on("error", (e: Error) => {
    ended = e;
    wake?.();
  });
  call.on("end", () => {
    ended ??= "end";
    wake?.();
  });
  return {
    received,
    ended: () => ended,
    async next(kind: string, timeoutMs = 10_000): Promise<Json> {
      const until = Date.now() + timeoutMs;
      for (;;) {
        const i = received.findIndex((m) => m["body"] === kind);
        if (i >= 0) return received.splice(i, 1)[0]!;
        if (ended !== undefined) throw new Error(`stream ended (${String(ended)}) before a ${kind}`);
        if (Date.now() > until) throw new Error(`no ${kind} within ${timeoutMs} ms`);
        await new Promise<void>((r) => {
          wake = r;
          setTimeout(r, 100);
        });
      }
    },
    async closed(timeoutMs = 10_000): Promise<Error | "end"> {
      const until = Date.now() + timeoutMs;
      while (ended === undefined) {
        if (Date.now() > until) throw new Error("stream still open");
        await new Promise((r) => setTimeout(r, 50));
      }
      return ended;
    },
  };
}

describe("agent stream interop with @grpc/grpc-js", function () {
  this.timeout(60_000);
  let cp: TestControlPlane;
  let stub: AgentStub;

  before(async () => {
    cp = await startTestControlPlane();
    stub = loadStub(cp.plane.port);
  });
  after(async () => {
    stub?.close();
    await cp?.stop();
  });

  const capabilities = { cpu_cores: 4, memory_mb: 8192, disk_free_mb: 50_000, gpus: [], os: "linux", arch: "x64", python_version: "3.11", hostname: "interop", agent_version: "interop" };

  async function enroll(): Promise<{ node_id: string; node_credential: string }> {
    const token = (await adminRequest(cp, "POST", "/api/v1/admin/enrollment-tokens", { trust_level: "verified" }))["token"] as string;
    return new Promise((resolve, reject) =>
      stub.Enroll({ token, capabilities }, (err, res) => (err === null ? resolve(res as { node_id: string; node_credential: string }) : reject(err))),
    );
  }

  function open(credential: string) {
    const metadata = new grpc.Metadata();
    metadata.set("authorization", `Bearer ${credential}`);
    const call = stub.Session(metadata);
    return { call, read: reader(call) };
  }

  it("enrolls, says Hello, gets Welcome, and acks are exchanged both ways; Drain reaches the open stream", async () => {
    const node = await enroll();
    assert.match(node.node_id, /^[0-9a-f-]{36}$/);
    assert.match(node.node_credential, /^nc_/);
    const { call, read } = open(node.node_credential);
    call.write({ seq: 1, hello: { protocol_version: 1, node_id: node.node_id, capabilities, running: [] } });
    const welcome = await read.next("welcome");
    const w = welcome["welcome"] as Json;
    assert.equal(w["node_id"], node.node_id);
    assert.equal(w["protocol_version"], 1);
    assert.equal(w["heartbeat_interval_seconds"], 1);
    assert.match(w["session_id"] as string, /^[0-9a-f-]{36}$/);
    // The control plane acks our Hello; we ack its Welcome.
    assert.equal(((await read.next("ack"))["ack"] as Json)["seq"], "1");
    call.write({ seq: 0, ack: { seq: welcome["seq"] } });
    call.write({ seq: 2, heartbeat: { disk_free_mb: 49_000, gpus: [], running: [] } });
    const ack = await read.next("ack");
    assert.equal((ack["ack"] as Json)["seq"], "2");
    assert.equal(ack["seq"], "0", "acks carry seq 0");

    const nodes = await adminRequest(cp, "GET", "/api/v1/admin/nodes");
    assert.equal((nodes["data"] as Json[]).find((n) => n["id"] === node.node_id)?.["state"], "online");

    await adminRequest(cp, "POST", `/api/v1/admin/nodes/${node.node_id}/drain`, {});
    const drain = await read.next("drain");
    assert.match((drain["drain"] as Json)["reason"] as string, /drained/);
    call.end();
  });

  it("closes a revoked node's open stream at once and refuses its next one", async () => {
    const node = await enroll();
    const { call, read } = open(node.node_credential);
    call.write({ seq: 1, hello: { protocol_version: 1, node_id: node.node_id, capabilities, running: [] } });
    await read.next("welcome");
    const revokedAt = Date.now();
    await adminRequest(cp, "POST", `/api/v1/admin/nodes/${node.node_id}/revoke`, {});
    await read.closed(5000);
    assert.ok(Date.now() - revokedAt < 5000);
    call.cancel();

    const again = open(node.node_credential);
    again.call.write({ seq: 1, hello: { protocol_version: 1, node_id: node.node_id, capabilities, running: [] } });
    const ended = await again.read.closed(5000);
    assert.ok(ended instanceof Error, "the stream is refused with an error");
    assert.equal((ended as grpc.ServiceError).code, grpc.status.UNAUTHENTICATED);
    assert.equal(again.read.received.length, 0, "no Welcome for a revoked node");
  });
});
