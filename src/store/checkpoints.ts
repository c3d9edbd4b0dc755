/**
 * SQL of checkpoints and of a unit's attempts (migrations/schema-0012.ts): the files nodes stored, each
 * unit's latest checkpoint, and the record of every attempt with what it resumed from. When these are
 * written is decided in src/jobs/lifecycle.ts and src/blobs/unit-checkpoints.ts.
 */
import type { Sql } from "./database.ts";
import { sqlStatusList, unitsOnNodeStatuses } from "./state-machines.ts";
import { requestBlobDeletion } from "./storage.ts";

/** A checkpoint file a node stored for an attempt. */
export interface CheckpointUploadRow {
  blob_key: string;
  unit_id: string;
  job_id: string;
  customer_id: string;
  attempt: number;
  name: string;
  size_bytes: number;
  sha256: string;
  stored_at: Date;
}

/** A unit's latest checkpoint. */
export interface CheckpointRow {
  unit_id: string;
  attempt: number;
  name: string;
  size_bytes: number;
  sha256: string;
  metrics: Record<string, number>;
  blob_key: string;
  created_at: Date;
}

/** How an attempt ended, as the customer reads it ("lost": its node failed it). */
export type AttemptEnd = "completed" | "failed" | "cancelled" | "lost";

/** One attempt's record. Columns are null where the attempt has not got that far (or is only planned to resume). */
export interface AttemptRow {
  unit_id: string;
  attempt: number;
  node_id: string | null;
  status: AttemptEnd | null;
  assigned_at: Date | null;
  started_at: Date | null;
  finished_at: Date | null;
  error: string;
  run_seconds: number;
  resumed_from_attempt: number | null;
  resumed_from_checkpoint: string | null;
  resumed_from_metrics: Record<string, number> | null;
  resume_blob_key: string | null;
  resume_sha256: string | null;
  resume_size_bytes: number | null;
}

/** Records a stored checkpoint file (its blob key is its own: a replayed store writes another row). */
export async function insertCheckpointUpload(sql: Sql, row: CheckpointUploadRow): Promise<void> {
  await sql.query(
    `INSERT INTO unit_checkpoint_uploads (blob_key, unit_id, job_id, customer_id, attempt, name, size_bytes, sha256, stored_at)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (blob_key) DO NOTHING`,
    [row.blob_key, row.unit_id, row.job_id, row.customer_id, row.attempt, row.name, row.size_bytes, row.sha256, row.stored_at],
  );
}

/** Stored files of an attempt that are not the unit's latest checkpoint (uploads not yet announced). */
export async function countUnrecordedCheckpointUploads(sql: Sql, unitId: string, attempt: number): Promise<number> {
  const [row] = await sql.query<{ n: number }>(
    `SELECT count(*)::int AS n FROM unit_checkpoint_uploads u
     WHERE u.unit_id = $1 AND u.attempt = $2 AND NOT EXISTS (SELECT 1 FROM unit_checkpoints c WHERE c.unit_id = u.unit_id AND c.blob_key = u.blob_key)`,
    [unitId, attempt],
  );
  return row?.n ?? 0;
}

/** The newest stored file of (unit, attempt, name) with these bytes, if any is still kept. */
export async function findCheckpointUpload(sql: Sql, ref: { unitId: string; attempt: number; name: string; sha256: string }): Promise<CheckpointUploadRow | undefined> {
  const [row] = await sql.query<CheckpointUploadRow>(
    `SELECT * FROM unit_checkpoint_uploads WHERE unit_id = $1 AND attempt = $2 AND name = $3 AND sha256 = $4 ORDER BY stored_at DESC LIMIT 1`,
    [ref.unitId, ref.attempt, ref.name, ref.sha256],
  );
  return row;
}

/** The unit's latest checkpoint. */
export async function findLatestCheckpoint(sql: Sql, unitId: string): Promise<CheckpointRow | undefined> {
  const [row] = await sql.query<CheckpointRow>(`SELECT * FROM unit_checkpoints WHERE unit_id = $1`, [unitId]);
  return row;
}

/** Forgets uploads of the unit and queues their bytes for deletion; `keep` (a blob key) and files stored after `storedAfter` stay. */
async function deleteUploads(sql: Sql, unitId: string, now: Date, keep?: { blobKey: string; storedAfter: Date }): Promise<void> {
  const removed = await sql.query<{ blob_key: string }>(
    `DELETE FROM unit_checkpoint_uploads WHERE unit_id = $1 AND ($2::text IS NULL OR (blob_key <> $2 AND stored_at <= $3)) RETURNING blob_key`,
    [unitId, keep?.blobKey ?? null, keep?.storedAfter ?? null],
  );
  for (const r of removed) await requestBlobDeletion(sql, r.blob_key, now);
}

/**
 * Makes `upload` the unit's latest checkpoint, with the metrics announced with it, and deletes the files it
 * supersedes (stored no later than it; a newer file still on its way stays). False when it is the latest
 * already (a replayed announcement): nothing changes.
 */
export async function recordLatestCheckpoint(sql: Sql, upload: CheckpointUploadRow, metrics: Record<string, number>, now: Date): Promise<boolean> {
  const changed = await sql.query(
    `INSERT INTO unit_checkpoints (unit_id, attempt, name, size_bytes, sha256, metrics, blob_key, created_at)
     VALUES ($1, $2, $3, $4, $5, $6::jsonb, $7, $8)
     ON CONFLICT (unit_id) DO UPDATE SET attempt = EXCLUDED.attempt, name = EXCLUDED.name, size_bytes = EXCLUDED.size_bytes,
       sha256 = EXCLUDED.sha256, metrics = EXCLUDED.metrics, blob_key = EXCLUDED.blob_key, created_at = EXCLUDED.created_at
       WHERE unit_checkpoints.blob_key <> EXCLUDED.blob_key
     RETURNING unit_id`,
    [upload.unit_id, upload.attempt, upload.name, upload.size_bytes, upload.sha256, JSON.stringify(metrics), upload.blob_key, now],
  );
  if (changed.length === 0) return false;
  await deleteUploads(sql, upload.unit_id, now, { blobKey: upload.blob_key, storedAfter: upload.stored_at });
  return true;
}

