/** Which GPUs an Assign gives a unit, when a node refuses it for good or only for now, and CUDA_VISIBLE_DEVICES. */
import assert from "node:assert/strict";
import { create } from "@bufbuild/protobuf";
import { AssignSchema } from "../../src/gen/gpuagent/agent/v1/agent_pb.ts";
import type { Assign } from "../../src/gen/gpuagent/agent/v1/agent_pb.ts";
import { assignedGpuIndexes, cudaVisibleDevices, gpuAssignmentRefusal, vramShortfall } from "../../src/node-agent/unit-gpus.ts";
import type { GpuMemory, LocalGpu } from "../../src/node-agent/unit-gpus.ts";

const assign = (fields: Partial<Pick<Assign, "kind" | "gpuIndex" | "gpuIndexes" | "gpuUuids">>): Assign => create(AssignSchema, { kind: "gpu", gpuIndex: -1, ...fields });
const threeGpus: LocalGpu[] = [
  { index: 0, uuid: "GPU-a" },
  { index: 1, uuid: "GPU-b" },
  { index: 2, uuid: "GPU-c" },
];

describe("the GPUs of an Assign", () => {
  const cases: { name: string; assign: Assign; want: number[] }[] = [
    { name: "a CPU unit has none, whatever the fields say", assign: assign({ kind: "cpu", gpuIndex: 0, gpuIndexes: [0] }), want: [] },
    { name: "gpu_indexes lists them all", assign: assign({ gpuIndex: 1, gpuIndexes: [1, 2] }), want: [1, 2] },
    { name: "a control plane older than gpu_indexes sends gpu_index alone", assign: assign({ gpuIndex: 2 }), want: [2] },
    { name: "no index at all is none", assign: assign({}), want: [] },
  ];
  for (const c of cases) it(c.name, () => assert.deepEqual(assignedGpuIndexes(c.assign), c.want));
});

describe("GPUs a node can never give (rejected, not busy)", () => {
  const cases: { name: string; assign: Assign; want: string | undefined }[] = [
    { name: "one GPU it has", assign: assign({ gpuIndex: 1, gpuIndexes: [1], gpuUuids: ["GPU-b"] }), want: undefined },
    { name: "two GPUs it has", assign: assign({ gpuIndex: 0, gpuIndexes: [0, 2], gpuUuids: ["GPU-a", "GPU-c"] }), want: undefined },
    { name: "UUIDs unknown to the control plane are not checked", assign: assign({ gpuIndex: 0, gpuIndexes: [0, 1], gpuUuids: ["", ""] }), want: undefined },
    { name: "a CPU unit", assign: assign({ kind: "cpu" }), want: undefined },
    { name: "a GPU unit without a GPU", assign: assign({}), want: "gpu unit without a GPU index" },
    { name: "an index it does not have", assign: assign({ gpuIndex: 1, gpuIndexes: [1, 3] }), want: "no GPU with index 3 on this node" },
    { name: "the same GPU twice", assign: assign({ gpuIndex: 1, gpuIndexes: [1, 1] }), want: "GPU indexes 1,1 name a GPU twice" },
    { name: "a GPU that is another one now", assign: assign({ gpuIndex: 1, gpuIndexes: [1], gpuUuids: ["GPU-z"] }), want: "GPU 1 on this node is GPU-b, not GPU-z" },
  ];
  for (const c of cases) it(c.name, () => assert.equal(gpuAssignmentRefusal(c.assign, threeGpus), c.want));
});

describe("CUDA_VISIBLE_DEVICES", () => {
  const cases: { name: string; indexes: number[]; gpus: LocalGpu[]; want: string }[] = [
    { name: "a CPU unit sees none", indexes: [], gpus: threeGpus, want: "" },
    { name: "one GPU by its UUID", indexes: [1], gpus: threeGpus, want: "GPU-b" },
    { name: "two GPUs by their UUIDs, in the assigned order", indexes: [0, 2], gpus: threeGpus, want: "GPU-a,GPU-c" },
    {
      name: "declared GPUs (no UUID) by their indexes",
      indexes: [0, 1],
      gpus: [
        { index: 0, uuid: "" },
        { index: 1, uuid: "" },
      ],
      want: "0,1",
    },
  ];
  for (const c of cases) it(c.name, () => assert.equal(cudaVisibleDevices(c.indexes, c.gpus), c.want));
});

describe("VRAM its owner holds now (a busy rejection)", () => {
  const memory = (byIndex: Record<number, GpuMemory>) => (index: number) => byIndex[index];
  const gpu24g = (usedMb: number, reservedMb = 0): GpuMemory => ({ totalMb: 24000, usedMb, reservedMb });
  const cases: { name: string; indexes: number[]; vramMb: number; memory: Record<number, GpuMemory>; ours: Record<number, number>; want: string | undefined }[] = [
    { name: "an idle GPU fits", indexes: [0], vramMb: 20000, memory: { 0: gpu24g(300) }, ours: {}, want: undefined },
    {
      name: "the owner's game holds most of it",
      indexes: [0],
      vramMb: 16000,
      memory: { 0: gpu24g(12000) },
      ours: {},
      want: "GPU 0 has 12000 MB free for units now (its owner uses 12000 MB), the unit needs 16000 MB",
    },
    { name: "what this node's own units use is not the owner's", indexes: [0], vramMb: 8000, memory: { 0: gpu24g(15000) }, ours: { 0: 16000 }, want: undefined },
    { name: "the owner's reserve counts when the owner uses less", indexes: [0], vramMb: 20000, memory: { 0: gpu24g(0, 8000) }, ours: {}, want: "GPU 0 has 16000 MB free for units now (its owner uses 0 MB), the unit needs 20000 MB" },
    { name: "each GPU of a multi-GPU unit is checked", indexes: [0, 1], vramMb: 16000, memory: { 0: gpu24g(0), 1: gpu24g(10000) }, ours: {}, want: "GPU 1 has 14000 MB free for units now (its owner uses 10000 MB), the unit needs 16000 MB" },
    { name: "a GPU not measured yet does not refuse", indexes: [0], vramMb: 16000, memory: {}, ours: {}, want: undefined },
    { name: "a unit asking no VRAM never waits for it", indexes: [0], vramMb: 0, memory: { 0: gpu24g(24000) }, ours: {}, want: undefined },
  ];
  for (const c of cases) {
    it(c.name, () => assert.equal(vramShortfall(c.indexes, c.vramMb, memory(c.memory), (i) => c.ours[i] ?? 0), c.want));
  }
});
