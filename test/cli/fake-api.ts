/**
 * An in-memory fake of just enough of the GPU-Agent API for gpuctl tests, served the way the real
 * control plane serves it: the generated CustomerService and AdminService over Connect (so the
 * CLI's SDK client talks to it unchanged), errors through the server's own error interceptor
 * (seed code in `x-gpu-agent-error-code`, a request id, `Retry-After` on 429), and the signed
 * upload and download URLs over plain HTTP with the REST error envelope.
 *
 * Jobs follow a script per GET, and a job's compute units may have logs that follow a script per
 * read. Every rpc is recorded with its headers and its request as REST JSON (proto field names,
 * defaults left out) so tests assert what the CLI sent.
 */
import { createHash } from "node:crypto";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { PassThrough } from "node:stream";
import type { JsonObject, MessageInitShape } from "@bufbuild/protobuf";
import { create, toJson } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import type { ConnectRouter, Interceptor, ServiceImpl } from "@connectrpc/connect";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import { createErrorInterceptor } from "../../src/api/connect-errors.ts";
import type { ErrorCode } from "../../src/platform/errors.ts";
import { ApiError } from "../../src/platform/errors.ts";
import type { CliDeps } from "../../src/cli/program.ts";
import type { Io } from "../../src/cli/output.ts";
import type { Stdin } from "../../src/cli/terminal.ts";
import { AdminService } from "../../src/gen/gpuagent/admin/v1/admin_pb.ts";
import type { Webhook } from "../../src/gen/gpuagent/customer/v1/customer_pb.ts";
import {
  ArtifactSchema,
  ComputeUnitSchema,
  CustomerService,
  TrainingJobSchema as JobSchema,
  WebhookDeliverySchema,
  WebhookSchema,
} from "../../src/gen/gpuagent/customer/v1/customer_pb.ts";
import { instantClock } from "../sdk/support.ts";

export { instantClock };

/** Credentials the fake accepts. */
export const API_KEY = "sk_test_fake";
/** Admin token the fake accepts. */
export const ADMIN_TOKEN = "admin-secret";

/** An rpc as the fake saw it. */
export interface Call {
  /** The method name, e.g. `CreateTrainingJob`. */
  rpc: string;
  headers: Headers;
  /** The request as REST JSON: proto field names, defaults left out, int64 as strings. */
  body: JsonObject;
}

/** A plain-HTTP request to a signed URL. */
export interface Transfer {
  method: string;
  path: string;
  headers: http.IncomingHttpHeaders;
}

/** What a create sent, as the job keeps it. */
export interface FakeJobBody {
  name?: string;
  datasetId?: string;
  trainingPackageId?: string;
  requiredVramMb?: number;
  requiredDiskMb?: number;
  maxRuntimeSeconds?: number;
  sensitivity?: string;
  requiredGpuCount?: number;
  gpuModels?: string[];
  minComputeCapability?: string;
  minCudaVersion?: string;
  queueTimeoutSeconds?: number;
}

/** What changes between GETs of a job. */
export interface FakeJobState {
  status: string;
  progress?: number;
  metrics?: Record<string, number>;
  error?: string;
  pendingReason?: string;
}

/** A job the fake serves: GET n returns `script[min(n, last)]` over `body`. */
export interface FakeJob {
  id: string;
  body: FakeJobBody;
  script: (FakeJobState & { progress: number })[];
  gets: number;
}

/** One read of a unit's log: the unit's status then and every line of its attempt so far. */
export interface FakeLogStep {
  status: string;
  attempt?: number;
  lines: string[];
  dropped?: number;
  trimmed?: number;
}

/** A compute unit with a scripted log: read n answers `logs[min(n, last)]` (lines after `after` only). */
export interface FakeUnit {
  id: string;
  name: string;
  dependsOn: string[];
  logs: FakeLogStep[];
  reads: number;
  /** More of the unit's view (GPUs, attempts, checkpoint …), as ListComputeUnits answers it. */
  view?: MessageInitShape<typeof ComputeUnitSchema>;
}

/** An artifact the fake serves; `served` lets a test corrupt the bytes. */
export interface FakeArtifact {
  id: string;
  job_id: string;
  name: string;
  content: Buffer;
  served?: Buffer;
}

