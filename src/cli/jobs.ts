/**
 * `gpuctl jobs …`: create, get, list, units, cancel and watch training jobs (`logs` is logs.ts).
 *
 * Job statuses (from the API): queued → running → completed | failed | cancelled | expired. The
 * last four are terminal; `watch` stops there and exits 0 only for `completed`.
 */
import { readFile } from "node:fs/promises";
import path from "node:path";
import { fromJson } from "@bufbuild/protobuf";
import type { JsonValue } from "@bufbuild/protobuf";
import { parse as parseYaml } from "yaml";
import type { CreateJobBody, JobProgressEvent, TrainingJob, UnitAttempt, UnitCheckpoint } from "../sdk/index.ts";
import { GpuAgentError, TERMINAL_JOB_STATUSES, listAll } from "../sdk/index.ts";
import {
  ComputeUnitSchema,
  CreateTrainingJobRequestSchema,
  ListTrainingJobsResponseSchema,
  TrainingJobSchema,
} from "../gen/gpuagent/customer/v1/customer_pb.ts";
import type { ComputeUnit, CreateTrainingJobRequest } from "../gen/gpuagent/customer/v1/customer_pb.ts";
import type { CliContext, JsonOption } from "./context.ts";
import type { IdOptions, ListOptions } from "./datasets.ts";
import { pageOf } from "./datasets.ts";
import { CliError, usageError } from "./errors.ts";
import type { OutputMode, QuietOption } from "./output.ts";
import { createProgress, formatMetrics, formatTime, printAll, printFields, printListPage, printMessage, printTable } from "./output.ts";

/** Process exit code for a finished job: 0 only when it completed. */
export function exitCodeForStatus(status: string): number {
  return status === "completed" ? 0 : 1;
}

/** Defaults of `jobs create`, the seed's example values. */
export const JOB_DEFAULTS = {
  vramMb: 8000,
  diskMb: 1024,
  maxRuntimeSeconds: 600,
  sensitivity: "public",
} as const;

/** Options of `jobs create`. */
export interface JobCreateOptions extends JsonOption, QuietOption {
  /** A job spec (JSON or YAML) whose fields the flags below override. */
  file?: string | undefined;
  dataset?: string | undefined;
  package?: string | undefined;
  name?: string | undefined;
  vramMb?: number | undefined;
  diskMb?: number | undefined;
  maxRuntimeSeconds?: number | undefined;
  sensitivity?: string | undefined;
  /** GPUs of one node each GPU unit needs (1 to 8). */
  gpus?: number | undefined;
  /** GPU models allowed (`--gpu-model`, repeatable); replaces the spec's list. */
  gpuModel?: string[] | undefined;
  minComputeCapability?: string | undefined;
  minCudaVersion?: string | undefined;
  /** Seconds the job may stay queued before it ends `expired`. */
  queueTimeout?: number | undefined;
  idempotencyKey?: string | undefined;
  watch?: boolean | undefined;
  intervalMs?: number | undefined;
  timeoutS?: number | undefined;
}

/**
 * The default job name is derived from the idempotency key, not the clock: re-running the same
 * command with the same `--idempotency-key` must send the same body, or the server answers
 * IDEMPOTENCY_CONFLICT.
 */
export function defaultJobName(idempotencyKey: string): string {
  const slug = idempotencyKey.toLowerCase().replace(/[^a-z0-9-]/g, "").slice(0, 8);
  return slug === "" ? "gpuctl-job" : `job-${slug}`;
}

/**
 * Reads a job spec: the body of `POST /api/v1/customer/training-jobs` as JSON (`.json`) or YAML
 * (anything else; YAML also reads JSON), with the REST field names (`dataset_id`,
 * `required_vram_mb`, …; the camelCase JSON names work too). An unknown field or a value of the
 * wrong type is a usage error naming the file, before anything is sent.
 */
