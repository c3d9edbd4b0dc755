import assert from "node:assert/strict";
import { CliApiError, createClient, parseRetryAfter } from "../../src/cli/client.ts";
import { runCli } from "../../src/cli/program.ts";
import { API_KEY, captureIo, depsFor, instantClock, startFakeApi, type FakeApi } from "./fake-api.ts";

describe("gpuctl REST client", () => {
  let api: FakeApi;
  beforeEach(async () => {
    api = await startFakeApi();
  });
  afterEach(async () => {
    await api.close();
  });

  it("retries a 429 after the Retry-After it was given", async () => {
    api.rateLimit = { remaining: 2, retryAfter: "2" };
    const clock = instantClock();
    const client = createClient({ baseUrl: api.url, apiKey: API_KEY, clock });
    const page = await client.listDatasets({});
    assert.deepEqual(page.data, []);
    assert.deepEqual(clock.sleeps, [2000, 2000]);
    assert.equal(api.seen.length, 3);
  });

  it("gives up after three retries and surfaces RATE_LIMITED", async () => {
    api.rateLimit = { remaining: 10, retryAfter: "1" };
    const clock = instantClock();
    const client = createClient({ baseUrl: api.url, apiKey: API_KEY, clock });
    await assert.rejects(client.listDatasets({}), (e: unknown) => e instanceof CliApiError && e.status === 429 && e.code === "RATE_LIMITED");
    assert.equal(api.seen.length, 4);
    assert.deepEqual(clock.sleeps, [1000, 1000, 1000]);
  });

  it("caps a huge Retry-After so the CLI is not parked for hours", async () => {
    api.rateLimit = { remaining: 1, retryAfter: "86400" };
    const clock = instantClock();
    const client = createClient({ baseUrl: api.url, apiKey: API_KEY, clock, maxRetryDelayMs: 5000 });
    await client.listDatasets({});
    assert.deepEqual(clock.sleeps, [5000]);
  });

  it("retries a rate-limited upload with a fresh body stream", async () => {
    const cap = captureIo();
    const { writeFile, mkdtemp, rm } = await import("node:fs/promises");
    const { tmpdir } = await import("node:os");
    const path = await import("node:path");
    const dir = await mkdtemp(path.join(tmpdir(), "gpuctl-rl-"));
    try {
      const file = path.join(dir, "a.csv");
      await writeFile(file, "a,b\n1,2\n");
      // The create passes; the PUT is rate limited once.
      const deps = depsFor(api, cap);
      const realFetch = fetch;
      deps.fetch = async (input, init) => {
        if (init?.method === "PUT") api.rateLimit = { remaining: api.seen.some((s) => s.method === "PUT") ? 0 : 1, retryAfter: "1" };
        return realFetch(input, init);
      };
      assert.equal(await runCli(["datasets", "upload", file, "--json"], deps), 0, cap.err());
      assert.equal(api.seen.filter((s) => s.method === "PUT").length, 2);
      assert.equal((JSON.parse(cap.out()) as { status: string }).status, "ready");
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it("surfaces the error envelope's code, message and request id on stderr with exit code 1", async () => {
    api.failNext = { status: 402, code: "CREDIT_INSUFFICIENT", message: "Customer credit balance below projected cost" };
    const cap = captureIo();
    const code = await runCli(["jobs", "create", "--dataset", "d", "--package", "p"], depsFor(api, cap));
    assert.equal(code, 1);
    assert.equal(cap.out(), "");
    assert.equal(
      cap.err(),
      "error: Customer credit balance below projected cost (code CREDIT_INSUFFICIENT, request req_credit_insufficient)\n",
    );
  });

  it("writes the error envelope as JSON on stderr under --json", async () => {
    const cap = captureIo();
    const code = await runCli(["jobs", "get", "job_missing", "--json"], depsFor(api, cap));
    assert.equal(code, 1);
    assert.equal(cap.out(), "");
    assert.deepEqual(JSON.parse(cap.err()), {
      error: { code: "JOB_NOT_FOUND", message: "Job id absent or not yours", request_id: "req_job_not_found", status: 404 },
    });
  });

  it("reports a missing API key as a usage error", async () => {
    const cap = captureIo();
    const deps = depsFor(api, cap);
    deps.env = { GPU_AGENT_URL: api.url };
    assert.equal(await runCli(["datasets", "list"], deps), 2);
    assert.match(cap.err(), /API_KEY_MISSING/);
  });

  it("prefers --url and --api-key over the environment", async () => {
    const cap = captureIo();
    const deps = depsFor(api, cap);
    deps.env = { GPU_AGENT_URL: "http://127.0.0.1:1", GPU_AGENT_API_KEY: "wrong" };
    assert.equal(await runCli(["--url", api.url, "--api-key", API_KEY, "datasets", "list", "--json"], deps), 0, cap.err());
  });

  const retryAfterCases = [
    { name: "reads delta-seconds", value: "3", want: 3000 },
    { name: "reads an HTTP date relative to now", value: "Thu, 01 Jan 2026 00:00:05 GMT", want: 5000 },
    { name: "ignores garbage", value: "soon", want: undefined },
    { name: "ignores an absent header", value: null, want: undefined },
  ];
  for (const tc of retryAfterCases) {
    it(`Retry-After parsing ${tc.name}`, () => {
      assert.equal(parseRetryAfter(tc.value, Date.UTC(2026, 0, 1)), tc.want);
    });
  }
});
