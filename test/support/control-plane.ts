/**
 * Real processes for integration tests: a control plane on port 0 (embedded
 * PGlite or a throwaway PostgreSQL database), node agents as real child
 * processes of cmd/agent.ts, and small REST helpers.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { createHash } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pino } from "pino";
import type { Logger } from "pino";
import type { ControlPlane } from "../../src/control-plane.ts";
import { startControlPlane } from "../../src/control-plane.ts";
import type { RequestLimitOptions } from "../../src/limits/request-limits.ts";
import type { WebhookDispatcherOptions } from "../../src/webhooks/dispatcher.ts";
import type { TelemetryOptions } from "../../src/telemetry/recorder.ts";
import type { Clock } from "../../src/platform/clock.ts";
import type { AgentsConfig, JobEventsConfig, LimitsConfig } from "../../src/platform/config.ts";
import { defaultAgents, defaultJobEvents, defaultLimits, defaultRates } from "../../src/platform/config.ts";
import { copyMigratedPGlite } from "./database-template.ts";
import { enrollReferenceNode } from "./fleet.ts";

const repoRoot = join(import.meta.dirname, "..", "..");

/** A control plane started for a test, with its temporary data directory. */
export interface TestControlPlane {
  plane: ControlPlane;
  url: string;
  adminToken: string;
  dataDir: string;
  stop(): Promise<void>;
}

/** Options of {@link startTestControlPlane}; everything optional, defaults as in production. */
export interface TestControlPlaneOptions {
  databaseUrl?: string;
  clock?: Clock;
  agents?: Partial<AgentsConfig>;
  limits?: Partial<LimitsConfig>;
  requestLimit?: RequestLimitOptions;
  webhooks?: WebhookDispatcherOptions;
  telemetry?: Partial<TelemetryOptions>;
  /** Where logs go; default silent (or TEST_LOG_LEVEL). */
  logger?: Logger;
  /** An existing data directory to start on (a restart); default a fresh temporary one. stop() removes it either way. */
  dataDir?: string;
  /** Live job events (heartbeat, watches per customer); default the production values. */
  events?: Partial<JobEventsConfig>;
  /** The replica's id; replicas sharing one PostgreSQL need different ones to hear each other on the bus. */
  replicaId?: string;
  /**
   * Enroll the never-connected reference node (./fleet.ts), so jobs are admitted before any agent is
   * started; default true. False for tests of admission itself (NO_CAPABLE_NODE).
   */
  referenceNode?: boolean;
  /** Time between the leader's placement cycles when nothing wakes it; default 200 ms. */
  placementIntervalMs?: number;
  /**
   * Embedded database on a fresh data directory only: start it empty (initdb and every migration, as a
   * first start in production does) instead of from a copy of a migrated one (./database-template.ts); default false.
   */
  emptyDatabase?: boolean;
}

/**
 * Starts a control plane on a free loopback port (on the system clock unless `clock` is given).
 * `agents` overrides agent timings (heartbeat, unreachable grace, ack timeout, attempts).
 */
