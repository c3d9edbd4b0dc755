/**
 * Python environments per package: a package that carries `requirements.txt` at its root runs with a
 * virtual environment built from it, once per distinct requirements, and kept in `<data-dir>/envs/<key>/`.
 *
 * Why a venv, built with the agent interpreter's own pip (`python -m venv --without-pip` + `python -m pip
 * --python <env>/bin/python install`): measured cold on Debian's python 3.11 with two local wheels, 1.2 s
 * against 5.0 s for a venv that installs its own pip (ensurepip), and unlike `pip install --target`/`--prefix`
 * it never uninstalls or shadows anything of the interpreter's own: pip in a venv leaves packages outside the
 * venv alone. An interpreter without pip ≥ 22.3 (which has `--python`) falls back to a venv with its own pip.
 * Every environment also sees the interpreter's own site-packages (a `.pth` file, so it works for an owner's
 * venv as for a system Python): what the owner installed (PyTorch with its CUDA stack) satisfies a
 * requirement without a second copy, and pip installs only what is missing.
 *
 * What pip may do is narrow: `--only-binary :all:` (an sdist would run a stranger's setup.py on the owner's
 * machine, with compilers and network; a wheel is only unpacked, so no customer code runs during a build),
 * the sources the owner configured and nothing else (`--index-url`, `--find-links`, `--no-index` without an
 * index; no pip config file, no user site; in the agent's sandbox the network reaches those sources' origins
 * and nothing else: `sourceOrigins`, build-proxy.ts), `--require-hashes` when every requirement pins its hashes, and
 * requirements that are package names with versions and markers only (URLs, VCS, paths and pip options are
 * refused here too, by finalize's own rules: src/platform/package-requirements.ts).
 *
 * Environment lifecycle, per key (sha256 of the normalized requirements and the interpreter's identity):
 *   absent ─ acquire ─▶ building (one build per key; every acquire of the key waits for it)
 *   building ─ pip ok ─▶ ready (the scratch directory's `env/` renamed to `<key>`: an incomplete environment never has a key's name)
 *   building ─ pip fails ─▶ absent (each waiter gets the resolver's message; failures are not cached)
 *   ready ─ acquire/release ─▶ ready (last use stamped on `gpu-agent-env.json`)
 *   ready ─ over `maxBytes`, least recently used, no unit holds it ─▶ absent
 * Leftover `.build-*`/`.trash-*` directories (an agent killed mid-build) are removed when the cache opens.
 */
import { spawn } from "node:child_process";
import { createHash } from "node:crypto";
import { chmod, lchown, lstat, mkdir, readdir, readFile, rename, rm, utimes, writeFile } from "node:fs/promises";
import { constants as osConstants } from "node:os";
import path from "node:path";
import type { Clock } from "../platform/clock.ts";
import { logicalLines, pythonVersionProblem, requirementsFileName, requirementsMaxBytes, requirementsProblem } from "../platform/package-requirements.ts";
import { monotonicMs } from "../platform/clock.ts";
import { originOf } from "./build-proxy.ts";
import type { AgentLogger } from "./logger.ts";
import { stdioWithInputs, writeInputs } from "./unit-sandbox.ts";
import type { LaunchInput } from "./unit-sandbox.ts";

/** The package manifest; its optional `python` names the Python version the package needs. */
export const MANIFEST_FILE = "gpu-agent.json";
/** Default bound of the environment cache (`--env-cache-mb`). */
export const DEFAULT_ENV_CACHE_MB = 10240;
/** Longest an environment build may take before it is stopped (a node-side bound, not the unit's deadline). */
export const DEFAULT_BUILD_TIMEOUT_MS = 30 * 60_000;

const MAX_REQUIREMENTS = 500;
const MAX_MESSAGE_CHARS = 1500;
const MESSAGE_TAIL_LINES = 20;
const OUTPUT_TAIL_BYTES = 64 * 1024;
const MARKER_FILE = "gpu-agent-env.json";
const BASE_SITE_PTH = "_gpu_agent_interpreter_site.pth";
const keyName = /^[0-9a-f]{64}$/;
/** pip ≥ 22.3 can install into another interpreter's environment (`--python`). */
const PIP_WITH_PYTHON_OPTION: readonly [number, number] = [22, 3];

