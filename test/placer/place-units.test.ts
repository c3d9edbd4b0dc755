import assert from "node:assert/strict";
import fc from "fast-check";
import { viewOf } from "../../src/placer/cycle-state.ts";
import { fairOrder } from "../../src/placer/fairness.ts";
import { allowedTrustLevels, createPlacer, defaultWeights, demandProfile, placeUnits } from "../../src/placer/index.ts";
import {
  binPack,
  binPackScore,
  cpuFit,
  dataLocality,
  diskFit,
  type FilterPlugin,
  gpuVram,
  memoryFit,
  nodeExcluded,
  nodeIsolation,
  nodeSchedulable,
  ownerAvailability,
  reliability,
  trustTier,
} from "../../src/placer/plugins/index.ts";
import type { ReasonCode, Status } from "../../src/placer/reasons.ts";
import type { ClusterSnapshot, NodeSnapshot, PlacementResult, Sensitivity, TrustLevel, UnitRequest } from "../../src/placer/types.ts";
import { gpu, type NodeOverrides, nodeWith, unitWith } from "./builders.ts";

const seed = "cycle-1";
/** The default weights with the fragmentation score off: the rules of the other scores alone. */
const withoutFragmentation = { ...defaultWeights, gpuFragmentation: 0 };

/** Owner controls: available, nothing reserved, unless told otherwise. */
const owner = (o: Partial<NonNullable<NodeSnapshot["owner"]>> = {}): NonNullable<NodeSnapshot["owner"]> => ({
  paused: false,
  withinWindow: true,
  reservedVramMb: 0,
  ...o,
});

function place(nodes: NodeSnapshot[], units: UnitRequest[], s = seed): PlacementResult {
  return placeUnits({ nodes }, units, { seed: s });
}

function placedOn(result: PlacementResult): Record<string, string> {
  return Object.fromEntries(result.placements.map((p) => [p.unitId, p.nodeId]));
}

describe("filter plugins, each alone", () => {
  const cases: {
    name: string;
    plugin: FilterPlugin;
    node: NodeOverrides;
    unit: Partial<UnitRequest>;
    expected: Status;
  }[] = [
    { name: "NodeSchedulable passes an online node", plugin: nodeSchedulable, node: {}, unit: {}, expected: { code: "success" } },
    {
      name: "NodeSchedulable rejects a cordoned or offline node",
      plugin: nodeSchedulable,
      node: { schedulable: false },
      unit: {},
      expected: { code: "unschedulable", reason: "node_unschedulable" },
    },
    { name: "OwnerAvailability passes a node without owner controls", plugin: ownerAvailability, node: {}, unit: {}, expected: { code: "success" } },
    { name: "OwnerAvailability passes a node its owner lets work now", plugin: ownerAvailability, node: { owner: owner() }, unit: {}, expected: { code: "success" } },
    {
      name: "OwnerAvailability rejects a node its owner paused, until they resume",
      plugin: ownerAvailability,
      node: { owner: owner({ paused: true }) },
      unit: {},
      expected: { code: "unschedulable", reason: "node_paused" },
    },
    {
      name: "OwnerAvailability rejects a node outside its availability window, until it opens",
      plugin: ownerAvailability,
      node: { owner: owner({ withinWindow: false }) },
      unit: {},
      expected: { code: "unschedulable", reason: "outside_window" },
    },
    {
      name: "OwnerAvailability names the pause first when a paused node is also outside its window",
      plugin: ownerAvailability,
      node: { owner: owner({ paused: true, withinWindow: false }) },
      unit: {},
      expected: { code: "unschedulable", reason: "node_paused" },
    },
    {
      name: "NodeIsolation passes a high_sensitive unit on a sandboxed node",
      plugin: nodeIsolation,
      node: { isolation: "sandboxed" },
      unit: { sensitivity: "high_sensitive" },
      expected: { code: "success" },
    },
    {
      name: "NodeIsolation passes a public unit on a node without a sandbox",
      plugin: nodeIsolation,
      node: { isolation: "none" },
      unit: { sensitivity: "public" },
      expected: { code: "success" },
    },
    {
      name: "NodeIsolation rejects a low_sensitive unit on a node without a sandbox as unresolvable",
      plugin: nodeIsolation,
      node: { isolation: "none" },
      unit: { sensitivity: "low_sensitive" },
      expected: { code: "unresolvable", reason: "sandbox_required" },
    },
    {
      name: "NodeIsolation rejects a high_sensitive unit on a node without a sandbox as unresolvable",
      plugin: nodeIsolation,
      node: { isolation: "none" },
      unit: { sensitivity: "high_sensitive" },
      expected: { code: "unresolvable", reason: "sandbox_required" },
    },
    {
      name: "NodeIsolation rejects even a public unit where the sandbox is unavailable",
      plugin: nodeIsolation,
      node: { isolation: "unavailable" },
      unit: { sensitivity: "public" },
      expected: { code: "unschedulable", reason: "sandbox_unavailable" },
    },
    {
      name: "TrustTier passes a public unit on a community node",
      plugin: trustTier,
      node: { trustLevel: "community" },
      unit: { sensitivity: "public" },
      expected: { code: "success" },
    },
    {
      name: "TrustTier rejects a low_sensitive unit on a community node as unresolvable",
      plugin: trustTier,
      node: { trustLevel: "community" },
      unit: { sensitivity: "low_sensitive" },
      expected: { code: "unresolvable", reason: "trust_below_tier" },
    },
    {
      name: "TrustTier rejects a high_sensitive unit on a verified node as unresolvable",
      plugin: trustTier,
      node: { trustLevel: "verified" },
      unit: { sensitivity: "high_sensitive" },
      expected: { code: "unresolvable", reason: "trust_below_tier" },
    },
    {
      name: "GpuVram passes a gpu unit when one GPU has exactly enough free VRAM",
      plugin: gpuVram,
      node: { vram: [8000] },
      unit: { vramMb: 8000 },
      expected: { code: "success" },
    },
    {
      name: "GpuVram rejects a gpu unit when no single GPU has enough free VRAM",
      plugin: gpuVram,
      node: { vram: [12288, 12288] },
      unit: { vramMb: 20000 },
      expected: { code: "unschedulable", reason: "insufficient_vram" },
    },
    {
      name: "GpuVram counts free VRAM, not total VRAM",
      plugin: gpuVram,
      node: { gpus: [gpu(0, 24576, 4000)] },
      unit: { vramMb: 8000 },
      expected: { code: "unschedulable", reason: "insufficient_vram" },
    },
    {
      name: "GpuVram never counts the VRAM its owner reserves as free",
      plugin: gpuVram,
      node: { vram: [24576], owner: owner({ reservedVramMb: 12288 }) },
      unit: { vramMb: 16000 },
      expected: { code: "unschedulable", reason: "insufficient_vram" },
    },
    {
      name: "GpuVram passes a gpu unit that fits beside the owner's reserve",
      plugin: gpuVram,
      node: { vram: [24576], owner: owner({ reservedVramMb: 12288 }) },
      unit: { vramMb: 12288 },
      expected: { code: "success" },
    },
    {
      name: "GpuVram takes the reserve off every GPU of the node",
      plugin: gpuVram,
      node: { vram: [16384, 16384], owner: owner({ reservedVramMb: 8192 }) },
      unit: { vramMb: 10000 },
      expected: { code: "unschedulable", reason: "insufficient_vram" },
    },
    {
      name: "GpuVram passes a cpu unit on a node without GPUs",
      plugin: gpuVram,
      node: { vram: [] },
      unit: { kind: "cpu", vramMb: 0 },
      expected: { code: "success" },
    },
    {
      name: "NodeExcluded rejects a node that already failed the unit as unresolvable",
      plugin: nodeExcluded,
      node: { id: "node-x" },
      unit: { excludedNodeIds: ["node-y", "node-x"] },
      expected: { code: "unresolvable", reason: "node_excluded" },
    },
    {
      name: "NodeExcluded passes a node that is not excluded",
      plugin: nodeExcluded,
      node: { id: "node-x" },
      unit: { excludedNodeIds: ["node-y"] },
      expected: { code: "success" },
    },
    { name: "DiskFit passes exactly enough disk", plugin: diskFit, node: { diskFreeMb: 10_000 }, unit: { diskMb: 10_000 }, expected: { code: "success" } },
    {
      name: "DiskFit rejects too little disk",
      plugin: diskFit,
      node: { diskFreeMb: 9_999 },
      unit: { diskMb: 10_000 },
      expected: { code: "unschedulable", reason: "insufficient_disk" },
    },
    {
      name: "CpuFit rejects too few free cores",
      plugin: cpuFit,
      node: { freeCpuCores: 1 },
      unit: { cpuCores: 2 },
      expected: { code: "unschedulable", reason: "insufficient_cpu" },
    },
    { name: "CpuFit passes enough free cores", plugin: cpuFit, node: { freeCpuCores: 2 }, unit: { cpuCores: 2 }, expected: { code: "success" } },
    {
      name: "MemoryFit rejects too little free memory",
      plugin: memoryFit,
      node: { freeMemoryMb: 1024 },
      unit: { memoryMb: 2048 },
      expected: { code: "unschedulable", reason: "insufficient_memory" },
    },
    {
      name: "MemoryFit passes enough free memory",
      plugin: memoryFit,
      node: { freeMemoryMb: 2048 },
      unit: { memoryMb: 2048 },
      expected: { code: "success" },
    },
  ];
  for (const tc of cases) {
    it(tc.name, () => assert.deepEqual(tc.plugin.filter(unitWith(tc.unit), viewOf(nodeWith(tc.node))), tc.expected));
  }
});

