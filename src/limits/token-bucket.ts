/**
 * The general request limit: one token bucket per caller, in this replica's memory.
 *
 * A bucket holds at most `limit` tokens and refills continuously at `limit` per `windowMs`
 * (600 per minute by default: 10 per second, bursts of up to 600). A request takes one token;
 * without one it is refused with the number of seconds until the next token exists. The state a
 * response reports is exact for this replica: `remaining` is the whole tokens left after the
 * request, `resetAtS` the unix second at which the bucket is full again, `retryAfterS` (refusals
 * only) the wait for one token.
 *
 * Per replica: N replicas behind a load balancer admit up to N × limit in the worst case. That is
 * acceptable for a limit whose job is to protect the API from runaway clients; the limits that
 * cost money (job creations, active jobs, daily units) are decided exactly in the database.
 */
import type { Clock } from "../platform/clock.ts";

/** What one decision of a limit says, for the `X-RateLimit-*` and `Retry-After` headers. */
export interface RateLimitState {
  /** Which limit this is (`X-RateLimit-Scope`): `requests` or `job_creations`. */
  readonly scope: RateLimitScope;
  /** The most requests the limit admits in one window (`X-RateLimit-Limit`). */
  readonly limit: number;
  /** How many more are admitted right now (`X-RateLimit-Remaining`), after this request. */
  readonly remaining: number;
  /** Unix seconds at which the full limit is available again (`X-RateLimit-Reset`). */
  readonly resetAtS: number;
  /** Whether this request is admitted. */
  readonly allowed: boolean;
  /** Seconds to wait before one more request is admitted; 0 when `allowed`. */
  readonly retryAfterS: number;
}

/** The limits a response may describe. */
export type RateLimitScope = "requests" | "job_creations";

/** Options of {@link TokenBucketLimiter}. */
export interface TokenBucketOptions {
  readonly clock: Clock;
  /** Requests per window and burst size; 0 turns the limit off. */
  readonly limit: number;
  /** Length of the window the limit is expressed in (default 60 000 ms). */
  readonly windowMs?: number;
  /**
   * Most callers tracked at once (default 100 000, a few MB). Beyond it the least recently seen
   * callers are forgotten, which only ever gives them a full bucket back.
   */
  readonly maxKeys?: number;
}

interface Bucket {
  tokens: number;
  atMs: number;
}

/** Per-key token buckets. */
export class TokenBucketLimiter {
  readonly limit: number;
  readonly windowMs: number;
  private readonly clock: Clock;
  private readonly maxKeys: number;
  /** Insertion order = least recently used first (a take re-inserts its key). */
  private readonly buckets = new Map<string, Bucket>();

  constructor(options: TokenBucketOptions) {
    if (!Number.isInteger(options.limit) || options.limit < 0) throw new Error(`limit must be a non-negative integer, got ${options.limit}`);
    this.limit = options.limit;
    this.windowMs = options.windowMs ?? 60_000;
    if (!(this.windowMs > 0)) throw new Error("windowMs must be positive");
    this.clock = options.clock;
    this.maxKeys = Math.max(1, options.maxKeys ?? 100_000);
  }

  /** False when the limit is off (limit 0): nothing is refused and no headers describe it. */
  get enabled(): boolean {
    return this.limit > 0;
  }

  /** Number of callers currently tracked (tests, metrics). */
  get size(): number {
    return this.buckets.size;
  }

  /** Takes one token from `key`'s bucket if it has one, and reports the bucket's state after that. */
  take(key: string): RateLimitState {
    const nowMs = this.clock.now();
    const ratePerMs = this.limit / this.windowMs;
    const previous = this.buckets.get(key);
    let tokens = this.limit;
    if (previous !== undefined) {
      // A clock that went backwards refills nothing (and takes nothing back).
      tokens = Math.min(this.limit, previous.tokens + Math.max(0, nowMs - previous.atMs) * ratePerMs);
      this.buckets.delete(key);
    }
    const allowed = this.enabled && tokens >= 1;
    if (allowed) tokens -= 1;
    if (this.enabled) {
      // The bucket object is reused (one allocation less per call); re-inserting keeps the LRU order.
      if (previous === undefined) this.buckets.set(key, { tokens, atMs: nowMs });
      else {
        previous.tokens = tokens;
        previous.atMs = nowMs;
        this.buckets.set(key, previous);
      }
      this.evict();
    }
    const untilFullMs = this.enabled ? (this.limit - tokens) / ratePerMs : 0;
    return {
      scope: "requests",
      limit: this.limit,
      remaining: Math.max(0, Math.floor(tokens)),
      resetAtS: Math.ceil((nowMs + untilFullMs) / 1000),
      allowed: allowed || !this.enabled,
      retryAfterS: allowed || !this.enabled ? 0 : Math.max(1, Math.ceil((1 - tokens) / ratePerMs / 1000)),
    };
  }

  /**
   * Drops the least recently seen callers beyond `maxKeys` (a Map iterates in insertion order and
   * every take re-inserts its key). The oldest bucket has usually refilled already, so forgetting
   * it changes nothing; under a flood of distinct keys it hands a caller a full bucket early.
   */
  private evict(): void {
    if (this.buckets.size <= this.maxKeys) return;
    for (const key of this.buckets.keys()) {
      if (this.buckets.size <= this.maxKeys) return;
      this.buckets.delete(key);
    }
  }
}
