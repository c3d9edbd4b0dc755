/**
 * The debit of a completed unit (src/billing/debit.ts) on both backends: one
 * ledger entry and one usage record with the unit's price, and never a second
 * one, whether the completion is replayed one after another or many times at
 * once (on PostgreSQL those transactions really race).
 */
import assert from "node:assert/strict";
import { debitCompletedUnit } from "../../src/billing/debit.ts";
import type { WorkloadRates } from "../../src/billing/rates.ts";
import type { Sql } from "../../src/store/database.ts";
import { findUnit } from "../../src/store/jobs.ts";
import { describeOnEachBackend, insertCustomerWithInputs, insertJobWithUnits } from "../support/billing-rows.ts";

const rates: WorkloadRates = { cpuCreditsPerMinute: 1, gpuCreditsPerMinute: 10 };
const now = new Date(Date.UTC(2026, 0, 2, 12));

interface Written {
  ledger: { amount: number; kind: string; description: string; job_id: string }[];
  usage: { kind: string; gpu_count: number; run_seconds: number; credits: number; job_id: string; created_at: Date }[];
}

/** The ledger entries and usage records of one unit. */
async function writtenFor(sql: Sql, unitId: string): Promise<Written> {
  return {
    ledger: await sql.query(`SELECT amount, kind, description, job_id FROM ledger_entries WHERE compute_unit_id = $1`, [unitId]),
    usage: await sql.query(`SELECT kind, gpu_count, run_seconds, credits, job_id, created_at FROM usage_records WHERE compute_unit_id = $1`, [unitId]),
  };
}

describeOnEachBackend("debitCompletedUnit", (on) => {

  async function oneUnit(kind: "cpu" | "gpu") {
    const inputs = await insertCustomerWithInputs(on.db, 1_000);
    const { job, units } = await insertJobWithUnits(on.db, inputs, [kind]);
    return { job, unit: units[0]! };
  }

  const cases: { kind: "cpu" | "gpu"; runSeconds: number; credits: number; shownSeconds: number }[] = [
    { kind: "cpu", runSeconds: 0, credits: 1, shownSeconds: 0 },
    { kind: "cpu", runSeconds: 61, credits: 2, shownSeconds: 61 },
    { kind: "gpu", runSeconds: 59.2, credits: 10, shownSeconds: 60 },
    { kind: "gpu", runSeconds: 3600, credits: 600, shownSeconds: 3600 },
  ];
  for (const tc of cases) {
    it(`debits a ${tc.kind} unit that ran ${tc.runSeconds} s ${tc.credits} credits, with its usage record`, async () => {
      const { job, unit } = await oneUnit(tc.kind);
      const result = await on.db.transaction((tx) => debitCompletedUnit(tx, job, unit, tc.runSeconds, rates, now));
      assert.deepEqual(result, { credits: tc.credits, debited: true });
      assert.deepEqual(await writtenFor(on.db, unit.id), {
        ledger: [{ amount: -tc.credits, kind: "debit", description: `billed job: u0 (${tc.kind}, ${tc.shownSeconds} s)`, job_id: job.id }],
        usage: [{ kind: tc.kind, gpu_count: tc.kind === "gpu" ? 1 : 0, run_seconds: tc.runSeconds, credits: tc.credits, job_id: job.id, created_at: now }],
      });
    });
  }

  const gpuCounts: { gpus: number; runSeconds: number; credits: number; shown: string }[] = [
    { gpus: 1, runSeconds: 61, credits: 2 * 10, shown: "gpu, 61 s" },
    { gpus: 2, runSeconds: 61, credits: 2 * 2 * 10, shown: "2 × gpu, 61 s" },
    { gpus: 8, runSeconds: 3600, credits: 60 * 8 * 10, shown: "8 × gpu, 3600 s" },
  ];
  for (const tc of gpuCounts) {
    it(`debits a unit of ${tc.gpus} GPUs ${tc.gpus} × the gpu rate per started minute (${tc.credits} credits for ${tc.runSeconds} s), its usage record holding the ${tc.gpus} GPUs`, async () => {
      const { job, unit } = await oneUnit("gpu");
      // The unit as the life cycle reads it: its row, with the GPU count the plan gave it.
      await on.db.query(`UPDATE compute_units SET required_gpu_count = $2 WHERE id = $1`, [unit.id, tc.gpus]);
      const row = await findUnit(on.db, unit.id);
      assert.ok(row !== undefined);
      const result = await on.db.transaction((tx) => debitCompletedUnit(tx, job, row, tc.runSeconds, rates, now));
      assert.deepEqual(result, { credits: tc.credits, debited: true });
      const written = await writtenFor(on.db, unit.id);
      assert.deepEqual(written.ledger.map((e) => [e.amount, e.description]), [[-tc.credits, `billed job: u0 (${tc.shown})`]]);
      assert.deepEqual(written.usage.map((u) => [u.credits, u.gpu_count]), [[tc.credits, tc.gpus]]);
    });
  }

  it("writes nothing for a replayed completion, even one reporting another run time", async () => {
    const { job, unit } = await oneUnit("gpu");
    await on.db.transaction((tx) => debitCompletedUnit(tx, job, unit, 30, rates, now));
    const first = await writtenFor(on.db, unit.id);
    const replay = await on.db.transaction((tx) => debitCompletedUnit(tx, job, unit, 600, rates, new Date(now.getTime() + 60_000)));
    assert.equal(replay.debited, false);
    assert.deepEqual(await writtenFor(on.db, unit.id), first);
  });

  it("debits once when 20 completions of one unit commit at the same time", async () => {
    const { job, unit } = await oneUnit("cpu");
    const results = await Promise.all(Array.from({ length: 20 }, () => on.db.transaction((tx) => debitCompletedUnit(tx, job, unit, 120, rates, now))));
    assert.equal(results.filter((r) => r.debited).length, 1);
    const written = await writtenFor(on.db, unit.id);
    assert.equal(written.ledger.length, 1);
    assert.equal(written.usage.length, 1);
  });

  it("debits each unit of a job on its own", async () => {
    const inputs = await insertCustomerWithInputs(on.db, 1_000);
    const { job, units } = await insertJobWithUnits(on.db, inputs, ["cpu", "gpu", "cpu"]);
    for (const unit of units) await on.db.transaction((tx) => debitCompletedUnit(tx, job, unit, 60, rates, now));
    const [row] = await on.db.query<{ debited: number; entries: number }>(
      `SELECT (-sum(amount))::bigint AS debited, count(*)::int AS entries FROM ledger_entries WHERE job_id = $1 AND kind = 'debit'`,
      [job.id],
    );
    assert.deepEqual(row, { debited: 1 + 10 + 1, entries: 3 });
  });
});
