/**
 * Rate-limit headers that tell the truth, over the real control plane: every authenticated customer
 * answer (success and error; REST, Connect and gRPC) describes the limit that applies to it; the
 * general per-key limit refuses with 429 RATE_LIMITED and Retry-After; CreateTrainingJob describes
 * the job-creation limit (10/min), also on its 429.
 */
import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import type { Transport } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport } from "@connectrpc/connect-node";
import { CustomerService } from "../../src/gen/gpuagent/customer/v1/customer_pb.ts";
import type { TestControlPlane } from "../support/control-plane.ts";
import { createCustomer, request, uploadResource } from "../support/control-plane.ts";
import { examplePackageZip, startPlane } from "./plane.ts";

const example = join(import.meta.dirname, "..", "..", "examples", "tiny-mlp");
const limitNames = ["x-ratelimit-limit", "x-ratelimit-remaining", "x-ratelimit-reset"] as const;

function limitHeaders(h: Headers): Record<string, string | null> {
  return Object.fromEntries([...limitNames, "x-ratelimit-scope", "retry-after"].map((n) => [n, h.get(n)]));
}
const code = (body: Record<string, unknown>) => (body["error"] as Record<string, string> | undefined)?.["code"];

describe("rate-limit headers and the general request limit", function () {
  this.timeout(120_000);
  let cp: TestControlPlane;
  const perMinute = 8;

  before(async () => {
    cp = await startPlane({ requestLimit: { requestsPerMinute: perMinute } });
  });
  after(async () => {
    await cp?.stop();
  });

  it("REST: counts down on success and on errors, then answers 429 RATE_LIMITED with Retry-After", async () => {
    const { apiKey } = await createCustomer(cp);
    const auth = { "x-api-key": apiKey };
    const before = Math.floor(Date.now() / 1000);
    const ok = await request(cp, "GET", "/api/v1/customer/datasets", { headers: auth });
    assert.equal(ok.status, 200);
    const h = limitHeaders(ok.headers);
    assert.equal(h["x-ratelimit-limit"], String(perMinute));
    assert.equal(h["x-ratelimit-remaining"], String(perMinute - 1));
    assert.equal(h["x-ratelimit-scope"], "requests");
    const reset = Number(h["x-ratelimit-reset"]);
    // One token missing refills in 60/8 = 7.5 s.
    assert.ok(reset >= before + 7 && reset <= before + 10, `reset ${reset} vs now ${before}`);
    assert.equal(h["retry-after"], null);

    // Errors after authentication count too, and say so.
    const missing = await request(cp, "GET", "/api/v1/customer/training-jobs/00000000-0000-4000-8000-000000000000", { headers: auth });
    assert.equal(missing.status, 404);
    assert.equal(missing.headers.get("x-ratelimit-remaining"), String(perMinute - 2));
    const invalid = await request(cp, "GET", "/api/v1/customer/training-jobs?status=nope", { headers: auth });
    assert.equal(invalid.status, 400);
    assert.equal(invalid.headers.get("x-ratelimit-remaining"), String(perMinute - 3));

    const remaining: number[] = [];
    let refused: Awaited<ReturnType<typeof request>> | undefined;
    for (let i = 0; i < perMinute + 2 && refused === undefined; i++) {
      const res = await request(cp, "GET", "/api/v1/customer/datasets", { headers: auth });
      if (res.status === 429) refused = res;
      else remaining.push(Number(res.headers.get("x-ratelimit-remaining")));
    }
    assert.deepEqual(remaining, [4, 3, 2, 1, 0]);
    assert.ok(refused !== undefined);
    assert.equal(code(refused.body), "RATE_LIMITED");
    const r = limitHeaders(refused.headers);
    assert.equal(r["x-ratelimit-remaining"], "0");
    assert.equal(r["x-ratelimit-limit"], String(perMinute));
    const retryAfter = Number(r["retry-after"]);
    assert.ok(retryAfter >= 1 && retryAfter <= 8, `Retry-After ${retryAfter}`);
    assert.ok(Number(r["x-ratelimit-reset"]) >= Math.floor(Date.now() / 1000) + retryAfter - 1);

    // Another API key of another customer is not affected.
    const other = await createCustomer(cp);
    assert.equal((await request(cp, "GET", "/api/v1/customer/datasets", { headers: { "x-api-key": other.apiKey } })).status, 200);
  });

  it("public rpcs and unauthenticated answers take from one bucket per peer address and say so", async () => {
    const config = await request(cp, "GET", "/api/v1/customer/config");
    assert.equal(config.status, 200);
    assert.equal(config.headers.get("x-ratelimit-limit"), String(perMinute));
    const before = Number(config.headers.get("x-ratelimit-remaining"));
    const anonymous = await request(cp, "GET", "/api/v1/customer/datasets");
    assert.equal(anonymous.status, 401);
    assert.equal(anonymous.headers.get("x-ratelimit-limit"), String(perMinute));
    assert.equal(Number(anonymous.headers.get("x-ratelimit-remaining")), before - 1);
    // A client cannot pick another bucket by sending the header the server sets.
    const spoofed = await request(cp, "GET", "/api/v1/customer/meta", { headers: { "x-gpu-agent-peer-address": "203.0.113.9" } });
    assert.equal(Number(spoofed.headers.get("x-ratelimit-remaining")), before - 2);
  });

  for (const [protocol, transport] of [
    ["Connect", (url: string) => createConnectTransport({ baseUrl: url, httpVersion: "1.1" })],
    ["gRPC", (url: string) => createGrpcTransport({ baseUrl: url })],
  ] as [string, (url: string) => Transport][]) {
    it(`${protocol}: the same headers on success, on errors and on the 429`, async () => {
      const { apiKey } = await createCustomer(cp);
      const client = createClient(CustomerService, transport(cp.url));
      const seen: Headers[] = [];
      const options = { headers: { "x-api-key": apiKey }, onHeader: (h: Headers) => seen.push(h) };
      await client.listDatasets({}, options);
      assert.equal(seen[0]?.get("x-ratelimit-limit"), String(perMinute));
      assert.equal(seen[0]?.get("x-ratelimit-remaining"), String(perMinute - 1));
      try {
        await client.getDataset({ id: "00000000-0000-4000-8000-000000000000" }, options);
        assert.fail("expected NotFound");
      } catch (error) {
        assert.ok(error instanceof ConnectError);
        assert.equal(error.code, Code.NotFound);
        assert.equal(error.metadata.get("x-ratelimit-remaining"), String(perMinute - 2));
      }
      let limited: ConnectError | undefined;
      for (let i = 0; i < perMinute && limited === undefined; i++) {
        try {
          await client.listDatasets({}, options);
        } catch (error) {
          assert.ok(error instanceof ConnectError);
          limited = error;
        }
      }
      assert.ok(limited !== undefined, "the limit refused a call");
      assert.equal(limited.code, Code.ResourceExhausted);
      assert.equal(limited.metadata.get("x-gpu-agent-error-code"), "RATE_LIMITED");
      assert.equal(limited.metadata.get("x-ratelimit-remaining"), "0");
      assert.ok(Number(limited.metadata.get("retry-after")) >= 1);
    });
  }
});

