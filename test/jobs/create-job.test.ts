/**
 * Job creation as a domain service (src/jobs/create-job.ts), called directly,
 * without HTTP, on both backends: a created job has its plan's units and its
 * projected cost; an idempotent retry answers the same job; every refusal
 * (the request's rules, the limits, the inputs, the credits) stores nothing.
 */
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import type { CreateJobDeps, JobRequest } from "../../src/jobs/create-job.ts";
import { createJob } from "../../src/jobs/create-job.ts";
import type { RateLimitState } from "../../src/limits/token-bucket.ts";
import { FakeClock } from "../../src/platform/clock.ts";
import type { LimitsConfig } from "../../src/platform/config.ts";
import { defaultAgents, defaultLimits, defaultRates } from "../../src/platform/config.ts";
import { ApiError } from "../../src/platform/errors.ts";
import { listUnitsOfJob } from "../../src/store/jobs.ts";
import { creationRowCounts, describeOnEachBackend, insertCustomerUpload, insertCustomerWithInputs } from "../support/billing-rows.ts";
import { enrollReferenceNode } from "../support/fleet.ts";

/** The default plan (prepare cpu → train gpu → evaluate cpu) for 600 s: 10 + 100 + 10 credits. */
const defaultPlanCost = 120;

/** Asserts that `promise` rejects with an ApiError of `code`, and returns it. */
async function refusedWith(promise: Promise<unknown>, code: ApiError["code"]): Promise<ApiError> {
  const error = await promise.then(
    () => assert.fail(`expected ${code}, but the job was created`),
    (e: unknown) => e,
  );
  assert.ok(error instanceof ApiError, `expected an ApiError, got ${String(error)}`);
  assert.equal(error.code, code, error.message);
  return error;
}

