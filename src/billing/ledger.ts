/**
 * The credit ledger: grants in, debits out (src/billing/debit.ts), and the
 * balance is the ledger's sum, never a stored number. Here: what a job may
 * still spend before a new one starts, grants, and the reads of the ledger
 * and usage that the API shows.
 */
import { ApiError } from "../platform/errors.ts";
import { newId } from "../platform/ids.ts";
import type { LedgerRow } from "../store/customers.ts";
import { creditBalance, insertGrant, listLedger } from "../store/customers.ts";
import type { Database, Sql } from "../store/database.ts";
import { creditsAndReserved } from "../store/jobs.ts";
import { usageTotals } from "../store/usage.ts";

/**
 * Refuses a job whose projected cost does not fit in the balance left after
 * what the customer's active jobs may still spend (their projected costs less
 * their debits so far), or several jobs could together spend more than the
 * balance. Run under the customer's lock (job creation holds it), so the
 * answer stays true until the job is inserted.
 * @throws ApiError CREDIT_INSUFFICIENT with the figures in its details.
 */
export async function requireCreditsFor(tx: Sql, customerId: string, projectedCostCredits: number): Promise<void> {
  const cost = projectedCostCredits;
  const { balance, reserved } = await creditsAndReserved(tx, customerId);
  if (cost > balance - reserved) {
    throw new ApiError(
      "CREDIT_INSUFFICIENT",
      reserved > 0
        ? `the projected cost of ${cost} credits exceeds the ${balance - reserved} credits left after the ${reserved} your active jobs may still spend (balance ${balance})`
        : `the projected cost of ${cost} credits exceeds the balance of ${balance} credits`,
      { details: { projected_cost_credits: cost, credits_balance: balance, credits_reserved_by_active_jobs: reserved } },
    );
  }
}

/** Adds `amount` credits to the customer's ledger at `now`; returns the entry and the balance after it. */
export async function grantCredits(
  db: Database,
  customerId: string,
  amount: number,
  description: string,
  now: Date,
): Promise<{ entry: LedgerRow; balance: number }> {
  return db.transaction(async (tx) => {
    const entry = await insertGrant(tx, { id: newId(), customerId, amount, description }, now);
    return { entry, balance: await creditBalance(tx, customerId) };
  });
}

/** One page of the ledger, newest first, and the balance now. */
export async function ledgerPage(
  sql: Sql,
  customerId: string,
  limit: number,
  after: { at: Date; id: string } | undefined,
): Promise<{ entries: LedgerRow[]; balance: number }> {
  const entries = await listLedger(sql, customerId, limit, after);
  return { entries, balance: await creditBalance(sql, customerId) };
}

/** A customer's credits and usage since the account opened. */
export interface UsageSummary {
  creditsBalance: number;
  creditsDebited: number;
  creditsGranted: number;
  computeUnitsCompleted: number;
  gpuSeconds: number;
  cpuSeconds: number;
  jobsTotal: number;
  jobsActive: number;
}

/** The customer's totals; the balance is grants less debits, the ledger's sum. */
export async function usageSummary(sql: Sql, customerId: string): Promise<UsageSummary> {
  const totals = await usageTotals(sql, customerId);
  return {
    creditsBalance: totals.granted - totals.debited,
    creditsDebited: totals.debited,
    creditsGranted: totals.granted,
    computeUnitsCompleted: totals.units,
    gpuSeconds: totals.gpu_seconds,
    cpuSeconds: totals.cpu_seconds,
    jobsTotal: totals.jobs_total,
    jobsActive: totals.jobs_active,
  };
}
