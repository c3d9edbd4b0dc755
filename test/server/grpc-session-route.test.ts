/**
 * The Session rpc served straight from the HTTP/2 stream (src/server/grpc-session-route.ts): gRPC framing
 * across chunk boundaries, gzip, the message bound, unsupported encodings, errors in trailers the way
 * connect-node writes them, and a handler that sees the stream close when the client goes away.
 */
import assert from "node:assert/strict";
import http2 from "node:http2";
import type { AddressInfo } from "node:net";
import { gzipSync } from "node:zlib";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { ApiError } from "../../src/platform/errors.ts";
import { reasonMetadataKey } from "../../src/api/errors.ts";
import type { SessionHandler } from "../../src/server/grpc-session-route.ts";
import { isGrpcSessionRequest, serveGrpcSession, sessionPath } from "../../src/server/grpc-session-route.ts";
import { SessionRequestSchema, SessionResponseSchema } from "../../src/gen/gpuagent/agent/v1/agent_pb.ts";

function frame(bytes: Uint8Array, compressed = false): Buffer {
  const out = Buffer.alloc(5 + bytes.length);
  out[0] = compressed ? 1 : 0;
  out.writeUInt32BE(bytes.length, 1);
  out.set(bytes, 5);
  return out;
}

const request = (seq: number) => toBinary(SessionRequestSchema, create(SessionRequestSchema, { seq: BigInt(seq), body: { case: "ack", value: { seq: BigInt(seq) } } }));

/** Echoes each request's seq back as an Ack response; stops after `limit` messages when given. */
const echo: SessionHandler = async function* (requests) {
  for await (const r of requests) yield create(SessionResponseSchema, { seq: 0n, body: { case: "ack", value: { seq: r.seq } } });
};

interface Call {
  responses: bigint[];
  trailers: http2.IncomingHttpHeaders;
  headers: http2.IncomingHttpHeaders;
}

