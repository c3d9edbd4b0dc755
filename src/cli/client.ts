/**
 * A small typed REST client for gpuctl, over the global `fetch`.
 *
 * - Customer calls carry `X-API-Key`; admin calls carry `Authorization: Bearer`.
 * - Every non-2xx answer becomes one {@link CliApiError} built from the
 *   `{"error":{code,message,request_id}}` envelope.
 * - A 429 is retried after its `Retry-After` at most {@link DEFAULT_MAX_RETRIES}
 *   times, each wait capped, so a misbehaving server cannot park the CLI.
 * - Uploads and downloads stream: a file is never read into memory, and bytes
 *   moved are reported for a progress bar.
 */
import { createHash } from "node:crypto";
import { createReadStream, createWriteStream } from "node:fs";
import { Readable, Transform } from "node:stream";
import { pipeline } from "node:stream/promises";
import type { ReadableStream as WebReadableStream } from "node:stream/web";
import type { Clock } from "../platform/clock.ts";
import type {
  AgentNode,
  Artifact,
  ComputeUnit,
  CreateCustomerResponse,
  CreateJobBody,
  CreateUploadBody,
  Dataset,
  DownloadUrl,
  EnrollmentToken,
  GrantCreditsResponse,
  ListResponse,
  SchedulerStatus,
  TrainingJob,
  TrainingPackage,
} from "./types.ts";

/** Where gpuctl talks when neither `--url` nor `GPU_AGENT_URL` says otherwise. */
export const DEFAULT_BASE_URL = "http://127.0.0.1:8080";

/** Retries of one request after a 429 (so at most 4 attempts). */
export const DEFAULT_MAX_RETRIES = 3;

/** Longest single wait honoured from `Retry-After`; longer asks are clamped. */
export const DEFAULT_MAX_RETRY_DELAY_MS = 30_000;

/** Wait used when a 429 carries no usable `Retry-After`. */
const FALLBACK_RETRY_DELAY_MS = 1_000;

/** Deadline of one JSON call; uploads and downloads have none (they may be large). */
export const DEFAULT_REQUEST_TIMEOUT_MS = 60_000;

/**
 * A failure gpuctl reports to the user: a stable code, a message and the
 * process exit code (1 for failures, 2 for usage errors).
 */
export class CliError extends Error {
  /** Machine-readable code, e.g. `CHECKSUM_MISMATCH` or a server error code. */
  readonly code: string;
  /** Exit status the process ends with. */
  readonly exitCode: number;

  constructor(code: string, message: string, options?: { exitCode?: number; cause?: unknown }) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.name = "CliError";
    this.code = code;
    this.exitCode = options?.exitCode ?? 1;
  }
}

/** A non-2xx answer of the API, with the server's error envelope. */
export class CliApiError extends CliError {
  /** HTTP status. */
  readonly status: number;
  /** `error.request_id` (or the `X-Request-Id` header); empty when neither came. */
  readonly requestId: string;

  constructor(status: number, code: string, message: string, requestId: string) {
    super(code, message);
    this.name = "CliApiError";
    this.status = status;
    this.requestId = requestId;
  }
}

/** Which credential a call carries. */
export type AuthKind = "customer" | "admin" | "none";

/** One JSON call. */
export interface ApiRequest {
  method: "GET" | "POST" | "PUT" | "DELETE";
  /** Path under the base URL, starting with `/`. */
  path: string;
  auth: AuthKind;
  /** Query parameters; undefined values are left out. */
  query?: Record<string, string | number | undefined>;
  /** JSON body. */
  body?: unknown;
  /** Extra headers, e.g. `Idempotency-Key`. */
  headers?: Record<string, string>;
}

/** Called as bytes move: total so far. */
export type ProgressFn = (bytesDone: number) => void;

/** How a client is built; credentials are optional until a call needs them. */
export interface ClientConfig {
  baseUrl: string;
  apiKey?: string | undefined;
  adminToken?: string | undefined;
  /** Injected so tests observe Retry-After waits without waiting. */
  clock: Clock;
  /** Defaults to the global fetch. */
  fetch?: typeof fetch;
  maxRetries?: number;
  maxRetryDelayMs?: number;
  requestTimeoutMs?: number;
}

/** Query of the list endpoints. */
export interface ListQuery {
  limit?: number | undefined;
  cursor?: string | undefined;
}

/** The typed client: raw helpers plus one method per endpoint gpuctl uses. */
export interface GpuAgentClient {
  readonly baseUrl: string;
  /** One JSON call; resolves to the decoded body (undefined for an empty one). */
  request<T>(req: ApiRequest): Promise<T>;
  /** Streams a file to a signed upload URL with PUT. */
  uploadFile(url: string, filePath: string, size: number, onProgress?: ProgressFn): Promise<void>;
  /** Streams a signed download URL into `destPath`, hashing on the way. */
  downloadToFile(url: string, destPath: string, onProgress?: ProgressFn): Promise<{ bytes: number; sha256: string }>;

