/**
 * The one error type the SDK throws. Server failures keep the seed code the control plane decided
 * (src/platform/errors.ts), whichever path carried it: Connect errors carry it in the
 * `x-gpu-agent-error-code` metadata, the plain-HTTP upload and download paths in the REST
 * envelope `{"error":{code,message,request_id}}`. Failures that happen on the client side (a
 * checksum that does not match, a server that cannot be reached) get codes of their own, so
 * callers can `switch (err.code)` over one closed union.
 */
import { Code, ConnectError } from "@connectrpc/connect";
import { systemClock } from "../platform/clock.ts";
import { ErrorCode } from "../platform/errors.ts";
import { connectCodeOf, httpStatusOf, reasonMetadataKey } from "../api/errors.ts";

/** Codes the SDK itself raises (never sent by the server). */
export const SdkErrorCode = {
  /** A download's or upload's bytes do not hash to the sha256 the server recorded. */
  CHECKSUM_MISMATCH: "CHECKSUM_MISMATCH",
  /** The server could not be reached (refused, reset, DNS). */
  CONNECTION_FAILED: "CONNECTION_FAILED",
  /** A deadline of the SDK passed (e.g. `waitForJob`'s `timeoutMs`). */
  TIMEOUT: "TIMEOUT",
  /** The caller's AbortSignal fired. */
  ABORTED: "ABORTED",
  /** The server answered something the SDK cannot read (no seed code, not the envelope). */
  BAD_RESPONSE: "BAD_RESPONSE",
} as const;
/** Union of {@link SdkErrorCode}'s values. */
export type SdkErrorCode = (typeof SdkErrorCode)[keyof typeof SdkErrorCode];

/** Every code a {@link GpuAgentError} can have: the server's seed codes plus the SDK's own. */
export type GpuAgentErrorCode = ErrorCode | SdkErrorCode;

/** Fields of a {@link GpuAgentError}. */
export interface GpuAgentErrorInit {
  code: GpuAgentErrorCode;
  message: string;
  httpStatus: number;
  connectCode: Code;
  requestId?: string;
  /** Seconds the server asked to wait (429), when it said. */
  retryAfterS?: number;
  cause?: unknown;
}

/** A failed SDK call with a stable, typed `code`. */
export class GpuAgentError extends Error {
  /** Seed code (e.g. `JOB_NOT_FOUND`) or an SDK code (e.g. `CHECKSUM_MISMATCH`). */
  readonly code: GpuAgentErrorCode;
  /** HTTP status of the failure (the status the seed code maps to on Connect; 0 when nothing answered). */
  readonly httpStatus: number;
  /** Connect code of the failure (mapped from the seed code on the REST paths). */
  readonly connectCode: Code;
  /** The server's request id (`x-request-id` / `error.request_id`); empty when none came. */
  readonly requestId: string;
  /** `Retry-After` in seconds on a 429, when the server sent one. */
  readonly retryAfterS: number | undefined;

  constructor(init: GpuAgentErrorInit) {
    super(init.message, init.cause === undefined ? undefined : { cause: init.cause });
    this.name = "GpuAgentError";
    this.code = init.code;
    this.httpStatus = init.httpStatus;
    this.connectCode = init.connectCode;
    this.requestId = init.requestId ?? "";
    this.retryAfterS = init.retryAfterS;
  }
}

/** Whether `code` is one of the server's seed codes. */
export function isServerErrorCode(code: string): code is ErrorCode {
  return Object.hasOwn(ErrorCode, code);
}

/**
 * Whether a failure may clear by itself when the same read is tried again a little later: the
 * server could not be reached, timed out, or answered a 5xx. Seed codes of the caller's own
 * making (not found, invalid, unauthorized) never are.
 */
export function isTransientFailure(error: unknown): boolean {
  if (!(error instanceof GpuAgentError)) return false;
  return error.code === "CONNECTION_FAILED" || error.code === "TIMEOUT" || error.httpStatus >= 500;
}

/** Reads a `Retry-After` of delta-seconds or an HTTP date, as seconds from now; undefined when absent. */
export function parseRetryAfterSeconds(value: string | null, nowMs: number = systemClock.now()): number | undefined {
  if (value === null || value.trim() === "") return undefined;
  const trimmed = value.trim();
  if (/^\d+(\.\d+)?$/.test(trimmed)) return Number(trimmed);
  const at = Date.parse(trimmed);
  return Number.isNaN(at) ? undefined : Math.max(0, (at - nowMs) / 1000);
}

const httpStatusOfConnectCode: Partial<Record<Code, number>> = {
  [Code.InvalidArgument]: 400,
  [Code.Unauthenticated]: 401,
  [Code.PermissionDenied]: 403,
  [Code.NotFound]: 404,
  [Code.Aborted]: 409,
  [Code.AlreadyExists]: 409,
  [Code.FailedPrecondition]: 412,
  [Code.ResourceExhausted]: 429,
  [Code.Unimplemented]: 501,
  [Code.Unavailable]: 503,
  [Code.DeadlineExceeded]: 504,
  [Code.Canceled]: 499,
};

