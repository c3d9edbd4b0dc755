import assert from "node:assert/strict";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { createRestTranscoder, restService } from "../../../src/api/rest/transcoder.ts";
import { CustomerService } from "../../../src/gen/gpuagent/customer/v1/customer_pb.ts";
import { fakeApiKey, fakeCustomerService } from "./fake-customer-service.ts";

interface Case {
  name: string;
  method?: string;
  path: string;
  headers?: Record<string, string>;
  body?: string | Uint8Array;
  status: number;
  /** Expected error code of the envelope. */
  code?: string;
  /** Checks on the parsed JSON (or text) answer. */
  check?: (body: unknown, res: Response) => void;
}

const auth = { "x-api-key": fakeApiKey, "content-type": "application/json" };

const cases: Case[] = [
  {
    name: "a GET rule answers the whole response message with proto field names",
    path: "/api/v1/customer/meta",
    status: 200,
    check: (body) => assert.deepEqual(body, { service: "gpu-agent", api_version: "v1", build: "rid-test" }),
  },
  {
    name: "response headers the handler set reach the REST client",
    path: "/api/v1/customer/meta",
    status: 200,
    check: (_b, res) => assert.equal(res.headers.get("x-ratelimit-remaining"), "59"),
  },
  {
    name: "response_body answers one field, and default values are emitted",
    path: "/api/v1/customer/training-jobs/job-3",
    status: 200,
    check: (body) => {
      const job = body as Record<string, unknown>;
      assert.equal(job["id"], "job-3");
      assert.equal(job["progress"], 0);
      assert.equal(job["error"], "");
      assert.equal(job["required_vram_mb"], 0);
      assert.equal(job["projected_cost_credits"], "0");
      assert.deepEqual(job["metrics"], {});
      assert.equal(job["created_at"], "2024-01-03T00:00:00Z");
    },
  },
  {
    name: "a percent-encoded path variable is decoded",
    path: "/api/v1/customer/training-jobs/job%2D1",
    status: 200,
    check: (body) => assert.equal((body as { id: string }).id, "job-1"),
  },
  {
    name: "an ApiError from the handler becomes its status and envelope",
    path: "/api/v1/customer/training-jobs/nope",
    status: 404,
    code: "JOB_NOT_FOUND",
    check: (body) => assert.equal(errorOf(body).message, "training job nope not found"),
  },
  {
    name: "a POST rule of a Create rpc answers 201 and passes headers to the handler",
    method: "POST",
    path: "/api/v1/customer/training-jobs",
    headers: { ...auth, "idempotency-key": "abc" },
    body: JSON.stringify({ name: "n", dataset_id: "ds-1", required_vram_mb: 8192 }),
    status: 201,
    check: (body) => {
      const job = body as Record<string, unknown>;
      assert.equal(job["id"], "job-abc");
      assert.equal(job["dataset_id"], "ds-1");
      assert.equal(job["required_vram_mb"], 8192);
      assert.equal(job["sensitivity"], "public");
    },
  },
  {
    name: "camelCase JSON names are accepted in the body",
    method: "POST",
    path: "/api/v1/customer/training-jobs",
    headers: auth,
    body: JSON.stringify({ datasetId: "ds-2", trainingPackageId: "tp-1" }),
    status: 201,
    check: (body) => assert.equal((body as Record<string, unknown>)["training_package_id"], "tp-1"),
  },
  {
    name: "an empty POST body is an empty object",
    method: "POST",
    path: "/api/v1/customer/training-jobs",
    headers: { "x-api-key": fakeApiKey },
    status: 201,
    check: (body) => assert.equal((body as Record<string, unknown>)["id"], "job-none"),
  },
  {
    name: "a missing API key is the handler's 401",
    method: "POST",
    path: "/api/v1/customer/training-jobs",
    headers: { "content-type": "application/json" },
    body: "{}",
    status: 401,
    code: "API_KEY_INVALID",
  },
  {
    name: "an unknown body field is 400 naming the field",
    method: "POST",
    path: "/api/v1/customer/training-jobs",
    headers: auth,
    body: JSON.stringify({ name: "n", gpu_count: 2 }),
    status: 400,
    code: "VALIDATION_FAILED",
    check: (body) => {
      assert.match(errorOf(body).message, /gpu_count/);
      assert.deepEqual(errorOf(body).details, { field: "gpu_count" });
    },
  },
  {
    name: "a body field of the wrong type is 400 naming the field",
    method: "POST",
    path: "/api/v1/customer/training-jobs",
    headers: auth,
    body: JSON.stringify({ required_vram_mb: "lots" }),
    status: 400,
    code: "VALIDATION_FAILED",
    check: (body) => {
      assert.match(errorOf(body).message, /required_vram_mb/);
      assert.deepEqual(errorOf(body).details, { field: "required_vram_mb" });
    },
  },
  {
    name: "malformed JSON is 400",
    method: "POST",
    path: "/api/v1/customer/training-jobs",
    headers: auth,
    body: "{not json",
    status: 400,
    code: "VALIDATION_FAILED",
    check: (body) => assert.match(errorOf(body).message, /not valid JSON/),
  },
  {
    name: "a JSON array body is 400",
    method: "POST",
    path: "/api/v1/customer/training-jobs",
    headers: auth,
    body: "[1,2]",
    status: 400,
    code: "VALIDATION_FAILED",
  },
  {
    name: "a body with a non-JSON content type is 415",
    method: "POST",
    path: "/api/v1/customer/training-jobs",
    headers: { "x-api-key": fakeApiKey, "content-type": "text/plain" },
    body: "name=n",
    status: 415,
    code: "UNSUPPORTED_MEDIA_TYPE",
  },
  {
    name: "a body over the limit is 413",
    method: "POST",
    path: "/api/v1/customer/training-jobs",
    headers: auth,
    body: JSON.stringify({ name: "x".repeat(5000) }),
    status: 413,
    code: "PAYLOAD_TOO_LARGE",
  },
  {
    name: "query parameters are coerced by field type",
    path: "/api/v1/customer/training-jobs?limit=1&status=running",
    status: 200,
    check: (body) => {
      const list = body as { data: Array<{ id: string }>; page: Record<string, unknown> };
      assert.deepEqual(list.data.map((j) => j.id), ["job-1"]);
      assert.deepEqual(list.page, { limit: 1, next_cursor: "", has_more: true });
    },
  },
  {
    name: "a query parameter of the wrong type is 400 naming the field",
    path: "/api/v1/customer/training-jobs?limit=many",
    status: 400,
    code: "VALIDATION_FAILED",
    check: (body) => assert.match(errorOf(body).message, /limit/),
  },
  {
    name: "an unknown query parameter is 400 naming it",
    path: "/api/v1/customer/training-jobs?stauts=running",
    status: 400,
    code: "VALIDATION_FAILED",
    check: (body) => assert.match(errorOf(body).message, /stauts/),
  },
  {
    name: "a non-repeated query parameter given twice is 400",
    path: "/api/v1/customer/training-jobs?limit=1&limit=2",
    status: 400,
    code: "VALIDATION_FAILED",
  },
  {
    name: "an HttpBody response_body is written raw with its content type",
    path: "/api/v1/customer/usage/export.csv?date_from=2024-01-01",
    status: 200,
    check: (body, res) => {
      // A server-streaming rpc: the chunks of every message, in order, under the first one's content type.
      assert.equal(res.headers.get("content-type"), "text/csv; charset=utf-8");
      assert.equal(res.headers.get("content-disposition"), 'attachment; filename="usage.csv"', "handler headers precede the first byte");
      assert.equal(res.headers.get("content-length"), null);
      assert.equal(body, "day,credits\n2024-01-01,5\n");
    },
  },
  {
    name: "a streamed rpc failing before its first chunk keeps the headers it set",
    path: "/api/v1/customer/usage/export.csv?date_from=1999-01-01",
    status: 400,
    code: "EXPORT_RANGE_TOO_LARGE",
    check: (_b, res) => assert.equal(res.headers.get("content-disposition"), 'attachment; filename="usage.csv"'),
  },
  {
    name: "an error from an HttpBody rpc is still a JSON envelope",
    path: "/api/v1/customer/usage/export.csv?date_from=1999-01-01",
    status: 400,
    code: "EXPORT_RANGE_TOO_LARGE",
  },
  {
    name: "a {var=**} template captures several decoded segments",
    method: "POST",
    path: "/api/v1/customer/jobs/image-api/v%32",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ prompt: "a cat", steps: 20 }),
    status: 410,
    code: "LEGACY_DEPRECATED",
    check: (body) => assert.match(errorOf(body).message, /\/jobs\/image-api\/v2\)/),
  },
  {
    name: "a {var=**} template also matches zero segments",
    method: "POST",
    path: "/api/v1/customer/jobs",
    status: 410,
    code: "LEGACY_DEPRECATED",
  },
  {
    name: "ApiError headers, handler headers and details reach the client",
    method: "POST",
    path: "/api/v1/customer/training-jobs/job-limited/cancel",
    headers: { "content-type": "application/json" },
    body: "{}",
    status: 429,
    code: "RATE_LIMITED",
    check: (body, res) => {
      assert.equal(res.headers.get("retry-after"), "30");
      assert.equal(res.headers.get("x-ratelimit-remaining"), "0");
      assert.deepEqual(errorOf(body).details, { limit: 5 });
      assert.equal(errorOf(body).message, "too many cancellations");
    },
  },
  {
    name: "an unexpected handler error is a 500 that leaks nothing",
    path: "/api/v1/customer/config",
    status: 500,
    code: "INTERNAL_ERROR",
    check: (body) => assert.equal(errorOf(body).message, "internal error"),
  },
  {
    name: "an rpc missing from the partial implementation is 501",
    method: "POST",
    path: "/api/v1/customer/auth/login",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ email: "a@b.c", password: "x" }),
    status: 501,
    code: "NOT_IMPLEMENTED",
  },
  {
    name: "a known path with another method is 405 with Allow",
    method: "DELETE",
    path: "/api/v1/customer/training-jobs",
    status: 405,
    code: "METHOD_NOT_ALLOWED",
    check: (_b, res) => assert.equal(res.headers.get("allow"), "GET, POST"),
  },
  {
    name: "an unknown path under /api/ is 404 ROUTE_NOT_FOUND",
    path: "/api/v1/customer/nothing-here",
    status: 404,
    code: "ROUTE_NOT_FOUND",
  },
  {
    name: "a path outside /api/ falls through to the caller",
    path: "/somewhere-else",
    status: 418,
  },
];

