/**
 * Removing bytes nobody may read any more. A deleted dataset or package, and
 * the artifacts of a job past retention, are first marked in the database
 * together with a `blob_deletions` row (one transaction); the bytes go after
 * the commit. The request that deleted something removes its blob at once;
 * the sweep here, run by every replica, removes what a crash or a failed
 * removal left behind, and applies artifact retention. Rows are claimed
 * `FOR UPDATE SKIP LOCKED`, so replicas sweeping at once take disjoint work.
 *
 * The same retention ends a job's live-event history (src/store/job-events.ts): its events are
 * what a watch replays of the job — log lines, progress, transitions — and once the job's
 * artifacts, its `.log` among them, are gone there is nothing left for that history to lead to.
 * They go in transactions of at most `eventsPerTransaction` rows, so a sweep behind by many
 * 10,000-event jobs never holds a lock for long.
 */
import type { Logger } from "pino";
import type { Clock } from "../platform/clock.ts";
import type { StorageQuotas } from "../platform/config.ts";
import type { Database } from "../store/database.ts";
import { deleteEventsOfEndedJobs, endedJobsWithEvents } from "../store/job-events.ts";
import { claimBlobDeletions, expireArtifactsOfEndedJobs, forgetBlobDeletion } from "../store/storage.ts";
import type { BlobStore } from "./blob-store.ts";

/** What the sweep needs (a subset of ControlPlaneDeps). */
export interface StorageSweepDeps {
  readonly db: Database;
  readonly blobs: BlobStore;
  readonly clock: Clock;
  readonly logger: Logger;
  readonly config: { readonly limits: { readonly storage: StorageQuotas } };
}

/** What one sweep did. */
export interface StorageSweepResult {
  /** Ended jobs whose artifacts were expired by retention. */
  jobsExpired: number;
  /** Artifacts marked expired. */
  artifactsExpired: number;
  /** Ended jobs whose live-event history was deleted by retention. */
  jobEventLogsDeleted: number;
  /** Their events deleted. */
  jobEventsDeleted: number;
  /** Blobs (or unit prefixes) removed from the blob store. */
  blobsDeleted: number;
  /** Removals that failed (kept for the next sweep). */
  failures: number;
}

/** Rows one transaction claims. */
const batchSize = 100;
/** Event rows one transaction deletes (a job may hold 10,000). */
const eventsPerTransaction = 1_000;
const dayMs = 86_400_000;

/**
 * Removes a blob a committed transaction made unneeded (queued with `requestBlobDeletion`), now.
 * Never throws: the database already says the blob is gone, and a removal that fails here stays
 * queued for the sweep.
 */
export async function removeUnneededBlob(deps: Pick<StorageSweepDeps, "db" | "blobs" | "logger">, blobKey: string): Promise<void> {
  try {
    await deps.blobs.delete(blobKey);
    await forgetBlobDeletion(deps.db, blobKey);
  } catch (error) {
    deps.logger.warn({ err: error, blobKey }, "blob removal failed; the storage sweep will retry");
  }
}

/** One sweep: artifact retention first (it queues blobs), the events of the same jobs, then the queued blob removals. */
export async function sweepStorage(deps: StorageSweepDeps): Promise<StorageSweepResult> {
  const result: StorageSweepResult = { jobsExpired: 0, artifactsExpired: 0, jobEventLogsDeleted: 0, jobEventsDeleted: 0, blobsDeleted: 0, failures: 0 };
  const now = new Date(deps.clock.now());
  const cutoff = new Date(now.getTime() - deps.config.limits.storage.artifactRetentionDays * dayMs);
  for (;;) {
    const expired = await deps.db.transaction((tx) => expireArtifactsOfEndedJobs(tx, cutoff, now, batchSize));
    result.jobsExpired += expired.jobs;
    result.artifactsExpired += expired.artifacts;
    if (expired.jobs < batchSize) break;
  }
  await deleteExpiredJobEvents(deps.db, cutoff, result);
  for (;;) {
    const batch = await deps.db.transaction(async (tx) => {
      const keys = await claimBlobDeletions(tx, batchSize);
      let deleted = 0;
      for (const key of keys) {
        try {
          await deps.blobs.delete(key);
          await forgetBlobDeletion(tx, key);
          deleted++;
        } catch (error) {
          result.failures++;
          deps.logger.warn({ err: error, blobKey: key }, "blob removal failed; kept for the next sweep");
        }
      }
      return { claimed: keys.length, deleted };
    });
    result.blobsDeleted += batch.deleted;
    // A full batch that removed nothing would be claimed again: stop until the next sweep.
    if (batch.claimed < batchSize || batch.deleted === 0) break;
  }
  if (result.jobsExpired > 0 || result.jobEventLogsDeleted > 0 || result.blobsDeleted > 0 || result.failures > 0) deps.logger.info(result, "storage sweep");
  return result;
}

/**
 * Deletes the events of every job that ended at or before `cutoff`, `batchSize` jobs at a time and
 * at most `eventsPerTransaction` rows per transaction. Each transaction deletes that many rows or
 * finishes every job it locked, so the loop ends; one that locks nothing means another replica is
 * on these jobs, and this sweep leaves them to it.
 */
async function deleteExpiredJobEvents(db: Database, cutoff: Date, result: StorageSweepResult): Promise<void> {
  for (;;) {
    const found = await endedJobsWithEvents(db, cutoff, batchSize);
    let left: readonly string[] = found;
    while (left.length > 0) {
      const step = await db.transaction((tx) => deleteEventsOfEndedJobs(tx, left, eventsPerTransaction));
      if (step.locked.length === 0) return;
      result.jobEventsDeleted += step.events;
      result.jobEventLogsDeleted += step.cleared.length;
      left = step.locked.filter((id) => !step.cleared.includes(id));
    }
    if (found.length < batchSize) return;
  }
}

/** Sweeps at start and then every `sweepIntervalSeconds` until `signal` aborts; a failed sweep is logged and retried next time. */
export async function runStorageSweeper(deps: StorageSweepDeps, signal: AbortSignal): Promise<void> {
  while (!signal.aborted) {
    try {
      await sweepStorage(deps);
    } catch (error) {
      if (signal.aborted) return;
      deps.logger.error({ err: error }, "storage sweep failed");
    }
    try {
      await deps.clock.sleep(deps.config.limits.storage.sweepIntervalSeconds * 1000, signal);
    } catch {
      return;
    }
  }
}
