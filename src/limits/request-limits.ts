/**
 * The limits every authenticated customer rpc passes, applied by `authorizeCall` once the caller is
 * known (src/limits/README.md explains the choices):
 *
 * - the general request limit, a token bucket per API key (sessions: per customer), in this
 *   replica's memory; a refusal is 429 `RATE_LIMITED` with `Retry-After`;
 * - the headers: `X-RateLimit-*` of the limit that applies to the rpc. For `CreateTrainingJob`
 *   that is the job-creation limit (read from the database here; the handler overwrites it with
 *   the count its transaction decided on); for every other rpc, the general limit.
 */
import type { HandlerContext } from "@connectrpc/connect";
import type { Clock } from "../platform/clock.ts";
import type { SchedulerConfig } from "../platform/config.ts";
import type { Database } from "../store/database.ts";
import { applyRateLimitHeaders, rateLimitedError } from "./headers.ts";
import { jobCreationLimitBefore } from "./job-creation.ts";
import { TokenBucketLimiter } from "./token-bucket.ts";
import { peerAddressHeader } from "../platform/http-types.ts";

/** What the request limits need (a subset of ControlPlaneDeps). */
export interface RequestLimitDeps {
  readonly config: SchedulerConfig;
  readonly db: Database;
  readonly clock: Clock;
  readonly requestLimiter: TokenBucketLimiter;
}

/** Default of the general limit: requests per minute per API key (or per customer's sessions). */
export const defaultRequestsPerMinute = 600;

/** Options of {@link createRequestLimiter}. */
export interface RequestLimitOptions {
  /** Requests per minute per caller, also the burst size; 0 turns the general limit off. Default 600. */
  readonly requestsPerMinute?: number;
  /** Most callers tracked per replica (default 100 000). */
  readonly maxCallers?: number;
}

/** The general request limiter of one replica. */
export function createRequestLimiter(clock: Clock, options: RequestLimitOptions = {}): TokenBucketLimiter {
  return new TokenBucketLimiter({
    clock,
    limit: options.requestsPerMinute ?? defaultRequestsPerMinute,
    windowMs: 60_000,
    ...(options.maxCallers === undefined ? {} : { maxKeys: options.maxCallers }),
  });
}

/**
 * What a limit needs of an authenticated caller (auth's principal has it): limits sit below
 * auth, which calls them, so they name only these fields.
 */
export interface LimitedCaller {
  readonly customerId: string;
  readonly apiKeyId: string | undefined;
}

/**
 * Whose bucket a request takes from: the API key, or for portal sessions the customer (one bucket
 * for all of a customer's sessions, so signing in again does not buy a fresh bucket).
 */
export function requestLimitKey(principal: LimitedCaller): string {
  return principal.apiKeyId === undefined ? `customer:${principal.customerId}` : `key:${principal.apiKeyId}`;
}

const customerServiceName = "gpuagent.customer.v1.CustomerService";

/** Whether the rpc is CustomerService.CreateTrainingJob, whose headers describe the job-creation limit. */
export function isJobCreation(ctx: HandlerContext): boolean {
  return ctx.method.parent.typeName === customerServiceName && ctx.method.name === "CreateTrainingJob";
}

/**
 * Takes one request from the caller's bucket, refusing with 429 `RATE_LIMITED` when it is empty,
 * and sets the `X-RateLimit-*` headers of the limit that applies to this rpc on the response
 * (they stay on it whether the handler then succeeds or fails).
 */
export async function enforceRequestLimits(deps: RequestLimitDeps, ctx: HandlerContext, principal: LimitedCaller): Promise<void> {
  const limiter = deps.requestLimiter;
  const state = limiter.take(requestLimitKey(principal));
  if (!state.allowed) {
    // The refusal carries the headers itself (REST writes them, Connect sends them as error metadata).
    const who = principal.apiKeyId === undefined ? "per customer for portal sessions" : "per API key";
    throw rateLimitedError(state, `at most ${state.limit} requests per minute ${who}; retry in ${state.retryAfterS} s`);
  }
  if (isJobCreation(ctx)) {
    const nowMs = deps.clock.now();
    applyRateLimitHeaders(ctx.responseHeader, await jobCreationLimitBefore(deps.db, principal.customerId, deps.config.limits.jobCreationsPerMinute, nowMs));
    return;
  }
  if (limiter.enabled) applyRateLimitHeaders(ctx.responseHeader, state);
}

/** `GPU_AGENT_LIMIT_REQUESTS_PER_MINUTE` (read by cmd/scheduler.ts): the general limit; 0 turns it off. */
export function requestLimitOptionsFromEnv(env: NodeJS.ProcessEnv): RequestLimitOptions {
  const raw = env["GPU_AGENT_LIMIT_REQUESTS_PER_MINUTE"] ?? "";
  if (raw === "") return {};
  const value = Number(raw);
  if (!Number.isInteger(value) || value < 0) throw new Error(`GPU_AGENT_LIMIT_REQUESTS_PER_MINUTE must be a non-negative integer, got ${JSON.stringify(raw)}`);
  return { requestsPerMinute: value };
}

/**
 * Limits a caller without credentials (public rpcs such as login, and failed
 * authentication) by its peer address, with the same budget, so the
 * `X-RateLimit-*` headers are on every customer response and login cannot be
 * hammered from one address. Behind a proxy every client shares the proxy's
 * address: put a per-client limit at the ingress (README).
 */
export function enforceAnonymousLimit(deps: RequestLimitDeps, ctx: HandlerContext): void {
  const limiter = deps.requestLimiter;
  if (!limiter.enabled) return;
  const peer = ctx.requestHeader.get(peerAddressHeader) ?? "unknown";
  const state = limiter.take(`peer:${peer}`);
  if (!state.allowed) throw rateLimitedError(state, `at most ${state.limit} requests per minute from one address without credentials; retry in ${state.retryAfterS} s`);
  applyRateLimitHeaders(ctx.responseHeader, state);
}
