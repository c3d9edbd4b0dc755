/**
 * The planner: turns an accepted job into a DAG of compute units.
 *
 * Pure: no I/O, no clock, no randomness. The API layer reads `gpu-agent.json`
 * from the package zip, parses the JSON and hands the value here; everything
 * that can be wrong with it is reported as ApiError("PACKAGE_INVALID", …)
 * naming the stage, because a customer wrote it and a customer must fix it.
 * The manifest format is documented in ./README.md.
 */
import { ApiError, validationError } from "../platform/errors.ts";
import { pythonVersionProblem } from "../platform/package-requirements.ts";
import { compareMajorMinor, gpuModelNarrows, isMajorMinor } from "./gpu-constraints.ts";

/** What a compute unit needs: a CPU-only slot, or GPUs (1 to 8) of one node. */
export type UnitKind = "cpu" | "gpu";

/** The job fields the planner needs (snake_case API fields, camelCase here). */
export interface JobSpec {
  /** VRAM one GPU must have free for a gpu unit; the ceiling of any manifest `vram_mb`. */
  requiredVramMb: number;
  /** Disk each unit gets by default; the ceiling of any manifest `disk_mb`. */
  requiredDiskMb: number;
  /** The job's wall-clock limit; also the per-unit ceiling used for the projected cost. */
  maxRuntimeSeconds: number;
  /** The package's Python entry file, run by every stage that names no `entry`. */
  entrypoint: string;
  /** The parsed `gpu-agent.json` from the package root, or undefined when the package has none. */
  manifest?: unknown;
  /** GPUs of one node each gpu unit gets, 1 to 8 (absent: 1); the ceiling of any manifest `gpus`. */
  requiredGpuCount?: number;
  /** GPU model allow-list (absent or empty: any); a stage's `gpu_models` may only narrow it. */
  gpuModels?: readonly string[];
  /** Lowest compute capability, "major.minor" (absent or "": any); a stage may only raise it. */
  minComputeCapability?: string;
  /** Lowest CUDA version of the node's driver, "major.minor" (absent or "": any); a stage may only raise it. */
  minCudaVersion?: string;
}

/** One node of the job's DAG, as the store persists it and the placer sees it. */
export interface PlannedUnit {
  name: string;
  kind: UnitKind;
  /** Names of units that must complete first; always earlier in the planned list. */
  dependsOn: string[];
  entrypoint: string;
  args: string[];
  vramMb: number;
  diskMb: number;
  cpuCores: number;
  memoryMb: number;
  /** GPUs of one node, each with `vramMb` free: 1 to 8 for a gpu unit, 0 for a cpu unit. */
  gpuCount: number;
  /** GPU model allow-list (empty: any; always empty for a cpu unit). */
  gpuModels: string[];
  /** Lowest compute capability, "major.minor", or "" for any. */
  minComputeCapability: string;
  /** Lowest CUDA version of the node's driver, "major.minor", or "" for any. */
  minCudaVersion: string;
}

/** One validated manifest stage (before fan-out). Optional overrides stay absent when not given. */
export interface ManifestStage {
  name: string;
  kind: UnitKind;
  entry?: string;
  args?: string[];
  /** Stage names (not replica names), deduplicated, in manifest order. */
  dependsOn: string[];
  /** 1..32; more than 1 fans the stage out into `name-0` … `name-(N-1)`. */
  replicas: number;
  vramMb?: number;
  diskMb?: number;
  cpuCores?: number;
  memoryMb?: number;
  /** GPU stages only: 1..8, at most the job's `required_gpu_count`. */
  gpus?: number;
  gpuModels?: string[];
  minComputeCapability?: string;
  minCudaVersion?: string;
}

/** A structurally valid manifest: unique names, known dependencies, acyclic, ≤ 64 units after fan-out. */
export interface Manifest {
  /** Empty when the manifest declares none: the default plan then applies. */
  stages: ManifestStage[];
  /** The Python version the package's units run with ("3.11"), when it names one. */
  python?: string;
}

