/**
 * What the `X-RateLimit-*` headers of `CreateTrainingJob` say: the per-customer job-creation limit
 * (seed 001: 10 per minute), a sliding 60-second window over `training_jobs.created_at`. The
 * decision itself is made in the job-creation transaction that locks the customer row (exact
 * across replicas); these functions only describe a count read from the database.
 */
import type { Sql } from "../store/database.ts";
import { customerJobCounts } from "../store/jobs.ts";
import type { RateLimitState } from "./token-bucket.ts";

/** The job-creation window. */
export const jobCreationWindowMs = 60_000;

/** The counts the description needs (a subset of `customerJobCounts`). */
export interface JobCreationCounts {
  /** Jobs the customer created in the 60 s before now. */
  readonly createdLastMinute: number;
  /** The oldest of those, or null. */
  readonly oldestInWindow: Date | null;
}

/**
 * The job-creation limit's state at `nowMs`. `created` true: a job was just created (it is not in
 * `counts` yet), so it counts and the window resets 60 s after the oldest job in it, this one
 * included. `created` false: nothing was consumed (the call failed, or was refused).
 */
export function jobCreationLimitState(limitPerMinute: number, counts: JobCreationCounts, nowMs: number, created: boolean): RateLimitState {
  const used = counts.createdLastMinute + (created ? 1 : 0);
  const oldestMs = counts.oldestInWindow?.getTime() ?? (created ? nowMs : undefined);
  const allowed = created || counts.createdLastMinute < limitPerMinute;
  return {
    scope: "job_creations",
    limit: limitPerMinute,
    remaining: Math.max(0, limitPerMinute - used),
    resetAtS: Math.ceil((oldestMs === undefined ? nowMs : oldestMs + jobCreationWindowMs) / 1000),
    allowed,
    retryAfterS: allowed ? 0 : Math.max(1, Math.ceil(((oldestMs ?? nowMs) + jobCreationWindowMs - nowMs) / 1000)),
  };
}

/** Reads the customer's counts and describes the limit before a creation is attempted. */
export async function jobCreationLimitBefore(sql: Sql, customerId: string, limitPerMinute: number, nowMs: number): Promise<RateLimitState> {
  const counts = await customerJobCounts(sql, customerId, new Date(nowMs));
  return jobCreationLimitState(limitPerMinute, counts, nowMs, false);
}