describe("placeUnits: each filter alone decides a one-node cluster", () => {
  const cases: { name: string; node: NodeOverrides; unit: Partial<UnitRequest>; reason: ReasonCode }[] = [
    { name: "an unschedulable node is not used", node: { schedulable: false }, unit: {}, reason: "node_unschedulable" },
    { name: "a node its owner paused is not used", node: { owner: owner({ paused: true }) }, unit: {}, reason: "node_paused" },
    { name: "a node outside its owner's window is not used", node: { owner: owner({ withinWindow: false }) }, unit: {}, reason: "outside_window" },
    { name: "a node whose sandbox is unavailable is not used", node: { isolation: "unavailable" }, unit: {}, reason: "sandbox_unavailable" },
    { name: "a node without a sandbox is not used for a sensitive unit", node: { isolation: "none" }, unit: { sensitivity: "low_sensitive" }, reason: "sandbox_required" },
    { name: "VRAM its owner reserves is not used", node: { vram: [24576], owner: owner({ reservedVramMb: 20000 }) }, unit: { vramMb: 8000 }, reason: "insufficient_vram" },
    { name: "a node below the tier is not used", node: { trustLevel: "community" }, unit: { sensitivity: "low_sensitive" }, reason: "trust_below_tier" },
    { name: "a node whose GPU is too small is not used", node: { vram: [12288] }, unit: { vramMb: 24000 }, reason: "insufficient_vram" },
    { name: "a node without a GPU is not used for a gpu unit", node: { vram: [] }, unit: {}, reason: "no_gpu" },
    { name: "a node with too little disk is not used", node: { diskFreeMb: 100 }, unit: { diskMb: 101 }, reason: "insufficient_disk" },
    { name: "a node with too few cores is not used", node: { freeCpuCores: 1 }, unit: { cpuCores: 4 }, reason: "insufficient_cpu" },
    { name: "a node with too little memory is not used", node: { freeMemoryMb: 512 }, unit: { memoryMb: 1024 }, reason: "insufficient_memory" },
    { name: "an excluded node is not used", node: { id: "node-a" }, unit: { excludedNodeIds: ["node-a"] }, reason: "node_excluded" },
  ];
  for (const tc of cases) {
    it(tc.name, () => {
      const result = place([nodeWith(tc.node)], [unitWith(tc.unit)]);
      assert.deepEqual(result.placements, []);
      assert.deepEqual(result.unplaced[0]?.reasons, { [tc.reason]: 1 });
    });
  }

  it("the same node is used once the obstacle is gone", () => {
    const result = place([nodeWith()], [unitWith()]);
    assert.deepEqual(placedOn(result), { "unit-1": "node-a" });
    assert.deepEqual(result.unplaced, []);
  });
});

