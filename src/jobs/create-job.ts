/**
 * Creating a training job, whichever protocol asked: the request's rules, the
 * Idempotency-Key replay, the customer's limits, the plan, admission (some
 * enrolled node could run every stage: ./admission.ts), the credit check and
 * the inserts, decided in one transaction under the customer's lock, so every
 * limit is exact across replicas. A refusal stores nothing.
 */
import { createHash } from "node:crypto";
import { projectedCost } from "../billing/rates.ts";
import { requireCreditsFor } from "../billing/ledger.ts";
import { jobCreationLimitState } from "../limits/job-creation.ts";
import type { RateLimitState } from "../limits/token-bucket.ts";
import type { PlannedUnit } from "../planner/plan.ts";
import { checkGpuAsks as checkPlannerGpuAsks, planJob } from "../planner/plan.ts";
import type { Clock } from "../platform/clock.ts";
import type { SchedulerConfig } from "../platform/config.ts";
import { ApiError, validationError } from "../platform/errors.ts";
import { requireId, requireName } from "../platform/fields.ts";
import { newId } from "../platform/ids.ts";
import { lockCustomer } from "../store/customers.ts";
import type { Database, Sql } from "../store/database.ts";
import { isUniqueViolation } from "../store/database.ts";
import type { JobViewRow } from "../store/jobs.ts";
import { customerJobCounts, findIdempotencyRecord, findJobView, insertIdempotencyRecord, insertJob, insertUnit } from "../store/jobs.ts";
import type { UploadRow } from "../store/uploads.ts";
import { findUpload } from "../store/uploads.ts";
import { admitPlannedJob } from "./admission.ts";

/** The sensitivity tiers a job may declare (the placer maps each to the trust levels allowed). */
export const jobSensitivities = ["public", "low_sensitive", "high_sensitive"] as const;
export type JobSensitivity = (typeof jobSensitivities)[number];

const idempotencyKeyPattern = /^[A-Za-z0-9._:-]{8,128}$/;
const maxVramMb = 1_048_576;
const maxDiskMb = 10_485_760;
const maxRuntimeSeconds = 7 * 24 * 3600;
/** How long a job may stay queued: a minute at least (a placement cycle or two), 30 days at most. */
export const queueTimeoutBounds = { min: 60, max: 30 * 86_400, default: 86_400 } as const;

/** What job creation needs (a subset of ControlPlaneDeps). */
export interface CreateJobDeps {
  readonly db: Database;
  readonly clock: Clock;
  readonly config: Pick<SchedulerConfig, "limits" | "rates" | "agents">;
  /** Asks the leader's placement loop to run soon (the new job's first units are ready). */
  readonly wakePlacer: () => void;
}

/** A job as the customer asks for it, decoded from the protocol but not yet checked. */
export interface JobRequest {
  name: string;
  datasetId: string;
  trainingPackageId: string;
  requiredVramMb: number;
  requiredDiskMb: number;
  maxRuntimeSeconds: number;
  /** One of {@link jobSensitivities}. */
  sensitivity: string;
  /** The Idempotency-Key the request carried, or null. */
  idempotencyKey: string | null;
  /** GPUs of one node each gpu unit needs, 1 to 8 (absent: 1). */
  requiredGpuCount?: number;
  /** GPU model allow-list (absent or empty: any). */
  gpuModels?: readonly string[];
  /** "major.minor" or "" (absent: any). */
  minComputeCapability?: string;
  minCudaVersion?: string;
  /** Seconds the job may stay queued, {@link queueTimeoutBounds} (absent: the default, a day). */
  queueTimeoutSeconds?: number;
}

/** The created job, or the one an earlier request with the same Idempotency-Key created. */
export interface CreatedJob {
  job: JobViewRow;
  replay: boolean;
}

