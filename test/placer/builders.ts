/** Builders for placer tests: a node or unit with sensible defaults, overridden field by field. */
import type { GpuView, NodeSnapshot, UnitRequest } from "../../src/placer/types.ts";

/** Node overrides; `vram` is a shortcut for idle GPUs of these sizes (device index = position). */
export type NodeOverrides = Partial<Omit<NodeSnapshot, "cachedDatasetIds">> & {
  vram?: number[];
  cached?: string[];
};

/** An idle, schedulable, sandboxed, verified node with one 24 GB GPU and no owner controls unless told otherwise. */
export function nodeWith(overrides: NodeOverrides = {}): NodeSnapshot {
  const { vram, cached, ...rest } = overrides;
  const gpus: GpuView[] = (vram ?? [24576]).map((mb, index) => ({ index, name: `gpu-${mb}`, vramMb: mb, freeVramMb: mb }));
  return {
    id: "node-a",
    trustLevel: "verified",
    schedulable: true,
    cpuCores: 16,
    freeCpuCores: 16,
    memoryMb: 65536,
    freeMemoryMb: 65536,
    diskFreeMb: 500_000,
    gpus,
    cachedDatasetIds: new Set(cached ?? []),
    reliability: 0.9,
    isolation: "sandboxed",
    ...rest,
  };
}

/** A public gpu unit asking for 8 GB VRAM, 10 GB disk, 2 cores and 2 GB RAM unless told otherwise. */
export function unitWith(overrides: Partial<UnitRequest> = {}): UnitRequest {
  return {
    id: "unit-1",
    jobId: "job-1",
    customerId: "cust-a",
    kind: "gpu",
    vramMb: 8000,
    diskMb: 10_000,
    cpuCores: 2,
    memoryMb: 2048,
    sensitivity: "public",
    datasetId: "ds-1",
    excludedNodeIds: [],
    readySinceMs: 1_000,
    ...overrides,
  };
}

/** A GPU with some VRAM already in use. */
export function gpu(index: number, vramMb: number, freeVramMb = vramMb): GpuView {
  return { index, name: `gpu-${vramMb}`, vramMb, freeVramMb };
}
