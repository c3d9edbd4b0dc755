/**
 * What the customer client (client.ts) and the operator client (admin.ts) share, so both have the
 * same error typing and the same 429 policy:
 *
 * - one Connect transport (JSON over HTTP/1.1) whose interceptors authenticate every attempt and
 *   retry `RATE_LIMITED` after `Retry-After`, at most `maxRetries` times, each wait capped;
 * - `send`, the plain-HTTP path of signed upload/download URLs, with the same policy;
 * - `call`, which turns whatever an rpc threw into a {@link GpuAgentError};
 * - an injected {@link Clock} for every wait and deadline, so callers (and tests) control time.
 */
import type { CallOptions, Interceptor, Transport } from "@connectrpc/connect";
import { Code, ConnectError } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { reasonMetadataKey } from "../api/errors.ts";
import type { Clock } from "../platform/clock.ts";
import { systemClock } from "../platform/clock.ts";
import { GpuAgentError, fromConnectError, fromFetchFailure, parseRetryAfterSeconds } from "./errors.ts";

/** Retries of one request after a 429 (so at most 4 attempts). */
export const DEFAULT_MAX_RETRIES = 3;
/** Longest single wait honoured from `Retry-After`; a longer ask is clamped so a server cannot park the caller. */
export const DEFAULT_MAX_RETRY_DELAY_MS = 30_000;
/** Wait before retry `n` (0-based) when a 429 carries no usable `Retry-After`: 1 s, 2 s, 4 s, ... */
const FALLBACK_RETRY_DELAY_MS = 1_000;

/** Options every SDK client takes besides its credential. */
export interface ClientOptionsBase {
  /** The control plane's URL, e.g. `https://api.example.com` (REST, Connect and gRPC share it). */
  baseUrl: string;
  /** fetch used for the plain-HTTP upload and download paths; defaults to the global fetch. */
  fetch?: typeof fetch;
  /** Retries after a 429 `RATE_LIMITED` (default {@link DEFAULT_MAX_RETRIES}); 0 turns retrying off. */
  maxRetries?: number;
  /** Cap of one retry wait in ms (default {@link DEFAULT_MAX_RETRY_DELAY_MS}). */
  maxRetryDelayMs?: number;
  /** Called before each retry wait, e.g. to log it. */
  onRetry?: (info: RetryInfo) => void;
  /** Extra Connect interceptors, run on every attempt after authentication (logging, tracing). */
  interceptors?: Interceptor[];
  /**
   * Deadline of one rpc in ms, its retry waits included; it ends with `TIMEOUT`. None by default.
   * Uploads and downloads of bytes have no deadline (files may be large), nor has a job's live
   * stream (`jobs.watch`, which lasts as long as the job); pass a `signal` instead.
   */
  requestTimeoutMs?: number;
  /** Time source of retry waits, poll intervals and deadlines (default: the system clock). */
  clock?: Clock;
}

/** What {@link ClientOptionsBase.onRetry} is told. */
export interface RetryInfo {
  /** 1 for the first retry. */
  attempt: number;
  /** How long the SDK waits before it. */
  delayMs: number;
  /** What the server asked for in `Retry-After`, in seconds; undefined when it did not say. */
  retryAfterS: number | undefined;
  /** The rpc (`CreateTrainingJob`) or the HTTP method and URL of the byte path. */
  operation: string;
}

/** A page request of the list rpcs. */
export interface PageOptions {
  limit?: number;
  cursor?: string;
}

/** Per-call options. */
export interface CallOpts {
  signal?: AbortSignal;
}

/** The shared machinery of one client. */
export interface SdkCore {
  /** `baseUrl` without trailing slashes. */
  readonly baseUrl: string;
  readonly baseOrigin: string;
  readonly clock: Clock;
  /** The authenticated, retrying Connect transport. */
  readonly transport: Transport;
  /** Runs an rpc and turns its failure into a {@link GpuAgentError}. */
  call<T>(fn: () => Promise<T>): Promise<T>;
  /** Plain HTTP with the 429 policy; `makeInit` runs per attempt because a streamed body is spent by the first. */
  send(url: string, makeInit: () => RequestInit): Promise<Response>;
  /** Sleeps on the clock, ending early with `ABORTED` when the signal fires. */
  sleep(ms: number, signal: AbortSignal | undefined): Promise<void>;
}

/**
 * Builds the core of a client. `authenticate` sets the credential headers on each attempt (the
 * customer client sends `x-api-key` or a session bearer, the admin client the admin bearer).
 */
