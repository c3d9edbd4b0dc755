/**
 * CustomerService: decode and validate, authenticate, call the store and the
 * job life cycle, map rows to protos. It never knows whether REST, Connect or
 * gRPC called it; errors are ApiErrors with seed codes.
 */
import { optionalTimestamp } from "./proto-time.ts";
import { createHash } from "node:crypto";
import { create } from "@bufbuild/protobuf";
import type { MessageInitShape } from "@bufbuild/protobuf";
import { timestampFromDate, timestampNow } from "@bufbuild/protobuf/wkt";
import type { HandlerContext, ServiceImpl } from "@connectrpc/connect";
import { sendCancel } from "../agents/assignments.ts";
import type { SessionRegistry } from "../agents/session-registry.ts";
import type { CustomerPrincipal } from "../auth/authenticate.ts";
import { authorizeCall, authorizePublicCall } from "../auth/authorize.ts";
import type {
  ArtifactSchema,
  ComputeUnitSchema,
  CustomerService,
  DatasetSchema,
  GetTrainingJobResponse,
  TrainingJobSchema,
  TrainingPackageSchema,
} from "../gen/gpuagent/customer/v1/customer_pb.ts";
import { GetTrainingJobResponseSchema } from "../gen/gpuagent/customer/v1/customer_pb.ts";
import { cancelJob } from "../jobs/lifecycle.ts";
import { applyRateLimitHeaders } from "../limits/headers.ts";
import { jobCreationLimitState } from "../limits/job-creation.ts";
import { allowedTrustLevels } from "../placer/index.ts";
import { planJob, projectedCost } from "../planner/plan.ts";
import { isUuid, newId } from "../platform/ids.ts";
import { inspectPackage } from "../storage/package-inspect.ts";
import { creditBalance, listLedger, lockCustomer } from "../store/customers.ts";
import type { ArtifactRow, JobViewRow, UnitRow } from "../store/jobs.ts";
import {
  creditsDebitedByUnit,
  customerJobCounts,
  findArtifact,
  findIdempotencyRecord,
  findJob,
  findJobView,
  insertIdempotencyRecord,
  insertJob,
  insertUnit,
  listArtifactsOfJob,
  listJobViews,
  listUnitsOfJob,
  creditsAndReserved,
} from "../store/jobs.ts";
import { isUniqueViolation } from "../store/database.ts";
import { pageRequest, toPage } from "../store/pagination.ts";
import type { UploadRow, UploadTable } from "../store/uploads.ts";
import {
  activeJobsUsing,
  findUpload,
  insertUpload,
  listUploads,
  markUploadDeleted,
  markUploadReady,
  readyUsage,
  resetUpload,
  uploadUsage,
} from "../store/uploads.ts";
import { lockCustomerStorage, requestBlobDeletion } from "../store/storage.ts";
import { quotaRefusal } from "../storage/quotas.ts";
import { removeUnneededBlob } from "../storage/storage-sweeper.ts";
import { createIdentityHandlers } from "./customer/identity.ts";
import { createUsageHandlers } from "./customer/usage.ts";
import { createTelemetryHandlers } from "./customer/telemetry.ts";
import { createWebhookHandlers } from "./customer/webhooks.ts";
import type { CustomerServiceDeps } from "./handler-deps.ts";
import { immutableMessage } from "./immutable-message.ts";
import { ApiError, validationError } from "../platform/errors.ts";

const apiVersion = "v1";
const sensitivities = ["public", "low_sensitive", "high_sensitive"] as const;
type Sensitivity = (typeof sensitivities)[number];
const jobStatuses = new Set(["queued", "running", "completed", "failed", "cancelled", "expired"]);
const sha256Pattern = /^[0-9a-f]{64}$/;
const idempotencyKeyPattern = /^[A-Za-z0-9._:-]{8,128}$/;

const ts = optionalTimestamp;

function requireName(value: string, what: string): string {
  const name = value.trim();
  if (name === "" || name.length > 200) throw validationError(`${what} must be 1 to 200 characters`, { field: "name" });
  rejectNul(name, "name");
  return name;
}

/** PostgreSQL text cannot hold U+0000: refused as bad input here rather than failing the INSERT (a 500). */
function rejectNul(value: string, field: string): void {
  if (value.includes("\u0000")) throw validationError(`${field} must not contain NUL (U+0000) characters`, { field });
}

function requireId(id: string, notFound: ApiError["code"], what: string): string {
  // Malformed ids are simply not found: the answer does not reveal id syntax or other tenants.
  if (!isUuid(id)) throw new ApiError(notFound, `${what} ${JSON.stringify(id)} not found`);
  return id.toLowerCase();
}

