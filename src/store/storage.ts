/**
 * SQL for what customers store beyond a single upload's row: the lock and the
 * usage reads behind the storage quotas, artifact retention, the per-attempt
 * artifact reservation, and the queue of blobs to delete (schema-0006.ts).
 */
import type { Sql } from "./database.ts";
import { sqlStatusList, terminalJobStatuses, unitsOnNodeStatuses } from "./state-machines.ts";
import type { StorageUsage } from "./uploads.ts";

/**
 * Serialises one customer's storage decisions (every quota check and the write it allows), so a
 * quota holds exactly across requests and replicas. `FOR NO KEY UPDATE` rather than `FOR UPDATE`:
 * it still excludes job creation's lock and every other quota decision, but not the key-share
 * locks that rows referencing the customer take, so an agent's transaction that records an
 * artifact never waits in a cycle with one that records a debit.
 */
export async function lockCustomerStorage(sql: Sql, customerId: string): Promise<void> {
  await sql.query(`SELECT id FROM customers WHERE id = $1 FOR NO KEY UPDATE`, [customerId]);
}

/**
 * The customer's artifacts that count against the quota: every one not expired, and the checkpoint files
 * of jobs whose artifacts are kept (schema-0012.ts: a unit's latest, and any on its way).
 */
export async function artifactUsage(sql: Sql, customerId: string): Promise<StorageUsage> {
  const [row] = await sql.query<StorageUsage>(
    `SELECT (a.count + c.count)::int AS count, (a.bytes + c.bytes)::bigint AS bytes FROM
       (SELECT count(*) AS count, COALESCE(sum(size_bytes), 0) AS bytes FROM artifacts WHERE customer_id = $1 AND expired_at IS NULL) a,
       (SELECT count(*) AS count, COALESCE(sum(u.size_bytes), 0) AS bytes FROM unit_checkpoint_uploads u JOIN training_jobs j ON j.id = u.job_id
        WHERE u.customer_id = $1 AND j.artifacts_expired_at IS NULL) c`,
    [customerId],
  );
  return row ?? { count: 0, bytes: 0 };
}

/** Whether this (unit, attempt, name) was recorded already (a resent ArtifactReady). */
export async function artifactRecorded(sql: Sql, unitId: string, attempt: number, name: string): Promise<boolean> {
  const rows = await sql.query(`SELECT 1 FROM artifacts WHERE compute_unit_id = $1 AND attempt = $2 AND name = $3`, [unitId, attempt, name]);
  return rows.length === 1;
}

/** When an artifact was expired by retention, by its (unit, attempt, name); undefined when it is not recorded or still kept. */
export async function artifactExpiredAt(sql: Sql, unitId: string, attempt: number, name: string): Promise<Date | undefined> {
  const [row] = await sql.query<{ expired_at: Date | null }>(
    `SELECT expired_at FROM artifacts WHERE compute_unit_id = $1 AND attempt = $2 AND name = $3`,
    [unitId, attempt, name],
  );
  return row?.expired_at ?? undefined;
}

/**
 * The customer of a unit attempt that `nodeId` may upload artifacts for, or undefined: the unit's current
 * attempt on that node, assigned or running; or one that ended there cancelled or failed at or after
 * `endedSince` (the outputs of a killed run are still worth keeping), while its job's artifacts are kept.
 * A completed attempt takes none: its dependents read its artifacts as they were when it completed.
 */
export async function attemptTakingArtifacts(
  sql: Sql,
  attempt: { unitId: string; attempt: number; nodeId: string },
  endedSince: Date,
): Promise<{ customerId: string } | undefined> {
  const [row] = await sql.query<{ customer_id: string }>(
    `SELECT u.customer_id FROM compute_units u JOIN training_jobs j ON j.id = u.job_id
     WHERE u.id = $1 AND u.attempt = $2 AND u.node_id = $3
       AND (u.status IN ${sqlStatusList(unitsOnNodeStatuses)}
         OR (u.status IN ${sqlStatusList(["cancelled", "failed"])} AND u.finished_at >= $4 AND j.artifacts_expired_at IS NULL))`,
    [attempt.unitId, attempt.attempt, attempt.nodeId, endedSince],
  );
  return row === undefined ? undefined : { customerId: row.customer_id };
}

/**
 * Whether retention removed the job's artifacts, holding the job so a sweep cannot remove them
 * until the caller's transaction ends (the sweep skips the jobs others hold).
 */
export async function lockJobArtifactsKept(sql: Sql, jobId: string): Promise<boolean> {
  const [row] = await sql.query<{ artifacts_expired_at: Date | null }>(`SELECT artifacts_expired_at FROM training_jobs WHERE id = $1 FOR SHARE`, [jobId]);
  return row !== undefined && row.artifacts_expired_at === null;
}

