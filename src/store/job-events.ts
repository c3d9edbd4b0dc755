/**
 * The per-job event log (migrations/schema-0009.ts): what WatchTrainingJob sends, numbered per job
 * in commit order.
 *
 * Writers do not insert events one by one. A transition *stages* an event on its transaction
 * ({@link stageJobEvent}: "job J changed", "unit U changed", "these lines were stored"), and
 * {@link transactionWithJobEvents} appends everything staged as the transaction's last statement:
 * the bodies are read from the rows as the transaction left them (a unit moved twice in one
 * transaction is one event with its final state), and the job's counter row is bumped then, so its
 * lock — which orders the ids of one job by commit — is the last lock the transaction takes. Taken
 * last and in job-id order, these locks cannot deadlock with each other or with the job and unit
 * locks taken before them. A transition run on a plain transaction (store tests) appends at once:
 * still in commit order, only without that lock-order argument, and with no listener told (watches
 * find such events at their next heartbeat). Every writer of the control plane stages: `jobTransaction`
 * (src/jobs/job-changes.ts), the placement commit and the telemetry recorder.
 *
 * Once a transaction that appended events has ended, the database's `jobEventListeners` hear the
 * job ids (src/ha/job-event-relay.ts tells the watches of every replica).
 *
 * Retention: besides each job's window of {@link jobEventsKept}, the storage sweep
 * (src/blobs/storage-sweeper.ts) deletes every event of a job that ended before the artifact
 * retention cutoff, with its counter row ({@link endedJobsWithEvents}, {@link deleteEventsOfEndedJobs}),
 * so the table holds the jobs of the retention window, not every job ever run.
 */
import type { Database, Sql, TransactionOptions } from "./database.ts";
import type { JobStatus, UnitStatus } from "./state-machines.ts";
import { sqlStatusList, terminalJobStatuses } from "./state-machines.ts";
import type { StoredLine } from "./telemetry.ts";

/** Events each job keeps; older ones are deleted as new ones are appended. */
export const jobEventsKept = 10_000;

/** What a transition tells the log; the event's body is read when it is appended. */
export type StagedJobEvent =
  | { readonly type: "job"; readonly jobId: string }
  | { readonly type: "unit"; readonly unitId: string }
  | { readonly type: "log"; readonly unitId: string; readonly attempt: number; readonly firstSeq: number; readonly lineCount: number };

/** A job's state after a change (the body of a "job" event). Times are ms since the epoch. */
export interface JobEventBody {
  status: JobStatus;
  progress: number;
  error: string;
  metrics: Record<string, number>;
  started_at_ms: number | null;
  finished_at_ms: number | null;
  compute_units_completed: number;
  credits_debited: number;
  /** Absent from events stored before jobs had a pending reason. */
  pending_reason?: string;
}

/** A compute unit's state after a change (the body of a "unit" event). */
export interface UnitEventBody {
  id: string;
  name: string;
  status: UnitStatus;
  attempt: number;
  progress: number;
  metrics: Record<string, number>;
  node_id: string | null;
  started_at_ms: number | null;
  finished_at_ms: number | null;
  exit_code: number | null;
  error: string;
}

/** One stored event as a watch reads it. */
export type JobEventRow =
  | { id: number; type: "job"; body: JobEventBody }
  | { id: number; type: "unit"; body: UnitEventBody }
  | {
      id: number;
      type: "log";
      body: { line_count: number };
      unit_id: string;
      attempt: number;
      first_seq: number;
      /** The chunk's lines; null once the chunk was trimmed from the unit's tail. */
      lines: StoredLine[] | null;
    };

/** Where the events staged on a transaction wait for its end. */
const staged = Symbol("stagedJobEvents");

/** The `tx` of {@link transactionWithJobEvents}: SQL of the transaction, and the events staged so far. */
interface StagingTransaction extends Sql {
  readonly [staged]: StagedJobEvent[];
}

/**
 * Stages an event on `sql`'s transaction (appended at its end by {@link transactionWithJobEvents});
 * on any other `sql` the event is appended at once.
 */
export async function stageJobEvent(sql: Sql, event: StagedJobEvent): Promise<void> {
  const buffer = (sql as Partial<StagingTransaction>)[staged];
  if (buffer !== undefined) {
    buffer.push(event);
    return;
  }
  await appendJobEvents(sql, [event]);
}

/**
 * Runs `fn` in one transaction of `db` (as `db.transaction`) with event staging, appends the staged
 * events as its last statement, and tells `db.jobEventListeners` the jobs that got events once it
 * has ended — also when it failed at COMMIT, whose outcome is then unknown (a needless re-read costs
 * a watch one query). `tx` may be wrapped with object spread (`{ ...tx, extra }`): the staging
 * buffer goes along.
 */
export async function transactionWithJobEvents<T>(db: Database, fn: (tx: Sql) => Promise<T>, options?: TransactionOptions): Promise<T> {
  let appended: readonly string[] = [];
  try {
    return await db.transaction(async (tx) => {
      const stagingTx: StagingTransaction = { query: <R>(text: string, params?: readonly unknown[]) => tx.query<R>(text, params), [staged]: [] };
      const value = await fn(stagingTx);
      appended = await appendJobEvents(tx, stagingTx[staged]);
      return value;
    }, options);
  } finally {
    if (appended.length > 0) for (const listener of db.jobEventListeners) listener(appended);
  }
}

