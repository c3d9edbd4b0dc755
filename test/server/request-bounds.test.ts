/**
 * Every protocol on the port bounds what it reads after decompression and
 * stops reading at the bound (src/server/rpc-adapter.ts, the REST
 * transcoder's readBody, the Session route): 413 PAYLOAD_TOO_LARGE, or
 * resource_exhausted carrying that code for gRPC and gRPC-Web, with memory
 * bounded by the limit rather than by what the client sends or claims.
 */
import assert from "node:assert/strict";
import { EventEmitter, once } from "node:events";
import http from "node:http";
import http2 from "node:http2";
import { brotliCompressSync, createGzip, deflateSync, gzipSync } from "node:zlib";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { ConnectError, createClient } from "@connectrpc/connect";
import type { Transport } from "@connectrpc/connect";
import { compressionGzip, createConnectTransport, createGrpcTransport, createGrpcWebTransport } from "@connectrpc/connect-node";
import { pino } from "pino";
import { isGrpcSessionRequest, serveGrpcSession } from "../../src/server/grpc-session-route.ts";
import type { SessionHandler } from "../../src/server/grpc-session-route.ts";
import { apiErrorFrom, reasonMetadataKey } from "../../src/api/errors.ts";
import { createRestTranscoder, restService } from "../../src/api/rest/transcoder.ts";
import { AgentService, EnrollResponseSchema, SessionRequestSchema, SessionResponseSchema } from "../../src/gen/gpuagent/agent/v1/agent_pb.ts";
import { CustomerService } from "../../src/gen/gpuagent/customer/v1/customer_pb.ts";
import type { Http2ServerRequest, Http2ServerResponse } from "node:http2";
import { startHttpServer } from "../../src/server/http-server.ts";
import type { HttpServer } from "../../src/server/http-server.ts";
import { fakeApiKey, fakeCustomerService } from "../api/rest/fake-customer-service.ts";
import { startTestControlPlane } from "../support/control-plane.ts";
import type { TestControlPlane } from "../support/control-plane.ts";

const MiB = 1024 * 1024;
const loginPath = "/gpuagent.customer.v1.CustomerService/Login";

/** gzip of `inflated` zero bytes, made in 1 MiB pieces so this process never holds the inflated size. */
async function gzipBomb(inflated: number): Promise<Buffer> {
  const gzip = createGzip({ level: 9 });
  const chunks: Buffer[] = [];
  gzip.on("data", (c: Buffer) => chunks.push(c));
  const done = new Promise<void>((resolve, reject) => {
    gzip.once("end", resolve);
    gzip.once("error", reject);
  });
  const zeros = Buffer.alloc(MiB);
  for (let written = 0; written < inflated; written += MiB) {
    if (!gzip.write(zeros)) await new Promise((resolve) => gzip.once("drain", resolve));
  }
  gzip.end();
  await done;
  return Buffer.concat(chunks);
}

/** A POST over HTTP/1.1 with the given body (a Buffer, or chunks sent without content-length). */
function post(url: string, headers: http.OutgoingHttpHeaders, body: Buffer | Buffer[]): Promise<{ status: number; headers: http.IncomingHttpHeaders; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method: "POST", headers: Array.isArray(body) ? headers : { ...headers, "content-length": body.length }, agent: false }, (res) => {
      let text = "";
      res.setEncoding("utf8");
      res.on("data", (c: string) => (text += c));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: text }));
    });
    // The server answers before the whole body is sent and closes: the rest of the upload fails, as it should.
    req.on("error", (error: NodeJS.ErrnoException) => {
      if (error.code !== "EPIPE" && error.code !== "ECONNRESET") reject(error);
    });
    if (Array.isArray(body)) {
      for (const chunk of body) req.write(chunk);
      req.end();
    } else {
      req.end(body);
    }
  });
}

