import assert from "node:assert/strict";
import fc from "fast-check";
import { chooseGpus, createState, viewOf } from "../../src/placer/cycle-state.ts";
import { fragmentationCeiling, fragmentationTable } from "../../src/placer/fragmentation-scorer.ts";
import { leftOver } from "../../src/placer/plugins/bin-pack.ts";
import { askFragmentation, fragmentationGrowth, type FragmentationNode, leastFragmentingGpus, nodeFragmentation } from "../../src/placer/fragmentation.ts";
import { fragmentationScore, gpuFragmentation, neutralFragmentationScore, typicalVramMb } from "../../src/placer/plugins/gpu-fragmentation.ts";
import { createDemandWindow, defaultProfile, demandAsks, demandProfile, maxAsks, profilePrior } from "../../src/placer/profile.ts";
import type { DemandAsk, UnitRequest } from "../../src/placer/types.ts";
import { gpu, nodeWith, unitWith } from "./builders.ts";

/** A node of three T4s with 1000, 500 and 200 free, 10 cores and 1000 MB of memory free unless told otherwise. */
function node(overrides: Partial<{ free: number[]; model: string; cores: number; memory: number }> = {}): FragmentationNode {
  const free = overrides.free ?? [1000, 500, 200];
  return {
    gpuFreeVramMb: free,
    gpus: free.map(() => ({ name: overrides.model ?? "NVIDIA Tesla T4" })),
    freeCpuCores: overrides.cores ?? 10,
    freeMemoryMb: overrides.memory ?? 1000,
  };
}

function ask(overrides: Partial<DemandAsk> = {}): DemandAsk {
  return { gpuCount: 1, vramMb: 600, gpuModels: [], cpuCores: 1, memoryMb: 1, weight: 1, ...overrides };
}

describe("fragmentation: the free VRAM an ask could not use", () => {
  // node(): 1700 free on GPUs of 1000, 500 and 200. The mean of FGD's measure (the free VRAM of the
  // GPUs the ask cannot take) and fill's (what is left after as many asks as fit).
  const cases: { name: string; node: FragmentationNode; ask: DemandAsk; want: number }[] = [
    { name: "means the GPUs too small for the ask (700) and the rest after filling (1700 − 1 × 600)", node: node(), ask: ask(), want: (700 + 1100) / 2 },
    { name: "counts only remainders when every GPU could take the ask: 8 asks of 200 leave 100", node: node(), ask: ask({ vramMb: 200 }), want: (0 + 100) / 2 },
    { name: "stops filling when the cores run out: 2 cores host 2 asks of 200, leaving 1300", node: node({ cores: 2 }), ask: ask({ vramMb: 200 }), want: (0 + 1300) / 2 },
    { name: "counts every GPU when too few GPUs have the VRAM for a multi-GPU ask", node: node(), ask: ask({ gpuCount: 2, vramMb: 1000 }), want: 1700 },
    { name: "counts every GPU when the node lacks the cores for the ask", node: node({ cores: 0.5 }), ask: ask(), want: 1700 },
    { name: "counts every GPU when the node lacks the memory for the ask", node: node({ memory: 0 }), ask: ask(), want: 1700 },
    { name: "counts every GPU of a model the ask does not allow", node: node(), ask: ask({ gpuModels: ["V100"] }), want: 1700 },
    { name: "matches models as case-insensitive substrings of the GPU name", node: node(), ask: ask({ gpuModels: ["t4"] }), want: 900 },
    { name: "counts used-up (negative) free VRAM as nothing", node: node({ free: [-5, 1000] }), ask: ask(), want: (0 + 400) / 2 },
  ];
  for (const c of cases) {
    it(c.name, () => assert.equal(askFragmentation(c.node, c.ask), c.want));
  }

  it("weighs the asks of the distribution: (3 × 900 + 1 × 1700) / 4", () => {
    assert.equal(nodeFragmentation(node(), [ask({ weight: 3 }), ask({ gpuCount: 2, vramMb: 1000, weight: 1 })]), 1100);
  });

  it("leaves cpu asks out (all free VRAM is useless to them wherever a unit goes)", () => {
    assert.equal(nodeFragmentation(node(), [ask({ gpuCount: 0, vramMb: 0 })]), 0);
    assert.equal(nodeFragmentation(node(), [ask({ gpuCount: 0, vramMb: 0, weight: 5 }), ask()]), 900);
  });

  it("shrinks when a unit fills a GPU no ask could use: 500 MB on the 500-free GPU (900 → 400)", () => {
    const unit = { gpuCount: 1, vramMb: 500, cpuCores: 0, memoryMb: 0 };
    assert.equal(fragmentationGrowth(node(), unit, [1], [ask()]), -500);
  });

  it("grows when a unit breaks the only GPU an ask fits: 500 MB on the whole GPU strands all 1200 left", () => {
    const unit = { gpuCount: 1, vramMb: 500, cpuCores: 0, memoryMb: 0 };
    assert.equal(fragmentationGrowth(node(), unit, [0], [ask()]), 1200 - 900);
  });

  it("grows when a cpu unit takes the cores a gpu ask needs next to the GPUs", () => {
    const cpuUnit = { gpuCount: 0, vramMb: 0, cpuCores: 1.5, memoryMb: 0 };
    assert.equal(fragmentationGrowth(node({ cores: 2 }), cpuUnit, [], [ask()]), 1700 - 900);
  });

  it("gives a one-GPU unit the GPU where fragmentation grows least, not the tightest fit", () => {
    // Before: 1820 free, 5 asks of 300 fit (3 + 1 + 1): (0 + 320) / 2 = 160.
    // 50 MB on the tightest GPU (320 free) leaves 270, too little for the ask: (270 + 570) / 2, growth 260.
    // On the 500 or the 1000 GPU 5 asks still fit: (0 + 270) / 2, growth −25; the tie goes to the less free.
    const unit = { gpuCount: 1, vramMb: 50, cpuCores: 0, memoryMb: 0 };
    assert.deepEqual(leastFragmentingGpus(node({ free: [1000, 320, 500] }), unit, [0, 1, 2], [ask({ vramMb: 300 })]), { gpus: [2], growth: -25 });
  });

  it("breaks a tie in growth towards the GPU with the least free VRAM", () => {
    // 100 MB off either GPU too small for the ask (200 or 500 free) takes 100 off both measures (growth −100);
    // on the whole GPU it takes 100 off FGD's only (−50).
    const unit = { gpuCount: 1, vramMb: 100, cpuCores: 0, memoryMb: 0 };
    assert.deepEqual(leastFragmentingGpus(node(), unit, [0, 1, 2], [ask()]), { gpus: [2], growth: -100 });
  });

  it("gives a multi-GPU unit the eligible GPUs with the least free VRAM", () => {
    const unit = { gpuCount: 2, vramMb: 600, cpuCores: 0, memoryMb: 0 };
    const got = leastFragmentingGpus(node({ free: [1000, 1000, 600] }), unit, [0, 1, 2], [ask()]);
    assert.deepEqual(got?.gpus, [0, 2]);
  });

  it("finds no GPUs when fewer are eligible than the unit asks", () => {
    const unit = { gpuCount: 2, vramMb: 600, cpuCores: 0, memoryMb: 0 };
    assert.equal(leastFragmentingGpus(node(), unit, [0], [ask()]), undefined);
  });
});

