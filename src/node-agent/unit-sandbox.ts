/**
 * The sandbox every unit runs in: bubblewrap (`bwrap`) gives it its own PID, mount, IPC, UTS and network
 * namespaces and a root file system made only of what it needs.
 *
 * The command line is a pure function of the host's layout (found once at start-up, `prepareSandboxHost`)
 * and of the unit (`bubblewrapArgs`), so every wall is checked by a table-driven test without a sandbox.
 *
 * Two ways in, by who runs the agent:
 * - root (a system service, CI, `npm start`): bwrap runs as real root WITHOUT a user namespace, so bind
 *   sources are opened as root and the agent's data directory stays 0700 wherever it is; inside, `setpriv`
 *   drops to a user id of the unit's own (`UnitUidAllocator`), with no capabilities and no_new_privs.
 * - anyone else: bwrap makes a user namespace; the unit's uid inside is its own, but outside every unit
 *   shares the agent's uid. The PID and mount namespaces still keep units apart (a unit cannot see or
 *   signal another's processes, nor open its files, which are not mounted in its sandbox).
 *
 * Inside, the chain runs `prlimit` (processes, file size) → `setpriv` (user, no privileges) as the
 * sandbox's first, trusted steps with an empty environment, and only then `env -i` gives the unit's
 * environment to its interpreter: a customer's `LD_PRELOAD` never reaches a program running with root's
 * capabilities. Everything inside runs under a seccomp filter (seccomp-filter.ts: no user namespaces of
 * its own, and a pinned unit cannot widen its CPU affinity), so the pin is set outside: `taskset` execs
 * bwrap, whose processes inherit it.
 *
 * None of it is on bwrap's command line (`bubblewrapLaunch`): the sandbox's init is a fork of bwrap, so
 * its command line is /proc/1/cmdline to every process inside, and it would show the host's paths (the
 * data directory, the owner's home) and the unit's environment. bwrap reads its options from a pipe
 * (`--args`) and runs a shell that reads the chain from another (stdin) and execs it.
 */
import { execFile, spawn } from "node:child_process";
import type { ChildProcess } from "node:child_process";
import { constants as fsConstants } from "node:fs";
import { access, lchown, lstat, mkdir, readdir, readFile, readlink, realpath, rm, writeFile } from "node:fs/promises";
import path from "node:path";
import { SYSTEM_PATH } from "./sandbox.ts";
import { seccompArchOf, seccompFilter } from "./seccomp-filter.ts";
import type { SeccompArch } from "./seccomp-filter.ts";
import type { UnitCgroups } from "./unit-limits.ts";

/** How the runner contains units: the probed sandbox, plain processes (`--isolation none`), or not at all. */
export type UnitIsolation =
  | { mechanism: "bubblewrap"; host: SandboxHost; cgroups?: UnitCgroups }
  | { mechanism: "none" }
  | { mechanism: "unavailable"; reason: string };

/** Where a unit's directories appear inside its sandbox: the same on every node, and no host path leaks. */
export const SANDBOX_PATHS = {
  home: "/unit",
  package: "/unit/package",
  dataset: "/unit/dataset",
  inputs: "/unit/inputs",
  output: "/unit/output",
  /** Where the unit writes checkpoints (writable), and the checkpoint it resumes from (read-only): checkpoints.ts. */
  checkpoints: "/unit/checkpoints",
  resume: "/unit/resume",
  /**
   * The package's Python environment (python-envs.ts), read-only. Not the host's path, which would show
   * the data directory in the unit's interpreter path and environment; environments are relocatable.
   */
  pythonEnv: "/unit-env",
} as const;

/** The sandbox's host name (its own UTS namespace): the owner's host name stays private. */
export const SANDBOX_HOSTNAME = "gpu-agent-unit";

/**
 * First user id given to units when the agent is root. Far above real accounts (Debian gives users
 * 1000–59999, systemd's dynamic users 61184–65519, subordinate ranges for containers usually start at
 * 100000 and grow by 65536 per user) and below systemd's "foreign" range (0x7FFE0000), so no file or
 * process on the machine belongs to one of these ids unless a unit made it.
 */
export const DEFAULT_UNIT_UID_BASE = 0x7f000000;
/** How many ids the allocator rotates through before reusing one. */
export const UNIT_UID_SLOTS = 65536;