  createDataset(body: CreateUploadBody): Promise<Dataset>;
  finalizeDataset(id: string): Promise<Dataset>;
  getDataset(id: string): Promise<Dataset>;
  listDatasets(q: ListQuery): Promise<ListResponse<Dataset>>;

  createPackage(body: CreateUploadBody): Promise<TrainingPackage>;
  finalizePackage(id: string): Promise<TrainingPackage>;
  getPackage(id: string): Promise<TrainingPackage>;
  listPackages(q: ListQuery): Promise<ListResponse<TrainingPackage>>;

  createJob(body: CreateJobBody, idempotencyKey: string): Promise<TrainingJob>;
  getJob(id: string): Promise<TrainingJob>;
  listJobs(q: ListQuery & { status?: string | undefined }): Promise<ListResponse<TrainingJob>>;
  cancelJob(id: string): Promise<TrainingJob>;
  listComputeUnits(jobId: string, q: ListQuery): Promise<ListResponse<ComputeUnit>>;
  listArtifacts(jobId: string, q: ListQuery): Promise<ListResponse<Artifact>>;
  createArtifactDownloadUrl(jobId: string, artifactId: string): Promise<DownloadUrl>;

  createCustomer(body: { email: string; password: string; credits: number }): Promise<CreateCustomerResponse>;
  grantCredits(customerId: string, body: { amount: number; reason?: string }): Promise<GrantCreditsResponse>;
  createEnrollmentToken(body: { trust_level: string; ttl_seconds?: number }): Promise<EnrollmentToken>;
  listNodes(q: ListQuery): Promise<ListResponse<AgentNode>>;
  getSchedulerStatus(): Promise<SchedulerStatus>;
}

/**
 * Reads `Retry-After` (delta-seconds or an HTTP date) as milliseconds from
 * `nowMs`; undefined when absent or unreadable.
 */
export function parseRetryAfter(value: string | null, nowMs: number): number | undefined {
  if (value === null || value.trim() === "") return undefined;
  const trimmed = value.trim();
  if (/^\d+(\.\d+)?$/.test(trimmed)) return Math.round(Number(trimmed) * 1000);
  const at = Date.parse(trimmed);
  if (Number.isNaN(at)) return undefined;
  return Math.max(0, at - nowMs);
}

/** Pages through a list endpoint until `has_more` is false. */
export async function listAll<T>(fetchPage: (cursor: string | undefined) => Promise<ListResponse<T>>): Promise<T[]> {
  const all: T[] = [];
  let cursor: string | undefined;
  // A server that keeps answering has_more with the same cursor would loop
  // forever; a repeated cursor ends the walk.
  const seen = new Set<string>();
  for (;;) {
    const page = await fetchPage(cursor);
    all.push(...(page.data ?? []));
    const next = page.page?.next_cursor;
    if (page.page?.has_more !== true || next === undefined || next === "" || seen.has(next)) return all;
    seen.add(next);
    cursor = next;
  }
}

