/**
 * SQL for training jobs, their compute units and artifacts. The state
 * machines these rows follow are in ./state-machines.ts; the UPDATEs that move
 * them between statuses are in ./transitions.ts.
 */
import type { Sql } from "./database.ts";
import { stageJobEvent } from "./job-events.ts";
import type { JobStatus, UnitStatus } from "./state-machines.ts";
import { activeJobStatusSql, sqlStatusList, waitingUnitStatuses } from "./state-machines.ts";

/** A training_jobs row. */
export interface JobRow {
  id: string;
  customer_id: string;
  name: string;
  dataset_id: string;
  training_package_id: string;
  status: JobStatus;
  progress: number;
  required_vram_mb: number;
  required_disk_mb: number;
  max_runtime_seconds: number;
  sensitivity: "public" | "low_sensitive" | "high_sensitive";
  error: string;
  metrics: Record<string, number>;
  projected_cost_credits: number;
  created_at: Date;
  started_at: Date | null;
  finished_at: Date | null;
  /** GPUs of one node each gpu unit gets (1 to 8), and the constraints on them (schema-0010.ts). */
  required_gpu_count: number;
  gpu_models: string[];
  min_compute_capability: string;
  min_cuda_version: string;
  /** How long the job may stay queued before it expires. */
  queue_timeout_seconds: number;
  /** Why the queued job waits, as the last placement cycle saw it; "" when not waiting. */
  pending_reason: string;
}

/** The GPU asks of a job or unit as stored (schema-0010.ts); a cpu unit asks for 0 GPUs and nothing else. */
export interface StoredGpuNeeds {
  gpuCount: number;
  gpuModels: readonly string[];
  minComputeCapability: string;
  minCudaVersion: string;
}

/** A compute_units row. */
export interface UnitRow {
  id: string;
  job_id: string;
  customer_id: string;
  name: string;
  plan_index: number;
  kind: "cpu" | "gpu";
  depends_on: string[];
  status: UnitStatus;
  attempt: number;
  max_attempts: number;
  /** Attempts ended by the customer's code failing (counted against max_attempts). */
  code_failures: number;
  /** Attempts lost to nodes (counted against their own budget, see src/jobs/lifecycle.ts). */
  node_failures: number;
  progress: number;
  metrics: Record<string, number>;
  entrypoint: string;
  args: string[];
  required_vram_mb: number;
  required_disk_mb: number;
  required_cpu_cores: number;
  required_memory_mb: number;
  /** 0 for a cpu unit; 1 to 8 for a gpu unit (schema-0010.ts). */
  required_gpu_count: number;
  gpu_models: string[];
  min_compute_capability: string;
  min_cuda_version: string;
  node_id: string | null;
  /** The first of `gpu_indexes`; -1 for none. */
  gpu_index: number;
  /** Every GPU of its node the unit holds while placed (schema-0011.ts); empty for a cpu unit or one not on a node. */
  gpu_indexes: number[];
  assignment_id: string | null;
  leader_term: number | null;
  excluded_node_ids: string[];
  unschedulable_reason: string;
  exit_code: number | null;
  error: string;
  run_seconds: number;
  created_at: Date;
  ready_at: Date | null;
  assigned_at: Date | null;
  started_at: Date | null;
  finished_at: Date | null;
}

/** An artifacts row. */
export interface ArtifactRow {
  id: string;
  job_id: string;
  compute_unit_id: string;
  customer_id: string;
  attempt: number;
  kind: "checkpoint" | "metrics" | "logs" | "other";
  name: string;
  size_bytes: number;
  sha256: string;
  blob_key: string;
  created_at: Date;
  /** Set when retention removed its bytes (src/blobs/storage-sweeper.ts). */
  expired_at: Date | null;
}

