/**
 * The watches of one replica over the job event log (src/store/job-events.ts): what
 * WatchTrainingJob streams, whichever protocol carries it.
 *
 * A watch starts with a snapshot (the job, its units and the id of the last event they include) or,
 * resuming after an id, with the events after it; then it reads the log after its cursor whenever
 * its job is said to have new events ({@link JobEventFeed.notify}: the commits of this replica and,
 * over the cluster bus, of the others; src/ha/job-event-relay.ts), and sends a heartbeat after
 * `heartbeatMs` with nothing to send. The log is the truth, the notices only say when to read it:
 * a notice lost with the bus costs at most one heartbeat of delay, since each heartbeat re-reads
 * first. Ids come from the log, so a resumed watch misses nothing and repeats nothing, on any
 * replica; a resume older than the events the log still keeps gets a fresh snapshot marked `gap`.
 *
 * A watch ends when its job has ended and every event was sent, when its caller goes away, or when
 * the replica closes (the client then resumes elsewhere). Each customer may hold
 * `watchesPerCustomer` watches on this replica; one more is RATE_LIMITED with Retry-After. No watch
 * holds a transaction while it waits (PGlite has one connection).
 */
import type { Clock } from "../platform/clock.ts";
import type { JobEventsConfig } from "../platform/config.ts";
import { ApiError } from "../platform/errors.ts";
import { requireId } from "../platform/fields.ts";
import type { Database } from "../store/database.ts";
import type { JobEventRow } from "../store/job-events.ts";
import { jobEventBounds, readJobEventsAfter } from "../store/job-events.ts";
import type { JobViewRow } from "../store/jobs.ts";
import { findJob, findJobView } from "../store/jobs.ts";
import type { JobStatus } from "../store/state-machines.ts";
import { isJobActive } from "../store/state-machines.ts";
import type { UnitView } from "./job-reads.ts";
import { jobUnitsPage } from "./job-reads.ts";

/** Events read per query; a watch far behind reads page after page without waiting. */
const pageSize = 200;
/** Units of a job fit one page of ListComputeUnits (a plan has at most 64). */
const unitsPerSnapshot = 100;
/** What a refused watch is told to wait before trying again. */
const retryAfterSeconds = 5;

/** One thing a watch sends. */
export type WatchItem =
  | {
      readonly kind: "snapshot";
      /** The last event the snapshot includes (0: none yet). */
      readonly lastId: number;
      readonly job: JobViewRow;
      readonly units: readonly UnitView[];
      /** The resume point was older than the events still kept. */
      readonly gap: boolean;
    }
  | { readonly kind: "event"; readonly event: JobEventRow }
  | { readonly kind: "heartbeat" };

/** The watches of one replica; see the module comment. */
export interface JobEventFeed {
  /** Tells the watches of these jobs that new events may be stored; an empty list means every job. */
  notify(jobIds: readonly string[]): void;
  /**
   * Watches one of the customer's jobs after `afterId` (0: from a snapshot) until `signal` aborts.
   * JOB_NOT_FOUND and RATE_LIMITED are thrown by the first `next()`, before anything is yielded.
   */
  watch(customerId: string, jobId: string, afterId: number, signal: AbortSignal): AsyncGenerator<WatchItem, void, void>;
  /** Watches open on this replica, of one customer or of all. */
  openWatches(customerId?: string): number;
  /** Ends every watch and refuses new ones (the replica is closing; clients resume elsewhere). */
  close(): void;
}

/** What a feed needs (a subset of ControlPlaneDeps). */
export interface JobEventFeedDeps {
  readonly db: Database;
  readonly clock: Clock;
}

/** One open watch: whether its job got news since its last read, and how to wake it while it waits. */
interface Watcher {
  readonly jobId: string;
  news: boolean;
  wake: (() => void) | undefined;
}