/** Size of a unit's private /tmp and /dev/shm when its stage declares no memory_mb. */
export const DEFAULT_TMPFS_MB = 1024;

/** A piece of the sandbox's root taken from the host. */
export type SystemMount = { kind: "ro-bind"; source: string; dest: string } | { kind: "symlink"; target: string; dest: string };

/** Absolute paths of the programs the sandbox is built with. */
export interface SandboxTools {
  bwrap: string;
  setpriv: string;
  prlimit: string;
  taskset: string;
  env: string;
  /** Reads the chain from its stdin inside the sandbox (`bubblewrapLaunch`). */
  sh: string;
}

/** The host's side of every sandbox, found once at start-up. */
export interface SandboxHost {
  /** The agent runs as root: no user namespace, `setpriv` drops to the unit's uid. */
  asRoot: boolean;
  tools: SandboxTools;
  /** System directories and files, read-only (or mirrored symlinks), in mount order. */
  system: readonly SystemMount[];
  /** The interpreter units run (its real path, e.g. /root/.pyenv/versions/3.11.7/bin/python3, not a shim). */
  python: string;
  /** PATH inside the sandbox: the interpreter's directory first, then the system's. */
  path: string;
  /**
   * NVIDIA control devices present on the host, as the sandbox names them (`/dev/nvidiactl`,
   * `/dev/nvidia-caps/nvidia-cap1` …): given to GPU units with their GPUs' own devices, to no CPU unit.
   */
  nvidiaControlDevices: readonly string[];
  /** Where the host's device files are (default `/dev`; tests give a directory of stand-ins). */
  devRoot?: string;
  /**
   * Whether bwrap names the sandbox {@link SANDBOX_HOSTNAME} (`--hostname`). sethostname needs
   * CAP_SYS_ADMIN over the UTS namespace, which container runtimes' default seccomp profiles refuse
   * without it: there the probe drops the option and units inherit the host name in a UTS namespace
   * still their own (`probeSandbox`).
   */
  setsHostname: boolean;
  /**
   * The architecture whose system call numbers the seccomp filter is written with (seccomp-filter.ts);
   * undefined where it has no table (then there is no filter, and Capabilities.isolation.limits says so).
   */
  seccompArch?: SeccompArch;
}

/** One unit's sandbox. */
export interface UnitSandboxSpec {
  /** The unit's work directory on the host: mounted at SANDBOX_PATHS.home. */
  workDir: string;
  /** Host directory with the unit's passwd, group and hosts files (`writeSandboxEtc`). */
  etcDir: string;
  /** The unit's own user (and group) id. */
  uid: number;
  command: string;
  args: readonly string[];
  /** The unit's complete environment (buildUnitEnv with SANDBOX_PATHS). */
  env: Readonly<Record<string, string>>;
  /** Device nodes of the GPUs it was assigned (`/dev/nvidia<minor>`, as the sandbox names them); none for a CPU unit. */
  gpuDevices: readonly string[];
  /** The stage's memory_mb: sizes /tmp and /dev/shm (0: DEFAULT_TMPFS_MB). */
  memoryMb: number;
  /** The stage's disk_mb: no single file may grow past it (RLIMIT_FSIZE; 0: unbounded). */
  diskMb: number;
  /** RLIMIT_NPROC: the most processes and threads the unit's user may have. */
  maxProcesses: number;
  /**
   * CPUs the unit may run on, its CPU limit (no cgroup): set on bwrap from outside, and the seccomp filter
   * refuses sched_setaffinity inside. Undefined: all of the agent's.
   */
  cpus?: readonly number[];
  /** More read-only directories (source → dest), e.g. a Python environment. */
  readOnly?: readonly { source: string; dest: string }[];
  /** Working directory inside (default SANDBOX_PATHS.package). */
  cwd?: string;
  /** bwrap writes JSON status here; `exit-code` only once the sandbox was set up and its command started. */
  statusFd?: number;
  /** Mount the work directory's `checkpoints` (writable) and `resume` (read-only) too: a unit's run, not a build step. */
  checkpointDirs?: boolean;
}

const MIB = 1024 * 1024;

/** `0,2-5` from [0, 2, 3, 4, 5]. */
export function cpuListText(cpus: readonly number[]): string {
  const sorted = [...new Set(cpus)].sort((a, b) => a - b);
  const parts: string[] = [];
  for (let i = 0; i < sorted.length; ) {
    let j = i;
    while (j + 1 < sorted.length && sorted[j + 1] === (sorted[j] as number) + 1) j++;
    parts.push(i === j ? `${sorted[i]}` : `${sorted[i]}-${sorted[j]}`);
    i = j + 1;
  }
  return parts.join(",");
}