/** Limits of the manifest format; exported so the README and tests quote one source. */
export const manifestLimits = {
  maxStages: 64,
  maxUnits: 64,
  maxReplicas: 32,
  maxNameLength: 40,
  maxArgs: 64,
  maxArgLength: 1024,
  maxEntryLength: 255,
  maxCpuCores: 256,
  maxMemoryMb: 2 * 1024 * 1024,
  maxGpus: 8,
  maxGpuModels: 16,
  maxGpuModelLength: 100,
} as const;

/** Per-kind defaults when neither the job nor the manifest says otherwise. */
export const unitDefaults = {
  cpu: { cpuCores: 1, memoryMb: 512 },
  gpu: { cpuCores: 2, memoryMb: 2048 },
} as const satisfies Record<UnitKind, { cpuCores: number; memoryMb: number }>;

const namePattern = /^[a-z0-9_-]{1,40}$/;
const stageKeys = new Set([
  "name",
  "kind",
  "entry",
  "args",
  "depends_on",
  "replicas",
  "vram_mb",
  "disk_mb",
  "cpu_cores",
  "memory_mb",
  "gpus",
  "gpu_models",
  "min_compute_capability",
  "min_cuda_version",
]);
/** The stage keys that only a gpu stage may have. */
const gpuOnlyKeys = ["vram_mb", "gpus", "gpu_models", "min_compute_capability", "min_cuda_version"] as const;