/** Builds the feed of one replica. */
export function createJobEventFeed(deps: JobEventFeedDeps, options: JobEventsConfig): JobEventFeed {
  const { db, clock } = deps;
  const watchersByJob = new Map<string, Set<Watcher>>();
  const openByCustomer = new Map<string, number>();
  const closing = new AbortController();

  const tell = (w: Watcher): void => {
    w.news = true;
    w.wake?.();
  };

  /** Waits for news of the watcher's job, `ms`, or the end of the watch; true unless the watch ended. */
  const waitForNews = async (w: Watcher, ms: number, signal: AbortSignal): Promise<boolean> => {
    if (w.news) return true;
    const stop = new AbortController();
    const end = (): void => stop.abort();
    signal.addEventListener("abort", end, { once: true });
    closing.signal.addEventListener("abort", end, { once: true });
    try {
      const woken = new Promise<void>((resolve) => {
        w.wake = resolve;
      });
      await Promise.race([woken, clock.sleep(ms, stop.signal).catch(() => undefined)]);
    } finally {
      w.wake = undefined;
      stop.abort();
      signal.removeEventListener("abort", end);
      closing.signal.removeEventListener("abort", end);
    }
    return !signal.aborted && !closing.signal.aborted;
  };

  /** The job, its units and the last event id, read in one snapshot of the database. */
  const readSnapshot = (customerId: string, jobId: string, gap: boolean): Promise<WatchItem & { kind: "snapshot" }> =>
    db.transaction(
      async (tx) => {
        const { lastId } = await jobEventBounds(tx, jobId);
        const job = await findJobView(tx, customerId, jobId);
        if (job === undefined) throw new ApiError("JOB_NOT_FOUND", `training job ${jobId} not found`);
        const { rows } = await jobUnitsPage(tx, customerId, jobId, { limit: unitsPerSnapshot, cursor: "" });
        return { kind: "snapshot", lastId, job, units: rows, gap } as const;
      },
      { isolation: "repeatable read" },
    );

  /** Takes one of the customer's watch slots, or refuses with RATE_LIMITED. */
  const admit = (customerId: string): void => {
    if (closing.signal.aborted) {
      throw new ApiError("RATE_LIMITED", "this replica is shutting down; watch again (another replica will answer)", { headers: { "retry-after": "1" } });
    }
    const open = openByCustomer.get(customerId) ?? 0;
    if (open >= options.watchesPerCustomer) {
      throw new ApiError("RATE_LIMITED", `at most ${options.watchesPerCustomer} job watches may be open at once; close one first`, {
        details: { limit: options.watchesPerCustomer, open },
        headers: { "retry-after": String(retryAfterSeconds) },
      });
    }
    openByCustomer.set(customerId, open + 1);
  };

  const release = (customerId: string): void => {
    const left = (openByCustomer.get(customerId) ?? 1) - 1;
    if (left > 0) openByCustomer.set(customerId, left);
    else openByCustomer.delete(customerId);
  };

  async function* watch(customerId: string, rawJobId: string, afterId: number, signal: AbortSignal): AsyncGenerator<WatchItem, void, void> {
    const jobId = requireId(rawJobId, "JOB_NOT_FOUND", "training job");
    admit(customerId);
    const watcher: Watcher = { jobId, news: false, wake: undefined };
    let watchers = watchersByJob.get(jobId);
    if (watchers === undefined) {
      watchers = new Set();
      watchersByJob.set(jobId, watchers);
    }
    // Registered before the first read, so nothing committed after that read goes unnoticed.
    watchers.add(watcher);
    const ended = (): boolean => signal.aborted || closing.signal.aborted;
    try {
      let cursor: number;
      let status: JobStatus;
      let lastSentMs = clock.now();
      const bounds = afterId > 0 ? await jobEventBounds(db, jobId) : undefined;
      // Events after the resume point were deleted (or the id was never given out): start over.
      const gap = bounds !== undefined && (afterId > bounds.lastId || (afterId < bounds.lastId && (bounds.oldestKeptId ?? Infinity) > afterId + 1));
      if (bounds === undefined || gap) {
        const snapshot = await readSnapshot(customerId, jobId, gap);
        cursor = snapshot.lastId;
        status = snapshot.job.status;
        yield snapshot;
      } else {
        const job = await findJob(db, customerId, jobId);
        if (job === undefined) throw new ApiError("JOB_NOT_FOUND", `training job ${rawJobId} not found`);
        cursor = afterId;
        status = job.status;
        // Nothing to send yet but the stream is open: say so at once (SSE clients see it open).
        if (isJobActive(status) && bounds.lastId <= afterId) yield { kind: "heartbeat" };
      }
      for (;;) {
        if (ended()) return;
        watcher.news = false;
        const rows = await readJobEventsAfter(db, jobId, cursor, pageSize);
        for (const event of rows) {
          if (ended()) return;
          yield { kind: "event", event };
          cursor = event.id;
          if (event.type === "job") status = event.body.status;
        }
        if (rows.length > 0) lastSentMs = clock.now();
        if (rows.length === pageSize) continue;
        // An ended job's last events are all in: its terminal status and its units' ends commit together.
        if (!isJobActive(status)) return;
        const quietMs = options.heartbeatMs - (clock.now() - lastSentMs);
        if (quietMs <= 0) {
          yield { kind: "heartbeat" };
          lastSentMs = clock.now();
          continue;
        }
        if (!(await waitForNews(watcher, quietMs, signal))) return;
      }
    } finally {
      watchers.delete(watcher);
      if (watchers.size === 0 && watchersByJob.get(jobId) === watchers) watchersByJob.delete(jobId);
      release(customerId);
    }
  }

  return {
    notify(jobIds) {
      if (jobIds.length === 0) {
        for (const set of watchersByJob.values()) for (const w of set) tell(w);
        return;
      }
      for (const id of jobIds) for (const w of watchersByJob.get(id) ?? []) tell(w);
    },
    watch,
    openWatches(customerId) {
      if (customerId !== undefined) return openByCustomer.get(customerId) ?? 0;
      let total = 0;
      for (const n of openByCustomer.values()) total += n;
      return total;
    },
    close() {
      closing.abort();
    },
  };
}