/** Converts whatever a Connect call threw into a {@link GpuAgentError}. */
export function fromConnectError(error: unknown): GpuAgentError {
  if (error instanceof GpuAgentError) return error;
  const ce = ConnectError.from(error);
  const requestId = ce.metadata.get("x-request-id") ?? "";
  const retryAfterS = parseRetryAfterSeconds(ce.metadata.get("retry-after"));
  const reason = ce.metadata.get(reasonMetadataKey);
  const base = { requestId, cause: error, ...(retryAfterS === undefined ? {} : { retryAfterS }) };
  if (reason !== null && isServerErrorCode(reason)) {
    // The server prefixes "[CODE] " so code-unaware clients still show it; ours has the code already.
    const prefix = `[${reason}] `;
    const message = ce.rawMessage.startsWith(prefix) ? ce.rawMessage.slice(prefix.length) : ce.rawMessage;
    return new GpuAgentError({ ...base, code: reason, message, httpStatus: httpStatusOf(reason), connectCode: ce.code });
  }
  if (ce.code === Code.Canceled) {
    return new GpuAgentError({ ...base, code: "ABORTED", message: ce.rawMessage, httpStatus: 0, connectCode: ce.code });
  }
  if (ce.code === Code.DeadlineExceeded) {
    return new GpuAgentError({ ...base, code: "TIMEOUT", message: ce.rawMessage, httpStatus: 0, connectCode: ce.code });
  }
  // No seed code: the transport failed (connection refused surfaces as Unavailable/Unknown, a
  // connection cut in the middle of a response as Aborted) or a proxy answered. Keep Connect's code
  // so the caller still sees what kind of failure it was.
  const connectionLike = ce.code === Code.Unavailable || ce.code === Code.Unknown || ce.code === Code.Internal || ce.code === Code.Aborted;
  return new GpuAgentError({
    ...base,
    code: connectionLike && reason === null ? "CONNECTION_FAILED" : "BAD_RESPONSE",
    message: ce.rawMessage,
    httpStatus: httpStatusOfConnectCode[ce.code] ?? 0,
    connectCode: ce.code,
  });
}

/** Builds a {@link GpuAgentError} from a non-2xx plain-HTTP answer and its body text (the REST envelope). */
export function fromRestResponse(res: Response, text: string): GpuAgentError {
  const headerRequestId = res.headers.get("x-request-id") ?? "";
  const retryAfterS = parseRetryAfterSeconds(res.headers.get("retry-after"));
  const extra = retryAfterS === undefined ? {} : { retryAfterS };
  try {
    const parsed = JSON.parse(text) as { error?: { code?: unknown; message?: unknown; request_id?: unknown } };
    const e = parsed.error;
    if (typeof e === "object" && e !== null && typeof e.code === "string" && isServerErrorCode(e.code)) {
      return new GpuAgentError({
        ...extra,
        code: e.code,
        message: typeof e.message === "string" && e.message !== "" ? e.message : res.statusText,
        httpStatus: res.status,
        connectCode: connectCodeOf(e.code),
        requestId: typeof e.request_id === "string" && e.request_id !== "" ? e.request_id : headerRequestId,
      });
    }
  } catch {
    // Not JSON (a proxy's HTML page): described below.
  }
  const snippet = text.trim().slice(0, 200);
  return new GpuAgentError({
    ...extra,
    code: "BAD_RESPONSE",
    message: `HTTP ${res.status} ${res.statusText}${snippet === "" ? "" : `: ${snippet}`}`,
    httpStatus: res.status,
    connectCode: Code.Unknown,
    requestId: headerRequestId,
  });
}

/** fetch rejects with a bare "fetch failed"; the useful part (ECONNREFUSED, ...) is in its cause. */
export function fromFetchFailure(url: string, error: unknown): GpuAgentError {
  if (error instanceof GpuAgentError) return error;
  if (error instanceof Error && error.name === "AbortError") {
    return new GpuAgentError({ code: "ABORTED", message: "the request was aborted", httpStatus: 0, connectCode: Code.Canceled, cause: error });
  }
  if (error instanceof Error && error.name === "TimeoutError") {
    return new GpuAgentError({ code: "TIMEOUT", message: "the request timed out", httpStatus: 0, connectCode: Code.DeadlineExceeded, cause: error });
  }
  const cause = error instanceof Error && error.cause instanceof Error ? error.cause : error;
  const detail = cause instanceof Error ? ((cause as NodeJS.ErrnoException).code ?? cause.message) : String(cause);
  let origin = url;
  try {
    origin = new URL(url).origin;
  } catch {
    // keep the raw string
  }
  return new GpuAgentError({ code: "CONNECTION_FAILED", message: `cannot reach ${origin}: ${detail}`, httpStatus: 0, connectCode: Code.Unavailable, cause: error });
}
