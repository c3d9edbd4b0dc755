import assert from "node:assert/strict";
import { createState, freeVramByModel, reserve, syncState, viewOf, type WorkingNode } from "../../src/placer/cycle-state.ts";
import { createPlacer } from "../../src/placer/index.ts";
import { gpuScarcity, plentifulScore } from "../../src/placer/plugins/gpu-scarcity.ts";
import { constrainsModels, modelPressure, scarcityScore } from "../../src/placer/scarcity.ts";
import type { DemandAsk, NodeSnapshot, PlacerOptions, UnitRequest } from "../../src/placer/types.ts";
import type { ScoreWeights } from "../../src/platform/config.ts";
import { gpu, nodeWith, unitWith } from "./builders.ts";

function ask(overrides: Partial<DemandAsk> = {}): DemandAsk {
  return { gpuCount: 1, vramMb: 1000, gpuModels: [], cpuCores: 1, memoryMb: 1, weight: 1, ...overrides };
}

/** Free VRAM per model: 1000 MB of the rare "Tesla P100", 3000 MB of the common "G2". */
const supply = new Map([
  ["Tesla P100", 1000],
  ["G2", 3000],
]);

describe("model pressure: the share of a model's free VRAM the constrained asks will claim", () => {
  // ρ_g = (S / D) × Σ over the constrained asks m allowing g of dₘ / S(Aₘ); here S = 4000.
  const cases: { name: string; asks: DemandAsk[]; want: Record<string, number> }[] = [
    { name: "is 0 everywhere when no ask constrains the model", asks: [ask()], want: { "Tesla P100": 0, G2: 0 } },
    {
      name: "is (S / D) × d / S_g for an ask of one model: half the demand on a quarter of the VRAM claims it twice over",
      asks: [ask({ weight: 0.5 }), ask({ weight: 0.5, gpuModels: ["P100"] })],
      want: { "Tesla P100": (4000 / 1000) * (500 / 1000), G2: 0 },
    },
    {
      name: "spreads an ask over the models it allows in proportion to their free VRAM (the same share of each)",
      asks: [ask({ weight: 0.5 }), ask({ weight: 0.5, gpuModels: ["P100", "G2"] })],
      want: { "Tesla P100": 0.5, G2: 0.5 },
    },
    {
      name: "counts a unit of K GPUs as K × its VRAM",
      asks: [ask({ weight: 0.5 }), ask({ weight: 0.5, gpuCount: 2, vramMb: 500, gpuModels: ["P100"] })],
      want: { "Tesla P100": 2, G2: 0 },
    },
    {
      name: "matches models as case-insensitive substrings of the GPU name",
      asks: [ask({ weight: 0.5 }), ask({ weight: 0.5, gpuModels: ["p100"] })],
      want: { "Tesla P100": 2, G2: 0 },
    },
    {
      name: "leaves out an ask no model with free VRAM allows (it cannot take any), and cpu asks",
      asks: [ask({ weight: 0.5 }), ask({ weight: 0.25, gpuModels: ["A100"] }), ask({ weight: 0.25, gpuCount: 0, vramMb: 0, gpuModels: ["P100"] })],
      want: { "Tesla P100": 0, G2: 0 },
    },
  ];
  for (const c of cases) {
    it(c.name, () => assert.deepEqual(Object.fromEntries(modelPressure(c.asks, supply)), c.want));
  }

  it("is 0 everywhere when nothing is free", () => {
    const none = new Map([["Tesla P100", 0]]);
    assert.deepEqual(Object.fromEntries(modelPressure([ask({ gpuModels: ["P100"] })], none)), { "Tesla P100": 0 });
  });

  it("says whether any gpu ask constrains the model at all", () => {
    assert.equal(constrainsModels([ask(), ask({ gpuCount: 0, gpuModels: ["P100"] })]), false);
    assert.equal(constrainsModels([ask(), ask({ gpuModels: ["P100"] })]), true);
  });
});

describe("free VRAM per model, as the placer keeps it", () => {
  const p100 = (index: number, free: number) => ({ ...gpu(index, 16000, free), name: "Tesla P100" });
  const g2 = (index: number, free: number) => ({ ...gpu(index, 24000, free), name: "G2" });
  const snapshot = {
    nodes: [
      nodeWith({ id: "a", gpus: [p100(0, 16000), g2(1, 24000)] }),
      nodeWith({ id: "b", gpus: [g2(0, 10000), g2(1, -500)] }),
      nodeWith({ id: "off", schedulable: false, gpus: [p100(0, 16000)] }),
    ],
  };

  it("sums the free VRAM of each model over the nodes that take units, used-up GPUs as nothing", () => {
    assert.deepEqual(Object.fromEntries(freeVramByModel(createState(snapshot))), { "Tesla P100": 16000, G2: 34000 });
  });

  it("follows every reservation and sync, as a state built afresh would count it", () => {
    const state = createState(snapshot);
    reserve(state, state.byId.get("a") as WorkingNode, unitWith({ vramMb: 6000 }), [0, 1]);
    reserve(state, state.byId.get("b") as WorkingNode, unitWith({ vramMb: 12000 }), [0]);
    assert.deepEqual(Object.fromEntries(freeVramByModel(state)), { "Tesla P100": 10000, G2: 18000 });
    const next = { nodes: [nodeWith({ id: "a", gpus: [p100(0, 1000), g2(1, 2000)] }), snapshot.nodes[1] as NodeSnapshot, snapshot.nodes[2] as NodeSnapshot] };
    assert.equal(syncState(state, next), true);
    assert.deepEqual(freeVramByModel(state), freeVramByModel(createState(next)));
  });
});

