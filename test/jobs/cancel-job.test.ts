/**
 * A customer's cancellation as a domain service (src/jobs/cancel-job.ts),
 * called directly, on both backends: only the owner can cancel; units not yet
 * on a node are cancelled in place, those on a node are also told to stop
 * there; nothing is debited for them; a job that already ended answers as it
 * is and no node hears anything.
 */
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { cancelCustomerJob, cancelledByCustomer } from "../../src/jobs/cancel-job.ts";
import type { CancelJobDeps } from "../../src/jobs/cancel-job.ts";
import { createJob } from "../../src/jobs/create-job.ts";
import { FakeClock } from "../../src/platform/clock.ts";
import { defaultAgents, defaultLimits, defaultRates } from "../../src/platform/config.ts";
import { ApiError } from "../../src/platform/errors.ts";
import { findJob, listUnitsOfJob } from "../../src/store/jobs.ts";
import { describeOnEachBackend, insertCustomerWithInputs } from "../support/billing-rows.ts";
import { enrollReferenceNode } from "../support/fleet.ts";
import { insertNodes } from "../support/rows.ts";

/** One message a node was sent: (node, unit, attempt, reason). */
type Told = [string, string, number, string];

describeOnEachBackend("cancelCustomerJob", (on) => {
  let told: Told[];
  const clock = new FakeClock();
  // A node that could run every job here, so creation admits them.
  before(() => enrollReferenceNode(on.db));
  beforeEach(() => {
    told = [];
  });

  const deps = (): CancelJobDeps => ({ db: on.db, clock, cancelUnitOnNode: (...message) => void told.push(message) });

  /** A customer's new job (three units: prepare ready, train and evaluate pending). */
  async function newJob(): Promise<{ customerId: string; jobId: string }> {
    const c = await insertCustomerWithInputs(on.db, 10_000);
    const createDeps = { db: on.db, clock, config: { limits: defaultLimits, rates: defaultRates, agents: defaultAgents }, wakePlacer: () => {} };
    const { job } = await createJob(createDeps, c.customerId, {
      name: "to-cancel",
      datasetId: c.datasetId,
      trainingPackageId: c.packageId,
      requiredVramMb: 0,
      requiredDiskMb: 1024,
      maxRuntimeSeconds: 600,
      sensitivity: "public",
      idempotencyKey: null,
    });
    return { customerId: c.customerId, jobId: job.id };
  }

  /** Puts the job's first unit on a node, as placement and the agent's Accepted would. */
  async function runFirstUnit(jobId: string, status: "assigned" | "running"): Promise<{ nodeId: string; unitId: string; attempt: number }> {
    const [nodeId] = await insertNodes(on.db, 1);
    const [unit] = await listUnitsOfJob(on.db, jobId);
    await on.db.query(`UPDATE compute_units SET status = $2, node_id = $3, gpu_index = 0, assignment_id = $4, assigned_at = $5 WHERE id = $1`, [
      unit!.id,
      status,
      nodeId,
      randomUUID(),
      new Date(clock.now()),
    ]);
    if (status === "running") await on.db.query(`UPDATE training_jobs SET status = 'running', started_at = $2 WHERE id = $1`, [jobId, new Date(clock.now())]);
    return { nodeId: nodeId!, unitId: unit!.id, attempt: unit!.attempt };
  }

  async function debitCount(jobId: string): Promise<number> {
    const [row] = await on.db.query<{ n: number }>(`SELECT count(*)::int AS n FROM ledger_entries WHERE job_id = $1`, [jobId]);
    return row!.n;
  }

  it("cancels a queued job and its units, telling no node", async () => {
    const { customerId, jobId } = await newJob();
    const job = await cancelCustomerJob(deps(), customerId, jobId);
    assert.equal(job.status, "cancelled");
    assert.equal(job.error, cancelledByCustomer);
    assert.deepEqual(
      (await listUnitsOfJob(on.db, jobId)).map((u) => u.status),
      ["cancelled", "cancelled", "cancelled"],
    );
    assert.deepEqual(told, []);
  });

  for (const status of ["assigned", "running"] as const) {
    it(`tells the node holding a unit (${status}) to stop it, and debits nothing`, async () => {
      const { customerId, jobId } = await newJob();
      const onNode = await runFirstUnit(jobId, status);
      const job = await cancelCustomerJob(deps(), customerId, jobId);
      assert.equal(job.status, "cancelled");
      assert.deepEqual(told, [[onNode.nodeId, onNode.unitId, onNode.attempt, cancelledByCustomer]]);
      assert.equal(await debitCount(jobId), 0);
    });
  }

  it("answers a job that already ended as it is, telling no node", async () => {
    const { customerId, jobId } = await newJob();
    await runFirstUnit(jobId, "running");
    await cancelCustomerJob(deps(), customerId, jobId);
    told = [];
    const again = await cancelCustomerJob(deps(), customerId, jobId);
    assert.equal(again.status, "cancelled");
    assert.deepEqual(told, []);
  });

  const notFound: { name: string; customer: "other" | "owner"; job: "theirs" | "unknown" }[] = [
    { name: "another customer's job", customer: "other", job: "theirs" },
    { name: "a job that does not exist", customer: "owner", job: "unknown" },
  ];
  for (const tc of notFound) {
    it(`refuses ${tc.name} as JOB_NOT_FOUND and changes nothing`, async () => {
      const { customerId, jobId } = await newJob();
      const other = await insertCustomerWithInputs(on.db, 0);
      const target = tc.job === "theirs" ? jobId : randomUUID();
      const error = await cancelCustomerJob(deps(), tc.customer === "other" ? other.customerId : customerId, target).then(
        () => assert.fail("the job was cancelled"),
        (e: unknown) => e,
      );
      assert.ok(error instanceof ApiError);
      assert.equal(error.code, "JOB_NOT_FOUND");
      assert.equal(error.message, `training job ${target} not found`);
      assert.equal((await findJob(on.db, customerId, jobId))?.status, "queued");
      assert.deepEqual(told, []);
    });
  }
});
