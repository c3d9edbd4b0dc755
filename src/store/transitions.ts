/**
 * The UPDATEs that move training jobs and compute units between statuses, and
 * the reads that pick what to move (a node's units: ./units-on-nodes.ts). When
 * a move happens is decided in src/jobs/lifecycle.ts; which moves exist is the
 * table in ./state-machines.ts.
 *
 * Two guards, both from that table. A function given the status its caller
 * read under the row's lock asserts the move first, so a move the table (or
 * the narrower set this operation moves from) does not allow throws
 * IllegalTransitionError rather than changing nothing. And every UPDATE names
 * the statuses it may move from in its WHERE, so a caller whose read was stale
 * still cannot make a move the table forbids.
 * Idempotency is the caller's part: it drops a late or replayed event (an old
 * attempt, another node) before it asks for a move.
 *
 * Every move that changes a row, and every progress report, stages an event for
 * the job's event log (./job-events.ts): what a customer watching the job sees.
 */
import type { Sql } from "./database.ts";
import { stageJobEvent } from "./job-events.ts";
import type { JobRow, UnitRow } from "./jobs.ts";
import type { UnitMove } from "./state-machines.ts";
import {
  activeJobStatusSql,
  assertJobTransition,
  assertUnitMove,
  jobStatusesInto,
  sqlStatusList,
  unitMove,
  unitsOnNodeStatuses,
} from "./state-machines.ts";

/** A unit as its caller read it under the row's lock: which row, and the status the move starts from. */
export type UnitAt = Pick<UnitRow, "id" | "status">;
/** A job as its caller read it under the row's lock. */
export type JobAt = Pick<JobRow, "id" | "status">;

const onNodeSql = sqlStatusList(unitsOnNodeStatuses);
const toRunning = unitMove("running");
/** Progress comes from the node holding the unit: an assigned one moves to running, a running one stays (not a move, so not in the table). */
const progressOf: UnitMove = { to: "running", from: unitsOnNodeStatuses, fromSql: onNodeSql };
/** A requeue takes a unit off its node; `pending → ready` is {@link readyPendingUnit}. */
const requeue = unitMove("ready", unitsOnNodeStatuses);
const readyFromPending = unitMove("ready", ["pending"]);
const toCompleted = unitMove("completed");
const toFailed = unitMove("failed");
/** Only the node holding a unit reports it stopped. */
const cancelledOnNode = unitMove("cancelled", unitsOnNodeStatuses);
const toCancelled = unitMove("cancelled");

/** True when the UPDATE moved the unit; stages its event then. */
async function unitMoved(sql: Sql, unitId: string, moved: readonly unknown[]): Promise<boolean> {
  if (moved.length !== 1) return false;
  await stageJobEvent(sql, { type: "unit", unitId });
  return true;
}

/** True when the UPDATE changed the job; stages its event then. */
async function jobChanged(sql: Sql, jobId: string, changed: readonly unknown[]): Promise<boolean> {
  if (changed.length !== 1) return false;
  await stageJobEvent(sql, { type: "job", jobId });
  return true;
}

/** An agent accepted the unit's assignment. */
export async function markUnitRunning(sql: Sql, unit: UnitAt, now: Date): Promise<boolean> {
  assertUnitMove(toRunning, unit.status);
  const moved = await sql.query(
    `UPDATE compute_units SET status = 'running', started_at = COALESCE(started_at, $2) WHERE id = $1 AND status IN ${toRunning.fromSql} RETURNING id`,
    [unit.id, now],
  );
  return unitMoved(sql, unit.id, moved);
}

/**
 * Progress of the attempt on its node; the first Progress of an assigned unit
 * also moves it to running (its Accepted may come later, or never).
 */
export async function recordUnitProgress(sql: Sql, unit: UnitAt, progress: number, metrics: Record<string, number>): Promise<boolean> {
  assertUnitMove(progressOf, unit.status);
  const moved = await sql.query(
    `UPDATE compute_units SET progress = $2, metrics = metrics || $3::jsonb,
       status = CASE WHEN status IN ${toRunning.fromSql} THEN 'running' ELSE status END
     WHERE id = $1 AND status IN ${progressOf.fromSql} RETURNING id`,
    [unit.id, progress, JSON.stringify(metrics)],
  );
  return unitMoved(sql, unit.id, moved);
}

