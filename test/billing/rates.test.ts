/**
 * What work costs (src/billing/rates.ts): a completed unit's price by started
 * minute, kind and GPU count, its rounding to whole credits, how it scales with
 * the rates, and the projected cost of a plan, the ceiling job creation checks.
 */
import assert from "node:assert/strict";
import type { WorkloadRates } from "../../src/billing/rates.ts";
import { billedGpus, creditsPerMinute, projectedCost, unitCost } from "../../src/billing/rates.ts";
import type { JobSpec, UnitKind } from "../../src/planner/plan.ts";
import { planJob } from "../../src/planner/plan.ts";

const rates: WorkloadRates = { cpuCreditsPerMinute: 1, gpuCreditsPerMinute: 10 };

function spec(overrides: Partial<JobSpec> = {}): JobSpec {
  return { requiredVramMb: 24000, requiredDiskMb: 10000, maxRuntimeSeconds: 3600, entrypoint: "train.py", ...overrides };
}

describe("unitCost", () => {
  const cases: { name: string; kind: UnitKind; seconds: number; expected: number; rates?: WorkloadRates }[] = [
    { name: "bills a unit that ran 0 seconds for one minute", kind: "gpu", seconds: 0, expected: 10 },
    { name: "bills a unit that ran 1 second for one minute", kind: "cpu", seconds: 1, expected: 1 },
    { name: "bills exactly 60 seconds as one minute", kind: "gpu", seconds: 60, expected: 10 },
    { name: "bills 60.001 seconds as two started minutes", kind: "gpu", seconds: 60.001, expected: 20 },
    { name: "bills 61 seconds as two started minutes", kind: "gpu", seconds: 61, expected: 20 },
    { name: "bills a cpu unit at the cpu rate", kind: "cpu", seconds: 600, expected: 10 },
    { name: "bills a day of gpu time", kind: "gpu", seconds: 86_400, expected: 14_400 },
    { name: "rounds a fractional rate up to whole credits", kind: "cpu", seconds: 180, expected: 2, rates: { cpuCreditsPerMinute: 0.5, gpuCreditsPerMinute: 10 } },
    { name: "rounds one started minute at a fractional rate up to one credit", kind: "cpu", seconds: 30, expected: 1, rates: { cpuCreditsPerMinute: 0.01, gpuCreditsPerMinute: 10 } },
    { name: "does not charge an extra credit for float noise", kind: "cpu", seconds: 600, expected: 7, rates: { cpuCreditsPerMinute: 0.7, gpuCreditsPerMinute: 10 } },
    { name: "does not charge an extra credit for float noise at 0.1", kind: "gpu", seconds: 1800, expected: 3, rates: { cpuCreditsPerMinute: 1, gpuCreditsPerMinute: 0.1 } },
    { name: "bills nothing at a zero rate", kind: "gpu", seconds: 600, expected: 0, rates: { cpuCreditsPerMinute: 1, gpuCreditsPerMinute: 0 } },
  ];
  for (const tc of cases) {
    it(tc.name, () => assert.equal(unitCost({ kind: tc.kind }, tc.seconds, tc.rates ?? rates), tc.expected));
  }

  const scales = [1, 2, 3, 7, 100];
  for (const factor of scales) {
    it(`scales linearly with whole rates (× ${factor})`, () => {
      const scaled = { cpuCreditsPerMinute: rates.cpuCreditsPerMinute * factor, gpuCreditsPerMinute: rates.gpuCreditsPerMinute * factor };
      for (const kind of ["cpu", "gpu"] as const) {
        for (const seconds of [0, 59, 60, 61, 3599, 3601]) {
          assert.equal(unitCost({ kind }, seconds, scaled), unitCost({ kind }, seconds, rates) * factor, `${kind} ${seconds} s`);
        }
      }
    });
  }

  const refused: { name: string; seconds: number; rates: WorkloadRates }[] = [
    { name: "a negative cpu rate", seconds: 1, rates: { cpuCreditsPerMinute: -1, gpuCreditsPerMinute: 1 } },
    { name: "a NaN gpu rate", seconds: 1, rates: { cpuCreditsPerMinute: 1, gpuCreditsPerMinute: Number.NaN } },
    { name: "an infinite rate", seconds: 1, rates: { cpuCreditsPerMinute: Number.POSITIVE_INFINITY, gpuCreditsPerMinute: 1 } },
    { name: "negative run seconds", seconds: -1, rates },
    { name: "NaN run seconds", seconds: Number.NaN, rates },
  ];
  for (const tc of refused) {
    it(`refuses ${tc.name} as a programming error`, () => assert.throws(() => unitCost({ kind: "cpu" }, tc.seconds, tc.rates), RangeError));
  }
});

