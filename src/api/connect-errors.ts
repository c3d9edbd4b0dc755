/**
 * The one boundary where handler errors become wire errors for Connect, gRPC
 * and gRPC-Web (the REST transcoder calls the same router, so it crosses this
 * boundary too). Handlers throw ApiError and never build ConnectErrors.
 */
import { ConnectError } from "@connectrpc/connect";
import type { Interceptor, StreamResponse } from "@connectrpc/connect";
import { ApiError, toConnectError } from "./errors.ts";

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
 * A server interceptor that turns whatever a handler (or an interceptor inside
 * it) throws into `toConnectError(e)`: the seed code rides in the
 * `x-gpu-agent-error-code` metadata, in the message prefix and in a Struct
 * detail. Put it FIRST in the interceptor list so it is the outermost wrapper
 * and also converts ApiErrors thrown by auth or rate-limit interceptors.
 * Errors that are not ApiError or ConnectError are bugs: their cause is logged
 * here, and the client sees INTERNAL_ERROR only.
 */
export function createErrorInterceptor(options: ErrorInterceptorOptions = {}): Interceptor {
  const convert = (error: unknown, rpc: string): ConnectError => {
    if (!(error instanceof ApiError) && !(error instanceof ConnectError)) {
      options.logger?.error({ err: error, rpc }, "handler failed with an unexpected error");
    } else if (error instanceof ApiError && error.code === "INTERNAL_ERROR" && error.cause !== undefined) {
      options.logger?.error({ err: error.cause, rpc }, "handler failed with an internal error");
    }
    return toConnectError(error);
  };
  return (next) => async (req) => {
    const rpc = `${req.service.typeName}/${req.method.name}`;
    let res;
    try {
      res = await next(req);
    } catch (error) {
      throw convert(error, rpc);
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
          throw convert(error, rpc);
        }
      })(),
    };
    return wrapped as typeof res;
  };
}
