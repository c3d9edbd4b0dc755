import assert from "node:assert/strict";
import { viewOf } from "../../src/placer/cycle-state.ts";
import { createPlacer, placeUnits } from "../../src/placer/index.ts";
import {
  binPackScore,
  computeCapability,
  cudaVersion,
  type FilterPlugin,
  gpuCount,
  gpuModel,
  gpuVram,
  nodeConcurrency,
} from "../../src/placer/plugins/index.ts";
import type { ReasonCode, Status } from "../../src/placer/reasons.ts";
import type { GpuView, NodeSnapshot, PlacementResult, UnitRequest } from "../../src/placer/types.ts";
import { gpu, type NodeOverrides, nodeWith, unitWith } from "./builders.ts";

/** A GPU of a model with a compute capability and CUDA version (absent: unknown). */
function card(index: number, name: string, computeCapability?: string, cudaVersion?: string, vramMb = 24576, freeVramMb = vramMb): GpuView {
  return {
    ...gpu(index, vramMb, freeVramMb),
    name,
    ...(computeCapability === undefined ? {} : { computeCapability }),
    ...(cudaVersion === undefined ? {} : { cudaVersion }),
  };
}

const rtx4090 = (index: number, free?: number) => card(index, "NVIDIA GeForce RTX 4090", "8.9", "12.4", 24576, free);
const rtx2080 = (index: number) => card(index, "NVIDIA GeForce RTX 2080 Ti", "7.5", "12.2", 11264);
const a100 = (index: number) => card(index, "NVIDIA A100-SXM4-80GB", "8.0", "12.2", 81920);

function place(nodes: NodeSnapshot[], units: UnitRequest[]): PlacementResult {
  return placeUnits({ nodes }, units, { seed: "gpus" });
}