export async function readJobSpec(file: string): Promise<CreateTrainingJobRequest> {
  let text: string;
  try {
    text = await readFile(file, "utf8");
  } catch (error) {
    throw usageError("JOB_FILE_UNREADABLE", `--file ${file}: ${(error as Error).message}`, error);
  }
  let value: unknown;
  try {
    value = path.extname(file).toLowerCase() === ".json" ? JSON.parse(text) : parseYaml(text);
  } catch (error) {
    throw usageError("JOB_FILE_INVALID", `--file ${file} is not valid ${path.extname(file).toLowerCase() === ".json" ? "JSON" : "YAML"}: ${(error as Error).message}`, error);
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw usageError("JOB_FILE_INVALID", `--file ${file} must hold one object with the job's fields (dataset_id, training_package_id, …)`);
  }
  try {
    return fromJson(CreateTrainingJobRequestSchema, value as JsonValue);
  } catch (error) {
    throw usageError("JOB_FILE_INVALID", `--file ${file}: ${(error as Error).message}`, error);
  }
}

/**
 * Builds the body of a job create: each field from its flag, else from the spec file (`-f`), else
 * the command's default. A spec setting a seed 002 alias (`min_vram_mb`, `max_runtime_minutes`)
 * keeps it, and no default is put beside it, so the server reads the alias as it would over REST.
 */
export function jobBody(opts: JobCreateOptions, idempotencyKey: string, spec?: CreateTrainingJobRequest): CreateJobBody {
  const from = <T>(flag: T | undefined, fromSpec: T | undefined, unset: T): T | undefined => flag ?? (fromSpec === unset ? undefined : fromSpec);
  const datasetId = from(opts.dataset, spec?.datasetId, "");
  const trainingPackageId = from(opts.package, spec?.trainingPackageId, "");
  const missing = (flag: string, field: string) =>
    usageError("MISSING_OPTION", `required option '${flag}' not specified${spec === undefined ? "" : ` (nor ${field} in ${opts.file ?? "the job file"})`}`);
  if (datasetId === undefined) throw missing("--dataset <id>", "dataset_id");
  if (trainingPackageId === undefined) throw missing("--package <id>", "training_package_id");
  const vram = from(opts.vramMb, spec?.requiredVramMb, 0);
  const runtime = from(opts.maxRuntimeSeconds, spec?.maxRuntimeSeconds, 0);
  const minVramMb = spec?.minVramMb ?? 0;
  const maxRuntimeMinutes = spec?.maxRuntimeMinutes ?? 0;
  // The GPU fields have no default of the CLI's own: left out, the server's apply (one GPU, any model, a day's queue).
  const gpuCount = from(opts.gpus, spec?.requiredGpuCount, 0);
  const gpuModels = opts.gpuModel ?? spec?.gpuModels ?? [];
  const minComputeCapability = from(opts.minComputeCapability, spec?.minComputeCapability, "");
  const minCudaVersion = from(opts.minCudaVersion, spec?.minCudaVersion, "");
  const queueTimeoutSeconds = from(opts.queueTimeout, spec?.queueTimeoutSeconds, 0);
  return {
    name: from(opts.name, spec?.name, "") ?? defaultJobName(idempotencyKey),
    datasetId,
    trainingPackageId,
    requiredVramMb: vram ?? (minVramMb !== 0 ? 0 : JOB_DEFAULTS.vramMb),
    requiredDiskMb: from(opts.diskMb, spec?.requiredDiskMb, 0) ?? JOB_DEFAULTS.diskMb,
    maxRuntimeSeconds: runtime ?? (maxRuntimeMinutes !== 0 ? 0 : JOB_DEFAULTS.maxRuntimeSeconds),
    sensitivity: from(opts.sensitivity, spec?.sensitivity, "") ?? JOB_DEFAULTS.sensitivity,
    ...(vram === undefined && minVramMb !== 0 ? { minVramMb } : {}),
    ...(runtime === undefined && maxRuntimeMinutes !== 0 ? { maxRuntimeMinutes } : {}),
    ...(gpuCount === undefined ? {} : { requiredGpuCount: gpuCount }),
    ...(gpuModels.length === 0 ? {} : { gpuModels }),
    ...(minComputeCapability === undefined ? {} : { minComputeCapability }),
    ...(minCudaVersion === undefined ? {} : { minCudaVersion }),
    ...(queueTimeoutSeconds === undefined ? {} : { queueTimeoutSeconds }),
  };
}

