import assert from "node:assert/strict";
import fc from "fast-check";
import { createPlacer, placeUnits, Reason, reasonCounts } from "../../src/placer/index.ts";
import type { UnitRequest } from "../../src/placer/types.ts";
import { nodeWith, unitWith } from "./builders.ts";

describe("placer fairness (round-robin by customer, oldest first)", () => {
  it("never lets one customer's 200 ready units starve another's single unit, whatever their ages", () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 10_000 }), fc.integer({ min: 2, max: 6 }), (bAge, room) => {
        const aUnits = Array.from({ length: 200 }, (_, i) => unitWith({ id: `a-${String(i).padStart(3, "0")}`, customerId: "A", readySinceMs: 1_000 + i }));
        const bUnit = unitWith({ id: "b-0", customerId: "B", readySinceMs: bAge });
        // Room for `room` ≥ 2 units of 8000 MB: one GPU each.
        const nodes = Array.from({ length: room }, (_, i) => nodeWith({ id: `n${i}`, vram: [8192] }));
        const result = placeUnits({ nodes }, [...aUnits, bUnit], { seed: "fair" });
        assert.ok(result.placements.some((p) => p.unitId === "b-0"), "B's unit waited behind A's volume");
        assert.equal(result.placements.length, room);
      }),
      { numRuns: 100 },
    );
  });

  it("puts B's unit within the first round even when only one unit fits per cycle, once B is the oldest waiting customer", () => {
    // A keeps 200 units ready, all newer than B's: B goes first.
    const aUnits = Array.from({ length: 200 }, (_, i) => unitWith({ id: `a-${i}`, customerId: "A", readySinceMs: 500 + i }));
    const result = placeUnits({ nodes: [nodeWith({ vram: [8192] })] }, [...aUnits, unitWith({ id: "b-0", customerId: "B", readySinceMs: 400 })], { seed: "s" });
    assert.deepEqual(result.placements.map((p) => p.unitId), ["b-0"]);
  });

  it("never makes a gpu unit wait behind cpu units it does not depend on: all ready units are considered each cycle", () => {
    // 300 older cpu units of the same customer: 100 fit on the cpu node, 200 ask for more cores than any node has.
    const cpuUnits: UnitRequest[] = Array.from({ length: 300 }, (_, i) =>
      unitWith({ id: `cpu-${String(i).padStart(3, "0")}`, kind: "cpu", vramMb: 0, cpuCores: i < 100 ? 1 : 64, memoryMb: 256, diskMb: 0, readySinceMs: i }),
    );
    const gpuUnit = unitWith({ id: "gpu-late", readySinceMs: 10_000 });
    const nodes = [nodeWith({ id: "cpu-box", vram: [], freeCpuCores: 100, cpuCores: 100 }), nodeWith({ id: "gpu-box", vram: [24576], freeCpuCores: 2, cpuCores: 2 })];
    const result = placeUnits({ nodes }, [...cpuUnits, gpuUnit], { seed: "s" });
    assert.equal(result.placements.find((p) => p.unitId === "gpu-late")?.nodeId, "gpu-box");
    assert.equal(result.placements.length, 101);
    assert.equal(result.unplaced.length, 200);
  });

  it("sends a cpu unit to a node without a GPU when one can take it, keeping the GPU node's cores for gpu units", () => {
    for (const seed of ["a", "b", "c", "d"]) {
      const nodes = [nodeWith({ id: "gpu-box", vram: [24576], freeCpuCores: 2, cpuCores: 2, diskFreeMb: 20_000 }), nodeWith({ id: "cpu-box", vram: [], freeCpuCores: 2, cpuCores: 2 })];
      const units = [unitWith({ id: "prep", kind: "cpu", vramMb: 0, cpuCores: 2, readySinceMs: 0 }), unitWith({ id: "train", readySinceMs: 1 })];
      assert.deepEqual(
        Object.fromEntries(placeUnits({ nodes }, units, { seed }).placements.map((p) => [p.unitId, p.nodeId])),
        { prep: "cpu-box", train: "gpu-box" },
      );
    }
  });
});

describe("reasonCounts", () => {
  it("counts each unplaced unit once under its main reason and sums node rejections, with every reason present", () => {
    const nodes = [
      nodeWith({ id: "small-1", vram: [8192] }),
      nodeWith({ id: "small-2", vram: [8192] }),
      nodeWith({ id: "community", trustLevel: "community", vram: [81920] }),
      nodeWith({ id: "off", schedulable: false }),
    ];
    const units = [
      unitWith({ id: "big", vramMb: 40000, sensitivity: "low_sensitive" }),
      unitWith({ id: "secret", vramMb: 1000, sensitivity: "high_sensitive" }),
      unitWith({ id: "fits", vramMb: 1000 }),
    ];
    const result = placeUnits({ nodes }, units, { seed: "s" });
    assert.deepEqual(
      result.unplaced.map((u) => [u.unitId, u.reasons]),
      [
        ["big", { insufficient_vram: 2, trust_below_tier: 1, node_unschedulable: 1 }],
        ["secret", { trust_below_tier: 3, node_unschedulable: 1 }],
      ],
    );
    const none = Object.fromEntries(Object.values(Reason).map((r) => [r, 0]));
    assert.deepEqual(reasonCounts(result), {
      units: { ...none, trust_below_tier: 1, insufficient_vram: 1 },
      nodes: { ...none, node_unschedulable: 2, trust_below_tier: 4, insufficient_vram: 2 },
    });
  });

  it("is all zeros for a cycle that placed everything", () => {
    const counts = reasonCounts(placeUnits({ nodes: [nodeWith()] }, [unitWith()], { seed: "s" }));
    assert.ok(Object.values(counts.units).every((n) => n === 0) && Object.values(counts.nodes).every((n) => n === 0));
  });
});

describe("createPlacer", () => {
  it("keeps reservations across cycles and refuses decide before startCycle", () => {
    const placer = createPlacer({ nodes: [nodeWith({ vram: [16384] })] });
    assert.throws(() => placer.decide(unitWith()), /startCycle/);
    assert.equal(placer.place([unitWith({ id: "u1" })], { seed: "1" }).placements.length, 1);
    const second = placer.place([unitWith({ id: "u2" }), unitWith({ id: "u3" })], { seed: "2" });
    // 16384 − 8000 leaves room for one more 8000 MB unit, not two.
    assert.equal(second.placements.length, 1);
    assert.deepEqual(second.unplaced[0]?.reasons, { insufficient_vram: 1 });
  });

  it("rejects a cap that is not a positive integer", () => {
    assert.throws(() => placeUnits({ nodes: [] }, [], { seed: "s", maxScored: 0 }), RangeError);
  });

  it("sorts by a comparator when free VRAM is not whole MB, with the same plan as whole MB would give", () => {
    const whole = placeUnits({ nodes: [nodeWith({ id: "a", vram: [12288] }), nodeWith({ id: "b", vram: [8192] })] }, [unitWith()], { seed: "s" });
    const frac = placeUnits({ nodes: [nodeWith({ id: "a", vram: [12288.5] }), nodeWith({ id: "b", vram: [8192.5] })] }, [unitWith()], { seed: "s" });
    assert.equal(whole.placements[0]?.nodeId, "b");
    assert.equal(frac.placements[0]?.nodeId, "b");
  });
});
