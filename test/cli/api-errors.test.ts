/**
 * gpuctl's calls go through the SDK: its 429 policy (on the CLI's injected clock), its typed
 * errors (seed code, message and request id on stderr), and the connection settings.
 */
import assert from "node:assert/strict";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { runCli } from "../../src/cli/program.ts";
import { API_KEY, callsOf, captureIo, depsFor, instantClock, startFakeApi, type FakeApi } from "./fake-api.ts";

describe("gpuctl over the SDK: retries, errors and settings", () => {
  let api: FakeApi;
  beforeEach(async () => {
    api = await startFakeApi();
  });
  afterEach(async () => {
    await api.close();
  });

  it("retries a 429 after the Retry-After it was given, waiting on the CLI's clock", async () => {
    api.rateLimit = { remaining: 2, retryAfter: "2" };
    const clock = instantClock();
    const cap = captureIo();
    assert.equal(await runCli(["datasets", "list", "--json"], depsFor(api, cap, clock)), 0, cap.err());
    assert.deepEqual((JSON.parse(cap.out()) as { data: unknown[] }).data, []);
    assert.deepEqual(clock.sleeps, [2000, 2000]);
    assert.equal(callsOf(api, "ListDatasets").length, 3);
  });

  it("gives up after three retries and surfaces RATE_LIMITED with exit code 1", async () => {
    api.rateLimit = { remaining: 10, retryAfter: "1" };
    const clock = instantClock();
    const cap = captureIo();
    assert.equal(await runCli(["datasets", "list", "--json"], depsFor(api, cap, clock)), 1);
    assert.deepEqual(JSON.parse(cap.err()), { error: { code: "RATE_LIMITED", message: "slow down", request_id: "req_rate_limited", status: 429 } });
    assert.equal(api.calls.length, 4);
    assert.deepEqual(clock.sleeps, [1000, 1000, 1000]);
  });

  it("caps a huge Retry-After so the CLI is not parked for hours", async () => {
    api.rateLimit = { remaining: 1, retryAfter: "86400" };
    const clock = instantClock();
    const cap = captureIo();
    assert.equal(await runCli(["datasets", "list"], depsFor(api, cap, clock)), 0, cap.err());
    assert.deepEqual(clock.sleeps, [30_000]);
  });

  it("retries a rate-limited upload with a fresh body stream", async () => {
    const cap = captureIo();
    const dir = await mkdtemp(path.join(tmpdir(), "gpuctl-rl-"));
    try {
      const file = path.join(dir, "a.csv");
      await writeFile(file, "a,b\n1,2\n");
      // The create passes; the first PUT is rate limited.
      const deps = depsFor(api, cap);
      const realFetch = fetch;
      deps.fetch = async (input, init) => {
        if (init?.method === "PUT") api.rateLimit = { remaining: api.transfers.some((t) => t.method === "PUT") ? 0 : 1, retryAfter: "1" };
        return realFetch(input, init);
      };
      assert.equal(await runCli(["datasets", "upload", file, "--json"], deps), 0, cap.err());
      assert.equal(api.transfers.filter((t) => t.method === "PUT").length, 2);
      assert.equal([...api.uploads.values()][0]?.bytes?.toString(), "a,b\n1,2\n");
      assert.equal((JSON.parse(cap.out()) as { status: string }).status, "ready");
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it("surfaces the seed code, message and request id on stderr with exit code 1", async () => {
    api.failNext = { code: "CREDIT_INSUFFICIENT", message: "Customer credit balance below projected cost" };
    const cap = captureIo();
    const code = await runCli(["jobs", "create", "--dataset", "d", "--package", "p"], depsFor(api, cap));
    assert.equal(code, 1);
    assert.equal(cap.out(), "");
    assert.equal(
      cap.err(),
      "error: Customer credit balance below projected cost (code CREDIT_INSUFFICIENT, request req_credit_insufficient)\n",
    );
  });

  it("writes the error as JSON on stderr under --json", async () => {
    const cap = captureIo();
    const code = await runCli(["jobs", "get", "job_missing", "--json"], depsFor(api, cap));
    assert.equal(code, 1);
    assert.equal(cap.out(), "");
    assert.deepEqual(JSON.parse(cap.err()), {
      error: { code: "JOB_NOT_FOUND", message: "Job id absent or not yours", request_id: "req_job_not_found", status: 404 },
    });
  });

  it("reports a server that cannot be reached as CONNECTION_FAILED", async () => {
    const cap = captureIo();
    const deps = depsFor(api, cap);
    deps.env["GPU_AGENT_URL"] = "http://127.0.0.1:1";
    assert.equal(await runCli(["jobs", "get", "job_1"], deps), 1);
    assert.match(cap.err(), /\(code CONNECTION_FAILED\)$/m);
  });

  it("reports a missing API key as a usage error without calling the API", async () => {
    const cap = captureIo();
    const deps = depsFor(api, cap);
    deps.env = { GPU_AGENT_URL: api.url };
    assert.equal(await runCli(["datasets", "list"], deps), 2);
    assert.match(cap.err(), /API_KEY_MISSING/);
    assert.equal(api.calls.length, 0);
  });

  it("reports an invalid URL as a usage error", async () => {
    const cap = captureIo();
    assert.equal(await runCli(["--url", "not a url", "jobs", "list"], depsFor(api, cap)), 2);
    assert.match(cap.err(), /INVALID_URL/);
  });

  it("prefers --url and --api-key over the environment", async () => {
    const cap = captureIo();
    const deps = depsFor(api, cap);
    deps.env = { GPU_AGENT_URL: "http://127.0.0.1:1", GPU_AGENT_API_KEY: "wrong" };
    assert.equal(await runCli(["--url", api.url, "--api-key", API_KEY, "datasets", "list", "--json"], deps), 0, cap.err());
    assert.equal(api.calls[0]?.headers.get("x-api-key"), API_KEY);
  });
});
