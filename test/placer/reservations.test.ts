import assert from "node:assert/strict";
import { createPlacer, placementOrder, placeUnits } from "../../src/placer/index.ts";
import type { NodeSnapshot, UnitRequest } from "../../src/placer/types.ts";
import { gpu, nodeWith, unitWith } from "./builders.ts";

const cycleMs = 1_000;
const reserveAfterMs = 5_000;
/** How many cycles a small unit runs. */
const smallRunCycles = 3;

interface Running {
  unit: UnitRequest;
  nodeId: string;
  gpuIndexes: number[];
  endsAtCycle: number;
}

/**
 * Two home nodes of one 24 GB GPU each, three 8 GB units running on each, ending one per node per
 * cycle; three new 8 GB units arrive every cycle, more than end, so freed VRAM is always wanted. A
 * 24 GB unit is ready from cycle 0. Each cycle reads a fresh snapshot (what runs now), syncs the
 * long-lived placer to it and places the waiting units, as the scheduling loop does. Returns the cycle
 * the large unit was placed in, or undefined when it was not within `cycles`.
 */
function simulate(options: { reserveAfterMs: number }, cycles: number): number | undefined {
  const nodes: NodeSnapshot[] = [nodeWith({ id: "home-a", vram: [24576] }), nodeWith({ id: "home-b", vram: [24576] })];
  const small = (id: string, readyCycle: number) => unitWith({ id, customerId: "many", vramMb: 8_000, readySinceMs: readyCycle * cycleMs });
  const large = unitWith({ id: "large", customerId: "patient", vramMb: 24_000, readySinceMs: 0 });
  let running: Running[] = nodes.flatMap((n) =>
    [1, 2, 3].map((end) => ({ unit: small(`${n.id}-start-${end}`, 0), nodeId: n.id, gpuIndexes: [0], endsAtCycle: end })),
  );
  let waiting: UnitRequest[] = [large];
  const placer = createPlacer({ nodes });
  for (let c = 0; c < cycles; c++) {
    running = running.filter((r) => r.endsAtCycle > c);
    for (let k = 0; k < 3; k++) waiting.push(small(`small-${c}-${k}`, c));
    const snapshot = {
      nodes: nodes.map((n) => {
        const mine = running.filter((r) => r.nodeId === n.id);
        const used = (index: number) => mine.filter((r) => r.gpuIndexes.includes(index)).reduce((a, r) => a + r.unit.vramMb, 0);
        return {
          ...n,
          freeCpuCores: n.cpuCores - mine.reduce((a, r) => a + r.unit.cpuCores, 0),
          freeMemoryMb: n.memoryMb - mine.reduce((a, r) => a + r.unit.memoryMb, 0),
          diskFreeMb: n.diskFreeMb - mine.reduce((a, r) => a + r.unit.diskMb, 0),
          gpus: n.gpus.map((g) => gpu(g.index, g.vramMb, g.vramMb - used(g.index))),
        };
      }),
    };
    placer.sync(snapshot);
    const result = placer.place(waiting, { seed: `cycle-${c}`, nowMs: c * cycleMs, reserveAfterMs: options.reserveAfterMs });
    for (const p of result.placements) {
      if (p.unitId === large.id) return c;
      const unit = waiting.find((u) => u.id === p.unitId) as UnitRequest;
      running.push({ unit, nodeId: p.nodeId, gpuIndexes: p.gpuIndexes, endsAtCycle: c + smallRunCycles });
    }
    const placed = new Set(result.placements.map((p) => p.unitId));
    waiting = waiting.filter((u) => !placed.has(u.id));
  }
  return undefined;
}

describe("placer reservations: a large unit is not starved by small ones", () => {
  it("places a waiting 24 GB unit within reserveAfterMs + the longest run on its node + one cycle, while 8 GB units keep arriving and ending", () => {
    const placedAt = simulate({ reserveAfterMs }, 100);
    assert.ok(placedAt !== undefined, "the large unit was never placed");
    // The bound (README, "Reservations"): overdue at 5 s, then its node takes nothing new and the 8 GB
    // units running there (3 s each at most) end.
    assert.ok(placedAt * cycleMs <= reserveAfterMs + smallRunCycles * cycleMs + cycleMs, `placed only at cycle ${placedAt}`);
    // And not before it was overdue: until then the small units' freed VRAM went to them.
    assert.ok(placedAt * cycleMs >= reserveAfterMs, `placed at cycle ${placedAt}, before it was overdue`);
  });

  it("starves the same 24 GB unit for 100 cycles when the rule is off (reserveAfterMs: Infinity)", () => {
    assert.equal(simulate({ reserveAfterMs: Infinity }, 100), undefined);
  });

  it("keeps the overdue unit's closest capable node for it: that node takes no other unit in the cycle", () => {
    const nodes = [
      nodeWith({ id: "nearly", gpus: [gpu(0, 24576, 16000)] }),
      nodeWith({ id: "busy", gpus: [gpu(0, 24576, 9000)] }),
      nodeWith({ id: "too-small", vram: [12288] }),
    ];
    const units = [
      unitWith({ id: "large", customerId: "patient", vramMb: 24_000, readySinceMs: 0 }),
      unitWith({ id: "small-1", customerId: "many", vramMb: 8_000, readySinceMs: 9_000 }),
      unitWith({ id: "small-2", customerId: "many", vramMb: 8_000, readySinceMs: 9_000 }),
    ];
    const result = placeUnits({ nodes }, units, { seed: "s", nowMs: 10_000, reserveAfterMs });
    const [large] = result.unplaced;
    assert.equal(large?.reservedNodeId, "nearly");
    assert.match(large?.message ?? "", /; node nearly is kept for it until it fits$/);
    // The small units go elsewhere (one fits busy's GPU, the other the 12 GB card); nothing lands on "nearly".
    assert.deepEqual(result.placements.map((p) => p.nodeId).sort(), ["busy", "too-small"]);
    // A cycle before it is overdue, "nearly" takes a small unit as usual.
    const early = placeUnits({ nodes }, units, { seed: "s", nowMs: 4_000, reserveAfterMs });
    assert.equal(early.unplaced.find((u) => u.unitId === "large")?.reservedNodeId, undefined);
  });

  it("reserves nothing for an overdue unit no node could ever run", () => {
    const result = placeUnits({ nodes: [nodeWith({ vram: [12288] })] }, [unitWith({ vramMb: 24_000, readySinceMs: 0 })], { seed: "s", nowMs: 10_000, reserveAfterMs });
    assert.equal(result.unplaced[0]?.reservedNodeId, undefined);
  });

  it("orders overdue units first, oldest first, then the rest in fair order", () => {
    const units = [
      unitWith({ id: "a-new", customerId: "a", readySinceMs: 9_000 }),
      unitWith({ id: "a-old", customerId: "a", readySinceMs: 1_000 }),
      unitWith({ id: "a-older-than-b", customerId: "a", readySinceMs: 1_500 }),
      unitWith({ id: "b-old", customerId: "b", readySinceMs: 2_000 }),
      unitWith({ id: "c-mid", customerId: "c", readySinceMs: 6_000 }),
    ];
    // Fair order alone: one unit per customer per round.
    assert.deepEqual(placementOrder(units, undefined).map((u) => u.id), ["a-old", "b-old", "c-mid", "a-older-than-b", "a-new"]);
    // At 7 s the units ready by 2 s are overdue: they go first, by age, whoever their customer.
    assert.deepEqual(placementOrder(units, 7_000, reserveAfterMs).map((u) => u.id), ["a-old", "a-older-than-b", "b-old", "c-mid", "a-new"]);
  });
});