/** The staged events worth appending, in staging order: one per job and one per unit (their final state), every log chunk. */
function distinctEvents(events: readonly StagedJobEvent[]): StagedJobEvent[] {
  const seen = new Set<string>();
  return events.filter((e) => {
    if (e.type === "log") return true;
    const key = e.type === "job" ? `j${e.jobId}` : `u${e.unitId}`;
    if (seen.has(key)) return false;
    seen.add(key);
    return true;
  });
}

const msSql = (column: string) => `(extract(epoch FROM ${column}) * 1000)::bigint`;
const completedSql = sqlStatusList(["completed"]);

/**
 * Appends events in one statement: reads each body from its row, bumps the counters of the jobs
 * concerned in job-id order (the ids: the counter's old value + 1 …, in staging order), inserts,
 * and deletes the job's events that fall out of its window ({@link jobEventsKept} behind its last
 * id; the statement sees only rows stored before it, so what it adds itself is cut by the next
 * append). Returns the ids of the jobs that got events.
 */
export async function appendJobEvents(sql: Sql, events: readonly StagedJobEvent[]): Promise<string[]> {
  const list = distinctEvents(events);
  if (list.length === 0) return [];
  const rows = await sql.query<{ job_id: string }>(
    `WITH staged AS (
       SELECT s.type, NULLIF(s.job_id, '')::uuid AS job_id, NULLIF(s.unit_id, '')::uuid AS unit_id, s.attempt, s.first_seq, s.line_count, s.ord
         FROM unnest($1::text[], $2::text[], $3::text[], $4::int[], $5::bigint[], $6::int[]) WITH ORDINALITY
              AS s(type, job_id, unit_id, attempt, first_seq, line_count, ord)
     ),
     events AS (
       SELECT s.ord, s.type, COALESCE(s.job_id, u.job_id) AS job_id,
              CASE WHEN s.type = 'log' THEN s.unit_id END AS unit_id,
              CASE WHEN s.type = 'log' THEN s.attempt END AS attempt,
              CASE WHEN s.type = 'log' THEN s.first_seq END AS first_seq,
              CASE s.type
                WHEN 'job' THEN (
                  SELECT jsonb_build_object(
                           'status', j.status, 'progress', j.progress, 'error', j.error, 'metrics', j.metrics,
                           'started_at_ms', ${msSql("j.started_at")}, 'finished_at_ms', ${msSql("j.finished_at")},
                           'compute_units_completed', (SELECT count(*) FROM compute_units c WHERE c.job_id = j.id AND c.status IN ${completedSql}),
                           'credits_debited', (SELECT COALESCE(-sum(l.amount), 0) FROM ledger_entries l WHERE l.job_id = j.id AND l.kind = 'debit'),
                           'pending_reason', CASE WHEN j.status = 'queued' THEN j.pending_reason ELSE '' END)
                    FROM training_jobs j WHERE j.id = s.job_id)
                WHEN 'unit' THEN jsonb_build_object(
                           'id', u.id, 'name', u.name, 'status', u.status, 'attempt', u.attempt, 'progress', u.progress,
                           'metrics', u.metrics, 'node_id', u.node_id, 'started_at_ms', ${msSql("u.started_at")},
                           'finished_at_ms', ${msSql("u.finished_at")}, 'exit_code', u.exit_code, 'error', u.error)
                ELSE jsonb_build_object('line_count', s.line_count)
              END AS body
         FROM staged s LEFT JOIN compute_units u ON u.id = s.unit_id
     ),
     counts AS (
       SELECT job_id, count(*) AS n FROM events WHERE job_id IS NOT NULL AND body IS NOT NULL GROUP BY job_id
     ),
     bumped AS (
       INSERT INTO job_event_counters AS c (job_id, last_id)
       SELECT job_id, n FROM counts ORDER BY job_id
       ON CONFLICT (job_id) DO UPDATE SET last_id = c.last_id + EXCLUDED.last_id
       RETURNING c.job_id, c.last_id
     ),
     inserted AS (
       INSERT INTO job_events (job_id, id, type, body, unit_id, attempt, first_seq)
       SELECT e.job_id, b.last_id - n.n + row_number() OVER (PARTITION BY e.job_id ORDER BY e.ord), e.type, e.body, e.unit_id, e.attempt, e.first_seq
         FROM events e JOIN bumped b ON b.job_id = e.job_id JOIN counts n ON n.job_id = e.job_id
        WHERE e.body IS NOT NULL
     ),
     trimmed AS (
       DELETE FROM job_events o USING bumped b WHERE o.job_id = b.job_id AND o.id <= b.last_id - $7
     )
     SELECT job_id FROM bumped`,
    [
      list.map((e) => e.type),
      list.map((e) => (e.type === "job" ? e.jobId : "")),
      list.map((e) => (e.type === "job" ? "" : e.unitId)),
      list.map((e) => (e.type === "log" ? e.attempt : 0)),
      list.map((e) => (e.type === "log" ? e.firstSeq : 0)),
      list.map((e) => (e.type === "log" ? e.lineCount : 0)),
      jobEventsKept,
    ],
  );
  return rows.map((r) => r.job_id);
}

