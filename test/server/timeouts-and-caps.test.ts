/**
 * Slow, idle and greedy clients on the one port (src/server/http-server.ts):
 * a request body that stops arriving is cut, connections that idle or never
 * say anything are closed, HTTP/2 advertises a stream limit (a lower one once
 * a connection is an agent's), and one address holds at most so many
 * connections. What is active is never cut: a body that keeps coming, a slow
 * handler, a server stream with pauses, an agent's quiet Session stream.
 * Timeouts are configured small (200 ms) so no test waits long.
 */
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import http2 from "node:http2";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import tls from "node:tls";
import { setTimeout as delay } from "node:timers/promises";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import type { ServiceImpl } from "@connectrpc/connect";
import { pino } from "pino";
import { isGrpcSessionRequest, serveGrpcSession } from "../../src/server/grpc-session-route.ts";
import type { SessionHandler } from "../../src/server/grpc-session-route.ts";
import { createRestTranscoder, restService } from "../../src/api/rest/transcoder.ts";
import { AgentService, EnrollResponseSchema, SessionRequestSchema, SessionResponseSchema } from "../../src/gen/gpuagent/agent/v1/agent_pb.ts";
import { CustomerService } from "../../src/gen/gpuagent/customer/v1/customer_pb.ts";
import type { Http2ServerRequest, Http2ServerResponse } from "node:http2";
import type { TransportConfig } from "../../src/platform/config.ts";
import { startHttpServer } from "../../src/server/http-server.ts";
import type { HttpServer, HttpServerTlsOptions } from "../../src/server/http-server.ts";
import { fakeApiKey, fakeCustomerService } from "../api/rest/fake-customer-service.ts";
import { rawH2 } from "./raw-h2.ts";

const tick = 200;
const smallTimeouts: Partial<TransportConfig> = { headersTimeoutMs: tick, bodyTimeoutMs: tick, keepAliveTimeoutMs: tick, http2IdleTimeoutMs: tick };

/** A CSV export that pauses longer than the body timeout between its chunks, as a slow query would. */
const slowCustomerService: Partial<ServiceImpl<typeof CustomerService>> = {
  ...fakeCustomerService,
  async *exportUsageCsv() {
    yield { body: { contentType: "text/csv; charset=utf-8", data: new TextEncoder().encode("day,credits\n") } };
    for (const day of ["2024-01-01", "2024-01-02"]) {
      await delay(2 * tick);
      yield { body: { data: new TextEncoder().encode(`${day},5\n`) } };
    }
  },
};

const echoSession: SessionHandler = async function* (requests) {
  for await (const r of requests) yield create(SessionResponseSchema, { body: { case: "ack", value: { seq: r.seq } } });
};

function startServer(transport: Partial<TransportConfig>, tlsOptions?: HttpServerTlsOptions): Promise<HttpServer> {
  return startHttpServer({
    port: 0,
    host: "127.0.0.1",
    ...(tlsOptions === undefined ? {} : { tls: tlsOptions }),
    connectRoutes: (router) => {
      router.service(CustomerService, slowCustomerService);
      router.service(AgentService, { enroll: () => create(EnrollResponseSchema, { nodeId: "node-1", nodeCredential: "nc_x", trustLevel: "community" }) });
    },
    rest: createRestTranscoder({ services: [restService(CustomerService, slowCustomerService)] }),
    httpRoutes: [
      {
        // Reads the whole body, then takes longer than the body timeout to answer (slow storage).
        method: "PUT",
        pattern: /^\/slow$/,
        async handle(req, res) {
          let bytes = 0;
          for await (const chunk of req) bytes += (chunk as Buffer).length;
          await delay(3 * tick);
          res.setHeader("content-type", "application/json");
          res.end(JSON.stringify({ bytes }));
        },
      },
    ],
    grpcStreamRoute: (req, res) => {
      if (!isGrpcSessionRequest(req)) return false;
      void serveGrpcSession(req as Http2ServerRequest, res as Http2ServerResponse, echoSession);
      return true;
    },
    health: { live: () => true, ready: async () => true },
    logger: pino({ level: "silent" }),
    transport,
  });
}

