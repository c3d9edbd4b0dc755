/**
 * What this machine offers, reported in Enroll, Hello and (in part) every
 * Heartbeat. GPUs come from nvidia-smi when it exists; `--dev-gpu MIB`
 * declares a pretend GPU for development machines that have none.
 */
import { execFile } from "node:child_process";
import { statfs } from "node:fs/promises";
import os from "node:os";
import { create } from "@bufbuild/protobuf";
import type { MessageInitShape } from "@bufbuild/protobuf";
import { CapabilitiesSchema, GpuSchema, GpuUsageSchema, IsolationSchema } from "../gen/gpuagent/agent/v1/agent_pb.ts";
import type { Capabilities, Gpu, GpuUsage, Isolation } from "../gen/gpuagent/agent/v1/agent_pb.ts";
import { hostPath } from "../platform/host.ts";
import type { AgentLogger } from "./logger.ts";
import { runningAsRoot, unitPath } from "./sandbox.ts";
import { UnitCgroups, detectDelegatedCgroup } from "./unit-limits.ts";
import type { LimitMechanisms } from "./unit-limits.ts";
import { SandboxUnavailableError, prepareSandboxHost, probeSandbox } from "./unit-sandbox.ts";
import type { UnitIsolation } from "./unit-sandbox.ts";

/** Reported as Capabilities.agent_version; bump with package.json. */
export const AGENT_VERSION = "0.1.0";

const MIB = 1024 * 1024;

/** Runs a program and returns its stdout, or undefined when it is missing or fails. */
export type CommandRunner = (file: string, args: readonly string[], env?: NodeJS.ProcessEnv) => Promise<string | undefined>;

/** The real runner: execFile with a timeout, so a hung nvidia-smi cannot stall a heartbeat. Without `env` the program inherits the agent's. */
export const execCommand: CommandRunner = (file, args, env) =>
  new Promise((resolve) => {
    execFile(file, [...args], { timeout: 10_000, ...(env !== undefined ? { env } : {}) }, (err, stdout) => {
      resolve(err ? undefined : stdout);
    });
  });

/** Splits one nvidia-smi CSV row; names may in theory contain commas, so the ends are fixed. */
function splitCsvRow(row: string, columns: number): string[] | undefined {
  const cells = row.split(",").map((c) => c.trim());
  if (cells.length < columns) return undefined;
  if (cells.length === columns) return cells;
  // Glue surplus cells back into the second column (the free-text one).
  const head = cells[0] ?? "";
  const tail = cells.slice(cells.length - (columns - 2));
  const middle = cells.slice(1, cells.length - (columns - 2)).join(", ");
  return [head, middle, ...tail];
}

/** A non-negative integer cell; nvidia-smi prints "[N/A]" for unknown values. */
function intCell(cell: string | undefined): number | undefined {
  if (cell === undefined || !/^\d+(\.\d+)?$/.test(cell)) return undefined;
  return Math.floor(Number(cell));
}

/**
 * Parses `nvidia-smi --query-gpu=index,name,memory.total,uuid
 * --format=csv,noheader,nounits`. Rows without a numeric index are skipped;
 * unknown memory reads as 0.
 */
export function parseNvidiaSmiGpus(output: string): Gpu[] {
  const gpus: Gpu[] = [];
  for (const row of output.split(/\r?\n/)) {
    if (row.trim() === "") continue;
    const cells = splitCsvRow(row, 4);
    if (!cells) continue;
    const [indexCell, name, memoryCell, uuid] = cells;
    const index = intCell(indexCell);
    if (index === undefined) continue;
    gpus.push(
      create(GpuSchema, {
        index,
        name: name ?? "",
        vramMb: intCell(memoryCell) ?? 0,
        uuid: uuid ?? "",
        declared: false,
      }),
    );
  }
  return gpus;
}

/**
 * Parses `nvidia-smi --query-gpu=index,memory.used,utilization.gpu
 * --format=csv,noheader,nounits` into heartbeat usage (utilization 0..1).
 */
export function parseNvidiaSmiUsage(output: string): GpuUsage[] {
  const usage: GpuUsage[] = [];
  for (const row of output.split(/\r?\n/)) {
    const cells = row.split(",").map((c) => c.trim());
    if (cells.length !== 3) continue;
    const index = intCell(cells[0]);
    if (index === undefined) continue;
    const util = intCell(cells[2]);
    usage.push(
      create(GpuUsageSchema, {
        index,
        vramUsedMb: intCell(cells[1]) ?? 0,
        utilization: util === undefined ? 0 : Math.min(1, util / 100),
      }),
    );
  }
  return usage;
}