/** Where the owner lets pip fetch packages from. */
export interface PackageSources {
  /** `--pip-index-url`: a PEP 503 index (the build then reaches its origin, and only it: build-proxy.ts). */
  indexUrl?: string | undefined;
  /** `--find-links`: directories of wheels (an offline wheelhouse, bound read-only into the build). */
  findLinks: readonly string[];
  /**
   * `--pip-allow-host`: more `host:port` origins the build may reach (build-proxy.ts allowedHostOrigin), for
   * an index whose pages link to files on another host. Only the owner can vouch for such a host.
   */
  allowedHosts?: readonly string[];
}

/**
 * Why a package's environment could not be made: `customer` for what the package asked (its requirements,
 * its Python version) — the unit fails (FAILED) with this message, which names no path of the node — and
 * `node` for what the node lacks (no venv module, a full disk).
 */
export class PythonEnvError extends Error {
  readonly fault: "customer" | "node";
  constructor(fault: "customer" | "node", message: string) {
    super(message);
    this.name = "PythonEnvError";
    this.fault = fault;
  }
}

/** One command of a build (the interpreter check, the venv, pip), for the agent to run in its sandbox. */
export interface EnvBuildCommand {
  command: string;
  args: readonly string[];
  /**
   * The complete environment: nothing of the agent's is inherited. Values under `cwd` (HOME, TMPDIR) name
   * it by its host path: a sandbox that shows `cwd` elsewhere maps them.
   */
  env: Readonly<Record<string, string>>;
  /**
   * The build's scratch directory on the host, the only one it writes. Commands name what is in it by
   * relative paths, so a sandbox may show it anywhere, as long as it is the working directory there.
   */
  cwd: string;
  /** Read by the command besides the system's directories and the interpreter (the wheelhouses), at the same paths. */
  readOnlyDirs: readonly string[];
  /**
   * `host:port` origins the command must reach (the package sources, {@link sourceOrigins}); empty: none.
   * A sandbox lets it reach these and nothing else.
   */
  origins: readonly string[];
  /** What the command reads on its descriptors (a sandbox's options and chain: unit-sandbox.ts bubblewrapLaunch). */
  inputs?: readonly LaunchInput[];
  signal: AbortSignal;
}

/** What a build command did: its exit code and the ends of its output. */
export interface EnvBuildResult {
  exitCode: number;
  stdout: string;
  stderr: string;
  /** Origins outside `origins` it tried to reach and was refused (by the sandbox's proxy). */
  refusedOrigins?: readonly string[];
  /** Why the sandbox cut its network (a bound of the proxy), if it did. */
  networkCut?: string;
}

/** Runs a build command: {@link runBuildCommand}, or the agent's sandbox around it. */
export type EnvBuildRunner = (cmd: EnvBuildCommand) => Promise<EnvBuildResult>;

/** The interpreter environments are built from, as it describes itself. */
export interface InterpreterInfo {
  /** `sys.executable`: the interpreter as the unit's PATH finds it (an owner's venv stays that venv). */
  executable: string;
  /** "3.11.2" */
  version: string;
  /** `sys.version`, build and compiler included: part of the cache key. */
  fullVersion: string;
  /** e.g. "cpython-311" */
  cacheTag: string;
  /** e.g. "linux-x86_64" */
  platform: string;
  /** The interpreter's site-packages directories, which every environment also sees. */
  siteDirs: string[];
  /** pip's version in this interpreter, or "" when it has none. */
  pipVersion: string;
}

/** A ready environment handed to one unit; `release` when the unit is done with it. */
export interface EnvLease {
  key: string;
  /** The interpreter the unit runs with: `<env>/bin/python`. */
  pythonPath: string;
  /** Goes first on the unit's PATH, so `python` and installed commands are the environment's. */
  binDir: string;
  /** Directories the unit's sandbox must show read-only, at the same paths. */
  bindDirs: string[];
  /** Variables the unit gets besides its own. */
  envVars: Record<string, string>;
  /** True when this acquire built it; false when it was ready, or another unit's build was awaited. */
  built: boolean;
  /** Seconds this acquire spent building the environment or waiting for its build; 0 when it was ready. */
  seconds: number;
  release(): Promise<void>;
}

/** A ready environment in the cache. */
export interface EnvEntry {
  key: string;
  sizeBytes: number;
  usedAtMs: number;
}

