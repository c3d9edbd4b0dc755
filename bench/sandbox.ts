// npm run bench:sandbox — what the unit sandbox (src/node-agent/unit-sandbox.ts) adds to a unit's start, and
// what a package's Python environment costs cold and warm. Prints one JSON line.
//
// The node agent's runner (src/node-agent/runner.ts) is driven directly, in this process, as the agent
// drives it (its CPUs, a cpu unit's default limits: 1 core, 512 MB, its disk_mb), against a blob server on
// loopback, with no control plane: what is measured is the agent's side alone. Each unit runs a one-line
// `print`; its start-to-first-line is from the Assign handed to the runner to the moment the runner read
// that line (LogLines.at), so download, unzip and the interpreter's start count alike with and without
// the sandbox. BENCH_UNITS (default 20) units run with the sandbox as the agent probes it at start
// (bubblewrap; limits without a cgroup the bench would have to take over: see `limits_in_force`) and as
// many without (`--isolation none`), interleaved so that drift on the machine hits both alike; one of each
// runs first to warm up and is not counted. The overhead figures are the sandboxed median (p95) minus the
// unsandboxed one.
//
// Environments (src/node-agent/python-envs.ts): a package whose requirements.txt names two local wheels
// (a wheelhouse written here, as the tests do: no registry), run in the sandbox. env_build_ms_cold is the
// first unit's build as the agent reports it (Finished.env_build_seconds: a venv and pip from the
// wheelhouse, sandboxed); env_build_ms_warm is the same step once the environment is cached (the median of
// BENCH_WARM_UNITS, default 10, lookups of the package's requirements in the node's environments, timed
// around prepareUnitPython as the runner calls it; the agent reports 0 for them), and
// env_warm_start_to_first_line_ms_median the start-to-first-line of as many sandboxed units that ran
// with the cached environment.
import { randomUUID } from "node:crypto";
import { chmod, mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { create } from "@bufbuild/protobuf";
import { timestampMs } from "@bufbuild/protobuf/wkt";
import { AssignSchema, InputFileSchema, Outcome, UnitRefSchema } from "../src/gen/gpuagent/agent/v1/agent_pb.ts";
import type { Finished } from "../src/gen/gpuagent/agent/v1/agent_pb.ts";
import { prepareIsolation } from "../src/node-agent/capabilities.ts";
import { silentLogger } from "../src/node-agent/logger.ts";
import { DEFAULT_ENV_CACHE_MB, createPythonEnvCache, prepareUnitPython } from "../src/node-agent/python-envs.ts";
import { createUnitRunner } from "../src/node-agent/runner.ts";
import type { UnitRunner } from "../src/node-agent/runner.ts";
import type { AgentMessageBody } from "../src/node-agent/session.ts";
import { allowedCpus } from "../src/node-agent/unit-limits.ts";
import type { UnitIsolation } from "../src/node-agent/unit-sandbox.ts";
import { monotonicMs, systemClock } from "../src/platform/clock.ts";
import { sha256, startBlobServer, zipOf } from "../test/node-agent/helpers.ts";
import { writeWheelhouse } from "../test/node-agent/wheels.ts";

const units = Number(process.env["BENCH_UNITS"] ?? 20);
const warmUnits = Number(process.env["BENCH_WARM_UNITS"] ?? 10);
/** A cpu stage's defaults (src/planner/plan.ts) and a job's default required_disk_mb. */
const UNIT_LIMITS = { cpu_cores: 1, memory_mb: 512, disk_mb: 1024 };
/** The runner's default RLIMIT_NPROC for a sandboxed unit. */
const MAX_UNIT_PROCESSES = 4096;

const TRAIN_PY = 'print("first line", flush=True)\n';
const WHEELS = [
  { name: "alpha_util", version: "1.0.0" },
  { name: "beta_tools", version: "2.1.0", requires: ["alpha_util>=1"] },
];
const ENV_FILES = { "train.py": 'import beta_tools\nprint("first line " + beta_tools.VERSION, flush=True)\n', "requirements.txt": "beta_tools==2.1.0\n" };

/** Nearest-rank percentile of ascending `sorted`. */
function percentile(sorted: readonly number[], p: number): number {
  return sorted[Math.max(0, Math.ceil((p / 100) * sorted.length) - 1)] ?? Number.NaN;
}
const median = (values: readonly number[]) => percentile([...values].sort((a, b) => a - b), 50);
const p95 = (values: readonly number[]) => percentile([...values].sort((a, b) => a - b), 95);
const round = (ms: number) => Math.round(ms * 10) / 10;

const root = await mkdtemp(join(tmpdir(), "bench-sandbox-"));
const server = await startBlobServer();
try {
  // The sandboxed agent's data directory is private, as the agent keeps it; without the sandbox a root
  // agent's units run as nobody, who must pass through to theirs.
  await chmod(root, 0o755);
  const sandboxDir = join(root, "sandboxed");
  const plainDir = join(root, "plain");
  const wheelhouse = join(root, "wheelhouse");
  await mkdir(sandboxDir, { mode: 0o700 });
  await mkdir(plainDir, { mode: 0o755 });
  await mkdir(wheelhouse);
  await writeWheelhouse(wheelhouse, WHEELS);

  // As the agent probes it at start, but without taking over a delegated cgroup: the bench is no service,
  // and would move its shell's processes. Where the agent has one, memory, pids and cpu are the cgroup's.
  const prepared = await prepareIsolation({ requested: "bubblewrap", dataDir: sandboxDir, manageCgroups: false, logger: silentLogger });
  if (prepared.runner.mechanism !== "bubblewrap") throw new Error(`the sandbox cannot start on this machine: ${prepared.isolation.reason}`);
  const sandbox = prepared.runner;
  const cpus = await allowedCpus();

  const messages: AgentMessageBody[] = [];
  const runnerOf = (dataDir: string, isolation: UnitIsolation): UnitRunner =>
    createUnitRunner({
      dataDir,
      nodeCredential: "nc_bench",
      send: (body) => void messages.push(body),
      gpuIndexes: () => [],
      maxConcurrentUnits: 1,
      clock: systemClock,
      logger: silentLogger,
      isolation,
      cpus,
      pythonEnvs: { sources: { findLinks: [wheelhouse] } },
    });
  const sandboxed = runnerOf(sandboxDir, sandbox);
  const plain = runnerOf(plainDir, { mechanism: "none" });

  const packageOf = async (files: Record<string, string>) => {
    const zip = await zipOf(files);
    const key = `${randomUUID()}/package.zip`;
    server.blobs.set(key, zip);
    return create(InputFileSchema, { role: "package", name: "package.zip", url: `${server.url}/blobs/${encodeURIComponent(key)}`, sha256: sha256(zip), sizeBytes: BigInt(zip.length) });
  };
  const plainPackage = await packageOf({ "train.py": TRAIN_PY });
  const envPackage = await packageOf(ENV_FILES);

  /** Runs one unit; returns its start-to-first-line in ms and its Finished. */
  async function runUnit(runner: UnitRunner, pkg: typeof plainPackage): Promise<{ ms: number; finished: Finished }> {
    const unitId = randomUUID();
    const assign = create(AssignSchema, {
      assignmentId: randomUUID(),
      unit: create(UnitRefSchema, { unitId, attempt: 1 }),
      jobId: randomUUID(),
      stage: "train",
      kind: "cpu",
      gpuIndex: -1,
      entrypoint: "train.py",
      maxRuntimeSeconds: 120,
      cpuCores: UNIT_LIMITS.cpu_cores,
      memoryMb: UNIT_LIMITS.memory_mb,
      diskMb: UNIT_LIMITS.disk_mb,
      artifactUploadUrl: `${server.url}/artifacts/${unitId}`,
      inputs: [pkg],
    });
    const assignedAt = systemClock.now();
    await runner.assign(assign);
    const mine = messages.filter((m) => (m.case === "log" || m.case === "finished") && m.value.unit?.unitId === unitId);
    const finished = mine.find((m) => m.case === "finished")?.value as Finished | undefined;
    const firstLine = mine.find((m) => m.case === "log" && m.value.lines.some((l) => l.startsWith("first line")));
    if (finished?.outcome !== Outcome.SUCCEEDED || firstLine?.case !== "log" || firstLine.value.at === undefined) {
      throw new Error(`a unit did not print its first line: ${finished?.error ?? "no Finished"}`);
    }
    messages.length = 0;
    return { ms: timestampMs(firstLine.value.at) - assignedAt, finished };
  }

  await runUnit(sandboxed, plainPackage);
  await runUnit(plain, plainPackage);
  const cold = await runUnit(sandboxed, envPackage);
  if (!cold.finished.envBuilt) throw new Error("the first unit with requirements did not build its environment");

  const withSandbox: number[] = [];
  const withoutSandbox: number[] = [];
  const withWarmEnv: number[] = [];
  for (let i = 0; i < Math.max(units, warmUnits); i++) {
    // Alternate which goes first, so that neither always follows the other.
    const order = i % 2 === 0 ? ([sandboxed, plain] as const) : ([plain, sandboxed] as const);
    for (const runner of order) {
      if (i >= units) continue;
      (runner === sandboxed ? withSandbox : withoutSandbox).push((await runUnit(runner, plainPackage)).ms);
    }
    if (i < warmUnits) {
      const warm = await runUnit(sandboxed, envPackage);
      if (warm.finished.envBuilt) throw new Error("a unit rebuilt a cached environment");
      withWarmEnv.push(warm.ms);
    }
  }

  // The environment step of a unit whose environment is cached, on the environments the runner built.
  const envs = createPythonEnvCache({
    dir: join(sandboxDir, "envs"),
    maxBytes: DEFAULT_ENV_CACHE_MB * 1024 * 1024,
    python: sandbox.host.python,
    path: sandbox.host.path,
    sources: { findLinks: [wheelhouse] },
    clock: systemClock,
    logger: silentLogger,
  });
  const packageDir = join(root, "package");
  await mkdir(packageDir);
  for (const [name, text] of Object.entries(ENV_FILES)) await writeFile(join(packageDir, name), text);
  const lookups: number[] = [];
  // The first lookup also asks the interpreter who it is, which the runner did once, for the cold unit.
  for (let i = 0; i <= warmUnits; i++) {
    const started = monotonicMs();
    const lease = (await prepareUnitPython(packageDir, envs, new AbortController().signal))?.lease;
    if (i > 0) lookups.push(monotonicMs() - started);
    if (lease === undefined || lease.built) throw new Error("the cached environment was not found");
    await lease.release();
  }

  console.log(
    JSON.stringify({
      isolation: prepared.isolation.mechanism,
      isolation_reason: prepared.isolation.reason,
      limits_in_force: prepared.isolation.limits,
      unit_limits: { ...UNIT_LIMITS, max_processes: MAX_UNIT_PROCESSES, cpus_pinned: cpus.length > UNIT_LIMITS.cpu_cores },
      agent_as_root: sandbox.host.asRoot,
      python: sandbox.host.python,
      units_each: units,
      start_to_first_line_ms: {
        sandbox: { median: round(median(withSandbox)), p95: round(p95(withSandbox)) },
        none: { median: round(median(withoutSandbox)), p95: round(p95(withoutSandbox)) },
      },
      sandbox_overhead_ms_median: round(median(withSandbox) - median(withoutSandbox)),
      sandbox_overhead_ms_p95: round(p95(withSandbox) - p95(withoutSandbox)),
      env_build_ms_cold: round(cold.finished.envBuildSeconds * 1000),
      env_build_ms_warm: round(median(lookups)),
      env_warm_units: warmUnits,
      env_warm_start_to_first_line_ms_median: round(median(withWarmEnv)),
    }),
  );
} finally {
  await server.close();
  await rm(root, { recursive: true, force: true });
}