// ---- reads -------------------------------------------------------------------------------------

/** Up to `limit` events of a job after `afterId`, oldest first, log events with their chunk's lines when still stored. */
export async function readJobEventsAfter(sql: Sql, jobId: string, afterId: number, limit: number): Promise<JobEventRow[]> {
  return sql.query<JobEventRow>(
    `SELECT e.id, e.type, e.body, e.unit_id, e.attempt, e.first_seq, c.lines
       FROM job_events e
       LEFT JOIN unit_log_chunks c ON e.type = 'log' AND c.unit_id = e.unit_id AND c.attempt = e.attempt AND c.first_seq = e.first_seq
      WHERE e.job_id = $1 AND e.id > $2
      ORDER BY e.id LIMIT $3`,
    [jobId, afterId, limit],
  );
}

/** The last event id given out for a job (0: none yet) and the oldest one still kept (undefined: none kept). */
export async function jobEventBounds(sql: Sql, jobId: string): Promise<{ lastId: number; oldestKeptId: number | undefined }> {
  const [row] = await sql.query<{ last_id: number | null; oldest: number | null }>(
    `SELECT (SELECT last_id FROM job_event_counters WHERE job_id = $1) AS last_id,
            (SELECT id FROM job_events WHERE job_id = $1 ORDER BY id LIMIT 1) AS oldest`,
    [jobId],
  );
  return { lastId: row?.last_id ?? 0, oldestKeptId: row?.oldest ?? undefined };
}

// ---- retention ---------------------------------------------------------------------------------

/**
 * Up to `limit` jobs that ended at or before `cutoff` and still hold events (their counter row),
 * longest ended first. Driven by the counters, which hold only the jobs not swept yet, so a sweep
 * never walks every job ever run.
 */
export async function endedJobsWithEvents(sql: Sql, cutoff: Date, limit: number): Promise<string[]> {
  const rows = await sql.query<{ job_id: string }>(
    `SELECT c.job_id FROM job_event_counters c JOIN training_jobs j ON j.id = c.job_id
      WHERE j.finished_at <= $1 AND j.status IN ${sqlStatusList(terminalJobStatuses)}
      ORDER BY j.finished_at, c.job_id LIMIT $2`,
    [cutoff, limit],
  );
  return rows.map((r) => r.job_id);
}

/** What one {@link deleteEventsOfEndedJobs} did. */
export interface JobEventDeletion {
  /** The jobs it worked on: those of the list no other transaction was deleting. */
  readonly locked: readonly string[];
  /** Events deleted. */
  readonly events: number;
  /** Jobs left with no event, whose counter row went too: done. */
  readonly cleared: readonly string[];
}

/**
 * Deletes up to `maxEvents` events of these ended jobs (oldest first; call it with ids from
 * {@link endedJobsWithEvents}), and the counter rows of those left with none. At most `maxEvents`
 * rows per call, so the transaction that runs it stays short however many events a job had.
 * Counter rows another transaction holds are skipped (replicas sweeping at once take disjoint
 * jobs). A watch of a cleared job gets its snapshot and nothing after it: a watch resuming from an
 * id gets a snapshot marked `gap` (its id is past the job's last, 0 once the counter is gone).
 */
export async function deleteEventsOfEndedJobs(sql: Sql, jobIds: readonly string[], maxEvents: number): Promise<JobEventDeletion> {
  if (jobIds.length === 0) return { locked: [], events: 0, cleared: [] };
  const locked = (
    await sql.query<{ job_id: string }>(
      `SELECT job_id FROM job_event_counters WHERE job_id = ANY($1::uuid[]) ORDER BY job_id FOR UPDATE SKIP LOCKED`,
      [[...jobIds]],
    )
  ).map((r) => r.job_id);
  if (locked.length === 0) return { locked, events: 0, cleared: [] };
  const [deleted] = await sql.query<{ n: number }>(
    `WITH doomed AS (
       SELECT job_id, id FROM job_events WHERE job_id = ANY($1::uuid[]) ORDER BY job_id, id LIMIT $2
     ),
     gone AS (
       DELETE FROM job_events e USING doomed d WHERE e.job_id = d.job_id AND e.id = d.id RETURNING 1
     )
     SELECT count(*)::int AS n FROM gone`,
    [locked, maxEvents],
  );
  const cleared = (
    await sql.query<{ job_id: string }>(
      `DELETE FROM job_event_counters c
        WHERE c.job_id = ANY($1::uuid[]) AND NOT EXISTS (SELECT 1 FROM job_events e WHERE e.job_id = c.job_id)
        RETURNING c.job_id`,
      [locked],
    )
  ).map((r) => r.job_id);
  return { locked, events: deleted?.n ?? 0, cleared };
}