describe("fragmentation score", () => {
  it("is neutral for no growth, higher for less, within 0..100", () => {
    assert.equal(fragmentationScore(0, 1000), neutralFragmentationScore);
    assert.ok(fragmentationScore(-500, 1000) > 50 && fragmentationScore(-1e9, 1000) <= 100);
    assert.ok(fragmentationScore(500, 1000) < 50 && fragmentationScore(1e9, 1000) >= 0);
  });

  it("measures growth against the typical gpu ask: 2 × 1000 and 1 × 500, equally often, take 1250 MB", () => {
    assert.equal(typicalVramMb([ask({ gpuCount: 2, vramMb: 1000 }), ask({ vramMb: 500 }), ask({ gpuCount: 0, vramMb: 0 })]), 1250);
  });
});

describe("demand asks and the demand window", () => {
  it("counts each kind of gpu ask once, weighted by how many units ask it, and leaves cpu units out", () => {
    const units = [unitWith({ id: "a" }), unitWith({ id: "b" }), unitWith({ id: "c", vramMb: 16000, gpuCount: 2 }), unitWith({ id: "d", kind: "cpu" })];
    const asks = demandAsks(units);
    assert.deepEqual(
      asks.map((a) => [a.gpuCount, a.vramMb, a.weight]),
      [
        [1, 8000, 2 / 3],
        [2, 16000, 1 / 3],
      ],
    );
  });

  it("merges past maxAsks kinds: neighbours in VRAM of the same shape join, weighted, and every unit still counts", () => {
    // maxAsks + 10 kinds of one unit each, 1000..1000+maxAsks+9 MB, and one kind asked twice.
    const units = Array.from({ length: maxAsks + 10 }, (_, i) => unitWith({ id: `u${i}`, vramMb: 1000 + i }));
    units.push(unitWith({ id: "again", vramMb: 1000 + maxAsks + 5 }));
    const asks = demandAsks(units);
    assert.equal(asks.length, maxAsks);
    assert.ok(Math.abs(asks.reduce((s, a) => s + a.weight, 0) - 1) < 1e-12);
    // Nothing is left out: the asks' mean VRAM is the units' mean.
    const mean = units.reduce((s, u) => s + u.vramMb, 0) / units.length;
    assert.ok(Math.abs(asks.reduce((s, a) => s + a.weight * a.vramMb, 0) - mean) < 1e-9);
  });

  it("leaves a rare shape out before it averages a common shape's distinct sizes (a whole GPU and half of one stay apart)", () => {
    const units: UnitRequest[] = [];
    for (let i = 0; i < 50; i++) units.push(unitWith({ id: `whole${i}`, vramMb: 1000 }), unitWith({ id: `half${i}`, vramMb: 500 }));
    // maxAsks − 1 rare shapes (each its own model allow-list), one unit each.
    for (let i = 0; i < maxAsks - 1; i++) units.push(unitWith({ id: `rare${i}`, vramMb: 700, gpuModels: [`Model${i}`] }));
    const asks = demandAsks(units);
    assert.equal(asks.length, maxAsks);
    assert.deepEqual(
      asks.slice(0, 2).map((a) => [a.vramMb, a.gpuModels.length]),
      [
        [1000, 0],
        [500, 0],
      ],
    );
    assert.equal(asks.filter((a) => a.gpuModels.length > 0).length, maxAsks - 2);
  });

  it("takes the profile's asks from the window when given, else from the cycle's units", () => {
    const recent = [ask({ vramMb: 123 })];
    assert.equal(demandProfile([unitWith()], recent).asks, recent);
    assert.equal(demandProfile([unitWith()]).asks?.[0]?.vramMb, 8000);
  });

  it("breaks score ties on the GPUs the unit would get with the asks, not on the best fit it would not get", () => {
    // Best fit takes the 3000 MB GPU (1000 left, useless to a 3000 MB ask); the asks take the 5000 MB one (3000 left).
    const view = viewOf(nodeWith({ gpus: [gpu(0, 8000, 3000), gpu(1, 8000, 5000)] }));
    const unit = unitWith({ vramMb: 2000 });
    const asks = [ask({ vramMb: 3000 })];
    assert.deepEqual(chooseGpus(view, unit, asks), [1]);
    assert.equal(leftOver(unit, view, asks), 3000);
    assert.equal(leftOver(unit, view), 1000);
  });

  it("asks K × the per-GPU VRAM of a node for a unit of K GPUs in the profile, as BinPack asks it", () => {
    const prior = profilePrior * defaultProfile.vramMb;
    const profile = demandProfile([unitWith({ id: "a", vramMb: 8000, gpuCount: 4 }), unitWith({ id: "b", vramMb: 8000 })]);
    assert.equal(profile.vramMb, (prior + 4 * 8000 + 8000) / (profilePrior + 2));
  });

  it("counts a unit once however many cycles it waits, and forgets the oldest past its size", () => {
    const window = createDemandWindow(2);
    assert.deepEqual(window.asks(), []);
    window.record([unitWith({ id: "a", vramMb: 1000 })]);
    window.record([unitWith({ id: "a", vramMb: 1000 }), unitWith({ id: "b", vramMb: 2000 })]);
    assert.deepEqual(
      window.asks().map((a) => [a.vramMb, a.weight]),
      [
        [1000, 0.5],
        [2000, 0.5],
      ],
    );
    window.record([unitWith({ id: "c", vramMb: 2000 })]);
    assert.deepEqual(
      window.asks().map((a) => [a.vramMb, a.weight]),
      [[2000, 1]],
    );
  });
});

