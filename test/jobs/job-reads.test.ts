/**
 * What a customer reads of a job's units and artifacts (src/jobs/job-reads.ts), called directly, on
 * both backends: pages in order with the credits debited per unit; another customer's job is not
 * found, before any page request is looked at.
 */
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { jobArtifactsPage, jobUnitsPage } from "../../src/jobs/job-reads.ts";
import { insertDebitOnce } from "../../src/store/customers.ts";
import { insertArtifactOnce } from "../../src/store/jobs.ts";
import { describeOnEachBackend, insertCustomerWithInputs, insertJobWithUnits } from "../support/billing-rows.ts";
import { refusedWith } from "../support/refusals.ts";

const at = new Date(Date.UTC(2026, 0, 1));

describeOnEachBackend("a job's units and artifacts", (on) => {
  async function jobOfThreeUnits() {
    const inputs = await insertCustomerWithInputs(on.db, 100);
    const { job, units } = await insertJobWithUnits(on.db, inputs, ["cpu", "gpu", "cpu"]);
    return { customerId: inputs.customerId, job, units };
  }

  it("pages through the units in plan order, each with the credits debited for it", async () => {
    const { customerId, job, units } = await jobOfThreeUnits();
    await insertDebitOnce(on.db, { id: randomUUID(), customerId, amount: 7, jobId: job.id, computeUnitId: units[1]!.id, description: "gpu" }, at);
    const first = await jobUnitsPage(on.db, customerId, job.id.toUpperCase(), { limit: 2, cursor: "" });
    assert.deepEqual(
      first.rows.map((r) => [r.unit.name, r.creditsDebited]),
      [
        ["u0", 0],
        ["u1", 7],
      ],
    );
    assert.equal(first.page.hasMore, true);
    const rest = await jobUnitsPage(on.db, customerId, job.id, { limit: 2, cursor: first.page.nextCursor });
    assert.deepEqual(
      rest.rows.map((r) => r.unit.name),
      ["u2"],
    );
    assert.equal(rest.page.hasMore, false);
  });

  it("refuses a cursor of another job's units (PAGINATION_INVALID_CURSOR)", async () => {
    const a = await jobOfThreeUnits();
    const b = await jobOfThreeUnits();
    const other = await jobUnitsPage(on.db, b.customerId, b.job.id, { limit: 1, cursor: "" });
    await refusedWith(jobUnitsPage(on.db, a.customerId, a.job.id, { limit: 1, cursor: other.page.nextCursor }), "PAGINATION_INVALID_CURSOR");
  });

  it("pages through the artifacts oldest first, with when the job finished", async () => {
    const { customerId, job, units } = await jobOfThreeUnits();
    for (const [i, name] of ["model.pt", "metrics.json"].entries()) {
      await insertArtifactOnce(
        on.db,
        {
          id: randomUUID(),
          job_id: job.id,
          compute_unit_id: units[0]!.id,
          customer_id: customerId,
          attempt: 1,
          kind: "other",
          name,
          size_bytes: 1,
          sha256: "0".repeat(64),
          blob_key: `artifacts/${units[0]!.id}/1/${name}`,
        },
        new Date(at.getTime() + i * 1000),
      );
    }
    const first = await jobArtifactsPage(on.db, customerId, job.id, { limit: 1, cursor: "" });
    assert.deepEqual(
      first.rows.map((r) => r.name),
      ["model.pt"],
    );
    assert.equal(first.jobFinishedAt, null);
    const rest = await jobArtifactsPage(on.db, customerId, job.id, { limit: 1, cursor: first.page.nextCursor });
    assert.deepEqual(
      rest.rows.map((r) => r.name),
      ["metrics.json"],
    );
  });

  it("answers another customer's, an unknown and a malformed job alike (JOB_NOT_FOUND), whatever the page request", async () => {
    const { job } = await jobOfThreeUnits();
    const stranger = await insertCustomerWithInputs(on.db, 0);
    for (const [id, named] of [
      [job.id, job.id],
      [randomUUID(), undefined],
      ["job-1", '"job-1"'],
    ] as const) {
      const error = await refusedWith(jobUnitsPage(on.db, stranger.customerId, id, { limit: 1000, cursor: "bad" }), "JOB_NOT_FOUND");
      assert.equal(error.message, `training job ${named ?? id} not found`);
      await refusedWith(jobArtifactsPage(on.db, stranger.customerId, id, { limit: 1000, cursor: "bad" }), "JOB_NOT_FOUND");
    }
  });
});
