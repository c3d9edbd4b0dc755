/**
 * Runs assigned compute units. Each (unit_id, attempt) runs at most once on
 * this node; a repeated Assign is answered Accepted again without a second
 * run, a Cancel for an unknown unit is ignored.
 *
 * Unit lifecycle:
 *   Assign ─┬─ draining / no such GPU / bad ids → Rejected (not remembered)
 *           ├─ full (max units, or the owner holds the VRAM), paused → Rejected{busy} (comes back later)
 *           └─ Accepted → Preparing → Running → Uploading → Finished (remembered)
 *   Preparing: work dir, inputs downloaded + sha256-checked, package unzipped.
 *              Failure → NODE_ERROR (unsafe package → FAILED).
 *   Running:   python3 <package>/<entrypoint> in its own sandbox (unit-sandbox.ts:
 *              bubblewrap, its own uid, no network, limits), or with
 *              `--isolation none` in its own process group, as `nobody` when the
 *              agent is root; always with a minimal environment.
 *              exit 0 → SUCCEEDED, else FAILED; past its memory_mb → FAILED.
 *   Any phase: deadline → TIMED_OUT; Cancel → CANCELLED; agent shutdown or
 *              the owner taking the machine back (pause --now) →
 *              NODE_ERROR. Killing = SIGTERM to the group, SIGKILL after grace.
 *   Uploading: every regular file in output/ is PUT and announced with
 *              ArtifactReady, for failed runs too (logs help). An upload that
 *              keeps failing turns SUCCEEDED into NODE_ERROR. Outputs over the
 *              Assign's artifacts_max_bytes, or refused by the control plane's
 *              bounds (413, STORAGE_QUOTA_EXCEEDED), are the customer's: FAILED,
 *              and over the bound nothing is uploaded at all.
 *   Finished:  sent last; the work dir is removed (kept with keepWork).
 */
import { spawn } from "node:child_process";
import type { ChildProcess } from "node:child_process";
import { constants as fsConstants, createWriteStream } from "node:fs";
import type { WriteStream } from "node:fs";
import { chmod, lchown, lstat, mkdir, open, readdir, rename, rm, stat } from "node:fs/promises";
import { constants as osConstants } from "node:os";
import path from "node:path";
import { create } from "@bufbuild/protobuf";
import { timestampFromMs, timestampMs } from "@bufbuild/protobuf/wkt";
import {
  AcceptedSchema,
  ArtifactReadySchema,
  FinishedSchema,
  LogLinesSchema,
  Outcome,
  ProgressSchema,
  RejectedSchema,
  UnitRefSchema,
} from "../gen/gpuagent/agent/v1/agent_pb.ts";
import type { Assign, Cancel, UnitRef } from "../gen/gpuagent/agent/v1/agent_pb.ts";
import type { Clock } from "../platform/clock.ts";
import { hostPath } from "../platform/host.ts";
import { createLineSplitter, parseStdoutLine } from "./line-protocol.ts";
import type { AgentLogger } from "./logger.ts";
import { buildUnitEnv, isSafeName, isSafeRelativePath, resolveUnitUser, unitPath } from "./sandbox.ts";
import type { UserIds } from "./sandbox.ts";
import { CpuAllocator, processTree, signalEach, unitMemoryBytes } from "./unit-limits.ts";
import { SANDBOX_PATHS, UnitUidAllocator, bubblewrapLaunch, chownTree, stdioWithInputs, writeInputs, writeSandboxEtc } from "./unit-sandbox.ts";
import type { LaunchInput, UnitIsolation } from "./unit-sandbox.ts";
import { assignedGpuIndexes, cudaVisibleDevices, gpuAssignmentRefusal, vramShortfall } from "./unit-gpus.ts";
import type { GpuMemory, LocalGpu } from "./unit-gpus.ts";
import type { AgentMessageBody } from "./session.ts";
import { BUILD_PROXY_MOUNT, openBuildNetwork } from "./build-proxy.ts";
import type { BuildNetwork } from "./build-proxy.ts";
import type { InputCache } from "./input-cache.ts";
import { DEFAULT_ENV_CACHE_MB, PythonEnvError, createPythonEnvCache, prepareUnitPython, runBuildCommand } from "./python-envs.ts";
import type { EnvBuildCommand, EnvBuildResult, EnvLease, PackageSources } from "./python-envs.ts";
import { TransferError, downloadToFile, hashFile, putFile, withRetries } from "./transfer.ts";
import type { ClientCertificate } from "./transfer.ts";
import { DEFAULT_ZIP_LIMITS, UnsafeZipError, extractZipSafely } from "./unzip.ts";
import { createCheckpointUploader } from "./checkpoints.ts";
import type { ZipLimits } from "./unzip.ts";

/** Why a unit was killed; decides its outcome. */
type KillReason = "cancelled" | "timed_out" | "shutdown" | "handed_back" | "disk_limit" | "memory_limit";

const KILL_OUTCOME: Record<KillReason, Outcome> = {
  cancelled: Outcome.CANCELLED,
  timed_out: Outcome.TIMED_OUT,
  shutdown: Outcome.NODE_ERROR,
  // The owner wants the machine: the node's doing, so the unit runs elsewhere, unbilled.
  handed_back: Outcome.NODE_ERROR,
  // The customer's code wrote more than it declared: its failure, not the node's.
  disk_limit: Outcome.FAILED,
  memory_limit: Outcome.FAILED,
};

/** Everything createUnitRunner needs. */
export interface UnitRunnerOptions {
  /** Work directories live in `<dataDir>/work/`. */
  dataDir: string;
  /** Sent as the bearer token on artifact uploads. */
  nodeCredential: string;
  /** Delivers a message to the control plane (the session's send). */
  send(body: AgentMessageBody): void;
  /** GPU indexes this node has (detected or declared). */
  gpuIndexes(): readonly number[];
  /** The UUID of the GPU with this index ("" or undefined when unknown, e.g. a declared GPU). */
  gpuUuid?: (index: number) => string | undefined;
  /**
   * The GPU's memory as last measured, with its owner's reserve; undefined when not measured. An Assign
   * whose GPUs lack the VRAM because the owner uses it now is answered `Rejected{busy}`.
   */
  gpuMemory?: (index: number) => GpuMemory | undefined;
  maxConcurrentUnits: number;
  clock: Clock;
  logger: AgentLogger;
  /** Keep work directories after a unit (debugging; env GPU_AGENT_KEEP_WORK=1). */
  keepWork?: boolean;
  /** SIGTERM → SIGKILL grace (default 5 s). */
  killGraceMs?: number;
  /** Minimum gap between Progress messages of one unit (default 250 ms). */
  progressIntervalMs?: number;
  /** Longest a log line waits before it is sent (default 500 ms). */
  logFlushMs?: number;
  /** Most lines in one LogLines message (default 100). */
  logBatchLines?: number;
  /** Used when Assign has neither deadline nor max_runtime_seconds (default 24 h). */
  defaultMaxRuntimeMs?: number;
  /** Who units run as; default `nobody` when root, else the agent's own user. */
  unitUser?: UserIds | undefined;
  /** Interpreter looked up on the unit's PATH (default "python3"). */
  python?: string;
  /** The agent's own PATH, which units inherit unless they run as another user (default: this process's). */
  agentPath?: string;
  /** Package bounds (default 512 MiB, 10 000 entries). */
  zipLimits?: ZipLimits;
  /** Presented on https:// downloads and uploads whose server asks for one (mutual TLS). */
  clientCertificate?: ClientCertificate;
  /** Attempts per artifact upload and per download (default 4: one plus three retries). */
  transferTries?: number;
  /** How often a running unit's work directory is measured against its `disk_mb` (default 2 s). */
  diskCheckMs?: number;
  /** Datasets and packages kept by sha256 between units (src/node-agent/input-cache.ts); none when absent. */
  inputCache?: InputCache;
  /**
   * Most bytes of the `<stage>.log` artifact the agent writes from the unit's output (default
   * 64 MiB); later lines still go to the control plane as LogLines.
   */
  logFileMaxBytes?: number;
  /**
   * How units are contained (unit-sandbox.ts): in a bubblewrap sandbox on the given host layout, as
   * plain child processes (`none`, the default here; the agent passes what it probed), or not at all
   * (`unavailable`: every Assign is Rejected with the reason).
   */
  isolation?: UnitIsolation;
  /** First uid of the range sandboxed units run as when the agent is root (default DEFAULT_UNIT_UID_BASE). */
  unitUidBase?: number;
  /** RLIMIT_NPROC of a sandboxed unit: processes and threads together (default 4096). */
  maxUnitProcesses?: number;
  /** How often a sandboxed unit's memory is summed against its memory_mb when no cgroup bounds it (default 250 ms). */
  memoryCheckMs?: number;
  /** The CPUs units are pinned to, as many as their stage asks for (default: none pinned). */
  cpus?: readonly number[];
  /**
   * UUID and device minor (`/dev/nvidia<minor>`) of the GPU with this index; undefined for a declared
   * GPU, which has no device. A sandboxed GPU unit gets the devices of its GPUs only.
   */
  gpuDevice?: (index: number) => { uuid: string; minor: number } | undefined;
  /** Why the owner refuses new units now (paused, outside the availability window; owner-controls.ts), or undefined. */
  ownerRefusal?: () => string | undefined;
  /**
   * Python environments per package (python-envs.ts), kept in `<dataDir>/envs` under `maxBytes` (default
   * DEFAULT_ENV_CACHE_MB) and built from the owner's `sources` (default none: only what the interpreter has).
   */
  pythonEnvs?: { maxBytes?: number; sources?: PackageSources };
}