/**
 * The bwrap arguments (everything after `bwrap`) that run `spec.command` in the unit's sandbox: its options,
 * `--`, and the chain it runs. Pure: the same host and spec give the same command line. Units are started
 * with {@link bubblewrapLaunch}, which hands the same arguments over without showing them (and pins CPUs).
 */
export function bubblewrapArgs(host: SandboxHost, spec: UnitSandboxSpec): string[] {
  return [...bubblewrapOptions(host, spec), "--", ...sandboxChain(host, spec)];
}

/** bwrap's options: the namespaces, the mounts and where the chain starts. */
function bubblewrapOptions(host: SandboxHost, spec: UnitSandboxSpec): string[] {
  const uid = String(spec.uid);
  const args: string[] = spec.statusFd !== undefined ? ["--json-status-fd", String(spec.statusFd)] : [];
  if (host.seccompArch !== undefined) args.push("--seccomp", String(SANDBOX_SECCOMP_FD));
  if (!host.asRoot) args.push("--unshare-user", "--uid", uid, "--gid", uid, "--disable-userns");
  args.push(
    "--unshare-pid",
    "--unshare-net",
    "--unshare-ipc",
    "--unshare-uts",
    "--unshare-cgroup-try",
    ...(host.setsHostname ? ["--hostname", SANDBOX_HOSTNAME] : []),
    // The agent dying (even by SIGKILL) takes the sandbox's init with it, and the kernel the rest.
    "--die-with-parent",
    "--new-session",
    "--clearenv",
  );
  // The file systems of its own first, so that a bind below them (an interpreter under /tmp) stays visible.
  args.push("--proc", "/proc", "--dev", "/dev");
  const tmpfsBytes = String((spec.memoryMb > 0 ? spec.memoryMb : DEFAULT_TMPFS_MB) * MIB);
  args.push("--perms", "1777", "--size", tmpfsBytes, "--tmpfs", "/tmp");
  args.push("--perms", "1777", "--size", tmpfsBytes, "--tmpfs", "/dev/shm");
  // bwrap would give the directories it makes on the way to a mount point the modes of the host's
  // (a 0700 parent of a venv would lock the unit out): they are made 0755 first.
  const binds = [...host.system.flatMap((m) => (m.kind === "ro-bind" ? [m.dest] : [])), ...(spec.readOnly ?? []).map((r) => r.dest)];
  for (const dir of parentDirectories(binds)) args.push("--perms", "0755", "--dir", dir);
  for (const m of host.system) {
    if (m.kind === "symlink") args.push("--symlink", m.target, m.dest);
    else args.push("--ro-bind", m.source, m.dest);
  }
  // Its /dev is bwrap's own (null, zero, random, tty …); of the GPUs, only the unit's own devices are added.
  const gpu = spec.gpuDevices.length > 0;
  const devices = gpu ? [...spec.gpuDevices, ...host.nvidiaControlDevices] : [];
  // bwrap would make /dev/nvidia-caps 0700 (root's): the unit could not open the capability devices.
  for (const dir of parentDirectories(devices).filter((d) => d !== "/dev")) args.push("--perms", "0755", "--dir", dir);
  for (const device of devices) args.push("--dev-bind", hostDevicePath(host, device), device);
  // The CUDA driver and NVML read the PCI tree in /sys (as in a container, read-only); a CPU unit sees
  // only the CPU topology its numerical libraries size their thread pools by.
  if (gpu) args.push("--ro-bind", "/sys", "/sys");
  else args.push("--ro-bind-try", "/sys/devices/system/cpu", "/sys/devices/system/cpu", "--ro-bind-try", "/sys/devices/system/node", "/sys/devices/system/node");
  for (const file of ["passwd", "group", "hosts"]) args.push("--ro-bind", path.join(spec.etcDir, file), `/etc/${file}`);
  // Mount points cannot be renamed or replaced, so a unit cannot swap output/ for a link the agent would follow.
  args.push("--bind", spec.workDir, SANDBOX_PATHS.home);
  for (const dir of ["package", "dataset", "inputs", "output"] as const) {
    args.push(dir === "output" ? "--bind" : "--ro-bind", path.join(spec.workDir, dir), SANDBOX_PATHS[dir]);
  }
  if (spec.checkpointDirs === true) {
    args.push("--bind", path.join(spec.workDir, "checkpoints"), SANDBOX_PATHS.checkpoints, "--ro-bind", path.join(spec.workDir, "resume"), SANDBOX_PATHS.resume);
  }
  for (const extra of spec.readOnly ?? []) args.push("--ro-bind", extra.source, extra.dest);
  args.push("--chdir", spec.cwd ?? SANDBOX_PATHS.package);
  return args;
}

