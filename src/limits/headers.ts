/**
 * The `X-RateLimit-*` response headers, written from a {@link RateLimitState} so that what a
 * response says is what the limit decided:
 *
 *     X-RateLimit-Limit: 600          most requests of this kind per window
 *     X-RateLimit-Remaining: 598      how many more are admitted now
 *     X-RateLimit-Reset: 1767225660   unix seconds when the full limit is available again
 *     X-RateLimit-Scope: requests     which limit: `requests` (per caller) or `job_creations`
 *     Retry-After: 3                  on 429 only: seconds until one more is admitted
 */
import { ApiError } from "../platform/errors.ts";
import type { RateLimitState } from "./token-bucket.ts";

/** Header names (lower case, as HTTP/2 and the Headers class use them). */
export const rateLimitHeaderNames = {
  limit: "x-ratelimit-limit",
  remaining: "x-ratelimit-remaining",
  reset: "x-ratelimit-reset",
  scope: "x-ratelimit-scope",
  retryAfter: "retry-after",
} as const;

/** The headers describing `state`; `Retry-After` only when the request was refused. */
export function rateLimitHeaders(state: RateLimitState): Record<string, string> {
  const headers: Record<string, string> = {
    [rateLimitHeaderNames.limit]: String(state.limit),
    [rateLimitHeaderNames.remaining]: String(state.remaining),
    [rateLimitHeaderNames.reset]: String(state.resetAtS),
    [rateLimitHeaderNames.scope]: state.scope,
  };
  if (!state.allowed) headers[rateLimitHeaderNames.retryAfter] = String(state.retryAfterS);
  return headers;
}

/**
 * Sets (replacing earlier values) the `X-RateLimit-*` headers describing `state` on a response.
 * Never `Retry-After`: that belongs to the refusal (the ApiError's headers), and Connect appends
 * an error's metadata to the response headers, so setting it in both places would double it.
 */
export function applyRateLimitHeaders(target: Headers, state: RateLimitState): void {
  // The four of rateLimitHeaders(state), set directly (this runs on every customer call).
  target.set(rateLimitHeaderNames.limit, String(state.limit));
  target.set(rateLimitHeaderNames.remaining, String(state.remaining));
  target.set(rateLimitHeaderNames.reset, String(state.resetAtS));
  target.set(rateLimitHeaderNames.scope, state.scope);
}

/** The 429 `RATE_LIMITED` for a refused request, carrying the state's headers and Retry-After. */
export function rateLimitedError(state: RateLimitState, message: string): ApiError {
  return new ApiError("RATE_LIMITED", message, {
    headers: rateLimitHeaders(state),
    details: { scope: state.scope, limit: state.limit, retry_after_seconds: state.retryAfterS },
  });
}