/** Inserts a job. */
export async function insertJob(
  sql: Sql,
  job: Omit<JobRow, "status" | "progress" | "error" | "metrics" | "created_at" | "started_at" | "finished_at" | JobGpuColumns | "queue_timeout_seconds" | "pending_reason">,
  now: Date,
  /** Absent: one GPU, any model, the default queue timeout (a day). */
  asks: { gpu?: StoredGpuNeeds; queueTimeoutSeconds?: number } = {},
): Promise<JobRow> {
  const gpu = asks.gpu ?? { gpuCount: 1, gpuModels: [], minComputeCapability: "", minCudaVersion: "" };
  const [row] = await sql.query<JobRow>(
    `INSERT INTO training_jobs (id, customer_id, name, dataset_id, training_package_id, status, required_vram_mb,
       required_disk_mb, max_runtime_seconds, sensitivity, projected_cost_credits, created_at,
       required_gpu_count, gpu_models, min_compute_capability, min_cuda_version, queue_timeout_seconds)
     VALUES ($1, $2, $3, $4, $5, 'queued', $6, $7, $8, $9, $10, $11, $12, $13::text[], $14, $15, $16) RETURNING *`,
    [
      job.id,
      job.customer_id,
      job.name,
      job.dataset_id,
      job.training_package_id,
      job.required_vram_mb,
      job.required_disk_mb,
      job.max_runtime_seconds,
      job.sensitivity,
      job.projected_cost_credits,
      now,
      gpu.gpuCount,
      [...gpu.gpuModels],
      gpu.minComputeCapability,
      gpu.minCudaVersion,
      asks.queueTimeoutSeconds ?? 86_400,
    ],
  );
  return row!;
}

/** The job columns of {@link StoredGpuNeeds}. */
type JobGpuColumns = "required_gpu_count" | "gpu_models" | "min_compute_capability" | "min_cuda_version";

/** Inserts one planned unit. Units without dependencies start ready. */
export async function insertUnit(
  sql: Sql,
  unit: {
    id: string;
    jobId: string;
    customerId: string;
    name: string;
    planIndex: number;
    kind: "cpu" | "gpu";
    dependsOn: readonly string[];
    entrypoint: string;
    args: readonly string[];
    vramMb: number;
    diskMb: number;
    cpuCores: number;
    memoryMb: number;
    maxAttempts: number;
    /** Absent: one GPU for a gpu unit, none for a cpu unit, no constraints. */
    gpu?: StoredGpuNeeds;
  },
  now: Date,
): Promise<void> {
  const ready = unit.dependsOn.length === 0;
  const gpu = unit.gpu ?? { gpuCount: unit.kind === "gpu" ? 1 : 0, gpuModels: [], minComputeCapability: "", minCudaVersion: "" };
  await sql.query(
    `INSERT INTO compute_units (id, job_id, customer_id, name, kind, depends_on, status, attempt, max_attempts, entrypoint, args,
       required_vram_mb, required_disk_mb, required_cpu_cores, required_memory_mb, created_at, ready_at, plan_index,
       required_gpu_count, gpu_models, min_compute_capability, min_cuda_version)
     VALUES ($1, $2, $3, $4, $5, $6::text[], $7, 1, $8, $9, $10::text[], $11, $12, $13, $14, $15, $16, $17, $18, $19::text[], $20, $21)`,
    [
      unit.id,
      unit.jobId,
      unit.customerId,
      unit.name,
      unit.kind,
      unit.dependsOn,
      ready ? "ready" : "pending",
      unit.maxAttempts,
      unit.entrypoint,
      unit.args,
      unit.vramMb,
      unit.diskMb,
      unit.cpuCores,
      unit.memoryMb,
      now,
      ready ? now : null,
      unit.planIndex,
      gpu.gpuCount,
      [...gpu.gpuModels],
      gpu.minComputeCapability,
      gpu.minCudaVersion,
    ],
  );
}

/** One of this customer's jobs. */
export async function findJob(sql: Sql, customerId: string, id: string): Promise<JobRow | undefined> {
  const [row] = await sql.query<JobRow>(`SELECT * FROM training_jobs WHERE id = $1 AND customer_id = $2`, [id, customerId]);
  return row;
}

/** A job by id, any customer (control plane internal). */
export async function findJobById(sql: Sql, id: string): Promise<JobRow | undefined> {
  const [row] = await sql.query<JobRow>(`SELECT * FROM training_jobs WHERE id = $1`, [id]);
  return row;
}