export async function startTestControlPlane(options: TestControlPlaneOptions = {}): Promise<TestControlPlane> {
  const dataDir = options.dataDir ?? (await mkdtemp(join(tmpdir(), "gpu-agent-cp-")));
  // Where src/control-plane.ts keeps the embedded database; a copy there is what it would have migrated to.
  if (options.dataDir === undefined && options.databaseUrl === undefined && options.emptyDatabase !== true) {
    await copyMigratedPGlite(join(dataDir, "pgdata"));
  }
  const adminToken = "test-admin-token-" + createHash("sha256").update(dataDir).digest("hex").slice(0, 16);
  const plane = await startControlPlane(
    {
      host: "127.0.0.1",
      port: 0,
      publicUrl: "http://127.0.0.1:0",
      dataDir,
      databaseUrl: options.databaseUrl,
      etcdEndpoints: [],
      replicaId: options.replicaId ?? "test-replica",
      adminToken,
      blobDir: join(dataDir, "blobs"),
      placementIntervalMs: options.placementIntervalMs ?? 200,
      limits: { ...defaultLimits, ...options.limits },
      rates: defaultRates,
      agents: { ...defaultAgents, heartbeatIntervalSeconds: 1, ...options.agents },
      build: "test",
      ...(options.events === undefined ? {} : { events: { ...defaultJobEvents, ...options.events } }),
    },
    {
      logger: options.logger ?? pino({ level: process.env["TEST_LOG_LEVEL"] ?? "silent" }),
      ...(options.clock === undefined ? {} : { clock: options.clock }),
      ...(options.requestLimit === undefined ? {} : { requestLimit: options.requestLimit }),
      ...(options.webhooks === undefined ? {} : { webhooks: options.webhooks }),
      ...(options.telemetry === undefined ? {} : { telemetry: options.telemetry }),
    },
  );
  if (options.referenceNode ?? true) await enrollReferenceNode(plane.deps.db);
  return {
    plane,
    url: plane.url,
    adminToken,
    dataDir,
    async stop() {
      await plane.close();
      await rm(dataDir, { recursive: true, force: true });
    },
  };
}

/** A node agent running as a real child process. */
export interface TestAgent {
  nodeId: string;
  /** The agent process's pid. */
  pid: number;
  /** The agent's data directory (unit work dirs are under `work/`). */
  dataDir: string;
  output(): string;
  stop(): Promise<void>;
  /** SIGKILL: the agent dies without a word, as with a power cut (its units' processes are not touched). */
  kill9(): Promise<void>;
  /** Sends a signal to the agent process only (e.g. SIGSTOP / SIGCONT). */
  signal(sig: NodeJS.Signals): void;
}

function collect(child: ChildProcess): () => string {
  const chunks: Buffer[] = [];
  child.stdout?.on("data", (c: Buffer) => chunks.push(c));
  child.stderr?.on("data", (c: Buffer) => chunks.push(c));
  return () => Buffer.concat(chunks).toString("utf8");
}

/** Enrolls and runs `cmd/agent.ts` against `url` with a token of `trustLevel`; `runArgs` are more `gpu-agent run` flags. */
export async function startTestAgent(
  cp: TestControlPlane,
  options: { trustLevel: "community" | "verified" | "controlled"; devGpuMib?: number; env?: Record<string, string>; maxUnits?: number; runArgs?: readonly string[] },
): Promise<TestAgent> {
  const token = (await adminRequest(cp, "POST", "/api/v1/admin/enrollment-tokens", { trust_level: options.trustLevel }))["token"] as string;
  const dataDir = await mkdtemp(join(tmpdir(), "gpu-agent-node-"));
  const agentCmd = join(repoRoot, "cmd", "agent.ts");
  const devGpu = options.devGpuMib === undefined ? [] : ["--dev-gpu", String(options.devGpuMib)];
  const env = { ...process.env, LOG_LEVEL: "debug", GPU_AGENT_DEV_GPU_MIB: "", ...options.env };
  const enroll = spawn(process.execPath, [agentCmd, "enroll", "--url", cp.url, "--token", token, "--data-dir", dataDir, ...devGpu], { env });
  const enrollOutput = collect(enroll);
  const code = await new Promise<number | null>((resolve) => enroll.on("exit", resolve));
  if (code !== 0) throw new Error(`agent enroll failed (${code}):\n${enrollOutput()}`);
  const nodeId = (JSON.parse(enrollOutput().split("\n").find((l) => l.startsWith("{\"node_id\"")) ?? "{}") as { node_id: string }).node_id;
  const maxUnits = options.maxUnits === undefined ? [] : ["--max-units", String(options.maxUnits)];
  const run = spawn(process.execPath, [agentCmd, "run", "--data-dir", dataDir, ...devGpu, ...maxUnits, "--grace-seconds", "1", ...(options.runArgs ?? [])], { env });
  const output = collect(run);
  const running = () => run.exitCode === null && run.signalCode === null;
  return {
    nodeId,
    pid: run.pid ?? -1,
    dataDir,
    output,
    async kill9() {
      if (!running()) return;
      const exited = new Promise((resolve) => run.on("exit", resolve));
      run.kill("SIGKILL");
      await exited;
    },
    signal(sig) {
      if (running()) run.kill(sig);
    },
    async stop() {
      if (running()) {
        // A stopped agent must run again to hear SIGTERM.
        run.kill("SIGCONT");
        const exited = new Promise((resolve) => run.on("exit", resolve));
        run.kill("SIGTERM");
        await exited;
      }
      await rm(dataDir, { recursive: true, force: true });
    },
  };
}

