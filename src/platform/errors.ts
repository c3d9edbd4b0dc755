/**
 * The one error type a customer, operator or node can cause: a seed 001 code
 * (or a documented addition, docs/errors.md) and a message a person can act
 * on. It lives at the bottom so every layer can throw it; it knows no
 * protocol: the HTTP status and the Connect code of each code are decided
 * once, at the boundary (src/api/errors.ts).
 */

/** Seed 001 error codes, plus the few this product adds (documented in docs/errors.md). */
export const ErrorCode = {
  CUSTOMER_AUTH_REQUIRED: "CUSTOMER_AUTH_REQUIRED",
  API_KEY_INVALID: "API_KEY_INVALID",
  API_KEY_REVOKED: "API_KEY_REVOKED",
  API_KEY_SCOPE_DENIED: "API_KEY_SCOPE_DENIED",
  CREDIT_INSUFFICIENT: "CREDIT_INSUFFICIENT",
  RATE_LIMITED: "RATE_LIMITED",
  DAILY_TASK_LIMIT_EXCEEDED: "DAILY_TASK_LIMIT_EXCEEDED",
  LEGACY_DEPRECATED: "LEGACY_DEPRECATED",
  JOB_NOT_FOUND: "JOB_NOT_FOUND",
  ARTIFACT_NOT_FOUND: "ARTIFACT_NOT_FOUND",
  SIGNED_URL_FAILED: "SIGNED_URL_FAILED",
  IDEMPOTENCY_CONFLICT: "IDEMPOTENCY_CONFLICT",
  IDEMPOTENCY_KEY_INVALID: "IDEMPOTENCY_KEY_INVALID",
  PAGINATION_INVALID_CURSOR: "PAGINATION_INVALID_CURSOR",
  EXPORT_RANGE_TOO_LARGE: "EXPORT_RANGE_TOO_LARGE",
  WEBHOOK_INVALID_URL: "WEBHOOK_INVALID_URL",
  WEBHOOK_DELIVERY_FAILED: "WEBHOOK_DELIVERY_FAILED",
  INTERNAL_ERROR: "INTERNAL_ERROR",
  // Additions (not in the seeds; documented in docs/errors.md).
  VALIDATION_FAILED: "VALIDATION_FAILED",
  DATASET_NOT_FOUND: "DATASET_NOT_FOUND",
  TRAINING_PACKAGE_NOT_FOUND: "TRAINING_PACKAGE_NOT_FOUND",
  RESOURCE_NOT_FOUND: "RESOURCE_NOT_FOUND",
  UPLOAD_INVALID: "UPLOAD_INVALID",
  SIGNED_URL_EXPIRED: "SIGNED_URL_EXPIRED",
  SIGNED_URL_INVALID: "SIGNED_URL_INVALID",
  PACKAGE_INVALID: "PACKAGE_INVALID",
  STATE_CONFLICT: "STATE_CONFLICT",
  PAYLOAD_TOO_LARGE: "PAYLOAD_TOO_LARGE",
  UNSUPPORTED_MEDIA_TYPE: "UNSUPPORTED_MEDIA_TYPE",
  METHOD_NOT_ALLOWED: "METHOD_NOT_ALLOWED",
  ROUTE_NOT_FOUND: "ROUTE_NOT_FOUND",
  ADMIN_AUTH_REQUIRED: "ADMIN_AUTH_REQUIRED",
  CSRF_TOKEN_INVALID: "CSRF_TOKEN_INVALID",
  NODE_AUTH_INVALID: "NODE_AUTH_INVALID",
  ENROLLMENT_TOKEN_INVALID: "ENROLLMENT_TOKEN_INVALID",
  NOT_IMPLEMENTED: "NOT_IMPLEMENTED",
  STORAGE_QUOTA_EXCEEDED: "STORAGE_QUOTA_EXCEEDED",
  ARTIFACT_EXPIRED: "ARTIFACT_EXPIRED",
  NO_CAPABLE_NODE: "NO_CAPABLE_NODE",
} as const;
export type ErrorCode = (typeof ErrorCode)[keyof typeof ErrorCode];

/** Compile-time proof that a switch covers every case. */
export function assertExhaustive(value: never): never {
  throw new Error(`unhandled case: ${String(value)}`);
}

/** An error a caller can act on: a seed code, a message for a person, optional extra fields. */
export class ApiError extends Error {
  readonly code: ErrorCode;
  readonly details: Readonly<Record<string, unknown>>;
  /** Extra response headers (e.g. Retry-After on 429). */
  readonly headers: Readonly<Record<string, string>>;

  constructor(
    code: ErrorCode,
    message: string,
    options: { details?: Record<string, unknown>; headers?: Record<string, string>; cause?: unknown } = {},
  ) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = "ApiError";
    this.code = code;
    this.details = options.details ?? {};
    this.headers = options.headers ?? {};
  }
}

/** Shorthand for the common 400. */
export function validationError(message: string, details?: Record<string, unknown>): ApiError {
  return new ApiError("VALIDATION_FAILED", message, details === undefined ? {} : { details });
}
