/**
 * Flow control on the agent stream, against a real control plane, from a raw HTTP/2 client that
 * speaks the wire protocol itself: a node that sends 3,000 log messages as fast as HTTP/2 lets it
 * while reading its acks slowly (a small receive window, then nothing, then a little at a time),
 * then fast, gets every one acked, in the order sent, and is held back meanwhile instead of losing
 * acks. Both ways the Session rpc is served: plain gRPC (src/server/grpc-session-route.ts) and gRPC-Web
 * (connect-node).
 */
import assert from "node:assert/strict";
import http2 from "node:http2";
import { create, toBinary, fromBinary } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { sessionPath } from "../../src/server/grpc-session-route.ts";
import type { SessionResponse } from "../../src/gen/gpuagent/agent/v1/agent_pb.ts";
import { AgentService, SessionRequestSchema, SessionResponseSchema } from "../../src/gen/gpuagent/agent/v1/agent_pb.ts";
import type { TestControlPlane } from "../support/control-plane.ts";
import { adminRequest, createCustomer, startTestControlPlane } from "../support/control-plane.ts";
import { seedRunningUnit } from "../telemetry/support.ts";

const messages = 3000;
const linesPerMessage = 8;
/** Acks read slowly, a chunk at a time with a pause, before the rest is read at full speed. */
const slowAcks = 1000;

function frame(bytes: Uint8Array): Buffer {
  const out = Buffer.alloc(5 + bytes.length);
  out.writeUInt32BE(bytes.length, 1);
  out.set(bytes, 5);
  return out;
}

/** Resolves at the stream's next "drain"; rejects if it closes first. */
function drained(stream: http2.ClientHttp2Stream): Promise<void> {
  return new Promise((resolve, reject) => {
    const onDrain = () => {
      stream.off("close", onClose);
      resolve();
    };
    const onClose = () => {
      stream.off("drain", onDrain);
      reject(new Error("the stream closed while the node was writing"));
    };
    stream.once("drain", onDrain);
    stream.once("close", onClose);
  });
}

/** What the raw client saw of one stream. */
interface Outcome {
  /** The seqs the control plane acked, in the order the acks came. */
  acked: bigint[];
  /** How many times a write found the stream's buffer full (HTTP/2 flow control holding the node back). */
  heldBack: number;
  /** grpc-status, from the trailers (gRPC) or the trailer frame (gRPC-Web). */
  status: string | undefined;
}