/** Drops every checkpoint of the unit (its latest and any file on its way): the next attempt starts fresh. */
export async function dropCheckpoints(sql: Sql, unitId: string, now: Date): Promise<void> {
  await sql.query(`DELETE FROM unit_checkpoints WHERE unit_id = $1`, [unitId]);
  await deleteUploads(sql, unitId, now);
}

/** The attempt's node accepted it: when it started (a replay keeps the first time). */
export async function recordAttemptStarted(sql: Sql, a: { unitId: string; attempt: number; nodeId: string; assignedAt: Date | null; startedAt: Date }): Promise<void> {
  await sql.query(
    `INSERT INTO unit_attempts (unit_id, attempt, node_id, assigned_at, started_at) VALUES ($1, $2, $3, $4, $5)
     ON CONFLICT (unit_id, attempt) DO UPDATE SET node_id = EXCLUDED.node_id, assigned_at = EXCLUDED.assigned_at,
       started_at = COALESCE(unit_attempts.started_at, EXCLUDED.started_at)`,
    [a.unitId, a.attempt, a.nodeId, a.assignedAt, a.startedAt],
  );
}

/** How an attempt ended. */
export interface AttemptEnded {
  unitId: string;
  attempt: number;
  nodeId: string | null;
  assignedAt: Date | null;
  status: AttemptEnd;
  error: string;
  runSeconds: number;
  finishedAt: Date;
}

/** The attempt ended; the first end recorded stands (a replayed event changes nothing). */
export async function recordAttemptEnded(sql: Sql, a: AttemptEnded): Promise<void> {
  await sql.query(
    `INSERT INTO unit_attempts (unit_id, attempt, node_id, status, assigned_at, finished_at, error, run_seconds)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
     ON CONFLICT (unit_id, attempt) DO UPDATE SET node_id = COALESCE(unit_attempts.node_id, EXCLUDED.node_id),
       status = EXCLUDED.status, assigned_at = COALESCE(unit_attempts.assigned_at, EXCLUDED.assigned_at),
       finished_at = EXCLUDED.finished_at, error = EXCLUDED.error, run_seconds = EXCLUDED.run_seconds
     WHERE unit_attempts.status IS NULL`,
    [a.unitId, a.attempt, a.nodeId, a.status, a.assignedAt, a.finishedAt, a.error.slice(0, 2000), a.runSeconds],
  );
}

/**
 * The unit's next attempt resumes from its latest checkpoint, when it has one: written before that attempt is
 * placed, with the checkpoint copied into the attempt's record. Returns whether it will resume.
 */
export async function planResume(sql: Sql, unitId: string, nextAttempt: number): Promise<boolean> {
  const rows = await sql.query(
    `INSERT INTO unit_attempts (unit_id, attempt, resumed_from_attempt, resumed_from_checkpoint, resumed_from_metrics,
       resume_blob_key, resume_sha256, resume_size_bytes)
     SELECT unit_id, $2, attempt, name, metrics, blob_key, sha256, size_bytes FROM unit_checkpoints WHERE unit_id = $1
     ON CONFLICT (unit_id, attempt) DO NOTHING RETURNING unit_id`,
    [unitId, nextAttempt],
  );
  return rows.length === 1;
}

/** The record of one attempt. */
export async function findAttempt(sql: Sql, unitId: string, attempt: number): Promise<AttemptRow | undefined> {
  const [row] = await sql.query<AttemptRow>(`SELECT * FROM unit_attempts WHERE unit_id = $1 AND attempt = $2`, [unitId, attempt]);
  return row;
}

/** Every attempt record of a job's units, by unit then attempt. */
export async function listAttemptsOfJob(sql: Sql, jobId: string): Promise<AttemptRow[]> {
  return sql.query<AttemptRow>(
    `SELECT a.* FROM unit_attempts a JOIN compute_units u ON u.id = a.unit_id WHERE u.job_id = $1 ORDER BY a.unit_id, a.attempt`,
    [jobId],
  );
}

/** The latest checkpoint of each unit of a job that has one. */
export async function listLatestCheckpointsOfJob(sql: Sql, jobId: string): Promise<CheckpointRow[]> {
  return sql.query<CheckpointRow>(`SELECT c.* FROM unit_checkpoints c JOIN compute_units u ON u.id = c.unit_id WHERE u.job_id = $1`, [jobId]);
}

/**
 * The job and customer of a unit attempt that `nodeId` may store checkpoints for: the unit's current attempt,
 * on that node, assigned or running. An ended attempt stores none (no later attempt resumes from it).
 */
export async function attemptTakingCheckpoints(
  sql: Sql,
  attempt: { unitId: string; attempt: number; nodeId: string },
): Promise<{ jobId: string; customerId: string } | undefined> {
  const [row] = await sql.query<{ job_id: string; customer_id: string }>(
    `SELECT job_id, customer_id FROM compute_units WHERE id = $1 AND attempt = $2 AND node_id = $3 AND status IN ${sqlStatusList(unitsOnNodeStatuses)}`,
    [attempt.unitId, attempt.attempt, attempt.nodeId],
  );
  return row === undefined ? undefined : { jobId: row.job_id, customerId: row.customer_id };
}
