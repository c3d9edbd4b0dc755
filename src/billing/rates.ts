/**
 * What work costs: the workload rates, a completed unit's price and the most a
 * planned job can cost. Pure functions; the planner decides what units a job
 * has, billing decides what they cost (billing imports the planner's types,
 * never the other way round).
 */
import type { UnitKind } from "../planner/plan.ts";
import type { RatesConfig } from "../platform/config.ts";

/** Credit rates per started minute, by unit kind (the configured `rates`). */
export type WorkloadRates = RatesConfig;

function checkRates(rates: WorkloadRates): void {
  for (const rate of [rates.cpuCreditsPerMinute, rates.gpuCreditsPerMinute]) {
    if (!Number.isFinite(rate) || rate < 0) throw new RangeError(`credit rates must be finite and non-negative, got ${rate}`);
  }
}

/** What a unit's price depends on: its kind and, for a gpu unit, how many GPUs it holds. */
export interface PricedUnit {
  kind: UnitKind;
  /** GPUs of one node the unit holds (1 to 8); absent or 0 for a unit planned before GPU counts existed: one. Ignored for a cpu unit. */
  gpuCount?: number | undefined;
}

/**
 * The GPUs a unit is billed for: its GPU count for a gpu unit, never fewer than one (a unit planned before
 * GPU counts existed holds one); none for a cpu unit, which is billed by the cpu rate alone.
 */
export function billedGpus(unit: PricedUnit): number {
  if (unit.kind !== "gpu") return 0;
  const count = unit.gpuCount ?? 0;
  if (!Number.isInteger(count) || count < 0) throw new RangeError(`gpuCount must be a non-negative integer, got ${count}`);
  return Math.max(1, count);
}

/** Credits per started minute of a unit: the cpu rate, or the gpu rate once per GPU it holds. */
export function creditsPerMinute(unit: PricedUnit, rates: WorkloadRates): number {
  return unit.kind === "gpu" ? rates.gpuCreditsPerMinute * billedGpus(unit) : rates.cpuCreditsPerMinute;
}

/**
 * What a completed unit debits: started minutes (at least one) times the
 * unit's rate per minute ({@link creditsPerMinute}: a gpu unit of N GPUs pays
 * N times the gpu rate), rounded up to whole credits once for the unit, so a
 * fractional rate is never rounded up once per GPU. The tiny epsilon keeps
 * float noise (10 × 0.7 = 7.000000000000001) from charging an extra credit.
 */
export function unitCost(unit: PricedUnit, runSeconds: number, rates: WorkloadRates): number {
  checkRates(rates);
  if (!Number.isFinite(runSeconds) || runSeconds < 0) {
    throw new RangeError(`runSeconds must be finite and non-negative, got ${runSeconds}`);
  }
  const minutes = Math.max(1, Math.ceil(runSeconds / 60));
  return Math.max(0, Math.ceil(minutes * creditsPerMinute(unit, rates) - 1e-9));
}

/**
 * The most a plan can cost: every unit running for the job's whole
 * `maxRuntimeSeconds` (a unit can run no longer), each billed as
 * {@link unitCost} would bill it, GPU units by their GPU count. Checked
 * against the balance at job creation.
 */
export function projectedCost(units: readonly PricedUnit[], rates: WorkloadRates, maxRuntimeSeconds: number): number {
  return units.reduce((sum, unit) => sum + unitCost(unit, maxRuntimeSeconds, rates), 0);
}