/** Builds the CustomerService implementation. */
export function createCustomerService(deps: CustomerServiceDeps, sessions: SessionRegistry): Partial<ServiceImpl<typeof CustomerService>> {
  const { db, clock, config, signer, blobs } = deps;
  const now = () => new Date(clock.now());
  // Authentication and the rpc's access policy (declared in the proto) are checked here, once.
  const caller = (ctx: HandlerContext) => authorizeCall(deps, ctx);
  // Responses built from cached job views, kept as long as the view is (see getTrainingJob).
  const jobResponses = new WeakMap<JobViewRow, GetTrainingJobResponse>();

  function datasetMessage(row: UploadRow): MessageInitShape<typeof DatasetSchema> {
    return {
      id: row.id,
      name: row.name,
      sizeBytes: BigInt(row.size_bytes),
      sha256: row.sha256,
      format: row.format ?? "",
      status: row.status,
      uploadUrl: row.status === "awaiting_upload" && row.uploaded_at === null ? signer.sign("put", row.blob_key, row.upload_expires_at.getTime()) : "",
      uploadExpiresAt: row.status === "awaiting_upload" ? ts(row.upload_expires_at) : undefined,
      createdAt: ts(row.created_at),
      finalizedAt: ts(row.finalized_at),
    };
  }

  function packageMessage(row: UploadRow): MessageInitShape<typeof TrainingPackageSchema> {
    const stages = (() => {
      try {
        return planJob({ requiredVramMb: 1 << 30, requiredDiskMb: 1 << 30, maxRuntimeSeconds: 60, entrypoint: row.entrypoint ?? "train.py", manifest: row.manifest ?? undefined }).map((u) => u.name);
      } catch {
        return [];
      }
    })();
    return {
      ...datasetMessage(row),
      entrypoint: row.entrypoint ?? "",
      entryCount: row.entry_count ?? 0,
      stages: row.status === "ready" ? stages : [],
    } as MessageInitShape<typeof TrainingPackageSchema>;
  }

  function jobMessage(row: JobViewRow): MessageInitShape<typeof TrainingJobSchema> {
    return {
      id: row.id,
      name: row.name,
      datasetId: row.dataset_id,
      trainingPackageId: row.training_package_id,
      status: row.status,
      progress: row.progress,
      requiredVramMb: row.required_vram_mb,
      requiredDiskMb: row.required_disk_mb,
      maxRuntimeSeconds: row.max_runtime_seconds,
      sensitivity: row.sensitivity,
      createdAt: ts(row.created_at),
      startedAt: ts(row.started_at),
      finishedAt: ts(row.finished_at),
      error: row.error,
      metrics: row.metrics,
      projectedCostCredits: BigInt(row.projected_cost_credits),
      creditsDebited: BigInt(row.credits_debited),
      computeUnitCount: row.compute_unit_count,
      computeUnitsCompleted: row.compute_units_completed,
    };
  }

  function unitMessage(row: UnitRow, debited: number): MessageInitShape<typeof ComputeUnitSchema> {
    return {
      id: row.id,
      jobId: row.job_id,
      name: row.name,
      kind: row.kind,
      dependsOn: row.depends_on,
      status: row.status,
      attempt: row.attempt,
      progress: row.progress,
      metrics: row.metrics,
      nodeId: row.node_id ?? "",
      requiredVramMb: row.required_vram_mb,
      requiredDiskMb: row.required_disk_mb,
      unschedulableReason: row.status === "ready" ? row.unschedulable_reason : "",
      createdAt: ts(row.created_at),
      startedAt: ts(row.started_at),
      finishedAt: ts(row.finished_at),
      exitCode: row.exit_code ?? 0,
      error: row.error,
      creditsDebited: BigInt(debited),
    };
  }

  function artifactMessage(row: ArtifactRow, jobFinishedAt: Date | null): MessageInitShape<typeof ArtifactSchema> {
    const retentionMs = config.limits.storage.artifactRetentionDays * 86_400_000;
    return {
      id: row.id,
      jobId: row.job_id,
      computeUnitId: row.compute_unit_id,
      kind: row.kind,
      name: row.name,
      sizeBytes: BigInt(row.size_bytes),
      sha256: row.sha256,
      createdAt: ts(row.created_at),
      expiresAt: jobFinishedAt === null ? undefined : ts(new Date(jobFinishedAt.getTime() + retentionMs)),
      expiredAt: ts(row.expired_at ?? null),
    };
  }

  async function createUpload(
    table: UploadTable,
    principal: CustomerPrincipal,
    req: { name: string; sizeBytes: bigint; sha256: string; extra: string },
  ): Promise<UploadRow> {
    const name = requireName(req.name, "name");
    const maxBytes = table === "datasets" ? config.limits.datasetMaxBytes : config.limits.packageMaxBytes;
    const size = Number(req.sizeBytes);
    if (!Number.isSafeInteger(size) || size <= 0) throw validationError("size_bytes must be a positive integer", { field: "size_bytes" });
    if (size > maxBytes) throw new ApiError("PAYLOAD_TOO_LARGE", `size_bytes ${size} exceeds the limit of ${maxBytes} bytes`);
    const sha256 = req.sha256.trim().toLowerCase();
    if (!sha256Pattern.test(sha256)) throw validationError("sha256 must be 64 lower-case hex characters", { field: "sha256" });
    const id = newId();
    const kind = table === "datasets" ? "datasets" : "packages";
    // The declared size is reserved against the quota from now on, decided under the customer's storage lock.
    return db.transaction(async (tx) => {
      await lockCustomerStorage(tx, principal.customerId);
      const at = now();
      const refusal = quotaRefusal(config.limits.storage, table, await uploadUsage(tx, table, principal.customerId, at), size);
      if (refusal !== undefined) throw refusal;
      return insertUpload(tx, table, {
        id,
        customerId: principal.customerId,
        name,
        sizeBytes: size,
        sha256,
        blobKey: `${kind}/${principal.customerId}/${id}`,
        uploadExpiresAt: new Date(at.getTime() + config.limits.uploadUrlTtlSeconds * 1000),
        extra: req.extra,
      });
    });
  }

  /**
   * Deletes a dataset or package and removes its bytes. The row and the queued removal commit
   * together; the bytes go right after, or with the storage sweep if that fails. One that a queued
   * or running job still needs is refused: its units fetch it when they are placed.
   */
  async function deleteUpload(table: UploadTable, principal: CustomerPrincipal, id: string): Promise<{ id: string; deleted: boolean }> {
    const code = table === "datasets" ? "DATASET_NOT_FOUND" : "TRAINING_PACKAGE_NOT_FOUND";
    const what = table === "datasets" ? "dataset" : "training package";
    const rowId = requireId(id, code, what);
    const deleted = await db.transaction(async (tx) => {
      // Excludes job creation's lock on the customer too, so no job can start using it while it goes.
      await lockCustomerStorage(tx, principal.customerId);
      const row = await findUpload(tx, table, principal.customerId, rowId, true);
      if (row === undefined || row.status === "deleted") throw new ApiError(code, `${what} ${id} not found`);
      const jobs = await activeJobsUsing(tx, table, principal.customerId, row.id);
      if (jobs.length > 0) {
        throw new ApiError("STATE_CONFLICT", `${what} ${row.id} is used by active training job ${jobs.join(", ")}; cancel it or wait until it ends, then delete the ${what}`, {
          details: { job_ids: jobs },
        });
      }
      const at = now();
      await markUploadDeleted(tx, table, principal.customerId, row.id, at);
      await requestBlobDeletion(tx, row.blob_key, at);
      return row;
    });
    await removeUnneededBlob(deps, deleted.blob_key);
    return { id: deleted.id, deleted: true };
  }

  async function findOwnUpload(table: UploadTable, principal: CustomerPrincipal, id: string): Promise<UploadRow> {
    const code = table === "datasets" ? "DATASET_NOT_FOUND" : "TRAINING_PACKAGE_NOT_FOUND";
    const what = table === "datasets" ? "dataset" : "training package";
    const row = await findUpload(db, table, principal.customerId, requireId(id, code, what));
    if (row === undefined || row.status === "deleted") throw new ApiError(code, `${what} ${id} not found`);
    return row;
  }

  /** Verifies the uploaded bytes against the declared size and sha256 (and, for packages, the zip). */
  async function finalizeUpload(table: UploadTable, principal: CustomerPrincipal, id: string): Promise<UploadRow> {
    const row = await findOwnUpload(table, principal, id);
    if (row.status === "ready") return row; // finalize is idempotent
    if (row.uploaded_at === null || !(await blobs.exists(row.blob_key))) {
      throw new ApiError("UPLOAD_INVALID", "no bytes were uploaded yet; PUT the file to upload_url first");
    }
    const { stream, size } = await blobs.open(row.blob_key);
    const hash = createHash("sha256");
    for await (const chunk of stream) hash.update(chunk as Buffer);
    const actual = hash.digest("hex");
    if (size !== row.size_bytes || actual !== row.sha256) {
      // The bad upload is discarded; the declared values stay, so the customer can PUT again.
      await blobs.delete(row.blob_key);
      await resetUpload(db, table, row.id);
      throw new ApiError(
        "UPLOAD_INVALID",
        size !== row.size_bytes
          ? `uploaded ${size} bytes but size_bytes declared ${row.size_bytes}; upload again`
          : `sha256 of the uploaded bytes is ${actual}, not the declared ${row.sha256}; upload again`,
        { details: { expected_sha256: row.sha256, actual_sha256: actual, expected_size: row.size_bytes, actual_size: size } },
      );
    }
    let facts: { entryCount: number; manifest: unknown } | undefined;
    if (table === "training_packages") {
      const inspected = await inspectPackage(blobs.localPath(row.blob_key), {
        entrypoint: row.entrypoint ?? "train.py",
        maxEntries: config.limits.packageMaxEntries,
        maxUncompressedBytes: config.limits.packageMaxBytes * 4,
      });
      // An invalid manifest is refused now, with its reason, not at job creation.
      planJob({ requiredVramMb: 1 << 30, requiredDiskMb: 1 << 30, maxRuntimeSeconds: 60, entrypoint: row.entrypoint ?? "train.py", manifest: inspected.manifest });
      facts = { entryCount: inspected.entryCount, manifest: inspected.manifest ?? null };
    }
    // The quota again, on what is ready: a lower quota set since creation holds too. Refused: nothing changes.
    const ready = await db.transaction(async (tx) => {
      await lockCustomerStorage(tx, principal.customerId);
      const current = await findUpload(tx, table, principal.customerId, row.id, true);
      if (current === undefined || current.status === "deleted") {
        throw new ApiError(table === "datasets" ? "DATASET_NOT_FOUND" : "TRAINING_PACKAGE_NOT_FOUND", `${table === "datasets" ? "dataset" : "training package"} ${id} not found`);
      }
      if (current.status === "ready") return current;
      const refusal = quotaRefusal(config.limits.storage, table, await readyUsage(tx, table, principal.customerId, row.id), size);
      if (refusal !== undefined) throw refusal;
      return markUploadReady(tx, table, row.id, now(), facts);
    });
    return ready ?? (await findOwnUpload(table, principal, id));
  }

  return {
    ...createIdentityHandlers(deps),
    ...createUsageHandlers(deps),
    ...createWebhookHandlers(deps),
    ...createTelemetryHandlers(deps),

    async getConfig(_req, ctx) {
      authorizePublicCall(deps, ctx);
      return {
        apiVersion,
        build: config.build,
        serverTime: timestampNow(),
        limits: {
          jobCreationsPerMinute: config.limits.jobCreationsPerMinute,
          activeJobs: config.limits.activeJobs,
          computeUnitsPerDay: config.limits.computeUnitsPerDay,
          pageLimitDefault: 50,
          pageLimitMax: 100,
          exportRangeMaxDays: 90,
          downloadUrlTtlSeconds: config.limits.downloadUrlTtlSeconds,
        },
        workloadRates: [
          { kind: "cpu", creditsPerMinute: BigInt(config.rates.cpuCreditsPerMinute) },
          { kind: "gpu", creditsPerMinute: BigInt(config.rates.gpuCreditsPerMinute) },
        ],
        sensitivityTiers: sensitivities.map((name) => ({ name, allowedTrustLevels: allowedTrustLevels(name) })),
        uploadLimits: {
          datasetMaxBytes: BigInt(config.limits.datasetMaxBytes),
          trainingPackageMaxBytes: BigInt(config.limits.packageMaxBytes),
          trainingPackageMaxEntries: config.limits.packageMaxEntries,
          uploadUrlTtlSeconds: config.limits.uploadUrlTtlSeconds,
        },
        storageQuotas: {
          datasetsMaxCount: config.limits.storage.datasetsMaxCount,
          datasetsMaxBytes: BigInt(config.limits.storage.datasetsMaxBytes),
          trainingPackagesMaxCount: config.limits.storage.packagesMaxCount,
          trainingPackagesMaxBytes: BigInt(config.limits.storage.packagesMaxBytes),
          artifactsMaxCount: config.limits.storage.artifactsMaxCount,
          artifactsMaxBytes: BigInt(config.limits.storage.artifactsMaxBytes),
          unitArtifactsMaxBytes: BigInt(config.limits.storage.unitArtifactsMaxBytes),
          artifactRetentionDays: config.limits.storage.artifactRetentionDays,
        },
      };
    },

    async getMeta(_req, ctx) {
      authorizePublicCall(deps, ctx);
      return { service: "gpu-agent", apiVersion, build: config.build, serverTime: timestampNow() };
    },

    // ---- datasets ----
    async createDataset(req, ctx) {
      const principal = await caller(ctx);
      rejectNul(req.format, "format");
      const row = await createUpload("datasets", principal, { name: req.name, sizeBytes: req.sizeBytes, sha256: req.sha256, extra: req.format.trim().slice(0, 40) });
      return { dataset: datasetMessage(row) };
    },
    async finalizeDataset(req, ctx) {
      return { dataset: datasetMessage(await finalizeUpload("datasets", await caller(ctx), req.id)) };
    },
    async getDataset(req, ctx) {
      return { dataset: datasetMessage(await findOwnUpload("datasets", await caller(ctx), req.id)) };
    },
    async listDatasets(req, ctx) {
      const principal = await caller(ctx);
      const page = pageRequest(req.limit, req.cursor);
      const rows = await listUploads(db, "datasets", principal.customerId, page.limit + 1, page.after);
      const cut = toPage(rows, page, (r) => ({ at: r.created_at, id: r.id }));
      return { data: cut.rows.map(datasetMessage), page: cut.page };
    },
    async deleteDataset(req, ctx) {
      return deleteUpload("datasets", await caller(ctx), req.id);
    },

    // ---- training packages ----
    async createTrainingPackage(req, ctx) {
      const principal = await caller(ctx);
      const entrypoint = req.entrypoint.trim() === "" ? "train.py" : req.entrypoint.trim();
      if (!/^[A-Za-z0-9_][A-Za-z0-9_./-]{0,199}\.py$/.test(entrypoint) || entrypoint.split("/").includes("..")) {
        throw validationError("entrypoint must be a relative path to a .py file inside the package", { field: "entrypoint" });
      }
      const row = await createUpload("training_packages", principal, { name: req.name, sizeBytes: req.sizeBytes, sha256: req.sha256, extra: entrypoint });
      return { trainingPackage: packageMessage(row) };
    },
    async finalizeTrainingPackage(req, ctx) {
      return { trainingPackage: packageMessage(await finalizeUpload("training_packages", await caller(ctx), req.id)) };
    },
    async getTrainingPackage(req, ctx) {
      return { trainingPackage: packageMessage(await findOwnUpload("training_packages", await caller(ctx), req.id)) };
    },
    async listTrainingPackages(req, ctx) {
      const principal = await caller(ctx);
      const page = pageRequest(req.limit, req.cursor);
      const rows = await listUploads(db, "training_packages", principal.customerId, page.limit + 1, page.after);
      const cut = toPage(rows, page, (r) => ({ at: r.created_at, id: r.id }));
      return { data: cut.rows.map(packageMessage), page: cut.page };
    },
    async deleteTrainingPackage(req, ctx) {
      return deleteUpload("training_packages", await caller(ctx), req.id);
    },

    // ---- training jobs ----
    async createTrainingJob(req, ctx) {
      const principal = await caller(ctx);
      const idempotencyKey = ctx.requestHeader.get("idempotency-key");
      if (idempotencyKey !== null && !idempotencyKeyPattern.test(idempotencyKey)) {
        throw new ApiError("IDEMPOTENCY_KEY_INVALID", "Idempotency-Key must be 8 to 128 characters of letters, digits and . _ : -");
      }
      const name = requireName(req.name, "name");
      const vram = req.requiredVramMb !== 0 ? req.requiredVramMb : req.minVramMb;
      const runtime = req.maxRuntimeSeconds !== 0 ? req.maxRuntimeSeconds : req.maxRuntimeMinutes * 60;
      const disk = req.requiredDiskMb === 0 ? 1024 : req.requiredDiskMb;
      if (!Number.isInteger(vram) || vram < 0 || vram > 1_048_576) throw validationError("required_vram_mb must be between 0 and 1048576", { field: "required_vram_mb" });
      if (disk < 1 || disk > 10_485_760) throw validationError("required_disk_mb must be between 1 and 10485760", { field: "required_disk_mb" });
      if (runtime < 1 || runtime > 7 * 24 * 3600) throw validationError("max_runtime_seconds must be between 1 and 604800", { field: "max_runtime_seconds" });
      const sensitivity = (req.sensitivity === "" ? "public" : req.sensitivity) as Sensitivity;
      if (!sensitivities.includes(sensitivity)) throw validationError(`sensitivity must be one of ${sensitivities.join(", ")}`, { field: "sensitivity" });
      const datasetId = requireId(req.datasetId, "DATASET_NOT_FOUND", "dataset");
      const packageId = requireId(req.trainingPackageId, "TRAINING_PACKAGE_NOT_FOUND", "training package");
      const requestHash = createHash("sha256")
        .update(JSON.stringify([name, datasetId, packageId, vram, disk, runtime, sensitivity]))
        .digest("hex");

      const create = () =>
        db.transaction(async (tx) => {
          // One customer's creations are serialised, so every limit below is exact across replicas.
          await lockCustomer(tx, principal.customerId);
          if (idempotencyKey !== null) {
            const previous = await findIdempotencyRecord(tx, principal.customerId, idempotencyKey);
            if (previous !== undefined) {
              if (previous.request_hash !== requestHash) {
                throw new ApiError("IDEMPOTENCY_CONFLICT", "this Idempotency-Key was already used with a different request body");
              }
              return { jobId: previous.job_id, replay: true };
            }
          }
          const at = now();
          const counts = await customerJobCounts(tx, principal.customerId, at);
          const limits = config.limits;
          // The X-RateLimit-* headers describe the count this transaction decides on, on refusals too.
          applyRateLimitHeaders(ctx.responseHeader, jobCreationLimitState(limits.jobCreationsPerMinute, counts, at.getTime(), false));
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
          const dataset = await findUpload(tx, "datasets", principal.customerId, datasetId);
          if (dataset === undefined || dataset.status === "deleted") throw new ApiError("DATASET_NOT_FOUND", `dataset ${datasetId} not found`);
          if (dataset.status !== "ready") throw new ApiError("STATE_CONFLICT", `dataset ${datasetId} is not finalized yet`);
          const pkg = await findUpload(tx, "training_packages", principal.customerId, packageId);
          if (pkg === undefined || pkg.status === "deleted") throw new ApiError("TRAINING_PACKAGE_NOT_FOUND", `training package ${packageId} not found`);
          if (pkg.status !== "ready") throw new ApiError("STATE_CONFLICT", `training package ${packageId} is not finalized yet`);
          const units = planJob({ requiredVramMb: vram, requiredDiskMb: disk, maxRuntimeSeconds: runtime, entrypoint: pkg.entrypoint ?? "train.py", manifest: pkg.manifest ?? undefined });
          if (counts.unitsToday + units.length > limits.computeUnitsPerDay) {
            const tomorrow = Math.ceil((Date.UTC(at.getUTCFullYear(), at.getUTCMonth(), at.getUTCDate() + 1) - at.getTime()) / 1000);
            throw new ApiError(
              "DAILY_TASK_LIMIT_EXCEEDED",
              `this job needs ${units.length} compute units but only ${Math.max(0, limits.computeUnitsPerDay - counts.unitsToday)} of today's ${limits.computeUnitsPerDay} remain`,
              { headers: { "retry-after": String(tomorrow) } },
            );
          }
          const cost = projectedCost(units, config.rates, runtime);
          const { balance, reserved } = await creditsAndReserved(tx, principal.customerId);
          if (cost > balance - reserved) {
            throw new ApiError(
              "CREDIT_INSUFFICIENT",
              reserved > 0
                ? `the projected cost of ${cost} credits exceeds the ${balance - reserved} credits left after the ${reserved} your active jobs may still spend (balance ${balance})`
                : `the projected cost of ${cost} credits exceeds the balance of ${balance} credits`,
              { details: { projected_cost_credits: cost, credits_balance: balance, credits_reserved_by_active_jobs: reserved } },
            );
          }
          const jobId = newId();
          await insertJob(
            tx,
            {
              id: jobId,
              customer_id: principal.customerId,
              name,
              dataset_id: datasetId,
              training_package_id: packageId,
              required_vram_mb: vram,
              required_disk_mb: disk,
              max_runtime_seconds: runtime,
              sensitivity,
              projected_cost_credits: cost,
            },
            at,
          );
          for (const [planIndex, unit] of units.entries()) {
            await insertUnit(
              tx,
              {
                id: newId(),
                jobId,
                customerId: principal.customerId,
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
                maxAttempts: config.agents.maxAttempts,
              },
              at,
            );
          }
          if (idempotencyKey !== null) await insertIdempotencyRecord(tx, principal.customerId, idempotencyKey, requestHash, jobId);
          applyRateLimitHeaders(ctx.responseHeader, jobCreationLimitState(limits.jobCreationsPerMinute, counts, at.getTime(), true));
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
      const job = await findJobView(db, principal.customerId, result.jobId);
      return { trainingJob: jobMessage(job!) };
    },

    async listTrainingJobs(req, ctx) {
      const principal = await caller(ctx);
      const page = pageRequest(req.limit, req.cursor);
      const status = req.status.trim() === "" ? undefined : req.status.trim();
      if (status !== undefined && !jobStatuses.has(status)) throw validationError(`status must be one of ${[...jobStatuses].join(", ")}`, { field: "status" });
      const rows = await listJobViews(db, principal.customerId, page.limit + 1, status, page.after);
      const cut = toPage(rows, page, (r) => ({ at: r.created_at, id: r.id }));
      return { data: cut.rows.map(jobMessage), page: cut.page };
    },

    async getTrainingJob(req, ctx) {
      const principal = await caller(ctx);
      const id = requireId(req.id, "JOB_NOT_FOUND", "training job");
      // Read through the job-view cache: read-your-writes, exact tenancy (src/jobs/job-view-cache.ts).
      const job = await deps.jobViews.get(principal.customerId, id, () => findJobView(db, principal.customerId, id));
      if (job === undefined) throw new ApiError("JOB_NOT_FOUND", `training job ${req.id} not found`);
      if (!Object.isFrozen(job)) return { trainingJob: jobMessage(job) };
      // A cached (frozen, shared) view gets one response message for all its readers, encoded once per protocol.
      let response = jobResponses.get(job);
      if (response === undefined) {
        response = immutableMessage(create(GetTrainingJobResponseSchema, { trainingJob: jobMessage(job) }));
        jobResponses.set(job, response);
      }
      return response;
    },

    async cancelTrainingJob(req, ctx) {
      const principal = await caller(ctx);
      const id = requireId(req.id, "JOB_NOT_FOUND", "training job");
      if ((await findJob(db, principal.customerId, id)) === undefined) throw new ApiError("JOB_NOT_FOUND", `training job ${req.id} not found`);
      const effects = await cancelJob(db, id, now());
      for (const c of effects.cancel) sendCancel(sessions, c.nodeId, c.unitId, c.attempt, "cancelled by the customer");
      const job = await findJobView(db, principal.customerId, id);
      return { trainingJob: jobMessage(job!) };
    },

    async listComputeUnits(req, ctx) {
      const principal = await caller(ctx);
      const id = requireId(req.id, "JOB_NOT_FOUND", "training job");
      if ((await findJob(db, principal.customerId, id)) === undefined) throw new ApiError("JOB_NOT_FOUND", `training job ${req.id} not found`);
      const page = pageRequest(req.limit, req.cursor);
      const all = await listUnitsOfJob(db, id);
      const after = page.after;
      // Units of one job are few (≤ 64) and listed in plan order; the cursor names the last unit seen.
      const start = after === undefined ? 0 : all.findIndex((u) => u.id === after.id) + 1;
      if (after !== undefined && start === 0) throw new ApiError("PAGINATION_INVALID_CURSOR", "the cursor does not belong to this job's compute units");
      const debits = await creditsDebitedByUnit(db, id);
      const cut = toPage(all.slice(start, start + page.limit + 1), page, (r) => ({ at: r.created_at, id: r.id }));
      return { data: cut.rows.map((u) => unitMessage(u, debits.get(u.id) ?? 0)), page: cut.page };
    },

    async listArtifacts(req, ctx) {
      const principal = await caller(ctx);
      const id = requireId(req.id, "JOB_NOT_FOUND", "training job");
      const job = await findJob(db, principal.customerId, id);
      if (job === undefined) throw new ApiError("JOB_NOT_FOUND", `training job ${req.id} not found`);
      const page = pageRequest(req.limit, req.cursor);
      const rows = await listArtifactsOfJob(db, id, page.limit + 1, page.after);
      const cut = toPage(rows, page, (r) => ({ at: r.created_at, id: r.id }));
      return { data: cut.rows.map((r) => artifactMessage(r, job.finished_at)), page: cut.page };
    },

    async createArtifactDownloadUrl(req, ctx) {
      const principal = await caller(ctx);
      const jobId = requireId(req.jobId, "JOB_NOT_FOUND", "training job");
      if ((await findJob(db, principal.customerId, jobId)) === undefined) throw new ApiError("JOB_NOT_FOUND", `training job ${req.jobId} not found`);
      const artifact = await findArtifact(db, principal.customerId, jobId, requireId(req.artifactId, "ARTIFACT_NOT_FOUND", "artifact"));
      if (artifact === undefined) throw new ApiError("ARTIFACT_NOT_FOUND", `artifact ${req.artifactId} not found`);
      if (artifact.expired_at !== null) {
        throw new ApiError(
          "ARTIFACT_EXPIRED",
          `artifact ${artifact.id} was removed on ${artifact.expired_at.toISOString()}: artifacts are kept ${config.limits.storage.artifactRetentionDays} days after their job ends`,
          { details: { expired_at: artifact.expired_at.toISOString() } },
        );
      }
      if (!(await blobs.exists(artifact.blob_key))) throw new ApiError("SIGNED_URL_FAILED", "the artifact's bytes are not available in storage; try again later");
      const ttl = config.limits.downloadUrlTtlSeconds;
      const expiresAt = clock.now() + ttl * 1000;
      return { downloadUrl: signer.sign("get", artifact.blob_key, expiresAt), expiresAt: timestampFromDate(new Date(expiresAt)), expiresInSeconds: ttl };
    },

    // ---- usage and credits ----
    async listCreditLedger(req, ctx) {
      const principal = await caller(ctx);
      const page = pageRequest(req.limit, req.cursor);
      const rows = await listLedger(db, principal.customerId, page.limit + 1, page.after);
      const cut = toPage(rows, page, (r) => ({ at: r.created_at, id: r.id }));
      return {
        data: cut.rows.map((r) => ({
          id: r.id,
          amount: BigInt(r.amount),
          kind: r.kind,
          description: r.description,
          jobId: r.job_id ?? "",
          computeUnitId: r.compute_unit_id ?? "",
          createdAt: ts(r.created_at),
        })),
        page: cut.page,
        balance: BigInt(await creditBalance(db, principal.customerId)),
      };
    },

    async getUsageSummary(_req, ctx) {
      const principal = await caller(ctx);
      const [row] = await db.query<{
        debited: number;
        granted: number;
        units: number;
        gpu_seconds: number;
        cpu_seconds: number;
        jobs_total: number;
        jobs_active: number;
      }>(
        `SELECT
           (SELECT COALESCE(-sum(amount), 0)::bigint FROM ledger_entries WHERE customer_id = $1 AND kind = 'debit') AS debited,
           (SELECT COALESCE(sum(amount), 0)::bigint FROM ledger_entries WHERE customer_id = $1 AND kind = 'grant') AS granted,
           (SELECT count(*)::int FROM usage_records WHERE customer_id = $1) AS units,
           (SELECT COALESCE(ceil(sum(run_seconds) FILTER (WHERE kind = 'gpu')), 0)::bigint FROM usage_records WHERE customer_id = $1) AS gpu_seconds,
           (SELECT COALESCE(ceil(sum(run_seconds) FILTER (WHERE kind = 'cpu')), 0)::bigint FROM usage_records WHERE customer_id = $1) AS cpu_seconds,
           (SELECT count(*)::int FROM training_jobs WHERE customer_id = $1) AS jobs_total,
           (SELECT count(*)::int FROM training_jobs WHERE customer_id = $1 AND status IN ('queued', 'running')) AS jobs_active`,
        [principal.customerId],
      );
      return {
        creditsBalance: BigInt((row?.granted ?? 0) - (row?.debited ?? 0)),
        creditsDebitedTotal: BigInt(row?.debited ?? 0),
        creditsGrantedTotal: BigInt(row?.granted ?? 0),
        computeUnitsCompleted: row?.units ?? 0,
        gpuSeconds: BigInt(row?.gpu_seconds ?? 0),
        cpuSeconds: BigInt(row?.cpu_seconds ?? 0),
        jobsTotal: row?.jobs_total ?? 0,
        jobsActive: row?.jobs_active ?? 0,
      };
    },

    // ---- retired ----
    async createLegacyImageJob(req, ctx) {
      authorizePublicCall(deps, ctx);
      if (req.legacyPath.startsWith("image")) {
        throw new ApiError("LEGACY_DEPRECATED", "POST /customer/jobs/image* was retired in Stage 17.1; use POST /api/v1/customer/training-jobs");
      }
      throw new ApiError("ROUTE_NOT_FOUND", `no route for POST /api/v1/customer/jobs/${req.legacyPath}`);
    },
  };
}
