/**
 * Which GPUs an Assign gives a unit, whether this node can take it now, and how the unit is shown
 * exactly those GPUs. Pure: the runner (runner.ts) asks, the sandbox (unit-sandbox.ts) binds the devices.
 *
 * A node that cannot take a unit *now* (at its `--max-units`, or its owner's processes hold the VRAM the
 * unit needs) answers `Rejected{busy: true}`: the unit becomes ready again and may come back once there
 * is room. A node that can never run it (no such GPU, a GPU that is not the one the control plane knows)
 * answers `busy: false`, and the control plane keeps the unit away from it.
 */
import type { Assign } from "../gen/gpuagent/agent/v1/agent_pb.ts";

/** One of this node's GPUs as the runner knows it. */
export interface LocalGpu {
  index: number;
  /** As the driver reports it; "" for a declared (`--dev-gpu`) GPU. */
  uuid: string;
}

/**
 * The GPU indexes the unit gets: `gpu_indexes`, or, from a control plane older than that field,
 * `gpu_index` alone; none for a CPU unit.
 */
export function assignedGpuIndexes(a: Pick<Assign, "kind" | "gpuIndex" | "gpuIndexes">): number[] {
  if (a.kind === "cpu") return [];
  if (a.gpuIndexes.length > 0) return [...a.gpuIndexes];
  return a.gpuIndex >= 0 ? [a.gpuIndex] : [];
}

/**
 * Why this node can never run the Assign's GPUs (a Rejected without `busy`), or undefined: a GPU unit
 * without a GPU, an index twice, an index this node does not have, or a UUID that is not the one at
 * that index here (the node's GPUs changed since the control plane last heard).
 */
export function gpuAssignmentRefusal(a: Pick<Assign, "kind" | "gpuIndex" | "gpuIndexes" | "gpuUuids">, gpus: readonly LocalGpu[]): string | undefined {
  const indexes = assignedGpuIndexes(a);
  if (a.kind === "gpu" && indexes.length === 0) return "gpu unit without a GPU index";
  if (new Set(indexes).size !== indexes.length) return `GPU indexes ${indexes.join(",")} name a GPU twice`;
  for (const [i, index] of indexes.entries()) {
    const gpu = gpus.find((g) => g.index === index);
    if (gpu === undefined) return `no GPU with index ${index} on this node`;
    const expected = a.gpuUuids[i] ?? "";
    if (expected !== "" && gpu.uuid !== "" && expected !== gpu.uuid) return `GPU ${index} on this node is ${gpu.uuid}, not ${expected}`;
  }
  return undefined;
}

/**
 * `CUDA_VISIBLE_DEVICES` for the unit: "" for a CPU unit; the GPUs' UUIDs, comma-separated, when every
 * one is known (a UUID names its GPU whatever index CUDA gives it, in or out of a sandbox); otherwise
 * the indexes (declared GPUs have no UUID).
 */
export function cudaVisibleDevices(indexes: readonly number[], gpus: readonly LocalGpu[]): string {
  const uuids = indexes.map((index) => gpus.find((g) => g.index === index)?.uuid ?? "");
  return uuids.every((u) => u !== "") ? uuids.join(",") : indexes.join(",");
}

/** One GPU's memory as last measured (heartbeat sample), with the VRAM its owner keeps. */
export interface GpuMemory {
  totalMb: number;
  /** Used by every process on the GPU, this node's units included. */
  usedMb: number;
  /** `--reserve-vram-mb`: never free for units. */
  reservedMb: number;
}

/**
 * Why the unit's GPUs lack room right now (a busy rejection), or undefined. The owner's use of a GPU is
 * what is used beyond what this node's running units asked for there; the unit fits when the GPU's
 * total less the larger of that use and the reserve, less what running units asked for, leaves it
 * `vramMb`. Unknown memory (no sample yet) does not refuse.
 */
export function vramShortfall(
  indexes: readonly number[],
  vramMb: number,
  memory: (index: number) => GpuMemory | undefined,
  askedByRunning: (index: number) => number,
): string | undefined {
  if (vramMb <= 0) return undefined;
  for (const index of indexes) {
    const m = memory(index);
    if (m === undefined) continue;
    const ours = askedByRunning(index);
    const owners = Math.max(0, m.usedMb - ours);
    const free = m.totalMb - Math.max(owners, m.reservedMb) - ours;
    if (free < vramMb) return `GPU ${index} has ${Math.max(0, free)} MB free for units now (its owner uses ${owners} MB), the unit needs ${vramMb} MB`;
  }
  return undefined;
}