/** A request that passed the rules, with the hash that identifies it for idempotency. */
interface CheckedRequest {
  name: string;
  datasetId: string;
  packageId: string;
  vram: number;
  disk: number;
  runtime: number;
  sensitivity: JobSensitivity;
  gpuCount: number;
  gpuModels: string[];
  minComputeCapability: string;
  minCudaVersion: string;
  queueTimeout: number;
  idempotencyKey: string | null;
  requestHash: string;
}

/** The request's GPU asks and queue timeout, checked. @throws ApiError VALIDATION_FAILED naming the field. */
function checkGpuAsks(request: JobRequest): Pick<CheckedRequest, "gpuCount" | "gpuModels" | "minComputeCapability" | "minCudaVersion" | "queueTimeout"> {
  checkPlannerGpuAsks(request);
  const queueTimeout = request.queueTimeoutSeconds ?? queueTimeoutBounds.default;
  if (!Number.isInteger(queueTimeout) || queueTimeout < queueTimeoutBounds.min || queueTimeout > queueTimeoutBounds.max) {
    throw validationError(`queue_timeout_seconds must be between ${queueTimeoutBounds.min} and ${queueTimeoutBounds.max} (30 days)`, { field: "queue_timeout_seconds" });
  }
  return {
    gpuCount: request.requiredGpuCount ?? 1,
    gpuModels: [...(request.gpuModels ?? [])],
    minComputeCapability: request.minComputeCapability ?? "",
    minCudaVersion: request.minCudaVersion ?? "",
    queueTimeout,
  };
}

/** The request's own rules, in the order a customer fixes them. */
function checkRequest(request: JobRequest): CheckedRequest {
  const { idempotencyKey } = request;
  if (idempotencyKey !== null && !idempotencyKeyPattern.test(idempotencyKey)) {
    throw new ApiError("IDEMPOTENCY_KEY_INVALID", "Idempotency-Key must be 8 to 128 characters of letters, digits and . _ : -");
  }
  const name = requireName(request.name, "name");
  const vram = request.requiredVramMb;
  const disk = request.requiredDiskMb;
  const runtime = request.maxRuntimeSeconds;
  if (!Number.isInteger(vram) || vram < 0 || vram > maxVramMb) throw validationError(`required_vram_mb must be between 0 and ${maxVramMb}`, { field: "required_vram_mb" });
  if (disk < 1 || disk > maxDiskMb) throw validationError(`required_disk_mb must be between 1 and ${maxDiskMb}`, { field: "required_disk_mb" });
  if (runtime < 1 || runtime > maxRuntimeSeconds) throw validationError(`max_runtime_seconds must be between 1 and ${maxRuntimeSeconds}`, { field: "max_runtime_seconds" });
  const sensitivity = request.sensitivity as JobSensitivity;
  if (!jobSensitivities.includes(sensitivity)) throw validationError(`sensitivity must be one of ${jobSensitivities.join(", ")}`, { field: "sensitivity" });
  const gpu = checkGpuAsks(request);
  const datasetId = requireId(request.datasetId, "DATASET_NOT_FOUND", "dataset");
  const packageId = requireId(request.trainingPackageId, "TRAINING_PACKAGE_NOT_FOUND", "training package");
  // The GPU asks join the hash only when some differ from the defaults, so a key used before they existed still replays.
  const defaults = gpu.gpuCount === 1 && gpu.gpuModels.length === 0 && gpu.minComputeCapability === "" && gpu.minCudaVersion === "" && gpu.queueTimeout === queueTimeoutBounds.default;
  const hashed: unknown[] = [name, datasetId, packageId, vram, disk, runtime, sensitivity];
  if (!defaults) hashed.push(gpu.gpuCount, gpu.gpuModels, gpu.minComputeCapability, gpu.minCudaVersion, gpu.queueTimeout);
  const requestHash = createHash("sha256").update(JSON.stringify(hashed)).digest("hex");
  return { name, datasetId, packageId, vram, disk, runtime, sensitivity, ...gpu, idempotencyKey, requestHash };
}