/** How a unit goes back to the queue. */
export interface Requeue {
  /** The node to avoid from now on, if the attempt ended through it. */
  excludeNode: string | undefined;
  reason: string;
  /** Whether the attempt ended (attempt + 1) or never began (a Rejected assignment keeps it). */
  newAttempt: boolean;
  /** Whose fault the attempt's end was, for the failure counters; none for a Rejected assignment. */
  failure: "code" | "node" | undefined;
  /** The exit code the attempt ended with, if it ran; otherwise the column keeps its value. */
  exitCode: number | undefined;
  now: Date;
  /**
   * Keep the unit's `ready_at` (its place in the fair order) instead of restarting it at `now`: for an
   * assignment its node turned down only because it was busy, which is no reason to send the unit to the
   * back of its customer's queue.
   */
  keepReadySince?: boolean;
}

/** A unit taken off its node goes back to `ready`, to be placed again. */
export async function requeueUnit(sql: Sql, unit: UnitAt, how: Requeue): Promise<boolean> {
  assertUnitMove(requeue, unit.status);
  const moved = await sql.query(
    `UPDATE compute_units SET status = 'ready', node_id = NULL, gpu_index = -1, gpu_indexes = '{}', assignment_id = NULL, progress = 0,
       attempt = attempt + $2, error = $3, ready_at = CASE WHEN $9::boolean THEN COALESCE(ready_at, $7) ELSE $7 END,
       code_failures = code_failures + $5, node_failures = node_failures + $6,
       exit_code = COALESCE($8::integer, exit_code),
       excluded_node_ids = CASE WHEN $4::uuid IS NULL OR $4::uuid = ANY(excluded_node_ids) THEN excluded_node_ids
                                ELSE array_append(excluded_node_ids, $4::uuid) END
     WHERE id = $1 AND status IN ${requeue.fromSql} RETURNING id`,
    [
      unit.id,
      how.newAttempt ? 1 : 0,
      how.reason,
      how.excludeNode ?? null,
      how.failure === "code" ? 1 : 0,
      how.failure === "node" ? 1 : 0,
      how.now,
      how.exitCode ?? null,
      how.keepReadySince === true,
    ],
  );
  return unitMoved(sql, unit.id, moved);
}

/** A unit's attempt succeeded. */
export async function markUnitCompleted(sql: Sql, unit: UnitAt, now: Date, runSeconds: number): Promise<boolean> {
  assertUnitMove(toCompleted, unit.status);
  const moved = await sql.query(
    `UPDATE compute_units SET status = 'completed', progress = 1, finished_at = $2, exit_code = 0, run_seconds = $3,
       unschedulable_reason = '' WHERE id = $1 AND status IN ${toCompleted.fromSql} RETURNING id`,
    [unit.id, now, runSeconds],
  );
  return unitMoved(sql, unit.id, moved);
}

/** How a unit's last attempt ended when it fails. */
export interface UnitFailure {
  exitCode: number;
  error: string;
  runSeconds: number;
  /** The failure counter this last attempt adds to, if any (a timeout adds to none). */
  counts: "code" | "node" | undefined;
  now: Date;
}

/** A unit fails for good (its job fails with it, which is the caller's part). */
export async function markUnitFailed(sql: Sql, unit: UnitAt, failure: UnitFailure): Promise<boolean> {
  assertUnitMove(toFailed, unit.status);
  const moved = await sql.query(
    `UPDATE compute_units SET status = 'failed', finished_at = $2, exit_code = $3, error = $4, run_seconds = $5,
       code_failures = code_failures + $6, node_failures = node_failures + $7
     WHERE id = $1 AND status IN ${toFailed.fromSql} RETURNING id`,
    [unit.id, failure.now, failure.exitCode, failure.error, failure.runSeconds, failure.counts === "code" ? 1 : 0, failure.counts === "node" ? 1 : 0],
  );
  return unitMoved(sql, unit.id, moved);
}

/** The agent reports it stopped the attempt as it was told to. */
export async function recordUnitCancelled(sql: Sql, unit: UnitAt, now: Date, exitCode: number, runSeconds: number): Promise<boolean> {
  assertUnitMove(cancelledOnNode, unit.status);
  const moved = await sql.query(
    `UPDATE compute_units SET status = 'cancelled', finished_at = $2, exit_code = $3, run_seconds = $4 WHERE id = $1 AND status IN ${cancelledOnNode.fromSql} RETURNING id`,
    [unit.id, now, exitCode, runSeconds],
  );
  return unitMoved(sql, unit.id, moved);
}

/** A unit of a job that ended (failed, cancelled, expired) is cancelled with the job's reason. */
export async function cancelUnit(sql: Sql, unit: UnitAt, now: Date, reason: string): Promise<boolean> {
  assertUnitMove(toCancelled, unit.status);
  const moved = await sql.query(
    `UPDATE compute_units SET status = 'cancelled', finished_at = $2, error = $3 WHERE id = $1 AND status IN ${toCancelled.fromSql} RETURNING id`,
    [unit.id, now, reason],
  );
  return unitMoved(sql, unit.id, moved);
}