describe("unitCost of a multi-GPU unit", () => {
  // A gpu unit of N GPUs pays N times the gpu rate per started minute; a cpu unit ignores any GPU count.
  const cases: { gpus: number | undefined; kind: UnitKind; seconds: number; expected: number; rates?: WorkloadRates }[] = [
    { gpus: 1, kind: "gpu", seconds: 60, expected: 10 },
    { gpus: 2, kind: "gpu", seconds: 60, expected: 20 },
    { gpus: 8, kind: "gpu", seconds: 60, expected: 80 },
    { gpus: 1, kind: "gpu", seconds: 61, expected: 20 },
    { gpus: 2, kind: "gpu", seconds: 61, expected: 40 },
    { gpus: 8, kind: "gpu", seconds: 3600, expected: 4800 },
    { gpus: undefined, kind: "gpu", seconds: 60, expected: 10 },
    { gpus: 0, kind: "gpu", seconds: 60, expected: 10 },
    { gpus: 8, kind: "cpu", seconds: 60, expected: 1 },
    { gpus: 0, kind: "cpu", seconds: 120, expected: 2 },
    // Rounded once for the unit: 8 GPUs × 0.1 credits × 1 minute is 0.8, one credit, not 8 × ceil(0.1).
    { gpus: 8, kind: "gpu", seconds: 60, expected: 1, rates: { cpuCreditsPerMinute: 1, gpuCreditsPerMinute: 0.1 } },
    { gpus: 2, kind: "gpu", seconds: 1800, expected: 6, rates: { cpuCreditsPerMinute: 1, gpuCreditsPerMinute: 0.1 } },
  ];
  for (const tc of cases) {
    it(`bills a ${tc.kind} unit of ${String(tc.gpus)} GPUs that ran ${tc.seconds} s ${tc.expected} credits`, () =>
      assert.equal(unitCost({ kind: tc.kind, gpuCount: tc.gpus }, tc.seconds, tc.rates ?? rates), tc.expected));
  }

  const counts = [1, 2, 8];
  for (const gpus of counts) {
    it(`charges ${gpus} GPUs ${gpus} × the one-GPU price at whole rates, for any run time`, () => {
      for (const seconds of [0, 59, 60, 61, 3599, 3601, 86_400]) {
        assert.equal(unitCost({ kind: "gpu", gpuCount: gpus }, seconds, rates), gpus * unitCost({ kind: "gpu", gpuCount: 1 }, seconds, rates), `${seconds} s`);
      }
    });
  }

  it("states the per-minute rate of each unit", () => {
    assert.deepEqual(
      [{ kind: "cpu" as const }, { kind: "gpu" as const }, { kind: "gpu" as const, gpuCount: 2 }, { kind: "gpu" as const, gpuCount: 8 }].map((u) => creditsPerMinute(u, rates)),
      [1, 10, 20, 80],
    );
  });

  const refusedCounts = [-1, 1.5, Number.NaN];
  for (const gpus of refusedCounts) {
    it(`refuses a GPU count of ${gpus} as a programming error`, () => assert.throws(() => billedGpus({ kind: "gpu", gpuCount: gpus }), RangeError));
  }
});

describe("projectedCost", () => {
  it("projects every unit of the default plan at the job's whole runtime", () => {
    const units = planJob(spec({ maxRuntimeSeconds: 3601 }));
    // 61 started minutes: prepare and evaluate at 1/min, train at 10/min.
    assert.equal(projectedCost(units, rates, 3601), 61 + 610 + 61);
  });

  it("projects a fanned-out plan as the sum of its units' worst cases", () => {
    const units = planJob(spec({ manifest: { stages: [{ name: "s", kind: "gpu", depends_on: [], replicas: 4 }] } }));
    assert.equal(projectedCost(units, rates, 120), 4 * 2 * 10);
  });

  it("rounds each unit up on its own, not the plan's sum", () => {
    const half = { cpuCreditsPerMinute: 0.5, gpuCreditsPerMinute: 10 };
    // Three cpu units of one started minute each: 3 × ceil(0.5), not ceil(1.5).
    assert.equal(projectedCost([{ kind: "cpu" }, { kind: "cpu" }, { kind: "cpu" }], half, 60), 3);
  });

  const gpuPlans: { gpus: number; expected: number }[] = [
    // prepare and evaluate (cpu, 1/min) and train on N GPUs (10/min each), 61 started minutes.
    { gpus: 1, expected: 61 + 1 * 610 + 61 },
    { gpus: 2, expected: 61 + 2 * 610 + 61 },
    { gpus: 8, expected: 61 + 8 * 610 + 61 },
  ];
  for (const tc of gpuPlans) {
    it(`projects a plan whose gpu unit holds ${tc.gpus} GPUs at ${tc.gpus} × the gpu rate`, () => {
      const units = [{ kind: "cpu" as const, gpuCount: 0 }, { kind: "gpu" as const, gpuCount: tc.gpus }, { kind: "cpu" as const, gpuCount: 0 }];
      assert.equal(projectedCost(units, rates, 3601), tc.expected);
    });
  }

  for (const tc of gpuPlans) {
    it(`projects the planner's default plan of a job of ${tc.gpus} GPUs the same way`, () => {
      const units = planJob(spec({ maxRuntimeSeconds: 3601, requiredGpuCount: tc.gpus }));
      assert.equal(projectedCost(units, rates, 3601), tc.expected);
    });
  }

  it("projects each gpu unit of a plan by its own GPU count", () => {
    const units = [{ kind: "gpu" as const, gpuCount: 8 }, { kind: "gpu" as const, gpuCount: 2 }, { kind: "gpu" as const, gpuCount: 1 }];
    assert.equal(projectedCost(units, rates, 120), (8 + 2 + 1) * 2 * 10);
  });

  it("projects a manifest plan of both kinds, each at its own rate", () => {
    const units = planJob(spec({ manifest: { stages: [{ name: "a", kind: "cpu" }, { name: "b", kind: "gpu", depends_on: ["a"], replicas: 3 }] } }));
    // 61 s is two started minutes: the cpu stage at 1/min, three gpu replicas at 10/min.
    assert.equal(projectedCost(units, rates, 61), 2 * 1 + 3 * 2 * 10);
  });

  it("is zero for an empty plan", () => assert.equal(projectedCost([], rates, 600), 0));
});