/** A dataset or package going through create → PUT → finalize. */
export interface Upload {
  id: string;
  kind: "dataset" | "package";
  name: string;
  sizeBytes: bigint;
  sha256: string;
  format: string;
  entrypoint: string;
  status: string;
  bytes?: Buffer;
  putHeaders?: http.IncomingHttpHeaders;
}

/** The fake and its knobs. */
export interface FakeApi {
  url: string;
  calls: Call[];
  transfers: Transfer[];
  uploads: Map<string, Upload>;
  jobs: Map<string, FakeJob>;
  artifacts: FakeArtifact[];
  webhooks: Map<string, Webhook>;
  /** A job's compute units, in the order the API lists them; a job not here has one unit, `train`. */
  units: Map<string, FakeUnit[]>;
  /** The two CSV files, streamed in chunks of this many bytes. */
  csv: { usage: string; statement: string; chunkBytes: number };
  /** Answer the next N requests (rpcs and transfers) with 429 and this Retry-After. */
  rateLimit: { remaining: number; retryAfter: string };
  /** Script given to jobs created from now on. */
  nextJobScript: FakeJob["script"];
  /** Fail the next rpc with this seed code. */
  failNext?: { code: ErrorCode; message: string };
  close(): Promise<void>;
}

function sha256(b: Buffer): string {
  return createHash("sha256").update(b).digest("hex");
}

/** An ApiError carrying a request id derived from its code, so tests can assert it. */
function fail(code: ErrorCode, message: string, headers: Record<string, string> = {}): ApiError {
  return new ApiError(code, message, { headers: { "x-request-id": `req_${code.toLowerCase()}`, ...headers } });
}

const onePage = (limit: number) => ({ limit, nextCursor: "", hasMore: false });
const fixedTime = timestampFromDate(new Date(Date.UTC(2026, 0, 1)));