/** Connects (plain TCP, or TLS offering only `alpn`), and resolves what the server sent once it closes the connection. */
function connect(server: HttpServer, tlsOptions?: { ca: string; alpn: string }): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const socket =
      tlsOptions === undefined
        ? net.connect(server.port, "127.0.0.1", () => resolve(socket))
        : tls.connect({ port: server.port, host: "127.0.0.1", ca: tlsOptions.ca, ALPNProtocols: [tlsOptions.alpn] }, () => resolve(socket));
    socket.once("error", reject);
  });
}

function whenClosed(socket: net.Socket): Promise<string> {
  let text = "";
  socket.on("data", (c: Buffer) => (text += c.toString("latin1")));
  socket.on("error", () => undefined);
  return new Promise((resolve) => socket.once("close", () => resolve(text)));
}

/** Writes an HTTP/1.1 request head and, over time, the chunks of its body; resolves the raw answer when the server closes. */
async function http1Exchange(socket: net.Socket, head: string, chunks: string[], gapMs: number): Promise<string> {
  const closed = whenClosed(socket);
  socket.write(head);
  for (const chunk of chunks) {
    await delay(gapMs);
    socket.write(chunk);
  }
  return closed;
}

function frame(bytes: Uint8Array): Buffer {
  const out = Buffer.alloc(5 + bytes.length);
  out.writeUInt32BE(bytes.length, 1);
  out.set(bytes, 5);
  return out;
}

