/**
 * Which training jobs a committed transaction changed, told to whoever keeps
 * copies of job views: this replica's job-view cache (src/jobs/job-view-cache.ts)
 * and, through it, the cluster bus for the other replicas.
 *
 * Every transaction that changes what a job's view shows — the job row, its
 * compute units' count and completions, its debits — runs through
 * {@link jobTransaction} and marks the jobs it changes with
 * {@link markJobChanged} (src/jobs/lifecycle.ts marks each job it locks; all
 * of its transitions lock the job first). When the transaction has ended,
 * committed or rolled back, the listeners registered for that database hear the
 * job ids synchronously, before the transaction's caller continues: an API
 * call that changed a job answers only after this replica's cache forgot it.
 *
 * Listeners are registered on the `Database` object (a replica has one), so two
 * control planes in one process (tests) keep apart, and code that opens a
 * database without listeners (unit tests of the life cycle) pays nothing.
 *
 * Writes that change no job view need not come here: job creation (a new id is
 * never cached, misses are not cached), placement (`ready → assigned` and
 * `unschedulable_reason` are not in the job view), artifacts.
 */
import type { Database, Sql, TransactionOptions } from "../store/database.ts";
import { transactionWithJobEvents } from "../store/job-events.ts";

/** Told the ids of jobs a transaction changed, after it ended. Must not throw. */
export type JobsChangedListener = (jobIds: readonly string[]) => void;

/** Where a transaction run by {@link jobTransaction} collects the jobs it marked. */
const changedJobs = Symbol("changedJobs");

/** The `tx` that {@link jobTransaction} hands its callback: SQL of the transaction, and the jobs marked so far. */
interface JobChangeTransaction extends Sql {
  readonly [changedJobs]: Set<string>;
}

/** Registers a listener for the jobs changed through `db`; returns the unregister function. */
export function onJobsChanged(db: Database, listener: JobsChangedListener): () => void {
  db.jobChangeListeners.add(listener);
  return () => void db.jobChangeListeners.delete(listener);
}

/** Tells the listeners of `db` that these jobs changed (for writes made outside {@link jobTransaction}). */
export function jobsChanged(db: Database, jobIds: readonly string[]): void {
  if (jobIds.length === 0) return;
  for (const listener of db.jobChangeListeners) listener(jobIds);
}

/**
 * Runs `fn` in one transaction of `db` (as `db.transaction`, with the job
 * event log's staging: the events its transitions stage are appended at its
 * end), then tells the listeners of `db` which jobs `fn` marked. They are told also when the
 * transaction failed: a COMMIT whose answer was lost may still have happened,
 * and forgetting a view that did not change costs only one read.
 */
export async function jobTransaction<T>(db: Database, fn: (tx: Sql) => Promise<T>, options?: TransactionOptions): Promise<T> {
  const changed = new Set<string>();
  try {
    // With event staging (src/store/job-events.ts): the spread keeps the staging buffer of `tx`.
    return await transactionWithJobEvents(db, (tx) => {
      const jobTx: JobChangeTransaction = { ...tx, [changedJobs]: changed };
      return fn(jobTx);
    }, options);
  } finally {
    jobsChanged(db, [...changed]);
  }
}

/**
 * Marks a job as changed by the transaction `tx` (which must come from
 * {@link jobTransaction}: a change nobody would hear of is a bug, so it throws).
 */
export function markJobChanged(tx: Sql, jobId: string): void {
  const changed = (tx as Partial<JobChangeTransaction>)[changedJobs];
  if (changed === undefined) throw new Error("a job was changed outside jobTransaction(); its cached views would not be invalidated");
  changed.add(jobId);
}