describe("placeUnits: VRAM", () => {
  it("never places a unit requiring 24000 MB VRAM on a node with a 12288 MB GPU", () => {
    const nodes = [
      nodeWith({ id: "small-1", vram: [12288] }),
      nodeWith({ id: "small-2", vram: [12288], reliability: 1, cached: ["ds-1"] }),
      nodeWith({ id: "big", vram: [24576], reliability: 0 }),
    ];
    assert.deepEqual(placedOn(place(nodes, [unitWith({ vramMb: 24000 })])), { "unit-1": "big" });
    const onlySmall = place(nodes.slice(0, 2), [unitWith({ vramMb: 24000 })]);
    assert.deepEqual(onlySmall.placements, []);
    assert.deepEqual(onlySmall.unplaced[0]?.reasons, { insufficient_vram: 2 });
  });

  it("does not host a 20 GB unit on two 12 GB GPUs", () => {
    const result = place([nodeWith({ vram: [12288, 12288] })], [unitWith({ vramMb: 20480 })]);
    assert.deepEqual(result.placements, []);
    assert.deepEqual(result.unplaced[0]?.reasons, { insufficient_vram: 1 });
  });

  it("best fit picks the smaller adequate GPU across nodes when VRAM is what every node runs out of first (fragmentation score off)", () => {
    const roomy = { freeCpuCores: 64, cpuCores: 64, freeMemoryMb: 262_144, memoryMb: 262_144 };
    const nodes = [nodeWith({ id: "a-80g", vram: [81920], ...roomy }), nodeWith({ id: "b-24g", vram: [24576], ...roomy }), nodeWith({ id: "c-12g", vram: [12288], ...roomy })];
    assert.deepEqual(placedOn(placeUnits({ nodes }, [unitWith({ vramMb: 20000 })], { seed, weights: withoutFragmentation })), { "unit-1": "b-24g" });
  });

  it("with the fragmentation score (on by default) keeps GPUs usable for the arriving asks: a 20 GB unit among 20 GB asks takes the 80 GB card, not the 24 GB one", () => {
    // On the 24 GB card its 4.5 GB remainder could host no 20 GB ask; the 80 GB card's remainder still hosts three.
    const roomy = { freeCpuCores: 64, cpuCores: 64, freeMemoryMb: 262_144, memoryMb: 262_144 };
    const nodes = [nodeWith({ id: "a-80g", vram: [81920], ...roomy }), nodeWith({ id: "b-24g", vram: [24576], ...roomy }), nodeWith({ id: "c-12g", vram: [12288], ...roomy })];
    assert.deepEqual(placedOn(place(nodes, [unitWith({ vramMb: 20000 })])), { "unit-1": "a-80g" });
  });

  it("puts a VRAM-heavy unit on the big GPU whose node has too few cores to use its VRAM, not on a GPU it would fill", () => {
    // 16 cores host 8 typical units of ≈ 6 GB: the 80 GB card has VRAM to spare, the 24 GB card does not.
    const nodes = [nodeWith({ id: "a-80g", vram: [81920] }), nodeWith({ id: "b-24g", vram: [24576] })];
    assert.deepEqual(placedOn(place(nodes, [unitWith({ vramMb: 20000 })])), { "unit-1": "a-80g" });
  });

  it("best fit picks the smaller adequate GPU within a node and reports its device index (fragmentation score off)", () => {
    const node = nodeWith({ gpus: [gpu(3, 81920), gpu(5, 24576), gpu(7, 12288)] });
    const result = placeUnits({ nodes: [node] }, [unitWith({ vramMb: 20000 })], { seed, weights: withoutFragmentation });
    assert.equal(result.placements[0]?.gpuIndex, 5);
  });

  it("with the fragmentation score, picks the GPU of the node where the arriving asks lose least and reports its device index", () => {
    // Asks of 20 GB only: the 80 GB card's remainder hosts three more, the 24 GB card's 4.5 GB none.
    // Asks of 20 GB and, twice as often, 4.5 GB: the 24 GB card's remainder hosts one 4.5 GB ask with 76 MB
    // to spare, while 20 GB taken off the 80 GB card costs it 4.5 GB asks; the 24 GB card is the one to fill.
    const node = nodeWith({ gpus: [gpu(3, 81920), gpu(5, 24576), gpu(7, 12288)], freeCpuCores: 64, cpuCores: 64, freeMemoryMb: 262_144, memoryMb: 262_144 });
    const only20 = place([node], [unitWith({ vramMb: 20000 })]);
    assert.equal(only20.placements[0]?.gpuIndex, 3);
    const recentAsks = [
      { gpuCount: 1, vramMb: 20000, gpuModels: [], cpuCores: 1, memoryMb: 1024, weight: 1 },
      { gpuCount: 1, vramMb: 4500, gpuModels: [], cpuCores: 1, memoryMb: 1024, weight: 2 },
    ];
    const mixed = placeUnits({ nodes: [node] }, [unitWith({ vramMb: 20000 })], { seed, recentAsks });
    assert.equal(mixed.placements[0]?.gpuIndex, 5);
  });

  it("best fit counts VRAM left free, not GPU size", () => {
    const nodes = [nodeWith({ id: "a-80g-mostly-used", gpus: [gpu(0, 81920, 21000)] }), nodeWith({ id: "b-24g-idle", vram: [24576] })];
    assert.deepEqual(placedOn(place(nodes, [unitWith({ vramMb: 20000 })])), { "unit-1": "a-80g-mostly-used" });
  });

  it("gives a cpu unit GPU index -1", () => {
    const result = place([nodeWith()], [unitWith({ kind: "cpu", vramMb: 0 })]);
    assert.equal(result.placements[0]?.gpuIndex, -1);
  });
});

