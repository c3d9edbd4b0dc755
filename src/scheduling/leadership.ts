/**
 * Who places work without etcd (ETCD_ENDPOINTS unset; with it, see
 * ha/leader-elector.ts). Replicas elect a leader through a lease row in the
 * database (SQL in store/leases.ts): the holder renews it
 * every ttl/3; another replica takes it over only once it is older than the
 * ttl, and every takeover bumps the term. The term fences placement commits
 * (placement-cycle.ts), so a paused leader that wakes up after losing the lease
 * commits nothing. The embedded default (one replica) takes the lease at once.
 */
import type { Logger } from "pino";
import type { Clock } from "../platform/clock.ts";
import type { Database } from "../store/database.ts";
import { releaseLease, renewLease, tryAcquireLease } from "../store/leases.ts";

/** What the campaign needs (a subset of ControlPlaneDeps). */
export interface LeadershipDeps {
  readonly db: Database;
  readonly clock: Clock;
  readonly logger: Logger;
}

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

/** Campaigns until `signal` aborts: lead while holding the lease, stand by otherwise. */
export async function runLeadership(deps: LeadershipDeps, options: LeadershipOptions, callbacks: LeadershipCallbacks, signal: AbortSignal): Promise<void> {
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