/** A JSON response with its status. */
export interface JsonResponse {
  status: number;
  headers: Headers;
  body: Record<string, unknown>;
}

/** Calls the REST API. */
export async function request(
  cp: TestControlPlane,
  method: string,
  path: string,
  options: { body?: unknown; headers?: Record<string, string> } = {},
): Promise<JsonResponse> {
  const res = await fetch(cp.url + path, {
    method,
    headers: { ...(options.body === undefined ? {} : { "content-type": "application/json" }), ...options.headers },
    ...(options.body === undefined ? {} : { body: JSON.stringify(options.body) }),
  });
  const text = await res.text();
  return { status: res.status, headers: res.headers, body: text === "" ? {} : (JSON.parse(text) as Record<string, unknown>) };
}

/** Calls an admin endpoint; throws unless 2xx. */
export async function adminRequest(cp: TestControlPlane, method: string, path: string, body?: unknown): Promise<Record<string, unknown>> {
  const res = await request(cp, method, path, { body, headers: { authorization: `Bearer ${cp.adminToken}` } });
  if (res.status >= 300) throw new Error(`${method} ${path} → ${res.status} ${JSON.stringify(res.body)}`);
  return res.body;
}

/** Creates a customer and returns its API key. */
export async function createCustomer(cp: TestControlPlane, credits = 10_000): Promise<{ customerId: string; apiKey: string }> {
  const email = `customer-${Math.random().toString(36).slice(2)}@example.com`;
  const body = await adminRequest(cp, "POST", "/api/v1/admin/customers", { email, password: "correct horse battery", credits });
  return { customerId: body["customer_id"] as string, apiKey: body["api_key"] as string };
}

/** Creates, uploads and finalizes a dataset or package; returns the finalized resource. */
export async function uploadResource(
  cp: TestControlPlane,
  apiKey: string,
  kind: "datasets" | "training-packages",
  name: string,
  bytes: Buffer,
  extra: Record<string, unknown> = {},
): Promise<Record<string, unknown>> {
  const sha256 = createHash("sha256").update(bytes).digest("hex");
  const created = await request(cp, "POST", `/api/v1/customer/${kind}`, {
    body: { name, size_bytes: bytes.length, sha256, ...extra },
    headers: { "x-api-key": apiKey },
  });
  if (created.status !== 201) throw new Error(`create ${kind}: ${created.status} ${JSON.stringify(created.body)}`);
  const put = await fetch(created.body["upload_url"] as string, { method: "PUT", body: bytes, headers: { "content-type": "application/octet-stream" } });
  if (put.status !== 200) throw new Error(`PUT upload_url: ${put.status} ${await put.text()}`);
  const finalized = await request(cp, "POST", `/api/v1/customer/${kind}/${created.body["id"] as string}/finalize`, {
    body: {},
    headers: { "x-api-key": apiKey },
  });
  if (finalized.status !== 200) throw new Error(`finalize ${kind}: ${finalized.status} ${JSON.stringify(finalized.body)}`);
  return finalized.body;
}

/** Polls until `check` returns a value or the timeout passes (integration tests wait on real processes). */
export async function waitFor<T>(what: string, check: () => Promise<T | undefined>, timeoutMs: number, onTimeout?: () => string): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}${onTimeout === undefined ? "" : `\n${onTimeout()}`}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}