describe("placeUnits: sensitivity tiers", () => {
  const tiers: { sensitivity: Sensitivity; allowed: TrustLevel[] }[] = [
    { sensitivity: "public", allowed: ["community", "verified", "controlled"] },
    { sensitivity: "low_sensitive", allowed: ["verified", "controlled"] },
    { sensitivity: "high_sensitive", allowed: ["controlled"] },
  ];
  for (const tc of tiers) {
    it(`allows a ${tc.sensitivity} unit on ${tc.allowed.join(", ")} nodes only`, () => {
      assert.deepEqual(allowedTrustLevels(tc.sensitivity), tc.allowed);
      for (const trustLevel of ["community", "verified", "controlled"] as const) {
        const result = place([nodeWith({ trustLevel })], [unitWith({ sensitivity: tc.sensitivity })]);
        assert.equal(result.placements.length === 1, tc.allowed.includes(trustLevel), `${tc.sensitivity} on ${trustLevel}`);
      }
    });
  }

  it("never places a low_sensitive unit on a community node, even when it is the better fit", () => {
    const nodes = [
      nodeWith({ id: "community", trustLevel: "community", vram: [8192], reliability: 1, cached: ["ds-1"] }),
      nodeWith({ id: "verified", trustLevel: "verified", vram: [81920], reliability: 0 }),
    ];
    const units = [unitWith({ id: "low", sensitivity: "low_sensitive" }), unitWith({ id: "public", readySinceMs: 2_000 })];
    assert.deepEqual(placedOn(place(nodes, units)), { low: "verified", public: "community" });
  });

  it("never places a high_sensitive unit outside controlled nodes", () => {
    const nodes = [
      nodeWith({ id: "community", trustLevel: "community" }),
      nodeWith({ id: "verified", trustLevel: "verified" }),
      nodeWith({ id: "controlled", trustLevel: "controlled", vram: [24576] }),
    ];
    const units = [1, 2, 3, 4].map((i) => unitWith({ id: `u${i}`, sensitivity: "high_sensitive", vramMb: 8000 }));
    const result = place(nodes, units);
    // The controlled node's one GPU fits three 8000 MB units; the fourth waits rather than go lower.
    assert.deepEqual(new Set(result.placements.map((p) => p.nodeId)), new Set(["controlled"]));
    assert.equal(result.placements.length, 3);
    assert.deepEqual(result.unplaced[0]?.reasons, { trust_below_tier: 2, insufficient_vram: 1 });
    assert.equal(result.unplaced[0]?.unresolvable, false);
  });
});

describe("placeUnits: owner controls and isolation", () => {
  it("sends a sensitive unit only to a sandboxed node, and a public unit to a node without a sandbox too", () => {
    const nodes = [
      nodeWith({ id: "bare", trustLevel: "controlled", isolation: "none", reliability: 1 }),
      nodeWith({ id: "boxed", trustLevel: "controlled", reliability: 0.1, vram: [8192] }),
    ];
    const result = place(nodes, [
      unitWith({ id: "secret", customerId: "a", sensitivity: "high_sensitive" }),
      unitWith({ id: "open", customerId: "b", sensitivity: "public" }),
    ]);
    assert.deepEqual(placedOn(result), { secret: "boxed", open: "bare" });
  });

  it("counts each node that takes nothing under its own reason, in filter order", () => {
    const nodes = [
      nodeWith({ id: "off", schedulable: false, owner: owner({ paused: true }) }),
      nodeWith({ id: "paused", owner: owner({ paused: true, withinWindow: false }), isolation: "unavailable" }),
      nodeWith({ id: "night-only", owner: owner({ withinWindow: false }) }),
      nodeWith({ id: "broken-sandbox", isolation: "unavailable", trustLevel: "community" }),
      nodeWith({ id: "bare", trustLevel: "community", isolation: "none" }),
      nodeWith({ id: "community", trustLevel: "community" }),
      nodeWith({ id: "reserved", vram: [24576], owner: owner({ reservedVramMb: 20000 }) }),
    ];
    const result = place(nodes, [unitWith({ sensitivity: "low_sensitive" })]);
    assert.deepEqual(result.placements, []);
    assert.deepEqual(result.unplaced[0]?.reasons, {
      node_unschedulable: 1,
      node_paused: 1,
      outside_window: 1,
      sandbox_unavailable: 1,
      sandbox_required: 1,
      trust_below_tier: 1,
      insufficient_vram: 1,
    });
    assert.equal(result.unplaced[0]?.unresolvable, false);
  });

  it("fits units beside the VRAM its owner keeps, never into it", () => {
    const units = ["u1", "u2", "u3"].map((id) => unitWith({ id, vramMb: 8000 }));
    assert.equal(place([nodeWith({ vram: [24576] })], units).placements.length, 3);
    const reserved = place([nodeWith({ vram: [24576], owner: owner({ reservedVramMb: 8192 }) })], units);
    assert.equal(reserved.placements.length, 2);
    assert.deepEqual(reserved.unplaced.map((u) => u.reasons), [{ insufficient_vram: 1 }]);
  });

  it("places on a node its owner resumed, or whose reserve shrank, once the long-lived placer syncs to it", () => {
    const paused = nodeWith({ owner: owner({ paused: true, reservedVramMb: 20000 }) });
    const placer = createPlacer({ nodes: [paused] });
    assert.deepEqual(placer.place([unitWith({ id: "u1" })], { seed }).unplaced[0]?.reasons, { node_paused: 1 });
    const resumed = { ...paused, owner: owner({ reservedVramMb: 20000 }) };
    assert.equal(placer.sync({ nodes: [resumed] }), false, "a node that starts taking units changes the index's shape");
    assert.deepEqual(placer.place([unitWith({ id: "u2" })], { seed }).unplaced[0]?.reasons, { insufficient_vram: 1 });
    const roomier = { ...resumed, owner: owner({ reservedVramMb: 4096 }) };
    assert.equal(placer.sync({ nodes: [roomier] }), true, "a reserve that changed moves only the node's index entries");
    assert.deepEqual(placedOn(placer.place([unitWith({ id: "u3" })], { seed })), { u3: "node-a" });
  });
});