/**
 * Chooses the GPUs to report: the detected ones, or, only when none was
 * detected, one declared development GPU of `devGpuMib` MiB. Declaring on a
 * real GPU machine is ignored (with a warning) so a stray flag cannot lie
 * about hardware that exists.
 */
export function resolveGpus(detected: readonly Gpu[], devGpuMib: number | undefined, logger: AgentLogger): Gpu[] {
  if (devGpuMib === undefined) return [...detected];
  if (detected.length > 0) {
    logger.warn({ detected: detected.length }, "--dev-gpu ignored: real GPUs were detected");
    return [...detected];
  }
  logger.warn(
    { vram_mb: devGpuMib },
    "DEVELOPMENT GPU DECLARED: this node advertises a GPU it does not have; not for production",
  );
  return [create(GpuSchema, { index: 0, name: "dev-gpu", vramMb: devGpuMib, uuid: "", declared: true })];
}

/** Free space on the file system holding `dir`, in MiB (0 when unknown). */
export async function diskFreeMb(dir: string): Promise<number> {
  try {
    const s = await statfs(dir);
    return Math.floor((s.bavail * s.bsize) / MIB);
  } catch {
    return 0;
  }
}

/** "3.11.7" from `<python> --version`, or "" when the interpreter is missing. */
export async function pythonVersion(run: CommandRunner = execCommand, python = "python3", agentPath: string | undefined = hostPath()): Promise<string> {
  // The same interpreter and PATH the units get, so the reported version is the one that runs them.
  const out = await run(python, ["--version"], { PATH: unitPath(agentPath) });
  const match = out?.match(/Python\s+(\S+)/);
  return match?.[1] ?? "";
}

/** Detected GPUs, or [] when nvidia-smi is absent or fails. */
export async function detectGpus(run: CommandRunner = execCommand): Promise<Gpu[]> {
  const out = await run("nvidia-smi", ["--query-gpu=index,name,memory.total,uuid", "--format=csv,noheader,nounits"]);
  return out === undefined ? [] : parseNvidiaSmiGpus(out);
}

/** Current GPU usage for heartbeats; declared GPUs report zero use. */
export async function gpuUsage(gpus: readonly Gpu[], run: CommandRunner = execCommand): Promise<GpuUsage[]> {
  if (gpus.length === 0) return [];
  if (gpus.every((g) => g.declared)) {
    return gpus.map((g) => create(GpuUsageSchema, { index: g.index, vramUsedMb: 0, utilization: 0 }));
  }
  const out = await run("nvidia-smi", [
    "--query-gpu=index,memory.used,utilization.gpu",
    "--format=csv,noheader,nounits",
  ]);
  return out === undefined ? [] : parseNvidiaSmiUsage(out);
}

/** Options of detectCapabilities. */
export interface DetectOptions {
  /** Whose free disk is reported (the agent's data directory). */
  dataDir: string;
  /** Declare a development GPU of this many MiB when none is detected. */
  devGpuMib?: number;
  logger: AgentLogger;
  /** The interpreter units run with (default `python3` on the unit's PATH). */
  python?: string;
  /** The agent's own PATH, which units inherit unless the agent runs as root (default: this process's). */
  agentPath?: string;
  /** Injected in tests. */
  run?: CommandRunner;
  /** How units are contained (prepareIsolation); absent: reported as "none". */
  isolation?: Isolation;
}

/** Detects everything Capabilities holds. */
export async function detectCapabilities(opts: DetectOptions): Promise<Capabilities> {
  const run = opts.run ?? execCommand;
  const [detected, disk, python] = await Promise.all([detectGpus(run), diskFreeMb(opts.dataDir), pythonVersion(run, opts.python, opts.agentPath)]);
  if (python === "") opts.logger.warn({ python: opts.python ?? "python3" }, "python interpreter not found: units cannot run");
  const init: MessageInitShape<typeof CapabilitiesSchema> = {
    cpuCores: os.availableParallelism(),
    memoryMb: Math.floor(os.totalmem() / MIB),
    diskFreeMb: disk,
    gpus: resolveGpus(detected, opts.devGpuMib, opts.logger),
    os: process.platform,
    arch: process.arch,
    pythonVersion: python,
    hostname: os.hostname(),
    agentVersion: AGENT_VERSION,
    isolation: opts.isolation ?? create(IsolationSchema, { mechanism: "none", limits: UNSANDBOXED_LIMITS }),
  };
  return create(CapabilitiesSchema, init);
}

