// npm run bench:agents — N simulated node agents in this process hold Session
// streams (raw HTTP/2 + gRPC framing, one connection per agent, as real nodes
// have) against one control-plane process (`node cmd/scheduler.ts`, embedded
// database). Measures the scheduler's resident memory per stream, the
// heartbeats it acknowledges per second, and the time from a job's submission
// to the Assign of its first unit arriving on a node's stream. Prints one JSON
// line. BENCH_AGENTS (default 10000, the figure the README quotes), BENCH_JOBS (default 100),
// BENCH_HEARTBEAT_SECONDS (default 5), BENCH_WINDOW_S (default 10),
// BENCH_CONNECT_CONCURRENCY (default 64: agents saying Hello at once),
// BENCH_WARMUP_JOBS (default 5: jobs before the measured ones, reported apart).
// Database: BENCH_DATABASE_URL (an existing PostgreSQL, used as is), or
// BENCH_POSTGRES=1 (a throwaway server from test/support/postgres.ts), else the
// embedded PGlite. rss figures are the scheduler process's, never this one's.
import { type ChildProcess, spawn } from "node:child_process";
import { createHash, randomUUID } from "node:crypto";
import { readFileSync } from "node:fs";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import http2 from "node:http2";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import type { SessionRequest, SessionResponse } from "../src/gen/gpuagent/agent/v1/agent_pb.ts";
import {
  AcceptedSchema,
  EnrollRequestSchema,
  EnrollResponseSchema,
  SessionRequestSchema,
  SessionResponseSchema,
} from "../src/gen/gpuagent/agent/v1/agent_pb.ts";
import { zipDirectory } from "../src/cli/files.ts";
import type { TestPostgres } from "../test/support/postgres.ts";
import { startPostgres } from "../test/support/postgres.ts";

const root = join(import.meta.dirname, "..");
const agentsWanted = Number(process.env["BENCH_AGENTS"] ?? 10_000);
const jobsWanted = Number(process.env["BENCH_JOBS"] ?? 100);
const heartbeatSeconds = Number(process.env["BENCH_HEARTBEAT_SECONDS"] ?? 5);
const windowS = Number(process.env["BENCH_WINDOW_S"] ?? 10);
const connectConcurrency = Number(process.env["BENCH_CONNECT_CONCURRENCY"] ?? 64);
const warmupJobs = Number(process.env["BENCH_WARMUP_JOBS"] ?? 5);
const servicePath = "/gpuagent.agent.v1.AgentService";

