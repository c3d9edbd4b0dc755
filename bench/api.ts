// npm run bench:api — authenticated GET /customer/training-jobs/{id} and
// POST /customer/training-jobs against bare node:http, in one run. The server
// (embedded default) and the baseline each run in their own process; the load
// generator (autocannon) runs here. Prints one JSON line.
//
// Each target is warmed up first (BENCH_WARMUP_S, default 1 s, not counted);
// then bare and GET alternate in BENCH_ROUNDS (default 2) rounds that share
// BENCH_DURATION_S (default 8 s each), so background load on a shared machine
// falls on both. get_cpu_us / bare_cpu_us: each server's CPU time per request
// (user + system, from /proc), steadier than req/s where the load generator
// and other work compete for the same cores.
import { type ChildProcess, spawn } from "node:child_process";
import { createHash, randomUUID } from "node:crypto";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createRequire } from "node:module";
import { zipDirectory } from "../src/cli/files.ts";
import { startPostgres } from "../test/support/postgres.ts";

interface AutocannonResult {
  requests: { average: number; total?: number };
  duration?: number;
  latency: { p99: number };
  /** Answers with a 2xx status: the only ones counted as throughput. */
  "2xx": number;
  non2xx: number;
  errors: number;
  timeouts: number;
}
type Autocannon = (options: Record<string, unknown>) => Promise<AutocannonResult>;
const autocannon = createRequire(import.meta.url)("autocannon") as Autocannon;

const root = join(import.meta.dirname, "..");
const durationS = Number(process.env["BENCH_DURATION_S"] ?? 8);
const connections = Number(process.env["BENCH_CONNECTIONS"] ?? 32);
const warmupS = Number(process.env["BENCH_WARMUP_S"] ?? 1);
const rounds = Math.max(1, Math.round(Number(process.env["BENCH_ROUNDS"] ?? 2)));

/** CPU seconds (user + system) a child has used so far, from /proc; undefined where there is none. */
async function cpuSeconds(pid: number | undefined): Promise<number | undefined> {
  if (pid === undefined) return undefined;
  try {
    const stat = await readFile(`/proc/${pid}/stat`, "utf8");
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return (Number(fields[11]) + Number(fields[12])) / 100; // utime, stime in clock ticks (USER_HZ = 100)
  } catch {
    return undefined;
  }
}

/** Runs one load and measures the server's CPU time per request (µs) alongside. */
async function measured(pid: number | undefined, run: () => Promise<AutocannonResult>): Promise<{ result: AutocannonResult; cpuUsPerRequest: number | undefined }> {
  const before = await cpuSeconds(pid);
  const result = await run();
  const after = await cpuSeconds(pid);
  const total = result["2xx"];
  return { result, cpuUsPerRequest: before === undefined || after === undefined || total === 0 ? undefined : Math.round(((after - before) * 1e6) / total) };
}