describe("placeUnits: reservation within a cycle", () => {
  const cases: { name: string; node: NodeOverrides; unit: Partial<UnitRequest>; fits: number; reason: ReasonCode }[] = [
    { name: "two 16 GB units do not share one 24 GB GPU", node: { vram: [24576] }, unit: { vramMb: 16384 }, fits: 1, reason: "insufficient_vram" },
    { name: "units sharing one GPU stop at its free VRAM", node: { vram: [24576] }, unit: { vramMb: 8192 }, fits: 3, reason: "insufficient_vram" },
    { name: "disk is reserved", node: { diskFreeMb: 25_000 }, unit: { diskMb: 10_000 }, fits: 2, reason: "insufficient_disk" },
    { name: "cores are reserved", node: { freeCpuCores: 5 }, unit: { cpuCores: 2 }, fits: 2, reason: "insufficient_cpu" },
    { name: "memory is reserved", node: { freeMemoryMb: 4096 }, unit: { memoryMb: 2048 }, fits: 2, reason: "insufficient_memory" },
  ];
  for (const tc of cases) {
    it(tc.name, () => {
      const units = [0, 1, 2, 3].map((i) => unitWith({ ...tc.unit, id: `u${i}`, readySinceMs: i }));
      const result = place([nodeWith(tc.node)], units);
      assert.equal(result.placements.length, tc.fits);
      for (const u of result.unplaced) assert.deepEqual(u.reasons, { [tc.reason]: 1 });
    });
  }

  it("moves a unit to a second GPU once the first is full", () => {
    const result = place([nodeWith({ vram: [16384, 16384] })], [unitWith({ id: "u1", vramMb: 16000 }), unitWith({ id: "u2", vramMb: 16000 })]);
    assert.deepEqual(
      result.placements.map((p) => p.gpuIndex).sort(),
      [0, 1],
    );
  });

  it("never mutates the input snapshot", () => {
    const snapshot: ClusterSnapshot = { nodes: [nodeWith({ id: "a" }), nodeWith({ id: "b", vram: [12288, 8192] })] };
    const before = structuredClone(snapshot);
    placeUnits(snapshot, [0, 1, 2].map((i) => unitWith({ id: `u${i}`, vramMb: 8000 })), { seed });
    assert.deepEqual(snapshot, before);
  });
});

describe("placeUnits: fairness", () => {
  it("places customer B's only unit in the first cycle although customer A has 50 older ready units", () => {
    const aUnits = Array.from({ length: 50 }, (_, i) => unitWith({ id: `a-${String(i).padStart(2, "0")}`, customerId: "A", readySinceMs: i }));
    const bUnit = unitWith({ id: "b-0", customerId: "B", readySinceMs: 10_000 });
    // Room for three units: one 24 GB GPU, 8000 MB each.
    const result = place([nodeWith({ vram: [24576] })], [...aUnits, bUnit]);
    assert.deepEqual(
      result.placements.map((p) => p.unitId),
      ["a-00", "b-0", "a-01"],
    );
    assert.equal(result.unplaced.length, 48);
  });

  it("orders round-robin by customer, customers by their oldest unit, units oldest first", () => {
    const units = [
      unitWith({ id: "c2", customerId: "C", readySinceMs: 5 }),
      unitWith({ id: "a2", customerId: "A", readySinceMs: 30 }),
      unitWith({ id: "b1", customerId: "B", readySinceMs: 1 }),
      unitWith({ id: "a1", customerId: "A", readySinceMs: 20 }),
      unitWith({ id: "c1", customerId: "C", readySinceMs: 5 }),
      unitWith({ id: "a3", customerId: "A", readySinceMs: 40 }),
    ];
    assert.deepEqual(
      fairOrder(units).map((u) => u.id),
      ["b1", "c1", "a1", "c2", "a2", "a3"],
    );
  });

  it("does not let a unit that fits nowhere block the units behind it", () => {
    const result = place([nodeWith({ vram: [24576] })], [unitWith({ id: "huge", vramMb: 80000, readySinceMs: 0 }), unitWith({ id: "small" })]);
    assert.deepEqual(placedOn(result), { small: "node-a" });
  });
});