/** Starts the fake on 127.0.0.1, port 0. */
export async function startFakeApi(): Promise<FakeApi> {
  let counter = 0;
  const newId = (prefix: string) => `${prefix}_${++counter}`;
  const api: Omit<FakeApi, "url" | "close"> = {
    calls: [],
    transfers: [],
    uploads: new Map(),
    jobs: new Map(),
    artifacts: [],
    webhooks: new Map(),
    units: new Map(),
    csv: { usage: "date,unit,credits\n2026-01-01,cu_1,5\n", statement: "date,kind,amount,balance\n,opening_balance,,1000\n", chunkBytes: 7 },
    rateLimit: { remaining: 0, retryAfter: "1" },
    nextJobScript: [
      { status: "queued", progress: 0 },
      { status: "running", progress: 0.5, metrics: { epoch: 1, loss: 0.5 } },
      { status: "completed", progress: 1, metrics: { epoch: 2, loss: 0.25 } },
    ],
  };
  let base = "";

  // One init serves both messages: each takes the fields it has.
  const uploadMessage = (up: Upload) => {
    const init = {
      id: up.id,
      name: up.name,
      sizeBytes: up.sizeBytes,
      sha256: up.sha256,
      status: up.status,
      uploadUrl: up.status === "awaiting_upload" ? `${base}/uploads/${up.id}` : "",
      createdAt: fixedTime,
      ...(up.status === "ready" ? { finalizedAt: fixedTime } : {}),
      format: up.format,
      entrypoint: up.entrypoint,
    };
    return init;
  };
  const createUpload = (kind: Upload["kind"], req: { name: string; sizeBytes: bigint; sha256: string; format?: string; entrypoint?: string }): Upload => {
    const up: Upload = {
      id: newId(kind === "dataset" ? "ds" : "pkg"),
      kind,
      name: req.name,
      sizeBytes: req.sizeBytes,
      sha256: req.sha256,
      format: req.format ?? "",
      entrypoint: req.entrypoint || "train.py",
      status: "awaiting_upload",
    };
    api.uploads.set(up.id, up);
    return up;
  };
  const findUpload = (kind: Upload["kind"], id: string): Upload => {
    const up = api.uploads.get(id);
    if (up === undefined || up.kind !== kind) throw fail(kind === "dataset" ? "DATASET_NOT_FOUND" : "TRAINING_PACKAGE_NOT_FOUND", `${kind} ${id} not found`);
    return up;
  };
  const finalize = (kind: Upload["kind"], id: string): Upload => {
    const up = findUpload(kind, id);
    const bytes = up.bytes ?? Buffer.alloc(0);
    if (BigInt(bytes.length) !== up.sizeBytes || sha256(bytes) !== up.sha256) throw fail("UPLOAD_INVALID", "size or sha256 mismatch");
    up.status = "ready";
    return up;
  };
  const listUploads = (kind: Upload["kind"]) => [...api.uploads.values()].filter((u) => u.kind === kind).map(uploadMessage);
  const findJob = (id: string): FakeJob => {
    const job = api.jobs.get(id);
    if (job === undefined) throw fail("JOB_NOT_FOUND", "Job id absent or not yours");
    return job;
  };
  const jobMessage = (job: FakeJob, state: FakeJobState) => create(JobSchema, { ...job.body, id: job.id, ...state });
  const artifactMessage = (a: FakeArtifact) =>
    create(ArtifactSchema, { id: a.id, jobId: a.job_id, name: a.name, kind: "other", sizeBytes: BigInt(a.content.length), sha256: sha256(a.content) });
  const findWebhook = (id: string): Webhook => {
    const w = api.webhooks.get(id);
    if (w === undefined) throw fail("RESOURCE_NOT_FOUND", `webhook ${id} not found`);
    return w;
  };
  const unitsOf = (jobId: string): FakeUnit[] =>
    api.units.get(jobId) ?? [{ id: "cu_1", name: "train", dependsOn: [], logs: [{ status: "running", lines: [] }], reads: 0 }];
  const unitStep = (u: FakeUnit, advance: boolean): FakeLogStep => {
    const step = u.logs[Math.min(u.reads, u.logs.length - 1)] ?? { status: "pending", lines: [] };
    if (advance) u.reads++;
    return step;
  };
  /** The CSV in chunks, each one message; the request is recorded like a unary call's. */
  async function* csvStream(rpc: string, body: JsonObject, text: string) {
    api.calls.push({ rpc, headers: new Headers(), body });
    const bytes = Buffer.from(text);
    for (let i = 0; i < bytes.length; i += api.csv.chunkBytes) {
      yield { body: { contentType: i === 0 ? "text/csv" : "", data: bytes.subarray(i, i + api.csv.chunkBytes) } };
    }
  }
  const delivery = (webhookId: string, id: string) =>
    create(WebhookDeliverySchema, { id, webhookId, eventId: "evt_1", eventType: "webhook.test", status: "pending", createdAt: fixedTime });

  const customer: Partial<ServiceImpl<typeof CustomerService>> = {
    createDataset: (req) => ({ dataset: uploadMessage(createUpload("dataset", req)) }),
    finalizeDataset: (req) => ({ dataset: uploadMessage(finalize("dataset", req.id)) }),
    getDataset: (req) => ({ dataset: uploadMessage(findUpload("dataset", req.id)) }),
    listDatasets: () => ({ data: listUploads("dataset"), page: onePage(50) }),
    deleteDataset: (req) => ({ id: req.id, deleted: api.uploads.delete(findUpload("dataset", req.id).id) }),
    createTrainingPackage: (req) => ({ trainingPackage: uploadMessage(createUpload("package", req)) }),
    finalizeTrainingPackage: (req) => ({ trainingPackage: uploadMessage(finalize("package", req.id)) }),
    getTrainingPackage: (req) => ({ trainingPackage: uploadMessage(findUpload("package", req.id)) }),
    listTrainingPackages: () => ({ data: listUploads("package"), page: onePage(50) }),
    deleteTrainingPackage: (req) => ({ id: req.id, deleted: api.uploads.delete(findUpload("package", req.id).id) }),
    createTrainingJob: (req) => {
      const { name, datasetId, trainingPackageId, requiredVramMb, requiredDiskMb, maxRuntimeSeconds, sensitivity } = req;
      const { requiredGpuCount, gpuModels, minComputeCapability, minCudaVersion, queueTimeoutSeconds } = req;
      const gpuNeeds = { requiredGpuCount, gpuModels, minComputeCapability, minCudaVersion, queueTimeoutSeconds };
      const body = { name, datasetId, trainingPackageId, requiredVramMb, requiredDiskMb, maxRuntimeSeconds, sensitivity, ...gpuNeeds };
      const job: FakeJob = { id: newId("job"), body, script: api.nextJobScript, gets: 0 };
      api.jobs.set(job.id, job);
      return { trainingJob: jobMessage(job, { status: "queued" }) };
    },
    // A list shows each job as its first GET would.
    listTrainingJobs: () => ({ data: [...api.jobs.values()].map((j) => jobMessage(j, j.script[0] ?? { status: "queued" })), page: onePage(50) }),
    getTrainingJob: (req) => {
      const job = findJob(req.id);
      const step = job.script[Math.min(job.gets, job.script.length - 1)];
      job.gets++;
      return { trainingJob: jobMessage(job, step ?? { status: "queued" }) };
    },
    // As the server: a job that has moved on to an end is answered as it is; otherwise it ends cancelled.
    cancelTrainingJob: (req) => {
      const job = findJob(req.id);
      const now = job.script[Math.min(job.gets, job.script.length - 1)] ?? { status: "queued", progress: 0 };
      if (["completed", "failed", "cancelled", "expired"].includes(now.status)) return { trainingJob: jobMessage(job, now) };
      job.script = [{ status: "cancelled", progress: now.progress }];
      job.gets = 0;
      return { trainingJob: jobMessage(job, job.script[0] ?? now) };
    },
    listComputeUnits: (req) => ({
      data: unitsOf(findJob(req.id).id).map((u) =>
        create(ComputeUnitSchema, { id: u.id, jobId: req.id, name: u.name, kind: "gpu", dependsOn: u.dependsOn, status: unitStep(u, false).status, progress: 0.5, ...u.view }),
      ),
      page: onePage(100),
    }),
    getComputeUnitLogs: (req) => {
      const unit = unitsOf(findJob(req.id).id).find((u) => u.id === req.unitId);
      if (unit === undefined) throw fail("RESOURCE_NOT_FOUND", `compute unit ${req.unitId} not found`);
      const step = unitStep(unit, true);
      const lines = step.lines.map((text, i) => ({ seq: BigInt(i + 1), at: fixedTime, stream: "stdout", text })).filter((l) => l.seq > req.after);
      return {
        unitId: unit.id,
        attempt: step.attempt ?? 1,
        unitStatus: step.status,
        lines,
        nextAfter: lines.at(-1)?.seq ?? req.after,
        droppedLines: BigInt(step.dropped ?? 0),
        trimmedLines: BigInt(step.trimmed ?? 0),
      };
    },
    listArtifacts: (req) => ({ data: api.artifacts.filter((a) => a.job_id === findJob(req.id).id).map(artifactMessage), page: onePage(100) }),
    createArtifactDownloadUrl: (req) => {
      findJob(req.jobId);
      if (!api.artifacts.some((a) => a.id === req.artifactId)) throw fail("ARTIFACT_NOT_FOUND", "no such artifact");
      return { downloadUrl: `${base}/downloads/${req.artifactId}`, expiresAt: fixedTime, expiresInSeconds: 900 };
    },
    getUsageSummary: () => ({ creditsBalance: 900n, creditsDebitedTotal: 100n, creditsGrantedTotal: 1000n, computeUnitsCompleted: 3, gpuSeconds: 120n, jobsTotal: 1 }),
    getDailyUsage: (req) => ({
      data: [{ date: "2026-01-01", computeUnitsCompleted: 3, gpuSeconds: 120n, cpuSeconds: 30n, creditsDebited: BigInt(req.days) }],
    }),
    exportUsageCsv: (req) => csvStream("ExportUsageCsv", { date_from: req.dateFrom, date_to: req.dateTo }, api.csv.usage),
    getCreditStatementCsv: (req) => csvStream("GetCreditStatementCsv", { date_from: req.dateFrom, date_to: req.dateTo }, api.csv.statement),
    listCreditLedger: () => ({
      data: [
        { id: "led_2", amount: -100n, kind: "debit", description: "compute unit train", jobId: "job_1", computeUnitId: "cu_1", createdAt: fixedTime },
        { id: "led_1", amount: 1000n, kind: "grant", description: "opening grant", createdAt: fixedTime },
      ],
      page: onePage(50),
      balance: 900n,
    }),
    createWebhook: (req) => {
      const webhook = create(WebhookSchema, { id: newId("wh"), url: req.url, events: req.events, description: req.description, createdAt: fixedTime });
      api.webhooks.set(webhook.id, webhook);
      return { webhook, secret: "whsec_first" };
    },
    listWebhooks: () => ({ data: [...api.webhooks.values()], page: onePage(50) }),
    testWebhook: (req) => ({ deliveryId: `dlv_${findWebhook(req.id).id}`, status: "queued" }),
    rotateWebhookSecret: (req) => ({ webhook: findWebhook(req.id), secret: "whsec_second", previousSecretExpiresAt: fixedTime }),
    deleteWebhook: (req) => ({ id: req.id, deleted: api.webhooks.delete(req.id) }),
    listWebhookDeliveries: (req) => ({ data: [delivery(findWebhook(req.id).id, "dlv_1")], page: onePage(50) }),
    redeliverWebhookDelivery: (req) => ({ delivery: delivery(findWebhook(req.id).id, `${req.deliveryId}_again`) }),
  };

  const nodeMessage = {
    id: "node_1",
    hostname: "box",
    trustLevel: "verified",
    state: "online",
    gpus: [{ name: "RTX 4090", vramMb: 24564 }],
    isolation: "bubblewrap",
    paused: true,
    notPlacingReason: "paused by its owner",
  };
  const findNode = (id: string) => {
    if (id !== nodeMessage.id) throw fail("RESOURCE_NOT_FOUND", `node ${id} not found`);
    return nodeMessage;
  };
  const admin: Partial<ServiceImpl<typeof AdminService>> = {
    createCustomer: (req) => {
      const id = newId("cus");
      return { customerId: id, apiKey: "sk_test_new", customer: { id, email: req.email, creditsBalance: req.credits } };
    },
    listCustomers: () => ({ data: [{ id: "cus_1", email: "a@b.c", creditsBalance: 500n, createdAt: fixedTime }], page: onePage(100) }),
    grantCredits: (req) => ({ ledgerEntryId: "led_1", creditsBalance: 1000n + req.amount }),
    createEnrollmentToken: (req) => ({ token: "enr_abc", expiresAt: timestampFromDate(new Date("2026-01-01T01:00:00Z")), trustLevel: req.trustLevel }),
    listNodes: () => ({ data: [nodeMessage], page: onePage(100) }),
    cordonNode: (req) => ({ node: { ...findNode(req.id), state: "cordoned" } }),
    setNodeTrustLevel: (req) => ({ node: { ...findNode(req.id), trustLevel: req.trustLevel } }),
    getSchedulerStatus: () => ({ replicaId: "r1", isLeader: true, leaderId: "r1", term: 3n, queues: [{ kind: "gpu", ready: 2 }] }),
  };

  // Outermost first: errors become Connect errors the way the server does it; every rpc is
  // recorded, then rate limits, forced failures and credentials are checked.
  const record: Interceptor = (next) => async (req) => {
    if (!req.stream) api.calls.push({ rpc: req.method.name, headers: req.header, body: toJson(req.method.input, req.message, { useProtoFieldName: true }) as JsonObject });
    return await next(req);
  };
  const gate: Interceptor = (next) => async (req) => {
    if (api.rateLimit.remaining > 0) {
      api.rateLimit.remaining--;
      throw fail("RATE_LIMITED", "slow down", { "retry-after": api.rateLimit.retryAfter });
    }
    const forced = api.failNext;
    if (forced !== undefined) {
      delete api.failNext;
      throw fail(forced.code, forced.message);
    }
    if (req.service.typeName === AdminService.typeName) {
      if (req.header.get("authorization") !== `Bearer ${ADMIN_TOKEN}`) throw fail("ADMIN_AUTH_REQUIRED", "admin token required");
    } else if (req.header.get("x-api-key") !== API_KEY) {
      throw fail("API_KEY_INVALID", "X-API-Key not recognized");
    }
    return await next(req);
  };

  /** The signed URLs: no credential needed, REST error envelope. */
  async function transfers(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const body = Buffer.concat(chunks);
    const path = new URL(req.url ?? "/", base).pathname;
    api.transfers.push({ method: req.method ?? "", path, headers: req.headers });
    const error = (status: number, code: string, message: string, headers: Record<string, string> = {}) => {
      res.writeHead(status, { "content-type": "application/json", ...headers });
      res.end(JSON.stringify({ error: { code, message, request_id: `req_${code.toLowerCase()}` } }));
    };
    if (api.rateLimit.remaining > 0) {
      api.rateLimit.remaining--;
      return error(429, "RATE_LIMITED", "slow down", { "retry-after": api.rateLimit.retryAfter });
    }
    const upload = /^\/uploads\/([^/]+)$/.exec(path);
    if (upload !== null && req.method === "PUT") {
      const up = api.uploads.get(upload[1] ?? "");
      if (up === undefined) return error(404, "RESOURCE_NOT_FOUND", "no such upload");
      up.bytes = body;
      up.putHeaders = req.headers;
      res.writeHead(200).end();
      return;
    }
    const download = /^\/downloads\/([^/]+)$/.exec(path);
    const a = download === null ? undefined : api.artifacts.find((x) => x.id === download[1]);
    if (a !== undefined && req.method === "GET") {
      const bytes = a.served ?? a.content;
      res.writeHead(200, { "content-type": "application/octet-stream", "content-length": String(bytes.length) });
      res.end(bytes);
      return;
    }
    return error(404, "ROUTE_NOT_FOUND", `no route ${req.method} ${path}`);
  }

  const handler = connectNodeAdapter({
    routes: (router: ConnectRouter) => {
      router.service(CustomerService, customer);
      router.service(AdminService, admin);
    },
    interceptors: [createErrorInterceptor(), record, gate],
    fallback: (req, res) => void transfers(req as http.IncomingMessage, res as http.ServerResponse),
  });
  const server = http.createServer(handler);
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return Object.assign(api, {
    url: base,
    close: () =>
      new Promise<void>((resolve, reject) => {
        server.closeAllConnections();
        server.close((err) => (err ? reject(err) : resolve()));
      }),
  });
}