/** Options of createPythonEnvCache. */
export interface PythonEnvCacheOptions {
  /** `<data-dir>/envs`. */
  dir: string;
  /** Total bytes of ready environments kept; least recently used ones go first past it (0: none kept). */
  maxBytes: number;
  /** The interpreter units run with: an absolute path, or a name looked up on `path`. */
  python: string;
  /** The PATH the interpreter is looked up on (the unit's). */
  path: string;
  sources: PackageSources;
  /** Runs each build command; the agent passes its sandbox, tests a real child process. */
  runBuild?: EnvBuildRunner;
  /** Stamps last use on the file system, so it stays the real clock unless a test controls both. */
  clock: Clock;
  logger: AgentLogger;
  /** Default {@link DEFAULT_BUILD_TIMEOUT_MS}. */
  buildTimeoutMs?: number;
}

/** The node's environments, built on demand and kept under a bound. */
export interface PythonEnvCache {
  readonly dir: string;
  /** The interpreter environments are built from (asked once). */
  interpreter(): Promise<InterpreterInfo>;
  /**
   * The environment for `requirementsText`, built unless ready; `signal` stops this caller's wait, not a
   * build other units may be waiting for.
   * @throws PythonEnvError
   */
  acquire(requirementsText: string, signal: AbortSignal): Promise<EnvLease>;
  /** Ready environments, most recently used first. */
  entries(): Promise<EnvEntry[]>;
}

// ---------------------------------------------------------------- requirements

/** Requirements reduced to what decides the environment. */
export interface NormalizedRequirements {
  /** One requirement a line, whitespace collapsed, sorted, without comments or blank lines. */
  lines: string[];
  /** True when every requirement pins its hashes (`--hash=`): pip then runs with `--require-hashes`. */
  allHashed: boolean;
}

/**
 * Checks requirements.txt with the rules finalize applies (src/platform/package-requirements.ts: names and
 * versions only, `--hash` the only option) and reduces it to what decides the environment: pip's logical
 * lines without comments, whitespace collapsed, hashes lower-cased and sorted, lines sorted and deduplicated.
 * @throws PythonEnvError (customer) naming the first line that is refused
 */
export function normalizeRequirements(text: string): NormalizedRequirements {
  if (Buffer.byteLength(text) > requirementsMaxBytes) {
    throw new PythonEnvError("customer", `${requirementsFileName} is larger than ${requirementsMaxBytes} bytes`);
  }
  const problem = requirementsProblem(text);
  if (problem !== undefined) throw new PythonEnvError("customer", problem);
  const lines = new Set<string>();
  let allHashed = true;
  for (const line of logicalLines(text)) {
    if (line.text === "") continue;
    const words = line.text.split(/\s+/);
    const firstOption = words.findIndex((w) => w.startsWith("-"));
    const requirement = (firstOption < 0 ? words : words.slice(0, firstOption)).join(" ");
    // What follows the requirement is `--hash=alg:hex` or `--hash alg:hex` (requirementsProblem saw to it).
    const hashes = firstOption < 0 ? [] : words.slice(firstOption).filter((w) => w !== "--hash").map((w) => `--hash=${w.replace(/^--hash=/, "").toLowerCase()}`);
    if (hashes.length === 0) allHashed = false;
    lines.add([requirement, ...hashes.sort()].join(" "));
  }
  if (lines.size > MAX_REQUIREMENTS) throw new PythonEnvError("customer", `${requirementsFileName} names more than ${MAX_REQUIREMENTS} requirements`);
  return { lines: [...lines].sort(), allHashed: allHashed && lines.size > 0 };
}

/** The cache key: the same requirements on the same interpreter share one environment. */
export function environmentKey(requirements: NormalizedRequirements, interpreter: InterpreterInfo): string {
  const identity = {
    format: 1,
    requirements: requirements.lines,
    executable: interpreter.executable,
    version: interpreter.fullVersion,
    cacheTag: interpreter.cacheTag,
    platform: interpreter.platform,
  };
  return createHash("sha256").update(JSON.stringify(identity)).digest("hex");
}

/**
 * Where the files of a well-known index live, when not at the index's own origin: PyPI's pages link to
 * files.pythonhosted.org. Another index that serves its files elsewhere needs its file host in front of it.
 */
const INDEX_FILE_ORIGINS: Readonly<Record<string, readonly string[]>> = {
  "pypi.org:443": ["files.pythonhosted.org:443"],
  "test.pypi.org:443": ["test-files.pythonhosted.org:443"],
};

/**
 * The `host:port` origins a build may reach: the index's (and its file host's), any find-links that are
 * URLs, and the hosts the owner allowed.
 */
