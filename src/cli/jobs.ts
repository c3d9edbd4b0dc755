/**
 * `gpuctl jobs …`: create, get, list, units, cancel and watch training jobs.
 *
 * Job statuses (from the API): queued → running → completed | failed |
 * cancelled | expired. The last four are terminal; `watch` stops there and
 * exits 0 only for `completed`.
 */
import { CliApiError, CliError, listAll } from "./client.ts";
import type { CliContext, JsonOption } from "./context.ts";
import { printNextCursor } from "./datasets.ts";
import { createProgress, formatMetrics, printFields, printJson, printTable } from "./output.ts";
import type { CreateJobBody, TrainingJob } from "./types.ts";

/** Statuses after which a job never changes again. */
export const TERMINAL_STATUSES: ReadonlySet<string> = new Set(["completed", "failed", "cancelled", "expired"]);

/** Process exit code for a finished job: 0 only when it completed. */
export function exitCodeForStatus(status: string | undefined): number {
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
export interface JobCreateOptions extends JsonOption {
  dataset: string;
  package: string;
  name?: string | undefined;
  vramMb?: number | undefined;
  diskMb?: number | undefined;
  maxRuntimeSeconds?: number | undefined;
  sensitivity?: string | undefined;
  idempotencyKey?: string | undefined;
  watch?: boolean | undefined;
  intervalMs?: number | undefined;
  timeoutS?: number | undefined;
}

/**
 * The default job name is derived from the idempotency key, not the clock:
 * re-running the same command with the same `--idempotency-key` must send
 * the same body, or the server answers IDEMPOTENCY_CONFLICT.
 */
export function defaultJobName(idempotencyKey: string): string {
  const slug = idempotencyKey.toLowerCase().replace(/[^a-z0-9-]/g, "").slice(0, 8);
  return slug === "" ? "gpuctl-job" : `job-${slug}`;
}

/** Builds the seed body of `POST /training-jobs` from the options. */
export function jobBody(opts: JobCreateOptions, idempotencyKey: string): CreateJobBody {
  return {
    name: opts.name ?? defaultJobName(idempotencyKey),
    dataset_id: opts.dataset,
    training_package_id: opts.package,
    required_vram_mb: opts.vramMb ?? JOB_DEFAULTS.vramMb,
    required_disk_mb: opts.diskMb ?? JOB_DEFAULTS.diskMb,
    max_runtime_seconds: opts.maxRuntimeSeconds ?? JOB_DEFAULTS.maxRuntimeSeconds,
    sensitivity: opts.sensitivity ?? JOB_DEFAULTS.sensitivity,
  };
}

/** Creates a job (safe to retry: it always carries an Idempotency-Key), then optionally watches it. */
export async function jobsCreate(opts: JobCreateOptions, ctx: CliContext): Promise<number> {
  const key = opts.idempotencyKey ?? ctx.randomUUID();
  const job = await ctx.client.createJob(jobBody(opts, key), key);
  if (opts.watch === true) {
    if (!opts.json) {
      ctx.io.stdout(`created ${job.id} (idempotency key ${key})\n`);
    }
    return jobsWatch({ id: job.id, json: opts.json, intervalMs: opts.intervalMs, timeoutS: opts.timeoutS }, ctx);
  }
  if (opts.json) {
    printJson(ctx.io, job);
  } else {
    printJob(ctx, job);
    ctx.io.stderr(`idempotency key: ${key}\n`);
  }
  return 0;
}

/** Options of the commands that take just a job id. */
export interface JobIdOptions extends JsonOption {
  id: string;
}

/** One job. */
export async function jobsGet(opts: JobIdOptions, ctx: CliContext): Promise<number> {
  const job = await ctx.client.getJob(opts.id);
  if (opts.json) printJson(ctx.io, job);
  else printJob(ctx, job);
  return 0;
}

/** Options of `jobs list`. */
export interface JobListOptions extends JsonOption {
  status?: string | undefined;
  limit?: number | undefined;
  cursor?: string | undefined;
}

/** One page of jobs, optionally filtered by status. */
export async function jobsList(opts: JobListOptions, ctx: CliContext): Promise<number> {
  const page = await ctx.client.listJobs({ status: opts.status, limit: opts.limit, cursor: opts.cursor });
  if (opts.json) {
    printJson(ctx.io, page);
    return 0;
  }
  printTable(
    ctx.io,
    ["id", "name", "status", "progress", "metrics", "created"],
    (page.data ?? []).map((j) => [
      j.id,
      j.name ?? "",
      j.status ?? "",
      formatPercent(j.progress),
      formatMetrics(j.metrics, 2),
      j.created_at ?? "",
    ]),
    "no training jobs",
  );
  printNextCursor(ctx, page);
  return 0;
}

/** Every compute unit of a job (all pages). */
export async function jobsUnits(opts: JobIdOptions, ctx: CliContext): Promise<number> {
  const units = await listAll((cursor) => ctx.client.listComputeUnits(opts.id, { limit: 100, cursor }));
  if (opts.json) {
    printJson(ctx.io, { data: units });
    return 0;
  }
  printTable(
    ctx.io,
    ["id", "name", "kind", "status", "progress", "node", "depends_on", "note"],
    units.map((u) => [
      u.id,
      u.name ?? "",
      u.kind ?? "",
      u.status ?? "",
      formatPercent(u.progress),
      u.node_id ?? "",
      (u.depends_on ?? []).join(","),
      u.error || u.unschedulable_reason || formatMetrics(u.metrics, 2),
    ]),
    "no compute units",
  );
  return 0;
}

/** Cancels a job and shows its new state. */
export async function jobsCancel(opts: JobIdOptions, ctx: CliContext): Promise<number> {
  const job = await ctx.client.cancelJob(opts.id);
  if (opts.json) printJson(ctx.io, job);
  else printJob(ctx, job);
  return 0;
}

/** Options of `jobs watch`. */
export interface JobWatchOptions extends JsonOption {
  id: string;
  intervalMs?: number | undefined;
  timeoutS?: number | undefined;
}

/** Default poll interval of `jobs watch`. */
export const DEFAULT_WATCH_INTERVAL_MS = 1000;

/** Consecutive transient failures (5xx, connection loss) a watch rides out before giving up. */
const MAX_TRANSIENT_FAILURES = 5;

/**
 * Polls a job until it reaches a terminal status. On a terminal it draws a
 * bar with status, progress and the latest metrics; elsewhere it prints a
 * line whenever any of those change. Exits 0 for completed, 1 otherwise.
 */
export async function jobsWatch(opts: JobWatchOptions, ctx: CliContext): Promise<number> {
  const intervalMs = opts.intervalMs ?? DEFAULT_WATCH_INTERVAL_MS;
  const deadline = opts.timeoutS === undefined ? undefined : ctx.clock.now() + opts.timeoutS * 1000;
  const bar = createProgress(ctx.io, !opts.json, "{status} [{bar}] {percentage}% | {metrics}");
  const plainLines = !opts.json && !ctx.io.stderrIsTTY;
  let barStarted = false;
  let lastLine = "";
  let failures = 0;
  let job: TrainingJob;
  try {
    for (;;) {
      try {
        job = await ctx.client.getJob(opts.id);
        failures = 0;
      } catch (err) {
        if (!isTransient(err) || ++failures > MAX_TRANSIENT_FAILURES) throw err;
        await ctx.clock.sleep(intervalMs);
        continue;
      }
      const status = job.status ?? "unknown";
      const pct = Math.round(clamp01(job.progress ?? 0) * 100);
      const metrics = formatMetrics(job.metrics);
      if (!barStarted) {
        bar.start(100, { status, metrics });
        barStarted = true;
      }
      bar.update(pct, { status, metrics });
      if (plainLines) {
        const line = `${status} ${pct}%${metrics === "" ? "" : ` ${metrics}`}`;
        if (line !== lastLine) ctx.io.stdout(`${line}\n`);
        lastLine = line;
      }
      if (TERMINAL_STATUSES.has(status)) break;
      let wait = intervalMs;
      if (deadline !== undefined) {
        const left = deadline - ctx.clock.now();
        if (left <= 0) {
          throw new CliError("WATCH_TIMEOUT", `job ${opts.id} is still ${status} after ${opts.timeoutS}s`);
        }
        wait = Math.min(wait, left);
      }
      await ctx.clock.sleep(wait);
    }
  } finally {
    bar.stop();
  }
  if (opts.json) {
    printJson(ctx.io, job);
  } else {
    printJob(ctx, job);
    if (job.status !== "completed") ctx.io.stderr(`job ${job.id} ${job.status}${job.error ? `: ${job.error}` : ""}\n`);
  }
  return exitCodeForStatus(job.status);
}

/** Errors worth polling through: the server or the network hiccupped, the job may be fine. */
function isTransient(err: unknown): boolean {
  if (err instanceof CliApiError) return err.status >= 500;
  return err instanceof CliError && (err.code === "CONNECTION_FAILED" || err.code === "TIMEOUT");
}

function clamp01(n: number): number {
  return Math.min(1, Math.max(0, n));
}

/** `0..1` as `42%`; empty when absent. */
function formatPercent(p: number | undefined): string {
  return `${Math.round(clamp01(p ?? 0) * 100)}%`;
}

function printJob(ctx: CliContext, j: TrainingJob): void {
  const units =
    j.compute_unit_count === undefined ? undefined : `${j.compute_units_completed ?? 0}/${j.compute_unit_count} completed`;
  printFields(ctx.io, [
    ["id", j.id],
    ["name", j.name],
    ["status", j.status],
    ["progress", formatPercent(j.progress)],
    ["metrics", formatMetrics(j.metrics, 8)],
    ["dataset", j.dataset_id],
    ["package", j.training_package_id],
    ["vram_mb", j.required_vram_mb],
    ["disk_mb", j.required_disk_mb],
    ["max_runtime_s", j.max_runtime_seconds],
    ["sensitivity", j.sensitivity],
    ["compute_units", units],
    ["projected_cost", j.projected_cost_credits],
    ["credits_debited", j.credits_debited],
    ["created_at", j.created_at],
    ["started_at", j.started_at],
    ["finished_at", j.finished_at],
    ["error", j.error],
  ]);
}
