/**
 * An in-memory fake of just enough of the GPU-Agent REST contract for gpuctl
 * tests: signed-upload flow for datasets and packages, jobs whose status
 * follows a script per GET, artifacts with signed downloads, and the admin
 * calls. It records every request so tests can assert what the CLI sent.
 */
import { createHash } from "node:crypto";
import http from "node:http";
import type { AddressInfo } from "node:net";
import type { Clock } from "../../src/platform/clock.ts";
import type { CliDeps } from "../../src/cli/program.ts";
import type { Io } from "../../src/cli/output.ts";
import { PassThrough } from "node:stream";
import { tmpdir } from "node:os";

/** Credentials the fake accepts. */
export const API_KEY = "sk_test_fake";
/** Admin token the fake accepts. */
export const ADMIN_TOKEN = "admin-secret";

/** A request as the fake saw it. */
export interface Seen {
  method: string;
  path: string;
  headers: http.IncomingHttpHeaders;
  body: Buffer;
}

/** A job the fake serves: GET n returns `script[min(n, last)]`. */
export interface FakeJob {
  id: string;
  body: Record<string, unknown>;
  script: { status: string; progress: number; metrics?: Record<string, number>; error?: string }[];
  gets: number;
}

/** An artifact the fake serves; `served` lets a test corrupt the bytes. */
export interface FakeArtifact {
  id: string;
  job_id: string;
  name: string;
  content: Buffer;
  served?: Buffer;
}

interface Upload {
  id: string;
  kind: "dataset" | "package";
  record: Record<string, unknown>;
  bytes?: Buffer;
  putHeaders?: http.IncomingHttpHeaders;
}

/** The fake and its knobs. */
export interface FakeApi {
  url: string;
  seen: Seen[];
  uploads: Map<string, Upload>;
  jobs: Map<string, FakeJob>;
  artifacts: FakeArtifact[];
  /** Answer the next N requests with 429 and this Retry-After. */
  rateLimit: { remaining: number; retryAfter: string };
  /** Script given to jobs created from now on. */
  nextJobScript: FakeJob["script"];
  /** Force the next request to fail with this envelope. */
  failNext?: { status: number; code: string; message: string };
  close(): Promise<void>;
}

function sha256(b: Buffer): string {
  return createHash("sha256").update(b).digest("hex");
}

function send(res: http.ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { "content-type": "application/json", "x-request-id": "req_fake", ...headers });
  res.end(text);
}

function error(res: http.ServerResponse, status: number, code: string, message: string): void {
  send(res, status, { error: { code, message, request_id: `req_${code.toLowerCase()}` } });
}

