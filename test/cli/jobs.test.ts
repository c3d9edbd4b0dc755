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

  it("creates a job of 2 GPUs with models, minimums and a queue timeout", async () => {
    const cap = captureIo();
    const code = await runCli(
      [
        "jobs", "create", "--dataset", "d", "--package", "p", "--gpus", "2", "--gpu-model", "RTX 4090", "--gpu-model", "A100",
        "--min-compute-capability", "8.0", "--min-cuda-version", "12.1", "--queue-timeout", "2h",
      ],
      depsFor(api, cap),
    );
    assert.equal(code, 0, cap.err());
    const body = callsOf(api, "CreateTrainingJob")[0]?.body;
    assert.deepEqual(
      [body?.["required_gpu_count"], body?.["gpu_models"], body?.["min_compute_capability"], body?.["min_cuda_version"], body?.["queue_timeout_seconds"]],
      [2, ["RTX 4090", "A100"], "8.0", "12.1", 7200],
    );
    assert.match(cap.out(), /^gpus\s+2$/m);
    assert.match(cap.out(), /^gpu_models\s+RTX 4090, A100$/m);
    assert.match(cap.out(), /^min_compute_capability\s+8\.0$/m);
    assert.match(cap.out(), /^queue_timeout_s\s+7200$/m);
  });

  it("sends no GPU fields when no flag sets them, so the server's defaults apply", async () => {
    assert.equal(await runCli(["jobs", "create", "--dataset", "d", "--package", "p"], depsFor(api, captureIo())), 0);
    const body = callsOf(api, "CreateTrainingJob")[0]?.body ?? {};
    assert.deepEqual(Object.keys(body).filter((k) => /gpu|compute_capability|cuda|queue/.test(k)), []);
  });

  const timeouts: { given: string; seconds: number }[] = [
    { given: "3600", seconds: 3600 },
    { given: "90m", seconds: 5400 },
    { given: "2h", seconds: 7200 },
    { given: "1h30m", seconds: 5400 },
    { given: "1d", seconds: 86_400 },
    { given: "45s", seconds: 45 },
  ];
  for (const tc of timeouts) {
    it(`reads --queue-timeout ${tc.given} as ${tc.seconds} seconds`, async () => {
      assert.equal(await runCli(["jobs", "create", "--dataset", "d", "--package", "p", "--queue-timeout", tc.given], depsFor(api, captureIo())), 0);
      assert.equal(callsOf(api, "CreateTrainingJob")[0]?.body["queue_timeout_seconds"], tc.seconds);
    });
  }

  const badFlags: { flags: string[]; err: RegExp }[] = [
    { flags: ["--gpus", "0"], err: /--gpus.*must be an integer >= 1/ },
    { flags: ["--gpus", "9"], err: /--gpus.*at most 8 GPUs/ },
    { flags: ["--gpus", "two"], err: /--gpus.*not an integer/ },
    { flags: ["--min-compute-capability", "8"], err: /--min-compute-capability.*expected major\.minor/ },
    { flags: ["--min-cuda-version", "v12.1"], err: /--min-cuda-version.*expected major\.minor/ },
    { flags: ["--queue-timeout", "2x"], err: /--queue-timeout.*expected seconds or a duration/ },
    { flags: ["--queue-timeout", "0"], err: /--queue-timeout.*must be an integer >= 1/ },
    { flags: ["--queue-timeout", "1h 30m"], err: /--queue-timeout.*expected seconds or a duration/ },
  ];
  for (const tc of badFlags) {
    it(`refuses ${tc.flags.join(" ")} as a usage error before sending anything`, async () => {
      const cap = captureIo();
      assert.equal(await runCli(["jobs", "create", "--dataset", "d", "--package", "p", ...tc.flags], depsFor(api, cap)), 2);
      assert.match(cap.err(), tc.err);
      assert.equal(api.calls.length, 0);
    });
  }

  it("shows a queued job's pending reason, GPU count and constraints", async () => {
    const reason = "stage train: the 2 capable nodes are offline";
    api.jobs.set("job_q", {
      id: "job_q",
      body: { name: "q", requiredGpuCount: 4, gpuModels: ["A100"], minComputeCapability: "8.0", minCudaVersion: "12.1", queueTimeoutSeconds: 86_400 },
      script: [{ status: "queued", progress: 0, pendingReason: reason }],
      gets: 0,
    });
    const cap = captureIo();
    assert.equal(await runCli(["jobs", "get", "job_q"], depsFor(api, cap)), 0);
    for (const line of [`pending_reason  ${reason}`, "gpus  4", "gpu_models  A100", "min_compute_capability  8.0", "min_cuda_version  12.1", "queue_timeout_s  86400"]) {
      const [label, value] = line.split("  ");
      assert.match(cap.out(), new RegExp(`^${label}\\s+${(value ?? "").replace(/\./g, "\\.")}$`, "m"), line);
    }
  });

  it("shows no pending reason once a job runs", async () => {
    api.jobs.set("job_r", { id: "job_r", body: { name: "r" }, script: [{ status: "running", progress: 0.5, pendingReason: "stale" }], gets: 0 });
    const cap = captureIo();
    assert.equal(await runCli(["jobs", "get", "job_r"], depsFor(api, cap)), 0);
    assert.doesNotMatch(cap.out(), /pending_reason/);
  });

  it("lists each job's GPU count, and why a queued one waits", async () => {
    const reason = "stage train: every capable node is busy";
    api.jobs.set("job_l", { id: "job_l", body: { name: "l", requiredGpuCount: 8 }, script: [{ status: "queued", progress: 0, pendingReason: reason }], gets: 0 });
    const cap = captureIo();
    assert.equal(await runCli(["jobs", "list"], depsFor(api, cap)), 0);
    const [header, row] = cap.out().split("\n");
    assert.match(header ?? "", /^ID\s+NAME\s+STATUS\s+PROGRESS\s+GPUS\s+METRICS\s+CREATED\s+NOTE$/);
    assert.match(row ?? "", new RegExp(`^job_l\\s+l\\s+queued\\s+0%\\s+8\\s+${reason}$`));
  });

  it("prints the pending reason beside the status while a watched job waits", async () => {
    const reason = "stage train: no capable node is online";
    api.jobs.set("job_p", {
      id: "job_p",
      body: { name: "p" },
      script: [{ status: "queued", progress: 0, pendingReason: reason }, { status: "running", progress: 0.5 }, { status: "completed", progress: 1 }],
      gets: 0,
    });
    const cap = captureIo();
    assert.equal(await runCli(["jobs", "watch", "job_p", "--interval-ms", "100"], depsFor(api, cap)), 0, cap.err());
    assert.deepEqual(cap.out().split("\n").slice(0, 3), [`queued 0% (waiting: ${reason})`, "running 50%", "completed 100%"]);
  });

  it("shows each unit's GPUs, constraints, attempts, what each resumed from and the latest checkpoint", async () => {
    api.jobs.set("job_u", { id: "job_u", body: { name: "u" }, script: api.nextJobScript, gets: 0 });
    const at = { seconds: 1_767_225_600n, nanos: 0 };
    api.units.set("job_u", [
      { id: "cu_p", name: "prepare", dependsOn: [], logs: [{ status: "completed", lines: [] }], reads: 0, view: { kind: "cpu", attempt: 1, attempts: [{ attempt: 1, nodeId: "node_a", status: "completed" }] } },
      {
        id: "cu_t",
        name: "train",
        dependsOn: ["prepare"],
        logs: [{ status: "running", lines: [] }],
        reads: 0,
        view: {
          requiredGpuCount: 2,
          gpuIndexes: [0, 1],
          gpuModels: ["A100"],
          minComputeCapability: "8.0",
          attempt: 2,
          nodeId: "node_b",
          attempts: [
            { attempt: 1, nodeId: "node_a", status: "lost", error: "node went offline" },
            { attempt: 2, nodeId: "node_b", status: "running", resumedFromAttempt: 1, resumedFromCheckpoint: "ckpt-3.pt", resumedFromMetrics: { epoch: 3 } },
          ],
          latestCheckpoint: { attempt: 1, name: "ckpt-3.pt", sizeBytes: 1024n, metrics: { epoch: 3 }, createdAt: at },
        },
      },
    ]);
    const cap = captureIo();
    assert.equal(await runCli(["jobs", "units", "job_u"], depsFor(api, cap)), 0, cap.err());
    const [units, attempts] = cap.out().split("\n\n");
    const lines = (units ?? "").split("\n");
    assert.match(lines[0] ?? "", /^ID\s+NAME\s+KIND\s+GPUS\s+NEEDS\s+STATUS\s+PROGRESS\s+ATTEMPT\s+NODE\s+DEPENDS_ON\s+CHECKPOINT\s+NOTE$/);
    assert.match(lines[1] ?? "", /^cu_p\s+prepare\s+cpu\s+completed\s+50%\s+1$/);
    assert.match(lines[2] ?? "", /^cu_t\s+train\s+gpu\s+2 \(0,1\)\s+models=A100 cc>=8\.0\s+running\s+50%\s+2\s+node_b\s+prepare\s+ckpt-3\.pt \(attempt 1, epoch=3\)\s+resumed from attempt 1 \(epoch=3\)$/);
    assert.deepEqual((attempts ?? "").trimEnd().split("\n").map((l) => l.split(/\s{2,}/)), [
      ["UNIT", "ATTEMPT", "NODE", "STATUS", "RESUMED_FROM", "ERROR"],
      ["train", "1", "node_a", "lost", "node went offline"],
      ["train", "2", "node_b", "running", "resumed from attempt 1 (epoch=3)"],
    ]);
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