function errorOf(body: unknown): { code: string; message: string; request_id: string; details?: unknown } {
  return (body as { error: { code: string; message: string; request_id: string; details?: unknown } }).error;
}

describe("REST transcoder", () => {
  let server: http.Server;
  let base: string;
  const transcoder = createRestTranscoder({
    services: [restService(CustomerService, fakeCustomerService)],
    maxBodyBytes: 1024,
  });

  before(async () => {
    server = http.createServer((req, res) => {
      const id = typeof req.headers["x-request-id"] === "string" ? req.headers["x-request-id"] : "rid-test";
      void transcoder.handle(req, res, id).then((handled) => {
        if (handled) return;
        res.statusCode = 418;
        res.end("fall through");
      });
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });

  after(async () => {
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });

  it("compiles one route per annotated rpc of the service", () => {
    assert.equal(transcoder.routes.length, CustomerService.methods.length);
    assert.ok(transcoder.routes.includes("GET /api/v1/customer/training-jobs/{id}"));
  });

  it("destroys a streamed response that fails after its first chunk, so it cannot look complete", async () => {
    const res = await fetch(`${base}/api/v1/customer/usage/export.csv?date_from=2000-01-01`);
    assert.equal(res.status, 200, "the status left with the first chunk");
    await assert.rejects(res.text(), "the body ends in an error, not a clean end");
  });

  it("streams through router interceptors too, when they are configured", async () => {
    const seen: string[] = [];
    const intercepted = createRestTranscoder({
      services: [restService(CustomerService, fakeCustomerService)],
      interceptors: [(next) => async (req) => {
        seen.push(req.method.name);
        return next(req);
      }],
    });
    const other = http.createServer((req, res) => void intercepted.handle(req, res, "rid-i"));
    await new Promise<void>((resolve) => other.listen(0, "127.0.0.1", resolve));
    try {
      const url = `http://127.0.0.1:${(other.address() as AddressInfo).port}/api/v1/customer/usage/export.csv`;
      const ok = await fetch(`${url}?date_from=2024-01-01`);
      assert.equal(ok.status, 200);
      assert.equal(ok.headers.get("content-type"), "text/csv; charset=utf-8");
      assert.equal(ok.headers.get("content-disposition"), 'attachment; filename="usage.csv"');
      assert.equal(await ok.text(), "day,credits\n2024-01-01,5\n");
      const failed = await fetch(`${url}?date_from=1999-01-01`);
      assert.equal(failed.status, 400);
      assert.equal(errorOf(await failed.json()).code, "EXPORT_RANGE_TOO_LARGE");
      const cut = await fetch(`${url}?date_from=2000-01-01`);
      await assert.rejects(cut.text());
      assert.deepEqual(seen, ["ExportUsageCsv", "ExportUsageCsv", "ExportUsageCsv"]);
    } finally {
      other.closeAllConnections();
      await new Promise<void>((resolve) => other.close(() => resolve()));
    }
  });

  for (const tc of cases) {
    it(tc.name, async () => {
      const init: RequestInit = { method: tc.method ?? "GET", headers: tc.headers ?? {} };
      if (tc.body !== undefined) init.body = tc.body;
      const res = await fetch(base + tc.path, init);
      const text = await res.text();
      assert.equal(res.status, tc.status, text);
      const isJson = res.headers.get("content-type")?.startsWith("application/json") === true;
      const body: unknown = isJson ? JSON.parse(text) : text;
      if (tc.status !== 418) assert.equal(res.headers.get("x-request-id"), "rid-test");
      if (tc.code !== undefined) {
        assert.equal(errorOf(body).code, tc.code);
        assert.equal(errorOf(body).request_id, "rid-test");
      }
      tc.check?.(body, res);
    });
  }

  it("a declared body over the limit is refused before it is read", async () => {
    const res = await fetch(`${base}/api/v1/customer/training-jobs`, {
      method: "POST",
      headers: auth,
      body: JSON.stringify({ name: "x".repeat(2 * 1024 * 1024) }),
    });
    assert.equal(res.status, 413);
    assert.equal(errorOf(await res.json()).code, "PAYLOAD_TOO_LARGE");
  });

  it("a path variable wins over a body field naming the same field", async () => {
    const res = await fetch(`${base}/api/v1/customer/training-jobs/job-2/cancel`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ id: "job-1" }),
    });
    assert.equal(res.status, 200);
    const job = (await res.json()) as { id: string; status: string };
    assert.deepEqual([job.id, job.status], ["job-2", "cancelled"]);
  });
});