/** What bwrap runs: the trusted steps first, with an empty environment; the unit's code starts only after setpriv. */
function sandboxChain(host: SandboxHost, spec: UnitSandboxSpec): string[] {
  const uid = String(spec.uid);
  const args = [host.tools.prlimit, `--nproc=${spec.maxProcesses}`];
  if (spec.diskMb > 0) args.push(`--fsize=${spec.diskMb * MIB}`);
  args.push("--");
  if (host.asRoot) {
    args.push(host.tools.setpriv, "--reuid", uid, "--regid", uid, "--clear-groups", "--inh-caps=-all", "--bounding-set=-all", "--no-new-privs", "--");
  } else {
    args.push(host.tools.setpriv, "--no-new-privs", "--");
  }
  args.push(host.tools.env, "-i", ...Object.entries(spec.env).map(([k, v]) => `${k}=${v}`), spec.command, ...spec.args);
  return args;
}

/** The descriptor bwrap reads its options from (`--args`); 3 is left to `statusFd`. */
export const SANDBOX_OPTIONS_FD = 4;
/** The descriptor bwrap reads the seccomp filter from (`--seccomp`). */
export const SANDBOX_SECCOMP_FD = 5;

/** Bytes a child reads on one of its descriptors, which is closed after them. */
export interface LaunchInput {
  fd: number;
  data: Buffer;
}

/** How bwrap is started for one sandbox: a command line that shows nothing, and what it reads. */
export interface BubblewrapLaunch {
  /** The program to start: bwrap, or, for a unit pinned to CPUs, `taskset`, which sets the pin and execs bwrap. */
  command: string;
  /**
   * The command's arguments. bwrap's own (after its name) are the same for every sandbox, and all a
   * process inside reads of them; taskset's are gone once it has exec'd bwrap.
   */
  args: string[];
  /**
   * Its options, NUL-separated, on {@link SANDBOX_OPTIONS_FD}; the chain, as a shell script, on stdin; the
   * seccomp filter on {@link SANDBOX_SECCOMP_FD}.
   */
  inputs: LaunchInput[];
}

