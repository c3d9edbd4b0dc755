/**
 * What a node says about itself is checked before it is stored, against a real control plane:
 * each invalid capability in a Hello is refused with invalid_argument and VALIDATION_FAILED, the
 * message naming the field, and the node's row is left as it was; a valid Hello still opens the
 * session; an invalid Enroll leaves its token unused; and the real agent's session logs the reason
 * as an error and waits the longest backoff before trying again.
 */
import assert from "node:assert/strict";
import http2 from "node:http2";
import { create, toBinary } from "@bufbuild/protobuf";
import type { MessageInitShape } from "@bufbuild/protobuf";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { reasonMetadataKey } from "../../src/api/errors.ts";
import { sessionPath } from "../../src/server/grpc-session-route.ts";
import { createAgentSession } from "../../src/node-agent/session.ts";
import type { AgentLogger } from "../../src/node-agent/logger.ts";
import { AgentService, CapabilitiesSchema, SessionRequestSchema } from "../../src/gen/gpuagent/agent/v1/agent_pb.ts";
import { systemClock } from "../../src/platform/clock.ts";
import type { TestControlPlane } from "../support/control-plane.ts";
import { adminRequest, startTestAgent, startTestControlPlane } from "../support/control-plane.ts";

type CapabilitiesInit = MessageInitShape<typeof CapabilitiesSchema>;
type HelloInit = Extract<NonNullable<MessageInitShape<typeof SessionRequestSchema>["body"]>, { case: "hello" }>["value"];

function frame(bytes: Uint8Array): Buffer {
  const out = Buffer.alloc(5 + bytes.length);
  out.writeUInt32BE(bytes.length, 1);
  out.set(bytes, 5);
  return out;
}

const helloBytes = (hello: HelloInit): Uint8Array => toBinary(SessionRequestSchema, create(SessionRequestSchema, { seq: 1n, body: { case: "hello", value: hello } }));

/** A Hello whose hostname holds bytes that are not UTF-8 (protobuf-es would not encode such a string). */
function helloWithInvalidUtf8(): Uint8Array {
  const bytes = Buffer.from(helloBytes({ protocolVersion: 1, capabilities: { hostname: "ok-@@" } }));
  const at = bytes.indexOf("@@");
  bytes[at] = 0xc3;
  bytes[at + 1] = 0x28;
  return bytes;
}

/** How the control plane ended a Session stream. */
interface Ended {
  status: string | undefined;
  reason: string | undefined;
  message: string;
  welcomed: boolean;
}

