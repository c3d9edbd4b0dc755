/**
 * What this machine offers, reported in Enroll, Hello and (in part) every
 * Heartbeat. GPUs come from nvidia-smi when it exists; `--dev-gpu`
 * declares pretend GPUs for development machines that have none.
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

/**
 * Splits one nvidia-smi CSV row of `columns` cells. Names may in theory contain commas, so the cells
 * around the free-text one (at `freeText`) are taken from the ends and the rest glued back into it.
 */
function splitCsvRow(row: string, columns: number, freeText: number): string[] | undefined {
  const cells = row.split(",").map((c) => c.trim());
  if (cells.length < columns) return undefined;
  if (cells.length === columns) return cells;
  const after = columns - freeText - 1;
  const middle = cells.slice(freeText, cells.length - after).join(", ");
  return [...cells.slice(0, freeText), middle, ...cells.slice(cells.length - after)];
}

/** A non-negative integer cell; nvidia-smi prints "[N/A]" for unknown values. */
function intCell(cell: string | undefined): number | undefined {
  if (cell === undefined || !/^\d+(\.\d+)?$/.test(cell)) return undefined;
  return Math.floor(Number(cell));
}

/** A "major.minor" version cell ("8.6", "12.4"); "" for "[N/A]", "N/A" and anything else. */
export function versionCell(cell: string | undefined): string {
  const match = cell?.match(/^(\d+)\.(\d+)$/);
  return match === null || match === undefined ? "" : `${Number(match[1])}.${Number(match[2])}`;
}

/** A text cell, "" where nvidia-smi says it does not know. */
function textCell(cell: string | undefined): string {
  return cell === undefined || /^\[?N\/A\]?$/i.test(cell) ? "" : cell;
}

/** The per-GPU fields the agent asks nvidia-smi for, in order. */
export const GPU_QUERY_FIELDS = ["index", "uuid", "name", "memory.total", "compute_cap", "driver_version"] as const;
/** The same without `compute_cap`, which drivers older than 510 do not know (they refuse the whole query). */
export const GPU_QUERY_FIELDS_OLD_DRIVER = ["index", "uuid", "name", "memory.total", "driver_version"] as const;
export type GpuQueryField = (typeof GPU_QUERY_FIELDS)[number];

/**
 * Parses `nvidia-smi --query-gpu=<fields> --format=csv,noheader,nounits` for `fields` (a list that
 * holds `index` and `name`; the other fields are read where listed). Rows without a numeric index are
 * skipped; unknown memory reads as 0, an unknown version as "". `cudaVersion` (from nvidia-smi's
 * header, not a query field) is given to every GPU.
 */
export function parseNvidiaSmiGpus(output: string, fields: readonly GpuQueryField[] = GPU_QUERY_FIELDS, cudaVersion = ""): Gpu[] {
  const gpus: Gpu[] = [];
  const at = (field: GpuQueryField) => fields.indexOf(field);
  for (const row of output.split(/\r?\n/)) {
    if (row.trim() === "") continue;
    const cells = splitCsvRow(row, fields.length, at("name"));
    if (!cells) continue;
    const cell = (field: GpuQueryField) => (at(field) < 0 ? undefined : cells[at(field)]);
    const index = intCell(cell("index"));
    if (index === undefined) continue;
    gpus.push(
      create(GpuSchema, {
        index,
        name: textCell(cell("name")),
        vramMb: intCell(cell("memory.total")) ?? 0,
        uuid: textCell(cell("uuid")),
        computeCapability: versionCell(cell("compute_cap")),
        driverVersion: textCell(cell("driver_version")),
        cudaVersion: versionCell(cudaVersion),
        declared: false,
      }),
    );
  }
  return gpus;
}

/**
 * The highest CUDA version the driver supports, from nvidia-smi's header ("CUDA Version: 12.4"; newer
 * `nvidia-smi --version` prints "CUDA Version : 13.0"); "" when absent.
 */