export function sourceOrigins(sources: PackageSources): string[] {
  const origins = new Set<string>();
  for (const source of [...(sources.indexUrl !== undefined ? [sources.indexUrl] : []), ...sources.findLinks]) {
    const origin = originOf(source);
    if (origin === undefined) continue;
    origins.add(origin);
    for (const files of INDEX_FILE_ORIGINS[origin] ?? []) origins.add(files);
  }
  for (const origin of sources.allowedHosts ?? []) origins.add(origin);
  return [...origins];
}

/** pip's source options: the owner's index, wheelhouses, and never anything else. */
export function sourceArgs(sources: PackageSources): string[] {
  const args: string[] = [];
  if (sources.indexUrl !== undefined) args.push("--index-url", sources.indexUrl);
  else args.push("--no-index");
  for (const dir of sources.findLinks) args.push("--find-links", dir);
  return args;
}

// ---------------------------------------------------------------- the package's Python version

/** True when `requested` (major.minor, "3.11") is the version of `actual` ("3.11.2"). */
export function pythonVersionMatches(requested: string, actual: string): boolean {
  return actual.split(".").slice(0, 2).join(".") === requested;
}

/**
 * The `python` of the package's gpu-agent.json, or undefined when there is none.
 * @throws PythonEnvError (customer) when it is not a major.minor version
 */
export async function requestedPythonVersion(packageDir: string): Promise<string | undefined> {
  const raw = await readPackageFile(packageDir, MANIFEST_FILE);
  if (raw === undefined) return undefined;
  let manifest: unknown;
  try {
    manifest = JSON.parse(raw);
  } catch {
    // The control plane validated the manifest at finalize; its other fields are not the agent's concern.
    return undefined;
  }
  if (typeof manifest !== "object" || manifest === null || !("python" in manifest)) return undefined;
  const python = (manifest as { python: unknown }).python;
  const problem = pythonVersionProblem(python);
  if (problem !== undefined) throw new PythonEnvError("customer", `${MANIFEST_FILE}: ${problem}`);
  return python as string;
}

/** A regular file at the package root, as text; undefined when absent. */
async function readPackageFile(packageDir: string, name: string): Promise<string | undefined> {
  const file = path.join(packageDir, name);
  const st = await lstat(file).catch(() => undefined);
  if (st === undefined) return undefined;
  if (!st.isFile()) throw new PythonEnvError("customer", `${name} must be a regular file`);
  if (st.size > requirementsMaxBytes) throw new PythonEnvError("customer", `${name} is larger than ${requirementsMaxBytes} bytes`);
  return readFile(file, "utf8");
}

/** What a unit runs with when its package declares a Python version or requirements. */
export interface UnitPython {
  /** The environment, when the package has requirements; undefined when it runs with the node's interpreter. */
  lease: EnvLease | undefined;
  /** The interpreter's version ("3.11.2"). */
  version: string;
}

/**
 * Checks the package's `python` against the node's interpreter and, when it carries requirements.txt,
 * acquires its environment. Undefined when the package declares neither (nothing is asked of the interpreter).
 * @throws PythonEnvError
 */
export async function prepareUnitPython(packageDir: string, cache: PythonEnvCache, signal: AbortSignal): Promise<UnitPython | undefined> {
  const requested = await requestedPythonVersion(packageDir);
  const requirementsText = await readPackageFile(packageDir, requirementsFileName);
  if (requested === undefined && requirementsText === undefined) return undefined;
  const interpreter = await cache.interpreter();
  if (requested !== undefined && !pythonVersionMatches(requested, interpreter.version)) {
    throw new PythonEnvError("customer", `the package needs Python ${requested} (${MANIFEST_FILE} "python"); this node runs Python ${interpreter.version}`);
  }
  if (requirementsText === undefined || normalizeRequirements(requirementsText).lines.length === 0) {
    return { lease: undefined, version: interpreter.version };
  }
  return { lease: await cache.acquire(requirementsText, signal), version: interpreter.version };
}

// ---------------------------------------------------------------- messages

/**
 * The end of pip's output as a customer may read it: the node's paths replaced by what they stand for
 * (`replacements`, longest first), any other absolute path by `<path>`, credentials in URLs masked, pip's
 * notices dropped, at most {@link MESSAGE_TAIL_LINES} lines and {@link MAX_MESSAGE_CHARS} characters.
 */
