/**
 * The one boundary where handler errors become wire errors for Connect, gRPC
 * and gRPC-Web. (REST calls the handlers directly and maps their errors in the
 * transcoder's `writeApiError`, with the same table from ./errors.ts.)
 * Handlers throw ApiError and never build ConnectErrors.
 */
import { ConnectError } from "@connectrpc/connect";
import type { Interceptor, StreamResponse } from "@connectrpc/connect";
import { ApiError } from "../platform/errors.ts";
import { httpStatusOf, toConnectError } from "./errors.ts";

/** The part of a pino logger the interceptor needs, so tests can pass a fake. */
export interface ErrorLogger {
  error(obj: Record<string, unknown>, msg: string): void;
}

/** Options of {@link createErrorInterceptor}. */
export interface ErrorInterceptorOptions {
  /** Where causes of unexpected errors go; they never reach the client. */
  readonly logger?: ErrorLogger;
}

/**
 * What to log for an error about to be answered: for a server error (5xx, or
 * the Connect codes those map to) the cause — the error itself when it is not
 * an ApiError (a bug), else the ApiError's cause or the ApiError; undefined
 * for errors the caller caused. ConnectErrors are answers someone already
 * chose (this interceptor converts, and logs, everything else).
 */
export function serverErrorCause(error: unknown): unknown {
  if (error instanceof ConnectError) return undefined;
  if (error instanceof ApiError) return httpStatusOf(error.code) >= 500 ? (error.cause ?? error) : undefined;
  return error;
}

/**
 * A server interceptor that turns whatever a handler (or an interceptor inside
 * it) throws into `toConnectError(e)`: the seed code rides in the
 * `x-gpu-agent-error-code` metadata, in the message prefix and in a Struct
 * detail. Put it FIRST in the interceptor list so it is the outermost wrapper
 * and also converts ApiErrors thrown by auth or rate-limit interceptors.
 * Every error that becomes a server error is logged here with its cause, the
 * rpc and the request id (the server sets `x-request-id` on every request);
 * the client sees INTERNAL_ERROR (or the 5xx code) only.
 */
export function createErrorInterceptor(options: ErrorInterceptorOptions = {}): Interceptor {
  const convert = (error: unknown, rpc: string, requestId: string | null): ConnectError => {
    const cause = serverErrorCause(error);
    if (cause !== undefined) {
      const unexpected = !(error instanceof ApiError);
      options.logger?.error(
        { err: cause, rpc, request_id: requestId ?? undefined },
        unexpected ? "handler failed with an unexpected error" : `handler failed with ${(error as ApiError).code}`,
      );
    }
    return toConnectError(error);
  };
  return (next) => async (req) => {
    const rpc = `${req.service.typeName}/${req.method.name}`;
    const requestId = req.header.get("x-request-id");
    let res;
    try {
      res = await next(req);
    } catch (error) {
      throw convert(error, rpc, requestId);
    }
    if (!res.stream) return res;
    // A streaming handler fails while the router iterates its output, after
    // next() has returned, so the output iterable is wrapped as well.
    const messages = res.message;
    const wrapped: StreamResponse = {
      ...res,
      message: (async function* () {
        try {
          yield* messages;
        } catch (error) {
          throw convert(error, rpc, requestId);
        }
      })(),
    };
    return wrapped as typeof res;
  };
}