describe("GPU count, constraint and concurrency filters, each alone", () => {
  const success: Status = { code: "success" };
  const cases: { name: string; plugin: FilterPlugin; node: NodeOverrides; unit: Partial<UnitRequest>; expected: Status }[] = [
    { name: "GpuCount passes a cpu unit on a node without GPUs", plugin: gpuCount, node: { vram: [] }, unit: { kind: "cpu", vramMb: 0 }, expected: success },
    {
      name: "GpuCount rejects a gpu unit on a node without GPUs (no_gpu, unschedulable as before GPU counts)",
      plugin: gpuCount,
      node: { vram: [] },
      unit: {},
      expected: { code: "unschedulable", reason: "no_gpu" },
    },
    {
      name: "GpuCount rejects a 4-GPU unit on a node with 2 GPUs for good",
      plugin: gpuCount,
      node: { vram: [24576, 24576] },
      unit: { gpuCount: 4 },
      expected: { code: "unresolvable", reason: "gpu_count_too_low" },
    },
    { name: "GpuCount passes a 2-GPU unit on a node with 2 busy GPUs (VRAM is GpuVram's)", plugin: gpuCount, node: { gpus: [gpu(0, 24576, 0), gpu(1, 24576, 0)] }, unit: { gpuCount: 2 }, expected: success },
    { name: "GpuModel passes a unit with no allow-list", plugin: gpuModel, node: { gpus: [rtx2080(0)] }, unit: {}, expected: success },
    { name: "GpuModel matches a case-insensitive substring of the model", plugin: gpuModel, node: { gpus: [rtx4090(0)] }, unit: { gpuModels: ["rtx 4090"] }, expected: success },
    { name: "GpuModel passes when any entry of the list matches", plugin: gpuModel, node: { gpus: [a100(0)] }, unit: { gpuModels: ["H100", "a100"] }, expected: success },
    {
      name: "GpuModel rejects a node whose GPUs are all of other models, for good",
      plugin: gpuModel,
      node: { gpus: [rtx4090(0), rtx2080(1)] },
      unit: { gpuModels: ["A100"] },
      expected: { code: "unresolvable", reason: "gpu_model_not_allowed" },
    },
    {
      name: "GpuModel rejects a 2-GPU unit when only one GPU of the node is of an allowed model",
      plugin: gpuModel,
      node: { gpus: [rtx4090(0), rtx2080(1)] },
      unit: { gpuCount: 2, gpuModels: ["4090"] },
      expected: { code: "unresolvable", reason: "gpu_model_not_allowed" },
    },
    { name: "ComputeCapability passes an equal capability", plugin: computeCapability, node: { gpus: [a100(0)] }, unit: { minComputeCapability: "8.0" }, expected: success },
    { name: "ComputeCapability compares numerically: 8.10 meets 8.9", plugin: computeCapability, node: { gpus: [card(0, "future", "8.10")] }, unit: { minComputeCapability: "8.9" }, expected: success },
    {
      name: "ComputeCapability compares numerically: 8.9 does not meet 8.10",
      plugin: computeCapability,
      node: { gpus: [rtx4090(0)] },
      unit: { minComputeCapability: "8.10" },
      expected: { code: "unresolvable", reason: "compute_capability_too_low" },
    },
    {
      name: "ComputeCapability: an unknown capability meets no minimum",
      plugin: computeCapability,
      node: { gpus: [card(0, "NVIDIA GeForce RTX 4090")] },
      unit: { minComputeCapability: "7.0" },
      expected: { code: "unresolvable", reason: "compute_capability_too_low" },
    },
    {
      name: "ComputeCapability counts only GPUs of an allowed model (constraints hold on the same GPU)",
      plugin: computeCapability,
      node: { gpus: [rtx2080(0), a100(1)] },
      unit: { gpuModels: ["2080"], minComputeCapability: "8.0" },
      expected: { code: "unresolvable", reason: "compute_capability_too_low" },
    },
    { name: "CudaVersion passes a newer driver", plugin: cudaVersion, node: { gpus: [rtx4090(0)] }, unit: { minCudaVersion: "12.2" }, expected: success },
    {
      name: "CudaVersion compares numerically: 12.4 does not meet 12.10",
      plugin: cudaVersion,
      node: { gpus: [rtx4090(0)] },
      unit: { minCudaVersion: "12.10" },
      expected: { code: "unresolvable", reason: "cuda_version_too_low" },
    },
    {
      name: "CudaVersion: an unknown CUDA version meets no minimum",
      plugin: cudaVersion,
      node: { gpus: [card(0, "NVIDIA GeForce RTX 4090", "8.9")] },
      unit: { minCudaVersion: "11.0" },
      expected: { code: "unresolvable", reason: "cuda_version_too_low" },
    },
    { name: "GpuVram passes a 2-GPU unit when two GPUs each have the VRAM", plugin: gpuVram, node: { vram: [24576, 24576] }, unit: { gpuCount: 2, vramMb: 20000 }, expected: success },
    {
      name: "GpuVram rejects a 2-GPU unit when only one GPU has the VRAM now (insufficient_gpus)",
      plugin: gpuVram,
      node: { gpus: [gpu(0, 24576), gpu(1, 24576, 10000)] },
      unit: { gpuCount: 2, vramMb: 20000 },
      expected: { code: "unschedulable", reason: "insufficient_gpus" },
    },
    {
      name: "GpuVram rejects a 2-GPU unit when no GPU has the VRAM now (insufficient_vram)",
      plugin: gpuVram,
      node: { gpus: [gpu(0, 24576, 1000), gpu(1, 24576, 10000)] },
      unit: { gpuCount: 2, vramMb: 20000 },
      expected: { code: "unschedulable", reason: "insufficient_vram" },
    },
    {
      name: "GpuVram never adds up VRAM of two GPUs for a 1-GPU unit",
      plugin: gpuVram,
      node: { vram: [12288, 12288] },
      unit: { vramMb: 20000 },
      expected: { code: "unschedulable", reason: "insufficient_vram" },
    },
    {
      name: "GpuVram counts only the GPUs the unit's constraints allow",
      plugin: gpuVram,
      node: { gpus: [rtx4090(0, 2000), a100(1)] },
      unit: { gpuModels: ["4090"], vramMb: 8000 },
      expected: { code: "unschedulable", reason: "insufficient_vram" },
    },
    { name: "NodeConcurrency passes a node that told no unit limit", plugin: nodeConcurrency, node: {}, unit: {}, expected: success },
    { name: "NodeConcurrency passes a node with a free unit slot", plugin: nodeConcurrency, node: { freeUnitSlots: 1 }, unit: {}, expected: success },
    {
      name: "NodeConcurrency rejects a node at its unit limit, until a unit ends (node_full, not unresolvable)",
      plugin: nodeConcurrency,
      node: { freeUnitSlots: 0 },
      unit: {},
      expected: { code: "unschedulable", reason: "node_full" },
    },
  ];
  for (const tc of cases) {
    it(tc.name, () => assert.deepEqual(tc.plugin.filter(unitWith(tc.unit), viewOf(nodeWith(tc.node))), tc.expected));
  }
});