function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = createServer().listen(0, "127.0.0.1", () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

/** Resident memory of a process in MiB, from /proc. */
function rssMb(pid: number): number {
  const kb = Number(/^VmRSS:\s+(\d+)/m.exec(readFileSync(`/proc/${pid}/status`, "utf8"))?.[1] ?? 0);
  return kb / 1024;
}

/** gRPC length-prefixed message. */
function frame(bytes: Uint8Array): Buffer {
  const out = Buffer.alloc(5 + bytes.length);
  out.writeUInt32BE(bytes.length, 1);
  out.set(bytes, 5);
  return out;
}

/** Splits a byte stream into gRPC messages. */
function deframer(onMessage: (bytes: Uint8Array) => void): (chunk: Buffer) => void {
  let buffer: Buffer = Buffer.alloc(0);
  return (chunk) => {
    buffer = buffer.length === 0 ? chunk : Buffer.concat([buffer, chunk]);
    while (buffer.length >= 5) {
      const length = buffer.readUInt32BE(1);
      if (buffer.length < 5 + length) return;
      onMessage(buffer.subarray(5, 5 + length));
      buffer = buffer.subarray(5 + length);
    }
  };
}

/** The scheduler's /metrics text, read once for every figure taken at one moment. */
async function scrape(base: string): Promise<string> {
  return (await fetch(`${base}/metrics`)).text();
}

/** Sum and count of the scheduler's placement cycles (gpuagent_placement_cycle_duration_seconds, committed). */
function placementCycles(text: string): { sum: number; count: number } {
  const read = (suffix: string) =>
    Number(new RegExp(`^gpuagent_placement_cycle_duration_seconds_${suffix}\\{result="committed"\\}\\s+(\\S+)$`, "m").exec(text)?.[1] ?? 0);
  return { sum: read("sum"), count: read("count") };
}

const phases = ["snapshot", "plan", "commit", "dispatch", "sweep"] as const;

/** Sum and count per phase of the leader loop (gpuagent_scheduler_phase_duration_seconds). */
function schedulerPhases(text: string): Record<string, { sum: number; count: number }> {
  const read = (phase: string, suffix: string) =>
    Number(new RegExp(`^gpuagent_scheduler_phase_duration_seconds_${suffix}\\{phase="${phase}"\\}\\s+(\\S+)$`, "m").exec(text)?.[1] ?? 0);
  return Object.fromEntries(phases.map((p) => [p, { sum: read(p, "sum"), count: read(p, "count") }]));
}

/** The scheduler's garbage-collection time by kind (seconds so far). */
function gcSeconds(text: string): Record<string, number> {
  const gc: Record<string, number> = {};
  for (const m of text.matchAll(/^gpuagent_nodejs_gc_duration_seconds_sum\{kind="(\w+)"\}\s+(\S+)$/gm)) gc[m[1]!] = Number(m[2]);
  return gc;
}

/** Heap and external memory of the scheduler from its own /metrics (prom-client default metrics), in MiB. */
function schedulerHeap(text: string): { heapUsedMb: number; externalMb: number } {
  const read = (name: string) => Number(new RegExp(`^${name}(?:\\{[^}]*\\})?\\s+(\\S+)$`, "m").exec(text)?.[1] ?? Number.NaN) / (1024 * 1024);
  return { heapUsedMb: read("gpuagent_nodejs_heap_size_used_bytes"), externalMb: read("gpuagent_nodejs_external_memory_bytes") };
}

async function json(url: string, init: RequestInit): Promise<Record<string, unknown>> {
  const res = await fetch(url, init);
  const body = (await res.json()) as Record<string, unknown>;
  if (!res.ok) throw new Error(`${init.method ?? "GET"} ${url}: ${res.status} ${JSON.stringify(body)}`);
  return body;
}

/** Runs `fn` over `items` with at most `limit` in flight. */
async function pool<T, R>(items: readonly T[], limit: number, fn: (item: T, i: number) => Promise<R>): Promise<R[]> {
  const out: R[] = new Array(items.length);
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(limit, items.length) }, async () => {
      while (next < items.length) {
        const i = next++;
        out[i] = await fn(items[i]!, i);
      }
    }),
  );
  return out;
}

function percentile(values: number[], p: number): number {
  if (values.length === 0) return 0;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!;
}

const capabilities = {
  cpuCores: 8,
  memoryMb: 16_384,
  diskFreeMb: 100_000,
  gpus: [{ index: 0, name: "bench-gpu", vramMb: 24_576, uuid: "", declared: true }],
  os: "linux",
  arch: "x64",
  pythonVersion: "3.11",
  hostname: "bench",
  agentVersion: "bench",
};

/** Enroll over a short-lived HTTP/2 connection (a unary gRPC call). */
function enroll(base: string, token: string): Promise<{ nodeId: string; credential: string }> {
  return new Promise((resolve, reject) => {
    const session = http2.connect(base);
    session.on("error", reject);
    const req = session.request({ ":method": "POST", ":path": `${servicePath}/Enroll`, "content-type": "application/grpc", te: "trailers" });
    let result: { nodeId: string; credential: string } | undefined;
    req.on("error", reject);
    req.on("data", deframer((bytes) => {
      const res = fromBinary(EnrollResponseSchema, bytes);
      result = { nodeId: res.nodeId, credential: res.nodeCredential };
    }));
    req.on("trailers", (trailers) => {
      if (trailers["grpc-status"] !== "0") reject(new Error(`enroll: grpc-status ${String(trailers["grpc-status"])} ${String(trailers["grpc-message"])}`));
    });
    req.on("close", () => {
      session.close();
      if (result !== undefined) resolve(result);
      else reject(new Error("enroll: no response"));
    });
    req.end(frame(toBinary(EnrollRequestSchema, create(EnrollRequestSchema, { token, capabilities }))));
  });
}