describe("CreateTrainingJob describes the job-creation limit", function () {
  this.timeout(120_000);
  let cp: TestControlPlane;

  before(async () => {
    cp = await startPlane();
  });
  after(async () => {
    await cp?.stop();
  });

  it("on success, on a validation error and on its 429, consistently with Retry-After", async () => {
    const { apiKey } = await createCustomer(cp, 1_000_000);
    const auth = { "x-api-key": apiKey };
    const dataset = await uploadResource(cp, apiKey, "datasets", "d", await readFile(join(example, "dataset.csv")), { format: "csv" });
    const pkg = await uploadResource(cp, apiKey, "training-packages", "p", await examplePackageZip(), { entrypoint: "train.py" });
    const body = { name: "limits", dataset_id: dataset["id"], training_package_id: pkg["id"], required_vram_mb: 1000, max_runtime_seconds: 60 };

    const bad = await request(cp, "POST", "/api/v1/customer/training-jobs", { headers: auth, body: { ...body, sensitivity: "top_secret" } });
    assert.equal(bad.status, 400);
    assert.deepEqual(
      [bad.headers.get("x-ratelimit-limit"), bad.headers.get("x-ratelimit-remaining"), bad.headers.get("x-ratelimit-scope")],
      ["10", "10", "job_creations"],
    );

    for (let i = 0; i < 10; i++) {
      const res = await request(cp, "POST", "/api/v1/customer/training-jobs", { headers: auth, body: { ...body, name: `job-${i}` } });
      assert.equal(res.status, 201, JSON.stringify(res.body));
      assert.equal(res.headers.get("x-ratelimit-limit"), "10");
      assert.equal(res.headers.get("x-ratelimit-remaining"), String(9 - i));
      assert.equal(res.headers.get("x-ratelimit-scope"), "job_creations");
      // Cancel at once so the 3-active-jobs limit stays out of the way of the per-minute one.
      const cancelled = await request(cp, "POST", `/api/v1/customer/training-jobs/${res.body["id"] as string}/cancel`, { headers: auth, body: {} });
      assert.equal(cancelled.status, 200);
    }
    const over = await request(cp, "POST", "/api/v1/customer/training-jobs", { headers: auth, body: { ...body, name: "one-too-many" } });
    assert.equal(over.status, 429, JSON.stringify(over.body));
    assert.equal(code(over.body), "RATE_LIMITED");
    const h = limitHeaders(over.headers);
    assert.equal(h["x-ratelimit-limit"], "10");
    assert.equal(h["x-ratelimit-remaining"], "0");
    assert.equal(h["x-ratelimit-scope"], "job_creations");
    const retryAfter = Number(h["retry-after"]);
    const resetIn = Number(h["x-ratelimit-reset"]) - Date.now() / 1000;
    assert.ok(retryAfter >= 1 && retryAfter <= 60, `Retry-After ${retryAfter}`);
    assert.ok(Math.abs(resetIn - retryAfter) <= 2, `Reset is ${resetIn.toFixed(1)} s away, Retry-After says ${retryAfter} s`);
  });
});