function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = createServer().listen(0, "127.0.0.1", () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

function waitForLine(child: ChildProcess, pattern: RegExp): Promise<string> {
  return new Promise((resolve, reject) => {
    let buffer = "";
    child.stdout?.on("data", (c: Buffer) => {
      buffer += c.toString();
      const m = buffer.split("\n").find((l) => pattern.test(l));
      if (m !== undefined) resolve(m);
    });
    child.on("exit", (code) => reject(new Error(`process exited (${code}) before "${pattern}"`)));
  });
}

async function json(url: string, init: RequestInit): Promise<Record<string, unknown>> {
  const res = await fetch(url, init);
  const body = (await res.json()) as Record<string, unknown>;
  if (!res.ok) throw new Error(`${init.method ?? "GET"} ${url}: ${res.status} ${JSON.stringify(body)}`);
  return body;
}

async function upload(base: string, key: string, kind: string, bytes: Buffer): Promise<string> {
  const created = await json(`${base}/api/v1/customer/${kind}`, {
    method: "POST",
    headers: { "x-api-key": key, "content-type": "application/json" },
    body: JSON.stringify({ name: "bench", size_bytes: bytes.length, sha256: createHash("sha256").update(bytes).digest("hex") }),
  });
  await fetch(created["upload_url"] as string, { method: "PUT", body: bytes });
  await json(`${base}/api/v1/customer/${kind}/${created["id"] as string}/finalize`, { method: "POST", headers: { "x-api-key": key, "content-type": "application/json" }, body: "{}" });
  return created["id"] as string;
}

// BENCH_POSTGRES=1 runs the server on a throwaway PostgreSQL (production's database) instead of PGlite.
const postgres = process.env["BENCH_POSTGRES"] === "1" ? await startPostgres() : undefined;
const dataDir = await mkdtemp(join(tmpdir(), "bench-api-"));
const adminToken = randomUUID() + randomUUID();
const port = await freePort();
// BENCH_SERVER_NODE_OPTIONS passes flags to the server's node only (e.g. "--cpu-prof --cpu-prof-dir=/tmp/prof").
const serverNodeArgs = (process.env["BENCH_SERVER_NODE_OPTIONS"] ?? "").split(" ").filter((a) => a !== "");
const scheduler = spawn(process.execPath, [...serverNodeArgs, join(root, "cmd", "scheduler.ts")], {
  env: {
    ...process.env,
    PORT: String(port),
    GPU_AGENT_DATA_DIR: dataDir,
    ...(postgres === undefined ? {} : { DATABASE_URL: postgres.url }),
    GPU_AGENT_ADMIN_TOKEN: adminToken,
    LOG_LEVEL: "warn",
    GPU_AGENT_LIMIT_JOBS_PER_MINUTE: "1000000",
    GPU_AGENT_LIMIT_ACTIVE_JOBS: "1000000",
    GPU_AGENT_LIMIT_UNITS_PER_DAY: "100000000",
    GPU_AGENT_LIMIT_REQUESTS_PER_MINUTE: "100000000",
    // Every simulated client connects from 127.0.0.1: a cap above BENCH_CONNECTIONS, whatever it is set to.
    GPU_AGENT_MAX_CONNECTIONS_PER_ADDRESS: String(connections + 1000),
  },
  stdio: ["ignore", "pipe", "inherit"],
});
const bare = spawn(process.execPath, [join(root, "bench", "bare-server.ts")], { stdio: ["ignore", "pipe", "inherit"] });
try {
  const barePort = (JSON.parse(await waitForLine(bare, /"port"/)) as { port: number }).port;
  const base = `http://127.0.0.1:${port}`;
  for (let i = 0; ; i++) {
    const ok = await fetch(`${base}/readyz`).then((r) => r.ok, () => false);
    if (ok) break;
    if (i > 300) throw new Error("the scheduler did not become ready");
    await new Promise((r) => setTimeout(r, 100));
  }
  const customer = await json(`${base}/api/v1/admin/customers`, {
    method: "POST",
    headers: { authorization: `Bearer ${adminToken}`, "content-type": "application/json" },
    body: JSON.stringify({ email: "bench@example.com", password: "bench-password", credits: 1_000_000_000 }),
  });
  const key = customer["api_key"] as string;
  const datasetId = await upload(base, key, "datasets", await readFile(join(root, "examples", "tiny-mlp", "dataset.csv")));
  await zipDirectory(join(root, "examples", "tiny-mlp", "package"), join(dataDir, "package.zip"));
  const packageId = await upload(base, key, "training-packages", await readFile(join(dataDir, "package.zip")));
  const jobBody = JSON.stringify({ name: "bench", dataset_id: datasetId, training_package_id: packageId, required_vram_mb: 8000, max_runtime_seconds: 60 });
  const job = await json(`${base}/api/v1/customer/training-jobs`, { method: "POST", headers: { "x-api-key": key, "content-type": "application/json" }, body: jobBody });

  const common = { connections, duration: durationS };
  // BENCH_RUNS=get (say) runs only those, for profiling one of them; skipped runs report 0.
  const runs = new Set((process.env["BENCH_RUNS"] ?? "bare,get,create").split(","));
  const targets = {
    bare: { pid: bare.pid, options: { url: `http://127.0.0.1:${barePort}/` } },
    get: { pid: scheduler.pid, options: { url: `${base}/api/v1/customer/training-jobs/${job["id"] as string}`, headers: { "x-api-key": key } } },
  };
  const totals = {
    bare: { requests: 0, seconds: 0, cpuUs: 0, cpuKnown: true, p99: 0, non2xx: 0, errors: 0 },
    get: { requests: 0, seconds: 0, cpuUs: 0, cpuKnown: true, p99: 0, non2xx: 0, errors: 0 },
  };
  const measuredNames = (["bare", "get"] as const).filter((n) => runs.has(n));
  // Warm-up, not counted: both servers' JIT-compiled paths are in place before the measurement.
  for (const name of measuredNames) if (warmupS > 0) await autocannon({ ...common, ...targets[name].options, duration: warmupS });
  // Then `rounds` alternations (bare, get, bare, get, …) sharing the duration: load that comes and goes
  // on a shared machine weighs on both alike instead of on whichever ran during it.
  for (let round = 0; round < rounds; round++) {
    for (const name of measuredNames) {
      const { result, cpuUsPerRequest } = await measured(targets[name].pid, () => autocannon({ ...common, ...targets[name].options, duration: durationS / rounds }));
      const t = totals[name];
      // Throughput counts 2xx answers only: a fast 429 or 5xx is not work done.
      const requests = result["2xx"];
      t.requests += requests;
      t.seconds += result.duration ?? durationS / rounds;
      if (cpuUsPerRequest === undefined) t.cpuKnown = false;
      else t.cpuUs += cpuUsPerRequest * requests;
      t.p99 = Math.max(t.p99, result.latency.p99);
      t.non2xx += result.non2xx;
      t.errors += result.errors + result.timeouts;
    }
  }
  const rps = (name: "bare" | "get") => (totals[name].seconds === 0 ? 0 : totals[name].requests / totals[name].seconds);
  const cpuUs = (name: "bare" | "get") => (totals[name].cpuKnown && totals[name].requests > 0 ? Math.round(totals[name].cpuUs / totals[name].requests) : undefined);
  const skipped: AutocannonResult = { requests: { average: 0 }, latency: { p99: 0 }, "2xx": 0, non2xx: 0, errors: 0, timeouts: 0 };
  const asRun = (name: "bare" | "get"): AutocannonResult => ({ requests: { average: rps(name) }, latency: { p99: totals[name].p99 }, "2xx": totals[name].requests, non2xx: totals[name].non2xx, errors: totals[name].errors, timeouts: 0 });
  const bareRun = asRun("bare");
  const getRun = asRun("get");
  const createS = Math.max(3, Math.round(durationS / 2));
  const createRaw = !runs.has("create") ? skipped : await autocannon({
    ...common,
    duration: createS,
    url: `${base}/api/v1/customer/training-jobs`,
    method: "POST",
    headers: { "x-api-key": key, "content-type": "application/json" },
    body: jobBody,
  });
  const createRun: AutocannonResult = { ...createRaw, requests: { average: createRaw["2xx"] / (createRaw.duration ?? createS) }, errors: createRaw.errors + createRaw.timeouts };
  // A benchmark that errs measures something else than it says: any failed request fails the run.
  const named: ReadonlyArray<readonly [string, AutocannonResult]> = [["bare", bareRun], ["get", getRun], ["create", createRun]];
  const failures = named
    .filter(([, run]) => run.non2xx > 0 || run.errors > 0)
    .map(([name, run]) => `${name}: ${run.non2xx} non-2xx answers, ${run.errors} errors or timeouts`);
  process.stdout.write(
    `${JSON.stringify({
      get_rps: Math.round(getRun.requests.average),
      create_rps: Math.round(createRun.requests.average),
      bare_rps: Math.round(bareRun.requests.average),
      get_ratio: bareRun.requests.average === 0 ? null : Number((getRun.requests.average / bareRun.requests.average).toFixed(3)),
      p99_ms: getRun.latency.p99,
      // Server CPU per request (µs), from /proc: steadier than req/s on a shared machine.
      get_cpu_us: cpuUs("get"),
      bare_cpu_us: cpuUs("bare"),
      connections,
      duration_s: durationS,
      rounds,
      database: postgres === undefined ? "embedded (PGlite)" : "postgresql",
      ...(failures.length > 0 ? { failed: failures } : {}),
    })}\n`,
  );
  if (failures.length > 0) {
    process.stderr.write(`bench:api failed: ${failures.join("; ")}\n`);
    process.exitCode = 1;
  }
} finally {
  const schedulerExited = new Promise((r) => scheduler.once("exit", r));
  scheduler.kill("SIGTERM");
  bare.kill("SIGTERM");
  // A profiled server writes its profile on exit; give it the time.
  await Promise.race([schedulerExited, new Promise((r) => setTimeout(r, 10_000))]);
  await rm(dataDir, { recursive: true, force: true });
  await postgres?.stop();
}
