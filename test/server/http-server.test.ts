import assert from "node:assert/strict";
import http2 from "node:http2";
import { Writable } from "node:stream";
import { fromJson, toJson } from "@bufbuild/protobuf";
import type { DescMethodUnary, JsonObject } from "@bufbuild/protobuf";
import { StructSchema } from "@bufbuild/protobuf/wkt";
import { ConnectError, createClient } from "@connectrpc/connect";
import type { CallOptions, Transport } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport, createGrpcWebTransport } from "@connectrpc/connect-node";
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import { pino } from "pino";
import { ApiError } from "../../src/platform/errors.ts";
import { apiErrorFrom, reasonMetadataKey } from "../../src/api/errors.ts";
import { createRestTranscoder, restService } from "../../src/api/rest/transcoder.ts";
import { CustomerService } from "../../src/gen/gpuagent/customer/v1/customer_pb.ts";
import { startHttpServer } from "../../src/server/http-server.ts";
import type { HttpServer } from "../../src/server/http-server.ts";
import { fakeApiKey, fakeCustomerService } from "../api/rest/fake-customer-service.ts";

/** What any protocol returned, normalised: the snake_case JSON of the whole response, or the seed code. */
type Outcome = { ok: JsonObject } | { code: string; message: string };

interface Protocol {
  name: string;
  call(rpc: string, request: JsonObject, rest: RestCall): Promise<Outcome>;
}

interface RestCall {
  method: string;
  path: string;
  /** The response_body field of the rule, to rebuild the whole response from the REST answer. */
  responseBody?: string;
}

interface ParityCase {
  name: string;
  rpc: string;
  request: JsonObject;
  rest: RestCall;
  expect: { code: string; message?: string } | { pick: (res: JsonObject) => unknown; value: unknown };
}

const parityCases: ParityCase[] = [
  {
    name: "GetMeta answers the same fields and sees the caller's request id",
    rpc: "getMeta",
    request: {},
    rest: { method: "GET", path: "/api/v1/customer/meta" },
    expect: { pick: (r) => [r["service"], r["api_version"], r["build"]], value: ["gpu-agent", "v1", "parity-1"] },
  },
  {
    name: "GetTrainingJob answers the same job",
    rpc: "getTrainingJob",
    request: { id: "job-1" },
    rest: { method: "GET", path: "/api/v1/customer/training-jobs/job-1", responseBody: "training_job" },
    expect: {
      pick: (r) => {
        const job = r["training_job"] as JsonObject;
        return [job["id"], job["status"], job["progress"], job["error"]];
      },
      value: ["job-1", "running", 0.5, ""],
    },
  },
  {
    name: "an unknown job is JOB_NOT_FOUND with the same message",
    rpc: "getTrainingJob",
    request: { id: "nope" },
    rest: { method: "GET", path: "/api/v1/customer/training-jobs/nope" },
    expect: { code: "JOB_NOT_FOUND", message: "training job nope not found" },
  },
  {
    name: "the retired image API is LEGACY_DEPRECATED",
    rpc: "createLegacyImageJob",
    request: { legacy_path: "image-api" },
    rest: { method: "POST", path: "/api/v1/customer/jobs/image-api" },
    expect: { code: "LEGACY_DEPRECATED" },
  },
  {
    name: "a rate limit is RATE_LIMITED",
    rpc: "cancelTrainingJob",
    request: { id: "job-limited" },
    rest: { method: "POST", path: "/api/v1/customer/training-jobs/job-limited/cancel" },
    expect: { code: "RATE_LIMITED", message: "too many cancellations" },
  },
  {
    name: "an rpc the implementation leaves out is NOT_IMPLEMENTED",
    rpc: "login",
    request: { email: "a@b.c", password: "pw" },
    rest: { method: "POST", path: "/api/v1/customer/auth/login" },
    expect: { code: "NOT_IMPLEMENTED" },
  },
  {
    name: "a crashing handler is INTERNAL_ERROR and leaks nothing",
    rpc: "getConfig",
    request: {},
    rest: { method: "GET", path: "/api/v1/customer/config" },
    expect: { code: "INTERNAL_ERROR", message: "internal error" },
  },
];

