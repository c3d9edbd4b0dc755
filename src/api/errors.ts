/**
 * The protocol side of errors: the HTTP status and the Connect code of each
 * error code (src/platform/errors.ts) are decided here, once, and used only at
 * the boundary (the REST error writer, the Connect error interceptor, the
 * OpenAPI document), so no handler or domain module knows which protocol
 * called it.
 */
import { fromJson, toJson } from "@bufbuild/protobuf";
import type { JsonObject } from "@bufbuild/protobuf";
import { StructSchema } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError } from "@connectrpc/connect";
import { ApiError, ErrorCode, assertExhaustive } from "../platform/errors.ts";

interface Mapping {
  readonly http: number;
  readonly connect: Code;
}

function mappingOf(code: ErrorCode): Mapping {
  switch (code) {
    case "CUSTOMER_AUTH_REQUIRED":
    case "API_KEY_INVALID":
    case "API_KEY_REVOKED":
    case "ADMIN_AUTH_REQUIRED":
    case "NODE_AUTH_INVALID":
    case "ENROLLMENT_TOKEN_INVALID":
      return { http: 401, connect: Code.Unauthenticated };
    case "API_KEY_SCOPE_DENIED":
    case "SIGNED_URL_INVALID":
    case "CSRF_TOKEN_INVALID":
      return { http: 403, connect: Code.PermissionDenied };
    case "CREDIT_INSUFFICIENT":
      return { http: 402, connect: Code.FailedPrecondition };
    case "RATE_LIMITED":
    case "DAILY_TASK_LIMIT_EXCEEDED":
      return { http: 429, connect: Code.ResourceExhausted };
    case "LEGACY_DEPRECATED":
      return { http: 410, connect: Code.Unimplemented };
    case "JOB_NOT_FOUND":
    case "ARTIFACT_NOT_FOUND":
    case "DATASET_NOT_FOUND":
    case "TRAINING_PACKAGE_NOT_FOUND":
    case "RESOURCE_NOT_FOUND":
    case "ROUTE_NOT_FOUND":
      return { http: 404, connect: Code.NotFound };
    case "SIGNED_URL_FAILED":
      return { http: 502, connect: Code.Unavailable };
    case "IDEMPOTENCY_CONFLICT":
    case "STATE_CONFLICT":
      return { http: 409, connect: Code.Aborted };
    case "SIGNED_URL_EXPIRED":
      return { http: 410, connect: Code.FailedPrecondition };
    case "IDEMPOTENCY_KEY_INVALID":
    case "PAGINATION_INVALID_CURSOR":
    case "EXPORT_RANGE_TOO_LARGE":
    case "WEBHOOK_INVALID_URL":
    case "VALIDATION_FAILED":
    case "UPLOAD_INVALID":
    case "PACKAGE_INVALID":
      return { http: 400, connect: Code.InvalidArgument };
    case "PAYLOAD_TOO_LARGE":
      return { http: 413, connect: Code.ResourceExhausted };
    case "UNSUPPORTED_MEDIA_TYPE":
      return { http: 415, connect: Code.InvalidArgument };
    case "METHOD_NOT_ALLOWED":
      return { http: 405, connect: Code.Unimplemented };
    case "NOT_IMPLEMENTED":
      return { http: 501, connect: Code.Unimplemented };
    // 409, not 413 (the request itself is fine), 429 (waiting does not help) or 403 (the caller may
    // store; the account is full): the request conflicts with what the customer already stores,
    // and deleting some of it resolves that. Connect/gRPC: the canonical code for a per-user quota.
    case "STORAGE_QUOTA_EXCEEDED":
      return { http: 409, connect: Code.ResourceExhausted };
    case "ARTIFACT_EXPIRED":
      return { http: 410, connect: Code.NotFound };
    // 422: the request is well formed and allowed, but the fleet cannot serve what it asks; Connect's
    // FailedPrecondition says the same (the system is not in a state to do it), not InvalidArgument.
    case "NO_CAPABLE_NODE":
      return { http: 422, connect: Code.FailedPrecondition };
    case "WEBHOOK_DELIVERY_FAILED":
      return { http: 502, connect: Code.Unavailable };
    case "INTERNAL_ERROR":
      return { http: 500, connect: Code.Internal };
    default:
      return assertExhaustive(code);
  }
}

/** HTTP status and Connect code of a seed code, for places that hold only the code. */
export function httpStatusOf(code: ErrorCode): number {
  return mappingOf(code).http;
}

/** Connect code of a seed code. */
export function connectCodeOf(code: ErrorCode): Code {
  return mappingOf(code).connect;
}

/** The metadata key (header or trailer) carrying the seed code on Connect, gRPC and gRPC-Web errors. */
export const reasonMetadataKey = "x-gpu-agent-error-code";

/**
 * Converts anything thrown by a handler to a ConnectError that carries the seed
 * code three ways, so every kind of client can read it: the metadata key above,
 * a "[JOB_NOT_FOUND] " prefix on the message (clients that show only the
 * message still show the reason), and a google.protobuf.Struct error detail
 * `{code, details?}`. Unknown errors become INTERNAL_ERROR; their cause is for
 * logs only and never reaches the client.
 */
export function toConnectError(error: unknown): ConnectError {
  if (error instanceof ConnectError) return error;
  const api = error instanceof ApiError ? error : new ApiError("INTERNAL_ERROR", "internal error", { cause: error });
  const metadata = new Headers({ [reasonMetadataKey]: api.code });
  for (const [k, v] of Object.entries(api.headers)) metadata.set(k, v);
  return new ConnectError(`[${api.code}] ${api.message}`, connectCodeOf(api.code), metadata, reasonDetail(api), api);
}

/** The Struct detail; its type is ConnectError's, which the package does not export by name. */
function reasonDetail(api: ApiError): ConstructorParameters<typeof ConnectError>[3] {
  const json: JsonObject = { code: api.code };
  if (Object.keys(api.details).length > 0) json["details"] = api.details as JsonObject;
  try {
    return [{ desc: StructSchema, value: fromJson(StructSchema, json) }];
  } catch {
    // Details that are not JSON (a bigint, a cycle) must not turn a clear error into an internal one.
    return [{ desc: StructSchema, value: fromJson(StructSchema, { code: api.code }) }];
  }
}

/** Recovers the seed code from an error, whichever protocol carried it. */
export function apiErrorFrom(error: unknown): ApiError {
  if (error instanceof ApiError) return error;
  if (error instanceof ConnectError) {
    if (error.cause instanceof ApiError) return error.cause;
    const code = error.metadata.get(reasonMetadataKey);
    if (code !== null && code in ErrorCode) {
      const prefix = `[${code}] `;
      const message = error.rawMessage.startsWith(prefix) ? error.rawMessage.slice(prefix.length) : error.rawMessage;
      const details = detailsOf(error);
      return new ApiError(code as ErrorCode, message, details === undefined ? {} : { details });
    }
    if (error.code === Code.Unimplemented) return new ApiError("NOT_IMPLEMENTED", error.rawMessage);
  }
  return new ApiError("INTERNAL_ERROR", "internal error", { cause: error });
}

function detailsOf(error: ConnectError): Record<string, unknown> | undefined {
  for (const struct of error.findDetails(StructSchema)) {
    const json = toJson(StructSchema, struct);
    const details = json["details"];
    if (details !== null && typeof details === "object" && !Array.isArray(details)) return details;
  }
  return undefined;
}