/** The rpcs named `rpc` the fake saw, in order. */
export function callsOf(api: FakeApi, rpc: string): Call[] {
  return api.calls.filter((c) => c.rpc === rpc);
}

/** Buffered output of one run. */
export interface Captured {
  io: Io;
  out(): string;
  err(): string;
  /** What progress bars drew (only when created with `tty`). */
  bars(): string;
}

/**
 * An Io that keeps what is written. stderr is not a TTY, so no bars are drawn, unless `tty` is
 * set: then bars draw on a fake terminal whose output `bars()` returns.
 */
export function captureIo(options: { tty?: boolean } = {}): Captured {
  let out = "";
  let err = "";
  let bars = "";
  const progressStream = Object.assign(new PassThrough(), { isTTY: options.tty === true, columns: 200 });
  progressStream.on("data", (c: Buffer) => (bars += c.toString()));
  return {
    io: {
      stdout: (s) => void (out += s),
      stderr: (s) => void (err += s),
      progressStream,
      stderrIsTTY: options.tty === true,
    },
    out: () => out,
    err: () => err,
    bars: () => bars,
  };
}

/** Standard input with `text` on it; `tty` makes it a terminal whose typed line is `typed`. Prompts are recorded. */
export function scriptedStdin(text = "", options: { tty?: boolean; typed?: string } = {}): Stdin & { prompts: string[] } {
  const prompts: string[] = [];
  return {
    prompts,
    isTTY: options.tty === true,
    readAll: async () => text,
    readSecret: async (prompt) => {
      prompts.push(prompt);
      return options.typed ?? "";
    },
  };
}

/**
 * A home directory no test creates: with the environment's URL and key set, no command reads a
 * config file, and a test that wants one passes its own home or XDG_CONFIG_HOME.
 */
export const NO_HOME = path.join(tmpdir(), `gpuctl-test-no-home-${process.pid}`);

/** Deps of a gpuctl run against the fake. */
export function depsFor(api: FakeApi, cap: Captured, clock = instantClock()): CliDeps {
  return {
    env: { GPU_AGENT_URL: api.url, GPU_AGENT_API_KEY: API_KEY, GPU_AGENT_ADMIN_TOKEN: ADMIN_TOKEN },
    io: cap.io,
    stdin: scriptedStdin(),
    clock,
    randomUUID: () => "11111111-2222-4333-8444-555555555555",
    tmpDir: tmpdir(),
    homeDir: NO_HOME,
    hostname: "test-host",
    version: "0.0.0-test",
  };
}
