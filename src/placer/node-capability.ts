/**
 * Could a unit EVER run on a node, whatever runs there now: its static capacity (total GPUs and each
 * one's total VRAM, model, compute capability and CUDA version; cores, memory, disk), its trust level
 * and its isolation. What changes by itself — free resources, liveness, the owner's pause and window,
 * the owner's reserved VRAM, a sandbox that cannot start yet — is the placer's, cycle by cycle.
 *
 * Two readers: job creation refuses a job one of whose stages no enrolled node could ever run
 * (NO_CAPABLE_NODE, with {@link explainIncapable}'s message), and the placement cycle holds a job's
 * units while one of its waiting stages has no capable node online. Pure, like the rest of the placer.
 */
import { gpuModelAllowed, meetsMinimum, parseMajorMinor } from "../planner/gpu-constraints.ts";
import { sandboxRequired } from "./node-rules.ts";
import { minimumTrust, trustRank } from "./trust.ts";
import type { NodeIsolation, Sensitivity, TrustLevel, UnitKind } from "./types.ts";

/** One GPU as its node last reported it, totals only. */
export interface GpuCapacity {
  /** The model as the driver names it, e.g. "NVIDIA GeForce RTX 4090". */
  name: string;
  vramMb: number;
  /** "major.minor"; absent when unknown (then no minimum is met). */
  computeCapability?: string;
  /** The highest CUDA version its driver supports, "major.minor"; absent when unknown. */
  cudaVersion?: string;
}

/** What a node is, as opposed to what it has free now. */
export interface NodeCapacity {
  id: string;
  trustLevel: TrustLevel;
  isolation: NodeIsolation;
  cpuCores: number;
  memoryMb: number;
  /** Disk the node reported free for units (the largest a unit could be given). */
  diskMb: number;
  gpus: readonly GpuCapacity[];
}

/** What one planned unit (or stage) asks of a node. */
export interface UnitNeeds {
  kind: UnitKind;
  /** VRAM each of its GPUs must have (gpu units). */
  vramMb: number;
  /** GPUs of one node (0 for a cpu unit). */
  gpuCount: number;
  gpuModels: readonly string[];
  /** "major.minor" or "" for any. */
  minComputeCapability: string;
  minCudaVersion: string;
  diskMb: number;
  cpuCores: number;
  memoryMb: number;
  sensitivity: Sensitivity;
}

/** One requirement a node can fall short of; {@link shortfalls} lists them in this order, the order they are reported in. */
export type Shortfall =
  | "trust"
  | "sandbox"
  | "gpu_count"
  | "vram"
  | "gpu_model"
  | "compute_capability"
  | "cuda_version"
  | "gpu_together"
  | "cpu_cores"
  | "memory"
  | "disk";

/** Whether one GPU meets every per-GPU ask of the unit. */
function gpuFits(gpu: GpuCapacity, needs: UnitNeeds): boolean {
  return (
    gpu.vramMb >= needs.vramMb &&
    gpuModelAllowed(gpu.name, needs.gpuModels) &&
    meetsMinimum(gpu.computeCapability, needs.minComputeCapability) &&
    meetsMinimum(gpu.cudaVersion, needs.minCudaVersion)
  );
}

/** How many of the node's GPUs pass `test`. */
function countGpus(node: NodeCapacity, test: (gpu: GpuCapacity) => boolean): number {
  let n = 0;
  for (const gpu of node.gpus) if (test(gpu)) n += 1;
  return n;
}

/** Every requirement the node falls short of, in report order; empty when the unit could run there. */
export function shortfalls(needs: UnitNeeds, node: NodeCapacity): Shortfall[] {
  const missed: Shortfall[] = [];
  if (trustRank(node.trustLevel) < trustRank(minimumTrust(needs.sensitivity))) missed.push("trust");
  if (node.isolation === "none" && sandboxRequired(needs.sensitivity)) missed.push("sandbox");
  if (needs.kind === "gpu") {
    const count = needs.gpuCount;
    if (node.gpus.length < count) missed.push("gpu_count");
    if (countGpus(node, (g) => g.vramMb >= needs.vramMb) < count) missed.push("vram");
    if (countGpus(node, (g) => gpuModelAllowed(g.name, needs.gpuModels)) < count) missed.push("gpu_model");
    if (countGpus(node, (g) => meetsMinimum(g.computeCapability, needs.minComputeCapability)) < count) missed.push("compute_capability");
    if (countGpus(node, (g) => meetsMinimum(g.cudaVersion, needs.minCudaVersion)) < count) missed.push("cuda_version");
    // Each ask may be met by different GPUs: the unit needs `count` GPUs that meet all of them.
    if (missed.length === 0 && countGpus(node, (g) => gpuFits(g, needs)) < count) missed.push("gpu_together");
  }
  if (node.cpuCores < needs.cpuCores) missed.push("cpu_cores");
  if (node.memoryMb < needs.memoryMb) missed.push("memory");
  if (node.diskMb < needs.diskMb) missed.push("disk");
  return missed;
}

