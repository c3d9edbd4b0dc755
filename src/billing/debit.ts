/**
 * The debit of a completed unit: one ledger entry (what the customer pays) and
 * one usage record (what ran), written in the caller's transaction, the one
 * that completes the unit. Agent events arrive at least once, so a Finished can
 * be applied twice: the database keeps each row unique per unit (the partial
 * unique index `ledger_entries_one_debit_per_unit`, `usage_records.compute_unit_id
 * UNIQUE`), and a replay inserts nothing.
 */
import { newId } from "../platform/ids.ts";
import { insertDebitOnce } from "../store/customers.ts";
import type { Sql } from "../store/database.ts";
import type { JobRow, UnitRow } from "../store/jobs.ts";
import { insertUsageOnce } from "../store/usage.ts";
import type { WorkloadRates } from "./rates.ts";
import { billedGpus, unitCost } from "./rates.ts";

/** What one completed unit was billed. */
export interface UnitDebit {
  credits: number;
  /** False when the unit had been debited already (a replayed completion): nothing was written. */
  debited: boolean;
}

/** The unit as the debit reads it: its GPU count (0 for a cpu unit) sets a gpu unit's rate. */
export type DebitedUnit = Pick<UnitRow, "id" | "customer_id" | "job_id" | "name" | "kind" | "required_gpu_count">;

/**
 * Debits a unit that completed after `runSeconds` (already bounded by the
 * caller to what the attempt could have run), exactly once. A gpu unit pays
 * the gpu rate once per GPU it held.
 */
export async function debitCompletedUnit(
  tx: Sql,
  job: Pick<JobRow, "name">,
  unit: DebitedUnit,
  runSeconds: number,
  rates: WorkloadRates,
  now: Date,
): Promise<UnitDebit> {
  const priced = { kind: unit.kind, gpuCount: unit.required_gpu_count };
  const credits = unitCost(priced, runSeconds, rates);
  const gpus = billedGpus(priced);
  const debited = await insertDebitOnce(
    tx,
    {
      id: newId(),
      customerId: unit.customer_id,
      amount: credits,
      jobId: unit.job_id,
      computeUnitId: unit.id,
      description: `${job.name}: ${unit.name} (${gpus > 1 ? `${gpus} × gpu` : unit.kind}, ${Math.ceil(runSeconds)} s)`,
    },
    now,
  );
  await insertUsageOnce(
    tx,
    { id: newId(), customerId: unit.customer_id, jobId: unit.job_id, unitId: unit.id, kind: unit.kind, gpuCount: gpus, runSeconds, credits },
    now,
  );
  return { credits, debited };
}