/** A shell word that stands for `value` exactly (single quotes: nothing inside them is special). */
function shellQuote(value: string): string {
  return `'${value.replaceAll("'", `'\\''`)}'`;
}

/**
 * The unit's sandbox as {@link bubblewrapArgs} describes it, handed to bwrap so that every process inside
 * reads `bwrap --args 4 -- sh -s` as its init's command line, and nothing of the host's paths or of the
 * unit's environment. bwrap takes its options from a pipe but the command from its argv, so the command
 * is a shell reading the chain from stdin; it execs the chain with stdin from /dev/null and the status
 * descriptor closed, leaving the unit no way back to the agent. Pure, like bubblewrapArgs.
 * @throws Error when an argument holds a NUL, which neither a NUL-separated option nor an argument can.
 */
export function bubblewrapLaunch(host: SandboxHost, spec: UnitSandboxSpec): BubblewrapLaunch {
  const options = bubblewrapOptions(host, spec);
  const chain = sandboxChain(host, spec);
  if ([...options, ...chain].some((arg) => arg.includes("\0"))) throw new Error("a sandbox argument holds a NUL character");
  const closeStatus = spec.statusFd !== undefined ? ` ${spec.statusFd}>&-` : "";
  const bwrapArgs = ["--args", String(SANDBOX_OPTIONS_FD), "--", host.tools.sh, "-s"];
  const pinned = spec.cpus !== undefined && spec.cpus.length > 0;
  const inputs: LaunchInput[] = [
    { fd: 0, data: Buffer.from(`exec ${chain.map(shellQuote).join(" ")} </dev/null${closeStatus}\n`) },
    { fd: SANDBOX_OPTIONS_FD, data: Buffer.from(options.map((o) => `${o}\0`).join("")) },
  ];
  if (host.seccompArch !== undefined) inputs.push({ fd: SANDBOX_SECCOMP_FD, data: seccompFilter({ arch: host.seccompArch, denyAffinityChange: pinned }) });
  if (!pinned) return { command: host.tools.bwrap, args: bwrapArgs, inputs };
  return { command: host.tools.taskset, args: ["--cpu-list", cpuListText(spec.cpus ?? []), host.tools.bwrap, ...bwrapArgs], inputs };
}

/**
 * spawn's `stdio` for a child that reads `inputs`: a pipe for each of them, `others` for stdin, stdout and
 * stderr where no input takes them, and `ignore` for the descriptors between.
 */
export function stdioWithInputs(inputs: readonly LaunchInput[], others: readonly ("pipe" | "ignore")[]): ("pipe" | "ignore")[] {
  const last = Math.max(others.length - 1, ...inputs.map((i) => i.fd));
  return Array.from({ length: last + 1 }, (_, fd) => (inputs.some((i) => i.fd === fd) ? "pipe" : (others[fd] ?? "ignore")));
}

/** Writes each input into its pipe of a spawned child and closes it; a child that is gone already reads nothing. */
export function writeInputs(child: ChildProcess, inputs: readonly LaunchInput[]): void {
  for (const { fd, data } of inputs) {
    const pipe = child.stdio[fd] as NodeJS.WritableStream | null | undefined;
    if (pipe === null || pipe === undefined) continue;
    (pipe as NodeJS.WritableStream & NodeJS.EventEmitter).on("error", () => {});
    pipe.end(data);
  }
}

/** Every ancestor directory of `paths` but `/`, each once, parents before children. */
export function parentDirectories(paths: readonly string[]): string[] {
  const dirs = new Set<string>();
  for (const p of paths) {
    const parts = path.posix.dirname(p).split("/").filter((x) => x !== "");
    for (let i = 1; i <= parts.length; i++) dirs.add(`/${parts.slice(0, i).join("/")}`);
  }
  return [...dirs].sort((a, b) => a.split("/").length - b.split("/").length || a.localeCompare(b));
}

/** The passwd, group and hosts files a unit sees: its own user, no account of the host. */
export async function writeSandboxEtc(dir: string, uid: number): Promise<void> {
  await mkdir(dir, { recursive: true, mode: 0o755 });
  const files: Record<string, string> = {
    passwd: `root:x:0:0:root:/root:/usr/sbin/nologin\nunit:x:${uid}:${uid}:compute unit:${SANDBOX_PATHS.home}:/usr/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n`,
    group: `root:x:0:\nunit:x:${uid}:\nnogroup:x:65534:\n`,
    hosts: `127.0.0.1\tlocalhost\n127.0.1.1\t${SANDBOX_HOSTNAME}\n::1\tlocalhost ip6-localhost ip6-loopback\n`,
  };
  for (const [name, text] of Object.entries(files)) await writeFile(path.join(dir, name), text, { mode: 0o644 });
}

/**
 * Hands out user ids to running units so that no two share one, rotating through the range so an id is
 * not reused right after its unit ended.
 */
export class UnitUidAllocator {
  private readonly inUse = new Set<number>();
  private next = 0;
  private readonly base: number;
  private readonly slots: number;

  constructor(base: number = DEFAULT_UNIT_UID_BASE, slots: number = UNIT_UID_SLOTS) {
    this.base = base;
    this.slots = slots;
  }

  /** A uid no running unit has. */
  take(): number {
    for (let tried = 0; tried < this.slots; tried++) {
      const uid = this.base + (this.next++ % this.slots);
      if (!this.inUse.has(uid)) {
        this.inUse.add(uid);
        return uid;
      }
    }
    throw new Error(`all ${this.slots} unit user ids are in use`);
  }

  release(uid: number): void {
    this.inUse.delete(uid);
  }
}

/** `/dev/nvidia<minor>` and UUID of each GPU, from the driver's `/proc/driver/nvidia/gpus/<bus>/information`. */
export interface NvidiaGpuNode {
  uuid: string;
  minor: number;
}

/** Parses one `information` file of the NVIDIA driver; undefined without a UUID and a minor number. */
export function parseNvidiaGpuInformation(text: string): NvidiaGpuNode | undefined {
  const field = (name: string) => text.match(new RegExp(`^${name}:\\s*(\\S+)\\s*$`, "m"))?.[1];
  const uuid = field("GPU UUID");
  const minor = Number(field("Device Minor"));
  if (uuid === undefined || !Number.isInteger(minor) || minor < 0) return undefined;
  return { uuid, minor };
}

/** Every GPU the NVIDIA driver knows, read from `dir` (none without the driver). */
export async function nvidiaGpuNodes(dir = "/proc/driver/nvidia/gpus"): Promise<NvidiaGpuNode[]> {
  const buses = await readdir(dir).catch(() => []);
  const nodes: NvidiaGpuNode[] = [];
  for (const bus of buses) {
    const node = parseNvidiaGpuInformation(await readFile(path.join(dir, bus, "information"), "utf8").catch(() => ""));
    if (node !== undefined) nodes.push(node);
  }
  return nodes;
}

/** The NVIDIA control devices a GPU unit needs besides its GPUs' own nodes (and `/dev/nvidia-caps/*`). */
export const NVIDIA_CONTROL_DEVICES = ["/dev/nvidiactl", "/dev/nvidia-uvm", "/dev/nvidia-uvm-tools", "/dev/nvidia-modeset"] as const;

/** The host's file for a device the sandbox names `/dev/…`. */
function hostDevicePath(host: Pick<SandboxHost, "devRoot">, device: string): string {
  const devRoot = host.devRoot ?? "/dev";
  return devRoot === "/dev" ? device : path.join(devRoot, path.posix.relative("/dev", device));
}

/**
 * The NVIDIA control devices that exist under `devRoot`, named as the sandbox sees them: those of
 * {@link NVIDIA_CONTROL_DEVICES}, and every capability device in `nvidia-caps/` (MIG and the like).
 */
export async function nvidiaControlDevices(devRoot = "/dev"): Promise<string[]> {
  const found: string[] = [];
  for (const device of NVIDIA_CONTROL_DEVICES) {
    if ((await lstat(hostDevicePath({ devRoot }, device)).catch(() => undefined)) !== undefined) found.push(device);
  }
  const caps = await readdir(path.join(devRoot, "nvidia-caps")).catch(() => [] as string[]);
  for (const name of caps.sort()) found.push(`/dev/nvidia-caps/${name}`);
  return found;
}

/** Top-level system directories: bound read-only when they are directories, mirrored when symlinks (merged /usr). */
const SYSTEM_DIRS = ["/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"];
/** What of /etc programs need: the dynamic linker's cache, time zone, certificates, alternatives. Not passwd, hosts, … */
const SYSTEM_ETC = [
  "/etc/alternatives",
  "/etc/ld.so.cache",
  "/etc/ld.so.conf",
  "/etc/ld.so.conf.d",
  "/etc/localtime",
  "/etc/timezone",
  "/etc/nsswitch.conf",
  "/etc/ssl",
  "/etc/ca-certificates",
  "/etc/pki",
  "/etc/mime.types",
  "/etc/fonts",
];

/** True when `inner` is `outer` or below it. */
function isWithin(inner: string, outer: string): boolean {
  const rel = path.relative(outer, inner);
  return rel === "" || (!rel.startsWith("..") && !path.isAbsolute(rel));
}

/** The system part of the sandbox root, from what exists on this machine. */
export async function systemMounts(): Promise<SystemMount[]> {
  const etcPython = (await readdir("/etc").catch(() => [])).filter((n) => /^python3(\.\d+)?$/.test(n)).map((n) => `/etc/${n}`);
  const mounts: SystemMount[] = [];
  for (const p of [...SYSTEM_DIRS, ...SYSTEM_ETC, ...etcPython]) {
    const st = await lstat(p).catch(() => undefined);
    if (st === undefined) continue;
    if (st.isSymbolicLink()) mounts.push({ kind: "symlink", target: await readlink(p), dest: p });
    else if (st.isDirectory() || st.isFile()) mounts.push({ kind: "ro-bind", source: p, dest: p });
  }
  return mounts;
}

/** Runs a program and returns its stdout, or undefined when it is missing or fails (capabilities.ts's CommandRunner). */
export type ProgramRunner = (file: string, args: readonly string[], env?: NodeJS.ProcessEnv) => Promise<string | undefined>;

const runProgram: ProgramRunner = (file, args, env) =>
  new Promise((resolve) => {
    execFile(file, [...args], { timeout: 10_000, ...(env !== undefined ? { env } : {}) }, (err, stdout) => resolve(err ? undefined : stdout));
  });

/** The first executable `name` in `dirs`, or undefined. */
async function findProgram(name: string, dirs: readonly string[]): Promise<string | undefined> {
  for (const dir of dirs) {
    if (dir === "" || !path.isAbsolute(dir)) continue;
    const file = path.join(dir, name);
    if (await access(file, fsConstants.X_OK).then(() => true, () => false)) return file;
  }
  return undefined;
}

/** Why the sandbox cannot be built here; the message is the reason the node reports. */
export class SandboxUnavailableError extends Error {}

/** Options of prepareSandboxHost. */
export interface SandboxHostOptions {
  asRoot: boolean;
  /** The agent's data directory: no read-only mount may contain it. */
  dataDir: string;
  /** The interpreter units run (absolute, or a name looked up on `unitPathValue`). */
  python: string;
  /** The PATH the interpreter is looked up on (sandbox.ts unitPath). */
  unitPathValue: string;
  /** Injected in tests. */
  run?: ProgramRunner;
  /** Where the host's device files are (default `/dev`). */
  devRoot?: string;
  /** Node's name of the machine's architecture (default `process.arch`): picks the seccomp filter's table. */
  arch?: string;
}

const PYTHON_LAYOUT = "import json, os, sys; print(json.dumps([sys.executable, sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix, os.path.realpath(sys.executable)]))";

/**
 * Finds bwrap and its helpers, the system mounts and the interpreter's real location (asked of the
 * interpreter once, so a pyenv shim or a venv resolves to the directories that must be mounted).
 * @throws SandboxUnavailableError when something the sandbox needs is missing.
 */
export async function prepareSandboxHost(opts: SandboxHostOptions): Promise<SandboxHost> {
  const run = opts.run ?? runProgram;
  const searchDirs = [...SYSTEM_PATH.split(":"), ...opts.unitPathValue.split(":")];
  const bwrap = await findProgram("bwrap", searchDirs);
  if (bwrap === undefined) throw new SandboxUnavailableError("bubblewrap (bwrap) is not installed (Debian: apt-get install bubblewrap)");
  const system = await systemMounts();
  const boundDirs = system.flatMap((m) => (m.kind === "ro-bind" ? [m.source] : []));
  // The helpers run inside the sandbox, so they must come from a mounted system directory.
  const tools: Partial<SandboxTools> = { bwrap };
  for (const name of ["setpriv", "prlimit", "taskset", "env", "sh"] as const) {
    const found = await findProgram(name, SYSTEM_PATH.split(":"));
    const real = found === undefined ? undefined : await realpath(found);
    if (real === undefined || !boundDirs.some((d) => isWithin(real, d))) {
      throw new SandboxUnavailableError(`${name} (util-linux/coreutils/dash) is not installed in a system directory`);
    }
    tools[name] = real;
  }

  const layout = await run(opts.python, ["-c", PYTHON_LAYOUT], { PATH: opts.unitPathValue });
  let python = opts.python;
  const pythonDirs: string[] = [];
  if (layout !== undefined) {
    const [executable, ...prefixes] = JSON.parse(layout) as string[];
    python = executable ?? python;
    const realExecutable = prefixes.pop() ?? python;
    for (const p of [...prefixes, path.dirname(python), path.dirname(realExecutable)]) {
      if (p === "" || pythonDirs.some((d) => isWithin(p, d)) || boundDirs.some((d) => isWithin(p, d))) continue;
      pythonDirs.push(p);
    }
  }
  const dataDir = path.resolve(opts.dataDir);
  for (const dir of [...boundDirs, ...pythonDirs]) {
    if (isWithin(dataDir, dir)) throw new SandboxUnavailableError(`${dir}, mounted into every sandbox, contains the agent's data directory ${dataDir}`);
  }
  const controls = await nvidiaControlDevices(opts.devRoot);
  const arch = seccompArchOf(opts.arch ?? process.arch);
  const pathInside = [...new Set([path.dirname(python), ...SYSTEM_PATH.split(":")])].join(":");
  return {
    asRoot: opts.asRoot,
    tools: tools as SandboxTools,
    system: [...system, ...pythonDirs.map((d): SystemMount => ({ kind: "ro-bind", source: d, dest: d }))],
    python,
    path: pathInside,
    nvidiaControlDevices: controls,
    ...(opts.devRoot !== undefined ? { devRoot: opts.devRoot } : {}),
    setsHostname: true,
    ...(arch !== undefined ? { seccompArch: arch } : {}),
  };
}

/** What the trial sandboxes found: the host layout units get, with a note when it is less than asked, or why none starts. */
export type SandboxProbe = { ok: true; host: SandboxHost; note?: string } | { ok: false; reason: string };

/**
 * Starts one sandbox exactly as a unit's (`trySandbox`). When it fails and a second one without
 * `--hostname` starts, that was the only obstacle (a container's seccomp profile refusing sethostname):
 * units then run without it, and the note says so.
 */
export async function probeSandbox(host: SandboxHost, dataDir: string, uid: number = DEFAULT_UNIT_UID_BASE): Promise<SandboxProbe> {
  const asked = await trySandbox(host, dataDir, uid);
  if (asked === undefined) return { ok: true, host };
  if (!host.setsHostname) return { ok: false, reason: asked };
  const withoutHostname: SandboxHost = { ...host, setsHostname: false };
  const inherited = await trySandbox(withoutHostname, dataDir, uid);
  if (inherited === undefined) {
    return {
      ok: true,
      host: withoutHostname,
      note: `units see the agent's host name, in a UTS namespace still their own, because bwrap could not name the sandbox ${SANDBOX_HOSTNAME} (${asked})`,
    };
  }
  return { ok: false, reason: inherited === asked ? asked : `${asked}; without --hostname: ${inherited}` };
}

/**
 * Starts one sandbox exactly as a unit's (with the interpreter, under a unit uid, in a work directory
 * inside the data directory) and returns undefined when it ran, or why it did not.
 */
async function trySandbox(host: SandboxHost, dataDir: string, uid: number): Promise<string | undefined> {
  const root = path.join(dataDir, "work", ".sandbox-probe");
  const workDir = path.join(root, "work");
  const etcDir = path.join(root, "etc");
  try {
    await mkdir(path.join(dataDir, "work"), { recursive: true, mode: 0o700 });
    await rm(root, { recursive: true, force: true });
    for (const dir of ["package", "dataset", "inputs", "output"]) await mkdir(path.join(workDir, dir), { recursive: true });
    await writeSandboxEtc(etcDir, uid);
    const launch = bubblewrapLaunch(host, {
      workDir,
      etcDir,
      uid,
      command: host.python,
      args: ["-c", "import os; open('/unit/output/ok', 'w').write(str(os.getuid()))"],
      env: { PATH: host.path, HOME: SANDBOX_PATHS.home },
      gpuDevices: [],
      memoryMb: 0,
      diskMb: 0,
      maxProcesses: 64,
    });
    if (host.asRoot) await chownTree(workDir, uid, uid);
    const result = await new Promise<{ code: number | null; stderr: string }>((resolve) => {
      const child = spawn(launch.command, launch.args, { env: {}, stdio: stdioWithInputs(launch.inputs, ["ignore", "ignore", "pipe"]), timeout: 20_000 });
      let stderr = "";
      child.stderr?.on("data", (c: Buffer) => (stderr = (stderr + c.toString()).slice(-2000)));
      child.on("error", (err) => resolve({ code: -1, stderr: err.message }));
      writeInputs(child, launch.inputs);
      child.on("close", (code) => resolve({ code, stderr }));
    });
    if (result.code !== 0) return `a trial sandbox did not start (exit ${result.code}): ${result.stderr.trim() || "no message"}`;
    const written = await readFile(path.join(workDir, "output", "ok"), "utf8").catch(() => "");
    if (written !== String(uid) && host.asRoot) return `a trial sandbox ran as uid ${written || "?"}, not the unit's ${uid}`;
    return undefined;
  } catch (err) {
    return `a trial sandbox could not be prepared: ${err instanceof Error ? err.message : String(err)}`;
  } finally {
    await rm(root, { recursive: true, force: true }).catch(() => {});
  }
}

/** Gives a directory tree to a unit's user (links themselves, never their targets). */
export async function chownTree(dir: string, uid: number, gid: number): Promise<void> {
  await lchown(dir, uid, gid);
  for (const rel of await readdir(dir, { recursive: true })) await lchown(path.join(dir, rel), uid, gid);
}