/** One simulated agent: a Session stream that says Hello, acks, heartbeats and accepts. */
class SimAgent {
  heartbeatsAcked = 0;
  private seq = 0n;
  private readonly heartbeatSeqs = new Set<bigint>();
  private stream: http2.ClientHttp2Stream | undefined;
  private session: http2.ClientHttp2Session | undefined;
  private timer: NodeJS.Timeout | undefined;
  readonly nodeId: string;
  private readonly credential: string;
  private readonly onAssign: (jobId: string, at: number) => void;
  constructor(nodeId: string, credential: string, onAssign: (jobId: string, at: number) => void) {
    this.nodeId = nodeId;
    this.credential = credential;
    this.onAssign = onAssign;
  }

  private send(body: SessionRequest["body"], seq?: bigint): void {
    const s = seq ?? ++this.seq;
    this.stream?.write(frame(toBinary(SessionRequestSchema, create(SessionRequestSchema, { seq: s, body }))));
  }

  open(base: string): Promise<void> {
    return new Promise((resolve, reject) => {
      this.session = http2.connect(base);
      this.session.on("error", reject);
      const stream = this.session.request({
        ":method": "POST",
        ":path": `${servicePath}/Session`,
        "content-type": "application/grpc",
        te: "trailers",
        authorization: `Bearer ${this.credential}`,
      });
      this.stream = stream;
      stream.on("error", reject);
      stream.on("data", deframer((bytes) => {
        const message: SessionResponse = fromBinary(SessionResponseSchema, bytes);
        if (message.seq > 0n) this.send({ case: "ack", value: { $typeName: "gpuagent.agent.v1.Ack", seq: message.seq } }, 0n);
        switch (message.body.case) {
          case "welcome": {
            const interval = (message.body.value.heartbeatIntervalSeconds || 10) * 1000;
            // Spread the fleet's heartbeats over the interval, as independent homes would be.
            setTimeout(() => {
              this.timer = setInterval(() => this.heartbeat(), interval);
              this.timer.unref();
            }, Math.random() * interval).unref();
            resolve();
            break;
          }
          case "ack":
            if (this.heartbeatSeqs.delete(message.body.value.seq)) this.heartbeatsAcked++;
            break;
          case "assign": {
            const a = message.body.value;
            this.onAssign(a.jobId, performance.now());
            this.send({ case: "accepted", value: create(AcceptedSchema, { assignmentId: a.assignmentId, ...(a.unit === undefined ? {} : { unit: a.unit }) }) });
            break;
          }
          default:
            break;
        }
      }));
      this.send({ case: "hello", value: { $typeName: "gpuagent.agent.v1.Hello", protocolVersion: 1, nodeId: this.nodeId, capabilities: { $typeName: "gpuagent.agent.v1.Capabilities", maxUnits: 0, ...capabilities, gpus: capabilities.gpus.map((g) => ({ $typeName: "gpuagent.agent.v1.Gpu" as const, computeCapability: "", driverVersion: "", cudaVersion: "", ...g })) }, running: [] } });
    });
  }

  private heartbeat(): void {
    const seq = ++this.seq;
    this.heartbeatSeqs.add(seq);
    this.send({ case: "heartbeat", value: { $typeName: "gpuagent.agent.v1.Heartbeat", diskFreeMb: 100_000, gpus: [], running: [] } }, seq);
  }

  close(): void {
    if (this.timer !== undefined) clearInterval(this.timer);
    this.stream?.close();
    this.session?.close();
  }
}