describe("scarcity score", () => {
  // 100 × (1 − min(1, ρ)²): a model the constrained work leaves mostly free is barely avoided.
  const cases: [pressure: number, want: number][] = [
    [0, 100],
    [0.25, 93.75],
    [0.5, 75],
    [1, 0],
    [2, 0],
  ];
  for (const [pressure, want] of cases) {
    it(`scores a model under pressure ${pressure} at ${want}`, () => assert.equal(scarcityScore(pressure), want));
  }

  it("is the mean over the GPUs the unit may take (its models, enough free VRAM)", () => {
    const pressure = new Map([
      ["Tesla P100", 0.5],
      ["G2", 0],
    ]);
    const node = nodeWith({ gpus: [{ ...gpu(0, 16000), name: "Tesla P100" }, { ...gpu(1, 16000), name: "G2" }, { ...gpu(2, 16000, 1000), name: "G2" }] });
    const cycle = { profile: { vramMb: 1, cpuCores: 1, memoryMb: 1, diskMb: 1 }, modelPressure: pressure };
    // GPU 2 lacks the VRAM: the mean of 75 (P100) and 100 (G2).
    assert.equal(gpuScarcity.score(unitWith({ vramMb: 8000 }), viewOf(node), cycle), 87.5);
    assert.equal(gpuScarcity.score(unitWith({ vramMb: 8000, gpuModels: ["P100"] }), viewOf(node), cycle), 75);
    assert.equal(gpuScarcity.score(unitWith({ kind: "cpu", vramMb: 0 }), viewOf(node), cycle), plentifulScore);
    assert.equal(gpuScarcity.score(unitWith({ vramMb: 8000 }), viewOf(node), { profile: cycle.profile }), plentifulScore);
  });
});

describe("placement with the scarcity score", () => {
  /** Two nodes of one GPU each: a rare model that fits the unit tighter, a common one with more room. */
  function cluster(): NodeSnapshot[] {
    return [
      nodeWith({ id: "rare", gpus: [{ ...gpu(0, 16000), name: "Tesla P100" }] }),
      nodeWith({ id: "common", gpus: [{ ...gpu(0, 24000), name: "G2" }] }),
    ];
  }
  /** The arriving work: half any model, half only the rare one. */
  const recentAsks = [ask({ vramMb: 8000, weight: 0.5 }), ask({ vramMb: 8000, weight: 0.5, gpuModels: ["P100"] })];
  const weights = (gpuScarcity: number): ScoreWeights => ({ binPack: 0.7, reliability: 0.2, dataLocality: 0.1, gpuFragmentation: 0, gpuScarcity });
  const place = (unit: UnitRequest, options: Omit<PlacerOptions, "seed">) => createPlacer({ nodes: cluster() }).place([unit], { seed: "s", ...options }).placements[0]?.nodeId;

  it("sends a unit that any model will do to the model constrained work needs least", () => {
    assert.equal(place(unitWith({ vramMb: 8000 }), { weights: weights(0.5), recentAsks }), "common");
  });

  it("leaves the choice to the other scores without it (the rare GPU is the tighter fit)", () => {
    assert.equal(place(unitWith({ vramMb: 8000 }), { weights: weights(0), recentAsks }), "rare");
  });

  it("still places a unit that only the scarce model will do on it", () => {
    assert.equal(place(unitWith({ vramMb: 8000, gpuModels: ["P100"] }), { weights: weights(0.5), recentAsks }), "rare");
  });

  it("plans exactly as without it when no ask constrains the model", () => {
    const unconstrained = [ask({ vramMb: 8000 })];
    const units = Array.from({ length: 6 }, (_, i) => unitWith({ id: `u${i}`, vramMb: 3000 + 1000 * i }));
    const plan = (w: number) => createPlacer({ nodes: cluster() }).place(units, { seed: "s", weights: weights(w), recentAsks: unconstrained });
    assert.deepEqual(plan(0.5), plan(0));
  });
});