export function customerMessage(output: string, replacements: ReadonlyArray<readonly [string, string]>): string {
  let text = output;
  for (const [from, to] of [...replacements].filter(([from]) => from !== "").sort((a, b) => b[0].length - a[0].length)) {
    text = text.split(from).join(to);
  }
  text = text
    .replace(/:\/\/[^/\s:@]+:[^/\s@]+@/g, "://***@")
    .replace(/(?<![\w:/.~>-])\/(?:[^\s'"():,;]+)/g, "<path>");
  const lines = text
    .split(/\r?\n/)
    .map((l) => l.trimEnd())
    .filter((l) => l !== "" && !l.startsWith("[notice]"));
  const tail = lines.slice(-MESSAGE_TAIL_LINES).join("\n");
  return tail.length > MAX_MESSAGE_CHARS ? `…${tail.slice(-MAX_MESSAGE_CHARS)}` : tail;
}

// ---------------------------------------------------------------- running commands

/**
 * Runs a build command as a plain child process in its own process group (killed as a whole when the
 * signal aborts), keeping the last 64 KiB of each stream. A command that cannot start exits 127.
 */
export function runBuildCommand(cmd: EnvBuildCommand): Promise<EnvBuildResult> {
  return new Promise((resolve) => {
    if (cmd.signal.aborted) return resolve({ exitCode: 130, stdout: "", stderr: "aborted before it started" });
    const inputs = cmd.inputs ?? [];
    const child = spawn(cmd.command, [...cmd.args], { cwd: cmd.cwd, env: cmd.env, detached: true, stdio: stdioWithInputs(inputs, ["ignore", "pipe", "pipe"]) });
    writeInputs(child, inputs);
    const out = { stdout: "", stderr: "" };
    const keep = (stream: "stdout" | "stderr") => (chunk: Buffer) => {
      const next = out[stream] + chunk.toString("utf8");
      out[stream] = next.length > OUTPUT_TAIL_BYTES ? next.slice(-OUTPUT_TAIL_BYTES) : next;
    };
    child.stdout?.on("data", keep("stdout"));
    child.stderr?.on("data", keep("stderr"));
    const onAbort = () => {
      try {
        if (child.pid !== undefined) process.kill(-child.pid, "SIGKILL");
      } catch {
        // Already gone.
      }
    };
    cmd.signal.addEventListener("abort", onAbort, { once: true });
    child.once("error", (err) => {
      cmd.signal.removeEventListener("abort", onAbort);
      resolve({ exitCode: 127, stdout: out.stdout, stderr: `${out.stderr}${err.message}` });
    });
    child.once("close", (code, sig) => {
      cmd.signal.removeEventListener("abort", onAbort);
      resolve({ exitCode: code ?? 128 + (sig !== null ? (osConstants.signals[sig] ?? 0) : 0), ...out });
    });
  });
}

// ---------------------------------------------------------------- the cache

const INSPECT_PY = `
import json, os, sys, sysconfig
try:
    import pip
    pip_version = pip.__version__
except Exception:
    pip_version = ""
print(json.dumps({
    "executable": sys.executable,
    "version": "%d.%d.%d" % sys.version_info[:3],
    "fullVersion": sys.version,
    "cacheTag": sys.implementation.cache_tag or "",
    "platform": sysconfig.get_platform(),
    "siteDirs": [p for p in sys.path if os.path.basename(p) in ("site-packages", "dist-packages") and os.path.isdir(p)],
    "pipVersion": pip_version,
}))
`;

/** The environment's site-packages, relative to the environment (the path a sandboxed build sees may not be the host's). */
const SITE_DIR_PY = "import os, site, sys; print(os.path.relpath(site.getsitepackages()[0], sys.prefix))";
/** The environment's interpreter, as build commands name it from the scratch directory. */
const ENV_PYTHON = "./env/bin/python";

function versionAtLeast(version: string, min: readonly [number, number]): boolean {
  const [major = 0, minor = 0] = version.split(".").map((p) => Number.parseInt(p, 10));
  return major > min[0] || (major === min[0] && minor >= min[1]);
}

interface Marker {
  key: string;
  sizeBytes: number;
  builtAtMs: number;
  python: string;
  requirements: string[];
}

/** Creates the cache; nothing touches the disk before the first call. */
export function createPythonEnvCache(opts: PythonEnvCacheOptions): PythonEnvCache {
  const { dir, clock, logger } = opts;
  const runBuild = opts.runBuild ?? runBuildCommand;
  const buildTimeoutMs = opts.buildTimeoutMs ?? DEFAULT_BUILD_TIMEOUT_MS;
  const building = new Map<string, Promise<void>>();
  const holders = new Map<string, number>();
  let opened: Promise<void> | undefined;
  let inspected: Promise<InterpreterInfo> | undefined;
  let buildCounter = 0;
  // Eviction and "is it ready? then hold it" take turns, so a unit never gets a directory being removed.
  let turn: Promise<unknown> = Promise.resolve();
  const exclusive = <T>(fn: () => Promise<T>): Promise<T> => {
    const run = turn.then(fn);
    turn = run.catch(() => {});
    return run;
  };

  const baseEnv = (home: string): Record<string, string> => ({
    PATH: opts.path,
    LANG: "C.UTF-8",
    HOME: home,
    // pip unpacks wheels in a temporary directory: the scratch's own, not a sandbox's small /tmp.
    TMPDIR: path.join(home, "tmp"),
    // The owner's pip.conf and user site must not add sources or packages the flags do not name.
    PIP_CONFIG_FILE: "/dev/null",
    PYTHONNOUSERSITE: "1",
    PYTHONDONTWRITEBYTECODE: "1",
  });

  const open = () => {
    opened ??= (async () => {
      await mkdir(dir, { recursive: true, mode: 0o711 });
      // Units (another user when there is no sandbox) pass through to their environment but cannot list the others.
      await chmod(dir, 0o711);
      for (const name of await readdir(dir)) {
        if (name.startsWith(".build-") || name.startsWith(".trash-")) await rm(path.join(dir, name), { recursive: true, force: true });
        else if (keyName.test(name) && (await readMarker(name)) === undefined) await rm(path.join(dir, name), { recursive: true, force: true });
      }
    })();
    return opened;
  };

  async function readMarker(key: string): Promise<(Marker & { usedAtMs: number }) | undefined> {
    const file = path.join(dir, key, MARKER_FILE);
    try {
      const [text, st] = await Promise.all([readFile(file, "utf8"), lstat(file)]);
      const marker = JSON.parse(text) as Marker;
      if (marker.key !== key || typeof marker.sizeBytes !== "number") return undefined;
      return { ...marker, usedAtMs: st.mtimeMs };
    } catch {
      return undefined;
    }
  }

  const touch = async (key: string) => {
    const now = new Date(clock.now());
    await utimes(path.join(dir, key, MARKER_FILE), now, now).catch(() => {});
  };

  const interpreter = () => {
    inspected ??= (async () => {
      // The owner's own interpreter, asked about itself with no input from any package: no sandbox needed.
      const result = await runBuildCommand({
        command: opts.python,
        args: ["-s", "-c", INSPECT_PY],
        env: baseEnv("/"),
        cwd: "/",
        readOnlyDirs: [],
        origins: [],
        signal: new AbortController().signal,
      });
      if (result.exitCode !== 0) {
        inspected = undefined;
        throw new PythonEnvError("node", `this node's Python does not start: ${customerMessage(result.stderr, [])}`);
      }
      return JSON.parse(result.stdout.trim().split("\n").pop() ?? "{}") as InterpreterInfo;
    })();
    return inspected;
  };

  const entries = async (): Promise<EnvEntry[]> => {
    await open();
    const out: EnvEntry[] = [];
    for (const name of await readdir(dir)) {
      if (!keyName.test(name)) continue;
      const marker = await readMarker(name);
      if (marker !== undefined) out.push({ key: name, sizeBytes: marker.sizeBytes, usedAtMs: marker.usedAtMs });
    }
    return out.sort((a, b) => b.usedAtMs - a.usedAtMs || (a.key < b.key ? -1 : 1));
  };

  /** Drops least recently used environments no unit holds until the rest fit the bound. */
  const evict = () => exclusive(async () => {
    const all = await entries();
    let total = all.reduce((n, e) => n + e.sizeBytes, 0);
    for (const victim of [...all].reverse()) {
      if (total <= opts.maxBytes) break;
      if ((holders.get(victim.key) ?? 0) > 0 || building.has(victim.key)) continue;
      // Renamed first: a half-removed environment must never carry its key's name.
      const trash = path.join(dir, `.trash-${victim.key}-${buildCounter++}`);
      await rename(path.join(dir, victim.key), trash);
      await rm(trash, { recursive: true, force: true });
      total -= victim.sizeBytes;
      logger.info({ env: victim.key, size_bytes: victim.sizeBytes }, "python environment evicted");
    }
  });

  /**
   * Builds in a scratch directory `.build-<key>-<n>/` holding the requirements and `env/` (the venv), each
   * command run from the scratch directory on relative paths (a sandbox may show it elsewhere); the finished
   * `env/` is then renamed to `<key>/`.
   */
  async function build(key: string, requirementsText: string, requirements: NormalizedRequirements, info: InterpreterInfo): Promise<void> {
    const scratch = path.join(dir, `.build-${key}-${buildCounter++}`);
    const envDir = path.join(scratch, "env");
    const stop = new AbortController();
    const timer = new AbortController();
    clock.sleep(buildTimeoutMs, timer.signal).then(
      () => stop.abort(new Error("build timeout")),
      () => {},
    );
    const step = (command: string, args: string[], origins: readonly string[] = []) =>
      runBuild({ command, args, env: baseEnv(scratch), cwd: scratch, readOnlyDirs: opts.sources.findLinks.filter((d) => originOf(d) === undefined), origins, signal: stop.signal });
    const scrub = (output: string) =>
      customerMessage(output, [
        [envDir, "<env>"],
        [scratch, "<build>"],
        [dir, "<envs>"],
        ...opts.sources.findLinks.map((d) => [d, "<wheelhouse>"] as const),
        ...(opts.sources.indexUrl !== undefined ? [[opts.sources.indexUrl, "<index>"] as const] : []),
      ]);
    try {
      await mkdir(path.join(scratch, "tmp"), { recursive: true, mode: 0o755 });
      const ownPip = versionAtLeast(info.pipVersion, PIP_WITH_PYTHON_OPTION);
      const venv = await step(info.executable, ["-s", "-m", "venv", ...(ownPip ? ["--without-pip"] : []), "env"]);
      if (venv.exitCode !== 0) throw new PythonEnvError("node", `this node cannot create Python environments: ${scrub(venv.stderr || venv.stdout)}`);
      const site = await step(ENV_PYTHON, ["-c", SITE_DIR_PY]);
      if (site.exitCode !== 0) throw new PythonEnvError("node", `the new environment does not start: ${scrub(site.stderr)}`);
      await writeFile(path.join(envDir, site.stdout.trim(), BASE_SITE_PTH), `${info.siteDirs.join("\n")}\n`, { mode: 0o644 });
      await writeFile(path.join(scratch, requirementsFileName), requirementsText, { mode: 0o644 });
      const pip = ownPip ? [info.executable, "-s", "-m", "pip", "--python", ENV_PYTHON] : [ENV_PYTHON, "-m", "pip"];
      const install = await step(
        pip[0] as string,
        [
          ...pip.slice(1),
          "install",
          "--no-input",
          "--disable-pip-version-check",
          "--no-cache-dir",
          "--root-user-action=ignore",
          "--only-binary",
          ":all:",
          ...sourceArgs(opts.sources),
          ...(requirements.allHashed ? ["--require-hashes"] : []),
          "-r",
          requirementsFileName,
        ],
        sourceOrigins(opts.sources),
      );
      // The node's sources were too slow (or its disk): another node may do better, at no cost to the customer.
      if (stop.signal.aborted) throw new PythonEnvError("node", `the Python environment took longer than ${Math.round(buildTimeoutMs / 1000)} s to build`);
      if (install.exitCode !== 0) {
        const output = `${install.stdout}\n${install.stderr}`;
        if (/No space left on device/.test(output)) throw new PythonEnvError("node", "the node ran out of disk space building the Python environment");
        const hints = [
          ...(opts.sources.indexUrl === undefined && opts.sources.findLinks.length === 0 ? ["this node has no package index: only packages its Python already has can be required"] : []),
          ...(install.refusedOrigins !== undefined && install.refusedOrigins.length > 0
            ? [`the build may reach only this node's package sources; refused: ${install.refusedOrigins.join(", ")}`]
            : []),
          ...(install.networkCut !== undefined ? [install.networkCut] : []),
        ];
        const hint = hints.map((h) => `\n(${h})`).join("");
        throw new PythonEnvError("customer", `building the Python environment from ${requirementsFileName} failed:\n${scrub(install.stderr || install.stdout)}${hint}`);
      }
      const sizeBytes = await settleTree(envDir);
      const marker: Marker = { key, sizeBytes, builtAtMs: clock.now(), python: info.version, requirements: requirements.lines };
      await writeFile(path.join(envDir, MARKER_FILE), `${JSON.stringify(marker)}\n`, { mode: 0o644 });
      await rename(envDir, path.join(dir, key));
    } finally {
      timer.abort();
      await rm(scratch, { recursive: true, force: true }).catch(() => {});
    }
  }

  const acquire = async (requirementsText: string, signal: AbortSignal): Promise<EnvLease> => {
    const started = monotonicMs();
    const requirements = normalizeRequirements(requirementsText);
    const info = await interpreter();
    await open();
    const key = environmentKey(requirements, info);
    const ready = await exclusive(async () => {
      // Held from here, so no eviction removes it between this check (or its build) and the unit's end.
      holders.set(key, (holders.get(key) ?? 0) + 1);
      return (await readMarker(key)) !== undefined;
    });
    let released = false;
    const release = async () => {
      if (released) return;
      released = true;
      const left = (holders.get(key) ?? 1) - 1;
      if (left > 0) holders.set(key, left);
      else holders.delete(key);
      await touch(key);
      await evict().catch((err: unknown) => logger.warn({ err: err instanceof Error ? err.message : String(err) }, "python environment eviction failed"));
    };
    try {
      let built = false;
      if (!ready) {
        let pending = building.get(key);
        if (pending === undefined) {
          built = true;
          logger.info({ env: key, requirements: requirements.lines.length }, "building python environment");
          pending = build(key, requirementsText, requirements, info).finally(() => building.delete(key));
          building.set(key, pending);
        }
        await abortable(pending, signal);
      }
      await touch(key);
      if (built) await evict();
      const envDir = path.join(dir, key);
      return {
        key,
        pythonPath: path.join(envDir, "bin", "python"),
        binDir: path.join(envDir, "bin"),
        bindDirs: [envDir],
        envVars: { VIRTUAL_ENV: envDir },
        built,
        seconds: ready ? 0 : (monotonicMs() - started) / 1000,
        release,
      };
    } catch (err) {
      await release();
      throw err;
    }
  };

  return { dir, interpreter, acquire, entries };
}

/** Waits for `promise` unless `signal` aborts first (the promise goes on for its other waiters). */
function abortable<T>(promise: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) return Promise.reject(signal.reason as Error);
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason as Error);
    signal.addEventListener("abort", onAbort, { once: true });
    promise.then(
      (v) => {
        signal.removeEventListener("abort", onAbort);
        resolve(v);
      },
      (err: unknown) => {
        signal.removeEventListener("abort", onAbort);
        reject(err as Error);
      },
    );
  });
}

