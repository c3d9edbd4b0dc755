/**
 * Who places work without etcd (ETCD_ENDPOINTS unset; with it, see
 * ha/leader-elector.ts). Replicas elect a leader through a lease row in the
 * database: the holder renews it
 * every ttl/3; another replica takes it over only once it is older than the
 * ttl, and every takeover bumps the term. The term fences placement commits
 * (placement-cycle.ts), so a paused leader that wakes up after losing the lease
 * commits nothing. The embedded default (one replica) takes the lease at once.
 */
import type { ControlPlaneDeps } from "../deps.ts";
import type { Sql } from "../store/database.ts";
import { placementLease } from "./placement-cycle.ts";

/** What leading means to the caller. */
export interface LeadershipCallbacks {
  /** Runs while this replica leads under `term`; must return soon after `signal` aborts. */
  onStartedLeading(term: number, signal: AbortSignal): Promise<void>;
  onStoppedLeading(): void;
}

/** Lease timing. */
export interface LeadershipOptions {
  replicaId: string;
  ttlMs: number;
  /** Take the lease without waiting for it to expire (single embedded replica). */
  force: boolean;
}

/** Tries to take the lease; returns the new term, or undefined while another replica holds it. */
export async function tryAcquireLease(sql: Sql, holder: string, ttlMs: number, force: boolean): Promise<number | undefined> {
  const [row] = await sql.query<{ term: number }>(
    `INSERT INTO scheduler_leases (name, term, holder, updated_at) VALUES ($1, 1, $2, now())
     ON CONFLICT (name) DO UPDATE SET term = scheduler_leases.term + 1, holder = $2, updated_at = now()
       WHERE $4 OR scheduler_leases.holder = $2 OR scheduler_leases.updated_at < now() - make_interval(secs => $3::double precision / 1000)
     RETURNING term`,
    [placementLease, holder, ttlMs, force],
  );
  return row?.term;
}

/** Renews the lease; false when it was lost (taken over after expiring). */
export async function renewLease(sql: Sql, holder: string, term: number): Promise<boolean> {
  const rows = await sql.query(`UPDATE scheduler_leases SET updated_at = now() WHERE name = $1 AND holder = $2 AND term = $3 RETURNING term`, [
    placementLease,
    holder,
    term,
  ]);
  return rows.length === 1;
}

/** Gives the lease up at once (graceful shutdown), so another replica need not wait for the ttl. */
export async function releaseLease(sql: Sql, holder: string, term: number): Promise<void> {
  await sql.query(`UPDATE scheduler_leases SET updated_at = '-infinity' WHERE name = $1 AND holder = $2 AND term = $3`, [placementLease, holder, term]);
}

/** Campaigns until `signal` aborts: lead while holding the lease, stand by otherwise. */
export async function runLeadership(deps: ControlPlaneDeps, options: LeadershipOptions, callbacks: LeadershipCallbacks, signal: AbortSignal): Promise<void> {
  const { db, clock, logger } = deps;
  const retryMs = Math.max(100, Math.floor(options.ttlMs / 3));
  while (!signal.aborted) {
    let term: number | undefined;
    try {
      term = await tryAcquireLease(db, options.replicaId, options.ttlMs, options.force);
    } catch (error) {
      logger.warn({ err: error }, "could not campaign for the placement lease");
    }
    if (term === undefined) {
      await clock.sleep(retryMs, signal).catch(() => undefined);
      continue;
    }
    logger.info({ term, replicaId: options.replicaId }, "leading placement");
    const leading = new AbortController();
    const stop = () => leading.abort();
    signal.addEventListener("abort", stop, { once: true });
    // An abort while the lease was being acquired has already fired: the listener above never will.
    if (signal.aborted) stop();
    const work = callbacks.onStartedLeading(term, leading.signal).finally(stop);
    try {
      while (!leading.signal.aborted) {
        await clock.sleep(retryMs, leading.signal).catch(() => undefined);
        if (leading.signal.aborted) break;
        const renewed = await renewLease(db, options.replicaId, term).catch(() => false);
        if (!renewed) {
          logger.error({ term }, "lost the placement lease; stepping down");
          stop();
        }
      }
    } finally {
      signal.removeEventListener("abort", stop);
      await work.catch((error: unknown) => logger.error({ err: error }, "leader work failed"));
      callbacks.onStoppedLeading();
      if (signal.aborted) await releaseLease(db, options.replicaId, term).catch(() => undefined);
    }
  }
}
