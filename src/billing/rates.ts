/**
 * What work costs: the workload rates, a completed unit's price and the most a
 * planned job can cost. Pure functions; the planner decides what units a job
 * has, billing decides what they cost (billing imports the planner's types,
 * never the other way round).
 */
import type { PlannedUnit, UnitKind } from "../planner/plan.ts";
import type { RatesConfig } from "../platform/config.ts";

/** Credit rates per started minute, by unit kind (the configured `rates`). */
export type WorkloadRates = RatesConfig;

function checkRates(rates: WorkloadRates): void {
  for (const rate of [rates.cpuCreditsPerMinute, rates.gpuCreditsPerMinute]) {
    if (!Number.isFinite(rate) || rate < 0) throw new RangeError(`credit rates must be finite and non-negative, got ${rate}`);
  }
}

/**
 * What a completed unit debits: started minutes (at least one) times the
 * kind's rate, rounded up to whole credits. The tiny epsilon keeps float noise
 * (10 × 0.7 = 7.000000000000001) from charging an extra credit.
 */
export function unitCost(kind: UnitKind, runSeconds: number, rates: WorkloadRates): number {
  checkRates(rates);
  if (!Number.isFinite(runSeconds) || runSeconds < 0) {
    throw new RangeError(`runSeconds must be finite and non-negative, got ${runSeconds}`);
  }
  const minutes = Math.max(1, Math.ceil(runSeconds / 60));
  const rate = kind === "gpu" ? rates.gpuCreditsPerMinute : rates.cpuCreditsPerMinute;
  return Math.max(0, Math.ceil(minutes * rate - 1e-9));
}

/**
 * The most a plan can cost: every unit running for the job's whole
 * `maxRuntimeSeconds` (a unit can run no longer), each billed as
 * {@link unitCost} would bill it. Checked against the balance at job creation.
 */
export function projectedCost(units: readonly Pick<PlannedUnit, "kind">[], rates: WorkloadRates, maxRuntimeSeconds: number): number {
  return units.reduce((sum, unit) => sum + unitCost(unit.kind, maxRuntimeSeconds, rates), 0);
}
