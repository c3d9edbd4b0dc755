/**
 * Every error the API can return, in words a customer understands. The keys
 * are typed by the server's own ErrorCode union (src/platform/errors.ts), so a new
 * code on the server does not type-check here until it has its sentence.
 * The seed code and the request id are always shown next to the words, for
 * support.
 */
import type { ErrorCode } from "../../src/platform/errors.ts";
import { PortalApiError } from "./api/client.ts";

/** Codes only the portal produces (no answer, or an answer that is not the API's envelope). */
export type PortalOnlyCode = "NETWORK_ERROR" | "UNEXPECTED_RESPONSE" | "FILE_UNREADABLE";

const words: Readonly<Record<ErrorCode | PortalOnlyCode, string>> = {
  CUSTOMER_AUTH_REQUIRED: "You are not signed in, or your session has ended. Please sign in again.",
  API_KEY_INVALID: "That API key is not recognised. Check that it was copied completely.",
  API_KEY_REVOKED: "That API key was revoked. Create a new key on the API keys page.",
  API_KEY_SCOPE_DENIED: "You are not allowed to do this with these credentials: the API key lacks the permission (scope) it needs.",
  CREDIT_INSUFFICIENT: "Your credit balance is below this job's projected cost. Ask for more credits, or ask for less (a shorter maximum run time).",
  RATE_LIMITED: "Too many requests, or too many training jobs at once (at most 10 new jobs a minute and 3 running). Please wait a moment and try again.",
  DAILY_TASK_LIMIT_EXCEEDED: "You have used today's compute-unit quota (200 a day). It starts again at midnight UTC.",
  LEGACY_DEPRECATED: "The old image-generation API was retired. Use training jobs instead.",
  JOB_NOT_FOUND: "This training job does not exist, or it belongs to another account.",
  ARTIFACT_NOT_FOUND: "This file does not exist, or it belongs to another account.",
  SIGNED_URL_FAILED: "Storage could not hand out this file just now. Please try again in a minute.",
  IDEMPOTENCY_CONFLICT: "This job was already submitted with different details. Reload the form and submit it again.",
  IDEMPOTENCY_KEY_INVALID: "The request's retry key was not accepted. Reload the page and try again.",
  PAGINATION_INVALID_CURSOR: "This page of the list is no longer available. Go back to the first page.",
  EXPORT_RANGE_TOO_LARGE: "An export covers at most 90 days. Choose a shorter date range.",
  WEBHOOK_INVALID_URL: "Webhook addresses must be public https:// URLs (no private or local addresses).",
  WEBHOOK_DELIVERY_FAILED: "The webhook could not be delivered, even after several attempts.",
  INTERNAL_ERROR: "Something went wrong on our side. Please try again; if it keeps happening, contact support with the code and request id below.",
  VALIDATION_FAILED: "Some of the details are not valid.",
  DATASET_NOT_FOUND: "This dataset does not exist, was deleted, or belongs to another account.",
  TRAINING_PACKAGE_NOT_FOUND: "This training package does not exist, was deleted, or belongs to another account.",
  RESOURCE_NOT_FOUND: "This item does not exist, or it belongs to another account.",
  UPLOAD_INVALID: "The uploaded file does not match what was announced (its size or checksum differ). Please upload it again.",
  SIGNED_URL_EXPIRED: "The upload or download link has expired. Please start again.",
  SIGNED_URL_INVALID: "The upload or download link is not valid.",
  PACKAGE_INVALID: "The training package is not usable: it must be a safe zip file that contains its Python entry point.",
  STATE_CONFLICT: "This cannot be done while the item is in its current state.",
  PAYLOAD_TOO_LARGE: "The file or request is too large.",
  UNSUPPORTED_MEDIA_TYPE: "The server did not accept the format of the request. Please reload the page.",
  METHOD_NOT_ALLOWED: "The server does not offer this action. Please reload the page; the portal may have been updated.",
  ROUTE_NOT_FOUND: "The server does not offer this page or action. Please reload the page; the portal may have been updated.",
  ADMIN_AUTH_REQUIRED: "This needs an operator's credentials.",
  CSRF_TOKEN_INVALID: "The security check of your session failed. Please reload the page and try again.",
  NODE_AUTH_INVALID: "A node's credentials were refused.",
  ENROLLMENT_TOKEN_INVALID: "The enrollment token is unknown, used or expired.",
  NOT_IMPLEMENTED: "This feature is not available on this server yet.",
  STORAGE_QUOTA_EXCEEDED: "Your account's storage is full (too many files, or too many bytes). Delete datasets or packages you no longer need, then try again.",
  ARTIFACT_EXPIRED: "This file was removed: job results are kept for a limited number of days after the job ends.",
  NO_CAPABLE_NODE: "No machine in the fleet could ever run one of this job's stages. Ask for less (fewer GPUs, less VRAM, fewer constraints), or wait until a larger machine joins.",
  NETWORK_ERROR: "The server could not be reached. Check your connection and try again.",
  UNEXPECTED_RESPONSE: "The server gave an answer the portal did not expect. Please try again.",
  FILE_UNREADABLE: "The file could not be read from your device.",
};

/** Codes whose server message adds something the customer needs (which field, which limit). */
const withServerDetail = new Set(["VALIDATION_FAILED", "PACKAGE_INVALID", "STATE_CONFLICT", "UPLOAD_INVALID", "PAYLOAD_TOO_LARGE", "EXPORT_RANGE_TOO_LARGE", "WEBHOOK_INVALID_URL", "RATE_LIMITED", "CREDIT_INSUFFICIENT", "NO_CAPABLE_NODE"]);

/** An error as the page shows it. */
export interface DescribedError {
  /** The sentence for the customer. */
  readonly text: string;
  /** The server's own message, when it adds something. */
  readonly detail: string;
  readonly code: string;
  readonly requestId: string;
}

/** Words for any thrown value; `overrides` replace the sentence of a code in one context (e.g. sign-in). */
export function describeError(error: unknown, overrides: Partial<Record<string, string>> = {}): DescribedError {
  if (error instanceof PortalApiError) {
    const text = overrides[error.code] ?? (words as Record<string, string>)[error.code] ?? "The request failed.";
    let detail = withServerDetail.has(error.code) && error.message !== "" ? error.message : "";
    if (error.retryAfterSeconds !== undefined) detail = `${detail === "" ? "" : `${detail} `}(retry in ${error.retryAfterSeconds} s)`;
    return { text, detail, code: error.code, requestId: error.requestId };
  }
  if (error instanceof DOMException && error.name === "NotReadableError") {
    return { text: words.FILE_UNREADABLE, detail: "", code: "FILE_UNREADABLE", requestId: "" };
  }
  return { text: words.UNEXPECTED_RESPONSE, detail: error instanceof Error ? error.message : String(error), code: "UNEXPECTED_RESPONSE", requestId: "" };
}

/** The sentence for a code (tests and docs read the table). */
export function wordsFor(code: string): string | undefined {
  return (words as Record<string, string>)[code];
}