function connectError(body: string): { code: string; reason: unknown } {
  const json = JSON.parse(body) as { code: string; details?: Array<{ debug?: { code?: string } }> };
  return { code: json.code, reason: json.details?.[0]?.debug?.code };
}

function restError(body: string): string {
  return (JSON.parse(body) as { error: { code: string } }).error.code;
}

/** Peak resident memory of this process while `work` runs, above what it was before. */
async function peakRssGrowth<T>(work: () => Promise<T>): Promise<{ result: T; growth: number }> {
  const before = process.memoryUsage.rss();
  let peak = before;
  const sampler = setInterval(() => (peak = Math.max(peak, process.memoryUsage.rss())), 5);
  try {
    const result = await work();
    peak = Math.max(peak, process.memoryUsage.rss());
    return { result, growth: peak - before };
  } finally {
    clearInterval(sampler);
  }
}

describe("Request bounds: a gzip bomb on the real control plane", () => {
  let cp: TestControlPlane;
  let bomb: Buffer;

  before(async () => {
    cp = await startTestControlPlane();
    bomb = await gzipBomb(400 * MiB);
  });
  after(async () => {
    await cp.stop();
  });

  it("an unauthenticated Connect Login of 400 KB gzip that inflates to 400 MiB is 413 PAYLOAD_TOO_LARGE, inflating at most 1 MiB", async () => {
    assert.ok(bomb.length < 1 * MiB, `the bomb is ${bomb.length} bytes on the wire`);
    const { result: res, growth } = await peakRssGrowth(() => post(cp.url + loginPath, { "content-type": "application/json", "content-encoding": "gzip" }, bomb));
    assert.equal(res.status, 413, res.body);
    assert.deepEqual(connectError(res.body), { code: "resource_exhausted", reason: "PAYLOAD_TOO_LARGE" });
    assert.equal(res.headers[reasonMetadataKey], "PAYLOAD_TOO_LARGE");
    assert.ok(growth < 100 * MiB, `resident memory grew by ${Math.round(growth / MiB)} MiB for a body that inflates to 400 MiB`);
  });

  it("the same bomb as a REST Login is 413 PAYLOAD_TOO_LARGE", async () => {
    const { result: res, growth } = await peakRssGrowth(() => post(cp.url + "/api/v1/customer/auth/login", { "content-type": "application/json", "content-encoding": "gzip" }, bomb));
    assert.equal(res.status, 413, res.body);
    assert.equal(restError(res.body), "PAYLOAD_TOO_LARGE");
    assert.ok(growth < 100 * MiB, `resident memory grew by ${Math.round(growth / MiB)} MiB`);
  });
});