type Counts = Awaited<ReturnType<typeof customerJobCounts>>;

/** The per-minute and active-job limits. @throws ApiError RATE_LIMITED with Retry-After. */
function checkCreationLimits(limits: SchedulerConfig["limits"], counts: Counts, at: Date): void {
  if (counts.createdLastMinute >= limits.jobCreationsPerMinute) {
    const retry = counts.oldestInWindow === null ? 60 : Math.max(1, Math.ceil((counts.oldestInWindow.getTime() + 60_000 - at.getTime()) / 1000));
    throw new ApiError("RATE_LIMITED", `at most ${limits.jobCreationsPerMinute} training jobs per minute; retry in ${retry} s`, {
      headers: { "retry-after": String(retry) },
    });
  }
  if (counts.active >= limits.activeJobs) {
    throw new ApiError("RATE_LIMITED", `at most ${limits.activeJobs} training jobs may be active at once; wait for one to finish or cancel one`, {
      headers: { "retry-after": "30" },
    });
  }
}

/** The daily compute-unit limit, reset at midnight UTC. @throws ApiError DAILY_TASK_LIMIT_EXCEEDED. */
function checkDailyUnits(limits: SchedulerConfig["limits"], counts: Counts, units: number, at: Date): void {
  if (counts.unitsToday + units <= limits.computeUnitsPerDay) return;
  const tomorrow = Math.ceil((Date.UTC(at.getUTCFullYear(), at.getUTCMonth(), at.getUTCDate() + 1) - at.getTime()) / 1000);
  throw new ApiError(
    "DAILY_TASK_LIMIT_EXCEEDED",
    `this job needs ${units} compute units but only ${Math.max(0, limits.computeUnitsPerDay - counts.unitsToday)} of today's ${limits.computeUnitsPerDay} remain`,
    { headers: { "retry-after": String(tomorrow) } },
  );
}

/** The customer's finalized dataset and package the job runs on. */
async function readyInputs(tx: Sql, customerId: string, request: CheckedRequest): Promise<{ pkg: UploadRow }> {
  const dataset = await findUpload(tx, "datasets", customerId, request.datasetId);
  if (dataset === undefined || dataset.status === "deleted") throw new ApiError("DATASET_NOT_FOUND", `dataset ${request.datasetId} not found`);
  if (dataset.status !== "ready") throw new ApiError("STATE_CONFLICT", `dataset ${request.datasetId} is not finalized yet`);
  const pkg = await findUpload(tx, "training_packages", customerId, request.packageId);
  if (pkg === undefined || pkg.status === "deleted") throw new ApiError("TRAINING_PACKAGE_NOT_FOUND", `training package ${request.packageId} not found`);
  if (pkg.status !== "ready") throw new ApiError("STATE_CONFLICT", `training package ${request.packageId} is not finalized yet`);
  return { pkg };
}

/** Inserts the job and its planned units (`ready` without dependencies, else `pending`). */
async function insertPlannedJob(
  tx: Sql,
  customerId: string,
  request: CheckedRequest,
  units: readonly PlannedUnit[],
  cost: number,
  maxAttempts: number,
  at: Date,
): Promise<string> {
  const jobId = newId();
  await insertJob(
    tx,
    {
      id: jobId,
      customer_id: customerId,
      name: request.name,
      dataset_id: request.datasetId,
      training_package_id: request.packageId,
      required_vram_mb: request.vram,
      required_disk_mb: request.disk,
      max_runtime_seconds: request.runtime,
      sensitivity: request.sensitivity,
      projected_cost_credits: cost,
    },
    at,
    {
      gpu: { gpuCount: request.gpuCount, gpuModels: request.gpuModels, minComputeCapability: request.minComputeCapability, minCudaVersion: request.minCudaVersion },
      queueTimeoutSeconds: request.queueTimeout,
    },
  );
  for (const [planIndex, unit] of units.entries()) {
    await insertUnit(
      tx,
      {
        id: newId(),
        jobId,
        customerId,
        name: unit.name,
        planIndex,
        kind: unit.kind,
        dependsOn: unit.dependsOn,
        entrypoint: unit.entrypoint,
        args: unit.args,
        vramMb: unit.vramMb,
        diskMb: unit.diskMb,
        cpuCores: unit.cpuCores,
        memoryMb: unit.memoryMb,
        maxAttempts,
        gpu: { gpuCount: unit.gpuCount, gpuModels: unit.gpuModels, minComputeCapability: unit.minComputeCapability, minCudaVersion: unit.minCudaVersion },
      },
      at,
    );
  }
  return jobId;
}

