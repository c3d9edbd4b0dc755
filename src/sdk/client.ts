/**
 * The GPU-Agent SDK: a typed client over the generated Connect client of CustomerService.
 *
 * - Every rpc goes over Connect (JSON over HTTP/1.1, the same port as REST), so request and
 *   response types are the generated protobuf-es ones and nothing is hand-maintained.
 * - Bytes never go through Connect: uploads PUT to the signed `upload_url` and downloads GET the
 *   signed `download_url` over plain HTTP, streamed, so a large file is never held in memory and
 *   progress can be reported as bytes move.
 * - 429 `RATE_LIMITED` is retried after `Retry-After` at most `maxRetries` times with each wait
 *   capped, on both paths; a refused request was not executed, so retrying a POST is safe. The
 *   transport and the policy live in core.ts, shared with the operator client (admin.ts).
 * - Every failure is one {@link GpuAgentError} with a typed `code`.
 */
import { createHash } from "node:crypto";
import { createReadStream, createWriteStream } from "node:fs";
import { mkdtemp, rename, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { basename, dirname, join } from "node:path";
import { Readable, Transform } from "node:stream";
import { pipeline } from "node:stream/promises";
import type { ReadableStream as WebReadableStream } from "node:stream/web";
import type { MessageInitShape } from "@bufbuild/protobuf";
import type { Client } from "@connectrpc/connect";
import { Code, createClient } from "@connectrpc/connect";
import { CustomerService } from "../gen/gpuagent/customer/v1/customer_pb.ts";
import { newId } from "../platform/ids.ts";
import type {
  ApiKey,
  Artifact,
  CreateApiKeyResponse,
  CreateArtifactDownloadUrlResponse,
  CreateTrainingJobRequestSchema,
  CreateWebhookRequestSchema,
  CreateWebhookResponse,
  Dataset,
  DeleteDatasetResponse,
  DeleteTrainingPackageResponse,
  DeleteWebhookResponse,
  GetComputeUnitLogsResponse,
  GetConfigResponse,
  GetDailyUsageResponse,
  GetMeResponse,
  GetTrainingJobMetricsResponse,
  GetUsageSummaryResponse,
  ListApiKeysResponse,
  ListArtifactsResponse,
  ListComputeUnitsResponse,
  ListCreditLedgerResponse,
  ListDatasetsResponse,
  ListTrainingJobsResponse,
  ListTrainingPackagesResponse,
  ListWebhookDeliveriesResponse,
  ListWebhooksResponse,
  LoginResponse,
  RotateWebhookSecretResponse,
  TestWebhookResponse,
  TrainingJob,
  TrainingPackage,
  WatchTrainingJobResponse,
  WebhookDelivery,
} from "../gen/gpuagent/customer/v1/customer_pb.ts";
import type { CallOpts, ClientOptionsBase, PageOptions } from "./core.ts";
import { callOptions as co, createSdkCore, pageRequest as page, required, throwIfAborted } from "./core.ts";
import { GpuAgentError, fromConnectError, fromFetchFailure, fromRestResponse, isTransientFailure } from "./errors.ts";
import { iterateAll } from "./pagination.ts";

export type { CallOpts, ClientOptionsBase, PageOptions, RetryInfo } from "./core.ts";
export { DEFAULT_MAX_RETRIES, DEFAULT_MAX_RETRY_DELAY_MS } from "./core.ts";

/** Default poll interval of {@link JobsApi.waitForJob}; well under the default 600 requests/minute. */
export const DEFAULT_POLL_INTERVAL_MS = 2_000;

/** Every job status, in lifecycle order: queued → running → completed | failed | cancelled | expired. */
export const JOB_STATUSES = ["queued", "running", "completed", "failed", "cancelled", "expired"] as const;

/** Job statuses after which nothing changes any more. */
export const TERMINAL_JOB_STATUSES: readonly string[] = ["completed", "failed", "cancelled", "expired"];

/** Data sensitivity tiers a job may declare (a job runs only on nodes trusted at least that much). */
export const SENSITIVITY_TIERS = ["public", "low_sensitive", "high_sensitive"] as const;

/** Every scope an API key may hold; a signed-in session holds them all. */
export const API_KEY_SCOPES = ["dataset:write", "training:write", "artifact:read", "usage:read", "webhook:write"] as const;

/** How {@link createGpuAgentClient} is configured. */
export interface GpuAgentClientOptions extends ClientOptionsBase {
  /** A customer API key, sent as `x-api-key`. Takes precedence over `sessionToken`. */
  apiKey?: string;
  /** A portal session token (from Login), sent as `authorization: Bearer`. */
  sessionToken?: string;
}

/** A progress report of an upload or download. */
export interface TransferProgress {
  /** `hashing` while the SDK reads the source once to compute its sha256, then `uploading` / `downloading`. */
  phase: "hashing" | "uploading" | "downloading";
  bytesDone: number;
  /** Total bytes; undefined for a download whose size is not known yet. */
  totalBytes: number | undefined;
}

/** What can be uploaded: a file path, bytes in memory, or a stream (spooled to a temp file to hash it first). */
export type UploadSource = string | Uint8Array | Readable | AsyncIterable<Uint8Array> | WebReadableStream<Uint8Array>;

/** Options of `datasets.upload`. */
export interface DatasetUploadOptions extends CallOpts {
  name: string;
  /** Free-form, e.g. "csv"; the server may infer one when empty. */
  format?: string;
  onProgress?: (p: TransferProgress) => void;
}

/** Options of `packages.upload`. */
export interface PackageUploadOptions extends CallOpts {
  name: string;
  /** Python file inside the zip that runs the training (server default "train.py"). */
  entrypoint?: string;
  onProgress?: (p: TransferProgress) => void;
}

/** Options of `jobs.create`. */
export interface CreateJobOptions extends CallOpts {
  /**
   * Sent as `Idempotency-Key` (8 to 128 of `A-Za-z0-9._:-`). When left out a random one is
   * generated, so the SDK's own retries never create a second job; pass your own to make retries
   * across process restarts safe as well.
   */
  idempotencyKey?: string;
}

/** One observation of a job while waiting for it. */
export interface JobProgressEvent {
  jobId: string;
  status: string;
  /** 0..1 over the whole DAG. */
  progress: number;
  computeUnitsCompleted: number;
  computeUnitCount: number;
  /** Latest metrics reported by the training stage. */
  metrics: Record<string, number>;
  /** Why the job waits while `queued` (e.g. "stage train: the 2 capable nodes are offline"); "" otherwise. */
  pendingReason: string;
  /** True for the last event: the job reached a terminal status. */
  terminal: boolean;
  /** The full job as read. */
  job: TrainingJob;
}

/** Options of `jobs.waitForJob`. */
export interface WaitForJobOptions extends CallOpts {
  /** Poll instead of following the live stream (the stream is used by default; a server without it is polled anyway). */
  poll?: boolean;
  /** Poll interval (default {@link DEFAULT_POLL_INTERVAL_MS}). */
  intervalMs?: number;
  /** Give up with `TIMEOUT` after this long; no limit when left out. */
  timeoutMs?: number;
  /**
   * Consecutive transient failures (the server unreachable, a 5xx, a request `TIMEOUT`, a broken
   * stream) ridden out by polling again after the interval, or by resuming the stream; the next one
   * is thrown. Default 0: the first failure is thrown. Other errors (e.g. `JOB_NOT_FOUND`) are
   * always thrown at once.
   */
  maxTransientFailures?: number;
  /** Called with every event that is also yielded. */
  onProgress?: (event: JobProgressEvent) => void;
}

/** Which part of a unit's log `jobs.logs` reads. */
export interface LogsQuery {
  /** The unit's attempt; left out: the latest attempt that logged anything. */
  attempt?: number;
  /** Only lines after this seq (a previous answer's `nextAfter`); left out: the whole tail. */
  after?: bigint;
}

/** Options of `jobs.followLogs`. */
export interface FollowLogsOptions extends CallOpts {
  /** Poll interval while the unit runs (default {@link DEFAULT_POLL_INTERVAL_MS}). */
  intervalMs?: number;
}

/**
 * One event of a job's live stream (`jobs.watch`): `type` says which `payload` is set — "snapshot"
 * (the job and its units as they stood at event `id`), "job" (its status, progress or metrics
 * changed), "unit" (a compute unit moved or reported progress), "log" (lines a unit wrote).
 */
export type JobEvent = WatchTrainingJobResponse;

/** Default first wait before `jobs.watch` reconnects; it doubles up to {@link MAX_WATCH_RECONNECT_DELAY_MS}. */
export const DEFAULT_WATCH_RECONNECT_DELAY_MS = 1_000;
/** Longest wait between two reconnections of `jobs.watch`. */
export const MAX_WATCH_RECONNECT_DELAY_MS = 30_000;

/** Options of `jobs.watch`. */
export interface WatchJobOptions extends CallOpts {
  /** Resume after this event (the `id` of the last one received); left out: start with a snapshot. */
  afterEventId?: bigint;
  /**
   * Consecutive failed connections (the server unreachable, a 5xx, a broken stream) retried, each
   * resuming after the last event received, before the failure is thrown. Default 5. A stream the
   * server ends before the job has (a replica shutting down) is resumed without counting.
   */
  maxReconnects?: number;
  /** First wait before a reconnection (default {@link DEFAULT_WATCH_RECONNECT_DELAY_MS}, doubling). */
  reconnectDelayMs?: number;
  /** Also yield the heartbeats (type "heartbeat", id 0) the server sends while nothing happens. */
  heartbeats?: boolean;
}

/** Compute unit statuses after which its log is complete. */
export const TERMINAL_UNIT_STATUSES: readonly string[] = ["completed", "failed", "cancelled"];

/** Options of `artifacts.download`. */
export interface DownloadOptions extends CallOpts {
  /** The sha256 to verify against; looked up from the job's artifact list when left out. */
  expectedSha256?: string;
  onProgress?: (p: TransferProgress) => void;
}

/** What a download wrote. */
export interface DownloadResult {
  path: string;
  bytes: number;
  /** Lower-case hex; equals the artifact's recorded sha256 (verified). */
  sha256: string;
}

/** Datasets: upload (create, PUT, finalize) and read. */
export interface DatasetsApi {
  /** Hashes the source, creates the dataset, streams the bytes to its signed URL and finalizes it. */
  upload(source: UploadSource, options: DatasetUploadOptions): Promise<Dataset>;
  get(id: string, opts?: CallOpts): Promise<Dataset>;
  list(page?: PageOptions, opts?: CallOpts): Promise<ListDatasetsResponse>;
  delete(id: string, opts?: CallOpts): Promise<DeleteDatasetResponse>;
}

/** Training packages (zips): upload (create, PUT, finalize) and read. */
export interface PackagesApi {
  /** Hashes the zip, creates the package, streams the bytes to its signed URL and finalizes it. */
  upload(source: UploadSource, options: PackageUploadOptions): Promise<TrainingPackage>;
  get(id: string, opts?: CallOpts): Promise<TrainingPackage>;
  list(page?: PageOptions, opts?: CallOpts): Promise<ListTrainingPackagesResponse>;
  delete(id: string, opts?: CallOpts): Promise<DeleteTrainingPackageResponse>;
}

/** The body of `jobs.create`: the generated request's init shape. */
export type CreateJobBody = MessageInitShape<typeof CreateTrainingJobRequestSchema>;

/** Training jobs. */
export interface JobsApi {
  /** Creates a job, idempotently (see {@link CreateJobOptions.idempotencyKey}). */
  create(body: CreateJobBody, options?: CreateJobOptions): Promise<TrainingJob>;
  get(id: string, opts?: CallOpts): Promise<TrainingJob>;
  list(query?: PageOptions & { status?: string }, opts?: CallOpts): Promise<ListTrainingJobsResponse>;
  cancel(id: string, opts?: CallOpts): Promise<TrainingJob>;
  computeUnits(id: string, page?: PageOptions, opts?: CallOpts): Promise<ListComputeUnitsResponse>;
  /**
   * The tail of a compute unit's log (at most 500 lines, 64 KiB), or only the lines after
   * `query.after`. Lines reach the server every few seconds while the unit runs.
   */
  logs(jobId: string, unitId: string, query?: LogsQuery, opts?: CallOpts): Promise<GetComputeUnitLogsResponse>;
  /**
   * Polls a unit's log with the cursor, yielding each answer that brings new lines (the first
   * answer always), until the unit reaches a terminal status. When the unit moves to a new
   * attempt the next answer starts that attempt's log from its beginning (check `attempt`).
   */
  followLogs(jobId: string, unitId: string, options?: FollowLogsOptions): AsyncGenerator<GetComputeUnitLogsResponse, void, void>;
  /**
   * The job's live events, pushed by the server (WatchTrainingJob): a snapshot, then each change in
   * commit order, until the job has ended and every event was received. A broken stream is resumed
   * after the last event's id (on whichever replica answers), so nothing is missed or repeated:
   * `for await (const event of client.jobs.watch(id)) …`.
   */
  watch(id: string, options?: WatchJobOptions): AsyncGenerator<JobEvent, void, void>;
  /** Every unit's history of progress and metrics (at most 500 points each, thinned evenly). */
  metrics(jobId: string, opts?: CallOpts): Promise<GetTrainingJobMetricsResponse>;
  /**
   * Follows the job, yielding an event whenever its status, progress or metrics change, until it
   * reaches a terminal status (the generator's return value is the final job). A failed job is
   * returned, not thrown: check `status`. Follows the live stream ({@link JobsApi.watch}); a
   * server without it is polled every `intervalMs`.
   */
  waitForJob(id: string, options?: WaitForJobOptions): AsyncGenerator<JobProgressEvent, TrainingJob, void>;
  /** {@link JobsApi.waitForJob} drained: resolves to the final job (use `onProgress` to watch). */
  wait(id: string, options?: WaitForJobOptions): Promise<TrainingJob>;
}

/** A job's artifacts. */
export interface ArtifactsApi {
  list(jobId: string, page?: PageOptions, opts?: CallOpts): Promise<ListArtifactsResponse>;
  /** Mints a short-lived signed download URL. */
  downloadUrl(jobId: string, artifactId: string, opts?: CallOpts): Promise<CreateArtifactDownloadUrlResponse>;
  /** Mints a URL, streams the artifact to `destPath` and verifies its sha256 (nothing is left at `destPath` on mismatch). */
  download(jobId: string, artifactId: string, destPath: string, options?: DownloadOptions): Promise<DownloadResult>;
}

/** A range of days (`YYYY-MM-DD`, UTC, both inclusive) of a CSV export; left out: the server's default (the last 30 days). */
export interface DateRange {
  dateFrom?: string;
  dateTo?: string;
}

/** Usage and credits. */
export interface UsageApi {
  summary(opts?: CallOpts): Promise<GetUsageSummaryResponse>;
  /** Per-day usage of the last `days` days (server default 30, at most 90). */
  daily(query?: { days?: number }, opts?: CallOpts): Promise<GetDailyUsageResponse>;
  /**
   * Usage per compute unit as CSV (RFC 4180), streamed: the file's bytes chunk by chunk, to be
   * written out in order. A range over 90 days is `EXPORT_RANGE_TOO_LARGE`; a stream cut short
   * throws, so a complete-looking file is a complete one.
   */
  exportCsv(range?: DateRange, opts?: CallOpts): AsyncGenerator<Uint8Array, void, void>;
}

/** The credit ledger. */
export interface CreditsApi {
  /** One page of ledger entries, newest first, with the current balance. */
  ledger(page?: PageOptions, opts?: CallOpts): Promise<ListCreditLedgerResponse>;
  /** The statement as CSV, streamed like {@link UsageApi.exportCsv}: an opening balance, then every entry with the balance after it. */
  statementCsv(range?: DateRange, opts?: CallOpts): AsyncGenerator<Uint8Array, void, void>;
}

/** Signing in with an e-mail and password (the portal's flow), and who the caller is. */
export interface AuthApi {
  /** Opens a session (12 h); send its token as `sessionToken` to a new client for the session-only rpcs (API keys). */
  login(email: string, password: string, opts?: CallOpts): Promise<LoginResponse>;
  /** The caller: its customer, whether it is a session or an API key, and its scopes. */
  me(opts?: CallOpts): Promise<GetMeResponse>;
}

/**
 * API keys. Session only: a client made with a `sessionToken` may call these, one made with an
 * API key is refused (`API_KEY_SCOPE_DENIED`), so a leaked key can neither mint more keys nor
 * revoke its owner's.
 */
export interface ApiKeysApi {
  /** Mints a key (scopes left out: every one of {@link API_KEY_SCOPES}); the answer's `key` is its plaintext, shown this once. */
  create(body: { name: string; scopes?: readonly string[] }, opts?: CallOpts): Promise<CreateApiKeyResponse>;
  list(page?: PageOptions, opts?: CallOpts): Promise<ListApiKeysResponse>;
  /** Revokes a key (idempotent: a revoked key answers with its first `revokedAt`). */
  revoke(id: string, opts?: CallOpts): Promise<ApiKey>;
}

/** Webhook endpoints and their deliveries. */
export interface WebhooksApi {
  /** Creates an endpoint; the response's `secret` is shown exactly once. */
  create(body: MessageInitShape<typeof CreateWebhookRequestSchema>, opts?: CallOpts): Promise<CreateWebhookResponse>;
  list(page?: PageOptions, opts?: CallOpts): Promise<ListWebhooksResponse>;
  /** Queues a `webhook.test` delivery to the endpoint. */
  test(id: string, opts?: CallOpts): Promise<TestWebhookResponse>;
  /** New secret; the previous one keeps signing for a grace period. */
  rotate(id: string, opts?: CallOpts): Promise<RotateWebhookSecretResponse>;
  delete(id: string, opts?: CallOpts): Promise<DeleteWebhookResponse>;
  deliveries(id: string, query?: PageOptions & { status?: string }, opts?: CallOpts): Promise<ListWebhookDeliveriesResponse>;
  /** Queues a new delivery of the same event. */
  redeliver(id: string, deliveryId: string, opts?: CallOpts): Promise<WebhookDelivery>;
}

/** The typed client returned by {@link createGpuAgentClient}. */
export interface GpuAgentClient {
  readonly baseUrl: string;
  /** The generated Connect client (authenticated, retrying), for rpcs the helpers do not cover. Its errors are raw ConnectErrors. */
  readonly rpc: Client<typeof CustomerService>;
  /** The public server configuration (limits, rates, upload limits). */
  config(opts?: CallOpts): Promise<GetConfigResponse>;
  readonly datasets: DatasetsApi;
  readonly packages: PackagesApi;
  readonly jobs: JobsApi;
  /** `jobs.watch`: `for await (const event of client.watchTrainingJob(id)) …`. */
  watchTrainingJob(id: string, options?: WatchJobOptions): AsyncGenerator<JobEvent, void, void>;
  readonly artifacts: ArtifactsApi;
  readonly usage: UsageApi;
  readonly credits: CreditsApi;
  readonly webhooks: WebhooksApi;
  readonly auth: AuthApi;
  readonly apiKeys: ApiKeysApi;
}

/** A random `Idempotency-Key` the server accepts (`[A-Za-z0-9._:-]{8,128}`). */
export function generateIdempotencyKey(): string {
  return `sdk-${newId()}`;
}

/** Builds a client; nothing is sent until a method is called. */
export function createGpuAgentClient(options: GpuAgentClientOptions): GpuAgentClient {
  const core = createSdkCore(options, (header) => {
    if (options.apiKey !== undefined && options.apiKey !== "") header.set("x-api-key", options.apiKey);
    else if (options.sessionToken !== undefined && options.sessionToken !== "") header.set("authorization", `Bearer ${options.sessionToken}`);
  });
  const { baseUrl, baseOrigin, call, send, sleep, clock } = core;
  const rpc = createClient(CustomerService, core.transport);

  /**
   * Signed URLs need no credential; the API key still goes along when the URL is on the API's own
   * origin (harmless there) but never to another host, where it would leak.
   */
  function signedUrl(raw: string): { url: string; headers: Record<string, string> } {
    let url: URL;
    try {
      url = new URL(raw, baseUrl + "/");
    } catch (error) {
      throw new GpuAgentError({ code: "BAD_RESPONSE", message: `the server returned an invalid URL: ${raw}`, httpStatus: 0, connectCode: Code.Unknown, cause: error });
    }
    const headers: Record<string, string> = {};
    if (url.origin === baseOrigin && options.apiKey !== undefined && options.apiKey !== "") headers["x-api-key"] = options.apiKey;
    return { url: url.toString(), headers };
  }

  async function putBytes(rawUrl: string, src: PreparedSource, onProgress: ((p: TransferProgress) => void) | undefined, signal: AbortSignal | undefined): Promise<void> {
    const { url, headers } = signedUrl(rawUrl);
    const res = await send(url, () => {
      let sent = 0;
      onProgress?.({ phase: "uploading", bytesDone: 0, totalBytes: src.size });
      // Counting as fetch pulls the body tracks what has been handed to the socket.
      const counter = new Transform({
        transform(chunk: Buffer, _enc, cb) {
          sent += chunk.length;
          onProgress?.({ phase: "uploading", bytesDone: sent, totalBytes: src.size });
          cb(null, chunk);
        },
      });
      const body = src.open().pipe(counter);
      return {
        method: "PUT",
        headers: { "content-type": "application/octet-stream", "content-length": String(src.size), ...headers },
        body: Readable.toWeb(body) as ReadableStream<Uint8Array>,
        duplex: "half",
        ...(signal === undefined ? {} : { signal }),
      } as RequestInit;
    });
    const text = await res.text();
    if (!res.ok) throw fromRestResponse(res, text);
  }

  const datasets: DatasetsApi = {
    async upload(source, o) {
      const src = await prepareSource(source, o.onProgress, o.signal);
      try {
        const created = await call(() =>
          rpc.createDataset({ name: o.name, sizeBytes: BigInt(src.size), sha256: src.sha256, format: o.format ?? "" }, co(o)),
        );
        const dataset = required(created.dataset, "CreateDataset");
        await putBytes(dataset.uploadUrl, src, o.onProgress, o.signal);
        return required((await call(() => rpc.finalizeDataset({ id: dataset.id }, co(o)))).dataset, "FinalizeDataset");
      } finally {
        await src.cleanup();
      }
    },
    get: async (id, opts) => required((await call(() => rpc.getDataset({ id }, co(opts)))).dataset, "GetDataset"),
    list: (p, opts) => call(() => rpc.listDatasets(page(p), co(opts))),
    delete: (id, opts) => call(() => rpc.deleteDataset({ id }, co(opts))),
  };

  const packages: PackagesApi = {
    async upload(source, o) {
      const src = await prepareSource(source, o.onProgress, o.signal);
      try {
        const created = await call(() =>
          rpc.createTrainingPackage({ name: o.name, sizeBytes: BigInt(src.size), sha256: src.sha256, entrypoint: o.entrypoint ?? "" }, co(o)),
        );
        const pkg = required(created.trainingPackage, "CreateTrainingPackage");
        await putBytes(pkg.uploadUrl, src, o.onProgress, o.signal);
        return required((await call(() => rpc.finalizeTrainingPackage({ id: pkg.id }, co(o)))).trainingPackage, "FinalizeTrainingPackage");
      } finally {
        await src.cleanup();
      }
    },
    get: async (id, opts) => required((await call(() => rpc.getTrainingPackage({ id }, co(opts)))).trainingPackage, "GetTrainingPackage"),
    list: (p, opts) => call(() => rpc.listTrainingPackages(page(p), co(opts))),
    delete: (id, opts) => call(() => rpc.deleteTrainingPackage({ id }, co(opts))),
  };

  const jobs: JobsApi = {
    async create(body, o) {
      // Generated once per create call, outside the retry loop, so every retry replays the same key.
      const key = o?.idempotencyKey ?? generateIdempotencyKey();
      const res = await call(() => rpc.createTrainingJob(body, co(o, { "idempotency-key": key })));
      return required(res.trainingJob, "CreateTrainingJob");
    },
    get: async (id, opts) => required((await call(() => rpc.getTrainingJob({ id }, co(opts)))).trainingJob, "GetTrainingJob"),
    list: (q, opts) => call(() => rpc.listTrainingJobs({ ...page(q), status: q?.status ?? "" }, co(opts))),
    cancel: async (id, opts) => required((await call(() => rpc.cancelTrainingJob({ id }, co(opts)))).trainingJob, "CancelTrainingJob"),
    computeUnits: (id, p, opts) => call(() => rpc.listComputeUnits({ id, ...page(p) }, co(opts))),
    logs: (jobId, unitId, q, opts) => call(() => rpc.getComputeUnitLogs({ id: jobId, unitId, attempt: q?.attempt ?? 0, after: q?.after ?? 0n }, co(opts))),
    followLogs: (jobId, unitId, o) => followLogs(jobId, unitId, o ?? {}),
    watch: (id, o) => watchJob(id, o ?? {}),
    metrics: (jobId, opts) => call(() => rpc.getTrainingJobMetrics({ id: jobId }, co(opts))),
    waitForJob: (id, o) => waitForJob(id, o ?? {}),
    async wait(id, o) {
      const it = waitForJob(id, o ?? {});
      for (;;) {
        const step = await it.next();
        if (step.done === true) return step.value;
      }
    },
  };

  /**
   * `jobs.watch`: one stream after another, each resuming after the last event received, until the
   * job has ended; a failed connection is retried after a growing wait, `maxReconnects` times in a row.
   */
  async function* watchJob(id: string, o: WatchJobOptions): AsyncGenerator<JobEvent, void, void> {
    const maxReconnects = Math.max(0, o.maxReconnects ?? 5);
    let after = o.afterEventId ?? 0n;
    let ended = false;
    let failures = 0;
    let delayMs = o.reconnectDelayMs ?? DEFAULT_WATCH_RECONNECT_DELAY_MS;
    for (;;) {
      throwIfAborted(o.signal);
      let received = 0;
      // Aborted when this generator is left early too (a caller's break), so the request ends with it.
      const connection = new AbortController();
      const onAbort = () => connection.abort();
      o.signal?.addEventListener("abort", onAbort, { once: true });
      try {
        // No deadline (timeoutMs 0): a watch lasts as long as its job; heartbeats show it is alive.
        for await (const event of rpc.watchTrainingJob({ id, afterEventId: after }, { signal: connection.signal, timeoutMs: 0 })) {
          received++;
          failures = 0;
          delayMs = o.reconnectDelayMs ?? DEFAULT_WATCH_RECONNECT_DELAY_MS;
          if (event.type === "heartbeat") {
            if (o.heartbeats === true) yield event;
            continue;
          }
          after = event.id;
          const status = event.payload.case === "snapshot" ? event.payload.value.trainingJob?.status : event.payload.case === "job" ? event.payload.value.status : undefined;
          if (status !== undefined) ended = TERMINAL_JOB_STATUSES.includes(status);
          yield event;
        }
      } catch (error) {
        const failure = fromConnectError(error);
        // A server without WatchTrainingJob answers UNIMPLEMENTED (HTTP 501): no retry will change that.
        const unsupported = failure.connectCode === Code.Unimplemented;
        if (unsupported || !isTransientFailure(failure) || ++failures > maxReconnects) throw failure;
      } finally {
        o.signal?.removeEventListener("abort", onAbort);
        connection.abort();
      }
      if (ended) return;
      // The server ends a stream early only when its replica shuts down; an empty one may also be a
      // job that ended before `after` (nothing more to send): the job says which.
      if (received === 0 && failures === 0 && TERMINAL_JOB_STATUSES.includes((await jobs.get(id, co(o))).status)) return;
      if (failures > 0) {
        await sleep(delayMs, o.signal);
        delayMs = Math.min(delayMs * 2, MAX_WATCH_RECONNECT_DELAY_MS);
      }
    }
  }

  /** waitForJob over the live stream; a server without it (UNIMPLEMENTED) is polled instead. */
  async function* waitForJob(id: string, o: WaitForJobOptions): AsyncGenerator<JobProgressEvent, TrainingJob, void> {
    if (o.poll === true) return yield* pollForJob(id, o);
    const stop = new AbortController();
    const onAbort = () => stop.abort();
    o.signal?.addEventListener("abort", onAbort, { once: true });
    const deadline = o.timeoutMs === undefined ? undefined : clock.sleep(o.timeoutMs, stop.signal).then(() => stop.abort(), () => undefined);
    let job: TrainingJob | undefined;
    let lastKey: string | undefined;
    try {
      for await (const event of watchJob(id, { signal: stop.signal, maxReconnects: Math.max(0, o.maxTransientFailures ?? 0) })) {
        if (event.payload.case === "snapshot" && event.payload.value.trainingJob !== undefined) job = event.payload.value.trainingJob;
        else if (event.payload.case === "job" && job !== undefined) {
          const { status, progress, error, metrics, startedAt, finishedAt, computeUnitsCompleted, creditsDebited, pendingReason } = event.payload.value;
          job = { ...job, status, progress, error, metrics, startedAt, finishedAt, computeUnitsCompleted, creditsDebited, pendingReason };
        } else continue;
        const progressEvent = progressEventOf(job);
        const key = progressKey(progressEvent);
        if (key !== lastKey || progressEvent.terminal) {
          lastKey = key;
          o.onProgress?.(progressEvent);
          yield progressEvent;
        }
        if (progressEvent.terminal) break;
      }
    } catch (error) {
      if (error instanceof GpuAgentError && error.connectCode === Code.Unimplemented && job === undefined) return yield* pollForJob(id, o);
      if (stop.signal.aborted && o.signal?.aborted !== true) {
        throw new GpuAgentError({ code: "TIMEOUT", message: `job ${id} is still ${job?.status ?? "unread"} after ${o.timeoutMs} ms`, httpStatus: 0, connectCode: Code.DeadlineExceeded });
      }
      throw error;
    } finally {
      o.signal?.removeEventListener("abort", onAbort);
      stop.abort();
      await deadline;
    }
    // The final view (credits debited, counts) as GetTrainingJob shows it.
    return jobs.get(id, co(o));
  }

  async function* pollForJob(id: string, o: WaitForJobOptions): AsyncGenerator<JobProgressEvent, TrainingJob, void> {
    const intervalMs = o.intervalMs ?? DEFAULT_POLL_INTERVAL_MS;
    const deadline = o.timeoutMs === undefined ? undefined : clock.now() + o.timeoutMs;
    const maxTransientFailures = Math.max(0, o.maxTransientFailures ?? 0);
    let failures = 0;
    let lastKey: string | undefined;
    let lastStatus = "unread";
    for (;;) {
      throwIfAborted(o.signal);
      let job: TrainingJob | undefined;
      try {
        job = await jobs.get(id, co(o));
        failures = 0;
      } catch (error) {
        if (!isTransientFailure(error) || ++failures > maxTransientFailures) throw error;
      }
      if (job !== undefined) {
        const event = progressEventOf(job);
        const terminal = event.terminal;
        // Only changes are reported: a caller drawing a progress bar wants steps, not every poll.
        const key = progressKey(event);
        if (key !== lastKey || terminal) {
          lastKey = key;
          o.onProgress?.(event);
          yield event;
        }
        if (terminal) return job;
        lastStatus = job.status;
      }
      let wait = intervalMs;
      if (deadline !== undefined) {
        const left = deadline - clock.now();
        if (left <= 0) {
          throw new GpuAgentError({ code: "TIMEOUT", message: `job ${id} is still ${lastStatus} after ${o.timeoutMs} ms`, httpStatus: 0, connectCode: Code.DeadlineExceeded });
        }
        wait = Math.min(wait, left);
      }
      await sleep(wait, o.signal);
    }
  }

  async function* followLogs(jobId: string, unitId: string, o: FollowLogsOptions): AsyncGenerator<GetComputeUnitLogsResponse, void, void> {
    const intervalMs = o.intervalMs ?? DEFAULT_POLL_INTERVAL_MS;
    let attempt: number | undefined;
    let after = 0n;
    for (let first = true; ; first = false) {
      throwIfAborted(o.signal);
      let answer = await jobs.logs(jobId, unitId, { after }, co(o));
      // A new attempt has its own numbering: read it from the start.
      if (attempt !== undefined && answer.attempt !== attempt && after > 0n) answer = await jobs.logs(jobId, unitId, {}, co(o));
      const moved = answer.attempt !== attempt;
      attempt = answer.attempt;
      after = answer.nextAfter;
      if (first || moved || answer.lines.length > 0) yield answer;
      if (TERMINAL_UNIT_STATUSES.includes(answer.unitStatus)) return;
      await sleep(intervalMs, o.signal);
    }
  }

  async function findArtifact(jobId: string, artifactId: string, opts: CallOpts): Promise<Artifact> {
    for await (const a of iterateAll((p) => artifacts.list(jobId, p, opts))) {
      if (a.id === artifactId) return a;
    }
    throw new GpuAgentError({ code: "ARTIFACT_NOT_FOUND", message: `artifact ${artifactId} is not among job ${jobId}'s artifacts`, httpStatus: 404, connectCode: Code.NotFound });
  }

  const artifacts: ArtifactsApi = {
    list: (jobId, p, opts) => call(() => rpc.listArtifacts({ id: jobId, ...page(p) }, co(opts))),
    downloadUrl: (jobId, artifactId, opts) => call(() => rpc.createArtifactDownloadUrl({ jobId, artifactId }, co(opts))),
    async download(jobId, artifactId, destPath, o = {}) {
      const expected = (o.expectedSha256 ?? (await findArtifact(jobId, artifactId, o)).sha256).toLowerCase();
      if (expected === "") {
        // Nothing to verify against: refuse rather than hand over bytes nobody can check.
        throw new GpuAgentError({ code: "CHECKSUM_MISMATCH", message: `artifact ${artifactId} has no recorded sha256; refusing an unverifiable download`, httpStatus: 0, connectCode: Code.DataLoss });
      }
      const minted = await artifacts.downloadUrl(jobId, artifactId, o);
      const { url, headers } = signedUrl(minted.downloadUrl);
      const res = await send(url, () => ({ method: "GET", headers, ...(o.signal === undefined ? {} : { signal: o.signal }) }));
      if (!res.ok) throw fromRestResponse(res, await res.text());
      if (res.body === null) throw new GpuAgentError({ code: "BAD_RESPONSE", message: "the download answered without a body", httpStatus: res.status, connectCode: Code.Unknown });
      const lengthHeader = res.headers.get("content-length");
      const total = lengthHeader === null ? undefined : Number(lengthHeader);
      const hash = createHash("sha256");
      let bytes = 0;
      const tap = new Transform({
        transform(chunk: Buffer, _enc, cb) {
          hash.update(chunk);
          bytes += chunk.length;
          o.onProgress?.({ phase: "downloading", bytesDone: bytes, totalBytes: total });
          cb(null, chunk);
        },
      });
      // Written beside the destination and renamed only once verified, so a reader of destPath never
      // sees a partial or corrupt file.
      const partial = join(dirname(destPath), `.${basename(destPath)}.${newId()}.partial`);
      try {
        await pipeline(Readable.fromWeb(res.body as WebReadableStream<Uint8Array>), tap, createWriteStream(partial), o.signal === undefined ? {} : { signal: o.signal });
        const sha256 = hash.digest("hex");
        if (sha256 !== expected) {
          throw new GpuAgentError({ code: "CHECKSUM_MISMATCH", message: `artifact ${artifactId}: downloaded bytes hash to ${sha256}, expected ${expected}`, httpStatus: 0, connectCode: Code.DataLoss });
        }
        await rename(partial, destPath);
        return { path: destPath, bytes, sha256 };
      } catch (error) {
        await rm(partial, { force: true });
        throw error instanceof GpuAgentError ? error : fromFetchFailure(url, error);
      }
    },
  };

  /** The bytes of a server-streamed CSV; a failure mid-stream is a {@link GpuAgentError} like any other. */
  async function* csvChunks(open: () => AsyncIterable<{ body?: { data: Uint8Array } | undefined }>): AsyncGenerator<Uint8Array, void, void> {
    try {
      for await (const message of open()) {
        const data = message.body?.data;
        if (data !== undefined && data.length > 0) yield data;
      }
    } catch (error) {
      throw fromConnectError(error);
    }
  }

  const range = (r: DateRange | undefined) => ({ dateFrom: r?.dateFrom ?? "", dateTo: r?.dateTo ?? "" });

  const usage: UsageApi = {
    summary: (opts) => call(() => rpc.getUsageSummary({}, co(opts))),
    daily: (q, opts) => call(() => rpc.getDailyUsage({ days: q?.days ?? 0 }, co(opts))),
    exportCsv: (r, opts) => csvChunks(() => rpc.exportUsageCsv(range(r), co(opts))),
  };

  const credits: CreditsApi = {
    ledger: (p, opts) => call(() => rpc.listCreditLedger(page(p), co(opts))),
    statementCsv: (r, opts) => csvChunks(() => rpc.getCreditStatementCsv(range(r), co(opts))),
  };

  const auth: AuthApi = {
    login: (email, password, opts) => call(() => rpc.login({ email, password }, co(opts))),
    me: (opts) => call(() => rpc.getMe({}, co(opts))),
  };

  const apiKeys: ApiKeysApi = {
    create: (body, opts) => call(() => rpc.createApiKey({ name: body.name, scopes: [...(body.scopes ?? API_KEY_SCOPES)] }, co(opts))),
    list: (p, opts) => call(() => rpc.listApiKeys(page(p), co(opts))),
    revoke: async (id, opts) => required((await call(() => rpc.revokeApiKey({ id }, co(opts)))).apiKey, "RevokeApiKey"),
  };

  const webhooks: WebhooksApi = {
    create: (body, opts) => call(() => rpc.createWebhook(body, co(opts))),
    list: (p, opts) => call(() => rpc.listWebhooks(page(p), co(opts))),
    test: (id, opts) => call(() => rpc.testWebhook({ id }, co(opts))),
    rotate: (id, opts) => call(() => rpc.rotateWebhookSecret({ id }, co(opts))),
    delete: (id, opts) => call(() => rpc.deleteWebhook({ id }, co(opts))),
    deliveries: (id, q, opts) => call(() => rpc.listWebhookDeliveries({ id, ...page(q), status: q?.status ?? "" }, co(opts))),
    redeliver: async (id, deliveryId, opts) =>
      required((await call(() => rpc.redeliverWebhookDelivery({ id, deliveryId }, co(opts)))).delivery, "RedeliverWebhookDelivery"),
  };

  return {
    baseUrl,
    rpc,
    config: (opts) => call(() => rpc.getConfig({}, co(opts))),
    datasets,
    packages,
    jobs,
    watchTrainingJob: jobs.watch,
    artifacts,
    usage,
    credits,
    webhooks,
    auth,
    apiKeys,
  };
}

/** What waitForJob reports of a job. */
function progressEventOf(job: TrainingJob): JobProgressEvent {
  return {
    jobId: job.id,
    status: job.status,
    progress: job.progress,
    computeUnitsCompleted: job.computeUnitsCompleted,
    computeUnitCount: job.computeUnitCount,
    metrics: { ...job.metrics },
    pendingReason: job.status === "queued" ? job.pendingReason : "",
    terminal: TERMINAL_JOB_STATUSES.includes(job.status),
    job,
  };
}

/** What must differ for waitForJob to report again: a caller drawing a progress bar wants steps. */
function progressKey(e: JobProgressEvent): string {
  return JSON.stringify([e.status, e.progress, e.computeUnitsCompleted, e.computeUnitCount, e.metrics, e.pendingReason]);
}

/** A source ready to upload: its size and sha256 known, its bytes re-readable for each attempt. */
interface PreparedSource {
  size: number;
  sha256: string;
  open(): Readable;
  cleanup(): Promise<void>;
}

/**
 * Reads the source once to learn its size and sha256 (the server wants both before it signs an
 * upload URL). A path is re-read for the PUT; a stream cannot be, so it is spooled to a temp file
 * while being hashed, and that file is removed afterwards.
 */
async function prepareSource(source: UploadSource, onProgress: ((p: TransferProgress) => void) | undefined, signal: AbortSignal | undefined): Promise<PreparedSource> {
  if (source instanceof Uint8Array) {
    const bytes = source;
    onProgress?.({ phase: "hashing", bytesDone: bytes.length, totalBytes: bytes.length });
    return {
      size: bytes.length,
      sha256: createHash("sha256").update(bytes).digest("hex"),
      // Chunked so progress moves during the PUT instead of jumping from 0 to done.
      open: () => Readable.from(chunks(bytes, 64 * 1024)),
      cleanup: async () => undefined,
    };
  }
  if (typeof source === "string") {
    const total = (await stat(source)).size;
    const { size, sha256 } = await hashStream(createReadStream(source), undefined, total, onProgress, signal);
    return { size, sha256, open: () => createReadStream(source), cleanup: async () => undefined };
  }
  const dir = await mkdtemp(join(tmpdir(), "gpu-agent-sdk-"));
  const spool = join(dir, "upload");
  const readable = source instanceof Readable ? source : Readable.from(source as AsyncIterable<Uint8Array>);
  try {
    const { size, sha256 } = await hashStream(readable, spool, undefined, onProgress, signal);
    return { size, sha256, open: () => createReadStream(spool), cleanup: () => rm(dir, { recursive: true, force: true }) };
  } catch (error) {
    await rm(dir, { recursive: true, force: true });
    throw error;
  }
}

async function hashStream(
  input: Readable,
  spoolTo: string | undefined,
  total: number | undefined,
  onProgress: ((p: TransferProgress) => void) | undefined,
  signal: AbortSignal | undefined,
): Promise<{ size: number; sha256: string }> {
  const hash = createHash("sha256");
  let size = 0;
  onProgress?.({ phase: "hashing", bytesDone: 0, totalBytes: total });
  const tap = new Transform({
    transform(chunk: Buffer, _enc, cb) {
      hash.update(chunk);
      size += chunk.length;
      onProgress?.({ phase: "hashing", bytesDone: size, totalBytes: total });
      cb(null, spoolTo === undefined ? undefined : chunk);
    },
  });
  const opts = signal === undefined ? {} : { signal };
  if (spoolTo === undefined) {
    tap.resume();
    await pipeline(input, tap, opts);
  } else {
    await pipeline(input, tap, createWriteStream(spoolTo), opts);
  }
  return { size, sha256: hash.digest("hex") };
}

function* chunks(bytes: Uint8Array, size: number): Generator<Uint8Array> {
  for (let i = 0; i < bytes.length; i += size) yield bytes.subarray(i, i + size);
}