/** The runner as the agent drives it. */
export interface UnitRunner {
  /**
   * Handles an Assign: replies Accepted or Rejected at once and runs the unit
   * in the background. The promise settles when the unit is done (Finished
   * sent) or at once when rejected; it never rejects.
   */
  assign(assign: Assign): Promise<void>;
  /** Kills a running (unit_id, attempt); unknown or finished units are ignored. */
  cancel(cancel: Cancel): void;
  /** Stop accepting new units (Drain, shutdown). */
  drain(): void;
  /** True after drain(). */
  readonly draining: boolean;
  /** Units accepted and not yet finished. */
  running(): UnitRef[];
  /** Resolves when no unit is running. */
  idle(): Promise<void>;
  /** Kills every running unit (outcome NODE_ERROR) and waits for them. */
  killAll(): Promise<void>;
  /**
   * Hands every running unit back to the control plane because the owner took the machine back
   * (`gpu-agent pause --now`): killed, reported NODE_ERROR, nothing uploaded. Resolves with the units
   * once they are gone.
   */
  handBack(): Promise<UnitRef[]>;
}

interface UnitState {
  unitId: string;
  attempt: number;
  /** The GPU indexes it was given, and the VRAM it asked for on each. */
  gpus: readonly number[];
  vramMb: number;
  finished: boolean;
  /** Finished was sent: it no longer takes a slot of `maxConcurrentUnits`, though its work dir is still being removed. */
  reported?: boolean;
  done: Promise<void>;
  abort: AbortController;
  killReason?: KillReason;
}

/** A unit-level failure with its outcome. */
class UnitError extends Error {
  readonly outcome: Outcome;
  constructor(outcome: Outcome, message: string) {
    super(message);
    this.outcome = outcome;
  }
}

const MAX_ERROR_CHARS = 2048;
const REMEMBERED_FINISHED = 1000;
const STDERR_TAIL_LINES = 40;
const MAX_ARTIFACTS = 256;
/** The log artifact is for reading, not for carrying a chatty unit's every line (a 25 s unit once wrote 1 GB). */
export const DEFAULT_LOG_FILE_MAX_BYTES = 64 * 1024 * 1024;

/** Artifact kind from a file name (see README.md). */
export function artifactKind(name: string): "checkpoint" | "metrics" | "logs" | "other" {
  const lower = name.toLowerCase();
  if (/\.(ckpt|pt|pth|safetensors|bin)$/.test(lower)) return "checkpoint";
  if (lower.includes("metrics") && lower.endsWith(".json")) return "metrics";
  if (lower.endsWith(".log")) return "logs";
  return "other";
}

/** `prefix` followed by as much of the end of `tail` as fits in 2 KiB. */
function boundedError(prefix: string, tail: string): string {
  if (prefix === "") return tail.length > MAX_ERROR_CHARS ? tail.slice(-MAX_ERROR_CHARS) : tail;
  const head = prefix.slice(0, MAX_ERROR_CHARS);
  const room = MAX_ERROR_CHARS - head.length - 1;
  if (tail === "" || room <= 0) return head;
  return `${head}\n${tail.length > room ? tail.slice(-room) : tail}`;
}

