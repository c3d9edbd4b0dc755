/**
 * The Python environment's build time, reported by the agent in Finished apart from the run time, on
 * both backends: stored per attempt, shown on the customer's compute unit (its latest finished
 * attempt), bounded like the run time, and never billed: credits count the run only.
 */
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import type { WorkloadRates } from "../../src/billing/rates.ts";
import { jobUnitsPage } from "../../src/jobs/job-reads.ts";
import type { FinishedReport } from "../../src/jobs/lifecycle.ts";
import { applyAccepted, applyFinished } from "../../src/jobs/lifecycle.ts";
import type { Sql } from "../../src/store/database.ts";
import { describeOnEachBackend, insertCustomerWithInputs, insertJobWithUnits } from "../support/billing-rows.ts";
import { insertNodes } from "../support/rows.ts";

const rates: WorkloadRates = { cpuCreditsPerMinute: 1, gpuCreditsPerMinute: 10 };
const startedAt = new Date(Date.UTC(2026, 0, 2, 12));
/** When the Finished arrives: long enough after the start for a 40-minute build and a short run. */
const finishedAt = new Date(startedAt.getTime() + 45 * 60_000);

describeOnEachBackend("the environment's build time of a finished attempt", (on) => {
  async function gpuUnit() {
    const inputs = await insertCustomerWithInputs(on.db, 100_000);
    const { job, units } = await insertJobWithUnits(on.db, inputs, ["gpu"]);
    const [nodeId] = await insertNodes(on.db, 1, startedAt);
    return { customerId: inputs.customerId, jobId: job.id, unitId: units[0]!.id, nodeId: nodeId! };
  }
  type Unit = Awaited<ReturnType<typeof gpuUnit>>;

  /** What the placer commits and the agent accepts: the unit's current attempt runs on its node. */
  async function placeAndAccept(u: Unit): Promise<number> {
    const [row] = await on.db.query<{ attempt: number }>(
      `UPDATE compute_units SET status = 'assigned', node_id = $2, assignment_id = $3, assigned_at = $4 WHERE id = $1 AND status = 'ready' RETURNING attempt`,
      [u.unitId, u.nodeId, randomUUID(), startedAt],
    );
    assert.ok(row, "the unit was ready to place");
    await applyAccepted(on.db, u.nodeId, { unitId: u.unitId, attempt: row.attempt }, startedAt);
    return row.attempt;
  }

  const finish = (u: Unit, attempt: number, report: FinishedReport) => applyFinished(on.db, u.nodeId, { unitId: u.unitId, attempt }, report, rates, finishedAt);
  const succeeded = { outcome: "succeeded", exitCode: 0, error: "" } as const;

  /** The unit as the customer's compute-unit view has it. */
  async function shown(u: Unit) {
    const { rows } = await jobUnitsPage(on.db, u.customerId, u.jobId, { limit: 0, cursor: "" });
    return rows[0]!.envBuild;
  }
  const billed = async (sql: Sql, unitId: string) => ({
    ledger: (await sql.query<{ amount: number }>(`SELECT amount FROM ledger_entries WHERE compute_unit_id = $1`, [unitId])).map((r) => r.amount),
    usage: (await sql.query<{ run_seconds: number }>(`SELECT run_seconds FROM usage_records WHERE compute_unit_id = $1`, [unitId])).map((r) => r.run_seconds),
  });

  it("bills a unit whose environment took 40 minutes to build and whose run took 30 s for the run only", async () => {
    const u = await gpuUnit();
    const attempt = await placeAndAccept(u);
    await finish(u, attempt, { ...succeeded, runSeconds: 30, envBuildSeconds: 40 * 60, envBuilt: true });
    // One started minute of GPU time (10 credits), not the 41 the build and the run took together.
    assert.deepEqual(await billed(on.db, u.unitId), { ledger: [-10], usage: [30] });
    assert.deepEqual(await shown(u), { seconds: 2400, built: true });
  });

  it("shows no build for a unit none of whose attempts has finished", async () => {
    const u = await gpuUnit();
    await placeAndAccept(u);
    assert.deepEqual(await shown(u), { seconds: 0, built: false });
  });

  it("shows the latest finished attempt: a retry whose environment came from the node's cache built nothing", async () => {
    const u = await gpuUnit();
    const first = await placeAndAccept(u);
    await finish(u, first, { outcome: "failed", exitCode: 1, error: "exit code 1", runSeconds: 3, envBuildSeconds: 95.5, envBuilt: true });
    assert.deepEqual(await shown(u), { seconds: 95.5, built: true });
    const second = await placeAndAccept(u);
    assert.equal(second, first + 1);
    await finish(u, second, { ...succeeded, runSeconds: 20, envBuildSeconds: 0, envBuilt: false });
    assert.deepEqual(await shown(u), { seconds: 0, built: false });
    const attempts = await on.db.query(`SELECT attempt, env_build_seconds, env_built FROM unit_env_builds WHERE unit_id = $1 ORDER BY attempt`, [u.unitId]);
    assert.deepEqual(attempts, [
      { attempt: first, env_build_seconds: 95.5, env_built: true },
      { attempt: second, env_build_seconds: 0, env_built: false },
    ]);
  });

  it("keeps the first report of an attempt when its Finished is replayed with other figures", async () => {
    const u = await gpuUnit();
    const attempt = await placeAndAccept(u);
    await finish(u, attempt, { ...succeeded, runSeconds: 30, envBuildSeconds: 12, envBuilt: true });
    await finish(u, attempt, { ...succeeded, runSeconds: 30, envBuildSeconds: 600, envBuilt: false });
    assert.deepEqual(await shown(u), { seconds: 12, built: true });
  });

  const bounds: { name: string; envBuildSeconds: number; expected: number }[] = [
    { name: "longer than the attempt could have taken is cut to the time since it started", envBuildSeconds: 1e9, expected: 45 * 60 + 1 },
    { name: "below zero counts as none", envBuildSeconds: -5, expected: 0 },
    { name: "not a number counts as none", envBuildSeconds: Number.NaN, expected: 0 },
  ];
  for (const tc of bounds) {
    it(`a reported build time ${tc.name}`, async () => {
      const u = await gpuUnit();
      const attempt = await placeAndAccept(u);
      await finish(u, attempt, { ...succeeded, runSeconds: 30, envBuildSeconds: tc.envBuildSeconds, envBuilt: true });
      assert.deepEqual(await shown(u), { seconds: tc.expected, built: true });
    });
  }
});