describe("node capabilities are checked at Hello and Enroll", function () {
  this.timeout(60_000);
  let cp: TestControlPlane;
  let client: ReturnType<typeof createClient<typeof AgentService>>;
  let nodeId: string;
  let credential: string;
  const enrolledAs: CapabilitiesInit = { cpuCores: 4, memoryMb: 8192, diskFreeMb: 50_000, hostname: "enrolled", os: "linux", arch: "x64" };

  before(async () => {
    cp = await startTestControlPlane();
    client = createClient(AgentService, createGrpcTransport({ baseUrl: cp.url }));
    const enrolled = await client.enroll({ token: await newToken(), capabilities: enrolledAs });
    nodeId = enrolled.nodeId;
    credential = enrolled.nodeCredential;
  });
  after(() => cp?.stop());

  async function newToken(): Promise<string> {
    return (await adminRequest(cp, "POST", "/api/v1/admin/enrollment-tokens", { trust_level: "verified" }))["token"] as string;
  }

  const nodeRow = async () =>
    (await cp.plane.deps.db.query<Record<string, unknown>>(`SELECT hostname, state, capabilities, last_heartbeat_at FROM nodes WHERE id = $1`, [nodeId]))[0];

  /** Sends one Hello on a raw HTTP/2 stream, ends the request, and reads how the stream ended. */
  function sendHello(bytes: Uint8Array, contentType = "application/grpc"): Promise<Ended> {
    return new Promise((resolve, reject) => {
      const connection = http2.connect(cp.url);
      const stream = connection.request({ ":method": "POST", ":path": sessionPath, "content-type": contentType, te: "trailers", authorization: `Bearer ${credential}` });
      const ended: Ended = { status: undefined, reason: undefined, message: "", welcomed: false };
      const fromHeaders = (h: http2.IncomingHttpHeaders) => {
        if (h["grpc-status"] !== undefined) ended.status = String(h["grpc-status"]);
        if (h["grpc-message"] !== undefined) ended.message = decodeURIComponent(String(h["grpc-message"]));
        if (h[reasonMetadataKey] !== undefined) ended.reason = String(h[reasonMetadataKey]);
      };
      let buffer = Buffer.alloc(0);
      stream.on("response", fromHeaders);
      stream.on("trailers", fromHeaders);
      stream.on("data", (chunk: Buffer) => {
        buffer = Buffer.concat([buffer, chunk]);
        while (buffer.length >= 5 && buffer.length >= 5 + buffer.readUInt32BE(1)) {
          const flags = buffer[0]!;
          const body = buffer.subarray(5, 5 + buffer.readUInt32BE(1));
          buffer = buffer.subarray(5 + body.length);
          if ((flags & 0x80) === 0) {
            ended.welcomed = true;
            // A welcomed node leaves at once: this test only asks whether it was let in.
            stream.end();
            continue;
          }
          // gRPC-Web carries the trailers in a last frame of header lines.
          const lines = Object.fromEntries(body.toString("utf8").split("\r\n").filter(Boolean).map((l) => [l.slice(0, l.indexOf(":")).toLowerCase(), l.slice(l.indexOf(":") + 1).trim()]));
          fromHeaders(lines);
        }
      });
      stream.on("error", reject);
      stream.on("close", () => {
        connection.close();
        resolve(ended);
      });
      stream.write(frame(bytes));
      stream.end();
    });
  }

  const hello = (capabilities: CapabilitiesInit, extra: { running?: { unitId: string; attempt: number }[] } = {}) =>
    helloBytes({ protocolVersion: 1, nodeId: "", capabilities, running: extra.running ?? [] });
  const gpu = (index: number, vramMb = 24_576) => ({ index, name: "GPU", vramMb, uuid: "" });
  const cases: { name: string; bytes: Uint8Array; field: string }[] = [
    { name: "negative cores", bytes: hello({ cpuCores: -8 }), field: "capabilities.cpu_cores" },
    { name: "negative memory", bytes: hello({ memoryMb: -1 }), field: "capabilities.memory_mb" },
    { name: "negative disk", bytes: hello({ diskFreeMb: -50_000 }), field: "capabilities.disk_free_mb" },
    { name: "duplicate GPU indexes", bytes: hello({ gpus: [gpu(0), gpu(0)] }), field: "capabilities.gpus[1].index" },
    { name: "a negative GPU index", bytes: hello({ gpus: [gpu(-3)] }), field: "capabilities.gpus[0].index" },
    { name: "2^31 - 1 MiB of VRAM", bytes: hello({ gpus: [gpu(0, 2 ** 31 - 1)] }), field: "capabilities.gpus[0].vram_mb" },
    { name: "302 GPUs", bytes: hello({ gpus: Array.from({ length: 302 }, (_, i) => gpu(i)) }), field: "capabilities.gpus" },
    { name: "a 100 KB hostname", bytes: hello({ hostname: "h".repeat(100_000) }), field: "capabilities.hostname" },
    { name: "a NUL byte in os", bytes: hello({ os: "linux\u0000" }), field: "capabilities.os" },
    { name: "a control character in a GPU name", bytes: hello({ gpus: [{ index: 0, name: "GPU\u001b[31m", vramMb: 1 }] }), field: "capabilities.gpus[0].name" },
    { name: "a running list of 2,000 units", bytes: hello({}, { running: Array.from({ length: 2000 }, () => ({ unitId: "00000000-0000-4000-8000-000000000000", attempt: 1 })) }), field: "running" },
  ];

  for (const c of cases) {
    it(`refuses a Hello with ${c.name}: invalid_argument, VALIDATION_FAILED naming ${c.field}, nothing stored`, async () => {
      const before = await nodeRow();
      const ended = await sendHello(c.bytes);
      assert.equal(ended.welcomed, false);
      assert.equal(ended.status, String(Code.InvalidArgument), JSON.stringify(ended));
      assert.equal(ended.reason, "VALIDATION_FAILED");
      assert.ok(ended.message.includes(c.field), ended.message);
      assert.deepEqual(await nodeRow(), before);
    });
  }

  it("refuses a Hello whose strings are not UTF-8 (it does not decode) with VALIDATION_FAILED, nothing stored", async () => {
    const before = await nodeRow();
    const ended = await sendHello(helloWithInvalidUtf8());
    assert.equal(ended.status, String(Code.InvalidArgument), JSON.stringify(ended));
    assert.equal(ended.reason, "VALIDATION_FAILED");
    assert.match(ended.message, /invalid message: .*utf-8/i);
    assert.deepEqual(await nodeRow(), before);
  });

  it("refuses the same way over gRPC-Web (connect-node)", async () => {
    const before = await nodeRow();
    const ended = await sendHello(hello({ diskFreeMb: -1 }), "application/grpc-web+proto");
    assert.equal(ended.status, String(Code.InvalidArgument), JSON.stringify(ended));
    assert.equal(ended.reason, "VALIDATION_FAILED");
    assert.match(ended.message, /capabilities\.disk_free_mb must be an integer from 0 to \d+ \(got -1\)/);
    assert.deepEqual(await nodeRow(), before);
  });

  it("lets a valid Hello in and stores what it reports", async () => {
    const ended = await sendHello(hello({ cpuCores: 16, memoryMb: 65_536, diskFreeMb: 400_000, gpus: [gpu(0), gpu(1)], hostname: "gpu-box-1", os: "linux", arch: "x64" }));
    assert.equal(ended.welcomed, true);
    assert.equal(ended.status, "0");
    const row = await nodeRow();
    assert.equal(row?.["hostname"], "gpu-box-1");
    assert.equal((row?.["capabilities"] as { gpus: unknown[] }).gpus.length, 2);
  });

  it("refuses an Enroll with invalid capabilities and leaves its token unused", async () => {
    const token = await newToken();
    const refused = await client.enroll({ token, capabilities: { gpus: [gpu(0), gpu(0)] } }).then(
      () => assert.fail("enrolled"),
      (err: unknown) => ConnectError.from(err),
    );
    assert.equal(refused.code, Code.InvalidArgument);
    assert.equal(refused.metadata.get(reasonMetadataKey), "VALIDATION_FAILED");
    assert.match(refused.rawMessage, /capabilities\.gpus\[1\]\.index must be unique/);
    const enrolled = await client.enroll({ token, capabilities: enrolledAs });
    assert.match(enrolled.nodeId, /^[0-9a-f-]{36}$/);
  });

  it("makes a real agent's enroll fail with the reason (a declared GPU of 2,000,000 MiB)", async () => {
    await assert.rejects(startTestAgent(cp, { trustLevel: "verified", devGpuMib: 2_000_000 }), /VALIDATION_FAILED.*capabilities\.gpus\[0\]\.vram_mb must be an integer from 0 to 1048576 \(got 2000000\)/);
  });

  it("makes the agent log the reason as an error and wait the longest backoff before trying again", async () => {
    const errors: string[] = [];
    const delays: number[] = [];
    let retried: () => void = () => {};
    const retrying = new Promise<void>((resolve) => (retried = resolve));
    const logger: AgentLogger = {
      debug: () => {},
      warn: () => {},
      error: (_obj, msg) => errors.push(msg ?? ""),
      info: (obj, msg) => {
        if (msg === "reconnecting") {
          delays.push((obj as { delay_ms: number }).delay_ms);
          retried();
        }
      },
    };
    const maxMs = 4000;
    const session = createAgentSession({
      client,
      nodeId,
      nodeCredential: credential,
      hello: async () => ({ capabilities: create(CapabilitiesSchema, { cpuCores: 2, gpus: [gpu(0), gpu(0)] }), running: [] }),
      heartbeat: async () => ({}),
      onControl: () => {},
      clock: systemClock,
      logger,
      backoff: { initialMs: 10, maxMs },
    });
    const stop = new AbortController();
    const running = session.run(stop.signal);
    await retrying;
    stop.abort();
    await running;
    assert.equal(errors.length, 1, JSON.stringify(errors));
    assert.match(errors[0]!, /^the control plane refused this node: invalid node report: capabilities\.gpus\[1\]\.index must be unique .*; correct what this node reports and restart the agent/);
    // Equal jitter over the longest step: between half of it and all of it, never the 10 ms first step.
    assert.ok(delays[0]! >= maxMs / 2 && delays[0]! <= maxMs, `first retry after ${delays[0]} ms`);
  });
});