/**
 * Reserves `bytes` of an attempt's artifact bound before its upload is stored. One statement, so
 * parallel uploads of one attempt can never together pass `maxBytes`. False when they would.
 */
export async function reserveUnitArtifactBytes(sql: Sql, unitId: string, attempt: number, bytes: number, maxBytes: number): Promise<boolean> {
  if (bytes > maxBytes) return false;
  const rows = await sql.query(
    `INSERT INTO unit_artifact_bytes (compute_unit_id, attempt, bytes) VALUES ($1, $2, $3)
     ON CONFLICT (compute_unit_id, attempt) DO UPDATE SET bytes = unit_artifact_bytes.bytes + EXCLUDED.bytes
       WHERE unit_artifact_bytes.bytes + EXCLUDED.bytes <= $4
     RETURNING bytes`,
    [unitId, attempt, bytes, maxBytes],
  );
  return rows.length === 1;
}

/** Gives reserved bytes back (a failed upload, or a blob an upload replaced). */
export async function releaseUnitArtifactBytes(sql: Sql, unitId: string, attempt: number, bytes: number): Promise<void> {
  if (bytes <= 0) return;
  await sql.query(`UPDATE unit_artifact_bytes SET bytes = GREATEST(0, bytes - $3) WHERE compute_unit_id = $1 AND attempt = $2`, [unitId, attempt, bytes]);
}

/** Queues a blob (or, for a key ending in "/", a prefix) for removal; part of the transaction that made it unneeded. */
export async function requestBlobDeletion(sql: Sql, blobKey: string, now: Date): Promise<void> {
  await sql.query(`INSERT INTO blob_deletions (blob_key, requested_at) VALUES ($1, $2) ON CONFLICT (blob_key) DO NOTHING`, [blobKey, now]);
}

/** Forgets a queued deletion whose bytes are gone. */
export async function forgetBlobDeletion(sql: Sql, blobKey: string): Promise<void> {
  await sql.query(`DELETE FROM blob_deletions WHERE blob_key = $1`, [blobKey]);
}

/** Claims up to `limit` queued deletions, oldest first; rows another replica holds are skipped. */
export async function claimBlobDeletions(sql: Sql, limit: number): Promise<string[]> {
  const rows = await sql.query<{ blob_key: string }>(
    `SELECT blob_key FROM blob_deletions ORDER BY requested_at, blob_key LIMIT $1 FOR UPDATE SKIP LOCKED`,
    [limit],
  );
  return rows.map((r) => r.blob_key);
}

/** Queued deletions (operators, tests). */
export async function pendingBlobDeletions(sql: Sql): Promise<number> {
  const [row] = await sql.query<{ n: number }>(`SELECT count(*)::int AS n FROM blob_deletions`);
  return row?.n ?? 0;
}

/**
 * Applies artifact retention to up to `limit` jobs that ended at or before `cutoff` and were not
 * swept yet: their artifacts are marked expired (they stop counting against the quota; downloads
 * answer ARTIFACT_EXPIRED), and everything each of their units uploaded — recorded or not — is
 * queued for deletion. Jobs another replica is sweeping are skipped.
 */
export async function expireArtifactsOfEndedJobs(sql: Sql, cutoff: Date, now: Date, limit: number): Promise<{ jobs: number; artifacts: number }> {
  const jobs = await sql.query<{ id: string }>(
    `SELECT id FROM training_jobs
     WHERE finished_at IS NOT NULL AND finished_at <= $1 AND artifacts_expired_at IS NULL
       AND status IN ${sqlStatusList(terminalJobStatuses)}
     ORDER BY finished_at, id LIMIT $2 FOR UPDATE SKIP LOCKED`,
    [cutoff, limit],
  );
  if (jobs.length === 0) return { jobs: 0, artifacts: 0 };
  const ids = jobs.map((j) => j.id);
  const expired = await sql.query(`UPDATE artifacts SET expired_at = $2 WHERE job_id = ANY($1::uuid[]) AND expired_at IS NULL RETURNING id`, [ids, now]);
  await sql.query(`UPDATE training_jobs SET artifacts_expired_at = $2 WHERE id = ANY($1::uuid[])`, [ids, now]);
  // The unit's whole prefix (artifactBlobKey: artifacts/<unit>/<attempt>/<name>): what a node uploaded but never announced goes too.
  await sql.query(
    `INSERT INTO blob_deletions (blob_key, requested_at)
     SELECT 'artifacts/' || id::text || '/', $2 FROM compute_units WHERE job_id = ANY($1::uuid[])
     ON CONFLICT (blob_key) DO NOTHING`,
    [ids, now],
  );
  await sql.query(`DELETE FROM unit_artifact_bytes WHERE compute_unit_id IN (SELECT id FROM compute_units WHERE job_id = ANY($1::uuid[]))`, [ids]);
  return { jobs: ids.length, artifacts: expired.length };
}