/**
 * Creates a job, then optionally watches it. The key is chosen here rather than by the SDK so it
 * can be printed (rerun with `--idempotency-key` to retry safely) and name the job. `-q` prints
 * the job's id alone (and, with `--watch`, nothing more: the exit status tells how it ended).
 */
export async function jobsCreate(opts: JobCreateOptions, ctx: CliContext): Promise<number> {
  const key = opts.idempotencyKey ?? ctx.randomUUID();
  const spec = opts.file === undefined ? undefined : await readJobSpec(opts.file);
  const body = jobBody(opts, key, spec);
  const job = await ctx.customer().jobs.create(body, { idempotencyKey: key });
  if (opts.quiet === true) ctx.io.stdout(`${job.id}\n`);
  if (opts.watch === true) {
    if (!opts.json && opts.quiet !== true) ctx.io.stdout(`created ${job.id} (idempotency key ${key})\n`);
    return jobsWatch({ id: job.id, json: opts.json, quiet: opts.quiet, intervalMs: opts.intervalMs, timeoutS: opts.timeoutS }, ctx);
  }
  if (opts.json) {
    printMessage(ctx.io, TrainingJobSchema, job);
  } else if (opts.quiet !== true) {
    printJob(ctx, job);
    ctx.io.stderr(`idempotency key: ${key}\n`);
  }
  return 0;
}

/** One job. */
export async function jobsGet(opts: IdOptions, ctx: CliContext): Promise<number> {
  showJob(ctx, await ctx.customer().jobs.get(opts.id), opts.json);
  return 0;
}

/** Options of `jobs list`. */
export interface JobListOptions extends ListOptions {
  status?: string | undefined;
}

/** One page of jobs, optionally filtered by status. */
export async function jobsList(opts: JobListOptions, ctx: CliContext): Promise<number> {
  const res = await ctx.customer().jobs.list({ ...pageOf(opts), ...(opts.status === undefined ? {} : { status: opts.status }) });
  printListPage(ctx.io, opts, ListTrainingJobsResponseSchema, res, {
    columns: ["id", "name", "status", "progress", "gpus", "metrics", "created", "note"],
    row: (j) => [
      j.id,
      j.name,
      j.status,
      formatPercent(j.progress),
      formatGpuCount(j.requiredGpuCount),
      formatMetrics(j.metrics, 2),
      formatTime(j.createdAt),
      j.status === "queued" ? j.pendingReason : j.error,
    ],
    empty: "no training jobs",
  });
  return 0;
}

/** Every compute unit of a job (all pages). */
export async function jobsUnits(opts: IdOptions & OutputMode, ctx: CliContext): Promise<number> {
  const client = ctx.customer();
  const units = await listAll((p) => client.jobs.computeUnits(opts.id, p));
  printAll(ctx.io, opts, ComputeUnitSchema, units, {
    columns: ["id", "name", "kind", "gpus", "needs", "status", "progress", "attempt", "node", "depends_on", "checkpoint", "note"],
    row: (u) => [
      u.id,
      u.name,
      u.kind,
      formatUnitGpus(u),
      formatConstraints(u),
      u.status,
      formatPercent(u.progress),
      u.attempt === 0 ? "" : String(u.attempt),
      u.nodeId,
      u.dependsOn.join(","),
      formatCheckpoint(u.latestCheckpoint),
      u.error || u.unschedulableReason || formatResumedFrom(u.attempts.at(-1)) || formatMetrics(u.metrics, 2),
    ],
    empty: "no compute units",
  });
  // Each attempt of a unit that was placed more than once, or resumed: where it ran, how it ended, what it started from.
  const retried = units.filter((u) => u.attempts.length > 1 || u.attempts.some((a) => a.resumedFromAttempt > 0));
  if (!opts.json && opts.quiet !== true && retried.length > 0) {
    ctx.io.stdout("\n");
    printTable(
      ctx.io,
      ["unit", "attempt", "node", "status", "resumed_from", "error"],
      retried.flatMap((u) => u.attempts.map((a) => [u.name, String(a.attempt), a.nodeId, a.status, formatResumedFrom(a), a.error])),
    );
  }
  return 0;
}