function invalid(message: string): ApiError {
  return new ApiError("PACKAGE_INVALID", `gpu-agent.json: ${message}`);
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/** An optional non-negative integer override, bounded above; `label` names it in the error. */
function optionalInt(
  stage: Record<string, unknown>,
  key: string,
  where: string,
  min: number,
  max: number,
): number | undefined {
  const value = stage[key];
  if (value === undefined) return undefined;
  if (typeof value !== "number" || !Number.isInteger(value) || value < min || value > max) {
    throw invalid(`${where}: "${key}" must be an integer from ${min} to ${max}`);
  }
  return value;
}

/**
 * A relative path inside the package: no leading slash, no backslash, no
 * drive letter, no empty or `..` segment (`./train.py` is fine). The agent
 * resolves it inside the unit's work directory, so anything that could climb
 * out is refused here.
 */
function isSafeRelativePath(path: string): boolean {
  if (path.length === 0 || path.length > manifestLimits.maxEntryLength) return false;
  if (path.startsWith("/") || path.includes("\\") || path.includes("\0") || /^[a-zA-Z]:/.test(path)) return false;
  return path.split("/").every((segment) => segment !== "" && segment !== "..");
}

function parseStage(raw: unknown, position: number): ManifestStage {
  if (!isRecord(raw)) throw invalid(`stages[${position}] must be an object`);
  const name = raw["name"];
  if (typeof name !== "string" || !namePattern.test(name)) {
    throw invalid(`stages[${position}]: "name" must match [a-z0-9_-]{1,${manifestLimits.maxNameLength}}`);
  }
  const where = `stage "${name}"`;
  for (const key of Object.keys(raw)) {
    // Unknown keys are refused so a typo ("dependsOn") fails loudly instead of being ignored.
    if (!stageKeys.has(key)) throw invalid(`${where}: unknown field "${key}"`);
  }
  const kind = raw["kind"];
  if (kind !== "cpu" && kind !== "gpu") throw invalid(`${where}: "kind" must be "cpu" or "gpu"`);

  const stage: ManifestStage = { name, kind, dependsOn: [], replicas: 1 };

  const entry = raw["entry"];
  if (entry !== undefined) {
    if (typeof entry !== "string" || !isSafeRelativePath(entry)) {
      throw invalid(`${where}: "entry" must be a relative path inside the package without ".."`);
    }
    stage.entry = entry;
  }

  const args = raw["args"];
  if (args !== undefined) {
    if (
      !Array.isArray(args) ||
      args.length > manifestLimits.maxArgs ||
      !args.every((a): a is string => typeof a === "string" && a.length <= manifestLimits.maxArgLength)
    ) {
      throw invalid(
        `${where}: "args" must be at most ${manifestLimits.maxArgs} strings of at most ${manifestLimits.maxArgLength} characters`,
      );
    }
    stage.args = [...args];
  }

  const deps = raw["depends_on"];
  if (deps !== undefined) {
    if (!Array.isArray(deps) || !deps.every((d): d is string => typeof d === "string")) {
      throw invalid(`${where}: "depends_on" must be an array of stage names`);
    }
    stage.dependsOn = [...new Set(deps)];
  }

  const replicas = optionalInt(raw, "replicas", where, 1, manifestLimits.maxReplicas);
  if (replicas !== undefined) stage.replicas = replicas;

  if (kind === "cpu") {
    // A zero vram_mb on a cpu stage asks for nothing, and was always accepted.
    const asked = gpuOnlyKeys.find((key) => raw[key] !== undefined && !(key === "vram_mb" && raw[key] === 0));
    if (asked !== undefined) throw invalid(`${where}: a cpu stage cannot request "${asked}"`);
  }
  const vramMb = optionalInt(raw, "vram_mb", where, 0, Number.MAX_SAFE_INTEGER);
  if (vramMb !== undefined) stage.vramMb = vramMb;
  parseGpuConstraints(raw, where, stage);
  const diskMb = optionalInt(raw, "disk_mb", where, 0, Number.MAX_SAFE_INTEGER);
  if (diskMb !== undefined) stage.diskMb = diskMb;
  const cpuCores = optionalInt(raw, "cpu_cores", where, 1, manifestLimits.maxCpuCores);
  if (cpuCores !== undefined) stage.cpuCores = cpuCores;
  const memoryMb = optionalInt(raw, "memory_mb", where, 1, manifestLimits.maxMemoryMb);
  if (memoryMb !== undefined) stage.memoryMb = memoryMb;
  return stage;
}

/** A gpu stage's `gpus`, `gpu_models`, `min_compute_capability` and `min_cuda_version`, shape only (bounds against the job: {@link planJob}). */
function parseGpuConstraints(raw: Record<string, unknown>, where: string, stage: ManifestStage): void {
  const gpus = optionalInt(raw, "gpus", where, 1, manifestLimits.maxGpus);
  if (gpus !== undefined) stage.gpus = gpus;
  const models = raw["gpu_models"];
  if (models !== undefined) {
    const problem = gpuModelsProblem(models);
    if (problem !== undefined) throw invalid(`${where}: "gpu_models" ${problem}`);
    stage.gpuModels = [...(models as string[])];
  }
  for (const [key, field] of [
    ["min_compute_capability", "minComputeCapability"],
    ["min_cuda_version", "minCudaVersion"],
  ] as const) {
    const value = raw[key];
    if (value === undefined) continue;
    if (typeof value !== "string" || !isMajorMinor(value)) throw invalid(`${where}: "${key}" must be a "major.minor" version such as "8.0"`);
    stage[field] = value;
  }
}

/**
 * What is wrong with a GPU model allow-list (the job's `gpu_models` or a stage's), or undefined: at
 * most 16 names of 1 to 100 characters, not blank.
 */
export function gpuModelsProblem(models: unknown): string | undefined {
  const { maxGpuModels, maxGpuModelLength } = manifestLimits;
  const rule = `must be at most ${maxGpuModels} GPU model names of 1 to ${maxGpuModelLength} characters`;
  if (!Array.isArray(models) || models.length > maxGpuModels) return rule;
  for (const model of models) {
    if (typeof model !== "string" || model.trim().length === 0 || model.length > maxGpuModelLength) return rule;
  }
  return undefined;
}

/**
 * Finds one cycle among the stages (by DFS with colours) and returns it as a
 * closed path, e.g. ["a", "b", "a"], or undefined when the graph is acyclic.
 */
function findCycle(stages: readonly ManifestStage[]): string[] | undefined {
  const byName = new Map(stages.map((s) => [s.name, s]));
  const colour = new Map<string, "grey" | "black">();
  const path: string[] = [];
  const visit = (name: string): string[] | undefined => {
    const state = colour.get(name);
    if (state === "black") return undefined;
    if (state === "grey") return [...path.slice(path.indexOf(name)), name];
    colour.set(name, "grey");
    path.push(name);
    for (const dep of byName.get(name)?.dependsOn ?? []) {
      const cycle = visit(dep);
      if (cycle !== undefined) return cycle;
    }
    path.pop();
    colour.set(name, "black");
    return undefined;
  };
  for (const stage of stages) {
    const cycle = visit(stage.name);
    if (cycle !== undefined) return cycle;
  }
  return undefined;
}

/**
 * Validates a parsed `gpu-agent.json` (see ./README.md) and returns it typed.
 * Checks everything that does not depend on the job: shape, names, kinds,
 * dependencies, cycles, the fan-out limit and entry paths. Bounds against the
 * job's own limits are checked by {@link planJob}.
 * @throws ApiError PACKAGE_INVALID with a message naming the stage.
 */
export function parseManifest(raw: unknown): Manifest {
  if (!isRecord(raw)) throw invalid("the manifest must be a JSON object");
  for (const key of Object.keys(raw)) {
    if (key !== "stages" && key !== "python") throw invalid(`unknown top-level field "${key}"`);
  }
  let python: string | undefined;
  if (raw["python"] !== undefined) {
    const problem = pythonVersionProblem(raw["python"]);
    if (problem !== undefined) throw invalid(problem);
    python = raw["python"] as string;
  }
  const rawStages = raw["stages"];
  // A manifest that only names its Python version keeps the default plan.
  if (rawStages === undefined && python !== undefined) return { stages: [], python };
  if (!Array.isArray(rawStages) || rawStages.length === 0) {
    throw invalid(`"stages" must be a non-empty array`);
  }
  if (rawStages.length > manifestLimits.maxStages) {
    throw invalid(`at most ${manifestLimits.maxStages} stages are allowed`);
  }
  const stages = rawStages.map((s, i) => parseStage(s, i));

  const names = new Set<string>();
  for (const stage of stages) {
    if (names.has(stage.name)) throw invalid(`stage "${stage.name}" is declared twice`);
    names.add(stage.name);
  }
  for (const stage of stages) {
    for (const dep of stage.dependsOn) {
      if (!names.has(dep)) throw invalid(`stage "${stage.name}" depends on unknown stage "${dep}"`);
    }
  }
  const cycle = findCycle(stages);
  if (cycle !== undefined) throw invalid(`stages form a cycle: ${cycle.join(" → ")}`);

  const units = stages.reduce((n, s) => n + s.replicas, 0);
  if (units > manifestLimits.maxUnits) {
    throw invalid(`the stages fan out to ${units} units; at most ${manifestLimits.maxUnits} are allowed`);
  }
  // A fanned-out "a" yields "a-0"; a stage literally named "a-0" would collide with it.
  const unitNames = new Set<string>();
  for (const stage of stages) {
    for (const unitName of replicaNames(stage)) {
      if (unitNames.has(unitName)) throw invalid(`stage "${stage.name}" produces unit "${unitName}", which already exists`);
      unitNames.add(unitName);
    }
  }
  return python === undefined ? { stages } : { stages, python };
}

function replicaNames(stage: ManifestStage): string[] {
  if (stage.replicas === 1) return [stage.name];
  return Array.from({ length: stage.replicas }, (_, i) => `${stage.name}-${i}`);
}

function checkSpec(spec: JobSpec): void {
  for (const [field, value] of [
    ["required_vram_mb", spec.requiredVramMb],
    ["required_disk_mb", spec.requiredDiskMb],
  ] as const) {
    if (!Number.isSafeInteger(value) || value < 0) throw validationError(`${field} must be a non-negative integer`);
  }
  if (!Number.isSafeInteger(spec.maxRuntimeSeconds) || spec.maxRuntimeSeconds <= 0) {
    throw validationError("max_runtime_seconds must be a positive integer");
  }
  if (!isSafeRelativePath(spec.entrypoint)) {
    throw validationError("entrypoint must be a relative path inside the package without \"..\"");
  }
  checkGpuAsks(spec);
}

/**
 * The job's GPU asks: 1 to 8 GPUs, a valid model allow-list, "major.minor" minimums or none.
 * @throws ApiError VALIDATION_FAILED naming the field.
 */
export function checkGpuAsks(spec: Pick<JobSpec, "requiredGpuCount" | "gpuModels" | "minComputeCapability" | "minCudaVersion">): void {
  const gpus = spec.requiredGpuCount ?? 1;
  if (!Number.isInteger(gpus) || gpus < 1 || gpus > manifestLimits.maxGpus) {
    throw validationError(`required_gpu_count must be between 1 and ${manifestLimits.maxGpus} (GPUs of one node)`, { field: "required_gpu_count" });
  }
  const modelsProblem = gpuModelsProblem(spec.gpuModels ?? []);
  if (modelsProblem !== undefined) throw validationError(`gpu_models ${modelsProblem}`, { field: "gpu_models" });
  for (const [field, value] of [
    ["min_compute_capability", spec.minComputeCapability ?? ""],
    ["min_cuda_version", spec.minCudaVersion ?? ""],
  ] as const) {
    if (value !== "" && !isMajorMinor(value)) throw validationError(`${field} must be a "major.minor" version such as "8.0", or empty for any`, { field });
  }
}

/** What a unit of `kind` asks of GPUs when its stage narrows nothing: the job's own asks (none for a cpu unit). */
function jobGpuNeeds(spec: JobSpec, kind: UnitKind): Pick<PlannedUnit, "gpuCount" | "gpuModels" | "minComputeCapability" | "minCudaVersion"> {
  if (kind === "cpu") return { gpuCount: 0, gpuModels: [], minComputeCapability: "", minCudaVersion: "" };
  return {
    gpuCount: spec.requiredGpuCount ?? 1,
    gpuModels: [...(spec.gpuModels ?? [])],
    minComputeCapability: spec.minComputeCapability ?? "",
    minCudaVersion: spec.minCudaVersion ?? "",
  };
}

/**
 * A gpu stage's asks within its job's: it may ask for fewer GPUs, fewer models and higher minimums,
 * never more (the job's fields are what the customer agreed to pay for and admission checked).
 * @throws ApiError PACKAGE_INVALID naming the stage and the job field it would widen.
 */
function stageGpuNeeds(spec: JobSpec, stage: ManifestStage, where: string): ReturnType<typeof jobGpuNeeds> {
  const job = jobGpuNeeds(spec, stage.kind);
  if (stage.kind === "cpu") return job;
  if (stage.gpus !== undefined && stage.gpus > job.gpuCount) {
    throw new ApiError("PACKAGE_INVALID", `${where}: "gpus" ${stage.gpus} exceeds the job's required_gpu_count ${job.gpuCount}`);
  }
  const wider = stage.gpuModels?.find((model) => !gpuModelNarrows(model, job.gpuModels));
  if (wider !== undefined) {
    throw new ApiError("PACKAGE_INVALID", `${where}: "gpu_models" entry "${wider}" is not within the job's gpu_models (${job.gpuModels.join(", ")})`);
  }
  for (const [key, stageValue, jobValue, jobField] of [
    ["min_compute_capability", stage.minComputeCapability, job.minComputeCapability, "min_compute_capability"],
    ["min_cuda_version", stage.minCudaVersion, job.minCudaVersion, "min_cuda_version"],
  ] as const) {
    if (stageValue !== undefined && jobValue !== "" && compareMajorMinor(stageValue, jobValue) < 0) {
      throw new ApiError("PACKAGE_INVALID", `${where}: "${key}" ${stageValue} is below the job's ${jobField} ${jobValue}`);
    }
  }
  return {
    gpuCount: stage.gpus ?? job.gpuCount,
    gpuModels: stage.gpuModels ?? job.gpuModels,
    minComputeCapability: stage.minComputeCapability ?? job.minComputeCapability,
    minCudaVersion: stage.minCudaVersion ?? job.minCudaVersion,
  };
}

function defaultPlan(spec: JobSpec): PlannedUnit[] {
  const unit = (name: string, kind: UnitKind, dependsOn: string[]): PlannedUnit => ({
    name,
    kind,
    dependsOn,
    entrypoint: spec.entrypoint,
    args: ["--stage", name],
    vramMb: kind === "gpu" ? spec.requiredVramMb : 0,
    diskMb: spec.requiredDiskMb,
    ...unitDefaults[kind],
    ...jobGpuNeeds(spec, kind),
  });
  return [unit("prepare", "cpu", []), unit("train", "gpu", ["prepare"]), unit("evaluate", "cpu", ["train"])];
}

/**
 * Topological order by Kahn's algorithm; among ready stages the one declared
 * first goes first, so the order is stable and follows the manifest.
 */
function topologicalStages(stages: readonly ManifestStage[]): ManifestStage[] {
  const remaining = new Map(stages.map((s) => [s.name, new Set(s.dependsOn)]));
  const ordered: ManifestStage[] = [];
  while (ordered.length < stages.length) {
    const next = stages.find((s) => remaining.get(s.name)?.size === 0);
    // parseManifest rejected cycles, so a ready stage always exists.
    if (next === undefined) throw new Error("planner: cycle survived validation");
    ordered.push(next);
    remaining.delete(next.name);
    for (const deps of remaining.values()) deps.delete(next.name);
  }
  return ordered;
}

function manifestPlan(spec: JobSpec, manifest: Manifest): PlannedUnit[] {
  const byName = new Map(manifest.stages.map((s) => [s.name, s]));
  const units: PlannedUnit[] = [];
  for (const stage of topologicalStages(manifest.stages)) {
    const where = `gpu-agent.json: stage "${stage.name}"`;
    if (stage.vramMb !== undefined && stage.vramMb > spec.requiredVramMb) {
      throw new ApiError(
        "PACKAGE_INVALID",
        `${where}: "vram_mb" ${stage.vramMb} exceeds the job's required_vram_mb ${spec.requiredVramMb}`,
      );
    }
    if (stage.diskMb !== undefined && stage.diskMb > spec.requiredDiskMb) {
      throw new ApiError(
        "PACKAGE_INVALID",
        `${where}: "disk_mb" ${stage.diskMb} exceeds the job's required_disk_mb ${spec.requiredDiskMb}`,
      );
    }
    const gpuNeeds = stageGpuNeeds(spec, stage, where);
    // A stage depending on a fanned-out stage waits for every replica of it.
    const dependsOn = stage.dependsOn.flatMap((dep) => {
      const depStage = byName.get(dep);
      return depStage === undefined ? [] : replicaNames(depStage);
    });
    const names = replicaNames(stage);
    names.forEach((name, replica) => {
      const baseArgs = stage.args ?? ["--stage", stage.name];
      // Replicas learn who they are through their arguments, the only channel the entry gets.
      const replicaArgs = stage.replicas > 1 ? ["--replica", String(replica), "--replicas", String(stage.replicas)] : [];
      units.push({
        name,
        kind: stage.kind,
        dependsOn: [...dependsOn],
        entrypoint: stage.entry ?? spec.entrypoint,
        args: [...baseArgs, ...replicaArgs],
        vramMb: stage.kind === "gpu" ? (stage.vramMb ?? spec.requiredVramMb) : 0,
        diskMb: stage.diskMb ?? spec.requiredDiskMb,
        cpuCores: stage.cpuCores ?? unitDefaults[stage.kind].cpuCores,
        memoryMb: stage.memoryMb ?? unitDefaults[stage.kind].memoryMb,
        ...gpuNeeds,
        gpuModels: [...gpuNeeds.gpuModels],
      });
    });
  }
  return units;
}

/**
 * Plans a job: the manifest's stages when the package has one, otherwise
 * `prepare` (cpu) → `train` (gpu) → `evaluate` (cpu). The result is in
 * topological order: every unit comes after all the units it depends on.
 * @throws ApiError PACKAGE_INVALID for a bad manifest, VALIDATION_FAILED for a bad spec.
 */
export function planJob(spec: JobSpec): PlannedUnit[] {
  checkSpec(spec);
  if (spec.manifest === undefined) return defaultPlan(spec);
  const manifest = parseManifest(spec.manifest);
  return manifest.stages.length === 0 ? defaultPlan(spec) : manifestPlan(spec, manifest);
}
