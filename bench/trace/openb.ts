/**
 * The openb trace (../shared/traces/openb, Alibaba cluster-trace-gpu-v2023 as
 * used by the FGD paper, Weng et al., ATC '23) read into the placer's types.
 *
 * How a trace row becomes the placer's input (src/placer/README.md, "Trace
 * replay"):
 * - every GPU has 1000 "milli-GPU" of VRAM (`vramMb` 1000): the paper counts
 *   a share of a GPU whatever its model, so a GPU's capacity is 1000 thousandths;
 * - a task with `num_gpu` 1 asks one GPU with `gpu_milli` free (`vramMb` =
 *   gpu_milli, `gpuCount` 1); with `num_gpu` ≥ 2 it asks that many whole GPUs
 *   of one node (`gpuCount` = num_gpu, `vramMb` 1000 each); with 0 it is a cpu
 *   unit;
 * - `gpu_spec` ("V100M16|V100M32") becomes the `gpuModels` allow-list, matched
 *   against the node's model, which is every GpuView's `name`;
 * - `cpu_milli` / 1000 are cores (fractional: the placer compares numbers),
 *   `memory_mib` is `memoryMb`; the trace has no disk, so nodes and tasks have 0.
 */
import type { GpuView, NodeSnapshot, UnitRequest } from "../../src/placer/types.ts";

/** The thousandths a GPU holds: the paper's unit of GPU allocation. */
export const milliPerGpu = 1000;

/** One node row: `sn, cpu_milli, memory_mib, gpu, model`. */
export interface TraceNode {
  id: string;
  cpuMilli: number;
  memoryMib: number;
  gpus: number;
  model: string;
}

/** One task row: `cpu_milli, memory_mib, num_gpu, gpu_milli, gpu_spec` (the rest of the row is not used). */
export interface TraceTask {
  name: string;
  cpuMilli: number;
  memoryMib: number;
  numGpu: number;
  /** A share of one GPU in thousandths when `numGpu` is 1; 1000 per GPU otherwise. */
  gpuMilli: number;
  /** Allowed models; empty: any. */
  gpuSpec: readonly string[];
}

/** The rows of a CSV with a header, as records keyed by column name. The trace quotes nothing. */
export function parseCsv(text: string): Record<string, string>[] {
  const lines = text.split(/\r?\n/).filter((line) => line.trim() !== "");
  const header = (lines[0] ?? "").split(",");
  return lines.slice(1).map((line) => {
    const cells = line.split(",");
    return Object.fromEntries(header.map((name, i) => [name, cells[i] ?? ""]));
  });
}

function integer(row: Record<string, string>, column: string): number {
  const raw = row[column];
  const value = Number(raw);
  if (raw === undefined || raw === "" || !Number.isInteger(value) || value < 0) throw new Error(`trace: column ${column} is ${JSON.stringify(raw)}`);
  return value;
}

/** Nodes from `openb_node_list_gpu_node.csv`. */
export function parseNodes(text: string): TraceNode[] {
  return parseCsv(text).map((row) => ({
    id: row["sn"] ?? "",
    cpuMilli: integer(row, "cpu_milli"),
    memoryMib: integer(row, "memory_mib"),
    gpus: integer(row, "gpu"),
    model: row["model"] ?? "",
  }));
}

/** Tasks from an `openb_pod_list_*.csv` (a file without `gpu_spec` has no constraints). */
export function parseTasks(text: string): TraceTask[] {
  return parseCsv(text).map((row) => {
    const numGpu = integer(row, "num_gpu");
    const spec = row["gpu_spec"] ?? "";
    return {
      name: row["name"] ?? "",
      cpuMilli: integer(row, "cpu_milli"),
      memoryMib: integer(row, "memory_mib"),
      numGpu,
      gpuMilli: numGpu === 0 ? 0 : integer(row, "gpu_milli"),
      gpuSpec: spec === "" ? [] : spec.split("|"),
    };
  });
}

/** The GPU a task asks for in all, in thousandths (what it adds to the allocation rate). */
export function taskGpuMilli(task: TraceTask): number {
  return task.numGpu * task.gpuMilli;
}

/** A trace node as the placer sees it when nothing runs on it: one GpuView per GPU, named by the model. */
export function toNodeSnapshot(node: TraceNode): NodeSnapshot {
  const gpus: GpuView[] = Array.from({ length: node.gpus }, (_, index) => ({ index, name: node.model, vramMb: milliPerGpu, freeVramMb: milliPerGpu }));
  return {
    id: node.id,
    trustLevel: "controlled",
    schedulable: true,
    cpuCores: node.cpuMilli / 1000,
    freeCpuCores: node.cpuMilli / 1000,
    memoryMb: node.memoryMib,
    freeMemoryMb: node.memoryMib,
    diskFreeMb: 0,
    gpus,
    cachedDatasetIds: new Set(),
    reliability: 1,
    isolation: "sandboxed",
  };
}

/** A task as the placer's unit request; `id` must be unique in the replay, `arrival` orders it. */
export function toUnitRequest(task: TraceTask, id: string, arrival: number): UnitRequest {
  const gpu = task.numGpu > 0;
  const unit: UnitRequest = {
    id,
    jobId: id,
    customerId: "trace",
    kind: gpu ? "gpu" : "cpu",
    vramMb: gpu ? task.gpuMilli : 0,
    diskMb: 0,
    cpuCores: task.cpuMilli / 1000,
    memoryMb: task.memoryMib,
    sensitivity: "public",
    datasetId: "none",
    excludedNodeIds: [],
    readySinceMs: arrival,
  };
  if (gpu) unit.gpuCount = task.numGpu;
  if (task.gpuSpec.length > 0) unit.gpuModels = task.gpuSpec;
  return unit;
}