/**
 * Creates a job for `customerId`, or answers the job an earlier request with
 * the same Idempotency-Key and body created. `onLimitState` hears the
 * job-creation limit as the transaction decided it, refusals included (the
 * edge turns it into `X-RateLimit-*` headers).
 * @throws ApiError for a request the rules refuse; nothing is stored then.
 */
export async function createJob(
  deps: CreateJobDeps,
  customerId: string,
  jobRequest: JobRequest,
  onLimitState: (state: RateLimitState) => void = () => {},
): Promise<CreatedJob> {
  const { db, config } = deps;
  const request = checkRequest(jobRequest);
  const { idempotencyKey, requestHash } = request;

  const create = () =>
    db.transaction(async (tx) => {
      // One customer's creations are serialised, so every limit below is exact across replicas.
      await lockCustomer(tx, customerId);
      if (idempotencyKey !== null) {
        const previous = await findIdempotencyRecord(tx, customerId, idempotencyKey);
        if (previous !== undefined) {
          if (previous.request_hash !== requestHash) {
            throw new ApiError("IDEMPOTENCY_CONFLICT", "this Idempotency-Key was already used with a different request body");
          }
          return { jobId: previous.job_id, replay: true };
        }
      }
      const at = new Date(deps.clock.now());
      const counts = await customerJobCounts(tx, customerId, at);
      const limits = config.limits;
      // The limit's state is the count this transaction decides on, on refusals too.
      onLimitState(jobCreationLimitState(limits.jobCreationsPerMinute, counts, at.getTime(), false));
      checkCreationLimits(limits, counts, at);
      const { pkg } = await readyInputs(tx, customerId, request);
      const units = planJob({
        requiredVramMb: request.vram,
        requiredDiskMb: request.disk,
        maxRuntimeSeconds: request.runtime,
        entrypoint: pkg.entrypoint ?? "train.py",
        manifest: pkg.manifest ?? undefined,
        requiredGpuCount: request.gpuCount,
        gpuModels: request.gpuModels,
        minComputeCapability: request.minComputeCapability,
        minCudaVersion: request.minCudaVersion,
      });
      await admitPlannedJob(tx, units, request.sensitivity);
      checkDailyUnits(limits, counts, units.length, at);
      const cost = projectedCost(units, config.rates, request.runtime);
      await requireCreditsFor(tx, customerId, cost);
      const jobId = await insertPlannedJob(tx, customerId, request, units, cost, config.agents.maxAttempts, at);
      if (idempotencyKey !== null) await insertIdempotencyRecord(tx, customerId, idempotencyKey, requestHash, jobId, at);
      onLimitState(jobCreationLimitState(limits.jobCreationsPerMinute, counts, at.getTime(), true));
      return { jobId, replay: false };
    });

  let result: { jobId: string; replay: boolean };
  try {
    result = await create();
  } catch (error) {
    // Two requests with one new key raced: the loser answers as a replay.
    if (idempotencyKey !== null && isUniqueViolation(error)) result = await create();
    else throw error;
  }
  if (!result.replay) deps.wakePlacer();
  const job = await findJobView(db, customerId, result.jobId);
  if (job === undefined) throw new Error(`training job ${result.jobId} vanished after its creation`);
  return { job, replay: result.replay };
}