describe("placeUnits: multi-GPU units", () => {
  it("never adds up GPUs of two nodes: a 2-GPU unit waits while each node has one GPU free", () => {
    const nodes = [nodeWith({ id: "a", vram: [24576] }), nodeWith({ id: "b", vram: [24576] })];
    const result = place(nodes, [unitWith({ gpuCount: 2, vramMb: 20000 })]);
    assert.deepEqual(result.placements, []);
    assert.deepEqual(result.unplaced[0]?.reasons, { gpu_count_too_low: 2 });
    assert.equal(result.unplaced[0]?.unresolvable, true);
  });

  it("gets K GPUs of one node and reserves exactly those, reporting their device indexes ascending", () => {
    const node = nodeWith({ id: "rig", gpus: [gpu(3, 24576, 24576), gpu(1, 24576, 20000), gpu(7, 49152, 49152), gpu(5, 24576, 5000)] });
    const placer = createPlacer({ nodes: [node] });
    const first = placer.place([unitWith({ id: "two", gpuCount: 2, vramMb: 20000 })], { seed: "s" });
    // Best fit: the two GPUs with the least free VRAM that is enough (20000 on 1, 24576 on 3), not the 48 GB card.
    assert.deepEqual(first.placements.map((p) => [p.gpuIndex, p.gpuIndexes]), [[1, [1, 3]]]);
    // Those two now have 0 and 4576 MB free: a second 2-GPU unit of 20000 MB finds one GPU left (insufficient_gpus).
    const second = placer.place([unitWith({ id: "again", gpuCount: 2, vramMb: 20000 })], { seed: "s" });
    assert.deepEqual(second.unplaced[0]?.reasons, { insufficient_gpus: 1 });
    assert.equal(second.unplaced[0]?.unresolvable, false);
    // And a 1-GPU unit of 4576 MB fits exactly what the first left on GPU 3.
    const third = placer.place([unitWith({ id: "small", vramMb: 4576 })], { seed: "s" });
    assert.deepEqual(third.placements.map((p) => p.gpuIndexes), [[3]]);
  });

  it("gives a cpu unit GPU index -1 and no GPU indexes", () => {
    const result = place([nodeWith({ vram: [] })], [unitWith({ kind: "cpu", vramMb: 0 })]);
    assert.deepEqual(result.placements.map((p) => [p.gpuIndex, p.gpuIndexes]), [[-1, []]]);
  });

  it("puts an 8-GPU unit on the node with eight GPUs that fit", () => {
    const nodes = [
      nodeWith({ id: "four", vram: [81920, 81920, 81920, 81920] }),
      nodeWith({ id: "eight", vram: Array.from({ length: 8 }, () => 24576) }),
      nodeWith({ id: "eight-busy", gpus: Array.from({ length: 8 }, (_, i) => gpu(i, 81920, i === 0 ? 0 : 81920)) }),
    ];
    const result = place(nodes, [unitWith({ gpuCount: 8, vramMb: 20000 })]);
    assert.deepEqual(result.placements.map((p) => [p.nodeId, p.gpuIndexes]), [["eight", [0, 1, 2, 3, 4, 5, 6, 7]]]);
  });

  it("refuses a unit asking for more than 8 GPUs or none", () => {
    assert.throws(() => place([nodeWith()], [unitWith({ gpuCount: 9 })]), RangeError);
    assert.throws(() => place([nodeWith()], [unitWith({ gpuCount: 0 })]), RangeError);
  });
});

