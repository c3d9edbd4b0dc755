/**
 * The queue timeout (src/jobs/lifecycle.ts expireQueuedJobs, run by the leader's sweep): a job still
 * queued past created_at + queue_timeout_seconds ends `expired` with the reason it waited, frees its
 * active-job slot, debits nothing, cancels its units (an assigned one on its node too) and tells the
 * customer's webhooks. Time is a fake clock's.
 */
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import type { CreateJobDeps } from "../../src/jobs/create-job.ts";
import { createJob } from "../../src/jobs/create-job.ts";
import { expireQueuedJobs } from "../../src/jobs/lifecycle.ts";
import { FakeClock } from "../../src/platform/clock.ts";
import { defaultAgents, defaultLimits, defaultRates } from "../../src/platform/config.ts";
import type { Database } from "../../src/store/database.ts";
import { openMigratedPGlite } from "../support/database-template.ts";
import { customerJobCounts, findJob, listUnitsOfJob } from "../../src/store/jobs.ts";
import { insertWebhookEndpoint } from "../../src/store/webhooks.ts";
import { insertCustomerWithInputs } from "../support/billing-rows.ts";
import { enrollReferenceNode } from "../support/fleet.ts";
import { insertNodes } from "../support/rows.ts";

describe("queue timeout", function () {
  this.timeout(60_000);
  let db: Database;
  let clock: FakeClock;

  before(async () => {
    db = await openMigratedPGlite();
    // Capable but never online: every job here is admitted and then waits.
    await enrollReferenceNode(db);
  });
  after(async () => {
    await db.close();
  });
  beforeEach(() => {
    clock = new FakeClock();
  });

  const deps = (): CreateJobDeps => ({ db, clock, config: { limits: defaultLimits, rates: defaultRates, agents: defaultAgents }, wakePlacer: () => {} });
  const now = () => new Date(clock.now());

  /** A customer's new job that may wait `queueTimeoutSeconds`, with a webhook endpoint listening for its end. */
  async function waitingJob(queueTimeoutSeconds: number): Promise<{ customerId: string; jobId: string }> {
    const c = await insertCustomerWithInputs(db, 10_000);
    await insertWebhookEndpoint(db, { id: randomUUID(), customerId: c.customerId, url: "https://hooks.example.com/x", events: ["job.expired"], description: "", secret: "s".repeat(32), now: now() });
    const { job } = await createJob(deps(), c.customerId, {
      name: "waits",
      datasetId: c.datasetId,
      trainingPackageId: c.packageId,
      requiredVramMb: 80000,
      requiredDiskMb: 1024,
      maxRuntimeSeconds: 600,
      sensitivity: "public",
      idempotencyKey: null,
      queueTimeoutSeconds,
    });
    return { customerId: c.customerId, jobId: job.id };
  }

  const debitsOf = async (jobId: string) => (await db.query<{ n: number }>(`SELECT count(*)::int AS n FROM ledger_entries WHERE job_id = $1 AND kind = 'debit'`, [jobId]))[0]!.n;
  const expiredWebhooks = async (customerId: string) =>
    db.query<{ payload: { data: { job_id: string; status: string; error: string } } }>(`SELECT payload FROM webhook_deliveries WHERE customer_id = $1 AND event_type = 'job.expired'`, [customerId]);

  it("leaves a queued job alone until its queue timeout has passed", async () => {
    const { customerId, jobId } = await waitingJob(600);
    clock.advance(600_000);
    await expireQueuedJobs(db, now());
    assert.equal((await findJob(db, customerId, jobId))?.status, "queued");
  });

  it("expires a job still queued past its timeout with the reason it waited, freeing its slot and debiting nothing", async () => {
    const { customerId, jobId } = await waitingJob(600);
    const reason = 'stage "train" waits for a capable node to come online (no node is online)';
    await db.query(`UPDATE training_jobs SET pending_reason = $2 WHERE id = $1`, [jobId, reason]);
    assert.equal((await customerJobCounts(db, customerId, now())).active, 1);
    clock.advance(600_001);
    await expireQueuedJobs(db, now());
    const job = (await findJob(db, customerId, jobId))!;
    assert.equal(job.status, "expired");
    assert.equal(job.error, `waited 600 s (queue_timeout_seconds) for a capable node: ${reason}`);
    assert.deepEqual(job.finished_at, now());
    assert.deepEqual((await listUnitsOfJob(db, jobId)).map((u) => u.status), ["cancelled", "cancelled", "cancelled"]);
    assert.equal((await customerJobCounts(db, customerId, now())).active, 0, "the active-job slot is free");
    assert.equal(await debitsOf(jobId), 0);
    const hooks = await expiredWebhooks(customerId);
    assert.deepEqual(hooks.map((h) => [h.payload.data.job_id, h.payload.data.status, h.payload.data.error]), [[jobId, "expired", job.error]]);
  });

  it("cancels on its node a unit assigned but never accepted", async () => {
    const { customerId, jobId } = await waitingJob(60);
    const [nodeId] = (await insertNodes(db, 1)) as [string];
    const [prepare] = await listUnitsOfJob(db, jobId);
    await db.query(`UPDATE compute_units SET status = 'assigned', node_id = $2, assignment_id = $3, assigned_at = $4 WHERE id = $1`, [prepare!.id, nodeId, randomUUID(), now()]);
    clock.advance(61_000);
    const effects = await expireQueuedJobs(db, now());
    assert.deepEqual(effects.cancel, [{ nodeId, unitId: prepare!.id, attempt: 1 }]);
    assert.equal((await findJob(db, customerId, jobId))?.status, "expired");
    assert.equal(await debitsOf(jobId), 0);
  });

  it("never expires a job whose first unit started, however long ago it was created", async () => {
    const { customerId, jobId } = await waitingJob(60);
    await db.query(`UPDATE training_jobs SET status = 'running', started_at = $2 WHERE id = $1`, [jobId, now()]);
    clock.advance(3_600_000);
    await expireQueuedJobs(db, now());
    assert.equal((await findJob(db, customerId, jobId))?.status, "running");
  });

  it("says no unit could start when no placement cycle gave a reason", async () => {
    const { customerId, jobId } = await waitingJob(60);
    clock.advance(61_000);
    await expireQueuedJobs(db, now());
    assert.equal((await findJob(db, customerId, jobId))?.error, "waited 60 s (queue_timeout_seconds) for a capable node: no unit could start");
  });
});