const requestHeaders = { "x-request-id": "parity-1", "x-api-key": fakeApiKey };

function methodOf(rpc: string): DescMethodUnary {
  const method = CustomerService.method[rpc as keyof typeof CustomerService.method];
  return method as DescMethodUnary;
}

/** A protocol spoken through a connect-es client (Connect JSON, gRPC, gRPC-Web). */
function connectEsProtocol(name: string, transport: () => Transport): Protocol {
  return {
    name,
    async call(rpc, request) {
      const method = methodOf(rpc);
      const client = createClient(CustomerService, transport()) as unknown as Record<string, (req: unknown, opts: CallOptions) => Promise<never>>;
      const fn = client[rpc];
      assert.ok(fn !== undefined);
      try {
        const res = await fn(fromJson(method.input, request), { headers: requestHeaders });
        return { ok: toJson(method.output, res, { useProtoFieldName: true, alwaysEmitImplicit: true }) as JsonObject };
      } catch (error) {
        assert.ok(error instanceof ConnectError, String(error));
        const api = apiErrorFrom(error);
        return { code: api.code, message: api.message };
      }
    },
  };
}

describe("HTTP server: one port for REST, Connect, gRPC and gRPC-Web", () => {
  let server: HttpServer;
  let ready = true;
  const logLines: Array<Record<string, unknown>> = [];
  let grpcJsClient: grpc.Client & Record<string, Function>;

  before(async () => {
    const sink = new Writable({
      write(chunk: Buffer, _enc, done) {
        for (const line of chunk.toString("utf8").split("\n")) if (line !== "") logLines.push(JSON.parse(line) as Record<string, unknown>);
        done();
      },
    });
    server = await startHttpServer({
      port: 0,
      host: "127.0.0.1",
      connectRoutes: (router) => router.service(CustomerService, fakeCustomerService),
      rest: createRestTranscoder({ services: [restService(CustomerService, fakeCustomerService)], maxBodyBytes: 1024 }),
      httpRoutes: [
        {
          method: "PUT",
          pattern: /^\/blobs\/([a-z0-9-]+)$/,
          async handle(req, res, match) {
            if (match[1] === "forbidden") throw new ApiError("SIGNED_URL_EXPIRED", "the upload URL expired");
            let bytes = 0;
            for await (const chunk of req) bytes += (chunk as Buffer).length;
            res.setHeader("content-type", "application/json");
            res.end(JSON.stringify({ blob: match[1], bytes }));
          },
        },
      ],
      health: { live: () => true, ready: async () => ready },
      metrics: async () => ({ contentType: "text/plain; version=0.0.4", body: "up 1\n" }),
      logger: pino({ level: "info" }, sink),
    });
    const definition = protoLoader.loadSync("gpuagent/customer/v1/customer.proto", {
      keepCase: true,
      longs: String,
      defaults: true,
      includeDirs: ["proto", ".buf-deps"],
    });
    const loaded = grpc.loadPackageDefinition(definition) as unknown as {
      gpuagent: { customer: { v1: { CustomerService: grpc.ServiceClientConstructor } } };
    };
    const Ctor = loaded.gpuagent.customer.v1.CustomerService;
    grpcJsClient = new Ctor(`127.0.0.1:${server.port}`, grpc.credentials.createInsecure()) as grpc.Client & Record<string, Function>;
  });

  after(async () => {
    grpcJsClient.close();
    await server.close();
  });

  const protocols: Protocol[] = [
    {
      name: "REST over HTTP/1.1",
      async call(_rpc, request, rest) {
        const init: RequestInit = { method: rest.method, headers: { ...requestHeaders, "content-type": "application/json" } };
        if (rest.method === "POST") init.body = JSON.stringify(request);
        const res = await fetch(server.url + rest.path, init);
        const body = (await res.json()) as JsonObject;
        const error = body["error"] as { code: string; message: string } | undefined;
        if (res.status >= 400 && error !== undefined) return { code: error.code, message: error.message };
        return { ok: rest.responseBody === undefined ? body : { [rest.responseBody]: body } };
      },
    },
    connectEsProtocol("Connect JSON over HTTP/1.1", () =>
      createConnectTransport({ baseUrl: server.url, httpVersion: "1.1", useBinaryFormat: false }),
    ),
    connectEsProtocol("Connect binary over h2c", () => createConnectTransport({ baseUrl: server.url, httpVersion: "2" })),
    connectEsProtocol("gRPC over h2c", () => createGrpcTransport({ baseUrl: server.url })),
    connectEsProtocol("gRPC-Web over HTTP/1.1", () => createGrpcWebTransport({ baseUrl: server.url, httpVersion: "1.1" })),
    {
      name: "gRPC with @grpc/grpc-js",
      call(rpc, request) {
        const fn = grpcJsClient[rpc.charAt(0).toUpperCase() + rpc.slice(1)];
        assert.ok(fn !== undefined);
        const metadata = new grpc.Metadata();
        for (const [k, v] of Object.entries(requestHeaders)) metadata.set(k, v);
        return new Promise((resolve) => {
          fn.call(grpcJsClient, request, metadata, (error: grpc.ServiceError | null, res: JsonObject) => {
            if (error === null) return resolve({ ok: res });
            const reason = error.metadata.get(reasonMetadataKey)[0];
            const code = typeof reason === "string" ? reason : error.code === grpc.status.UNIMPLEMENTED ? "NOT_IMPLEMENTED" : `grpc:${error.code}`;
            resolve({ code, message: error.details.replace(`[${code}] `, "") });
          });
        });
      },
    },
  ];

  for (const tc of parityCases) {
    describe(tc.name, () => {
      for (const protocol of protocols) {
        it(`over ${protocol.name}`, async () => {
          const outcome = await protocol.call(tc.rpc, tc.request, tc.rest);
          if ("code" in tc.expect) {
            assert.ok("code" in outcome, `expected ${tc.expect.code}, got ${JSON.stringify(outcome)}`);
            assert.equal(outcome.code, tc.expect.code);
            if (tc.expect.message !== undefined) assert.equal(outcome.message, tc.expect.message);
          } else {
            assert.ok("ok" in outcome, `expected success, got ${JSON.stringify(outcome)}`);
            assert.deepEqual(tc.expect.pick(outcome.ok), tc.expect.value);
          }
        });
      }
    });
  }

  it("a Connect error carries the seed code in metadata, message and a Struct detail", async () => {
    const client = createClient(CustomerService, createConnectTransport({ baseUrl: server.url, httpVersion: "1.1" }));
    const error = await client.getTrainingJob({ id: "nope" }).then(
      () => assert.fail("expected an error"),
      (e: unknown) => e,
    );
    assert.ok(error instanceof ConnectError);
    assert.equal(error.metadata.get(reasonMetadataKey), "JOB_NOT_FOUND");
    assert.equal(error.rawMessage, "[JOB_NOT_FOUND] training job nope not found");
    const [detail] = error.findDetails(StructSchema);
    assert.ok(detail !== undefined);
    assert.deepEqual(toJson(StructSchema, detail), { code: "JOB_NOT_FOUND" });
  });

  it("a gRPC error carries Retry-After and the handler's headers", async () => {
    let headers: grpc.Metadata | undefined;
    const error = await new Promise<grpc.ServiceError>((resolve) => {
      const call = grpcJsClient["CancelTrainingJob"]!.call(grpcJsClient, { id: "job-limited" }, (e: grpc.ServiceError) => resolve(e)) as grpc.ClientUnaryCall;
      call.on("metadata", (m) => (headers = m));
    });
    assert.equal(error.code, grpc.status.RESOURCE_EXHAUSTED);
    assert.deepEqual(error.metadata.get("retry-after"), ["30"]);
    // Set with ctx.responseHeader, it travels in the HTTP/2 headers, not the trailers.
    assert.deepEqual(headers?.get("x-ratelimit-remaining"), ["0"]);
  });

  it("REST create answers 201 through the server", async () => {
    const res = await fetch(`${server.url}/api/v1/customer/training-jobs`, {
      method: "POST",
      headers: { "x-api-key": fakeApiKey, "content-type": "application/json", "idempotency-key": "k1" },
      body: JSON.stringify({ name: "n" }),
    });
    assert.equal(res.status, 201);
    assert.equal(((await res.json()) as JsonObject)["id"], "job-k1");
  });

  it("REST also works over h2c", async () => {
    const session = http2.connect(server.url);
    try {
      const { status, body, requestId } = await new Promise<{ status: number; body: string; requestId: unknown }>((resolve, reject) => {
        const stream = session.request({ ":path": "/api/v1/customer/training-jobs/nope", ":method": "GET" });
        let status = 0;
        let requestId: unknown;
        let body = "";
        stream.on("response", (headers) => {
          status = Number(headers[":status"]);
          requestId = headers["x-request-id"];
        });
        stream.setEncoding("utf8");
        stream.on("data", (c: string) => (body += c));
        stream.on("end", () => resolve({ status, body, requestId }));
        stream.on("error", reject);
      });
      assert.equal(status, 404);
      assert.equal((JSON.parse(body) as { error: { code: string } }).error.code, "JOB_NOT_FOUND");
      assert.equal(typeof requestId, "string");
    } finally {
      session.close();
    }
  });

  const plainCases: Array<{ name: string; method?: string; path: string; status: number; check?: (text: string, res: Response) => void; body?: string }> = [
    { name: "/healthz answers ok", path: "/healthz", status: 200, check: (t) => assert.deepEqual(JSON.parse(t), { status: "ok" }) },
    { name: "/readyz answers ready", path: "/readyz", status: 200 },
    {
      name: "/metrics answers the exposition with its content type",
      path: "/metrics",
      status: 200,
      check: (t, res) => {
        assert.equal(t, "up 1\n");
        assert.equal(res.headers.get("content-type"), "text/plain; version=0.0.4");
      },
    },
    {
      name: "a raw HTTP route streams a body larger than the REST limit",
      method: "PUT",
      path: "/blobs/b-1",
      body: "x".repeat(3 * 1024 * 1024),
      status: 200,
      check: (t) => assert.deepEqual(JSON.parse(t), { blob: "b-1", bytes: 3 * 1024 * 1024 }),
    },
    {
      name: "an ApiError thrown by a raw HTTP route becomes an envelope",
      method: "PUT",
      path: "/blobs/forbidden",
      body: "x",
      status: 410,
      check: (t) => assert.equal((JSON.parse(t) as { error: { code: string } }).error.code, "SIGNED_URL_EXPIRED"),
    },
    {
      name: "an unknown path outside /api/ is a 404 envelope",
      path: "/nowhere",
      status: 404,
      check: (t) => assert.equal((JSON.parse(t) as { error: { code: string } }).error.code, "ROUTE_NOT_FOUND"),
    },
    {
      name: "an unknown path under /api/ is a 404 envelope",
      path: "/api/v2/anything",
      status: 404,
      check: (t) => assert.equal((JSON.parse(t) as { error: { code: string } }).error.code, "ROUTE_NOT_FOUND"),
    },
  ];

  for (const tc of plainCases) {
    it(tc.name, async () => {
      const init: RequestInit = { method: tc.method ?? "GET" };
      if (tc.body !== undefined) init.body = tc.body;
      const res = await fetch(server.url + tc.path, init);
      const text = await res.text();
      assert.equal(res.status, tc.status, text);
      assert.match(res.headers.get("x-request-id") ?? "", /^[0-9a-f-]{36}$/);
      tc.check?.(text, res);
    });
  }

  it("/readyz answers 503 while not ready", async () => {
    ready = false;
    try {
      const res = await fetch(`${server.url}/readyz`);
      assert.equal(res.status, 503);
      assert.deepEqual(await res.json(), { status: "not_ready" });
    } finally {
      ready = true;
    }
  });

  it("a sane incoming x-request-id is kept and an odd one is replaced", async () => {
    const kept = await fetch(`${server.url}/healthz`, { headers: { "x-request-id": "req-123" } });
    assert.equal(kept.headers.get("x-request-id"), "req-123");
    const replaced = await fetch(`${server.url}/healthz`, { headers: { "x-request-id": "a b".repeat(100) } });
    assert.match(replaced.headers.get("x-request-id") ?? "", /^[0-9a-f-]{36}$/);
  });

  it("Connect and gRPC responses carry x-request-id too", async () => {
    for (const transport of [
      createConnectTransport({ baseUrl: server.url, httpVersion: "1.1" }),
      createGrpcTransport({ baseUrl: server.url }),
    ]) {
      let seen: string | null = null;
      await createClient(CustomerService, transport).getMeta({}, { onHeader: (h) => (seen = h.get("x-request-id")) });
      assert.match(seen ?? "", /^[0-9a-f-]{36}$/);
    }
  });

  it("logs one line per request without query strings or secrets", async () => {
    const before = logLines.length;
    await fetch(`${server.url}/healthz?signature=s3cret`, { headers: { "x-api-key": "k-s3cret", "x-request-id": "log-1" } });
    await new Promise((r) => setTimeout(r, 20));
    const lines = logLines.slice(before).filter((l) => l["request_id"] === "log-1");
    assert.equal(lines.length, 1);
    const line = lines[0]!;
    assert.equal(line["method"], "GET");
    assert.equal(line["path"], "/healthz");
    assert.equal(line["status"], 200);
    assert.equal(typeof line["duration_ms"], "number");
    assert.ok(!JSON.stringify(logLines).includes("s3cret"));
  });
});