describeOnEachBackend("createJob", (on) => {
  let wakes: number;
  // A node that could run every job here: admission is test/jobs/admission.test.ts's subject.
  before(() => enrollReferenceNode(on.db));
  beforeEach(() => {
    wakes = 0;
  });

  function deps(limits: Partial<LimitsConfig> = {}): CreateJobDeps {
    return {
      db: on.db,
      clock: new FakeClock(),
      config: { limits: { ...defaultLimits, ...limits }, rates: defaultRates, agents: defaultAgents },
      wakePlacer: () => void wakes++,
    };
  }

  function jobRequest(inputs: { datasetId: string; packageId: string }, overrides: Partial<JobRequest> = {}): JobRequest {
    return {
      name: "mnist",
      datasetId: inputs.datasetId,
      trainingPackageId: inputs.packageId,
      requiredVramMb: 8192,
      requiredDiskMb: 1024,
      maxRuntimeSeconds: 600,
      sensitivity: "public",
      idempotencyKey: null,
      ...overrides,
    };
  }

  it("creates the job with its plan's units and projected cost, and wakes the placer once", async () => {
    const c = await insertCustomerWithInputs(on.db, 1_000);
    const states: RateLimitState[] = [];
    const { job, replay } = await createJob(deps(), c.customerId, jobRequest(c), (s) => states.push(s));
    assert.equal(replay, false);
    assert.equal(job.status, "queued");
    assert.equal(job.projected_cost_credits, defaultPlanCost);
    assert.equal(job.compute_unit_count, 3);
    const units = await listUnitsOfJob(on.db, job.id);
    assert.deepEqual(
      units.map((u) => [u.name, u.kind, u.status, u.max_attempts]),
      [
        ["prepare", "cpu", "ready", defaultAgents.maxAttempts],
        ["train", "gpu", "pending", defaultAgents.maxAttempts],
        ["evaluate", "cpu", "pending", defaultAgents.maxAttempts],
      ],
    );
    assert.equal(wakes, 1);
    // The limit as decided (nothing used yet), then with this job counted.
    assert.deepEqual(
      states.map((s) => [s.limit, s.remaining, s.allowed]),
      [
        [defaultLimits.jobCreationsPerMinute, defaultLimits.jobCreationsPerMinute, true],
        [defaultLimits.jobCreationsPerMinute, defaultLimits.jobCreationsPerMinute - 1, true],
      ],
    );
  });

  it("answers an idempotent retry with the same job, storing nothing more and waking no one", async () => {
    const c = await insertCustomerWithInputs(on.db, 1_000);
    const request = jobRequest(c, { idempotencyKey: "retry-key-1" });
    const first = await createJob(deps(), c.customerId, request);
    const again = await createJob(deps(), c.customerId, request);
    assert.equal(again.replay, true);
    assert.equal(again.job.id, first.job.id);
    assert.deepEqual(await creationRowCounts(on.db, c.customerId), { jobs: 1, units: 3, idempotencyRecords: 1 });
    assert.equal(wakes, 1);
  });

  it("answers concurrent requests with one new key with one job", async () => {
    const c = await insertCustomerWithInputs(on.db, 10_000);
    const request = jobRequest(c, { idempotencyKey: "racing-key-1" });
    const results = await Promise.all(Array.from({ length: 5 }, () => createJob(deps(), c.customerId, request)));
    assert.equal(new Set(results.map((r) => r.job.id)).size, 1);
    assert.equal(results.filter((r) => !r.replay).length, 1);
    assert.deepEqual(await creationRowCounts(on.db, c.customerId), { jobs: 1, units: 3, idempotencyRecords: 1 });
  });

  it("refuses a reused key with another body as IDEMPOTENCY_CONFLICT and stores nothing more", async () => {
    const c = await insertCustomerWithInputs(on.db, 1_000);
    await createJob(deps(), c.customerId, jobRequest(c, { idempotencyKey: "conflict-key" }));
    await refusedWith(createJob(deps(), c.customerId, jobRequest(c, { idempotencyKey: "conflict-key", name: "other" })), "IDEMPOTENCY_CONFLICT");
    assert.deepEqual(await creationRowCounts(on.db, c.customerId), { jobs: 1, units: 3, idempotencyRecords: 1 });
  });

  const badRequests: { name: string; overrides: Partial<JobRequest>; code: ApiError["code"]; field?: string }[] = [
    { name: "a malformed Idempotency-Key", overrides: { idempotencyKey: "short" }, code: "IDEMPOTENCY_KEY_INVALID" },
    { name: "an empty name", overrides: { name: "  " }, code: "VALIDATION_FAILED", field: "name" },
    { name: "a name with NUL", overrides: { name: "a\u0000b" }, code: "VALIDATION_FAILED", field: "name" },
    { name: "too much VRAM", overrides: { requiredVramMb: 1_048_577 }, code: "VALIDATION_FAILED", field: "required_vram_mb" },
    { name: "fractional VRAM", overrides: { requiredVramMb: 1.5 }, code: "VALIDATION_FAILED", field: "required_vram_mb" },
    { name: "no disk", overrides: { requiredDiskMb: 0 }, code: "VALIDATION_FAILED", field: "required_disk_mb" },
    { name: "a runtime over a week", overrides: { maxRuntimeSeconds: 604_801 }, code: "VALIDATION_FAILED", field: "max_runtime_seconds" },
    { name: "an unknown sensitivity", overrides: { sensitivity: "secret" }, code: "VALIDATION_FAILED", field: "sensitivity" },
    { name: "a malformed dataset id", overrides: { datasetId: "not-a-uuid" }, code: "DATASET_NOT_FOUND" },
    { name: "a malformed package id", overrides: { trainingPackageId: "x" }, code: "TRAINING_PACKAGE_NOT_FOUND" },
    { name: "another customer's dataset", overrides: { datasetId: randomUUID() }, code: "DATASET_NOT_FOUND" },
    { name: "an unknown package", overrides: { trainingPackageId: randomUUID() }, code: "TRAINING_PACKAGE_NOT_FOUND" },
  ];
  for (const tc of badRequests) {
    it(`refuses ${tc.name} (${tc.code}) and stores nothing`, async () => {
      const c = await insertCustomerWithInputs(on.db, 1_000);
      const error = await refusedWith(createJob(deps(), c.customerId, jobRequest(c, tc.overrides)), tc.code);
      if (tc.field !== undefined) assert.equal(error.details?.["field"], tc.field);
      assert.deepEqual(await creationRowCounts(on.db, c.customerId), { jobs: 0, units: 0, idempotencyRecords: 0 });
      assert.equal(wakes, 0);
    });
  }

  it("refuses a dataset not finalized yet as STATE_CONFLICT and stores nothing", async () => {
    const c = await insertCustomerWithInputs(on.db, 1_000);
    const pending = await insertCustomerUpload(on.db, "datasets", c.customerId, false);
    await refusedWith(createJob(deps(), c.customerId, jobRequest({ ...c, datasetId: pending })), "STATE_CONFLICT");
    assert.deepEqual(await creationRowCounts(on.db, c.customerId), { jobs: 0, units: 0, idempotencyRecords: 0 });
  });

  const refusals: {
    name: string;
    credits: number;
    limits?: Partial<LimitsConfig>;
    /** Jobs created first, which must succeed. */
    before: number;
    code: ApiError["code"];
    retryAfter?: string;
  }[] = [
    { name: "the per-minute creation limit", credits: 10_000, limits: { jobCreationsPerMinute: 2 }, before: 2, code: "RATE_LIMITED", retryAfter: "60" },
    { name: "the active-job limit", credits: 10_000, limits: { activeJobs: 1 }, before: 1, code: "RATE_LIMITED", retryAfter: "30" },
    { name: "the daily compute-unit limit", credits: 10_000, limits: { computeUnitsPerDay: 5 }, before: 1, code: "DAILY_TASK_LIMIT_EXCEEDED" },
    { name: "a balance below the projected cost", credits: defaultPlanCost - 1, before: 0, code: "CREDIT_INSUFFICIENT" },
    { name: "credits reserved by an active job", credits: 2 * defaultPlanCost - 1, before: 1, code: "CREDIT_INSUFFICIENT" },
  ];
  for (const tc of refusals) {
    it(`refuses past ${tc.name} (${tc.code}) and stores nothing`, async () => {
      const c = await insertCustomerWithInputs(on.db, tc.credits);
      const d = deps(tc.limits);
      for (let i = 0; i < tc.before; i++) await createJob(d, c.customerId, jobRequest(c, { name: `first-${i}` }));
      const stored = await creationRowCounts(on.db, c.customerId);
      const error = await refusedWith(createJob(d, c.customerId, jobRequest(c, { idempotencyKey: "refused-key" })), tc.code);
      if (tc.retryAfter !== undefined) assert.equal(error.headers?.["retry-after"], tc.retryAfter);
      assert.deepEqual(await creationRowCounts(on.db, c.customerId), stored);
      assert.equal(wakes, tc.before);
    });
  }

  it("names the credits reserved by active jobs in a CREDIT_INSUFFICIENT refusal", async () => {
    const c = await insertCustomerWithInputs(on.db, 200);
    await createJob(deps(), c.customerId, jobRequest(c));
    const error = await refusedWith(createJob(deps(), c.customerId, jobRequest(c)), "CREDIT_INSUFFICIENT");
    assert.deepEqual(error.details, { projected_cost_credits: defaultPlanCost, credits_balance: 200, credits_reserved_by_active_jobs: defaultPlanCost });
  });
});