describe("Request bounds on every protocol", () => {
  let server: HttpServer;
  /** The server's own word that a request is over (its response closed): method, path and status. */
  const finished = new EventEmitter<{ request: [path: string, status: number] }>();
  const maxBodyBytes = 64 * 1024;
  const maxAgentMessageBytes = 256 * 1024;
  const sessionHandler: SessionHandler = async function* (requests) {
    for await (const r of requests) yield create(SessionResponseSchema, { body: { case: "ack", value: { seq: r.seq } } });
  };

  before(async () => {
    server = await startHttpServer({
      port: 0,
      host: "127.0.0.1",
      connectRoutes: (router) => {
        router.service(CustomerService, fakeCustomerService);
        router.service(AgentService, { enroll: () => create(EnrollResponseSchema, { nodeId: "node-1", nodeCredential: "nc_x", trustLevel: "community" }) });
      },
      rest: createRestTranscoder({ services: [restService(CustomerService, fakeCustomerService)], maxBodyBytes }),
      grpcStreamRoute: (req, res) => {
        if (!isGrpcSessionRequest(req)) return false;
        void serveGrpcSession(req as Http2ServerRequest, res as Http2ServerResponse, sessionHandler, undefined, { maxMessageBytes: maxAgentMessageBytes });
        return true;
      },
      health: { live: () => true, ready: async () => true },
      logger: pino({ level: "silent" }),
      onRequest: (_method, path, status) => finished.emit("request", path, status),
      // The body timer would end unread streams too, later: kept out of the way so the bounds alone are seen.
      transport: { maxBodyBytes, maxAgentMessageBytes, bodyTimeoutMs: 600_000 },
    });
  });
  after(async () => {
    await server.close();
  });

  describe("Connect unary over HTTP/1.1", () => {
    const cases: Array<{ name: string; headers?: http.OutgoingHttpHeaders; body: () => Buffer | Buffer[] }> = [
      { name: "a plain body declared over the bound (refused before it is read)", body: () => Buffer.alloc(5 * MiB, 0x20) },
      { name: "a plain body over the bound without content-length", body: () => Array.from({ length: 80 }, () => Buffer.alloc(64 * 1024, 0x20)) },
      { name: "a small gzip body that inflates past the bound", headers: { "content-encoding": "gzip" }, body: () => gzipSync(Buffer.alloc(8 * MiB, 0x20)) },
      { name: "a small brotli body that inflates past the bound", headers: { "content-encoding": "br" }, body: () => brotliCompressSync(Buffer.alloc(8 * MiB, 0x20)) },
    ];
    for (const tc of cases) {
      it(`${tc.name} is 413 PAYLOAD_TOO_LARGE and closes the connection`, async () => {
        const res = await post(server.url + loginPath, { "content-type": "application/json", ...tc.headers }, tc.body());
        assert.equal(res.status, 413, res.body);
        assert.deepEqual(connectError(res.body), { code: "resource_exhausted", reason: "PAYLOAD_TOO_LARGE" });
        // The rest of the body is not read: the connection cannot carry another request.
        assert.equal(res.headers["connection"], "close");
      });
    }

    it("a gzip body cut short is the client's fault: 400 invalid_argument VALIDATION_FAILED", async () => {
      const truncated = gzipSync(JSON.stringify({ email: "a@b.c", password: "pw" })).subarray(0, -6);
      const res = await post(server.url + loginPath, { "content-type": "application/json", "content-encoding": "gzip" }, truncated);
      assert.equal(res.status, 400, res.body);
      assert.deepEqual(connectError(res.body), { code: "invalid_argument", reason: "VALIDATION_FAILED" });
    });

    it("a body within the bound still reaches the handler", async () => {
      const res = await post(server.url + "/gpuagent.customer.v1.CustomerService/GetTrainingJob", { "content-type": "application/json", "x-api-key": fakeApiKey, "content-encoding": "gzip" }, gzipSync(JSON.stringify({ id: "job-1" })));
      assert.equal(res.status, 200, res.body);
      assert.equal((JSON.parse(res.body) as { trainingJob: { id: string } }).trainingJob.id, "job-1");
    });
  });

  it("Connect over HTTP/2: a 5 MB body is 413 and its stream is reset (NO_ERROR) instead of read to the end", async () => {
    const session = http2.connect(server.url);
    // Without the reset the server's side of the stream stays open, waiting for a body nobody reads.
    const serverDone = once(finished, "request") as Promise<[string, number]>;
    try {
      const outcome = await new Promise<{ status: unknown; body: string; rstCode: number | undefined }>((resolve, reject) => {
        const stream = session.request({ ":method": "POST", ":path": loginPath, "content-type": "application/json" });
        let status: unknown;
        let body = "";
        stream.on("response", (h) => (status = h[":status"]));
        stream.setEncoding("utf8");
        stream.on("data", (c: string) => (body += c));
        // The 5 MB write never completes (the server stops reading), so the stream's own "close" waits on it.
        stream.on("end", () => setImmediate(() => resolve({ status, body, rstCode: stream.rstCode })));
        stream.on("error", reject);
        stream.write(Buffer.alloc(5 * MiB, 0x20));
      });
      assert.equal(outcome.status, 413, outcome.body);
      assert.deepEqual(connectError(outcome.body), { code: "resource_exhausted", reason: "PAYLOAD_TOO_LARGE" });
      assert.deepEqual(await serverDone, [loginPath, 413]);
      assert.equal(outcome.rstCode, http2.constants.NGHTTP2_NO_ERROR);
    } finally {
      session.destroy();
    }
  });

  describe("gRPC and gRPC-Web", () => {
    const transports: Array<{ name: string; transport: () => Transport }> = [
      { name: "gRPC", transport: () => createGrpcTransport({ baseUrl: server.url }) },
      { name: "gRPC with a gzip message", transport: () => createGrpcTransport({ baseUrl: server.url, sendCompression: compressionGzip, compressMinBytes: 0 }) },
      { name: "gRPC-Web", transport: () => createGrpcWebTransport({ baseUrl: server.url, httpVersion: "1.1" }) },
      { name: "Connect binary over HTTP/2", transport: () => createConnectTransport({ baseUrl: server.url, httpVersion: "2" }) },
    ];
    for (const { name, transport } of transports) {
      it(`${name}: a message over the bound is resource_exhausted with PAYLOAD_TOO_LARGE`, async () => {
        const client = createClient(CustomerService, transport());
        // Highly compressible, so the gzip variant is far below the bound on the wire.
        const error = await client.createTrainingJob({ name: "x".repeat(maxBodyBytes + 1) }, { headers: { "x-api-key": fakeApiKey } }).then(
          () => assert.fail("expected a refusal"),
          (e: unknown) => e,
        );
        assert.ok(error instanceof ConnectError, String(error));
        assert.equal(error.code, 8 /* resource_exhausted */);
        assert.equal(apiErrorFrom(error).code, "PAYLOAD_TOO_LARGE");
      });
    }

    it("AgentService messages have their own, larger bound", async () => {
      const client = createClient(AgentService, createGrpcTransport({ baseUrl: server.url }));
      // Over the customer bound, within the agent one: served.
      const enrolled = await client.enroll({ token: "t".repeat(maxBodyBytes * 2) });
      assert.equal(enrolled.nodeId, "node-1");
      const error = await client.enroll({ token: "t".repeat(maxAgentMessageBytes + 1) }).then(
        () => assert.fail("expected a refusal"),
        (e: unknown) => e,
      );
      assert.equal(apiErrorFrom(error).code, "PAYLOAD_TOO_LARGE");
    });
  });

  describe("the hand-written Session route", () => {
    function frame(bytes: Uint8Array, compressed = false): Buffer {
      const out = Buffer.alloc(5 + bytes.length);
      out[0] = compressed ? 1 : 0;
      out.writeUInt32BE(bytes.length, 1);
      out.set(bytes, 5);
      return out;
    }
    const ack = (seq: number, padding = 0) =>
      toBinary(SessionRequestSchema, create(SessionRequestSchema, { seq: BigInt(seq), body: { case: "hello", value: { capabilities: { hostname: "h".repeat(padding) } } } }));

    function session(chunks: Buffer[], headers: Record<string, string> = {}): Promise<{ acks: bigint[]; trailers: http2.IncomingHttpHeaders }> {
      const client = http2.connect(server.url);
      return new Promise<{ acks: bigint[]; trailers: http2.IncomingHttpHeaders }>((resolve, reject) => {
        const stream = client.request({ ":method": "POST", ":path": "/gpuagent.agent.v1.AgentService/Session", "content-type": "application/grpc", te: "trailers", ...headers });
        const acks: bigint[] = [];
        let buffer = Buffer.alloc(0);
        stream.on("data", (chunk: Buffer) => {
          buffer = Buffer.concat([buffer, chunk]);
          while (buffer.length >= 5 && buffer.length >= 5 + buffer.readUInt32BE(1)) {
            const message = fromBinary(SessionResponseSchema, buffer.subarray(5, 5 + buffer.readUInt32BE(1)));
            if (message.body.case === "ack") acks.push(message.body.value.seq);
            buffer = buffer.subarray(5 + buffer.readUInt32BE(1));
          }
        });
        stream.on("trailers", (trailers) => resolve({ acks, trailers }));
        stream.on("error", reject);
        for (const c of chunks) stream.write(c);
        stream.end();
      }).finally(() => client.destroy());
    }

    const cases: Array<{ name: string; chunks: () => Buffer[]; headers?: Record<string, string> }> = [
      { name: "a message whose length prefix is over the bound", chunks: () => [frame(ack(1)), frame(ack(2, maxAgentMessageBytes))] },
      { name: "a gzip message that inflates past the bound", chunks: () => [frame(gzipSync(ack(1)), true), frame(gzipSync(ack(2, 4 * maxAgentMessageBytes)), true)], headers: { "grpc-encoding": "gzip" } },
    ];
    for (const tc of cases) {
      it(`${tc.name} ends the stream with resource_exhausted and PAYLOAD_TOO_LARGE after the messages before it`, async () => {
        const res = await session(tc.chunks(), tc.headers);
        assert.deepEqual(res.acks, [1n]);
        assert.equal(res.trailers["grpc-status"], "8");
        assert.equal(res.trailers[reasonMetadataKey], "PAYLOAD_TOO_LARGE");
      });
    }
  });

  describe("REST bodies and content-encoding", () => {
    const json = Buffer.from(JSON.stringify({ name: "gz" }));
    const cases: Array<{ name: string; encoding: string; body: () => Buffer; status: number; code?: string }> = [
      { name: "gzip is decoded", encoding: "gzip", body: () => gzipSync(json), status: 201 },
      { name: "x-gzip is decoded", encoding: "x-gzip", body: () => gzipSync(json), status: 201 },
      { name: "deflate is decoded", encoding: "deflate", body: () => deflateSync(json), status: 201 },
      { name: "br is decoded", encoding: "br", body: () => brotliCompressSync(json), status: 201 },
      { name: "identity is the body as is", encoding: "identity", body: () => json, status: 201 },
      { name: "a gzip body that inflates past the bound is 413", encoding: "gzip", body: () => gzipSync(Buffer.alloc(8 * MiB, 0x20)), status: 413, code: "PAYLOAD_TOO_LARGE" },
      { name: "a body that is not the gzip it claims is 400", encoding: "gzip", body: () => json, status: 400, code: "VALIDATION_FAILED" },
      { name: "an unknown coding is 415", encoding: "compress", body: () => json, status: 415, code: "UNSUPPORTED_MEDIA_TYPE" },
      { name: "a chain of codings is 415", encoding: "gzip, br", body: () => brotliCompressSync(gzipSync(json)), status: 415, code: "UNSUPPORTED_MEDIA_TYPE" },
    ];
    for (const tc of cases) {
      it(`content-encoding ${tc.encoding}: ${tc.name}`, async () => {
        const res = await post(
          server.url + "/api/v1/customer/training-jobs",
          { "content-type": "application/json", "content-encoding": tc.encoding, "x-api-key": fakeApiKey, "idempotency-key": `k-${tc.encoding}` },
          tc.body(),
        );
        assert.equal(res.status, tc.status, res.body);
        if (tc.code !== undefined) assert.equal(restError(res.body), tc.code);
      });
    }

    it("a plain body over the bound is 413 and closes the connection instead of reading the rest", async () => {
      const res = await post(server.url + "/api/v1/customer/training-jobs", { "content-type": "application/json", "x-api-key": fakeApiKey }, Array.from({ length: 80 }, () => Buffer.alloc(64 * 1024, 0x20)));
      assert.equal(res.status, 413, res.body);
      assert.equal(restError(res.body), "PAYLOAD_TOO_LARGE");
      assert.equal(res.headers["connection"], "close");
    });
  });
});
