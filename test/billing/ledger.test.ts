/**
 * The credit ledger (src/billing/ledger.ts) on both backends: what a new job
 * may spend given the balance and what active jobs may still spend, grants,
 * the ledger's page with its balance, and the usage summary's totals.
 */
import assert from "node:assert/strict";
import { debitCompletedUnit } from "../../src/billing/debit.ts";
import { grantCredits, ledgerPage, requireCreditsFor, usageSummary } from "../../src/billing/ledger.ts";
import { ApiError } from "../../src/platform/errors.ts";
import { describeOnEachBackend, insertCustomerWithInputs, insertJobWithUnits } from "../support/billing-rows.ts";

const rates = { cpuCreditsPerMinute: 1, gpuCreditsPerMinute: 10 };
const now = new Date(Date.UTC(2026, 0, 2));

describeOnEachBackend("the credit ledger", (on) => {

  const creditCases: {
    name: string;
    grant: number;
    /** An active job's projected cost and what it was debited so far (one gpu unit, run 60 s: 10). */
    active?: { projected: number; debitOneUnit: boolean; status?: "queued" | "running" | "completed" };
    cost: number;
    refused: boolean;
    details?: Record<string, number>;
  }[] = [
    { name: "a cost equal to the balance passes", grant: 100, cost: 100, refused: false },
    { name: "a cost one over the balance is refused", grant: 100, cost: 101, refused: true, details: { projected_cost_credits: 101, credits_balance: 100, credits_reserved_by_active_jobs: 0 } },
    { name: "an active job's projected cost is reserved", grant: 100, active: { projected: 50, debitOneUnit: false }, cost: 51, refused: true, details: { projected_cost_credits: 51, credits_balance: 100, credits_reserved_by_active_jobs: 50 } },
    { name: "what fits beside an active job passes", grant: 100, active: { projected: 50, debitOneUnit: false }, cost: 50, refused: false },
    // The debit of 10 lowers the balance and the reservation alike: 90 - 40 = 50 left.
    { name: "an active job's debits are not reserved twice", grant: 100, active: { projected: 50, debitOneUnit: true }, cost: 50, refused: false },
    { name: "a running job reserves too", grant: 100, active: { projected: 80, debitOneUnit: false, status: "running" }, cost: 21, refused: true, details: { projected_cost_credits: 21, credits_balance: 100, credits_reserved_by_active_jobs: 80 } },
    { name: "a job that ended reserves nothing", grant: 100, active: { projected: 80, debitOneUnit: false, status: "completed" }, cost: 100, refused: false },
  ];
  for (const tc of creditCases) {
    it(`requireCreditsFor: ${tc.name}`, async () => {
      const inputs = await insertCustomerWithInputs(on.db, tc.grant);
      if (tc.active !== undefined) {
        const { job, units } = await insertJobWithUnits(on.db, inputs, ["gpu"], tc.active.projected);
        if (tc.active.status !== undefined) await on.db.query(`UPDATE training_jobs SET status = $2 WHERE id = $1`, [job.id, tc.active.status]);
        if (tc.active.debitOneUnit) await on.db.transaction((tx) => debitCompletedUnit(tx, job, units[0]!, 60, rates, now));
      }
      const outcome = await on.db.transaction((tx) => requireCreditsFor(tx, inputs.customerId, tc.cost)).then(
        () => undefined,
        (e: unknown) => e,
      );
      if (!tc.refused) return assert.equal(outcome, undefined);
      assert.ok(outcome instanceof ApiError, String(outcome));
      assert.equal(outcome.code, "CREDIT_INSUFFICIENT");
      assert.deepEqual(outcome.details, tc.details);
    });
  }

  it("grantCredits adds an entry and answers the balance after it", async () => {
    const { customerId } = await insertCustomerWithInputs(on.db, 100);
    const { entry, balance } = await grantCredits(on.db, customerId, 25, "goodwill", now);
    assert.deepEqual([entry.kind, entry.amount, entry.description, balance], ["grant", 25, "goodwill", 125]);
  });

  it("ledgerPage lists entries newest first with the balance now", async () => {
    const inputs = await insertCustomerWithInputs(on.db, 100);
    const { job, units } = await insertJobWithUnits(on.db, inputs, ["gpu"]);
    await on.db.transaction((tx) => debitCompletedUnit(tx, job, units[0]!, 60, rates, now));
    await grantCredits(on.db, inputs.customerId, 5, "top-up", now);
    const page = await ledgerPage(on.db, inputs.customerId, 10, undefined);
    assert.equal(page.balance, 100 - 10 + 5);
    assert.deepEqual(page.entries.map((e) => `${e.kind} ${e.amount}`).sort(), ["debit -10", "grant 100", "grant 5"]);
    for (let i = 1; i < page.entries.length; i++) {
      const [newer, older] = [page.entries[i - 1]!, page.entries[i]!];
      assert.ok(newer.created_at.getTime() >= older.created_at.getTime(), "newest first");
    }
  });

  it("usageSummary totals credits, units, seconds (rounded up) and jobs", async () => {
    const inputs = await insertCustomerWithInputs(on.db, 1_000);
    const { job, units } = await insertJobWithUnits(on.db, inputs, ["gpu", "cpu", "cpu"]);
    await insertJobWithUnits(on.db, inputs, []);
    await on.db.query(`UPDATE training_jobs SET status = 'completed' WHERE id = $1`, [job.id]);
    const runs = [90.2, 10.5, 20.1];
    for (const [i, unit] of units.entries()) await on.db.transaction((tx) => debitCompletedUnit(tx, job, unit, runs[i]!, rates, now));
    await grantCredits(on.db, inputs.customerId, 50, "top-up", now);
    assert.deepEqual(await usageSummary(on.db, inputs.customerId), {
      creditsBalance: 1_050 - (20 + 1 + 1),
      creditsDebited: 20 + 1 + 1,
      creditsGranted: 1_050,
      computeUnitsCompleted: 3,
      gpuSeconds: 91,
      cpuSeconds: 31,
      jobsTotal: 2,
      jobsActive: 1,
    });
  });

  it("usageSummary of a customer with nothing yet is all zeros", async () => {
    const { customerId } = await insertCustomerWithInputs(on.db, 0);
    assert.deepEqual(Object.values(await usageSummary(on.db, customerId)), [0, 0, 0, 0, 0, 0, 0, 0]);
  });
});