/** A GPU count for a table: blank for a server that predates GPU counts (0). */
function formatGpuCount(count: number): string {
  return count === 0 ? "" : String(count);
}

/** A unit's GPUs: how many, and once placed, which of its node's (`2 (0,1)`); blank for a cpu unit. */
function formatUnitGpus(u: ComputeUnit): string {
  if (u.kind !== "gpu") return "";
  const count = formatGpuCount(u.requiredGpuCount);
  return u.gpuIndexes.length === 0 ? count : `${count} (${u.gpuIndexes.join(",")})`;
}

/** What a job or unit asks of its GPUs beyond count and VRAM: `models=A100|H100 cc>=8.0 cuda>=12.1`. */
function formatConstraints(c: { gpuModels: readonly string[]; minComputeCapability: string; minCudaVersion: string }): string {
  return [
    c.gpuModels.length === 0 ? "" : `models=${c.gpuModels.join("|")}`,
    c.minComputeCapability === "" ? "" : `cc>=${c.minComputeCapability}`,
    c.minCudaVersion === "" ? "" : `cuda>=${c.minCudaVersion}`,
  ]
    .filter((part) => part !== "")
    .join(" ");
}

/** What an attempt started from: `resumed from attempt 1 (epoch=3)`, or blank for a fresh start. */
function formatResumedFrom(a: UnitAttempt | undefined): string {
  if (a === undefined || a.resumedFromAttempt === 0) return "";
  const metrics = formatMetrics(a.resumedFromMetrics);
  return `resumed from attempt ${a.resumedFromAttempt}${metrics === "" ? "" : ` (${metrics})`}`;
}

/** A unit's latest checkpoint: `ckpt-3.pt (attempt 1, epoch=3)`. */
function formatCheckpoint(c: UnitCheckpoint | undefined): string {
  if (c === undefined) return "";
  const metrics = formatMetrics(c.metrics);
  return `${c.name} (attempt ${c.attempt}${metrics === "" ? "" : `, ${metrics}`})`;
}

/**
 * Cancels a job and shows its new state. The API answers a cancel of a job that already ended
 * with the job as it is (a retried cancel is harmless), so a job that had ended, or ended before
 * the cancel reached it, is reported as a cancel that did nothing: `JOB_ALREADY_ENDED`, exit 1.
 */
export async function jobsCancel(opts: IdOptions, ctx: CliContext): Promise<number> {
  const client = ctx.customer();
  const before = await client.jobs.get(opts.id);
  if (TERMINAL_JOB_STATUSES.includes(before.status)) {
    throw new CliError("JOB_ALREADY_ENDED", `job ${before.id} already ${before.status}: nothing to cancel`);
  }
  const job = await client.jobs.cancel(opts.id);
  if (job.status !== "cancelled") throw new CliError("JOB_ALREADY_ENDED", `job ${job.id} ${job.status} before the cancel reached it: nothing cancelled`);
  showJob(ctx, job, opts.json);
  return 0;
}

/** Options of `jobs watch`. */
export interface JobWatchOptions extends JsonOption, QuietOption {
  id: string;
  intervalMs?: number | undefined;
  timeoutS?: number | undefined;
}

/** Default poll interval of `jobs watch` against a server without live events. */
export const DEFAULT_WATCH_INTERVAL_MS = 1000;

/** Consecutive transient failures (5xx, connection loss, a broken stream) a watch rides out before giving up. */
const MAX_TRANSIENT_FAILURES = 5;

/**
 * Follows a job with the SDK's `waitForJob` until it reaches a terminal status: over the job's live
 * event stream (WatchTrainingJob, resumed after its last event if the connection breaks), or by
 * polling every `--interval-ms` a server that has none. On a terminal it draws a bar with status,
 * progress and the latest metrics; elsewhere it prints a line whenever any of those change. Exits 0
 * for completed, 1 otherwise (`WATCH_TIMEOUT` after `--timeout-s`).
 */