/** Counts used by the limits: creations in the last minute, active jobs, units created since the UTC day began. */
export async function customerJobCounts(
  sql: Sql,
  customerId: string,
  now: Date,
): Promise<{ createdLastMinute: number; active: number; unitsToday: number; oldestInWindow: Date | null }> {
  // One round trip, and each count is an index range of this customer (not a scan of all their jobs).
  const [row] = await sql.query<{ created_last_minute: number; active: number; oldest_in_window: Date | null; units_today: number }>(
    `SELECT (SELECT count(*)::int FROM training_jobs WHERE customer_id = $1 AND created_at > $2::timestamptz - interval '60 seconds') AS created_last_minute,
            (SELECT min(created_at) FROM training_jobs WHERE customer_id = $1 AND created_at > $2::timestamptz - interval '60 seconds') AS oldest_in_window,
            (SELECT count(*)::int FROM training_jobs WHERE customer_id = $1 AND status IN ${activeJobStatusSql}) AS active,
            (SELECT count(*)::int FROM compute_units
              WHERE customer_id = $1 AND created_at >= date_trunc('day', $2::timestamptz AT TIME ZONE 'UTC') AT TIME ZONE 'UTC') AS units_today`,
    [customerId, now],
  );
  return {
    createdLastMinute: row?.created_last_minute ?? 0,
    active: row?.active ?? 0,
    unitsToday: row?.units_today ?? 0,
    oldestInWindow: row?.oldest_in_window ?? null,
  };
}

/** Units of a job in plan order. */
export async function listUnitsOfJob(sql: Sql, jobId: string): Promise<UnitRow[]> {
  return sql.query<UnitRow>(`SELECT * FROM compute_units WHERE job_id = $1 ORDER BY plan_index, id`, [jobId]);
}

/** A unit by id, with row lock when asked (for transitions). */
export async function findUnit(sql: Sql, id: string, forUpdate = false): Promise<UnitRow | undefined> {
  const [row] = await sql.query<UnitRow>(`SELECT * FROM compute_units WHERE id = $1${forUpdate ? " FOR UPDATE" : ""}`, [id]);
  return row;
}

/** Locks a job row for a transition. */
export async function lockJob(sql: Sql, id: string): Promise<JobRow | undefined> {
  const [row] = await sql.query<JobRow>(`SELECT * FROM training_jobs WHERE id = $1 FOR UPDATE`, [id]);
  return row;
}

/** Artifacts of a job, oldest first. */
export async function listArtifactsOfJob(sql: Sql, jobId: string, limit: number, after?: { at: Date; id: string }): Promise<ArtifactRow[]> {
  return after === undefined
    ? sql.query<ArtifactRow>(`SELECT * FROM artifacts WHERE job_id = $1 ORDER BY created_at, id LIMIT $2`, [jobId, limit])
    : sql.query<ArtifactRow>(
        `SELECT * FROM artifacts WHERE job_id = $1 AND (created_at, id) > ($3, $4) ORDER BY created_at, id LIMIT $2`,
        [jobId, limit, after.at, after.id],
      );
}

/** The artifacts a unit produced in the attempt that completed it (inputs of its dependents). */
export async function listArtifactsOfUnits(sql: Sql, unitIds: readonly string[]): Promise<ArtifactRow[]> {
  if (unitIds.length === 0) return [];
  return sql.query<ArtifactRow>(
    `SELECT a.* FROM artifacts a JOIN compute_units u ON u.id = a.compute_unit_id AND u.attempt = a.attempt
     WHERE a.compute_unit_id = ANY($1::uuid[]) ORDER BY a.created_at, a.id`,
    [unitIds],
  );
}

/** One artifact of one job of this customer. */
export async function findArtifact(sql: Sql, customerId: string, jobId: string, id: string): Promise<ArtifactRow | undefined> {
  const [row] = await sql.query<ArtifactRow>(`SELECT * FROM artifacts WHERE id = $1 AND job_id = $2 AND customer_id = $3`, [
    id,
    jobId,
    customerId,
  ]);
  return row;
}

/** Records an artifact once per (unit, attempt, name). */
export async function insertArtifactOnce(sql: Sql, row: Omit<ArtifactRow, "created_at" | "expired_at">, now: Date): Promise<boolean> {
  const inserted = await sql.query(
    `INSERT INTO artifacts (id, job_id, compute_unit_id, customer_id, attempt, kind, name, size_bytes, sha256, blob_key, created_at)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
     ON CONFLICT (compute_unit_id, attempt, name) DO NOTHING RETURNING id`,
    [row.id, row.job_id, row.compute_unit_id, row.customer_id, row.attempt, row.kind, row.name, row.size_bytes, row.sha256, row.blob_key, now],
  );
  return inserted.length === 1;
}

/** Credits debited per unit of a job. */
export async function creditsDebitedByUnit(sql: Sql, jobId: string): Promise<Map<string, number>> {
  const rows = await sql.query<{ compute_unit_id: string; total: number }>(
    `SELECT compute_unit_id, (-sum(amount))::bigint AS total FROM ledger_entries WHERE job_id = $1 AND kind = 'debit' GROUP BY compute_unit_id`,
    [jobId],
  );
  return new Map(rows.map((r) => [r.compute_unit_id, r.total]));
}