describe("placeUnits: GPU constraints", () => {
  it("places on the only node with GPUs of an allowed model and capability, on those GPUs", () => {
    const nodes = [
      nodeWith({ id: "old", gpus: [rtx2080(0), rtx2080(1)] }),
      nodeWith({ id: "mixed", gpus: [rtx2080(0), rtx4090(1), rtx4090(2)] }),
      nodeWith({ id: "lab", gpus: [a100(0)] }),
    ];
    const result = place(nodes, [unitWith({ gpuCount: 2, gpuModels: ["RTX"], minComputeCapability: "8.6", vramMb: 16000 })]);
    assert.deepEqual(result.placements.map((p) => [p.nodeId, p.gpuIndexes]), [["mixed", [1, 2]]]);
  });

  const unplacedCases: { name: string; nodes: NodeSnapshot[]; unit: Partial<UnitRequest>; reasons: Partial<Record<ReasonCode, number>>; unresolvable: boolean; message: string }[] = [
    {
      name: "counts each node under its first failing GPU rule, and waiting cannot help",
      nodes: [
        nodeWith({ id: "cpu", vram: [] }),
        nodeWith({ id: "one", gpus: [a100(0)] }),
        nodeWith({ id: "geforce", gpus: [rtx2080(0), rtx2080(1)] }),
        nodeWith({ id: "old-a100", gpus: [card(0, "NVIDIA A100", "8.0", "11.8"), card(1, "NVIDIA A100", "8.0", "11.8")] }),
      ],
      unit: { gpuCount: 2, gpuModels: ["A100", "H100"], minComputeCapability: "8.0", minCudaVersion: "12.1", vramMb: 40000 },
      reasons: { no_gpu: 1, gpu_count_too_low: 1, gpu_model_not_allowed: 1, cuda_version_too_low: 1 },
      unresolvable: false,
      message:
        "no online node with 2 GPUs (model A100 or H100, compute capability ≥ 8.0, CUDA ≥ 12.1) of ≥ 40000 MB free VRAM each at trust ≥ community (4 nodes: 1 no_gpu, 1 gpu_count_too_low, 1 gpu_model_not_allowed, 1 cuda_version_too_low)",
    },
    {
      name: "is unresolvable when every node's GPUs are too old for the unit",
      nodes: [nodeWith({ id: "a", gpus: [rtx2080(0)] }), nodeWith({ id: "b", gpus: [card(0, "NVIDIA GeForce RTX 3090")] })],
      unit: { minComputeCapability: "8.0" },
      reasons: { compute_capability_too_low: 2 },
      unresolvable: true,
      message:
        "no online node with a GPU (compute capability ≥ 8.0) of ≥ 8000 MB free VRAM at trust ≥ community (2 nodes: 2 compute_capability_too_low)",
    },
    {
      name: "is resolvable when an allowed GPU is only busy now",
      nodes: [nodeWith({ id: "a", gpus: [rtx4090(0, 1000)] }), nodeWith({ id: "b", gpus: [rtx2080(0)] })],
      unit: { gpuModels: ["4090"] },
      reasons: { insufficient_vram: 1, gpu_model_not_allowed: 1 },
      unresolvable: false,
      message: "no online node with a GPU (model 4090) of ≥ 8000 MB free VRAM at trust ≥ community (2 nodes: 1 gpu_model_not_allowed, 1 insufficient_vram)",
    },
    {
      name: "says node_full when the only node that fits is at its unit limit",
      nodes: [nodeWith({ id: "a", freeUnitSlots: 0 })],
      unit: {},
      reasons: { node_full: 1 },
      unresolvable: false,
      message: "no online node with a GPU of ≥ 8000 MB free VRAM at trust ≥ community (1 node: 1 node_full)",
    },
  ];
  for (const tc of unplacedCases) {
    it(tc.name, () => {
      const [unplaced] = place(tc.nodes, [unitWith(tc.unit)]).unplaced;
      assert.deepEqual(unplaced, { unitId: "unit-1", reasons: tc.reasons, unresolvable: tc.unresolvable, message: tc.message });
    });
  }

  it("plans a unit without constraints exactly as before constraints existed, whatever the GPUs report", () => {
    const plain = [nodeWith({ id: "a", vram: [24576, 12288] }), nodeWith({ id: "b", vram: [16384] })];
    const reported = plain.map((n) => ({ ...n, gpus: n.gpus.map((g, i) => card(g.index, i === 0 ? "NVIDIA A100" : "Tesla T4", "8.0", "12.2", g.vramMb)) }));
    const units = [unitWith({ id: "u1", vramMb: 12000 }), unitWith({ id: "u2", vramMb: 16000 }), unitWith({ id: "u3", vramMb: 9000 })];
    assert.deepEqual(place(reported, units), place(plain, units));
  });
});

