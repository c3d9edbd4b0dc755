/**
 * The SDK against a real control plane and a real agent: the customer's whole path (upload,
 * create, wait, download) plus typed errors, 429 retries and webhook signatures.
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { createReadStream } from "node:fs";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Interceptor } from "@connectrpc/connect";
import { Code, ConnectError } from "@connectrpc/connect";
import { zipDirectory } from "../../src/cli/files.ts";
import type { GpuAgentClient, JobProgressEvent, RetryInfo, TransferProgress } from "../../src/sdk/index.ts";
import { createGpuAgentClient, listAll, verifyWebhookSignature, webhookSignatureHeader } from "../../src/sdk/index.ts";
import { signPayload } from "../../src/webhooks/signature.ts";
import type { TestAgent, TestControlPlane } from "../support/control-plane.ts";
import { createCustomer, startTestAgent, startTestControlPlane } from "../support/control-plane.ts";
import { instantClock, rejection } from "./support.ts";

const example = join(import.meta.dirname, "..", "..", "examples", "tiny-mlp");

describe("SDK: the full customer flow against a real control plane and agent", function () {
  this.timeout(180_000);
  let cp: TestControlPlane;
  let agent: TestAgent;
  let apiKey: string;
  let workDir: string;
  let client: GpuAgentClient;
  const sentKeys: string[] = [];
  // Records the Idempotency-Key of every CreateTrainingJob attempt that goes on the wire.
  const keySpy: Interceptor = (next) => async (req) => {
    if (req.method.name === "CreateTrainingJob") sentKeys.push(req.header.get("idempotency-key") ?? "");
    return await next(req);
  };

  before(async () => {
    cp = await startTestControlPlane();
    agent = await startTestAgent(cp, { trustLevel: "controlled", devGpuMib: 24576 });
    ({ apiKey } = await createCustomer(cp, 10_000));
    workDir = await mkdtemp(join(tmpdir(), "gpu-agent-sdk-test-"));
    client = createGpuAgentClient({ baseUrl: cp.url, apiKey, interceptors: [keySpy] });
  });
  after(async () => {
    await agent?.stop();
    await cp?.stop();
    if (workDir !== undefined) await rm(workDir, { recursive: true, force: true });
  });

  it("uploads, runs, waits for and downloads the example job", async () => {
    const datasetPath = join(example, "dataset.csv");
    const datasetBytes = await readFile(datasetPath);
    const datasetProgress: TransferProgress[] = [];
    const dataset = await client.datasets.upload(datasetPath, { name: "tiny-mlp data", format: "csv", onProgress: (p) => datasetProgress.push(p) });
    assert.equal(dataset.status, "ready");
    assert.equal(dataset.sizeBytes, BigInt(datasetBytes.length));
    assert.equal(dataset.sha256, createHash("sha256").update(datasetBytes).digest("hex"));
    const hashed = datasetProgress.filter((p) => p.phase === "hashing").at(-1);
    const uploaded = datasetProgress.filter((p) => p.phase === "uploading").at(-1);
    assert.equal(hashed?.bytesDone, datasetBytes.length);
    assert.equal(uploaded?.bytesDone, datasetBytes.length);
    assert.equal(uploaded?.totalBytes, datasetBytes.length);

    // The package goes up as a stream (spooled and hashed by the SDK), not as a path.
    const zipPath = join(workDir, "package.zip");
    await zipDirectory(join(example, "package"), zipPath);
    const zipBytes = await readFile(zipPath);
    const packageProgress: TransferProgress[] = [];
    const pkg = await client.packages.upload(createReadStream(zipPath), { name: "tiny-mlp", entrypoint: "train.py", onProgress: (p) => packageProgress.push(p) });
    assert.equal(pkg.status, "ready");
    assert.equal(pkg.sha256, createHash("sha256").update(zipBytes).digest("hex"));
    assert.ok(pkg.entryCount >= 2);
    assert.equal(packageProgress.filter((p) => p.phase === "uploading").at(-1)?.bytesDone, zipBytes.length);

    const body = {
      name: "sdk-e2e",
      datasetId: dataset.id,
      trainingPackageId: pkg.id,
      requiredVramMb: 8000,
      maxRuntimeSeconds: 600,
      sensitivity: "low_sensitive",
      requiredGpuCount: 1,
      queueTimeoutSeconds: 3600,
    };
    const job = await client.jobs.create(body);
    // The GPU fields go through the generated types both ways.
    assert.deepEqual([job.requiredGpuCount, job.gpuModels, job.minComputeCapability, job.queueTimeoutSeconds], [1, [], "", 3600]);
    assert.equal(sentKeys.length, 1);
    const generated = sentKeys[0] ?? "";
    assert.match(generated, /^[A-Za-z0-9._:-]{8,128}$/, "a key is generated when none is given");
    const replay = await client.jobs.create(body, { idempotencyKey: generated });
    assert.equal(replay.id, job.id, "the same key returns the same job");
    const other = await rejection(client.jobs.create({ ...body, name: "different" }, { idempotencyKey: generated }));
    assert.equal(other.code, "IDEMPOTENCY_CONFLICT");

    // Follow the train stage's log live, with the cursor, while the job runs.
    const trainUnit = (await client.jobs.computeUnits(job.id)).data.find((u) => u.name === "train");
    assert.ok(trainUnit !== undefined);
    const followed = (async () => {
      const answers = [];
      for await (const answer of client.jobs.followLogs(job.id, trainUnit.id, { intervalMs: 250 })) answers.push(answer);
      return answers;
    })();

    const events: JobProgressEvent[] = [];
    const callbacks: JobProgressEvent[] = [];
    const waiter = client.jobs.waitForJob(job.id, { intervalMs: 300, timeoutMs: 150_000, onProgress: (e) => callbacks.push(e) });
    let final;
    for (;;) {
      const step = await waiter.next();
      if (step.done === true) {
        final = step.value;
        break;
      }
      events.push(step.value);
    }
    assert.equal(final.status, "completed", `job ended ${final.status}: ${final.error}\n${agent.output().slice(-2000)}`);
    assert.deepEqual(callbacks, events);
    const last = events.at(-1);
    assert.equal(last?.terminal, true);
    assert.equal(last?.status, "completed");
    assert.equal(last?.progress, 1);
    for (let i = 1; i < events.length; i++) {
      assert.ok((events[i]?.progress ?? 0) >= (events[i - 1]?.progress ?? 0), "progress never goes back");
    }
    assert.ok(events.filter((e) => !e.terminal).every((e) => !["completed", "failed", "cancelled", "expired"].includes(e.status)));

    // The followed log, put together from its increments, is the whole stored tail: no line twice, none missing.
    const answers = await followed;
    assert.ok(answers.length >= 2, `the log was followed while the unit ran (${answers.length} answers)`);
    assert.equal(answers.at(-1)?.unitStatus, "completed");
    const tail = await client.jobs.logs(job.id, trainUnit.id);
    assert.deepEqual(
      answers.flatMap((a) => a.lines.map((l) => l.seq)),
      tail.lines.map((l) => l.seq),
    );
    assert.match(tail.lines.map((l) => l.text).join("\n"), /epoch 20\/20 loss=/);
    assert.equal(tail.droppedLines, 0n);
    const newer = await client.jobs.logs(job.id, trainUnit.id, { after: tail.nextAfter });
    assert.deepEqual(newer.lines, []);
    // The loss curve: the train unit's history of reports, with epoch and loss.
    const metrics = await client.jobs.metrics(job.id);
    const train = metrics.units.find((u) => u.unitId === trainUnit.id);
    assert.ok(train !== undefined && train.points.length >= 2, "the train unit has a history");
    assert.ok(train.points.every((p) => p.metrics["loss"] !== undefined || p.metrics["epoch"] === undefined));
    assert.equal(train.points.at(-1)?.progress, 1);
    assert.equal((await rejection(client.jobs.logs(job.id, "00000000-0000-4000-8000-000000000000"))).code, "RESOURCE_NOT_FOUND");

    const units = await client.jobs.computeUnits(job.id);
    assert.ok(units.data.length >= 1);
    assert.ok(units.data.every((u) => u.status === "completed"));
    const listed = await client.jobs.list({ status: "completed" });
    assert.ok(listed.data.some((j) => j.id === job.id));

    const artifacts = await client.artifacts.list(job.id);
    const artifact = artifacts.data.find((a) => a.kind === "checkpoint") ?? artifacts.data[0];
    assert.ok(artifact !== undefined, "the job produced artifacts");
    const dest = join(workDir, artifact.name.replaceAll("/", "_"));
    const downloadProgress: TransferProgress[] = [];
    const downloaded = await client.artifacts.download(job.id, artifact.id, dest, { onProgress: (p) => downloadProgress.push(p) });
    assert.equal(downloaded.sha256, artifact.sha256);
    assert.equal(BigInt(downloaded.bytes), artifact.sizeBytes);
    assert.equal(createHash("sha256").update(await readFile(dest)).digest("hex"), artifact.sha256);
    assert.equal(downloadProgress.at(-1)?.bytesDone, downloaded.bytes);

    // A wrong expected hash is refused and leaves nothing at the destination.
    const badDest = join(workDir, "bad.bin");
    const mismatch = await rejection(client.artifacts.download(job.id, artifact.id, badDest, { expectedSha256: "0".repeat(64) }));
    assert.equal(mismatch.code, "CHECKSUM_MISMATCH");
    await assert.rejects(readFile(badDest), { code: "ENOENT" });
    // Nothing to verify against is refused too, before any byte moves.
    const unverifiable = await rejection(client.artifacts.download(job.id, artifact.id, badDest, { expectedSha256: "" }));
    assert.equal(unverifiable.code, "CHECKSUM_MISMATCH");
    await assert.rejects(readFile(badDest), { code: "ENOENT" });

    // Walking pages of one item follows the server's real cursors to the same list.
    const walked = await listAll((p) => client.jobs.computeUnits(job.id, p), 1);
    assert.deepEqual(walked.map((u) => u.id), units.data.map((u) => u.id));

    const summary = await client.usage.summary();
    assert.ok(summary.creditsDebitedTotal > 0n);
    assert.ok(summary.computeUnitsCompleted >= 1);
    const daily = await client.usage.daily({ days: 7 });
    assert.ok(daily.data.length >= 1);
  });

  it("throws typed errors: JOB_NOT_FOUND, API_KEY_INVALID, CUSTOMER_AUTH_REQUIRED, CONNECTION_FAILED", async () => {
    const missing = "00000000-0000-4000-8000-000000000000";
    const notFound = await rejection(client.jobs.get(missing));
    assert.equal(notFound.code, "JOB_NOT_FOUND");
    assert.equal(notFound.httpStatus, 404);
    assert.equal(notFound.connectCode, Code.NotFound);
    assert.ok(!notFound.message.startsWith("[JOB_NOT_FOUND]"), notFound.message);
    assert.notEqual(notFound.requestId, "");

    const bogus = createGpuAgentClient({ baseUrl: cp.url, apiKey: "sk_live_not_a_real_key_0000000000000000" });
    const invalid = await rejection(bogus.usage.summary());
    assert.equal(invalid.code, "API_KEY_INVALID");
    assert.equal(invalid.httpStatus, 401);
    assert.equal(invalid.connectCode, Code.Unauthenticated);

    const anonymous = createGpuAgentClient({ baseUrl: cp.url });
    assert.equal((await rejection(anonymous.jobs.list())).code, "CUSTOMER_AUTH_REQUIRED");
    assert.ok((await anonymous.config()).apiVersion !== "", "public rpcs need no credential");

    const closed = createGpuAgentClient({ baseUrl: "http://127.0.0.1:1", apiKey });
    assert.equal((await rejection(closed.usage.summary())).code, "CONNECTION_FAILED");
  });

  it("rides out transient poll failures when asked, with every wait on the injected clock", async () => {
    const missing = "00000000-0000-4000-8000-000000000000";
    let failing = 0;
    const flaky: Interceptor = (next) => async (req) => {
      if (req.method.name === "GetTrainingJob" && failing > 0) {
        failing--;
        throw new ConnectError("upstream unavailable", Code.Unavailable);
      }
      return await next(req);
    };
    const clock = instantClock();
    const flakyClient = createGpuAgentClient({ baseUrl: cp.url, apiKey, interceptors: [flaky], clock });

    failing = 2;
    const notFound = await rejection(flakyClient.jobs.wait(missing, { poll: true, intervalMs: 500, maxTransientFailures: 2 }));
    assert.equal(notFound.code, "JOB_NOT_FOUND", "two blips ridden out, then the real answer");
    assert.deepEqual(clock.sleeps, [500, 500]);

    failing = 1;
    assert.equal((await rejection(flakyClient.jobs.wait(missing, { poll: true, intervalMs: 500 }))).code, "CONNECTION_FAILED", "by default the first failure is thrown");

    clock.sleeps.length = 0;
    failing = 100;
    const timedOut = await rejection(flakyClient.jobs.wait(missing, { poll: true, intervalMs: 500, timeoutMs: 1200, maxTransientFailures: 100 }));
    assert.equal(timedOut.code, "TIMEOUT");
    assert.deepEqual(clock.sleeps, [500, 500, 200], "the deadline is kept on the injected clock");
  });

  it("ends an rpc at requestTimeoutMs with TIMEOUT, and at the caller's abort with ABORTED", async () => {
    // Stands for a server that never answers: waits until the call's signal fires.
    const hang: Interceptor = () => (req) =>
      new Promise((_, reject) => req.signal.addEventListener("abort", () => reject(req.signal.reason as Error), { once: true }));
    const slow = createGpuAgentClient({ baseUrl: cp.url, apiKey, interceptors: [hang], requestTimeoutMs: 100 });
    const timedOut = await rejection(slow.usage.summary());
    assert.equal(timedOut.code, "TIMEOUT");
    assert.equal(timedOut.connectCode, Code.DeadlineExceeded);

    const patient = createGpuAgentClient({ baseUrl: cp.url, apiKey, interceptors: [hang] });
    const controller = new AbortController();
    const pending = patient.usage.summary({ signal: controller.signal });
    controller.abort();
    assert.equal((await rejection(pending)).code, "ABORTED");
  });

  it("manages webhooks and verifies signatures with the endpoint's secret", async () => {
    const invalid = await rejection(client.webhooks.create({ url: "http://example.com/hook", events: ["job.completed"] }));
    assert.equal(invalid.code, "WEBHOOK_INVALID_URL");
    assert.equal(invalid.httpStatus, 400);

    const created = await client.webhooks.create({ url: "https://example.com/gpu-agent-hook", events: ["job.completed", "job.failed"], description: "sdk" });
    const id = created.webhook?.id ?? "";
    assert.match(created.secret, /^whsec_/);
    assert.ok((await client.webhooks.list()).data.some((w) => w.id === id));
    const test = await client.webhooks.test(id);
    assert.notEqual(test.deliveryId, "");
    const deliveries = await client.webhooks.deliveries(id);
    assert.ok(deliveries.data.some((d) => d.id === test.deliveryId));
    const again = await client.webhooks.redeliver(id, test.deliveryId);
    assert.notEqual(again.id, test.deliveryId);
    const rotated = await client.webhooks.rotate(id);
    assert.notEqual(rotated.secret, created.secret);

    const body = JSON.stringify({ type: "job.completed", data: { id: "job_1" } });
    const nowS = Math.floor(Date.now() / 1000);
    const header = signPayload(body, [rotated.secret, created.secret], nowS);
    assert.equal(webhookSignatureHeader, "GPU-Agent-Signature");
    assert.equal(verifyWebhookSignature(body, header, [created.secret], 300), true, "the previous secret still verifies during a rotation");
    assert.equal(verifyWebhookSignature(Buffer.from(body), header, [rotated.secret]), true);
    assert.equal(verifyWebhookSignature(body + " ", header, [rotated.secret], 300), false, "a changed body fails");
    assert.equal(verifyWebhookSignature(body, header, ["whsec_other"], 300), false);
    assert.equal(verifyWebhookSignature(body, signPayload(body, [rotated.secret], nowS - 3600), [rotated.secret], 300), false, "an old delivery is a replay");
    assert.equal(verifyWebhookSignature(body, undefined, [rotated.secret], 300), false);

    assert.equal((await client.webhooks.delete(id)).deleted, true);
    assert.ok(!(await client.webhooks.list()).data.some((w) => w.id === id));
  });
});

describe("SDK: 429 RATE_LIMITED is retried after Retry-After, a bounded number of times", function () {
  this.timeout(120_000);
  let cp: TestControlPlane;
  let apiKey: string;
  // The burst, and one token per 5 s after it: long enough to tell a wait from none, short enough for CI.
  const perMinute = 12;

  before(async () => {
    cp = await startTestControlPlane({ requestLimit: { requestsPerMinute: perMinute } });
    ({ apiKey } = await createCustomer(cp));
  });
  after(() => cp?.stop());

  it("gives up with RATE_LIMITED after maxRetries, then waits out Retry-After and succeeds", async () => {
    const plain = createGpuAgentClient({ baseUrl: cp.url, apiKey, maxRetries: 0 });
    for (let i = 0; i < perMinute; i++) await plain.usage.summary();
    const refused = await rejection(plain.usage.summary());
    assert.equal(refused.code, "RATE_LIMITED");
    assert.equal(refused.httpStatus, 429);
    assert.equal(refused.connectCode, Code.ResourceExhausted);
    assert.ok((refused.retryAfterS ?? 0) >= 1, `Retry-After ${refused.retryAfterS}`);

    // Waits capped at 50 ms cannot outlast a 5 s Retry-After: two retries, then the error.
    const impatientRetries: RetryInfo[] = [];
    const impatient = createGpuAgentClient({ baseUrl: cp.url, apiKey, maxRetries: 2, maxRetryDelayMs: 50, onRetry: (r) => impatientRetries.push(r) });
    const gaveUp = await rejection(impatient.usage.summary());
    assert.equal(gaveUp.code, "RATE_LIMITED");
    assert.deepEqual(impatientRetries.map((r) => [r.attempt, r.delayMs, r.operation]), [
      [1, 50, "GetUsageSummary"],
      [2, 50, "GetUsageSummary"],
    ]);
    assert.ok((impatientRetries[0]?.retryAfterS ?? 0) >= 1);

    // The default policy honours Retry-After (one token per 5 s here) and gets through.
    const retries: RetryInfo[] = [];
    const patient = createGpuAgentClient({ baseUrl: cp.url, apiKey, onRetry: (r) => retries.push(r) });
    const started = Date.now();
    const summary = await patient.usage.summary();
    assert.equal(summary.creditsBalance, 10_000n);
    assert.ok(retries.length >= 1 && retries.length <= 3, JSON.stringify(retries));
    const first = retries[0];
    assert.ok(first !== undefined && first.delayMs >= 1000 && first.delayMs <= 30_000, JSON.stringify(first));
    assert.ok(Date.now() - started >= first.delayMs - 50, "the SDK actually waited");
  });

  it("waits out Retry-After on the injected clock", async () => {
    const { apiKey: freshKey } = await createCustomer(cp);
    const clock = instantClock();
    const client = createGpuAgentClient({ baseUrl: cp.url, apiKey: freshKey, maxRetries: 2, clock });
    for (let i = 0; i < perMinute; i++) await client.usage.summary();
    const started = Date.now();
    const refused = await rejection(client.usage.summary());
    assert.equal(refused.code, "RATE_LIMITED");
    assert.equal(clock.sleeps.length, 2, JSON.stringify(clock.sleeps));
    assert.ok(clock.sleeps.every((ms) => ms >= 1000 && ms <= 30_000), JSON.stringify(clock.sleeps));
    assert.ok(Date.now() - started < 5000, "no real time was spent waiting");
  });
});