describe("placeUnits: scores and ties", () => {
  it("prefers the node that caches the unit's dataset when all else is equal", () => {
    const nodes = [nodeWith({ id: "a" }), nodeWith({ id: "b", cached: ["ds-1"] }), nodeWith({ id: "c" })];
    assert.deepEqual(placedOn(place(nodes, [unitWith()])), { "unit-1": "b" });
  });

  it("does not let a cached dataset outweigh a clearly better fit: the unit leaves more cores next to the same GPU elsewhere", () => {
    // Same 12 GB GPU on both, so the 8 GB unit leaves the same VRAM either way; on "cached" it would leave 4 free
    // cores (2 typical units), on "roomy" 14. With reliability 0.2 and locality 0.1 (the defaults before) it went to "cached".
    const nodes = [nodeWith({ id: "cached", vram: [12288], freeCpuCores: 6, cached: ["ds-1"] }), nodeWith({ id: "roomy", vram: [12288] })];
    assert.deepEqual(placedOn(place(nodes, [unitWith({ vramMb: 8000 })])), { "unit-1": "roomy" });
    assert.deepEqual(
      placedOn(placeUnits({ nodes }, [unitWith({ vramMb: 8000 })], { seed, weights: { ...defaultWeights, reliability: 0.2, dataLocality: 0.1 } })),
      { "unit-1": "cached" },
    );
  });

  it("prefers the more reliable node when all else is equal", () => {
    const nodes = [nodeWith({ id: "a", reliability: 0.5 }), nodeWith({ id: "b", reliability: 0.99 }), nodeWith({ id: "c", reliability: 0.7 })];
    assert.deepEqual(placedOn(place(nodes, [unitWith()])), { "unit-1": "b" });
  });

  it("lets weights from the options change the winner", () => {
    // The unit would leave "reliable" with no core at all; "roomy" keeps room for more.
    const nodes = [
      nodeWith({ id: "roomy", vram: [24576], reliability: 0.2 }),
      nodeWith({ id: "reliable", vram: [8192], freeCpuCores: 2, cpuCores: 2, reliability: 1 }),
    ];
    const unit = unitWith({ vramMb: 8000 });
    assert.equal(placeUnits({ nodes }, [unit], { seed, weights: { binPack: 1, reliability: 0, dataLocality: 0 } }).placements[0]?.nodeId, "roomy");
    assert.equal(placeUnits({ nodes }, [unit], { seed, weights: { binPack: 0, reliability: 1, dataLocality: 0 } }).placements[0]?.nodeId, "reliable");
  });

  it("rejects weights that are all zero", () => {
    assert.throws(() => placeUnits({ nodes: [] }, [], { seed, weights: { binPack: 0, reliability: 0, dataLocality: 0 } }), RangeError);
  });

  it("breaks a tie the same way for the same seed, whatever the node order", () => {
    const nodes = ["n1", "n2", "n3", "n4", "n5", "n6"].map((id) => nodeWith({ id }));
    const first = place(nodes, [unitWith()], "seed-x").placements[0]?.nodeId;
    assert.equal(place([...nodes].reverse(), [unitWith()], "seed-x").placements[0]?.nodeId, first);
  });

  it("spreads tie-breaks across nodes for different seeds", () => {
    const nodes = ["n1", "n2", "n3", "n4", "n5", "n6"].map((id) => nodeWith({ id }));
    const winners = new Set(Array.from({ length: 20 }, (_, i) => place(nodes, [unitWith()], `seed-${i}`).placements[0]?.nodeId));
    assert.ok(winners.size > 1, `always ${[...winners].join()}`);
  });

  // A typical unit of 4000 MB VRAM, 2 cores, 4000 MB RAM and 10 GB disk; free amounts below count in such units.
  const profile = { vramMb: 4000, cpuCores: 2, memoryMb: 4000, diskMb: 10_000 };
  const typical = { kind: "gpu" as const, vramMb: 4000, cpuCores: 2, memoryMb: 4000, diskMb: 10_000 };
  const free = (units: { vram: number; cpu: number; mem: number; disk: number }) => ({
    vramMb: units.vram * 4000,
    cpuCores: units.cpu * 2,
    memoryMb: units.mem * 4000,
    diskMb: units.disk * 10_000,
  });
  const binPackCases: {
    name: string;
    unit: { kind: "cpu" | "gpu"; vramMb: number; cpuCores: number; memoryMb: number; diskMb: number };
    free: { vramMb: number; cpuCores: number; memoryMb: number; diskMb: number };
    profile?: typeof profile;
    // fit (0..1) and room left after the unit (typical units): score = 100 × (0.5 fit + 0.5 room / (2 + room)).
    fit: number;
    room: number;
  }[] = [
    {
      name: "gives a typical unit whose VRAM is the node's bottleneck no fit, whatever the room",
      unit: typical,
      free: free({ vram: 1, cpu: 10, mem: 10, disk: 10 }),
      fit: 0,
      room: 9,
    },
    {
      name: "gives a cpu unit on cores the node's VRAM will never use a perfect fit",
      unit: { kind: "cpu", vramMb: 0, cpuCores: 2, memoryMb: 4000, diskMb: 10_000 },
      free: free({ vram: 1, cpu: 10, mem: 10, disk: 10 }),
      fit: 1,
      room: 9,
    },
    {
      name: "gives a VRAM-heavy unit a good fit on a node short of cores, where its VRAM would be stranded",
      // 4 typical units of VRAM, 1 core's worth: the node is core-bound; the unit takes 1 unit of cores out of its 4 of VRAM.
      unit: { kind: "gpu", vramMb: 16_000, cpuCores: 2, memoryMb: 4000, diskMb: 10_000 },
      free: free({ vram: 8, cpu: 1, mem: 10, disk: 10 }),
      fit: 0.75,
      room: 0,
    },
    {
      name: "gives the same VRAM-heavy unit no fit on a node short of VRAM",
      unit: { kind: "gpu", vramMb: 16_000, cpuCores: 2, memoryMb: 4000, diskMb: 10_000 },
      free: free({ vram: 4, cpu: 10, mem: 10, disk: 10 }),
      fit: 0,
      room: 9,
    },
    {
      name: "charges a unit only what it takes beyond the surplus of each resource",
      // Bottleneck VRAM (2); cores 1 above it. The unit asks 1 VRAM and 3 cores: it takes max(1 − 0, 3 − 1) = 2 of its size 3.
      unit: { kind: "gpu", vramMb: 4000, cpuCores: 6, memoryMb: 0, diskMb: 0 },
      free: free({ vram: 2, cpu: 3, mem: 10, disk: 10 }),
      fit: 1 / 3,
      room: 0,
    },
    {
      name: "scores asking nothing of nothing as a perfect fit with no room",
      unit: { kind: "cpu", vramMb: 0, cpuCores: 0, memoryMb: 0, diskMb: 0 },
      free: free({ vram: 0, cpu: 0, mem: 0, disk: 0 }),
      fit: 1,
      room: 0,
    },
    {
      name: "ignores the VRAM a cpu unit might be said to ask",
      unit: { kind: "cpu", vramMb: 4000, cpuCores: 2, memoryMb: 4000, diskMb: 10_000 },
      free: free({ vram: 1, cpu: 10, mem: 10, disk: 10 }),
      fit: 1,
      room: 9,
    },
    {
      name: "leaves out a resource the profile does not ask for",
      unit: { kind: "cpu", vramMb: 0, cpuCores: 2, memoryMb: 4000, diskMb: 10_000 },
      free: { vramMb: 4000, cpuCores: 20, memoryMb: 40_000, diskMb: 0 },
      profile: { ...profile, diskMb: 0 },
      fit: 1,
      room: 9,
    },
  ];
  for (const tc of binPackCases) {
    it(`binPackScore ${tc.name}`, () => {
      const expected = 100 * (0.5 * tc.fit + 0.5 * (tc.room / (2 + tc.room)));
      const got = binPackScore(tc.unit, tc.free, tc.profile ?? profile);
      assert.ok(Math.abs(got - expected) < 1e-9, `${got} ≠ ${expected}`);
    });
  }

  it("binPackScore stays within 0..100 for any asks, free amounts and profile", () => {
    const amount = fc.oneof(fc.constant(0), fc.double({ min: -10, max: 1e6, noNaN: true }));
    fc.assert(
      fc.property(
        fc.constantFrom("cpu", "gpu" as const),
        fc.tuple(amount, amount, amount, amount),
        fc.tuple(amount, amount, amount, amount),
        fc.tuple(amount, amount, amount, amount),
        (kind, [v, c, m, d], [fv, fc_, fm, fd], [pv, pc, pm, pd]) => {
          const s = binPackScore(
            { kind, vramMb: Math.abs(v), cpuCores: Math.abs(c), memoryMb: Math.abs(m), diskMb: Math.abs(d) },
            { vramMb: fv, cpuCores: fc_, memoryMb: fm, diskMb: fd },
            { vramMb: pv, cpuCores: pc, memoryMb: pm, diskMb: pd },
          );
          assert.ok(s >= 0 && s <= 100, `gave ${s}`);
        },
      ),
      { numRuns: 500 },
    );
  });

  it("sends a VRAM-heavy unit to the node short of cores and a core-heavy unit to the node short of VRAM", () => {
    const nodes = [
      nodeWith({ id: "few-cores", vram: [49152], freeCpuCores: 4, cpuCores: 4 }),
      nodeWith({ id: "small-gpu", vram: [12288], freeCpuCores: 32, cpuCores: 32 }),
    ];
    const units = [
      unitWith({ id: "big-vram", customerId: "a", vramMb: 40_000, cpuCores: 1, readySinceMs: 0 }),
      unitWith({ id: "many-cores", customerId: "b", vramMb: 2000, cpuCores: 16, readySinceMs: 1 }),
    ];
    assert.deepEqual(placedOn(place(nodes, units)), { "big-vram": "few-cores", "many-cores": "small-gpu" });
  });

  it("score plugins stay within 0..100", () => {
    const view = viewOf(nodeWith({ reliability: 7, cached: ["ds-1"] }));
    const cycle = { profile: demandProfile([unitWith()]) };
    for (const plugin of [binPack, reliability, dataLocality]) {
      const s = plugin.score(unitWith(), view, cycle);
      assert.ok(s >= 0 && s <= 100, `${plugin.name} gave ${s}`);
    }
  });
});