describe("placeUnits: free unit slots (busy is not broken)", () => {
  it("never sends a node more units in one cycle than it has free slots", () => {
    const nodes = [nodeWith({ id: "two-slots", vram: [81920], freeUnitSlots: 2 })];
    const units = ["u1", "u2", "u3"].map((id) => unitWith({ id, vramMb: 4000 }));
    const result = place(nodes, units);
    assert.equal(result.placements.length, 2);
    assert.deepEqual(result.unplaced.map((u) => u.reasons), [{ node_full: 1 }]);
  });

  it("places on a full node again once a sync shows a slot free", () => {
    const full = nodeWith({ id: "a", freeUnitSlots: 0 });
    const placer = createPlacer({ nodes: [full] });
    assert.equal(placer.place([unitWith()], { seed: "s" }).placements.length, 0);
    assert.equal(placer.sync({ nodes: [{ ...full, freeUnitSlots: 1 }] }), true);
    assert.deepEqual(placer.place([unitWith()], { seed: "s" }).placements.map((p) => p.nodeId), ["a"]);
  });
});

describe("BinPack with unit limits", () => {
  const profile = { vramMb: 4096, cpuCores: 2, memoryMb: 4096, diskMb: 20_000 };
  const free = { vramMb: 24_576, cpuCores: 16, memoryMb: 65_536, diskMb: 500_000 };
  const small = { kind: "gpu" as const, vramMb: 2_000, cpuCores: 1, memoryMb: 2_048, diskMb: 10_000 };
  const large = { kind: "gpu" as const, vramMb: 20_000, cpuCores: 2, memoryMb: 8_192, diskMb: 20_000 };

  it("scores a node without a limit as before limits existed", () => {
    assert.equal(binPackScore(small, { ...free, unitSlots: Infinity }, profile), binPackScore(small, free, profile));
  });

  it("keeps a node whose last slot would strand its GPU for a unit that uses the GPU, not a small one", () => {
    const lastSlot = { ...free, unitSlots: 1 };
    assert.ok(binPackScore(small, lastSlot, profile) < binPackScore(small, free, profile), "a small unit goes where slots are not the bottleneck");
    assert.ok(binPackScore(large, lastSlot, profile) > binPackScore(small, lastSlot, profile), "the last slot suits the large unit better");
  });
});