/** Builds a client; nothing is sent until a method is called. */
export function createClient(config: ClientConfig): GpuAgentClient {
  const baseUrl = config.baseUrl.replace(/\/+$/, "");
  const doFetch = config.fetch ?? fetch;
  const maxRetries = config.maxRetries ?? DEFAULT_MAX_RETRIES;
  const maxRetryDelayMs = config.maxRetryDelayMs ?? DEFAULT_MAX_RETRY_DELAY_MS;
  const requestTimeoutMs = config.requestTimeoutMs ?? DEFAULT_REQUEST_TIMEOUT_MS;
  let baseOrigin: string;
  try {
    baseOrigin = new URL(baseUrl).origin;
  } catch {
    throw new CliError("INVALID_URL", `not a valid URL: ${config.baseUrl}`, { exitCode: 2 });
  }

  function authHeaders(auth: AuthKind): Record<string, string> {
    if (auth === "customer") {
      if (config.apiKey === undefined || config.apiKey === "") {
        throw new CliError("API_KEY_MISSING", "no API key: set GPU_AGENT_API_KEY or pass --api-key", { exitCode: 2 });
      }
      return { "x-api-key": config.apiKey };
    }
    if (auth === "admin") {
      if (config.adminToken === undefined || config.adminToken === "") {
        throw new CliError("ADMIN_TOKEN_MISSING", "no admin token: set GPU_AGENT_ADMIN_TOKEN or pass --admin-token", {
          exitCode: 2,
        });
      }
      return { authorization: `Bearer ${config.adminToken}` };
    }
    return {};
  }

  /**
   * Signed URLs need no credential; the API key is still sent when the URL is
   * on the API's own origin (harmless there, and it lets a server that also
   * checks the key accept the call), but never to another host.
   */
  function signedUrlHeaders(url: string): Record<string, string> {
    try {
      if (new URL(url).origin === baseOrigin && config.apiKey !== undefined && config.apiKey !== "") {
        return { "x-api-key": config.apiKey };
      }
    } catch {
      throw new CliError("INVALID_URL", `the server returned an invalid URL: ${url}`);
    }
    return {};
  }

  /**
   * Sends with the 429 policy. `makeInit` is called per attempt because a
   * streamed body is spent by the first try.
   */
  async function send(url: string, makeInit: () => RequestInit): Promise<Response> {
    for (let attempt = 0; ; attempt++) {
      let res: Response;
      try {
        res = await doFetch(url, makeInit());
      } catch (err) {
        throw connectionError(url, err);
      }
      if (res.status !== 429 || attempt >= maxRetries) return res;
      const asked = parseRetryAfter(res.headers.get("retry-after"), config.clock.now());
      const wait = Math.min(asked ?? FALLBACK_RETRY_DELAY_MS * 2 ** attempt, maxRetryDelayMs);
      // Release the connection before sleeping.
      await res.body?.cancel().catch(() => undefined);
      await config.clock.sleep(wait);
    }
  }

  async function request<T>(req: ApiRequest): Promise<T> {
    const url = new URL(baseUrl + req.path);
    for (const [k, v] of Object.entries(req.query ?? {})) {
      if (v !== undefined && v !== "") url.searchParams.set(k, String(v));
    }
    const headers: Record<string, string> = { accept: "application/json", ...authHeaders(req.auth), ...req.headers };
    const body = req.body === undefined ? undefined : JSON.stringify(req.body);
    if (body !== undefined) headers["content-type"] = "application/json";
    const res = await send(url.toString(), () => ({
      method: req.method,
      headers,
      ...(body === undefined ? {} : { body }),
      signal: AbortSignal.timeout(requestTimeoutMs),
    }));
    const text = await res.text();
    if (!res.ok) throw apiError(res, text);
    if (text === "") return undefined as T;
    try {
      return JSON.parse(text) as T;
    } catch {
      throw new CliError("BAD_RESPONSE", `${req.method} ${req.path}: the server answered ${res.status} with a body that is not JSON`);
    }
  }

  async function uploadFile(url: string, filePath: string, size: number, onProgress?: ProgressFn): Promise<void> {
    const res = await send(url, () => {
      let sent = 0;
      onProgress?.(0);
      // Counting as the body is pulled tracks what fetch has handed to the socket.
      const counter = new Transform({
        transform(chunk: Buffer, _enc, cb) {
          sent += chunk.length;
          onProgress?.(sent);
          cb(null, chunk);
        },
      });
      const source = createReadStream(filePath).pipe(counter);
      return {
        method: "PUT",
        headers: {
          "content-type": "application/octet-stream",
          "content-length": String(size),
          ...signedUrlHeaders(url),
        },
        body: Readable.toWeb(source) as ReadableStream<Uint8Array>,
        duplex: "half",
      } as RequestInit;
    });
    const text = await res.text();
    if (!res.ok) throw apiError(res, text);
  }

  async function downloadToFile(
    url: string,
    destPath: string,
    onProgress?: ProgressFn,
  ): Promise<{ bytes: number; sha256: string }> {
    const res = await send(url, () => ({ method: "GET", headers: { ...signedUrlHeaders(url) } }));
    if (!res.ok) throw apiError(res, await res.text());
    if (res.body === null) throw new CliError("BAD_RESPONSE", "the download answered without a body");
    const hash = createHash("sha256");
    let bytes = 0;
    const tap = new Transform({
      transform(chunk: Buffer, _enc, cb) {
        hash.update(chunk);
        bytes += chunk.length;
        onProgress?.(bytes);
        cb(null, chunk);
      },
    });
    await pipeline(Readable.fromWeb(res.body as WebReadableStream<Uint8Array>), tap, createWriteStream(destPath));
    return { bytes, sha256: hash.digest("hex") };
  }

  const enc = encodeURIComponent;
  const customer = <T>(method: ApiRequest["method"], path: string, rest: Partial<ApiRequest> = {}) =>
    request<T>({ method, path, auth: "customer", ...rest });
  const admin = <T>(method: ApiRequest["method"], path: string, rest: Partial<ApiRequest> = {}) =>
    request<T>({ method, path, auth: "admin", ...rest });
  const listQuery = (q: ListQuery) => ({ limit: q.limit, cursor: q.cursor });

  return {
    baseUrl,
    request,
    uploadFile,
    downloadToFile,

    createDataset: (body) => customer("POST", "/api/v1/customer/datasets", { body }),
    finalizeDataset: (id) => customer("POST", `/api/v1/customer/datasets/${enc(id)}/finalize`, { body: {} }),
    getDataset: (id) => customer("GET", `/api/v1/customer/datasets/${enc(id)}`),
    listDatasets: (q) => customer("GET", "/api/v1/customer/datasets", { query: listQuery(q) }),

    createPackage: (body) => customer("POST", "/api/v1/customer/training-packages", { body }),
    finalizePackage: (id) => customer("POST", `/api/v1/customer/training-packages/${enc(id)}/finalize`, { body: {} }),
    getPackage: (id) => customer("GET", `/api/v1/customer/training-packages/${enc(id)}`),
    listPackages: (q) => customer("GET", "/api/v1/customer/training-packages", { query: listQuery(q) }),

    createJob: (body, idempotencyKey) =>
      customer("POST", "/api/v1/customer/training-jobs", { body, headers: { "idempotency-key": idempotencyKey } }),
    getJob: (id) => customer("GET", `/api/v1/customer/training-jobs/${enc(id)}`),
    listJobs: (q) => customer("GET", "/api/v1/customer/training-jobs", { query: { ...listQuery(q), status: q.status } }),
    cancelJob: (id) => customer("POST", `/api/v1/customer/training-jobs/${enc(id)}/cancel`, { body: {} }),
    listComputeUnits: (jobId, q) =>
      customer("GET", `/api/v1/customer/training-jobs/${enc(jobId)}/compute-units`, { query: listQuery(q) }),
    listArtifacts: (jobId, q) =>
      customer("GET", `/api/v1/customer/training-jobs/${enc(jobId)}/artifacts`, { query: listQuery(q) }),
    createArtifactDownloadUrl: (jobId, artifactId) =>
      customer("POST", `/api/v1/customer/training-jobs/${enc(jobId)}/artifacts/${enc(artifactId)}/download-url`, {
        body: {},
      }),

    createCustomer: (body) => admin("POST", "/api/v1/admin/customers", { body }),
    grantCredits: (customerId, body) =>
      admin("POST", `/api/v1/admin/customers/${enc(customerId)}/credits`, { body: { customer_id: customerId, ...body } }),
    createEnrollmentToken: (body) => admin("POST", "/api/v1/admin/enrollment-tokens", { body }),
    listNodes: (q) => admin("GET", "/api/v1/admin/nodes", { query: listQuery(q) }),
    getSchedulerStatus: () => admin("GET", "/api/v1/admin/scheduler"),
  };
}

