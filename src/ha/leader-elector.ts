/**
 * Leader election on etcd, shaped like client-go's `leaderelection` package on
 * top of etcd3's `Election`:
 *
 * - timing options are validated up front (lease TTL > renew deadline > 1.2 × retry period);
 * - `onStartedLeading(signal, term)` runs while this replica leads; its signal aborts on the campaign's
 *   `'error'` (etcd3 emits it when the lease is lost), when the leader key cannot be confirmed within the
 *   renew deadline (etcd unreachable), or when the elector is stopped;
 * - `onStoppedLeading()` follows every `onStartedLeading`, and `onNewLeader(id)` reports who leads.
 *
 * Beyond client-go, leading yields a fencing term: the campaign key's `create_revision`, which etcd raises
 * for every new leader. Callers write it where commits are checked (scheduler_leases), so a leader that
 * was paused past its lease cannot commit after waking up, whatever it believes.
 */
import type { Etcd3 } from "etcd3";
import type { Logger } from "pino";
import type { Clock } from "../platform/clock.ts";

/** What leading means to the caller. */
export interface LeaderCallbacks {
  /** Runs while leading under `term`; must return soon after `signal` aborts. Returning early steps down. */
  onStartedLeading(signal: AbortSignal, term: number): Promise<void>;
  /** Called once the work of `onStartedLeading` has returned. */
  onStoppedLeading(): void;
  /** The identity of the current leader, or undefined while there is none (as observed on etcd). */
  onNewLeader?(identity: string | undefined): void;
}

/** Timing, in client-go's terms. */
export interface LeaderTiming {
  /** etcd lease TTL: how long a dead leader blocks the others (whole seconds, etcd's unit). */
  leaseTtlSeconds: number;
  /** A leader that could not confirm its key for this long steps down (must be below the TTL). */
  renewDeadlineMs: number;
  /** How often the leader confirms its key, and how long to wait before campaigning again after a failure. */
  retryPeriodMs: number;
}

/** Options of {@link LeaderElector}. */
export interface LeaderElectorOptions extends LeaderTiming {
  client: Etcd3;
  /** Election name (an etcd key prefix under `election/`). */
  electionName: string;
  /** This replica's identity, stored as the campaign value. */
  identity: string;
  clock: Clock;
  logger: Logger;
  callbacks: LeaderCallbacks;
}

/** client-go's jitter factor: the renew deadline must leave room for a jittered retry. */
const jitterFactor = 1.2;

/** An invalid timing configuration (operator input, reported at start). */
export class LeaderTimingError extends RangeError {
  override readonly name = "LeaderTimingError";
}

/** Timing derived from the TTL alone: renew deadline 2/3 of it, retry period 1/5 (at most 1 s). */
export function defaultTiming(leaseTtlSeconds: number): LeaderTiming {
  const ttlMs = leaseTtlSeconds * 1000;
  return { leaseTtlSeconds, renewDeadlineMs: Math.floor((ttlMs * 2) / 3), retryPeriodMs: Math.min(1000, Math.floor(ttlMs / 5)) };
}

/** Throws {@link LeaderTimingError} unless TTL > renew deadline > 1.2 × retry period > 0 (client-go's rules). */
export function validateTiming(t: LeaderTiming): void {
  if (!Number.isInteger(t.leaseTtlSeconds) || t.leaseTtlSeconds < 1) {
    throw new LeaderTimingError(`lease TTL must be a whole number of seconds ≥ 1 (etcd's unit), got ${t.leaseTtlSeconds}`);
  }
  if (!(t.retryPeriodMs > 0)) throw new LeaderTimingError(`retry period must be positive, got ${t.retryPeriodMs} ms`);
  if (!(t.renewDeadlineMs < t.leaseTtlSeconds * 1000)) {
    throw new LeaderTimingError(`renew deadline (${t.renewDeadlineMs} ms) must be shorter than the lease TTL (${t.leaseTtlSeconds} s)`);
  }
  if (!(t.renewDeadlineMs > jitterFactor * t.retryPeriodMs)) {
    throw new LeaderTimingError(`renew deadline (${t.renewDeadlineMs} ms) must exceed ${jitterFactor} × retry period (${t.retryPeriodMs} ms)`);
  }
}

/** Resolves when the signal aborts (never rejects). */
function aborted(signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    signal.addEventListener("abort", () => resolve(), { once: true });
  });
}

/** Campaigns on etcd until stopped; see the module comment. */
export class LeaderElector {
  private readonly options: LeaderElectorOptions;
  private leaderIdentity: string | undefined;
  private currentTerm = 0;

  constructor(options: LeaderElectorOptions) {
    validateTiming(options);
    this.options = options;
  }

  /** Who leads, as last observed (undefined when unknown or none). */
  get leader(): string | undefined {
    return this.leaderIdentity;
  }

  /** The fencing term while this replica leads, 0 otherwise. */
  get term(): number {
    return this.currentTerm;
  }

  /**
   * Campaigns, leads, steps down and campaigns again until `signal` aborts; then resigns (so another
   * replica takes over at once instead of after the TTL) and resolves.
   */
  async run(signal: AbortSignal): Promise<void> {
    const { clock, logger, retryPeriodMs } = this.options;
    const observing = this.observe(signal);
    while (!signal.aborted) {
      try {
        await this.campaignOnce(signal);
      } catch (error) {
        if (!signal.aborted) logger.warn({ err: error }, "leader election: campaign failed; retrying");
      }
      if (!signal.aborted) await clock.sleep(retryPeriodMs, signal).catch(() => undefined);
    }
    await observing;
  }