/** A pending unit whose dependencies have all completed becomes ready to place. */
export async function readyPendingUnit(sql: Sql, unit: UnitAt, now: Date): Promise<boolean> {
  assertUnitMove(readyFromPending, unit.status);
  const moved = await sql.query(`UPDATE compute_units SET status = 'ready', ready_at = $2 WHERE id = $1 AND status IN ${readyFromPending.fromSql} RETURNING id`, [
    unit.id,
    now,
  ]);
  return unitMoved(sql, unit.id, moved);
}

/**
 * The job's first accepted unit starts it. Conditional rather than asserted:
 * every accepted unit asks, and only the first finds the job queued.
 */
export async function markJobRunning(sql: Sql, jobId: string, now: Date): Promise<void> {
  const moved = await sql.query(
    `UPDATE training_jobs SET status = 'running', started_at = COALESCE(started_at, $2), pending_reason = '' WHERE id = $1 AND status IN ${sqlStatusList(jobStatusesInto("running"))} RETURNING id`,
    [jobId, now],
  );
  await jobChanged(sql, jobId, moved);
}

/** Every unit of the job completed. */
export async function markJobCompleted(sql: Sql, job: JobAt, now: Date): Promise<boolean> {
  assertJobTransition(job.status, "completed");
  const moved = await sql.query(
    `UPDATE training_jobs SET status = 'completed', progress = 1, finished_at = $2 WHERE id = $1 AND status IN ${sqlStatusList(jobStatusesInto("completed"))} RETURNING id`,
    [job.id, now],
  );
  return jobChanged(sql, job.id, moved);
}

/** The ends of a job other than completion, with the statuses each may come from. */
const endedFromSql: Readonly<Record<"failed" | "cancelled" | "expired", string>> = {
  failed: sqlStatusList(jobStatusesInto("failed")),
  cancelled: sqlStatusList(jobStatusesInto("cancelled")),
  expired: sqlStatusList(jobStatusesInto("expired")),
};

/** A job fails, is cancelled or expires, with the reason its API view shows. */
export async function markJobEnded(sql: Sql, job: JobAt, status: "failed" | "cancelled" | "expired", reason: string, now: Date): Promise<boolean> {
  assertJobTransition(job.status, status);
  const moved = await sql.query(
    `UPDATE training_jobs SET status = $2, error = $3, finished_at = $4 WHERE id = $1 AND status IN ${endedFromSql[status]} RETURNING id`,
    [job.id, status, reason, now],
  );
  return jobChanged(sql, job.id, moved);
}

/**
 * A job's progress is the mean over its units (a completed one counts 1), and
 * never goes back; a GPU unit's metrics are merged into the job's.
 */
export async function refreshJobProgress(sql: Sql, jobId: string, metrics: Record<string, number> | undefined): Promise<void> {
  const changed = await sql.query(
    `UPDATE training_jobs j SET progress = LEAST(1, GREATEST(j.progress, sub.p)),
       metrics = CASE WHEN $2::jsonb IS NULL THEN j.metrics ELSE j.metrics || $2::jsonb END
     FROM (SELECT avg(CASE WHEN status = 'completed' THEN 1 ELSE progress END) AS p FROM compute_units WHERE job_id = $1) sub
     WHERE j.id = $1 AND j.status IN ${activeJobStatusSql} RETURNING j.id`,
    [jobId, metrics === undefined || Object.keys(metrics).length === 0 ? null : JSON.stringify(metrics)],
  );
  await jobChanged(sql, jobId, changed);
}

/**
 * Locks, in id order, the jobs still queued (no unit started) past created_at + queue_timeout_seconds
 * at `now`, at most `limit` of them (the sweep comes back for the rest).
 */
export async function lockJobsPastQueueTimeout(sql: Sql, now: Date, limit: number): Promise<JobRow[]> {
  return sql.query<JobRow>(
    `SELECT * FROM training_jobs WHERE status = 'queued' AND created_at + make_interval(secs => queue_timeout_seconds) < $1
     ORDER BY id LIMIT $2 FOR UPDATE SKIP LOCKED`,
    [now, limit],
  );
}

/** Locks, in id order, the running jobs past their max_runtime_seconds at `now`. */
export async function lockOverdueJobs(sql: Sql, now: Date): Promise<JobRow[]> {
  return sql.query<JobRow>(
    `SELECT * FROM training_jobs WHERE status = 'running' AND started_at + make_interval(secs => max_runtime_seconds) < $1
     ORDER BY id FOR UPDATE`,
    [now],
  );
}
