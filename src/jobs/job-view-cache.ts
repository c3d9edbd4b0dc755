/**
 * A bounded read-through cache of job views (`GET /customer/training-jobs/{id}`
 * reads one row and three counters; on the embedded database that read costs
 * far more than the rest of the request).
 *
 * Consistency, which is what makes it safe to put in front of the API:
 *
 * - **Read your writes on this replica.** Every transaction that changes a job
 *   view tells the cache synchronously when it ends (src/jobs/job-changes.ts),
 *   before its caller answers; the entry is gone before the writer's response
 *   leaves. A read that was already on its way to the database when the write
 *   ended (it may carry the old row) is marked stale and does not fill the
 *   cache: only a read that started after the last invalidation of its job may.
 * - **Other replicas** are told over the cluster bus (PostgreSQL NOTIFY, sent
 *   after the commit): their entry goes when the notification arrives, normally
 *   within a millisecond. A notification lost with a broken listening
 *   connection is covered by `clear()` when it reconnects, and any entry older
 *   than `ttlMs` is read again, so a view is never staler than that.
 * - **Tenancy.** An entry is the job's view together with the customer that owns
 *   it; a hit needs both the job id and the caller's customer id to match. Any
 *   other caller misses and asks the database, which answers not found: the
 *   same path and the same answer as for an id that does not exist, whatever
 *   this cache holds. Not-found answers are never cached (a new job is visible
 *   at once).
 * - **Bounded.** At most `maxEntries` entries, least recently used evicted first.
 *
 * Cached rows are frozen and shared between requests: callers map them, never
 * change them.
 */
import type { Clock } from "../platform/clock.ts";
import type { JobViewRow } from "../store/jobs.ts";

/** Options of {@link createJobViewCache}. */
export interface JobViewCacheOptions {
  readonly clock: Clock;
  /** The longest an entry is served without reading it again (default 2000 ms). */
  readonly ttlMs?: number;
  /** Most entries kept (default 50 000; a view is about 1 KiB). */
  readonly maxEntries?: number;
}

/** The job-view cache of one replica. */
export interface JobViewCache {
  /**
   * The view of job `jobId` owned by `customerId`: the cached one while fresh,
   * else `load()`'s (cached when found and not invalidated meanwhile). Callers
   * of one customer that miss together share one load.
   */
  get(customerId: string, jobId: string, load: () => Promise<JobViewRow | undefined>): Promise<JobViewRow | undefined>;
  /** The fresh cached view, without loading (undefined on a miss). */
  peek(customerId: string, jobId: string): JobViewRow | undefined;
  /** Forgets these jobs' views, and keeps reads in flight for them from filling the cache. */
  invalidate(jobIds: Iterable<string>): void;
  /** Forgets everything (a replica that may have missed invalidations). */
  clear(): void;
  /** Entries held. */
  readonly size: number;
}

/** Default time to live of an entry. */
export const defaultJobViewTtlMs = 2000;
/** Default bound on the entries. */
export const defaultJobViewMaxEntries = 50_000;

interface Entry {
  readonly row: JobViewRow;
  readonly customerId: string;
  readonly expiresAtMs: number;
}

/**
 * The reads of one job under way, one per customer asking (concurrent callers
 * of one customer share it); `stale` once the job was invalidated after they
 * started, when the flight also leaves `flights` so later callers start afresh.
 */
interface Flight {
  stale: boolean;
  readonly loads: Map<string, Promise<JobViewRow | undefined>>;
}

/** Builds a job-view cache. */
export function createJobViewCache(options: JobViewCacheOptions): JobViewCache {
  const { clock } = options;
  const ttlMs = options.ttlMs ?? defaultJobViewTtlMs;
  const maxEntries = options.maxEntries ?? defaultJobViewMaxEntries;
  if (!(ttlMs >= 0) || !Number.isInteger(maxEntries) || maxEntries < 1) throw new Error(`job view cache: bad ttlMs ${ttlMs} or maxEntries ${maxEntries}`);
  // Map order is recency: a hit moves its entry to the end, eviction takes the first.
  const entries = new Map<string, Entry>();
  const flights = new Map<string, Flight>();

  function peek(customerId: string, jobId: string): JobViewRow | undefined {
    const entry = entries.get(jobId);
    if (entry === undefined || entry.customerId !== customerId) return undefined;
    if (clock.now() >= entry.expiresAtMs) {
      entries.delete(jobId);
      return undefined;
    }
    if (entries.size > 1) {
      entries.delete(jobId);
      entries.set(jobId, entry);
    }
    return entry.row;
  }

  function store(jobId: string, row: JobViewRow): void {
    entries.delete(jobId);
    while (entries.size >= maxEntries) {
      const oldest = entries.keys().next().value;
      if (oldest === undefined) break;
      entries.delete(oldest);
    }
    Object.freeze(row.metrics);
    entries.set(jobId, { row: Object.freeze(row), customerId: row.customer_id, expiresAtMs: clock.now() + ttlMs });
  }

  return {
    get size() {
      return entries.size;
    },
    peek,
    get(customerId, jobId, load) {
      const hit = peek(customerId, jobId);
      if (hit !== undefined) return Promise.resolve(hit);
      let flight = flights.get(jobId);
      if (flight === undefined) {
        flight = { stale: false, loads: new Map() };
        flights.set(jobId, flight);
      }
      const joined = flight.loads.get(customerId);
      if (joined !== undefined) return joined;
      const started = flight;
      let settled = false;
      const loading = (async () => {
        try {
          const row = await load();
          // Only the owner's found view is kept; the row names its owner.
          if (row !== undefined && !started.stale && row.customer_id === customerId && row.id === jobId) store(jobId, row);
          return row;
        } finally {
          settled = true;
          started.loads.delete(customerId);
          if (started.loads.size === 0 && flights.get(jobId) === started) flights.delete(jobId);
        }
      })();
      // (A load that failed at once has settled already and must not be shared.)
      if (!settled) started.loads.set(customerId, loading);
      return loading;
    },
    invalidate(jobIds) {
      for (const jobId of jobIds) {
        entries.delete(jobId);
        const flight = flights.get(jobId);
        if (flight !== undefined) {
          // Reads that started before now keep this record and will not fill; later ones start afresh.
          flight.stale = true;
          flights.delete(jobId);
        }
      }
    },
    clear() {
      entries.clear();
      for (const flight of flights.values()) flight.stale = true;
      flights.clear();
    },
  };
}