describe("Session over plain gRPC without connect-node", () => {
  let server: http2.Http2Server;
  let url: string;
  let handler: SessionHandler = echo;
  let client: http2.ClientHttp2Session;

  before(async () => {
    server = http2.createServer((req, res) => {
      if (isGrpcSessionRequest(req)) void serveGrpcSession(req, res, (r, c) => handler(r, c));
      else res.writeHead(404).end();
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    client = http2.connect(url);
  });
  after(async () => {
    client.close();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });
  afterEach(() => {
    handler = echo;
  });

  function call(chunks: Buffer[], headers: Record<string, string> = {}): Promise<Call> {
    return new Promise((resolve, reject) => {
      const stream = client.request({ ":method": "POST", ":path": sessionPath, "content-type": "application/grpc", te: "trailers", ...headers });
      const responses: bigint[] = [];
      let buffer = Buffer.alloc(0);
      let head: http2.IncomingHttpHeaders = {};
      stream.on("response", (h) => (head = h));
      stream.on("data", (chunk: Buffer) => {
        buffer = Buffer.concat([buffer, chunk]);
        while (buffer.length >= 5 && buffer.length >= 5 + buffer.readUInt32BE(1)) {
          const length = buffer.readUInt32BE(1);
          const message = fromBinary(SessionResponseSchema, buffer.subarray(5, 5 + length));
          responses.push(message.body.case === "ack" ? message.body.value.seq : -1n);
          buffer = buffer.subarray(5 + length);
        }
      });
      stream.on("trailers", (trailers) => resolve({ responses, trailers, headers: head }));
      stream.on("error", reject);
      for (const c of chunks) stream.write(c);
      stream.end();
    });
  }

  it("serves only the Session rpc in gRPC's binary protocol over HTTP/2", () => {
    const base = { httpVersionMajor: 2, method: "POST", url: sessionPath, headers: { "content-type": "application/grpc" } };
    const cases: { req: typeof base; served: boolean }[] = [
      { req: base, served: true },
      { req: { ...base, headers: { "content-type": "application/grpc+proto" } }, served: true },
      { req: { ...base, headers: { "content-type": "application/grpc-web+proto" } }, served: false },
      { req: { ...base, headers: { "content-type": "application/connect+proto" } }, served: false },
      { req: { ...base, httpVersionMajor: 1 }, served: false },
      { req: { ...base, url: "/gpuagent.agent.v1.AgentService/Enroll" }, served: false },
      { req: { ...base, method: "GET" }, served: false },
    ];
    for (const c of cases) assert.equal(isGrpcSessionRequest(c.req as never), c.served, JSON.stringify(c.req));
  });

  it("decodes messages split across chunks and several in one chunk, and ends with grpc-status 0", async () => {
    const all = Buffer.concat([frame(request(1)), frame(request(2)), frame(request(3))]);
    const chunks = [all.subarray(0, 3), all.subarray(3, 9), all.subarray(9)];
    const res = await call(chunks);
    assert.deepEqual(res.responses, [1n, 2n, 3n]);
    assert.equal(res.headers["content-type"], "application/grpc+proto");
    assert.equal(res.trailers["grpc-status"], "0");
  });

  it("accepts gzip-compressed messages under grpc-encoding: gzip", async () => {
    const res = await call([frame(gzipSync(request(7)), true)], { "grpc-encoding": "gzip" });
    assert.deepEqual(res.responses, [7n]);
    assert.equal(res.trailers["grpc-status"], "0");
  });

  it("refuses an encoding it does not speak with UNIMPLEMENTED", async () => {
    const res = await call([frame(request(1))], { "grpc-encoding": "snappy" });
    assert.deepEqual(res.responses, []);
    assert.equal(res.trailers["grpc-status"], "12");
  });

  it("refuses a message over 4 MiB with RESOURCE_EXHAUSTED", async () => {
    const header = Buffer.alloc(5);
    header.writeUInt32BE(4 * 1024 * 1024 + 1, 1);
    const res = await call([header]);
    assert.equal(res.trailers["grpc-status"], "8");
  });

  it("sends a handler's ApiError as connect-node does: status, message and the seed code in trailers", async () => {
    handler = async function* () {
      yield* [];
      throw new ApiError("NODE_AUTH_INVALID", "this node was revoked by an operator");
    };
    const res = await call([frame(request(1))]);
    assert.equal(res.trailers["grpc-status"], "16");
    assert.match(decodeURIComponent(String(res.trailers["grpc-message"])), /NODE_AUTH_INVALID.*revoked/);
    assert.equal(res.trailers[reasonMetadataKey], "NODE_AUTH_INVALID");
    assert.ok(res.trailers["grpc-status-details-bin"], "details carry the seed code too");
  });

  async function resetAfterFirstResponse(): Promise<void> {
    const stream = client.request({ ":method": "POST", ":path": sessionPath, "content-type": "application/grpc", te: "trailers" });
    stream.on("error", () => {});
    stream.write(frame(request(1)));
    await new Promise((resolve) => stream.once("data", resolve));
    stream.close(http2.constants.NGHTTP2_CANCEL);
  }

  it("ends the handler's reads when the client resets the stream", async () => {
    let ended: () => void = () => {};
    const readsEnded = new Promise<void>((resolve) => (ended = resolve));
    handler = async function* (requests) {
      try {
        for await (const r of requests) yield create(SessionResponseSchema, { seq: 0n, body: { case: "ack", value: { seq: r.seq } } });
      } catch {
        // a cancellation is an end too
      }
      ended();
    };
    await resetAfterFirstResponse();
    await readsEnded;
  });

  it("fires the handler's signal when the client goes away while the handler is not reading", async () => {
    let aborted: () => void = () => {};
    const signalled = new Promise<void>((resolve) => (aborted = resolve));
    handler = async function* (_requests, ctx) {
      yield create(SessionResponseSchema, { seq: 0n, body: { case: "ack", value: { seq: 1n } } });
      await new Promise<void>((resolve) => ctx.signal.addEventListener("abort", () => resolve()));
      aborted();
    };
    await resetAfterFirstResponse();
    await signalled;
  });
});
