/**
 * The rules every unit gets, sandboxed or not: which environment it sees,
 * which names are safe to turn into paths, and (with `--isolation none`)
 * which user it runs as. The sandbox itself is unit-sandbox.ts. Kept apart
 * from the runner so each rule is a small pure function with a test.
 */
import { readFileSync } from "node:fs";

/** A conventional system PATH, used when the agent runs as root. */
export const SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/** True when this process runs as root (units then drop to `nobody`). */
export function runningAsRoot(): boolean {
  return typeof process.getuid === "function" && process.getuid() === 0;
}

/**
 * The PATH a unit gets. As root the agent's own PATH may point into
 * directories only root can enter (/root/.pyenv, …) and would not help the
 * unprivileged child anyway, so units get the system PATH; otherwise the
 * agent's PATH is passed on (it holds no secrets, and it finds the python3
 * the operator installed).
 */
export function unitPath(inherited: string | undefined, asRoot: boolean = runningAsRoot()): string {
  if (asRoot) return SYSTEM_PATH;
  return inherited && inherited !== "" ? inherited : SYSTEM_PATH;
}

/** A numeric user and group. */
export interface UserIds {
  uid: number;
  gid: number;
}

/** Looks a user up in /etc/passwd-formatted text; undefined when absent. */
export function parsePasswdUser(passwd: string, name: string): UserIds | undefined {
  for (const line of passwd.split("\n")) {
    const fields = line.split(":");
    if (fields[0] !== name || fields.length < 4) continue;
    const uid = Number(fields[2]);
    const gid = Number(fields[3]);
    if (Number.isInteger(uid) && Number.isInteger(gid)) return { uid, gid };
  }
  return undefined;
}

/**
 * The user units run as: `nobody` when the agent is root, otherwise
 * undefined (the child keeps the agent's own unprivileged user). Throws when
 * running as root without a `nobody` user, because running customer code as
 * root is never the fallback.
 */
export function resolveUnitUser(asRoot: boolean = runningAsRoot(), passwdFile = "/etc/passwd"): UserIds | undefined {
  if (!asRoot) return undefined;
  const ids = parsePasswdUser(readFileSync(passwdFile, "utf8"), "nobody");
  if (!ids) throw new Error("agent runs as root but /etc/passwd has no 'nobody' user to run units as");
  return ids;
}

/** Environment names the agent owns; Assign.env cannot override them. */
export const RESERVED_ENV = [
  "PATH",
  "LANG",
  "HOME",
  "PYTHONUNBUFFERED",
  "PYTHONDONTWRITEBYTECODE",
  "CUDA_VISIBLE_DEVICES",
  "GPU_AGENT_STAGE",
  "GPU_AGENT_UNIT_ID",
  "GPU_AGENT_ATTEMPT",
  "GPU_AGENT_JOB_ID",
  "GPU_AGENT_DATASET",
  "GPU_AGENT_PACKAGE_DIR",
  "GPU_AGENT_INPUT_DIR",
  "GPU_AGENT_OUTPUT_DIR",
  "GPU_AGENT_CHECKPOINT_DIR",
  "GPU_AGENT_RESUME_DIR",
] as const;

/** What buildUnitEnv needs to know about the unit. */
export interface UnitEnvInput {
  path: string;
  workDir: string;
  /** "" hides every GPU (cpu units). */
  cudaVisibleDevices: string;
  stage: string;
  unitId: string;
  attempt: number;
  jobId: string;
  datasetPath: string;
  packageDir: string;
  inputDir: string;
  outputDir: string;
  /** Where the unit writes checkpoints (checkpoints.ts), and where the one it resumes from lies; unset for build steps. */
  checkpointDir?: string;
  resumeDir?: string;
  /** Assign.env: extra variables from the control plane. */
  extra: Readonly<Record<string, string>>;
}

const envName = /^[A-Za-z_][A-Za-z0-9_]*$/;

/**
 * The complete environment of a unit. Nothing is inherited from the agent:
 * the node's credential and any operator secrets stay out of customer code.
 * Assign.env is applied first and the agent's own variables last, so the
 * control plane cannot redirect the output directory or the GPU.
 */
export function buildUnitEnv(input: UnitEnvInput): Record<string, string> {
  const env: Record<string, string> = {};
  const reserved = new Set<string>(RESERVED_ENV);
  for (const [key, value] of Object.entries(input.extra)) {
    if (envName.test(key) && !reserved.has(key) && !value.includes("\0")) env[key] = value;
  }
  Object.assign(env, {
    PATH: input.path,
    LANG: "C.UTF-8",
    HOME: input.workDir,
    PYTHONUNBUFFERED: "1",
    PYTHONDONTWRITEBYTECODE: "1",
    CUDA_VISIBLE_DEVICES: input.cudaVisibleDevices,
    GPU_AGENT_STAGE: input.stage,
    GPU_AGENT_UNIT_ID: input.unitId,
    GPU_AGENT_ATTEMPT: String(input.attempt),
    GPU_AGENT_JOB_ID: input.jobId,
    GPU_AGENT_DATASET: input.datasetPath,
    GPU_AGENT_PACKAGE_DIR: input.packageDir,
    GPU_AGENT_INPUT_DIR: input.inputDir,
    GPU_AGENT_OUTPUT_DIR: input.outputDir,
  });
  if (input.checkpointDir !== undefined) env["GPU_AGENT_CHECKPOINT_DIR"] = input.checkpointDir;
  if (input.resumeDir !== undefined) env["GPU_AGENT_RESUME_DIR"] = input.resumeDir;
  return env;
}

/**
 * True for a name that is safe as one path segment: no separators, no
 * control characters, no leading dot (so neither `..` nor hidden files),
 * at most 255 characters. Spaces are allowed: customers name files freely.
 */
export function isSafeName(name: string): boolean {
  // eslint-disable-next-line no-control-regex
  return name.length > 0 && name.length <= 255 && !name.startsWith(".") && !/[/\\\u0000-\u001f\u007f]/.test(name);
}

/**
 * True for a relative path made of safe segments (an entry point such as
 * `src/train.py`).
 */
export function isSafeRelativePath(path: string): boolean {
  if (path === "" || path.length > 1024) return false;
  return path.split("/").every(isSafeName);
}
