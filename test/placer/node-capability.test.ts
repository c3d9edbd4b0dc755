import assert from "node:assert/strict";
import type { NodeCapacity, UnitNeeds } from "../../src/placer/node-capability.ts";
import { canEverRun, explainIncapable, shortfalls } from "../../src/placer/node-capability.ts";

const rtx4090 = { name: "NVIDIA GeForce RTX 4090", vramMb: 24576, computeCapability: "8.9", cudaVersion: "12.4" };
const a100 = { name: "NVIDIA A100-SXM4-80GB", vramMb: 81920, computeCapability: "8.0", cudaVersion: "12.2" };
const t4 = { name: "Tesla T4", vramMb: 15360, computeCapability: "7.5", cudaVersion: "11.8" };

function node(id: string, overrides: Partial<NodeCapacity> = {}): NodeCapacity {
  return { id, trustLevel: "controlled", isolation: "sandboxed", cpuCores: 16, memoryMb: 65536, diskMb: 500_000, gpus: [rtx4090], ...overrides };
}

function gpuUnit(overrides: Partial<UnitNeeds> = {}): UnitNeeds {
  return {
    kind: "gpu",
    vramMb: 8000,
    gpuCount: 1,
    gpuModels: [],
    minComputeCapability: "",
    minCudaVersion: "",
    diskMb: 1024,
    cpuCores: 2,
    memoryMb: 2048,
    sensitivity: "public",
    ...overrides,
  };
}

const cpuUnit: UnitNeeds = { ...gpuUnit(), kind: "cpu", vramMb: 0, gpuCount: 0 };

describe("node capability (could a unit ever run on a node)", () => {
  const cases: { name: string; needs: UnitNeeds; node: NodeCapacity; missed: string[] }[] = [
    { name: "a unit the node fits", needs: gpuUnit(), node: node("n"), missed: [] },
    { name: "a cpu unit on a node without GPUs", needs: cpuUnit, node: node("n", { gpus: [] }), missed: [] },
    { name: "more VRAM than its GPU has", needs: gpuUnit({ vramMb: 80000 }), node: node("n"), missed: ["vram"] },
    { name: "more GPUs than the node has", needs: gpuUnit({ gpuCount: 2 }), node: node("n"), missed: ["gpu_count", "vram", "gpu_model", "compute_capability", "cuda_version"] },
    { name: "a model not on the allow-list", needs: gpuUnit({ gpuModels: ["A100"] }), node: node("n"), missed: ["gpu_model"] },
    { name: "a compute capability above the GPU's", needs: gpuUnit({ minComputeCapability: "9.0" }), node: node("n"), missed: ["compute_capability"] },
    { name: "a compute capability the node does not report", needs: gpuUnit({ minComputeCapability: "7.0" }), node: node("n", { gpus: [{ name: "GPU", vramMb: 24576 }] }), missed: ["compute_capability"] },
    { name: "a CUDA version above the driver's", needs: gpuUnit({ minCudaVersion: "12.6" }), node: node("n"), missed: ["cuda_version"] },
    {
      name: "two GPUs that each meet one ask but not both",
      needs: gpuUnit({ vramMb: 40000, minComputeCapability: "8.9" }),
      node: node("n", { gpus: [rtx4090, a100] }),
      missed: ["gpu_together"],
    },
    { name: "a sensitive unit below its trust tier", needs: gpuUnit({ sensitivity: "high_sensitive" }), node: node("n", { trustLevel: "verified" }), missed: ["trust"] },
    { name: "a sensitive unit on a node without a sandbox", needs: gpuUnit({ sensitivity: "low_sensitive" }), node: node("n", { isolation: "none" }), missed: ["sandbox"] },
    { name: "a node whose sandbox cannot start yet (may be fixed, so not a shortfall)", needs: gpuUnit({ sensitivity: "low_sensitive" }), node: node("n", { isolation: "unavailable" }), missed: [] },
    { name: "more cores, memory and disk than the node has", needs: { ...cpuUnit, cpuCores: 32, memoryMb: 131072, diskMb: 600_000 }, node: node("n"), missed: ["cpu_cores", "memory", "disk"] },
  ];
  for (const tc of cases) {
    it(`${tc.missed.length === 0 ? "accepts" : "finds the shortfall of"} ${tc.name}`, () => {
      assert.deepEqual(shortfalls(tc.needs, tc.node), tc.missed);
      assert.equal(canEverRun(tc.needs, tc.node), tc.missed.length === 0);
    });
  }

  it("takes 8 GPUs of one node that each meet every ask", () => {
    assert.ok(canEverRun(gpuUnit({ gpuCount: 8, vramMb: 80000, gpuModels: ["a100"], minComputeCapability: "8.0", minCudaVersion: "12.0" }), node("n", { gpus: Array(8).fill(a100) })));
  });
});

describe("explainIncapable (the NO_CAPABLE_NODE message)", () => {
  const fleet = [node("3f2a1b0c-aaaa", { gpus: [rtx4090] }), node("77aa0000-bbbb", { gpus: [t4, t4], trustLevel: "community" })];

  it("says nothing when some node could run the stage", () => {
    assert.equal(explainIncapable("train", gpuUnit(), fleet), undefined);
  });

  const messages: { name: string; needs: UnitNeeds; message: string }[] = [
    {
      name: "the largest GPU for too much VRAM",
      needs: gpuUnit({ vramMb: 80000 }),
      message: 'stage "train" needs 1 GPU with 80000 MB VRAM; the largest on any node is 24576 MB (node 3f2a1b0c…, NVIDIA GeForce RTX 4090)',
    },
    { name: "the most GPUs on one node for too many", needs: gpuUnit({ gpuCount: 4, vramMb: 1000 }), message: 'stage "train" needs 4 GPUs on one node; the most on any node is 2 (node 77aa0000…)' },
    { name: "the models there are for a model none has", needs: gpuUnit({ gpuModels: ["H100"] }), message: 'stage "train" needs 1 GPU of model H100; the nodes have NVIDIA GeForce RTX 4090, Tesla T4' },
    {
      name: "the highest compute capability",
      needs: gpuUnit({ minComputeCapability: "9.0" }),
      message: 'stage "train" needs 1 GPU of compute capability 9.0 or higher; the highest on any node is 8.9 (node 3f2a1b0c…, NVIDIA GeForce RTX 4090)',
    },
    {
      name: "the newest CUDA version",
      needs: gpuUnit({ minCudaVersion: "12.8" }),
      message: 'stage "train" needs 1 GPU whose driver supports CUDA 12.8 or newer; the newest on any node is 12.4 (node 3f2a1b0c…, NVIDIA GeForce RTX 4090)',
    },
    { name: "the most memory", needs: { ...cpuUnit, memoryMb: 100_000 }, message: 'stage "train" needs 100000 MB of memory; the most on any node is 65536 MB (node 3f2a1b0c…)' },
  ];
  for (const tc of messages) {
    it(`names ${tc.name}`, () => {
      assert.equal(explainIncapable("train", tc.needs, fleet), tc.message);
    });
  }

  it("names the trust the closest node lacks", () => {
    const community = [node("0000aaaa-1", { trustLevel: "community" })];
    assert.equal(
      explainIncapable("train", gpuUnit({ sensitivity: "low_sensitive" }), community),
      'stage "train" needs a node at trust verified or higher for a low_sensitive job; the most trusted node is community (node 0000aaaa…)',
    );
  });

  it("says so when no node is enrolled at all", () => {
    assert.equal(explainIncapable("prepare", cpuUnit, []), 'stage "prepare" cannot run: no node is enrolled yet');
  });
});