export function createSdkCore(options: ClientOptionsBase, authenticate: (header: Headers) => void): SdkCore {
  const baseUrl = options.baseUrl.replace(/\/+$/, "");
  const baseOrigin = new URL(baseUrl).origin;
  const doFetch = options.fetch ?? fetch;
  const clock = options.clock ?? systemClock;
  const maxRetries = Math.max(0, options.maxRetries ?? DEFAULT_MAX_RETRIES);
  const maxRetryDelayMs = options.maxRetryDelayMs ?? DEFAULT_MAX_RETRY_DELAY_MS;

  function retryDelayMs(retryAfterS: number | undefined, attempt: number): number {
    return Math.min(retryAfterS === undefined ? FALLBACK_RETRY_DELAY_MS * 2 ** attempt : Math.ceil(retryAfterS * 1000), maxRetryDelayMs);
  }

  async function sleep(ms: number, signal: AbortSignal | undefined): Promise<void> {
    throwIfAborted(signal);
    try {
      await clock.sleep(ms, signal);
    } catch (error) {
      if (signal?.aborted === true) throw abortedError();
      throw error;
    }
  }

  const authInterceptor: Interceptor = (next) => async (req) => {
    authenticate(req.header);
    return await next(req);
  };

  const retryInterceptor: Interceptor = (next) => async (req) => {
    // A streamed request body is spent by the first attempt; only unary calls are replayed.
    if (req.stream) return await next(req);
    for (let attempt = 0; ; attempt++) {
      try {
        return await next(req);
      } catch (error) {
        if (!(error instanceof ConnectError) || error.metadata.get(reasonMetadataKey) !== "RATE_LIMITED" || attempt >= maxRetries) throw error;
        const retryAfterS = parseRetryAfterSeconds(error.metadata.get("retry-after"), clock.now());
        const delayMs = retryDelayMs(retryAfterS, attempt);
        options.onRetry?.({ attempt: attempt + 1, delayMs, retryAfterS, operation: req.method.name });
        // The call's signal also carries its deadline: when it fires mid-wait, Connect reports its
        // reason (TIMEOUT or ABORTED), whatever this throws.
        await clock.sleep(delayMs, req.signal);
      }
    }
  };

  const transport = createConnectTransport({
    baseUrl,
    httpVersion: "1.1",
    ...(options.requestTimeoutMs === undefined ? {} : { defaultTimeoutMs: options.requestTimeoutMs }),
    // Outermost first: auth sets the header once, the retry loop wraps the caller's interceptors
    // so they see every attempt.
    interceptors: [authInterceptor, retryInterceptor, ...(options.interceptors ?? [])],
  });

  async function call<T>(fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (error) {
      throw fromConnectError(error);
    }
  }

  async function send(url: string, makeInit: () => RequestInit): Promise<Response> {
    for (let attempt = 0; ; attempt++) {
      const init = makeInit();
      let res: Response;
      try {
        res = await doFetch(url, init);
      } catch (error) {
        throw fromFetchFailure(url, error);
      }
      if (res.status !== 429 || attempt >= maxRetries) return res;
      const retryAfterS = parseRetryAfterSeconds(res.headers.get("retry-after"), clock.now());
      const delayMs = retryDelayMs(retryAfterS, attempt);
      options.onRetry?.({ attempt: attempt + 1, delayMs, retryAfterS, operation: `${init.method ?? "GET"} ${url}` });
      // Release the connection before sleeping.
      await res.body?.cancel().catch(() => undefined);
      await sleep(delayMs, init.signal ?? undefined);
    }
  }

  return { baseUrl, baseOrigin, clock, transport, call, send, sleep };
}

/** Connect call options from the SDK's per-call options and extra headers. */
export function callOptions(opts: CallOpts | undefined, headers?: Record<string, string>): CallOptions {
  return {
    ...(opts?.signal === undefined ? {} : { signal: opts.signal }),
    ...(headers === undefined ? {} : { headers }),
  };
}

/** The `{limit, cursor}` of a list request (0 and "" mean the server's defaults). */
export function pageRequest(p: PageOptions | undefined): { limit: number; cursor: string } {
  return { limit: p?.limit ?? 0, cursor: p?.cursor ?? "" };
}

/** Response fields that the server always sets are optional in proto3; a missing one is the server's fault. */
export function required<T>(value: T | undefined, rpcName: string): T {
  if (value === undefined) {
    throw new GpuAgentError({ code: "BAD_RESPONSE", message: `${rpcName} answered without its resource`, httpStatus: 0, connectCode: Code.Internal });
  }
  return value;
}

/** The error of an operation its caller aborted. */
export function abortedError(): GpuAgentError {
  return new GpuAgentError({ code: "ABORTED", message: "the operation was aborted", httpStatus: 0, connectCode: Code.Canceled });
}

/** Throws `ABORTED` when the signal has fired. */
export function throwIfAborted(signal: AbortSignal | undefined): void {
  if (signal?.aborted === true) throw abortedError();
}