/**
 * The first lines of a console script that runs the interpreter beside it (the `'''exec'` form pip itself
 * writes for long paths): pip writes the absolute path it installed to, the build's scratch directory,
 * which is not where the environment is used.
 */
const RELOCATABLE_SCRIPT_HEAD = `#!/bin/sh\n'''exec' "$(dirname -- "$0")/python" "$0" "$@"\n' '''`;

/**
 * Makes a built environment ready to move and to be read by units: owned by the agent (a build run under
 * a unit's uid leaves nothing that uid could change later), readable by all and writable by none else
 * (units run as other users), console scripts relocatable. Returns the bytes the tree occupies.
 */
async function settleTree(envDir: string): Promise<number> {
  const owner = typeof process.getuid === "function" && process.getuid() === 0 ? 0 : undefined;
  const binDir = path.join(envDir, "bin");
  let total = 0;
  const pending = [envDir];
  while (pending.length > 0) {
    const current = pending.pop() as string;
    for (const entry of await readdir(current, { withFileTypes: true })) {
      const full = path.join(current, entry.name);
      if (owner !== undefined) await lchown(full, owner, owner);
      const st = await lstat(full);
      total += st.blocks > 0 ? st.blocks * 512 : st.size;
      if (entry.isSymbolicLink()) continue;
      if (entry.isDirectory()) {
        await chmod(full, 0o755);
        pending.push(full);
        continue;
      }
      await chmod(full, (st.mode & 0o111) !== 0 ? 0o755 : 0o644);
      if (current === binDir && st.size < 1024 * 1024) await relocateScript(full);
    }
  }
  if (owner !== undefined) await lchown(envDir, owner, owner);
  await chmod(envDir, 0o755);
  return total;
}

/** Gives a console script {@link RELOCATABLE_SCRIPT_HEAD} in place of its `#!…/python` line (or pip's `'''exec'` head). */
async function relocateScript(file: string): Promise<void> {
  const text = await readFile(file, "utf8");
  const head = /^#!\S*\/python[0-9.]*\n/.exec(text) ?? /^#!\/bin\/sh\n'''exec' [^\n]*\n' '''\n/.exec(text);
  if (head === null) return;
  await writeFile(file, `${RELOCATABLE_SCRIPT_HEAD}\n${text.slice(head[0].length)}`);
}