/** Whether the unit could ever run on the node (see the file's header for what "ever" leaves out). */
export function canEverRun(needs: UnitNeeds, node: NodeCapacity): boolean {
  return shortfalls(needs, node).length === 0;
}

/** A node's id as messages show it: enough to find it in the operator's list. */
export function shortNodeId(id: string): string {
  return id.length > 8 ? `${id.slice(0, 8)}…` : id;
}

/** "1 GPU", "4 GPUs". */
function gpusPhrase(count: number): string {
  return count === 1 ? "1 GPU" : `${count} GPUs`;
}

/** The node and GPU holding the highest value of `value` across the fleet, or undefined when no GPU reports one. */
function bestGpu(nodes: readonly NodeCapacity[], value: (gpu: GpuCapacity) => number | undefined): { node: NodeCapacity; gpu: GpuCapacity; value: number } | undefined {
  let best: { node: NodeCapacity; gpu: GpuCapacity; value: number } | undefined;
  for (const node of nodes) {
    for (const gpu of node.gpus) {
      const v = value(gpu);
      if (v !== undefined && (best === undefined || v > best.value)) best = { node, gpu, value: v };
    }
  }
  return best;
}

/** The node with the highest `value`. */
function bestNode(nodes: readonly NodeCapacity[], value: (node: NodeCapacity) => number): NodeCapacity {
  return nodes.reduce((a, b) => (value(b) > value(a) ? b : a));
}

/** A version as a sortable number (major × 10,000 + minor), for finding the fleet's highest. */
function versionRank(version: string | undefined): number | undefined {
  const parts = version === undefined ? undefined : parseMajorMinor(version);
  return parts === undefined ? undefined : parts[0] * 10_000 + parts[1];
}

/** What the fleet offers at best where `shortfall` falls short, in words, after "; ". */
function bestOffered(shortfall: Shortfall, needs: UnitNeeds, nodes: readonly NodeCapacity[]): string {
  switch (shortfall) {
    case "trust": {
      const node = bestNode(nodes, (n) => trustRank(n.trustLevel));
      return `the most trusted node is ${node.trustLevel} (node ${shortNodeId(node.id)})`;
    }
    case "sandbox":
      return "no node that could otherwise run it sandboxes its units (isolation bubblewrap)";
    case "gpu_count": {
      const node = bestNode(nodes, (n) => n.gpus.length);
      return `the most on any node is ${node.gpus.length} (node ${shortNodeId(node.id)})`;
    }
    case "vram": {
      const best = bestGpu(nodes, (g) => g.vramMb);
      return best === undefined ? "no node has a GPU" : `the largest on any node is ${best.value} MB (node ${shortNodeId(best.node.id)}, ${best.gpu.name})`;
    }
    case "gpu_model": {
      const models = [...new Set(nodes.flatMap((n) => n.gpus.map((g) => g.name)))];
      return models.length === 0 ? "no node has a GPU" : `the nodes have ${models.slice(0, 5).join(", ")}${models.length > 5 ? ", …" : ""}`;
    }
    case "compute_capability": {
      const best = bestGpu(nodes, (g) => versionRank(g.computeCapability));
      return best === undefined ? "no node reports a compute capability" : `the highest on any node is ${best.gpu.computeCapability} (node ${shortNodeId(best.node.id)}, ${best.gpu.name})`;
    }
    case "cuda_version": {
      const best = bestGpu(nodes, (g) => versionRank(g.cudaVersion));
      return best === undefined ? "no node reports a CUDA version" : `the newest on any node is ${best.gpu.cudaVersion} (node ${shortNodeId(best.node.id)}, ${best.gpu.name})`;
    }
    case "gpu_together": {
      const node = bestNode(nodes, (n) => countGpus(n, (g) => gpuFits(g, needs)));
      return `no node has ${needs.gpuCount} GPUs that meet every ask together; the most on one node is ${countGpus(node, (g) => gpuFits(g, needs))} (node ${shortNodeId(node.id)})`;
    }
    case "cpu_cores": {
      const node = bestNode(nodes, (n) => n.cpuCores);
      return `the most on any node is ${node.cpuCores} (node ${shortNodeId(node.id)})`;
    }
    case "memory": {
      const node = bestNode(nodes, (n) => n.memoryMb);
      return `the most on any node is ${node.memoryMb} MB (node ${shortNodeId(node.id)})`;
    }
    case "disk": {
      const node = bestNode(nodes, (n) => n.diskMb);
      return `the most free on any node is ${node.diskMb} MB (node ${shortNodeId(node.id)})`;
    }
  }
}