/** Idempotency record of (customer, key). */
export async function findIdempotencyRecord(
  sql: Sql,
  customerId: string,
  key: string,
): Promise<{ request_hash: string; job_id: string } | undefined> {
  const [row] = await sql.query<{ request_hash: string; job_id: string }>(
    `SELECT request_hash, job_id FROM idempotency_records WHERE customer_id = $1 AND key = $2`,
    [customerId, key],
  );
  return row;
}

/** Stores an idempotency record; the primary key makes a concurrent duplicate fail. */
export async function insertIdempotencyRecord(sql: Sql, customerId: string, key: string, requestHash: string, jobId: string, now: Date): Promise<void> {
  await sql.query(`INSERT INTO idempotency_records (customer_id, key, request_hash, job_id, created_at) VALUES ($1, $2, $3, $4, $5)`, [
    customerId,
    key,
    requestHash,
    jobId,
    now,
  ]);
}

/**
 * Credits the customer's active jobs may still spend: each job's projected
 * cost less what it has been debited so far. A new job must fit in the balance
 * left after these, or several jobs could together spend more than it.
 * Returned with the customer's balance, in one round trip.
 */
export async function creditsAndReserved(sql: Sql, customerId: string): Promise<{ balance: number; reserved: number }> {
  const [row] = await sql.query<{ balance: number; reserved: number }>(
    `SELECT (SELECT COALESCE(sum(amount), 0)::bigint FROM ledger_entries WHERE customer_id = $1) AS balance,
            (SELECT COALESCE(sum(GREATEST(j.projected_cost_credits - COALESCE(d.debited, 0), 0)), 0)::bigint
               FROM training_jobs j
               LEFT JOIN (SELECT job_id, -sum(amount) AS debited FROM ledger_entries WHERE customer_id = $1 AND kind = 'debit' GROUP BY job_id) d
                 ON d.job_id = j.id
              WHERE j.customer_id = $1 AND j.status IN ${activeJobStatusSql}) AS reserved`,
    [customerId],
  );
  return { balance: row?.balance ?? 0, reserved: row?.reserved ?? 0 };
}

/** A job with the counters its API view shows, read in one query. */
export interface JobViewRow extends JobRow {
  compute_unit_count: number;
  compute_units_completed: number;
  credits_debited: number;
}

const jobViewColumns = `j.*,
  (SELECT count(*)::int FROM compute_units u WHERE u.job_id = j.id) AS compute_unit_count,
  (SELECT count(*)::int FROM compute_units u WHERE u.job_id = j.id AND u.status = 'completed') AS compute_units_completed,
  (SELECT COALESCE(-sum(l.amount), 0)::bigint FROM ledger_entries l WHERE l.job_id = j.id AND l.kind = 'debit') AS credits_debited`;

/** One of this customer's jobs with its counters. */
export async function findJobView(sql: Sql, customerId: string, id: string): Promise<JobViewRow | undefined> {
  const [row] = await sql.query<JobViewRow>(`SELECT ${jobViewColumns} FROM training_jobs j WHERE j.id = $1 AND j.customer_id = $2`, [id, customerId]);
  return row;
}

/** A customer's jobs with their counters, newest first, optionally by status. */
export async function listJobViews(
  sql: Sql,
  customerId: string,
  limit: number,
  status: string | undefined,
  after?: { at: Date; id: string },
): Promise<JobViewRow[]> {
  const params: unknown[] = [customerId, limit];
  let where = `j.customer_id = $1`;
  if (status !== undefined) {
    params.push(status);
    where += ` AND j.status = $${params.length}`;
  }
  if (after !== undefined) {
    params.push(after.at, after.id);
    where += ` AND (j.created_at, j.id) < ($${params.length - 1}, $${params.length})`;
  }
  return sql.query<JobViewRow>(`SELECT ${jobViewColumns} FROM training_jobs j WHERE ${where} ORDER BY j.created_at DESC, j.id DESC LIMIT $2`, params);
}

/** How one attempt's Python environment was prepared, as its node reported it in Finished. */
export interface AttemptEnvBuild {
  /** Seconds spent building it, or waiting for another unit's build of it; 0 when it was cached or none was needed. */
  seconds: number;
  /** True when this attempt built it (false: cached, another unit's build awaited, none needed, or the build failed). */
  built: boolean;
}