/** What `--isolation none` enforces: only the disk check. */
const UNSANDBOXED_LIMITS: LimitMechanisms = { memory: "none", pids: "none", cpu: "none", disk: "watch" };

/** Options of prepareIsolation. */
export interface IsolationOptions {
  /** "bubblewrap" (the default): probe the sandbox; "none": the operator's explicit `--isolation none`. */
  requested: "bubblewrap" | "none";
  dataDir: string;
  /** The interpreter units run (default `python3` on the unit's PATH). */
  python?: string;
  /** The agent's own PATH (default: this process's). */
  agentPath?: string;
  /**
   * Take over a delegated cgroup v2 for the units' limits (the running agent). Enrollment only reports
   * what it would do, so that a one-shot command never moves itself between cgroups.
   */
  manageCgroups: boolean;
  logger: AgentLogger;
  /** Default: whether this process is root. */
  asRoot?: boolean;
  /** Default: the unified hierarchy at /sys/fs/cgroup and this process's own cgroup. */
  cgroupRoot?: string;
  selfCgroupFile?: string;
}

/** The isolation the node reports, and what the runner contains units with. */
export interface PreparedIsolation {
  isolation: Isolation;
  runner: UnitIsolation;
}

/**
 * Decides how this node contains units: builds the sandbox's host side, starts one trial sandbox, and
 * picks what enforces each limit. A sandbox that cannot start makes the node "unavailable" (it takes no
 * units) unless the operator asked for `--isolation none`.
 */
export async function prepareIsolation(opts: IsolationOptions): Promise<PreparedIsolation> {
  if (opts.requested === "none") {
    return {
      isolation: create(IsolationSchema, { mechanism: "none", reason: "the operator started the agent with --isolation none", limits: UNSANDBOXED_LIMITS }),
      runner: { mechanism: "none" },
    };
  }
  const unavailable = (reason: string): PreparedIsolation => {
    const full = `${reason}; the node takes no units (start the agent with --isolation none to run them without a sandbox)`;
    opts.logger.error({ reason }, "units cannot be isolated: every Assign will be rejected");
    return { isolation: create(IsolationSchema, { mechanism: "unavailable", reason: full, limits: {} }), runner: { mechanism: "unavailable", reason } };
  };
  if (process.platform !== "linux") return unavailable(`the sandbox (bubblewrap) needs Linux, this is ${process.platform}`);
  const asRoot = opts.asRoot ?? runningAsRoot();
  let host;
  try {
    host = await prepareSandboxHost({
      asRoot,
      dataDir: opts.dataDir,
      python: opts.python ?? "python3",
      unitPathValue: unitPath(opts.agentPath ?? hostPath(), asRoot),
    });
  } catch (err) {
    if (err instanceof SandboxUnavailableError) return unavailable(err.message);
    throw err;
  }
  const probe = await probeSandbox(host, opts.dataDir);
  if (!probe.ok) return unavailable(probe.reason);

  const cgroup = await detectDelegatedCgroup(opts.cgroupRoot, opts.selfCgroupFile);
  let cgroups: UnitCgroups | undefined;
  let fallback = cgroup.kind === "none" ? cgroup.reason : "";
  if (cgroup.kind === "delegated" && opts.manageCgroups) {
    try {
      cgroups = await UnitCgroups.open(cgroup.dir);
    } catch (err) {
      fallback = `the delegated cgroup ${cgroup.dir} could not be divided among units: ${err instanceof Error ? err.message : String(err)}`;
    }
  }
  const byCgroup = cgroup.kind === "delegated" && fallback === "";
  const limits: LimitMechanisms = byCgroup
    ? { memory: "cgroup", pids: "cgroup", cpu: "cgroup", disk: "watch" }
    : { memory: "watch", pids: "rlimit", cpu: "affinity", disk: "watch" };
  const reasons = [
    ...(byCgroup ? [] : [`no delegated cgroup v2 (${fallback}): memory is summed every 250 ms, processes bounded by RLIMIT_NPROC, CPUs by affinity`]),
    ...(probe.note !== undefined ? [probe.note] : []),
  ];
  return {
    isolation: create(IsolationSchema, { mechanism: "bubblewrap", reason: reasons.join("; "), limits }),
    runner: { mechanism: "bubblewrap", host: probe.host, ...(cgroups !== undefined ? { cgroups } : {}) },
  };
}