describe("placeUnits: unplaced units explain why", () => {
  it("counts every node under its first failing filter and says so in the message", () => {
    const nodes = [
      nodeWith({ id: "a", vram: [12288] }),
      nodeWith({ id: "b", vram: [16384] }),
      nodeWith({ id: "c", trustLevel: "community", vram: [81920] }),
    ];
    const result = place(nodes, [unitWith({ vramMb: 24000, sensitivity: "low_sensitive" })]);
    assert.deepEqual(result.unplaced, [
      {
        unitId: "unit-1",
        reasons: { insufficient_vram: 2, trust_below_tier: 1 },
        unresolvable: false,
        message:
          "no online node with a GPU of ≥ 24000 MB free VRAM at trust ≥ verified (3 nodes: 2 insufficient_vram, 1 trust_below_tier)",
      },
    ]);
  });

  it("describes a cpu unit by cores, memory and disk", () => {
    const result = place([nodeWith({ schedulable: false })], [unitWith({ kind: "cpu", vramMb: 0, cpuCores: 4, memoryMb: 1024, diskMb: 500 })]);
    assert.equal(
      result.unplaced[0]?.message,
      "no online node with 4 free CPU cores, 1024 MB free memory and 500 MB free disk at trust ≥ community (1 node: 1 node_unschedulable)",
    );
  });

  const resolvability: { name: string; nodes: NodeSnapshot[]; unit: Partial<UnitRequest>; unresolvable: boolean }[] = [
    {
      name: "is unresolvable when every node is below the unit's tier",
      nodes: [nodeWith({ id: "a", trustLevel: "community" }), nodeWith({ id: "b", trustLevel: "verified" })],
      unit: { sensitivity: "high_sensitive" },
      unresolvable: true,
    },
    {
      name: "is unresolvable when every node is below the tier or already failed the unit",
      nodes: [nodeWith({ id: "a", trustLevel: "community" }), nodeWith({ id: "b", trustLevel: "controlled" })],
      unit: { sensitivity: "high_sensitive", excludedNodeIds: ["b"] },
      unresolvable: true,
    },
    {
      name: "is resolvable when some node only lacks free VRAM now",
      nodes: [nodeWith({ id: "a", trustLevel: "community" }), nodeWith({ id: "b", trustLevel: "controlled", gpus: [gpu(0, 24576, 0)] })],
      unit: { sensitivity: "high_sensitive" },
      unresolvable: false,
    },
    {
      name: "is unresolvable when every node runs units without a sandbox and the unit is sensitive",
      nodes: [nodeWith({ id: "a", trustLevel: "controlled", isolation: "none" }), nodeWith({ id: "b", trustLevel: "community" })],
      unit: { sensitivity: "low_sensitive" },
      unresolvable: true,
    },
    {
      name: "is resolvable when the only fitting node is paused by its owner (they may resume)",
      nodes: [nodeWith({ id: "a", owner: owner({ paused: true }) }), nodeWith({ id: "b", trustLevel: "community" })],
      unit: { sensitivity: "low_sensitive" },
      unresolvable: false,
    },
    {
      name: "is resolvable when the only fitting node's sandbox is unavailable (its operator may fix it)",
      nodes: [nodeWith({ id: "a", isolation: "unavailable" })],
      unit: {},
      unresolvable: false,
    },
    { name: "is resolvable in an empty cluster, where nodes may still join", nodes: [], unit: {}, unresolvable: false },
  ];
  for (const tc of resolvability) {
    it(tc.name, () => assert.equal(place(tc.nodes, [unitWith(tc.unit)]).unplaced[0]?.unresolvable, tc.unresolvable));
  }

  it("says there are no nodes in an empty cluster", () => {
    assert.deepEqual(place([], [unitWith({ vramMb: 1000 })]).unplaced[0], {
      unitId: "unit-1",
      reasons: {},
      unresolvable: false,
      message: "no online node with a GPU of ≥ 1000 MB free VRAM at trust ≥ community (no nodes)",
    });
  });
});