describe("Timeouts: what stalls is cut, what is active is not", () => {
  let server: HttpServer;

  before(async () => {
    server = await startServer(smallTimeouts);
  });
  after(async () => {
    await server.close();
  });

  describe("HTTP/1.1", () => {
    it("a request whose body stops arriving is cut", async () => {
      const socket = await connect(server);
      const answer = await http1Exchange(socket, "PUT /slow HTTP/1.1\r\nhost: x\r\ncontent-length: 100\r\n\r\n0123456789", [], 0);
      assert.equal(answer, "", "no answer: the connection is closed");
    });

    it("a body that keeps arriving, slower in all than the body timeout, is served", async () => {
      const socket = await connect(server);
      const answer = await http1Exchange(socket, "PUT /slow HTTP/1.1\r\nhost: x\r\nconnection: close\r\ncontent-length: 6\r\n\r\n", ["a", "b", "c", "d", "e", "f"], tick / 4);
      assert.match(answer, /^HTTP\/1\.1 200 /);
      assert.match(answer, /\{"bytes":6\}$/);
    });

    it("a request whose body is in may take longer than the body timeout to answer", async () => {
      const res = await fetch(`${server.url}/slow`, { method: "PUT", body: "xyz" });
      assert.equal(res.status, 200);
      assert.deepEqual(await res.json(), { bytes: 3 });
    });

    it("request headers that never finish are cut", async () => {
      const socket = await connect(server);
      const answer = await http1Exchange(socket, "GET /healthz HTTP/1.1\r\nhost: x\r\n", [], 0);
      assert.match(answer, /^HTTP\/1\.1 408 /);
    });

    it("a connection that sends nothing is closed", async () => {
      const socket = await connect(server);
      assert.equal(await whenClosed(socket), "");
    });

    it("an idle keep-alive connection is closed after its answer", async () => {
      const socket = await connect(server);
      const answer = await http1Exchange(socket, "GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n", [], 0);
      assert.match(answer, /^HTTP\/1\.1 200 /);
      assert.match(answer, /keep-alive/i);
    });
  });

  describe("HTTP/2", () => {
    it("a connection that sends its preface and nothing more is closed", async () => {
      const socket = await connect(server);
      const closed = whenClosed(socket);
      socket.write("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
      await closed;
    });

    it("a connection is closed (GOAWAY) once it has had no open stream for the idle timeout, never while one is open", async () => {
      const session = http2.connect(server.url);
      session.on("error", () => undefined);
      let goawayWhileStreaming = false;
      let streaming = true;
      const goaway = new Promise<number>((resolve) =>
        session.once("goaway", (code: number) => {
          goawayWhileStreaming = streaming;
          resolve(code);
        }),
      );
      try {
        // The export pauses 2 × the idle timeout between its chunks: the open stream keeps the connection.
        const stream = session.request({ ":path": "/api/v1/customer/usage/export.csv", "x-api-key": fakeApiKey });
        stream.resume();
        await new Promise((resolve, reject) => {
          stream.once("end", resolve);
          stream.once("error", reject);
        });
        streaming = false;
        assert.equal(await goaway, http2.constants.NGHTTP2_NO_ERROR);
        assert.equal(goawayWhileStreaming, false);
      } finally {
        session.destroy();
      }
    });

    it("a stream whose body stops arriving is reset (CANCEL); the connection carries on", async () => {
      const session = http2.connect(server.url);
      try {
        const stream = session.request({ ":method": "POST", ":path": "/gpuagent.customer.v1.CustomerService/CreateTrainingJob", "content-type": "application/json", "x-api-key": fakeApiKey });
        stream.on("error", () => undefined);
        stream.write('{"name":');
        await new Promise((resolve) => stream.once("close", resolve));
        assert.equal(stream.rstCode, http2.constants.NGHTTP2_CANCEL);
        const healthz = session.request({ ":path": "/healthz" });
        const [headers] = (await new Promise((resolve) => healthz.once("response", (h) => resolve([h])))) as [http2.IncomingHttpHeaders];
        assert.equal(headers[":status"], 200);
        healthz.resume();
      } finally {
        session.destroy();
      }
    });

    it("a CSV export that pauses longer than the body timeout between chunks arrives whole over REST", async () => {
      const session = http2.connect(server.url);
      try {
        const stream = session.request({ ":path": "/api/v1/customer/usage/export.csv", "x-api-key": fakeApiKey });
        let body = "";
        stream.setEncoding("utf8");
        stream.on("data", (c: string) => (body += c));
        await new Promise((resolve, reject) => {
          stream.once("end", resolve);
          stream.once("error", reject);
        });
        assert.equal(body, "day,credits\n2024-01-01,5\n2024-01-02,5\n");
      } finally {
        session.destroy();
      }
    });

    it("an agent's Session stream quiet for longer than every timeout is not cut", async () => {
      const session = http2.connect(server.url);
      try {
        const stream = session.request({ ":method": "POST", ":path": "/gpuagent.agent.v1.AgentService/Session", "content-type": "application/grpc", te: "trailers" });
        const acks: bigint[] = [];
        stream.on("data", (chunk: Buffer) => {
          for (let at = 0; at + 5 <= chunk.length; at += 5 + chunk.readUInt32BE(at + 1)) {
            const message = fromBinary(SessionResponseSchema, chunk.subarray(at + 5, at + 5 + chunk.readUInt32BE(at + 1)));
            if (message.body.case === "ack") acks.push(message.body.value.seq);
          }
        });
        const trailers = new Promise<http2.IncomingHttpHeaders>((resolve, reject) => {
          stream.once("trailers", resolve);
          stream.once("error", reject);
        });
        const ack = (seq: bigint) => frame(toBinary(SessionRequestSchema, create(SessionRequestSchema, { seq, body: { case: "ack", value: { seq } } })));
        stream.write(ack(1n));
        // Between heartbeats a node says nothing; src/agent-streams/ decides when that is too long.
        await delay(3 * tick);
        stream.end(ack(2n));
        assert.equal((await trailers)["grpc-status"], "0");
        assert.deepEqual(acks, [1n, 2n]);
      } finally {
        session.destroy();
      }
    });
  });
});

describe("HTTP/2 stream limits", () => {
  let server: HttpServer;

  before(async () => {
    server = await startServer({});
  });
  after(async () => {
    await server.close();
  });

  it("a customer connection is offered 100 concurrent streams, and 8 once it has carried an agent rpc", async () => {
    const session = http2.connect(server.url);
    try {
      const first = await new Promise<http2.Settings>((resolve) => session.once("remoteSettings", resolve));
      assert.equal(first.maxConcurrentStreams, 100);
      const lowered = new Promise<http2.Settings>((resolve) => session.once("remoteSettings", resolve));
      const enroll = session.request({ ":method": "POST", ":path": "/gpuagent.agent.v1.AgentService/Enroll", "content-type": "application/json" });
      enroll.end("{}");
      enroll.resume();
      assert.equal((await lowered).maxConcurrentStreams, 8);
      assert.equal(session.remoteSettings.maxConcurrentStreams, 8);
    } finally {
      session.destroy();
    }
  });

  it("streams over the limit are refused (REFUSED_STREAM) even from a client that never acknowledges the limit", async () => {
    const small = await startServer({ maxConcurrentStreams: 4 });
    const client = await rawH2(small.port, { ackSettings: false });
    try {
      await client.greeted;
      assert.deepEqual(client.report.maxConcurrentStreams, [4]);
      const ids = Array.from({ length: 10 }, () => client.open("/slow", { body: Buffer.from("x") }));
      // The server answers streams in order: once the last one is refused, every refusal before it is in.
      assert.equal(await client.reset(ids.at(-1)!), http2.constants.NGHTTP2_REFUSED_STREAM);
      const refused = ids.filter((id) => client.report.resets.get(id) === http2.constants.NGHTTP2_REFUSED_STREAM);
      assert.deepEqual(refused, ids.slice(4));
      assert.equal(client.report.closed, false, "refusing streams keeps the connection");
    } finally {
      client.destroy();
      await small.close();
    }
  });
});

describe("HTTP/2 streams per client address", () => {
  /** An upload whose body never finishes: the server holds the stream open, reading. */
  function holdOpen(session: http2.ClientHttp2Session): http2.ClientHttp2Stream {
    const stream = session.request({ ":method": "PUT", ":path": "/slow" });
    stream.on("error", () => undefined);
    stream.write("x");
    return stream;
  }
  /** Resolves once the server has processed every frame sent before: its PING acknowledgement follows them. */
  const processed = (session: http2.ClientHttp2Session): Promise<void> => new Promise((resolve, reject) => session.ping((err) => (err === null ? resolve() : reject(err))));
  const closed = (stream: http2.ClientHttp2Stream): Promise<number> => new Promise((resolve) => (stream.closed ? resolve(stream.rstCode ?? 0) : stream.once("close", () => resolve(stream.rstCode ?? 0))));

  it("refuses streams over the address's cap across its connections (REFUSED_STREAM), and admits one again when another ends", async () => {
    const server = await startServer({ maxStreamsPerAddress: 6 });
    const first = http2.connect(server.url);
    const second = http2.connect(server.url);
    try {
      // A PING is cancelled on a connection not yet set up.
      await Promise.all([first, second].map((session) => new Promise((resolve) => session.once("remoteSettings", resolve))));
      const held = Array.from({ length: 4 }, () => holdOpen(first));
      await processed(first);
      const more = Array.from({ length: 4 }, () => holdOpen(second));
      assert.equal(await closed(more[3]!), http2.constants.NGHTTP2_REFUSED_STREAM);
      assert.equal(await closed(more[2]!), http2.constants.NGHTTP2_REFUSED_STREAM);
      await processed(second);
      assert.ok([...held, more[0]!, more[1]!].every((stream) => !stream.closed), "the address holds six streams in all");
      // Ending one of them makes room for one more from the address; the server learns of it a moment later.
      held[0]!.close(http2.constants.NGHTTP2_CANCEL);
      let status: number | undefined;
      for (let tries = 0; tries < 50 && status === undefined; tries++) {
        const probe = second.request({ ":method": "GET", ":path": "/healthz" });
        probe.on("error", () => undefined);
        status = await new Promise<number | undefined>((resolve) => {
          probe.once("response", (headers) => resolve(Number(headers[":status"])));
          probe.once("close", () => resolve(undefined));
        });
        probe.close();
      }
      assert.equal(status, 200, "a stream is admitted once one of the six has ended");
    } finally {
      first.destroy();
      second.destroy();
      await server.close();
    }
  });
});

describe("Connections per client address", () => {
  let server: HttpServer;

  before(async () => {
    server = await startServer({ maxConnectionsPerAddress: 3 });
  });
  after(async () => {
    await server.close();
  });

  /** Opens an HTTP/2 connection and resolves it once the server has greeted it, or undefined when the server closed it. */
  function open(): Promise<http2.ClientHttp2Session | undefined> {
    const session = http2.connect(server.url);
    session.on("error", () => undefined);
    return new Promise((resolve) => {
      session.once("remoteSettings", () => resolve(session));
      session.once("close", () => resolve(undefined));
    });
  }

  it("refuses a connection over the cap, and admits one again when another closes", async () => {
    const admitted = await Promise.all([open(), open(), open()]);
    assert.ok(admitted.every((s) => s !== undefined));
    assert.equal(await open(), undefined, "the fourth connection from 127.0.0.1 is refused");
    admitted[0]!.destroy();
    // The server learns of the close a moment later; each try waits on the server's answer, not a clock.
    let again: http2.ClientHttp2Session | undefined;
    for (let tries = 0; tries < 50 && again === undefined; tries++) again = await open();
    assert.ok(again !== undefined, "a connection is admitted once one of the three has gone");
    for (const s of [...admitted, again]) s?.destroy();
  });
});

describe("Timeouts and the cap over TLS", () => {
  let dir: string;
  let ca: string;
  let server: HttpServer;
  let capped: HttpServer;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), "gpu-agent-tls-timeouts-"));
    execFileSync("openssl", ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "key.pem", "-out", "cert.pem", "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"], { cwd: dir, stdio: "pipe" });
    ca = await readFile(join(dir, "cert.pem"), "utf8");
    const tlsOptions = { cert: ca, key: await readFile(join(dir, "key.pem"), "utf8") };
    server = await startServer(smallTimeouts, tlsOptions);
    // Default timeouts: the connections it holds must stay open while the test looks.
    capped = await startServer({ maxConnectionsPerAddress: 2 }, tlsOptions);
  });
  after(async () => {
    await server.close();
    await capped.close();
    await rm(dir, { recursive: true, force: true });
  });

  it("a TCP connection that never starts its handshake is closed", async () => {
    const socket = await connect(server);
    assert.equal(await whenClosed(socket), "");
  });

  it("an HTTP/1.1 request whose body stops arriving is cut", async () => {
    const socket = await connect(server, { ca, alpn: "http/1.1" });
    const answer = await http1Exchange(socket, "PUT /slow HTTP/1.1\r\nhost: x\r\ncontent-length: 100\r\n\r\n0123", [], 0);
    assert.equal(answer, "");
  });

  it("an h2 connection that sends its preface and nothing more is closed", async () => {
    const socket = await connect(server, { ca, alpn: "h2" });
    const closed = whenClosed(socket);
    socket.write("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
    await closed;
  });

  it("a third connection from one address is refused before its handshake", async () => {
    const held = [await connect(capped, { ca, alpn: "h2" }), await connect(capped, { ca, alpn: "h2" })];
    const refused = await new Promise<string>((resolve) => {
      const socket = tls.connect({ port: capped.port, host: "127.0.0.1", ca, ALPNProtocols: ["h2"] }, () => resolve("handshake completed"));
      socket.once("error", (error: NodeJS.ErrnoException) => resolve(error.code ?? error.message));
    });
    assert.notEqual(refused, "handshake completed");
    for (const s of held) s.destroy();
  });
});
