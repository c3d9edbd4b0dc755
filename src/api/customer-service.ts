/**
 * CustomerService: each handler authorizes the call, decodes the request,
 * calls the domain (job creation and cancellation in src/jobs/, credits and
 * usage in src/billing/) or a store read, and maps the rows to protos. It
 * never knows whether REST, Connect or gRPC called it; errors are ApiErrors
 * with seed codes. The uploads' life cycle (create, finalize, delete under
 * the storage quota) is src/blobs/uploads.ts.
 */
import { optionalTimestamp } from "./proto-time.ts";
import { create } from "@bufbuild/protobuf";
import type { MessageInitShape } from "@bufbuild/protobuf";
import { timestampFromDate, timestampNow } from "@bufbuild/protobuf/wkt";
import type { HandlerContext, ServiceImpl } from "@connectrpc/connect";
import { sendCancel } from "../agent-streams/assignments.ts";
import type { SessionRegistry } from "../agent-streams/session-registry.ts";
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
import { ledgerPage, usageSummary } from "../billing/ledger.ts";
import { cancelCustomerJob } from "../jobs/cancel-job.ts";
import { createJob, jobSensitivities } from "../jobs/create-job.ts";
import type { UnitView } from "../jobs/job-reads.ts";
import { jobArtifactsPage, jobUnitsPage } from "../jobs/job-reads.ts";
import { applyRateLimitHeaders } from "../limits/headers.ts";
import { allowedTrustLevels } from "../placer/index.ts";
import { planJob } from "../planner/plan.ts";
import { rejectNul, requireId } from "../platform/fields.ts";
import { artifactDownloadUrl } from "../blobs/unit-artifacts.ts";
import { createUpload, deleteUpload, finalizeUpload, findCustomerUpload } from "../blobs/uploads.ts";
import type { ArtifactRow, JobViewRow } from "../store/jobs.ts";
import { findJobView, listJobViews } from "../store/jobs.ts";
import { pageRequest, toPage } from "../store/pagination.ts";
import { jobStatuses } from "../store/state-machines.ts";
import type { UploadRow } from "../store/uploads.ts";
import { listUploads } from "../store/uploads.ts";
import { createIdentityHandlers } from "./customer/identity.ts";
import { createUsageHandlers } from "./customer/usage.ts";
import { createTelemetryHandlers } from "./customer/telemetry.ts";
import { createJobEventHandlers } from "./customer/job-events.ts";
import { createWebhookHandlers } from "./customer/webhooks.ts";
import type { CustomerServiceDeps } from "./handler-deps.ts";
import { immutableMessage } from "./immutable-message.ts";
import { ApiError, validationError } from "../platform/errors.ts";

const apiVersion = "v1";

const ts = optionalTimestamp;