function message(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

function signalNumber(sig: NodeJS.Signals | null): number {
  return sig ? (osConstants.signals[sig] ?? 0) : 0;
}

/** The descriptor bwrap writes its JSON status to (unit-sandbox.ts statusFd). */
const SANDBOX_STATUS_FD = 3;

/** Sends `sig` to a whole process group; a group already gone is fine. */
function killGroup(pid: number, sig: NodeJS.Signals): void {
  try {
    process.kill(-pid, sig);
  } catch {
    // ESRCH: the group is gone already. Nothing else can go wrong for our own
    // children (root may signal anyone; otherwise they share our uid).
  }
}

/** The unit's passwd, group and hosts files (unit-sandbox.ts writeSandboxEtc), beside its work dir, outside its reach. */
function sandboxEtcDir(workDir: string): string {
  return `${workDir}.etc`;
}

/**
 * A package's Python environment as its unit sees it: mounted read-only at SANDBOX_PATHS.pythonEnv (an
 * environment is relocatable: its scripts and `.pth` name no place of its own), its interpreter, bin/ and
 * variables named there, so the unit's command line and environment show nothing of the data directory.
 */
function pythonEnvInSandbox(lease: EnvLease): Pick<EnvLease, "pythonPath" | "binDir" | "envVars"> & { mounts: { source: string; dest: string }[] } {
  const mounts = lease.bindDirs.map((source, i) => ({ source, dest: i === 0 ? SANDBOX_PATHS.pythonEnv : `${SANDBOX_PATHS.pythonEnv}-${i}` }));
  const inside = (value: string) => {
    const mount = mounts.find(({ source }) => value === source || value.startsWith(`${source}/`));
    return mount === undefined ? value : mount.dest + value.slice(mount.source.length);
  };
  return {
    pythonPath: inside(lease.pythonPath),
    binDir: inside(lease.binDir),
    envVars: Object.fromEntries(Object.entries(lease.envVars).map(([name, value]) => [name, inside(value)])),
    mounts,
  };
}

/** Creates the runner. */
export function createUnitRunner(opts: UnitRunnerOptions): UnitRunner {
  const { clock, logger } = opts;
  const killGraceMs = opts.killGraceMs ?? 5000;
  const progressIntervalMs = opts.progressIntervalMs ?? 250;
  const logFlushMs = opts.logFlushMs ?? 500;
  const logBatchLines = opts.logBatchLines ?? 100;
  const defaultMaxRuntimeMs = opts.defaultMaxRuntimeMs ?? 24 * 3600_000;
  const isolation: UnitIsolation = opts.isolation ?? { mechanism: "none" };
  const sandbox = isolation.mechanism === "bubblewrap" ? isolation : undefined;
  // Without the sandbox a root agent runs units as `nobody`; in it each unit has a uid of its own.
  const unitUser = sandbox !== undefined ? undefined : "unitUser" in opts ? opts.unitUser : resolveUnitUser();
  const unitUids = new UnitUidAllocator(opts.unitUidBase);
  let buildProxies = 0;
  const cpuAllocator = new CpuAllocator(opts.cpus ?? []);
  const maxUnitProcesses = opts.maxUnitProcesses ?? 4096;
  const memoryCheckMs = opts.memoryCheckMs ?? 250;
  const python = opts.python ?? "python3";
  // Built with the interpreter units run with, found on the PATH they get; each build step sandboxed like a unit.
  const pythonEnvs = createPythonEnvCache({
    dir: path.join(opts.dataDir, "envs"),
    maxBytes: opts.pythonEnvs?.maxBytes ?? DEFAULT_ENV_CACHE_MB * 1024 * 1024,
    python: sandbox?.host.python ?? python,
    path: sandbox?.host.path ?? unitPath(opts.agentPath ?? hostPath(), unitUser !== undefined),
    sources: opts.pythonEnvs?.sources ?? { findLinks: [] },
    runBuild: (cmd) => (sandbox !== undefined ? sandboxedBuild(sandbox, cmd) : runBuildCommand(cmd)),
    clock,
    logger,
  });
  const zipLimits = opts.zipLimits ?? DEFAULT_ZIP_LIMITS;
  const transferTries = opts.transferTries ?? 4;
  const diskCheckMs = opts.diskCheckMs ?? 2000;
  const logFileMaxBytes = opts.logFileMaxBytes ?? DEFAULT_LOG_FILE_MAX_BYTES;
  const workRoot = path.join(opts.dataDir, "work");

  const units = new Map<string, UnitState>();
  const finishedOrder: string[] = [];
  let draining = false;

  const keyOf = (unitId: string, attempt: number) => `${unitId}\u0000${attempt}`;
  const refOf = (s: { unitId: string; attempt: number }) => create(UnitRefSchema, { unitId: s.unitId, attempt: s.attempt });
  const active = () => [...units.values()].filter((u) => !u.finished);

  const remember = (key: string) => {
    finishedOrder.push(key);
    while (finishedOrder.length > REMEMBERED_FINISHED) {
      const old = finishedOrder.shift();
      if (old !== undefined) units.delete(old);
    }
  };

  /** `busy`: the node is full or its owner's now, not unable: the unit may come back here once there is room. */
  const reject = (a: Assign, reason: string, busy = false) => {
    logger.warn({ unit_id: a.unit?.unitId, attempt: a.unit?.attempt, reason, busy }, "assign rejected");
    opts.send({
      case: "rejected",
      value: create(RejectedSchema, { assignmentId: a.assignmentId, unit: a.unit ?? create(UnitRefSchema), reason, busy }),
    });
  };
  const localGpus = (): LocalGpu[] => opts.gpuIndexes().map((index) => ({ index, uuid: opts.gpuUuid?.(index) ?? "" }));
  /** Units holding a slot: accepted, and their Finished not yet sent. */
  const holdingSlots = () => active().filter((u) => u.reported !== true);
  const askedByRunning = (index: number) => holdingSlots().reduce((sum, u) => sum + (u.gpus.includes(index) ? u.vramMb : 0), 0);

  /**
   * In the sandbox the data dir stays private wherever it is: bubblewrap, running as the agent, mounts
   * what a unit needs, so the work root is 0700 and the search permission for others that `nobody`
   * once needed on the data dir is taken back.
   * Without it the unprivileged child must be able to walk down to its work dir: the
   * data dir and work root get search permission for others (no listing;
   * node.json stays 0600), and every ancestor must already allow it, which
   * fails loudly for a data dir under /root instead of as a puzzling EACCES.
   */
  let workRootReady = false;
  const prepareWorkRoot = async () => {
    if (sandbox !== undefined) {
      await mkdir(workRoot, { recursive: true, mode: 0o700 });
      if (workRootReady) return;
      await chmod(workRoot, 0o700);
      const dataDir = path.resolve(opts.dataDir);
      const mode = (await stat(dataDir)).mode & 0o7777;
      if ((mode & 0o077) === 0o001) await chmod(dataDir, mode & ~0o001);
      workRootReady = true;
      return;
    }
    await mkdir(workRoot, { recursive: true, mode: 0o711 });
    if (!unitUser || workRootReady) return;
    await chmod(workRoot, 0o711);
    const dataDir = path.resolve(opts.dataDir);
    const s = await stat(dataDir);
    if ((s.mode & 0o001) === 0) await chmod(dataDir, (s.mode & 0o7777) | 0o001);
    for (let dir = path.dirname(dataDir); ; dir = path.dirname(dir)) {
      if (((await stat(dir)).mode & 0o001) === 0) {
        throw new UnitError(Outcome.NODE_ERROR, `${dir} is not searchable by other users, so units (run as nobody) cannot reach ${workRoot}; move the data dir`);
      }
      if (path.dirname(dir) === dir) break;
    }
    workRootReady = true;
  };

  async function execute(a: Assign, state: UnitState): Promise<void> {
    const started = clock.now();
    const { unitId, attempt } = state;
    const unit = refOf(state);
    const signal = state.abort.signal;
    const log = { unit_id: unitId, attempt, stage: a.stage };
    const workDir = path.join(workRoot, `${unitId}-${attempt}`);
    const packageDir = path.join(workDir, "package");
    const datasetDir = path.join(workDir, "dataset");
    const inputDir = path.join(workDir, "inputs");
    const outputDir = path.join(workDir, "output");
    const downloadDir = path.join(workDir, "downloads");
    // The unit's checkpoints (checkpoints.ts), and the one this attempt resumes from (Assign.resume_from).
    const checkpointDir = path.join(workDir, "checkpoints");
    const resumeDir = path.join(workDir, "resume");

    // The deadline covers the whole unit, downloads included.
    const limits: number[] = [];
    if (a.deadline) limits.push(timestampMs(a.deadline));
    if (a.maxRuntimeSeconds > 0) limits.push(started + a.maxRuntimeSeconds * 1000);
    const deadline = limits.length > 0 ? Math.min(...limits) : started + defaultMaxRuntimeMs;
    const deadlineTimer = new AbortController();
    clock.sleep(Math.max(0, deadline - clock.now()), deadlineTimer.signal).then(
      () => kill(state, "timed_out"),
      () => {},
    );

    let outcome: Outcome = Outcome.NODE_ERROR;
    let exitCode = 0;
    let errorText = "";
    let runSeconds = 0;
    let envBuildSeconds = 0;
    let envBuilt = false;
    let envLease: EnvLease | undefined;
    let ranProcess = false;
    const stderrTail: string[] = [];

    try {
      logger.info({ ...log, deadline_in_ms: deadline - started }, "unit starting");
      await prepareWorkRoot();
      await rm(workDir, { recursive: true, force: true });
      await rm(sandboxEtcDir(workDir), { recursive: true, force: true });
      for (const dir of [workDir, packageDir, datasetDir, inputDir, outputDir, downloadDir, checkpointDir, resumeDir]) {
        await mkdir(dir, { recursive: true, mode: 0o755 });
      }

      // ---- inputs
      let datasetPath = "";
      let packageZip: string | undefined;
      for (const input of a.inputs) {
        if (!isSafeName(input.name)) throw new UnitError(Outcome.NODE_ERROR, `input has an unsafe name: ${JSON.stringify(input.name)}`);
        if (!/^[0-9a-fA-F]{64}$/.test(input.sha256)) throw new UnitError(Outcome.NODE_ERROR, `input ${input.name} has no valid sha256`);
        let dest: string;
        if (input.role === "package") dest = packageZip = path.join(downloadDir, "package.zip");
        else if (input.role === "dataset") dest = datasetPath = path.join(datasetDir, input.name);
        else if (input.role === "checkpoint") dest = path.join(resumeDir, input.name);
        else dest = path.join(inputDir, input.name);
        const part = `${dest}.part`;
        // Datasets and packages never change under their sha256: a copy from the cache saves the download.
        const cache = input.role === "dataset" || input.role === "package" ? opts.inputCache : undefined;
        if (cache !== undefined && (await cache.copyTo(input.sha256, input.sizeBytes, part)) === "hit") {
          await rename(part, dest);
          logger.debug({ ...log, input: input.name, role: input.role }, "input from the cache");
          continue;
        }
        const maxBytes = input.sizeBytes > 0n ? Number(input.sizeBytes) : Number.MAX_SAFE_INTEGER;
        const got = await withRetries(transferTries, clock, signal, async () => {
          await rm(part, { force: true });
          return downloadToFile(input.url, part, maxBytes, signal, opts.clientCertificate);
        }).catch((err: unknown) => {
          if (signal.aborted) throw err;
          throw new UnitError(Outcome.NODE_ERROR, `download of ${input.role} ${input.name} failed: ${message(err)}`);
        });
        if (got.sha256 !== input.sha256.toLowerCase()) {
          throw new UnitError(Outcome.NODE_ERROR, `sha256 mismatch for ${input.role} ${input.name}: expected ${input.sha256.toLowerCase()}, got ${got.sha256}`);
        }
        if (input.sizeBytes > 0n && BigInt(got.sizeBytes) !== input.sizeBytes) {
          throw new UnitError(Outcome.NODE_ERROR, `size mismatch for ${input.role} ${input.name}: expected ${input.sizeBytes}, got ${got.sizeBytes}`);
        }
        await rename(part, dest);
        await cache?.add(input.sha256, dest);
      }
      if (!packageZip) throw new UnitError(Outcome.NODE_ERROR, "assign has no package input");
      try {
        await extractZipSafely(packageZip, packageDir, zipLimits);
      } catch (err) {
        // The customer's package, not the node: retrying elsewhere would fail the same way.
        if (err instanceof UnsafeZipError) throw new UnitError(Outcome.FAILED, `package refused: ${err.message}`);
        throw err;
      }
      await rm(downloadDir, { recursive: true, force: true });
      if (!isSafeRelativePath(a.entrypoint)) throw new UnitError(Outcome.FAILED, `invalid entrypoint ${JSON.stringify(a.entrypoint)}`);
      const entryFile = path.join(packageDir, a.entrypoint);
      const entryStat = await stat(entryFile).catch(() => undefined);
      if (!entryStat?.isFile()) throw new UnitError(Outcome.FAILED, `entrypoint ${a.entrypoint} not found in package`);
      if (unitUser) await chownTree(workDir, unitUser.uid, unitUser.gid);
      if (signal.aborted) throw signal.reason;

      // ---- Python environment (requirements.txt, gpu-agent.json "python"): timed apart from the run, never billed
      const envStarted = clock.now();
      try {
        envLease = (await prepareUnitPython(packageDir, pythonEnvs, signal))?.lease;
      } catch (err) {
        envBuildSeconds = (clock.now() - envStarted) / 1000;
        // The package's requirements or Python version: its failure (FAILED, nothing ran, nothing billed).
        if (err instanceof PythonEnvError) throw new UnitError(err.fault === "customer" ? Outcome.FAILED : Outcome.NODE_ERROR, err.message);
        throw err;
      }
      envBuildSeconds = envLease?.seconds ?? 0;
      envBuilt = envLease?.built ?? false;

      // ---- run
      const stage = isSafeName(a.stage) ? a.stage : "unit";
      const cpuOnly = state.gpus.length === 0;
      // Opened before the child starts and written through this descriptor, so
      // a child swapping the name for a symlink cannot redirect the agent's writes.
      const logFile = createWriteStream(path.join(outputDir, `${stage}.log`), { flags: "wx", mode: 0o644 });
      const launch =
        sandbox !== undefined
          ? await sandboxLaunch(sandbox, a, state, { workDir, datasetPath, cpuOnly, pythonEnv: envLease })
          : plainLaunch(a, state, { workDir, datasetPath, cpuOnly, pythonEnv: envLease, entryFile, packageDir, inputDir, outputDir });
      const checkpoints = createCheckpointUploader({
        unit,
        checkpointDir,
        stagingDir: `${workDir}.checkpoint-upload`,
        uploadUrl: a.checkpointUploadUrl,
        maxBytes: Number(a.artifactsMaxBytes),
        nodeCredential: opts.nodeCredential,
        clientCertificate: opts.clientCertificate,
        tries: transferTries,
        untrustedOwner: unitUser !== undefined || sandbox !== undefined,
        clock,
        logger,
        send: opts.send,
      });
      const runStarted = clock.now();
      ranProcess = true;
      const watchers = new AbortController();
      if (a.diskMb > 0) {
        void watchLimit(state, { what: "disk", everyMs: diskCheckMs, limitMb: a.diskMb, measure: () => directoryBytes(workDir) }, watchers.signal);
      }
      try {
        const result = await runProcess({
          ...launch,
          signal,
          unit,
          logFile,
          stderrTail,
          onCheckpoint: (name, metrics) => checkpoints.announce(name, metrics),
          killAtOnce: () => state.killReason === "memory_limit",
          onStarted: (pid) => {
            if (sandbox === undefined || sandbox.cgroups !== undefined || a.memoryMb <= 0) return;
            const measure = async () => unitMemoryBytes(await processTree(pid), { quickUpToBytes: a.memoryMb * 1024 * 1024 });
            void watchLimit(state, { what: "memory", everyMs: memoryCheckMs, limitMb: a.memoryMb, measure }, watchers.signal);
          },
        });
        exitCode = result.exitCode;
        if (result.spawnError) throw new UnitError(Outcome.NODE_ERROR, `could not start ${launch.sandboxed ? "the sandbox" : python}: ${result.spawnError}`);
        if (launch.cgroupDir !== undefined && !state.killReason && (await sandbox?.cgroups?.oomKilled(launch.cgroupDir)) === true) {
          state.killReason = "memory_limit";
        }
        // A write stopped by RLIMIT_FSIZE (or between two disk checks) fails the script: say why.
        if (a.diskMb > 0 && !state.killReason && exitCode !== 0 && (await directoryBytes(workDir)) > a.diskMb * 1024 * 1024) {
          state.killReason = "disk_limit";
        }
      } finally {
        watchers.abort();
        await launch.release();
        runSeconds = (clock.now() - runStarted) / 1000;
        // Its checkpoints reach the control plane before its Finished does.
        await checkpoints.settle();
        await new Promise<void>((resolve) => logFile.end(resolve));
      }
      if (state.killReason) throw new UnitError(KILL_OUTCOME[state.killReason], killText(state.killReason, a));
      outcome = exitCode === 0 ? Outcome.SUCCEEDED : Outcome.FAILED;
      if (outcome === Outcome.FAILED) errorText = boundedError(`exit code ${exitCode}`, stderrTail.join("\n"));
    } catch (err) {
      if (state.killReason) {
        outcome = KILL_OUTCOME[state.killReason];
        errorText = boundedError(killText(state.killReason, a), stderrTail.join("\n"));
      } else if (err instanceof UnitError) {
        outcome = err.outcome;
        errorText = boundedError(err.message, stderrTail.join("\n"));
      } else {
        outcome = Outcome.NODE_ERROR;
        errorText = boundedError(`agent error: ${message(err)}`, "");
        logger.error({ ...log, err: message(err) }, "unit failed inside the agent");
      }
    } finally {
      deadlineTimer.abort();
      await envLease?.release();
    }

    // ---- artifacts (failed runs too; never for units that did not start, nor
    // for a unit stopped for writing too much: its output is what must not spread)
    if (ranProcess && state.killReason !== "shutdown" && state.killReason !== "handed_back" && state.killReason !== "disk_limit") {
      const uploadError = await uploadArtifacts(a, unit, outputDir, unitUser !== undefined || sandbox !== undefined);
      if (uploadError?.customerFault === true) {
        // Retrying elsewhere would produce the same outputs: the unit's own failure.
        if (outcome === Outcome.SUCCEEDED) {
          outcome = Outcome.FAILED;
          errorText = boundedError(uploadError.message, "");
        } else {
          errorText = boundedError(uploadError.message, errorText);
        }
      } else if (uploadError !== undefined && outcome === Outcome.SUCCEEDED) {
        outcome = Outcome.NODE_ERROR;
        errorText = boundedError(uploadError.message, "");
      }
    }

    opts.send({
      case: "finished",
      value: create(FinishedSchema, { unit, outcome, exitCode, error: errorText, runSeconds, envBuildSeconds, envBuilt }),
    });
    // The control plane frees the slot when it reads Finished; so does the node, before its cleanup.
    state.reported = true;
    logger.info(
      { ...log, outcome: outcomeName(outcome), exit_code: exitCode, run_seconds: runSeconds, env_build_seconds: envBuildSeconds, env_built: envBuilt },
      "unit finished",
    );
    if (!opts.keepWork) {
      await rm(workDir, { recursive: true, force: true }).catch(() => {});
      await rm(sandboxEtcDir(workDir), { recursive: true, force: true }).catch(() => {});
    }
  }

  /** What runProcess starts, and what to give back when it has ended. */
  interface Launch {
    command: string;
    args: string[];
    cwd: string;
    env: Record<string, string>;
    unitUser: UserIds | undefined;
    /** A bubblewrap sandbox: its processes are found by their tree, and killing bwrap ends them all. */
    sandboxed: boolean;
    /** What the command reads on its descriptors (bwrap's options and chain: unit-sandbox.ts bubblewrapLaunch). */
    inputs?: readonly LaunchInput[];
    /** The unit's cgroup, when a delegated cgroup v2 bounds it. */
    cgroupDir?: string;
    release(): Promise<void>;
  }

  interface LaunchPaths {
    workDir: string;
    datasetPath: string;
    cpuOnly: boolean;
    /** The package's Python environment: its interpreter runs the unit, its bin/ leads PATH. */
    pythonEnv: EnvLease | undefined;
  }

  /** The unit's environment with its Python environment's variables and bin/ first on PATH. */
  function withPythonEnv(env: Record<string, string>, pythonEnv: Pick<EnvLease, "binDir" | "envVars"> | undefined): Record<string, string> {
    if (pythonEnv === undefined) return env;
    return { ...env, ...pythonEnv.envVars, PATH: `${pythonEnv.binDir}:${env["PATH"] ?? ""}` };
  }

  /** `--isolation none`: the interpreter as a child process in its own group (as `nobody` when root). */
  function plainLaunch(
    a: Assign,
    state: UnitState,
    p: LaunchPaths & { entryFile: string; packageDir: string; inputDir: string; outputDir: string },
  ): Launch {
    const env = buildUnitEnv({
      path: unitPath(opts.agentPath ?? hostPath(), unitUser !== undefined),
      workDir: p.workDir,
      cudaVisibleDevices: p.cpuOnly ? "" : cudaVisibleDevices(state.gpus, localGpus()),
      stage: a.stage,
      unitId: state.unitId,
      attempt: state.attempt,
      jobId: a.jobId,
      datasetPath: p.datasetPath,
      packageDir: p.packageDir,
      inputDir: p.inputDir,
      outputDir: p.outputDir,
      checkpointDir: path.join(p.workDir, "checkpoints"),
      resumeDir: path.join(p.workDir, "resume"),
      extra: a.env,
    });
    return {
      command: p.pythonEnv?.pythonPath ?? python,
      args: [p.entryFile, ...a.args],
      cwd: p.packageDir,
      env: withPythonEnv(env, p.pythonEnv),
      unitUser,
      sandboxed: false,
      release: async () => {},
    };
  }

  /**
   * The unit in its bubblewrap sandbox (unit-sandbox.ts) under a uid of its own, with its limits: a
   * cgroup when one is delegated, otherwise rlimits and CPU affinity (and the memory watcher).
   */
  async function sandboxLaunch(box: Extract<UnitIsolation, { mechanism: "bubblewrap" }>, a: Assign, state: UnitState, p: LaunchPaths): Promise<Launch> {
    const { host } = box;
    const uid = unitUids.take();
    let cpus: number[] | undefined;
    let cgroupDir: string | undefined;
    const release = async () => {
      unitUids.release(uid);
      cpuAllocator.release(cpus);
      if (cgroupDir !== undefined) await box.cgroups?.remove(cgroupDir, (ms) => clock.sleep(ms));
    };
    try {
      const etcDir = sandboxEtcDir(p.workDir);
      if (host.asRoot) await chownTree(p.workDir, uid, uid);
      await writeSandboxEtc(etcDir, uid);
      // The sandbox holds only the assigned GPUs' devices; their UUIDs name them whichever indexes CUDA gives them.
      const devices = p.cpuOnly ? [] : state.gpus.map((index) => opts.gpuDevice?.(index)).filter((d) => d !== undefined);
      const env = buildUnitEnv({
        path: host.path,
        workDir: SANDBOX_PATHS.home,
        cudaVisibleDevices: p.cpuOnly ? "" : cudaVisibleDevices(state.gpus, localGpus()),
        stage: a.stage,
        unitId: state.unitId,
        attempt: state.attempt,
        jobId: a.jobId,
        datasetPath: p.datasetPath === "" ? "" : path.posix.join(SANDBOX_PATHS.dataset, path.basename(p.datasetPath)),
        packageDir: SANDBOX_PATHS.package,
        inputDir: SANDBOX_PATHS.inputs,
        outputDir: SANDBOX_PATHS.output,
        checkpointDir: SANDBOX_PATHS.checkpoints,
        resumeDir: SANDBOX_PATHS.resume,
        extra: a.env,
      });
      if (box.cgroups !== undefined) {
        cgroupDir = await box.cgroups.create(`unit-${uid}`, { memoryMb: a.memoryMb, maxProcesses: maxUnitProcesses, cpuCores: a.cpuCores });
      } else {
        cpus = cpuAllocator.take(a.cpuCores);
      }
      const pythonEnv = p.pythonEnv !== undefined ? pythonEnvInSandbox(p.pythonEnv) : undefined;
      const sandbox = bubblewrapLaunch(host, {
        workDir: p.workDir,
        etcDir,
        uid,
        command: pythonEnv?.pythonPath ?? host.python,
        args: [path.posix.join(SANDBOX_PATHS.package, a.entrypoint), ...a.args],
        env: withPythonEnv(env, pythonEnv),
        readOnly: pythonEnv?.mounts ?? [],
        gpuDevices: devices.map((d) => `/dev/nvidia${d.minor}`),
        memoryMb: a.memoryMb,
        diskMb: a.diskMb,
        maxProcesses: maxUnitProcesses,
        statusFd: SANDBOX_STATUS_FD,
        checkpointDirs: true,
        ...(cpus !== undefined ? { cpus } : {}),
      });
      // bwrap starts with no environment at all (the unit's is applied by `env -i` after the uid drop);
      // with a cgroup, a shell moves itself into it first so that everything the unit starts is inside.
      const launch: Launch = { ...sandbox, cwd: p.workDir, env: {}, unitUser: undefined, sandboxed: true, release };
      if (cgroupDir === undefined) return launch;
      return { ...launch, command: "/bin/sh", args: ["-c", 'echo 0 > "$0/cgroup.procs" && exec "$@"', cgroupDir, sandbox.command, ...sandbox.args], cgroupDir };
    } catch (err) {
      await release();
      throw err;
    }
  }

  /**
   * One step of a Python environment build (python-envs.ts) in a sandbox like a unit's, under a uid of its
   * own: the build's scratch directory is its home and working directory and the only place it writes, the
   * wheelhouses are read-only, and its network is loopback only; a step that must reach the package
   * sources does so through a proxy that relays to their origins and nothing else (build-proxy.ts). pip
   * runs with `--only-binary`, so no package code runs during a build; the sandbox bounds pip itself.
   */
  async function sandboxedBuild(box: Extract<UnitIsolation, { mechanism: "bubblewrap" }>, cmd: EnvBuildCommand): Promise<EnvBuildResult> {
    const { host } = box;
    const uid = unitUids.take();
    const etcDir = `${cmd.cwd}.etc`;
    let network: BuildNetwork | undefined;
    try {
      // The mount points a unit's sandbox has; a build leaves them empty.
      for (const dir of ["package", "dataset", "inputs", "output"]) await mkdir(path.join(cmd.cwd, dir), { recursive: true });
      if (host.asRoot) await chownTree(cmd.cwd, uid, uid);
      await writeSandboxEtc(etcDir, uid);
      const inside = (value: string) => (value === cmd.cwd || value.startsWith(`${cmd.cwd}/`) ? SANDBOX_PATHS.home + value.slice(cmd.cwd.length) : value);
      if (cmd.origins.length > 0) {
        // Beside the scratch directory, named short: a Unix socket's path may not exceed 107 bytes.
        const dir = path.join(path.dirname(cmd.cwd), `.build-proxy-${buildProxies++}`);
        try {
          network = await openBuildNetwork({ dir, allowed: cmd.origins, uid: host.asRoot ? uid : undefined, logger });
        } catch (err) {
          throw new PythonEnvError("node", `the build's proxy to the package sources could not start: ${err instanceof Error ? err.message : String(err)}`);
        }
      }
      const command = network?.wrap(host.python, cmd.command, cmd.args) ?? { command: cmd.command, args: [...cmd.args] };
      const sandbox = bubblewrapLaunch(host, {
        workDir: cmd.cwd,
        etcDir,
        uid,
        ...command,
        env: Object.fromEntries(Object.entries(cmd.env).map(([k, v]) => [k, inside(v)])),
        gpuDevices: [],
        memoryMb: 0,
        diskMb: 0,
        maxProcesses: maxUnitProcesses,
        readOnly: [...cmd.readOnlyDirs.map((dir) => ({ source: dir, dest: dir })), ...(network !== undefined ? [{ source: network.dir, dest: BUILD_PROXY_MOUNT }] : [])],
        cwd: SANDBOX_PATHS.home,
      });
      const result = await runBuildCommand({ ...cmd, ...sandbox, env: {} });
      if (network === undefined) return result;
      const cut = network.proxy.limitReached();
      return { ...result, refusedOrigins: network.proxy.refused(), ...(cut !== undefined ? { networkCut: cut } : {}) };
    } finally {
      unitUids.release(uid);
      await network?.close().catch(() => {});
      await rm(etcDir, { recursive: true, force: true }).catch(() => {});
    }
  }

  function killText(reason: KillReason, a: Assign): string {
    switch (reason) {
      case "cancelled":
        return "cancelled by the control plane";
      case "timed_out":
        return `deadline exceeded (max_runtime_seconds ${a.maxRuntimeSeconds})`;
      case "shutdown":
        return "agent shut down before the unit finished";
      case "handed_back":
        return "the node's owner took the machine back (gpu-agent pause --now); the unit runs elsewhere";
      case "disk_limit":
        return `disk limit exceeded: the work directory grew past the declared disk_mb ${a.diskMb}`;
      case "memory_limit":
        return `out of memory at ${a.memoryMb} MB: the unit's processes used more memory than its stage's memory_mb`;
    }
  }

  /**
   * Measures the unit every `everyMs` and kills it for `reason` once it holds more than `limitMb`:
   * the work directory against `disk_mb`, or the sandboxed unit's memory (unit-limits.ts) against
   * `memory_mb` where no cgroup bounds it. A check, not a quota: between two checks a fast writer or
   * allocator can overshoot, so the node keeps its own headroom. A measurement that takes long (a
   * large tree, or the page-table walk of a unit of forked workers near its memory) spaces the next
   * one out, so that measuring takes at most a fifth of the time.
   */
  async function watchLimit(
    state: UnitState,
    limit: { what: "disk" | "memory"; everyMs: number; limitMb: number; measure(): Promise<number> },
    signal: AbortSignal,
  ): Promise<void> {
    let tookMs = 0;
    for (;;) {
      try {
        await clock.sleep(Math.max(limit.everyMs, 4 * tookMs), signal);
      } catch {
        return;
      }
      const measuredAt = clock.now();
      const used = await limit.measure().catch(() => 0);
      tookMs = clock.now() - measuredAt;
      if (used > limit.limitMb * 1024 * 1024 && !signal.aborted) {
        logger.warn({ unit_id: state.unitId, attempt: state.attempt, used_mb: Math.round(used / 1048576), limit_mb: limit.limitMb }, `unit exceeded its ${limit.what} limit`);
        kill(state, limit.what === "disk" ? "disk_limit" : "memory_limit");
        return;
      }
    }
  }

  /** What runProcess spawns: a launch's command (its own cgroup and release stay with the caller), and how the run is watched. */
  interface RunSpec extends Pick<Launch, "command" | "args" | "cwd" | "env" | "unitUser" | "sandboxed" | "inputs"> {
    signal: AbortSignal;
    unit: UnitRef;
    logFile: WriteStream;
    stderrTail: string[];
    /** The unit named a checkpoint on a progress line. */
    onCheckpoint(name: string, metrics: Record<string, number>): void;
    /** True when an abort must not wait for the grace period (a unit over its memory). */
    killAtOnce(): boolean;
    onStarted(pid: number): void;
  }

  /** Spawns the unit, pumps its output, enforces kills; resolves at exit. */
  async function runProcess(spec: RunSpec): Promise<{ exitCode: number; spawnError?: string }> {
    const { unit, signal } = spec;
    const child: ChildProcess = spawn(spec.command, spec.args, {
      cwd: spec.cwd,
      env: spec.env,
      detached: true,
      // A sandbox reports on fd 3 (bwrap --json-status-fd) the exit code of what it ran only when it
      // was set up and started it: its absence tells a sandbox that failed to start (the node's
      // problem) from a unit that failed (the customer's).
      stdio: stdioWithInputs(spec.inputs ?? [], spec.sandboxed ? ["ignore", "pipe", "pipe", "pipe"] : ["ignore", "pipe", "pipe"]),
      ...(spec.unitUser ? { uid: spec.unitUser.uid, gid: spec.unitUser.gid } : {}),
    });
    writeInputs(child, spec.inputs ?? []);

    const spawned = await new Promise<string | undefined>((resolve) => {
      child.once("spawn", () => resolve(undefined));
      child.once("error", (err) => resolve(err.message));
    });
    if (spawned !== undefined) return { exitCode: -1, spawnError: spawned };
    const pid = child.pid as number;
    // The pid (also the process group id) lets an operator find or kill the unit's processes.
    logger.info({ unit_id: unit.unitId, attempt: unit.attempt, pid, isolation: spec.sandboxed ? "bubblewrap" : "none" }, "unit process started");
    spec.onStarted(pid);
    // Errors after spawn (e.g. a failed kill) must not crash the agent.
    child.on("error", (err) => logger.warn({ unit_id: unit.unitId, err: err.message }, "child process error"));

    // ---- progress, throttled: latest wins, the last one is always sent. Reports are numbered
    // (and lines below indexed) per attempt, so the control plane stores a resent one once.
    let lastProgress = 0;
    let lastMetrics: Record<string, number> = {};
    let lastMeasuredAt = 0;
    let sample = 0n;
    let pendingProgress = false;
    let lastSentAt = -Infinity;
    let timerArmed = false;
    const streamsDone = new AbortController();
    const flushProgress = () => {
      if (!pendingProgress) return;
      pendingProgress = false;
      lastSentAt = clock.now();
      opts.send({
        case: "progress",
        value: create(ProgressSchema, { unit, progress: lastProgress, metrics: lastMetrics, sample: sample++, at: timestampFromMs(lastMeasuredAt) }),
      });
    };
    const onProgress = (progress: number | undefined, metrics: Record<string, number>) => {
      if (progress !== undefined) lastProgress = progress;
      lastMetrics = metrics;
      lastMeasuredAt = clock.now();
      pendingProgress = true;
      if (timerArmed) return;
      const wait = lastSentAt + progressIntervalMs - clock.now();
      if (wait <= 0) return flushProgress();
      timerArmed = true;
      clock.sleep(wait, streamsDone.signal).then(
        () => {
          timerArmed = false;
          flushProgress();
        },
        () => {
          timerArmed = false;
        },
      );
    };

    // ---- logs, batched per stream; the log file (both streams) is cut at its bound, once, with a note
    let logFileBytes = 0;
    let logFileCut = false;
    const writeLogFile = (line: string) => {
      if (logFileCut) return;
      const text = `${line}\n`;
      const size = Buffer.byteLength(text);
      if (logFileBytes + size > logFileMaxBytes) {
        logFileCut = true;
        spec.logFile.write(`[gpu-agent] this log file stops here: it reached its bound of ${logFileMaxBytes} bytes; later lines went to the control plane's log stream only\n`);
        return;
      }
      logFileBytes += size;
      spec.logFile.write(text);
    };
    const makeBatcher = (stream: "stdout" | "stderr") => {
      let lines: string[] = [];
      // Index of lines[0] in this stream, and when it was read.
      let firstLine = 0n;
      let firstAt = 0;
      let armed = false;
      const flush = () => {
        if (lines.length === 0) return;
        opts.send({ case: "log", value: create(LogLinesSchema, { unit, stream, lines, firstLine, at: timestampFromMs(firstAt) }) });
        firstLine += BigInt(lines.length);
        lines = [];
      };
      const add = (line: string) => {
        writeLogFile(line);
        if (lines.length === 0) firstAt = clock.now();
        lines.push(line);
        if (lines.length >= logBatchLines) return flush();
        if (armed) return;
        armed = true;
        clock.sleep(logFlushMs, streamsDone.signal).then(
          () => {
            armed = false;
            flush();
          },
          () => {
            armed = false;
          },
        );
      };
      return { add, flush };
    };
    const stdoutLog = makeBatcher("stdout");
    const stderrLog = makeBatcher("stderr");
    const stdoutLines = createLineSplitter((line) => {
      const parsed = parseStdoutLine(line);
      if (parsed.kind === "progress") {
        if (parsed.checkpoint !== undefined) spec.onCheckpoint(parsed.checkpoint, parsed.metrics);
        // A line that only names a checkpoint reports no progress (it would blank the metrics shown).
        if (parsed.checkpoint === undefined || parsed.progress !== undefined || Object.keys(parsed.metrics).length > 0) onProgress(parsed.progress, parsed.metrics);
      } else stdoutLog.add(parsed.line);
    });
    const stderrLines = createLineSplitter((line) => {
      stderrLog.add(line);
      spec.stderrTail.push(line);
      if (spec.stderrTail.length > STDERR_TAIL_LINES) spec.stderrTail.shift();
    });
    const streamEnded = (s: NodeJS.ReadableStream | null, splitter: { write(c: Buffer): void; end(): void }) =>
      new Promise<void>((resolve) => {
        if (!s) return resolve();
        s.on("data", (chunk: Buffer) => splitter.write(chunk));
        s.on("end", () => {
          splitter.end();
          resolve();
        });
        s.on("error", () => resolve());
        s.on("close", () => resolve());
      });
    let sandboxStatus = "";
    const statusStream = spec.sandboxed ? (child.stdio[SANDBOX_STATUS_FD] as NodeJS.ReadableStream | null) : null;
    const statusSplitter = { write: (c: Buffer) => void (sandboxStatus = (sandboxStatus + c.toString()).slice(-4096)), end: () => {} };
    const outputDone = Promise.all([
      streamEnded(child.stdout, stdoutLines),
      streamEnded(child.stderr, stderrLines),
      streamEnded(statusStream, statusSplitter),
    ]);

    // ---- kills: SIGTERM the group, SIGKILL after the grace period
    let exited = false;
    const exit = new Promise<{ code: number | null; sig: NodeJS.Signals | null }>((resolve) => {
      child.once("exit", (code, sig) => {
        exited = true;
        resolve({ code, sig });
      });
    });
    const onAbort = () => {
      // bwrap leads the group; SIGKILL to it takes the sandbox's init with it, and the kernel then
      // kills every process of the PID namespace, whatever it did to leave its group.
      if (spec.killAtOnce()) return killGroup(pid, "SIGKILL");
      if (spec.sandboxed) {
        // The unit's own processes get SIGTERM to save their work; bwrap and the sandbox's init
        // would die of it at once and take the unit with them.
        processTree(pid).then(
          (tree) => signalEach(tree.pids.filter((p) => p !== pid && !tree.inner.includes(p)), "SIGTERM"),
          () => {},
        );
      } else {
        killGroup(pid, "SIGTERM");
      }
      clock.sleep(killGraceMs).then(() => {
        if (!exited) killGroup(pid, "SIGKILL");
      }, () => {});
    };
    if (signal.aborted) onAbort();
    else signal.addEventListener("abort", onAbort, { once: true });

    const { code, sig } = await exit;
    signal.removeEventListener("abort", onAbort);
    // Whatever the entry point left behind in its group dies with it.
    killGroup(pid, "SIGKILL");
    // Pipes close once every holder is gone; a process that escaped the group
    // (setsid) could hold them, so do not wait forever.
    const pipesClosed = new AbortController();
    await Promise.race([
      outputDone,
      clock.sleep(2000, pipesClosed.signal).then(
        () => {
          child.stdout?.destroy();
          child.stderr?.destroy();
        },
        () => {},
      ),
    ]);
    pipesClosed.abort();
    streamsDone.abort();
    stdoutLog.flush();
    stderrLog.flush();
    flushProgress();
    const exitCode = code ?? 128 + signalNumber(sig);
    if (spec.sandboxed && !sandboxStatus.includes('"exit-code"') && !signal.aborted) {
      return { exitCode, spawnError: `bwrap exited with ${exitCode} before the unit started` };
    }
    return { exitCode };
  }

  /**
   * Uploads output/ and announces each file; returns why, if any upload failed, and whether that is
   * the unit's doing (its outputs over a bound) rather than the node's or the network's.
   */
  async function uploadArtifacts(
    a: Assign,
    unit: UnitRef,
    outputDir: string,
    untrustedOwner: boolean,
  ): Promise<{ message: string; customerFault: boolean } | undefined> {
    let entries;
    try {
      entries = await readdir(outputDir, { withFileTypes: true });
    } catch {
      return undefined;
    }
    const files = entries.filter((e) => e.isFile()).map((e) => e.name).sort();
    if (files.length > MAX_ARTIFACTS) {
      logger.warn({ unit_id: unit.unitId, files: files.length }, `more than ${MAX_ARTIFACTS} output files; the rest are not uploaded`);
    }
    // The bound is checked on the whole set before any byte leaves: a partial set would look complete.
    const bound = Number(a.artifactsMaxBytes);
    if (bound > 0) {
      const sizes = await Promise.all(
        files.slice(0, MAX_ARTIFACTS).map(async (name) => ({ name, size: (await lstat(path.join(outputDir, name)).catch(() => undefined))?.size ?? 0 })),
      );
      const total = sizes.reduce((sum, f) => sum + f.size, 0);
      if (total > bound) {
        const largest = sizes
          .sort((x, y) => y.size - x.size)
          .slice(0, 3)
          .map((f) => `${f.name} ${f.size} bytes`)
          .join(", ");
        logger.warn({ unit_id: unit.unitId, total_bytes: total, max_bytes: bound }, "outputs over the artifact bound; nothing uploaded");
        return {
          message: `artifacts over the limit: the outputs total ${total} bytes, more than the ${bound} bytes one compute unit may upload; nothing was uploaded (largest: ${largest})`,
          customerFault: true,
        };
      }
    }
    const failures: string[] = [];
    let customerFault = false;
    // Uploads are not cut short by Cancel or the deadline: results of a
    // killed run are still worth keeping. A fresh signal bounds them.
    const uploadSignal = new AbortController().signal;
    for (const name of files.slice(0, MAX_ARTIFACTS)) {
      const file = path.join(outputDir, name);
      let fh;
      try {
        // O_NOFOLLOW: the name was a regular file at readdir; never follow a
        // symlink swapped in since.
        fh = await open(file, fsConstants.O_RDONLY | fsConstants.O_NOFOLLOW);
      } catch (err) {
        failures.push(`${name}: ${message(err)}`);
        continue;
      }
      try {
        const st = await fh.stat();
        // A hard link made by the unit's user could point at a file it cannot
        // read but the agent can; only single-link regular files leave.
        if (!st.isFile() || (untrustedOwner && st.nlink > 1)) {
          logger.warn({ unit_id: unit.unitId, name }, "skipping output that is not a plain regular file");
          continue;
        }
        const { sha256, sizeBytes } = await hashFile(fh);
        const url = `${a.artifactUploadUrl.replace(/\/+$/, "")}/${encodeURIComponent(name)}`;
        await withRetries(transferTries, clock, uploadSignal, () =>
          putFile(
            url,
            fh,
            sizeBytes,
            { authorization: `Bearer ${opts.nodeCredential}`, "content-type": "application/octet-stream" },
            uploadSignal,
            opts.clientCertificate,
          ),
        );
        opts.send({
          case: "artifactReady",
          value: create(ArtifactReadySchema, { unit, name, kind: artifactKind(name), sizeBytes: BigInt(sizeBytes), sha256 }),
        });
      } catch (err) {
        logger.warn({ unit_id: unit.unitId, name, err: message(err) }, "artifact upload failed");
        failures.push(`${name}: ${err instanceof TransferError ? err.message : message(err)}`);
        if (err instanceof TransferError && (err.status === 413 || err.code === "STORAGE_QUOTA_EXCEEDED")) customerFault = true;
      } finally {
        await fh.close();
      }
    }
    return failures.length > 0 ? { message: `artifact upload failed: ${failures.join("; ")}`, customerFault } : undefined;
  }

  function kill(state: UnitState, reason: KillReason) {
    if (state.finished || state.killReason) return;
    state.killReason = reason;
    logger.warn({ unit_id: state.unitId, attempt: state.attempt, reason }, "killing unit");
    state.abort.abort(new Error(reason));
  }

  return {
    get draining() {
      return draining;
    },
    assign(a) {
      const unitId = a.unit?.unitId ?? "";
      const attempt = a.unit?.attempt ?? 0;
      const existing = units.get(keyOf(unitId, attempt));
      if (existing) {
        // At-least-once delivery: the same Assign again is answered the same way.
        opts.send({ case: "accepted", value: create(AcceptedSchema, { assignmentId: a.assignmentId, unit: refOf(existing) }) });
        return existing.done;
      }
      if (draining) return Promise.resolve(reject(a, "node is draining"));
      if (isolation.mechanism === "unavailable") return Promise.resolve(reject(a, `units cannot be isolated on this node: ${isolation.reason}`));
      if (!isSafeName(unitId)) return Promise.resolve(reject(a, "invalid unit id"));
      const gpuRefusal = gpuAssignmentRefusal(a, localGpus());
      if (gpuRefusal !== undefined) return Promise.resolve(reject(a, gpuRefusal));
      // The owner's pause and window, the unit limit and the owner's VRAM use pass: the unit may come back.
      const ownerRefusal = opts.ownerRefusal?.();
      if (ownerRefusal !== undefined) return Promise.resolve(reject(a, ownerRefusal, true));
      if (holdingSlots().length >= opts.maxConcurrentUnits) {
        return Promise.resolve(reject(a, `node is at its limit of ${opts.maxConcurrentUnits} concurrent units`, true));
      }
      const gpus = assignedGpuIndexes(a);
      const shortfall = opts.gpuMemory !== undefined ? vramShortfall(gpus, a.vramMb, opts.gpuMemory, askedByRunning) : undefined;
      if (shortfall !== undefined) return Promise.resolve(reject(a, shortfall, true));

      const key = keyOf(unitId, attempt);
      const state: UnitState = {
        unitId,
        attempt,
        gpus,
        vramMb: a.vramMb,
        finished: false,
        abort: new AbortController(),
        done: Promise.resolve(),
      };
      units.set(key, state);
      opts.send({ case: "accepted", value: create(AcceptedSchema, { assignmentId: a.assignmentId, unit: refOf(state) }) });
      state.done = execute(a, state)
        .catch((err: unknown) => {
          // execute handles its own errors; reaching here is a bug, but the
          // control plane must still hear that the unit ended.
          logger.error({ unit_id: unitId, err: message(err) }, "unit runner crashed");
          opts.send({
            case: "finished",
            value: create(FinishedSchema, { unit: refOf(state), outcome: Outcome.NODE_ERROR, error: `agent error: ${message(err)}` }),
          });
        })
        .finally(() => {
          state.finished = true;
          remember(key);
        });
      return state.done;
    },
    cancel(c) {
      const state = c.unit ? units.get(keyOf(c.unit.unitId, c.unit.attempt)) : undefined;
      if (!state) {
        logger.debug({ unit_id: c.unit?.unitId, attempt: c.unit?.attempt }, "cancel for an unknown unit ignored");
        return;
      }
      kill(state, "cancelled");
    },
    drain() {
      draining = true;
    },
    running: () => active().map(refOf),
    async idle() {
      for (let now = active(); now.length > 0; now = active()) await Promise.all(now.map((u) => u.done));
    },
    async killAll() {
      const now = active();
      for (const u of now) kill(u, "shutdown");
      await Promise.all(now.map((u) => u.done));
    },
    async handBack() {
      const now = active();
      for (const u of now) kill(u, "handed_back");
      await Promise.all(now.map((u) => u.done));
      return now.map(refOf);
    },
  };
}

/**
 * Bytes a directory tree occupies on disk (allocated blocks, so sparse files
 * count for what they really use; apparent size where blocks are not
 * reported). Symlinks are not followed. Stops counting past 1e6 entries.
 */
export async function directoryBytes(dir: string): Promise<number> {
  let total = 0;
  let entries = 0;
  const pending = [dir];
  while (pending.length > 0 && entries < 1_000_000) {
    const current = pending.pop()!;
    let list;
    try {
      list = await readdir(current, { withFileTypes: true });
    } catch {
      continue;
    }
    for (const entry of list) {
      entries++;
      const full = path.join(current, entry.name);
      if (entry.isDirectory()) {
        pending.push(full);
        continue;
      }
      const st = await lstat(full).catch(() => undefined);
      if (st !== undefined) total += st.blocks > 0 ? st.blocks * 512 : st.size;
    }
  }
  return total;
}

function outcomeName(outcome: Outcome): keyof typeof Outcome {
  const entry = Object.entries(Outcome).find(([, v]) => v === outcome);
  return (entry?.[0] ?? "UNSPECIFIED") as keyof typeof Outcome;
}