/** What the unit asks where `shortfall` falls short, in words, after `stage "x" needs `. */
function asked(shortfall: Shortfall, needs: UnitNeeds): string {
  const each = needs.gpuCount === 1 ? "" : " each";
  switch (shortfall) {
    case "trust":
      return `a node at trust ${minimumTrust(needs.sensitivity)} or higher for a ${needs.sensitivity} job`;
    case "sandbox":
      return `a node that sandboxes its units for a ${needs.sensitivity} job`;
    case "gpu_count":
      return `${gpusPhrase(needs.gpuCount)} on one node`;
    case "vram":
      return `${gpusPhrase(needs.gpuCount)} with ${needs.vramMb} MB VRAM${each}`;
    case "gpu_model":
      return `${gpusPhrase(needs.gpuCount)} of model ${needs.gpuModels.join(" or ")}`;
    case "compute_capability":
      return `${gpusPhrase(needs.gpuCount)} of compute capability ${needs.minComputeCapability} or higher`;
    case "cuda_version":
      return `${gpusPhrase(needs.gpuCount)} whose driver supports CUDA ${needs.minCudaVersion} or newer`;
    case "gpu_together":
      return `${gpusPhrase(needs.gpuCount)} with ${needs.vramMb} MB VRAM${each}${needs.gpuModels.length > 0 ? `, of model ${needs.gpuModels.join(" or ")}` : ""}${needs.minComputeCapability !== "" ? `, compute capability ≥ ${needs.minComputeCapability}` : ""}${needs.minCudaVersion !== "" ? `, CUDA ≥ ${needs.minCudaVersion}` : ""}`;
    case "cpu_cores":
      return `${needs.cpuCores} CPU cores`;
    case "memory":
      return `${needs.memoryMb} MB of memory`;
    case "disk":
      return `${needs.diskMb} MB of disk`;
  }
}

/**
 * Why no node of `nodes` could ever run the stage, for the customer: what the stage needs where the
 * closest node (fewest shortfalls) first falls short, and the best any node offers there, e.g.
 * `stage "train" needs 1 GPU with 80000 MB VRAM; the largest on any node is 24576 MB (node 3f2a…, RTX 4090)`.
 * Undefined when some node could run it.
 */
export function explainIncapable(stage: string, needs: UnitNeeds, nodes: readonly NodeCapacity[]): string | undefined {
  if (nodes.length === 0) return `stage "${stage}" cannot run: no node is enrolled yet`;
  const detail = shortfallDetail(needs, nodes);
  return detail === undefined ? undefined : `stage "${stage}" ${detail}`;
}

/**
 * What {@link explainIncapable} says after the stage's name ("needs …; the largest on any node is …"),
 * or undefined when some node of `nodes` (not empty) could run the unit.
 */
export function shortfallDetail(needs: UnitNeeds, nodes: readonly NodeCapacity[]): string | undefined {
  let closest: Shortfall[] | undefined;
  for (const node of nodes) {
    const missed = shortfalls(needs, node);
    if (missed.length === 0) return undefined;
    if (closest === undefined || missed.length < closest.length) closest = missed;
  }
  if (closest === undefined) return undefined;
  const first = closest[0]!;
  return `needs ${asked(first, needs)}; ${bestOffered(first, needs, nodes)}`;
}