export async function jobsWatch(opts: JobWatchOptions, ctx: CliContext): Promise<number> {
  const client = ctx.customer();
  const deadline = opts.timeoutS === undefined ? undefined : ctx.clock.now() + opts.timeoutS * 1000;
  const silent = opts.json || opts.quiet === true;
  const bar = createProgress(ctx.io, !silent, "{status} [{bar}] {percentage}% | {metrics}");
  const plainLines = !silent && !ctx.io.stderrIsTTY;
  let started = false;
  let lastLine = "";
  let lastStatus = "unread";
  const onProgress = (e: JobProgressEvent): void => {
    const pct = Math.round(clamp01(e.progress) * 100);
    const metrics = formatMetrics(e.metrics);
    lastStatus = e.status;
    if (!started) bar.start(100, { status: e.status, metrics });
    started = true;
    bar.update(pct, { status: e.status, metrics });
    const waiting = e.pendingReason === "" ? "" : ` (waiting: ${e.pendingReason})`;
    const line = `${e.status} ${pct}%${metrics === "" ? "" : ` ${metrics}`}${waiting}`;
    if (plainLines && line !== lastLine) ctx.io.stdout(`${line}\n`);
    lastLine = line;
  };
  let job: TrainingJob;
  try {
    job = await client.jobs.wait(opts.id, {
      intervalMs: opts.intervalMs ?? DEFAULT_WATCH_INTERVAL_MS,
      ...(opts.timeoutS === undefined ? {} : { timeoutMs: opts.timeoutS * 1000 }),
      maxTransientFailures: MAX_TRANSIENT_FAILURES,
      onProgress,
    });
  } catch (err) {
    if (err instanceof GpuAgentError && err.code === "TIMEOUT" && deadline !== undefined && ctx.clock.now() >= deadline) {
      throw new CliError("WATCH_TIMEOUT", `job ${opts.id} is still ${lastStatus} after ${opts.timeoutS}s`, { cause: err });
    }
    throw err;
  } finally {
    bar.stop();
  }
  if (opts.quiet !== true) showJob(ctx, job, opts.json);
  if (!opts.json && job.status !== "completed") ctx.io.stderr(`job ${job.id} ${job.status}${job.error === "" ? "" : `: ${job.error}`}\n`);
  return exitCodeForStatus(job.status);
}

function clamp01(n: number): number {
  return Math.min(1, Math.max(0, n));
}

/** `0..1` as `42%`. */
function formatPercent(p: number): string {
  return `${Math.round(clamp01(p) * 100)}%`;
}

function showJob(ctx: CliContext, job: TrainingJob, json: boolean): void {
  if (json) printMessage(ctx.io, TrainingJobSchema, job);
  else printJob(ctx, job);
}

function printJob(ctx: CliContext, j: TrainingJob): void {
  printFields(ctx.io, [
    ["id", j.id],
    ["name", j.name],
    ["status", j.status],
    ["pending_reason", j.status === "queued" ? j.pendingReason : ""],
    ["progress", formatPercent(j.progress)],
    ["metrics", formatMetrics(j.metrics, 8)],
    ["dataset", j.datasetId],
    ["package", j.trainingPackageId],
    ["gpus", formatGpuCount(j.requiredGpuCount)],
    ["vram_mb", j.requiredVramMb],
    ["gpu_models", j.gpuModels.join(", ")],
    ["min_compute_capability", j.minComputeCapability],
    ["min_cuda_version", j.minCudaVersion],
    ["disk_mb", j.requiredDiskMb],
    ["max_runtime_s", j.maxRuntimeSeconds],
    ["queue_timeout_s", j.queueTimeoutSeconds === 0 ? "" : j.queueTimeoutSeconds],
    ["sensitivity", j.sensitivity],
    ["compute_units", `${j.computeUnitsCompleted}/${j.computeUnitCount} completed`],
    ["projected_cost", j.projectedCostCredits],
    ["credits_debited", j.creditsDebited],
    ["created_at", formatTime(j.createdAt)],
    ["started_at", formatTime(j.startedAt)],
    ["finished_at", formatTime(j.finishedAt)],
    ["error", j.error],
  ]);
}