describe("HTTP server close()", () => {
  it("resolves promptly with keep-alive, HTTP/2 and gRPC connections open, and refuses new ones", async () => {
    const server = await startHttpServer({
      port: 0,
      host: "127.0.0.1",
      connectRoutes: (router) => router.service(CustomerService, fakeCustomerService),
      rest: createRestTranscoder({ services: [restService(CustomerService, fakeCustomerService)] }),
      health: { live: () => true, ready: async () => true },
      logger: pino({ level: "silent" }),
    });
    const definition = protoLoader.loadSync("gpuagent/customer/v1/customer.proto", { keepCase: true, includeDirs: ["proto", ".buf-deps"] });
    const loaded = grpc.loadPackageDefinition(definition) as unknown as {
      gpuagent: { customer: { v1: { CustomerService: grpc.ServiceClientConstructor } } };
    };
    const grpcJs = new loaded.gpuagent.customer.v1.CustomerService(`127.0.0.1:${server.port}`, grpc.credentials.createInsecure()) as grpc.Client &
      Record<string, Function>;
    try {
      await fetch(`${server.url}/healthz`).then((r) => r.text());
      await createClient(CustomerService, createGrpcTransport({ baseUrl: server.url })).getMeta({});
      await new Promise<void>((resolve, reject) => grpcJs["GetMeta"]!.call(grpcJs, {}, (e: Error | null) => (e === null ? resolve() : reject(e))));
      const started = performance.now();
      await server.close();
      assert.ok(performance.now() - started < 1000, "close() waited for idle connections");
      await assert.rejects(fetch(`${server.url}/healthz`));
    } finally {
      grpcJs.close();
      await server.close();
    }
  });

  it("lets an in-flight request finish before the socket goes", async () => {
    let release: () => void = () => undefined;
    const gate = new Promise<void>((resolve) => (release = resolve));
    let entered: () => void = () => undefined;
    const inside = new Promise<void>((resolve) => (entered = resolve));
    const server = await startHttpServer({
      port: 0,
      host: "127.0.0.1",
      connectRoutes: () => undefined,
      rest: createRestTranscoder({ services: [] }),
      httpRoutes: [
        {
          method: "GET",
          pattern: /^\/slow$/,
          async handle(_req, res) {
            entered();
            await gate;
            res.end("done");
          },
        },
      ],
      health: { live: () => true, ready: async () => true },
      logger: pino({ level: "silent" }),
    });
    const pending = fetch(`${server.url}/slow`).then((r) => r.text());
    await inside;
    const closing = server.close();
    release();
    assert.equal(await pending, "done");
    await closing;
  });
});