describe("acks on the agent stream under back-pressure", function () {
  this.timeout(60_000);
  let cp: TestControlPlane;
  let nodeId: string;
  let credential: string;
  let customerId: string;

  before(async () => {
    cp = await startTestControlPlane();
    const client = createClient(AgentService, createGrpcTransport({ baseUrl: cp.url }));
    const token = (await adminRequest(cp, "POST", "/api/v1/admin/enrollment-tokens", { trust_level: "verified" }))["token"] as string;
    const enrolled = await client.enroll({ token, capabilities: { cpuCores: 2, memoryMb: 2048, diskFreeMb: 10_000, hostname: "flood" } });
    nodeId = enrolled.nodeId;
    credential = enrolled.nodeCredential;
    ({ customerId } = await createCustomer(cp));
  });
  after(() => cp?.stop());

  /** A running unit on the test node (attempt 1). */
  async function runningUnit(): Promise<{ unitId: string }> {
    const seeded = await seedRunningUnit(cp.plane.deps.db, { customerId });
    await cp.plane.deps.db.query(`UPDATE compute_units SET node_id = $2 WHERE id = $1`, [seeded.unitId, nodeId]);
    return { unitId: seeded.unitId };
  }

  /** Hello (seq 1), then `messages` LogLines (seq 2 on) of `linesPerMessage` numbered lines each. */
  function requestFrames(unitId: string): Buffer[] {
    const hello = create(SessionRequestSchema, {
      seq: 1n,
      body: { case: "hello", value: { protocolVersion: 1, nodeId, capabilities: { cpuCores: 2, memoryMb: 2048, hostname: "flood" }, running: [{ unitId, attempt: 1 }] } },
    });
    const frames = [frame(toBinary(SessionRequestSchema, hello))];
    for (let i = 0; i < messages; i++) {
      const lines = Array.from({ length: linesPerMessage }, (_, j) => `message ${i} line ${j} ${"x".repeat(100)}`);
      const log = create(SessionRequestSchema, {
        seq: BigInt(i + 2),
        body: { case: "log", value: { unit: { unitId, attempt: 1 }, stream: "stdout", lines, firstLine: BigInt(i * linesPerMessage), at: timestampFromMs(Date.now()) } },
      });
      frames.push(frame(toBinary(SessionRequestSchema, log)));
    }
    return frames;
  }

  /**
   * One Session stream from a node with a 1 KiB receive window: it writes every frame as fast as
   * flow control allows; it reads nothing until its writes are held back (or done), then reads
   * `slowAcks` acks a chunk at a time with a pause, then the rest at full speed; once every message
   * is acked it ends its side and reads the status.
   */
  async function flood(contentType: string, frames: Buffer[]): Promise<Outcome> {
    const connection = http2.connect(cp.url, { settings: { initialWindowSize: 1024 } });
    try {
      const stream = connection.request({
        ":method": "POST",
        ":path": sessionPath,
        "content-type": contentType,
        te: "trailers",
        authorization: `Bearer ${credential}`,
      });
      const outcome: Outcome = { acked: [], heldBack: 0, status: undefined };
      let heldBack: () => void = () => {};
      const firstHeldBack = new Promise<void>((resolve) => (heldBack = resolve));
      const writing = (async () => {
        for (const f of frames) {
          if (stream.write(f)) continue;
          outcome.heldBack++;
          heldBack();
          await drained(stream);
        }
      })();
      const ended = new Promise<void>((resolve, reject) => {
        stream.on("trailers", (trailers) => {
          outcome.status ??= String(trailers["grpc-status"]);
        });
        stream.on("error", reject);
        stream.on("close", () => resolve());
      });
      await Promise.race([firstHeldBack, writing]);
      let allAcked: () => void = () => {};
      const acked = new Promise<void>((resolve) => (allAcked = resolve));
      let buffer: Buffer = Buffer.alloc(0);
      stream.on("data", (chunk: Buffer) => {
        buffer = buffer.length === 0 ? chunk : Buffer.concat([buffer, chunk]);
        while (buffer.length >= 5 && buffer.length >= 5 + buffer.readUInt32BE(1)) {
          const flags = buffer[0]!;
          const body = buffer.subarray(5, 5 + buffer.readUInt32BE(1));
          buffer = buffer.subarray(5 + body.length);
          if ((flags & 0x80) !== 0) {
            // gRPC-Web's trailer frame: HTTP/1-style header lines.
            outcome.status = /grpc-status:\s*(\d+)/i.exec(body.toString("latin1"))?.[1];
            continue;
          }
          const response: SessionResponse = fromBinary(SessionResponseSchema, body);
          if (response.body.case === "ack") outcome.acked.push(response.body.value.seq);
        }
        if (outcome.acked.length >= frames.length) allAcked();
        else if (outcome.acked.length < slowAcks) {
          stream.pause();
          setTimeout(() => stream.resume(), 5);
        }
      });
      // A generous bound on the wait, so that a control plane that loses acks fails with the count.
      const giveUp = setTimeout(allAcked, 30_000);
      await Promise.race([acked, ended]);
      clearTimeout(giveUp);
      await writing;
      stream.end();
      await ended;
      return outcome;
    } finally {
      connection.close();
    }
  }

  const paths = [
    { name: "plain gRPC (the hand-written route)", contentType: "application/grpc" },
    { name: "gRPC-Web (connect-node)", contentType: "application/grpc-web+proto" },
  ];
  for (const path of paths) {
    it(`acks each of ${messages} log messages sent flat out, in order, over ${path.name}, holding the node back meanwhile`, async () => {
      const { unitId } = await runningUnit();
      const frames = requestFrames(unitId);
      const outcome = await flood(path.contentType, frames);
      const expected = frames.map((_, i) => BigInt(i + 1));
      assert.equal(outcome.acked.length, expected.length, `acked ${outcome.acked.length} of ${expected.length} messages`);
      assert.deepEqual(outcome.acked, expected, "every message acked once, in the order sent");
      assert.ok(outcome.heldBack > 0, "flow control held the node back at least once");
      assert.equal(outcome.status, "0");
      // Acked means written: the attempt's log has taken in every line (keeping its tail, as always).
      const [row] = await cp.plane.deps.db.query<{ stdout_next_line: number; dropped_lines: number }>(
        `SELECT stdout_next_line, dropped_lines FROM unit_telemetry WHERE unit_id = $1 AND attempt = 1`,
        [unitId],
      );
      assert.equal(row?.stdout_next_line, messages * linesPerMessage);
    });
  }
});