/** Records the environment build of a finished attempt once; a replayed Finished changes nothing. */
export async function recordAttemptEnvBuild(sql: Sql, unit: { unitId: string; attempt: number }, build: AttemptEnvBuild): Promise<boolean> {
  const inserted = await sql.query(
    `INSERT INTO unit_env_builds (unit_id, attempt, env_build_seconds, env_built) VALUES ($1, $2, $3, $4)
     ON CONFLICT (unit_id, attempt) DO NOTHING RETURNING unit_id`,
    [unit.unitId, unit.attempt, build.seconds, build.built],
  );
  return inserted.length === 1;
}

/** The environment build of each unit's latest finished attempt, for the units of a job that have one. */
export async function latestEnvBuildsByUnit(sql: Sql, jobId: string): Promise<Map<string, AttemptEnvBuild>> {
  const rows = await sql.query<{ unit_id: string; env_build_seconds: number; env_built: boolean }>(
    `SELECT DISTINCT ON (b.unit_id) b.unit_id, b.env_build_seconds, b.env_built
     FROM unit_env_builds b JOIN compute_units u ON u.id = b.unit_id
     WHERE u.job_id = $1 ORDER BY b.unit_id, b.attempt DESC`,
    [jobId],
  );
  return new Map(rows.map((r) => [r.unit_id, { seconds: r.env_build_seconds, built: r.env_built }]));
}

/** A unit not yet handed to a node, with what it asks: the placement cycle's stage gating reads these. */
export type WaitingUnitNeedsRow = Pick<
  UnitRow,
  | "job_id"
  | "name"
  | "kind"
  | "required_vram_mb"
  | "required_disk_mb"
  | "required_cpu_cores"
  | "required_memory_mb"
  | "required_gpu_count"
  | "gpu_models"
  | "min_compute_capability"
  | "min_cuda_version"
> &
  Pick<JobRow, "sensitivity">;

/** The waiting (pending or ready) units of these jobs, in plan order. */
export async function listWaitingUnitNeeds(sql: Sql, jobIds: readonly string[]): Promise<WaitingUnitNeedsRow[]> {
  if (jobIds.length === 0) return [];
  return sql.query<WaitingUnitNeedsRow>(
    `SELECT u.job_id, u.name, u.kind, u.required_vram_mb, u.required_disk_mb, u.required_cpu_cores, u.required_memory_mb,
            u.required_gpu_count, u.gpu_models, u.min_compute_capability, u.min_cuda_version, j.sensitivity
     FROM compute_units u JOIN training_jobs j ON j.id = u.job_id
     WHERE u.job_id = ANY($1::uuid[]) AND u.status IN ${sqlStatusList(waitingUnitStatuses)}
     ORDER BY u.job_id, u.plan_index`,
    [jobIds],
  );
}

/**
 * Sets why each queued job waits (a job that started, or ended, keeps "" / what it had), and stages a
 * job event for each job whose reason changed, so a watch shows the new reason without a re-read;
 * returns the ids of those jobs, whose cached views must be forgotten.
 *
 * The placement cycle calls it last in its transaction, holding the units it assigned, while a cancel
 * locks its job and then the job's units: a job row another transaction holds is skipped, not waited
 * for (it would deadlock, and PostgreSQL would fail one of the two; the cancel answered 500). Its
 * reason is written by a later cycle, if it is still queued.
 */
export async function setPendingReasons(sql: Sql, reasons: ReadonlyMap<string, string>): Promise<string[]> {
  if (reasons.size === 0) return [];
  const ids = [...reasons.keys()];
  const rows = await sql.query<{ id: string }>(
    `UPDATE training_jobs j SET pending_reason = r.reason
     FROM unnest($1::uuid[], $2::text[]) AS r(id, reason)
     WHERE j.id = r.id AND j.status = 'queued' AND j.pending_reason IS DISTINCT FROM r.reason
       AND j.id IN (SELECT id FROM training_jobs WHERE id = ANY($1::uuid[]) AND status = 'queued' FOR UPDATE SKIP LOCKED)
     RETURNING j.id`,
    [ids, ids.map((id) => reasons.get(id)!.slice(0, 500))],
  );
  for (const r of rows) await stageJobEvent(sql, { type: "job", jobId: r.id });
  return rows.map((r) => r.id);
}