describe("placeUnits: golden plan", () => {
  const snapshot: ClusterSnapshot = {
    nodes: [
      nodeWith({ id: "home-3090", trustLevel: "community", vram: [24576], reliability: 0.8, cached: ["ds-cats"] }),
      nodeWith({ id: "home-4090x2", trustLevel: "verified", vram: [24576, 24576], reliability: 0.95 }),
      nodeWith({ id: "lab-a100", trustLevel: "controlled", gpus: [gpu(0, 81920, 81920), gpu(1, 81920, 40000)], reliability: 0.99 }),
      nodeWith({ id: "lab-cpu", trustLevel: "controlled", vram: [], freeCpuCores: 8, reliability: 1 }),
      nodeWith({ id: "home-3060", trustLevel: "community", vram: [12288], reliability: 0.6, diskFreeMb: 50_000 }),
      nodeWith({ id: "home-offline", trustLevel: "verified", vram: [49152], schedulable: false }),
    ],
  };
  const units: UnitRequest[] = [
    unitWith({ id: "acme-train-big", customerId: "acme", vramMb: 40000, sensitivity: "high_sensitive", readySinceMs: 100 }),
    unitWith({ id: "acme-train-2", customerId: "acme", vramMb: 20000, sensitivity: "low_sensitive", readySinceMs: 200 }),
    unitWith({ id: "acme-prep", customerId: "acme", kind: "cpu", vramMb: 0, cpuCores: 1, memoryMb: 512, sensitivity: "high_sensitive", readySinceMs: 300 }),
    unitWith({ id: "bob-cats", customerId: "bob", vramMb: 10000, datasetId: "ds-cats", readySinceMs: 150 }),
    unitWith({ id: "bob-small", customerId: "bob", vramMb: 6000, diskMb: 40_000, readySinceMs: 160 }),
    unitWith({ id: "bob-retry", customerId: "bob", vramMb: 20000, excludedNodeIds: ["home-4090x2"], readySinceMs: 170 }),
    unitWith({ id: "carol-huge", customerId: "carol", vramMb: 90000, readySinceMs: 50 }),
  ];

  it("places a fixed snapshot with seed golden-1 exactly so", () => {
    const result = placeUnits(snapshot, units, { seed: "golden-1" });
    assert.deepEqual(result, GOLDEN);
  });

  it("gives the same plan for the units and nodes in reverse order", () => {
    const reversed = placeUnits({ nodes: [...snapshot.nodes].reverse() }, [...units].reverse(), { seed: "golden-1" });
    assert.deepEqual(reversed, GOLDEN);
  });
});

/**
 * Checked by hand: fair order is carol, acme, bob by oldest unit; carol's 90 GB unit fits no GPU; the 40 GB
 * high_sensitive unit takes the A100 whose free 40000 MB fits exactly (best-fit GPU on the node); bob-cats ties on
 * fit between the 3090 and a 4090 and goes where ds-cats is cached; acme-prep takes the GPU-less controlled node.
 * bob-small (6 GB VRAM, 40 GB disk) fits home-3060 and the A100 node equally (it takes the same 0.38 typical units
 * of VRAM from either; the typical unit, the mean of the six gpu units and eight default ones, asks 15.6 GB VRAM,
 * 2 cores, 3.2 GB RAM, 17.9 GB disk), but on home-3060 (50 GB disk) it would leave 10 GB of disk, less than one
 * typical unit needs, while the A100 node keeps room for six in every host resource: it takes the A100 (the previous
 * VRAM-only best fit took home-3060 and left its disk nearly full). bob-retry skips the node that failed it and lands
 * on the A100's other GPU. The same six units are placed.
 */
const GOLDEN: PlacementResult = {
  placements: [
    { unitId: "acme-train-big", nodeId: "lab-a100", gpuIndex: 1, gpuIndexes: [1], score: 47.817 },
    { unitId: "bob-cats", nodeId: "home-3090", gpuIndex: 0, gpuIndexes: [0], score: 58.782 },
    { unitId: "acme-train-2", nodeId: "home-4090x2", gpuIndex: 0, gpuIndexes: [0], score: 45.985 },
    { unitId: "bob-small", nodeId: "lab-a100", gpuIndex: 0, gpuIndexes: [0], score: 68.751 },
    { unitId: "acme-prep", nodeId: "lab-cpu", gpuIndex: -1, gpuIndexes: [], score: 71.542 },
    { unitId: "bob-retry", nodeId: "lab-a100", gpuIndex: 0, gpuIndexes: [0], score: 44.858 },
  ],
  unplaced: [
    {
      unitId: "carol-huge",
      reasons: { insufficient_vram: 4, node_unschedulable: 1, no_gpu: 1 },
      unresolvable: false,
      message:
        "no online node with a GPU of ≥ 90000 MB free VRAM at trust ≥ community (6 nodes: 4 insufficient_vram, 1 node_unschedulable, 1 no_gpu)",
    },
  ],
};