/** Decodes the error envelope; falls back to the status line for non-JSON bodies (proxies, 502 pages). */
function apiError(res: Response, text: string): CliApiError {
  const headerRequestId = res.headers.get("x-request-id") ?? "";
  try {
    const parsed = JSON.parse(text) as { error?: { code?: unknown; message?: unknown; request_id?: unknown } };
    const e = parsed.error;
    if (e !== undefined && typeof e === "object" && e !== null) {
      return new CliApiError(
        res.status,
        typeof e.code === "string" && e.code !== "" ? e.code : `HTTP_${res.status}`,
        typeof e.message === "string" && e.message !== "" ? e.message : res.statusText,
        typeof e.request_id === "string" && e.request_id !== "" ? e.request_id : headerRequestId,
      );
    }
  } catch {
    // not JSON: handled below
  }
  const snippet = text.trim().slice(0, 200);
  const message = `HTTP ${res.status} ${res.statusText}${snippet === "" ? "" : `: ${snippet}`}`;
  return new CliApiError(res.status, `HTTP_${res.status}`, message, headerRequestId);
}

/** fetch rejects with a bare "fetch failed"; the useful part (ECONNREFUSED, …) is in the cause. */
function connectionError(url: string, err: unknown): CliError {
  if (err instanceof CliError) return err;
  if (err instanceof Error && (err.name === "TimeoutError" || err.name === "AbortError")) {
    return new CliError("TIMEOUT", `request to ${new URL(url).origin} timed out`, { cause: err });
  }
  const cause = err instanceof Error && err.cause instanceof Error ? err.cause : err;
  const detail =
    cause instanceof Error ? ((cause as NodeJS.ErrnoException).code ?? cause.message) : String(cause);
  return new CliError("CONNECTION_FAILED", `cannot reach ${new URL(url).origin}: ${detail}`, { cause: err });
}