/** Starts the fake on 127.0.0.1, port 0. */
export async function startFakeApi(): Promise<FakeApi> {
  let counter = 0;
  const newId = (prefix: string) => `${prefix}_${++counter}`;
  const api: Omit<FakeApi, "url" | "close"> = {
    seen: [],
    uploads: new Map(),
    jobs: new Map(),
    artifacts: [],
    rateLimit: { remaining: 0, retryAfter: "1" },
    nextJobScript: [
      { status: "queued", progress: 0 },
      { status: "running", progress: 0.5, metrics: { epoch: 1, loss: 0.5 } },
      { status: "completed", progress: 1, metrics: { epoch: 2, loss: 0.25 } },
    ],
  };
  let base = "";

  const server = http.createServer(async (req, res) => {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const body = Buffer.concat(chunks);
    const url = new URL(req.url ?? "/", base);
    const path = url.pathname;
    api.seen.push({ method: req.method ?? "", path: `${path}${url.search}`, headers: req.headers, body });

    if (api.rateLimit.remaining > 0) {
      api.rateLimit.remaining--;
      res.setHeader("retry-after", api.rateLimit.retryAfter);
      return error(res, 429, "RATE_LIMITED", "slow down");
    }
    if (api.failNext !== undefined) {
      const f = api.failNext;
      delete api.failNext;
      return error(res, f.status, f.code, f.message);
    }

    // Signed URLs: no API key needed.
    let m = /^\/uploads\/([^/]+)$/.exec(path);
    if (m !== null && req.method === "PUT") {
      const up = api.uploads.get(m[1] ?? "");
      if (up === undefined) return error(res, 404, "NOT_FOUND", "no such upload");
      up.bytes = body;
      up.putHeaders = req.headers;
      res.writeHead(200).end();
      return;
    }
    m = /^\/downloads\/([^/]+)$/.exec(path);
    if (m !== null && req.method === "GET") {
      const a = api.artifacts.find((x) => x.id === m?.[1]);
      if (a === undefined) return error(res, 404, "ARTIFACT_NOT_FOUND", "no such artifact");
      res.writeHead(200, { "content-type": "application/octet-stream" });
      res.end(a.served ?? a.content);
      return;
    }

    if (path.startsWith("/api/v1/admin/")) {
      if (req.headers.authorization !== `Bearer ${ADMIN_TOKEN}`) return error(res, 401, "ADMIN_AUTH_REQUIRED", "admin token required");
      const json = body.length > 0 ? (JSON.parse(body.toString()) as Record<string, unknown>) : {};
      if (path === "/api/v1/admin/customers" && req.method === "POST") {
        const id = newId("cus");
        return send(res, 201, {
          customer_id: id,
          api_key: "sk_test_new",
          customer: { id, email: json["email"], credits_balance: String(json["credits"]) },
        });
      }
      m = /^\/api\/v1\/admin\/customers\/([^/]+)\/credits$/.exec(path);
      if (m !== null) return send(res, 200, { ledger_entry_id: "led_1", credits_balance: String(1000 + Number(json["amount"])) });
      if (path === "/api/v1/admin/enrollment-tokens") {
        return send(res, 201, { token: "enr_abc", expires_at: "2026-01-01T01:00:00Z", trust_level: json["trust_level"] });
      }
      if (path === "/api/v1/admin/nodes") {
        return send(res, 200, {
          data: [{ id: "node_1", hostname: "box", trust_level: "verified", state: "online", gpus: [{ name: "RTX 4090", vram_mb: 24564 }] }],
          page: { limit: 100, has_more: false },
        });
      }
      if (path === "/api/v1/admin/scheduler") {
        return send(res, 200, { replica_id: "r1", is_leader: true, leader_id: "r1", term: "3", queues: [{ kind: "gpu", ready: 2 }] });
      }
      return error(res, 404, "NOT_FOUND", `no route ${path}`);
    }

    if (req.headers["x-api-key"] !== API_KEY) return error(res, 401, "API_KEY_INVALID", "X-API-Key not recognized");
    const json = body.length > 0 ? (JSON.parse(body.toString()) as Record<string, unknown>) : {};

    m = /^\/api\/v1\/customer\/(datasets|training-packages)(?:\/([^/]+))?(\/finalize)?$/.exec(path);
    if (m !== null) {
      const kind = m[1] === "datasets" ? "dataset" : "package";
      const id = m[2];
      if (id === undefined && req.method === "POST") {
        const newIdStr = newId(kind === "dataset" ? "ds" : "pkg");
        const record: Record<string, unknown> = {
          id: newIdStr,
          name: json["name"],
          size_bytes: String(json["size_bytes"]),
          sha256: json["sha256"],
          status: "awaiting_upload",
          upload_url: `${base}/uploads/${newIdStr}`,
          ...(kind === "dataset" ? { format: json["format"] } : { entrypoint: json["entrypoint"] ?? "train.py" }),
        };
        api.uploads.set(newIdStr, { id: newIdStr, kind, record });
        return send(res, 201, record);
      }
      if (id === undefined) {
        const data = [...api.uploads.values()].filter((u) => u.kind === kind).map((u) => u.record);
        return send(res, 200, { data, page: { limit: 50, next_cursor: "", has_more: false } });
      }
      const up = api.uploads.get(id);
      if (up === undefined || up.kind !== kind) return error(res, 404, "NOT_FOUND", `${kind} ${id} not found`);
      if (m[3] !== undefined) {
        const bytes = up.bytes ?? Buffer.alloc(0);
        if (String(bytes.length) !== up.record["size_bytes"] || sha256(bytes) !== up.record["sha256"]) {
          return error(res, 400, "UPLOAD_VERIFICATION_FAILED", "size or sha256 mismatch");
        }
        const { upload_url: _dropped, ...rest } = up.record;
        up.record = { ...rest, status: "ready", finalized_at: "2026-01-01T00:00:00Z" };
        return send(res, 200, up.record);
      }
      return send(res, 200, up.record);
    }

    if (path === "/api/v1/customer/training-jobs" && req.method === "POST") {
      const job: FakeJob = { id: newId("job"), body: json, script: api.nextJobScript, gets: 0 };
      api.jobs.set(job.id, job);
      return send(res, 201, { id: job.id, ...json, status: "queued" });
    }
    if (path === "/api/v1/customer/training-jobs" && req.method === "GET") {
      const data = [...api.jobs.values()].map((j) => ({ id: j.id, name: j.body["name"], status: "queued" }));
      return send(res, 200, { data, page: { limit: 50, has_more: false } });
    }
    m = /^\/api\/v1\/customer\/training-jobs\/([^/]+)(\/.*)?$/.exec(path);
    if (m !== null) {
      const job = api.jobs.get(m[1] ?? "");
      if (job === undefined) return error(res, 404, "JOB_NOT_FOUND", "Job id absent or not yours");
      const rest = m[2] ?? "";
      if (rest === "" && req.method === "GET") {
        const step = job.script[Math.min(job.gets, job.script.length - 1)];
        job.gets++;
        return send(res, 200, { id: job.id, ...job.body, ...step });
      }
      if (rest === "/cancel") return send(res, 200, { id: job.id, ...job.body, status: "cancelled" });
      if (rest === "/compute-units") {
        return send(res, 200, {
          data: [{ id: "cu_1", job_id: job.id, name: "train", kind: "gpu", status: "running", progress: 0.5 }],
          page: { limit: 100, has_more: false },
        });
      }
      if (rest === "/artifacts") {
        const data = api.artifacts
          .filter((a) => a.job_id === job.id)
          .map((a) => ({ id: a.id, job_id: a.job_id, name: a.name, kind: "other", size_bytes: String(a.content.length), sha256: sha256(a.content) }));
        return send(res, 200, { data, page: { limit: 100, has_more: false } });
      }
      const dm = /^\/artifacts\/([^/]+)\/download-url$/.exec(rest);
      if (dm !== null && req.method === "POST") {
        if (!api.artifacts.some((a) => a.id === dm[1])) return error(res, 404, "ARTIFACT_NOT_FOUND", "no such artifact");
        return send(res, 200, { download_url: `${base}/downloads/${dm[1]}`, expires_at: "2026-01-01T00:15:00Z", expires_in_seconds: 900 });
      }
    }
    return error(res, 404, "NOT_FOUND", `no route ${req.method} ${path}`);
  });

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

/** Buffered output of one run. */
export interface Captured {
  io: Io;
  out(): string;
  err(): string;
}

/** An Io that keeps what is written; stderr is not a TTY, so no bars are drawn. */
export function captureIo(): Captured {
  let out = "";
  let err = "";
  return {
    io: {
      stdout: (s) => void (out += s),
      stderr: (s) => void (err += s),
      progressStream: new PassThrough(),
      stderrIsTTY: false,
    },
    out: () => out,
    err: () => err,
  };
}

/** A clock whose sleeps return at once and are recorded, so retries and polls cost no time. */
export function instantClock(): Clock & { sleeps: number[] } {
  const sleeps: number[] = [];
  let now = Date.UTC(2026, 0, 1);
  return {
    sleeps,
    now: () => now,
    sleep: async (ms) => {
      sleeps.push(ms);
      now += ms;
    },
  };
}

/** Deps of a gpuctl run against the fake. */
export function depsFor(api: FakeApi, cap: Captured, clock = instantClock()): CliDeps {
  return {
    env: { GPU_AGENT_URL: api.url, GPU_AGENT_API_KEY: API_KEY, GPU_AGENT_ADMIN_TOKEN: ADMIN_TOKEN },
    io: cap.io,
    clock,
    randomUUID: () => "11111111-2222-4333-8444-555555555555",
    tmpDir: tmpdir(),
  };
}