  /** One campaign: wait to be elected, lead until the lease is lost or the work ends, resign. */
  private async campaignOnce(signal: AbortSignal): Promise<void> {
    const { client, electionName, identity, leaseTtlSeconds, logger, callbacks } = this.options;
    const campaign = client.election(electionName, leaseTtlSeconds).campaign(identity);
    const lost = new AbortController();
    // etcd3 emits 'error' on lease loss or a failed campaign; without a listener it would crash the process.
    campaign.on("error", (error: Error) => {
      if (!lost.signal.aborted) logger.warn({ err: error }, "leader election: campaign error (lease lost or etcd unreachable)");
      lost.abort(error);
    });
    const elected = new Promise<void>((resolve) => campaign.on("elected", () => resolve()));
    try {
      await Promise.race([elected, aborted(lost.signal), aborted(signal)]);
      if (signal.aborted || lost.signal.aborted) return;

      const key = await campaign.getCampaignKey();
      const term = await this.readCreateRevision(key);
      if (term === undefined || signal.aborted || lost.signal.aborted) return;

      const leading = new AbortController();
      const stop = () => leading.abort();
      signal.addEventListener("abort", stop, { once: true });
      lost.signal.addEventListener("abort", stop, { once: true });
      this.currentTerm = term;
      logger.info({ term, identity }, "leader election: leading");
      const watchdog = this.confirmWhileLeading(key, term, leading);
      try {
        await callbacks.onStartedLeading(leading.signal, term);
      } catch (error) {
        logger.error({ err: error, term }, "leader election: leader work failed");
      } finally {
        leading.abort();
        signal.removeEventListener("abort", stop);
        this.currentTerm = 0;
        await watchdog;
        callbacks.onStoppedLeading();
        logger.info({ term, identity }, "leader election: stopped leading");
      }
    } finally {
      await this.resign(campaign);
    }
  }

  /** Resigns without hanging on an unreachable etcd (the lease then simply expires). */
  private async resign(campaign: { resign(): Promise<void> }): Promise<void> {
    const { clock, retryPeriodMs, logger } = this.options;
    const giveUp = new AbortController();
    await Promise.race([
      campaign.resign().catch((error: unknown) => logger.debug({ err: error }, "leader election: resign failed; the lease will expire")),
      clock.sleep(Math.max(retryPeriodMs, 500), giveUp.signal).catch(() => undefined),
    ]);
    giveUp.abort();
  }

  /** The campaign key's create revision (the fencing term), or undefined when the key is gone. */
  private async readCreateRevision(key: string): Promise<number | undefined> {
    const response = await this.options.client.get(key).exec();
    const kv = response.kvs[0];
    if (kv === undefined) return undefined;
    const term = Number(kv.create_revision);
    // Terms are compared as numbers in SQL (bigint) and JS; a revision past 2^53 would make them ambiguous.
    if (!Number.isSafeInteger(term) || term <= 0) throw new RangeError(`unusable etcd create_revision ${kv.create_revision}`);
    return term;
  }

  /**
   * client-go's renew loop: every retry period, confirm the leader key still exists with our revision
   * (a linearizable read, so it needs a quorum). Without a confirmation for the renew deadline — etcd
   * unreachable, or this process was paused — step down before the lease can have passed to another replica.
   */
  private async confirmWhileLeading(key: string, term: number, leading: AbortController): Promise<void> {
    const { clock, logger, retryPeriodMs, renewDeadlineMs } = this.options;
    let confirmedAt = clock.now();
    while (!leading.signal.aborted) {
      await clock.sleep(retryPeriodMs, leading.signal).catch(() => undefined);
      if (leading.signal.aborted) return;
      // Checked before the read too: after a pause (SIGSTOP) the read could still succeed while the lease
      // already belongs to someone else; the fencing term covers commits, this covers everything else.
      if (clock.now() - confirmedAt > renewDeadlineMs) {
        logger.error({ term, sinceMs: clock.now() - confirmedAt }, "leader election: renew deadline passed; stepping down");
        leading.abort();
        return;
      }
      try {
        const current = await this.readCreateRevision(key);
        if (current !== term) {
          logger.error({ term, current }, "leader election: leader key is gone; stepping down");
          leading.abort();
          return;
        }
        confirmedAt = clock.now();
      } catch (error) {
        logger.warn({ err: error, term }, "leader election: could not confirm leadership");
        if (clock.now() - confirmedAt > renewDeadlineMs) {
          logger.error({ term }, "leader election: renew deadline passed; stepping down");
          leading.abort();
          return;
        }
      }
    }
  }

  /** Follows the election's leader key and reports changes through onNewLeader. */
  private async observe(signal: AbortSignal): Promise<void> {
    const { client, electionName, clock, retryPeriodMs, logger, callbacks } = this.options;
    const report = (identity: string | undefined) => {
      if (identity === this.leaderIdentity) return;
      this.leaderIdentity = identity;
      callbacks.onNewLeader?.(identity);
    };
    while (!signal.aborted) {
      try {
        const observer = await client.election(electionName).observe();
        // observe() resolves on its first 'change', which does not carry a leader already in place.
        report(observer.leader());
        observer.on("change", (value: string | undefined) => report(value ?? observer.leader()));
        const failed = new Promise<void>((resolve) => {
          observer.on("error", (error: Error) => {
            logger.debug({ err: error }, "leader election: observer failed");
            resolve();
          });
        });
        await Promise.race([failed, aborted(signal)]);
        await observer.cancel().catch(() => undefined);
      } catch (error) {
        logger.debug({ err: error }, "leader election: could not observe the election");
      }
      report(undefined);
      if (!signal.aborted) await clock.sleep(retryPeriodMs, signal).catch(() => undefined);
    }
  }
}