const dataDir = await mkdtemp(join(tmpdir(), "bench-agents-"));
const adminToken = randomUUID() + randomUUID();
const port = await freePort();
// A throwaway PostgreSQL only when asked; its own memory is not the scheduler's and is not counted.
const throwaway: TestPostgres | undefined = process.env["BENCH_DATABASE_URL"] ? undefined : process.env["BENCH_POSTGRES"] === "1" ? await startPostgres() : undefined;
const databaseUrl = process.env["BENCH_DATABASE_URL"] || throwaway?.url;
const database = databaseUrl === undefined ? "embedded (PGlite)" : throwaway === undefined ? "PostgreSQL (BENCH_DATABASE_URL)" : "PostgreSQL (throwaway)";
const schedulerEnv: NodeJS.ProcessEnv = { ...process.env };
delete schedulerEnv["DATABASE_URL"];
if (databaseUrl !== undefined) schedulerEnv["DATABASE_URL"] = databaseUrl;
// Started as `npm run scheduler` starts it (and the chart): with the node flags of that script.
const schedulerScript = (JSON.parse(readFileSync(join(root, "package.json"), "utf8")) as { scripts: Record<string, string> }).scripts["scheduler"] ?? "node cmd/scheduler.ts";
const schedulerArgs = schedulerScript.split(" ").slice(1).map((arg) => (arg.endsWith(".ts") ? join(root, arg) : arg));
const scheduler: ChildProcess = spawn(process.execPath, schedulerArgs, {
  env: {
    ...schedulerEnv,
    PORT: String(port),
    GPU_AGENT_DATA_DIR: dataDir,
    GPU_AGENT_ADMIN_TOKEN: adminToken,
    LOG_LEVEL: "warn",
    GPU_AGENT_HEARTBEAT_SECONDS: String(heartbeatSeconds),
    GPU_AGENT_LIMIT_JOBS_PER_MINUTE: "1000000",
    GPU_AGENT_LIMIT_ACTIVE_JOBS: "1000000",
    GPU_AGENT_LIMIT_UNITS_PER_DAY: "100000000",
    GPU_AGENT_LIMIT_REQUESTS_PER_MINUTE: "100000000",
    // Every simulated agent connects from 127.0.0.1: a cap above their number, with room for enrollment and admin calls.
    GPU_AGENT_MAX_CONNECTIONS_PER_ADDRESS: String(agentsWanted + 1000),
    GPU_AGENT_MAX_STREAMS_PER_ADDRESS: String(2 * agentsWanted + 1000),
  },
  stdio: ["ignore", "ignore", "inherit"],
});
const agents: SimAgent[] = [];
let enrollRetries = 0;
try {
  const base = `http://127.0.0.1:${port}`;
  for (let i = 0; ; i++) {
    if (await fetch(`${base}/readyz`).then((r) => r.ok, () => false)) break;
    if (i > 600) throw new Error("the scheduler did not become ready");
    await new Promise((r) => setTimeout(r, 100));
  }
  const admin = { authorization: `Bearer ${adminToken}`, "content-type": "application/json" };

  // Enrollment: one-time tokens from the admin API, exchanged over AgentService.Enroll.
  const identities = await pool(Array.from({ length: agentsWanted }), 16, async () => {
    // A loaded scheduler may reset a connection now and then; a real agent retries its enrollment, so does this one.
    for (let attempt = 1; ; attempt++) {
      const token = (await json(`${base}/api/v1/admin/enrollment-tokens`, { method: "POST", headers: admin, body: JSON.stringify({ trust_level: "controlled" }) }))["token"] as string;
      try {
        return await enroll(base, token);
      } catch (err) {
        if (attempt >= 3) throw err;
        enrollRetries++;
      }
    }
  });

  // A customer, its dataset and package, for the assignment latency.
  const customer = await json(`${base}/api/v1/admin/customers`, { method: "POST", headers: admin, body: JSON.stringify({ email: "bench@example.com", password: "bench-password", credits: 1_000_000_000 }) });
  const key = customer["api_key"] as string;
  const upload = async (kind: string, bytes: Buffer) => {
    const created = await json(`${base}/api/v1/customer/${kind}`, {
      method: "POST",
      headers: { "x-api-key": key, "content-type": "application/json" },
      body: JSON.stringify({ name: "bench", size_bytes: bytes.length, sha256: createHash("sha256").update(bytes).digest("hex") }),
    });
    await fetch(created["upload_url"] as string, { method: "PUT", body: bytes });
    await json(`${base}/api/v1/customer/${kind}/${created["id"] as string}/finalize`, { method: "POST", headers: { "x-api-key": key, "content-type": "application/json" }, body: "{}" });
    return created["id"] as string;
  };
  const datasetId = await upload("datasets", await readFile(join(root, "examples", "tiny-mlp", "dataset.csv")));
  await zipDirectory(join(root, "examples", "tiny-mlp", "package"), join(dataDir, "package.zip"));
  const packageId = await upload("training-packages", await readFile(join(dataDir, "package.zip")));

  await new Promise((r) => setTimeout(r, 1000));
  const rssBefore = rssMb(scheduler.pid!);
  const heapBefore = schedulerHeap(await scrape(base));

  // Streams: Hello → Welcome for every agent, a few dozen at a time.
  // First Assign arrival per job; it may beat the 201 (the placer runs as soon as the job commits).
  const arrivals = new Map<string, number>();
  let notify: (() => void) | undefined;
  const onAssign = (jobId: string, at: number) => {
    if (!arrivals.has(jobId)) arrivals.set(jobId, at);
    notify?.();
  };
  const connectStarted = performance.now();
  await pool(identities, connectConcurrency, async (id) => {
    const agent = new SimAgent(id.nodeId, id.credential, onAssign);
    await agent.open(base);
    agents.push(agent);
  });
  const connectSeconds = (performance.now() - connectStarted) / 1000;
  const rssConnected = rssMb(scheduler.pid!);

  // Let every agent reach its heartbeat rhythm, then count acknowledged heartbeats over a window.
  await new Promise((r) => setTimeout(r, (heartbeatSeconds + 1) * 1000));
  const ackedBefore = agents.reduce((n, a) => n + a.heartbeatsAcked, 0);
  await new Promise((r) => setTimeout(r, windowS * 1000));
  const heartbeatsPerS = (agents.reduce((n, a) => n + a.heartbeatsAcked, 0) - ackedBefore) / windowS;
  const rssAfter = rssMb(scheduler.pid!);
  const heapAfter = schedulerHeap(await scrape(base));

  // Assignment latency: job submitted → Assign of its first unit on some agent's stream.
  const jobBody = JSON.stringify({ name: "bench", dataset_id: datasetId, training_package_id: packageId, required_vram_mb: 8000, max_runtime_seconds: 60 });
  const latencies: number[] = [];
  const createLatencies: number[] = [];
  /** Submits a job and waits for the Assign of its first unit; then cancels it. Milliseconds to the 201 and to the Assign. */
  const submitAndWait = async (): Promise<{ createMs: number; assignMs: number }> => {
    const started = performance.now();
    const job = await json(`${base}/api/v1/customer/training-jobs`, { method: "POST", headers: { "x-api-key": key, "content-type": "application/json" }, body: jobBody });
    const createMs = performance.now() - started;
    const jobId = job["id"] as string;
    const deadline = performance.now() + 10_000;
    while (!arrivals.has(jobId) && performance.now() < deadline) {
      await new Promise<void>((resolve) => {
        notify = resolve;
        setTimeout(resolve, 50);
      });
    }
    const assignMs = (arrivals.get(jobId) ?? Number.NaN) - started;
    await json(`${base}/api/v1/customer/training-jobs/${jobId}/cancel`, { method: "POST", headers: { "x-api-key": key, "content-type": "application/json" }, body: "{}" });
    return { createMs, assignMs };
  };
  // The first jobs fill the leader's caches (every online node's row, liveness, history): reported
  // apart as the cold start, not mixed into the steady state the percentiles describe.
  const warmup: number[] = [];
  for (let i = 0; i < warmupJobs; i++) warmup.push((await submitAndWait()).assignMs);
  const metricsBefore = await scrape(base);
  const cyclesBefore = placementCycles(metricsBefore);
  const phasesBefore = schedulerPhases(metricsBefore);
  const gcBefore = gcSeconds(metricsBefore);
  let missed = 0;
  for (let i = 0; i < jobsWanted; i++) {
    const { createMs, assignMs } = await submitAndWait();
    // A job that got no assignment is a failure of the run, never a sample left out of the percentiles.
    if (!Number.isFinite(assignMs)) {
      missed++;
      continue;
    }
    createLatencies.push(createMs);
    latencies.push(assignMs);
  }
  const metricsAfter = await scrape(base);
  const cyclesAfter = placementCycles(metricsAfter);
  const phasesAfter = schedulerPhases(metricsAfter);
  // Garbage-collection time spent during the job phase.
  const gcAfter = gcSeconds(metricsAfter);
  const gcMs = Object.fromEntries(Object.keys(gcAfter).map((kind) => [kind, Math.round(((gcAfter[kind] ?? 0) - (gcBefore[kind] ?? 0)) * 1000)]));
  const phaseMeanMs = Object.fromEntries(
    phases.map((p) => {
      const count = phasesAfter[p]!.count - phasesBefore[p]!.count;
      return [p, count === 0 ? 0 : Number((((phasesAfter[p]!.sum - phasesBefore[p]!.sum) * 1000) / count).toFixed(2))];
    }),
  );
  const cycleMeanMs = ((cyclesAfter.sum - cyclesBefore.sum) * 1000) / Math.max(1, cyclesAfter.count - cyclesBefore.count);
  const warmupMissed = warmup.filter((ms) => !Number.isFinite(ms)).length;

  process.stdout.write(
    `${JSON.stringify({
      agents: agents.length,
      rss_mb: Math.round(rssAfter),
      rss_before_mb: Math.round(rssBefore),
      rss_connected_mb: Math.round(rssConnected),
      kib_per_stream: Math.round(((rssAfter - rssBefore) * 1024) / Math.max(1, agents.length)),
      heap_kib_per_stream: Math.round(((heapAfter.heapUsedMb - heapBefore.heapUsedMb) * 1024) / Math.max(1, agents.length)),
      external_kib_per_stream: Math.round(((heapAfter.externalMb - heapBefore.externalMb) * 1024) / Math.max(1, agents.length)),
      heartbeats_per_s: Math.round(heartbeatsPerS),
      assign_p99_ms: Number(percentile(latencies, 99).toFixed(1)),
      assign_p50_ms: Number(percentile(latencies, 50).toFixed(1)),
      // The first assignment after the leader started (its caches cold), and the other warm-up jobs.
      first_assign_ms: Number((warmup[0] ?? Number.NaN).toFixed(1)),
      warmup_assign_ms: warmup.slice(1).map((ms) => Number(ms.toFixed(1))),
      // Where assignment time goes: the POST that creates the job, and the leader's placement cycles meanwhile.
      create_p50_ms: Number(percentile(createLatencies, 50).toFixed(1)),
      create_p99_ms: Number(percentile(createLatencies, 99).toFixed(1)),
      placement_cycle_mean_ms: Number(cycleMeanMs.toFixed(1)),
      phase_mean_ms: phaseMeanMs,
      gc_ms_during_jobs: gcMs,
      assign_worst_ms: [...latencies].sort((a, b) => b - a).slice(0, 5).map((ms) => Number(ms.toFixed(1))),
      create_of_worst_ms: [...latencies.keys()].sort((a, b) => latencies[b]! - latencies[a]!).slice(0, 5).map((k) => Number(createLatencies[k]!.toFixed(1))),
      connect_s: Number(connectSeconds.toFixed(1)),
      connect_concurrency: connectConcurrency,
      heartbeat_interval_s: heartbeatSeconds,
      jobs: latencies.length,
      enroll_retries: enrollRetries,
      database,
      scheduler: schedulerScript,
      ...(missed + warmupMissed > 0 ? { failed: `${missed + warmupMissed} jobs saw no Assign within 10 s` } : {}),
    })}\n`,
  );
  if (missed + warmupMissed > 0) {
    process.stderr.write(`bench:agents failed: ${missed} measured and ${warmupMissed} warm-up jobs saw no Assign within 10 s\n`);
    process.exitCode = 1;
  }
} finally {
  for (const a of agents) a.close();
  scheduler.kill("SIGTERM");
  await new Promise((r) => setTimeout(r, 1000));
  await rm(dataDir, { recursive: true, force: true });
  await throwaway?.stop();
}