export function parseCudaVersion(output: string): string {
  return versionCell(output.match(/CUDA Version\s*:\s*(\d+\.\d+)/)?.[1]);
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

/** A GPU declared with `--dev-gpu` on a development machine that has none. */
export interface DeclaredGpu {
  name: string;
  vramMb: number;
  /** "major.minor" or "" (unknown). */
  computeCapability: string;
  /** "major.minor" or "" (unknown). */
  cudaVersion: string;
}

/** The name a declared GPU gets when its `--dev-gpu` gives none. */
export const DEV_GPU_NAME = "dev-gpu";

/**
 * One `--dev-gpu` value: `MIB` (a GPU named "dev-gpu") or `NAME:MIB[:CC[:CUDA]]`, e.g.
 * `NVIDIA GeForce RTX 4090:24564:8.9:12.4`; CC and CUDA are "major.minor".
 * @throws Error naming the part that is wrong.
 */
export function parseDevGpu(text: string): DeclaredGpu {
  const parts = text.split(":").map((p) => p.trim());
  const [name, mib, cc, cuda] = parts.length === 1 ? [DEV_GPU_NAME, parts[0]] : parts;
  const problem = (what: string) => new Error(`--dev-gpu ${JSON.stringify(text)}: ${what} (MIB or NAME:MIB[:CC[:CUDA]], e.g. "RTX 4090:24564:8.9:12.4")`);
  if (parts.length > 4) throw problem("too many parts");
  if (name === undefined || name === "") throw problem("the name is empty");
  const vramMb = Number(mib);
  if (!/^\d+$/.test(mib ?? "") || !Number.isSafeInteger(vramMb) || vramMb <= 0) throw problem("the VRAM must be a positive integer of MiB");
  const version = (value: string | undefined, what: string) => {
    if (value === undefined || value === "") return "";
    const v = versionCell(value);
    if (v === "") throw problem(`the ${what} must be "major.minor"`);
    return v;
  };
  return { name, vramMb, computeCapability: version(cc, "compute capability"), cudaVersion: version(cuda, "CUDA version") };
}

/**
 * Chooses the GPUs to report: the detected ones, or, only when none was
 * detected, the declared development GPUs (indexes 0, 1, … in order). Declaring
 * on a real GPU machine is ignored (with a warning) so a stray flag cannot lie
 * about hardware that exists.
 */
export function resolveGpus(detected: readonly Gpu[], declared: readonly DeclaredGpu[], logger: AgentLogger): Gpu[] {
  if (declared.length === 0) return [...detected];
  if (detected.length > 0) {
    logger.warn({ detected: detected.length }, "--dev-gpu ignored: real GPUs were detected");
    return [...detected];
  }
  logger.warn(
    { gpus: declared.map((g) => `${g.name}:${g.vramMb}`) },
    "DEVELOPMENT GPU DECLARED: this node advertises a GPU it does not have; not for production",
  );
  return declared.map((g, index) =>
    create(GpuSchema, { index, name: g.name, vramMb: g.vramMb, uuid: "", computeCapability: g.computeCapability, cudaVersion: g.cudaVersion, declared: true }),
  );
}

/** The declared GPUs of DetectOptions: `devGpus`, or one "dev-gpu" of `devGpuMib` MiB. */
export function declaredGpus(opts: { devGpuMib?: number; devGpus?: readonly DeclaredGpu[] }): readonly DeclaredGpu[] {
  if (opts.devGpus !== undefined) return opts.devGpus;
  return opts.devGpuMib === undefined ? [] : [{ name: DEV_GPU_NAME, vramMb: opts.devGpuMib, computeCapability: "", cudaVersion: "" }];
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

/**
 * Detected GPUs, or [] when nvidia-smi is absent or fails. A driver that refuses `compute_cap` (older
 * than 510) is asked again without it; the CUDA version comes from nvidia-smi's header.
 */
export async function detectGpus(run: CommandRunner = execCommand): Promise<Gpu[]> {
  const query = (fields: readonly GpuQueryField[]) => run("nvidia-smi", [`--query-gpu=${fields.join(",")}`, "--format=csv,noheader,nounits"]);
  let fields: readonly GpuQueryField[] = GPU_QUERY_FIELDS;
  let out = await query(fields);
  if (out === undefined) {
    fields = GPU_QUERY_FIELDS_OLD_DRIVER;
    out = await query(fields);
  }
  if (out === undefined) return [];
  const header = await run("nvidia-smi", []);
  return parseNvidiaSmiGpus(out, fields, header === undefined ? "" : parseCudaVersion(header));
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
  /** Declare a development GPU of this many MiB when none is detected (shorthand of `devGpus`). */
  devGpuMib?: number;
  /** Declare these development GPUs when none is detected (`--dev-gpu`, repeatable). */
  devGpus?: readonly DeclaredGpu[];
  /** Most units the agent runs at once (`--max-units`); absent: not told (enrollment). */
  maxUnits?: number;
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
    gpus: resolveGpus(detected, declaredGpus(opts), opts.logger),
    os: process.platform,
    arch: process.arch,
    pythonVersion: python,
    hostname: os.hostname(),
    agentVersion: AGENT_VERSION,
    isolation: opts.isolation ?? create(IsolationSchema, { mechanism: "none", limits: UNSANDBOXED_LIMITS }),
    maxUnits: opts.maxUnits ?? 0,
  };
  return create(CapabilitiesSchema, init);
}

/** What `--isolation none` enforces: only the disk check. */
const UNSANDBOXED_LIMITS: LimitMechanisms = { memory: "none", pids: "none", cpu: "none", disk: "watch", syscalls: "none" };

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
  const syscalls = probe.host.seccompArch !== undefined ? "seccomp" : "none";
  const limits: LimitMechanisms = byCgroup
    ? { memory: "cgroup", pids: "cgroup", cpu: "cgroup", disk: "watch", syscalls }
    : { memory: "watch", pids: "rlimit", cpu: "affinity", disk: "watch", syscalls };
  const reasons = [
    ...(byCgroup ? [] : [`no delegated cgroup v2 (${fallback}): memory is summed proportionally (Pss) every 250 ms, processes bounded by RLIMIT_NPROC, CPUs by affinity`]),
    ...(syscalls === "none" ? [`no seccomp filter for ${process.arch}: a unit may create user namespaces of its own${byCgroup ? "" : " and widen its CPU affinity"}`] : []),
    ...(probe.note !== undefined ? [probe.note] : []),
  ];
  return {
    isolation: create(IsolationSchema, { mechanism: "bubblewrap", reason: reasons.join("; "), limits }),
    runner: { mechanism: "bubblewrap", host: probe.host, ...(cgroups !== undefined ? { cgroups } : {}) },
  };
}