/** Builds the CustomerService implementation. */
export function createCustomerService(deps: CustomerServiceDeps, sessions: SessionRegistry): Partial<ServiceImpl<typeof CustomerService>> {
  const { db, clock, config, signer } = deps;
  // Authentication and the rpc's access policy (declared in the proto) are checked here, once.
  const caller = (ctx: HandlerContext) => authorizeCall(deps, ctx);
  // Responses built from cached job views, kept as long as the view is (see getTrainingJob).
  const jobResponses = new WeakMap<JobViewRow, GetTrainingJobResponse>();
  const cancelDeps = {
    db,
    clock,
    cancelUnitOnNode: (nodeId: string, unitId: string, attempt: number, reason: string) => void sendCancel(sessions, nodeId, unitId, attempt, reason),
  };

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
        return planJob({ requiredVramMb: 1 << 30, requiredDiskMb: 1 << 30, maxRuntimeSeconds: 60, requiredGpuCount: 8, entrypoint: row.entrypoint ?? "train.py", manifest: row.manifest ?? undefined }).map((u) => u.name);
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
      requiredGpuCount: row.required_gpu_count,
      gpuModels: row.gpu_models,
      minComputeCapability: row.min_compute_capability,
      minCudaVersion: row.min_cuda_version,
      queueTimeoutSeconds: row.queue_timeout_seconds,
      pendingReason: row.status === "queued" ? row.pending_reason : "",
    };
  }

  function unitMessage({ unit: row, creditsDebited: debited, envBuild, attempts, latestCheckpoint }: UnitView): MessageInitShape<typeof ComputeUnitSchema> {
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
      envBuildSeconds: envBuild.seconds,
      envBuilt: envBuild.built,
      requiredGpuCount: row.kind === "gpu" ? row.required_gpu_count : 0,
      gpuModels: row.gpu_models,
      minComputeCapability: row.min_compute_capability,
      minCudaVersion: row.min_cuda_version,
      gpuIndexes: row.gpu_indexes,
      attempts: attempts.map((a) => ({
        attempt: a.attempt,
        nodeId: a.nodeId,
        status: a.status,
        assignedAt: ts(a.assignedAt),
        startedAt: ts(a.startedAt),
        finishedAt: ts(a.finishedAt),
        error: a.error,
        resumedFromAttempt: a.resumedFrom?.attempt ?? 0,
        resumedFromCheckpoint: a.resumedFrom?.name ?? "",
        resumedFromMetrics: a.resumedFrom?.metrics ?? {},
        runSeconds: a.runSeconds,
      })),
      ...(latestCheckpoint === undefined
        ? {}
        : {
            latestCheckpoint: {
              attempt: latestCheckpoint.attempt,
              name: latestCheckpoint.name,
              sizeBytes: BigInt(latestCheckpoint.size_bytes),
              sha256: latestCheckpoint.sha256,
              metrics: latestCheckpoint.metrics,
              createdAt: ts(latestCheckpoint.created_at),
            },
          }),
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

  return {
    ...createIdentityHandlers(deps),
    ...createUsageHandlers(deps),
    ...createWebhookHandlers(deps),
    ...createTelemetryHandlers(deps),
    ...createJobEventHandlers(deps, { job: jobMessage, unit: unitMessage }),

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
          // Per GPU: a unit of N GPUs pays N times this (src/billing/rates.ts).
          { kind: "gpu", creditsPerMinute: BigInt(config.rates.gpuCreditsPerMinute), perGpu: true },
        ],
        sensitivityTiers: jobSensitivities.map((name) => ({ name, allowedTrustLevels: allowedTrustLevels(name) })),
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
      const row = await createUpload(deps, "datasets", principal.customerId, { name: req.name, sizeBytes: Number(req.sizeBytes), sha256: req.sha256, extra: req.format.trim().slice(0, 40) });
      return { dataset: datasetMessage(row) };
    },
    async finalizeDataset(req, ctx) {
      return { dataset: datasetMessage(await finalizeUpload(deps, "datasets", (await caller(ctx)).customerId, req.id)) };
    },
    async getDataset(req, ctx) {
      return { dataset: datasetMessage(await findCustomerUpload(db, "datasets", (await caller(ctx)).customerId, req.id)) };
    },
    async listDatasets(req, ctx) {
      const principal = await caller(ctx);
      const page = pageRequest(req.limit, req.cursor);
      const rows = await listUploads(db, "datasets", principal.customerId, page.limit + 1, page.after);
      const cut = toPage(rows, page, (r) => ({ at: r.created_at, id: r.id }));
      return { data: cut.rows.map(datasetMessage), page: cut.page };
    },
    async deleteDataset(req, ctx) {
      return deleteUpload(deps, "datasets", (await caller(ctx)).customerId, req.id);
    },

    // ---- training packages ----
    async createTrainingPackage(req, ctx) {
      const principal = await caller(ctx);
      const entrypoint = req.entrypoint.trim() === "" ? "train.py" : req.entrypoint.trim();
      if (!/^[A-Za-z0-9_][A-Za-z0-9_./-]{0,199}\.py$/.test(entrypoint) || entrypoint.split("/").includes("..")) {
        throw validationError("entrypoint must be a relative path to a .py file inside the package", { field: "entrypoint" });
      }
      const row = await createUpload(deps, "training_packages", principal.customerId, { name: req.name, sizeBytes: Number(req.sizeBytes), sha256: req.sha256, extra: entrypoint });
      return { trainingPackage: packageMessage(row) };
    },
    async finalizeTrainingPackage(req, ctx) {
      return { trainingPackage: packageMessage(await finalizeUpload(deps, "training_packages", (await caller(ctx)).customerId, req.id)) };
    },
    async getTrainingPackage(req, ctx) {
      return { trainingPackage: packageMessage(await findCustomerUpload(db, "training_packages", (await caller(ctx)).customerId, req.id)) };
    },
    async listTrainingPackages(req, ctx) {
      const principal = await caller(ctx);
      const page = pageRequest(req.limit, req.cursor);
      const rows = await listUploads(db, "training_packages", principal.customerId, page.limit + 1, page.after);
      const cut = toPage(rows, page, (r) => ({ at: r.created_at, id: r.id }));
      return { data: cut.rows.map(packageMessage), page: cut.page };
    },
    async deleteTrainingPackage(req, ctx) {
      return deleteUpload(deps, "training_packages", (await caller(ctx)).customerId, req.id);
    },

    // ---- training jobs ----
    async createTrainingJob(req, ctx) {
      const principal = await caller(ctx);
      // 0 and "" are proto3's "not set": the deprecated fields, then the defaults, stand in.
      const { job } = await createJob(
        deps,
        principal.customerId,
        {
          name: req.name,
          datasetId: req.datasetId,
          trainingPackageId: req.trainingPackageId,
          requiredVramMb: req.requiredVramMb !== 0 ? req.requiredVramMb : req.minVramMb,
          requiredDiskMb: req.requiredDiskMb === 0 ? 1024 : req.requiredDiskMb,
          maxRuntimeSeconds: req.maxRuntimeSeconds !== 0 ? req.maxRuntimeSeconds : req.maxRuntimeMinutes * 60,
          sensitivity: req.sensitivity === "" ? "public" : req.sensitivity,
          idempotencyKey: ctx.requestHeader.get("idempotency-key"),
          requiredGpuCount: req.requiredGpuCount === 0 ? 1 : req.requiredGpuCount,
          gpuModels: req.gpuModels,
          minComputeCapability: req.minComputeCapability,
          minCudaVersion: req.minCudaVersion,
          queueTimeoutSeconds: req.queueTimeoutSeconds === 0 ? 86_400 : req.queueTimeoutSeconds,
        },
        (state) => applyRateLimitHeaders(ctx.responseHeader, state),
      );
      return { trainingJob: jobMessage(job) };
    },

    async listTrainingJobs(req, ctx) {
      const principal = await caller(ctx);
      const page = pageRequest(req.limit, req.cursor);
      const status = req.status.trim() === "" ? undefined : req.status.trim();
      if (status !== undefined && !(jobStatuses as readonly string[]).includes(status)) {
        throw validationError(`status must be one of ${jobStatuses.join(", ")}`, { field: "status" });
      }
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
      return { trainingJob: jobMessage(await cancelCustomerJob(cancelDeps, principal.customerId, id, req.id)) };
    },

    async listComputeUnits(req, ctx) {
      const principal = await caller(ctx);
      const { rows, page } = await jobUnitsPage(db, principal.customerId, req.id, { limit: req.limit, cursor: req.cursor });
      return { data: rows.map(unitMessage), page };
    },

    async listArtifacts(req, ctx) {
      const principal = await caller(ctx);
      const { rows, page, jobFinishedAt } = await jobArtifactsPage(db, principal.customerId, req.id, { limit: req.limit, cursor: req.cursor });
      return { data: rows.map((r) => artifactMessage(r, jobFinishedAt)), page };
    },

    async createArtifactDownloadUrl(req, ctx) {
      const principal = await caller(ctx);
      const { url, expiresAtMs, ttlSeconds } = await artifactDownloadUrl(deps, principal.customerId, req.jobId, req.artifactId);
      return { downloadUrl: url, expiresAt: timestampFromDate(new Date(expiresAtMs)), expiresInSeconds: ttlSeconds };
    },

    // ---- usage and credits ----
    async listCreditLedger(req, ctx) {
      const principal = await caller(ctx);
      const page = pageRequest(req.limit, req.cursor);
      const { entries, balance } = await ledgerPage(db, principal.customerId, page.limit + 1, page.after);
      const cut = toPage(entries, page, (r) => ({ at: r.created_at, id: r.id }));
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
        balance: BigInt(balance),
      };
    },

    async getUsageSummary(_req, ctx) {
      const principal = await caller(ctx);
      const summary = await usageSummary(db, principal.customerId);
      return {
        creditsBalance: BigInt(summary.creditsBalance),
        creditsDebitedTotal: BigInt(summary.creditsDebited),
        creditsGrantedTotal: BigInt(summary.creditsGranted),
        computeUnitsCompleted: summary.computeUnitsCompleted,
        gpuSeconds: BigInt(summary.gpuSeconds),
        cpuSeconds: BigInt(summary.cpuSeconds),
        jobsTotal: summary.jobsTotal,
        jobsActive: summary.jobsActive,
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
