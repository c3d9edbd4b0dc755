import assert from "node:assert/strict";
import { runCli } from "../../src/cli/program.ts";
import { callsOf, captureIo, depsFor, instantClock, startFakeApi, type FakeApi } from "./fake-api.ts";

describe("gpuctl jobs", () => {
  let api: FakeApi;
  beforeEach(async () => {
    api = await startFakeApi();
  });
  afterEach(async () => {
    await api.close();
  });

  it("creates a job with an Idempotency-Key header and the seed body", async () => {
    const cap = captureIo();
    const code = await runCli(
      [
        "jobs", "create", "--dataset", "ds_9", "--package", "pkg_9", "--name", "tiny-mlp-fine-tune",
        "--sensitivity", "low_sensitive", "--idempotency-key", "client-uuid-12345678", "--json",
      ],
      depsFor(api, cap),
    );
    assert.equal(code, 0, cap.err());
    const [post] = callsOf(api, "CreateTrainingJob");
    assert.ok(post);
    assert.equal(post.headers.get("idempotency-key"), "client-uuid-12345678");
    assert.deepEqual(post.body, {
      name: "tiny-mlp-fine-tune",
      dataset_id: "ds_9",
      training_package_id: "pkg_9",
      required_vram_mb: 8000,
      required_disk_mb: 1024,
      max_runtime_seconds: 600,
      sensitivity: "low_sensitive",
    });
    assert.equal((JSON.parse(cap.out()) as { id: string }).id, "job_1");
  });

  it("sends a random UUID as the Idempotency-Key when none is given", async () => {
    const cap = captureIo();
    const code = await runCli(["jobs", "create", "--dataset", "d", "--package", "p"], depsFor(api, cap));
    assert.equal(code, 0, cap.err());
    const [post] = callsOf(api, "CreateTrainingJob");
    assert.equal(post?.headers.get("idempotency-key"), "11111111-2222-4333-8444-555555555555");
    assert.equal(post?.body["name"], "job-11111111");
  });

  it("rejects an unknown sensitivity tier as a usage error", async () => {
    const cap = captureIo();
    const code = await runCli(["jobs", "create", "--dataset", "d", "--package", "p", "--sensitivity", "secret"], depsFor(api, cap));
    assert.equal(code, 2);
    assert.equal(api.calls.length, 0);
  });

  it("watches a job through queued, running and completed and exits 0", async () => {
    api.jobs.set("job_w", { id: "job_w", body: { name: "w" }, script: api.nextJobScript, gets: 0 });
    const cap = captureIo();
    const clock = instantClock();
    const code = await runCli(["jobs", "watch", "job_w", "--interval-ms", "250"], depsFor(api, cap, clock));
    assert.equal(code, 0, cap.err());
    assert.equal(api.jobs.get("job_w")?.gets, 3);
    assert.deepEqual(clock.sleeps, [250, 250]);
    const lines = cap.out().split("\n");
    assert.deepEqual(lines.slice(0, 3), ["queued 0%", "running 50% epoch=1 loss=0.5", "completed 100% epoch=2 loss=0.25"]);
    assert.match(cap.out(), /^status\s+completed$/m);
  });

  it("rides out a transient server failure while watching", async () => {
    api.jobs.set("job_t", { id: "job_t", body: {}, script: api.nextJobScript, gets: 0 });
    api.failNext = { code: "INTERNAL_ERROR", message: "the database hiccupped" };
    const cap = captureIo();
    const clock = instantClock();
    assert.equal(await runCli(["jobs", "watch", "job_t", "--interval-ms", "100"], depsFor(api, cap, clock)), 0, cap.err());
    // The failure hits the live stream, which is tried again after 1 s; this fake has none (UNIMPLEMENTED), so the job is polled.
    assert.equal(callsOf(api, "GetTrainingJob").length, 3);
    assert.deepEqual(clock.sleeps, [1000, 100, 100]);
  });

  it("stops watching at once on an error that will not clear", async () => {
    const cap = captureIo();
    assert.equal(await runCli(["jobs", "watch", "job_gone"], depsFor(api, cap)), 1);
    assert.equal(callsOf(api, "GetTrainingJob").length, 1);
    assert.match(cap.err(), /code JOB_NOT_FOUND/);
  });

  it("draws the watch bar on a terminal from the SDK's progress events", async () => {
    api.jobs.set("job_b", { id: "job_b", body: {}, script: api.nextJobScript, gets: 0 });
    const cap = captureIo({ tty: true });
    assert.equal(await runCli(["jobs", "watch", "job_b"], depsFor(api, cap)), 0, cap.err());
    // cli-progress throttles redraws, so the steps in between may not all be drawn.
    assert.match(cap.bars(), /queued \[░+\] 0% \| /);
    assert.match(cap.bars(), /completed \[█+\] 100% \| epoch=2 loss=0\.25/);
    assert.doesNotMatch(cap.out(), /^queued 0%$/m, "a terminal gets the bar, not lines");
  });

  it("prints --json answers exactly as the REST API writes them", async () => {
    api.jobs.set("job_j", { id: "job_j", body: { name: "j", requiredVramMb: 8000 }, script: [{ status: "running", progress: 0.5 }], gets: 0 });
    const cap = captureIo();
    assert.equal(await runCli(["jobs", "get", "job_j", "--json"], depsFor(api, cap)), 0, cap.err());
    const job = JSON.parse(cap.out()) as Record<string, unknown>;
    assert.equal(job["required_vram_mb"], 8000);
    assert.equal(job["credits_debited"], "0", "int64 as a string");
    assert.equal(job["error"], "", "fields at their default are written");
    assert.ok(!("requiredVramMb" in job));
  });

  it("exits 1 when the watched job fails and prints the final job as JSON", async () => {
    api.jobs.set("job_f", {
      id: "job_f",
      body: {},
      script: [
        { status: "running", progress: 0.2 },
        { status: "failed", progress: 0.2, error: "train.py exited 1" },
      ],
      gets: 0,
    });
    const cap = captureIo();
    const code = await runCli(["jobs", "watch", "job_f", "--json"], depsFor(api, cap));
    assert.equal(code, 1);
    const job = JSON.parse(cap.out()) as { status: string; error: string };
    assert.equal(job.status, "failed");
    assert.equal(job.error, "train.py exited 1");
  });

  it("gives up watching after --timeout-s with WATCH_TIMEOUT", async () => {
    api.jobs.set("job_q", { id: "job_q", body: {}, script: [{ status: "queued", progress: 0 }], gets: 0 });
    const cap = captureIo();
    const code = await runCli(["jobs", "watch", "job_q", "--timeout-s", "3"], depsFor(api, cap));
    assert.equal(code, 1);
    assert.match(cap.err(), /WATCH_TIMEOUT/);
  });

  it("creates and watches in one command with --watch", async () => {
    const cap = captureIo();
    const code = await runCli(["jobs", "create", "--dataset", "d", "--package", "p", "--watch", "--json"], depsFor(api, cap));
    assert.equal(code, 0, cap.err());
    assert.equal((JSON.parse(cap.out()) as { status: string }).status, "completed");
  });

  it("lists, cancels and shows the compute units of a job", async () => {
    api.jobs.set("job_c", { id: "job_c", body: { name: "c" }, script: api.nextJobScript, gets: 0 });
    const cap = captureIo();
    assert.equal(await runCli(["jobs", "list", "--status", "running", "--limit", "5"], depsFor(api, cap)), 0);
    assert.deepEqual(callsOf(api, "ListTrainingJobs")[0]?.body, { limit: 5, status: "running" });
    assert.equal(await runCli(["jobs", "cancel", "job_c"], depsFor(api, cap)), 0);
    assert.match(cap.out(), /^status\s+cancelled$/m);
    assert.equal(await runCli(["jobs", "units", "job_c", "--json"], depsFor(api, captureIo())), 0);
  });
});