describe("the fused fragmentation scorer's ceiling", () => {
  it("is never below the score any unit gets on the node (so pruning by it never drops the winner)", () => {
    const vram = fc.constantFrom(0, 300, 500, 700, 1000, 1500, 4000);
    fc.assert(
      fc.property(
        fc.array(vram, { minLength: 1, maxLength: 4 }),
        fc.array(fc.record({ gpuCount: fc.constantFrom(1, 1, 2), vramMb: fc.constantFrom(250, 500, 1000, 2000), weight: fc.constantFrom(1, 2, 5) }), { minLength: 1, maxLength: 5 }),
        fc.record({ vramMb: fc.constantFrom(0, 100, 250, 500, 1000), gpuCount: fc.constantFrom(1, 2), cpuCores: fc.constantFrom(0, 1, 4), kind: fc.constantFrom("gpu", "gpu", "cpu") }),
        (free, shapes, u) => {
          const node = nodeWith({ id: "n", gpus: free.map((f, i) => gpu(i, 4000, f)), freeCpuCores: 8, cpuCores: 8 });
          const asks = shapes.map((s) => ask({ ...s, cpuCores: 1, memoryMb: 512 }));
          const unit =
            u.kind === "cpu"
              ? unitWith({ kind: "cpu", vramMb: 0, cpuCores: u.cpuCores, memoryMb: 512 })
              : unitWith({ vramMb: u.vramMb, gpuCount: u.gpuCount, cpuCores: u.cpuCores, memoryMb: 512 });
          const view = viewOf(node);
          if (unit.kind === "gpu" && chooseGpus(view, unit).length === 0) return;
          const table = fragmentationTable(createState({ nodes: [node] }), asks);
          if (table === undefined) return;
          const score = gpuFragmentation.score(unit, view, { profile: { ...defaultProfile, asks } });
          const takes = unit.kind === "gpu" ? unit.vramMb * (unit.gpuCount ?? 1) : 0;
          const tight = fragmentationCeiling(table, 0, takes, -Infinity);
          const loose = fragmentationCeiling(table, 0, takes, Infinity);
          assert.ok(score <= tight + 1e-9, `score ${score} above the ceiling ${tight}`);
          assert.ok(tight <= loose + 1e-9);
        },
      ),
      { numRuns: 500 },
    );
  });
});
