/** The cluster-wide counts behind /metrics, the admin scheduler status and /readyz (src/store/fleet-metrics.ts). */
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import type { Database } from "../../src/store/database.ts";
import { openMigratedPGlite } from "../support/database-template.ts";
import { countNodesByStateAndTrust, countWaitingUnits, pingDatabase, queueDepths, totalCreditsDebited } from "../../src/store/fleet-metrics.ts";
import { insertJob, insertNodes } from "../support/rows.ts";

describe("store/fleet-metrics", function () {
  this.timeout(60_000);
  let db: Database;

  before(async () => {
    db = await openMigratedPGlite();
    const [node] = (await insertNodes(db, 2)) as [string, string];
    await db.query(`UPDATE nodes SET state = 'draining', trust_level = 'community' WHERE id = $1`, [node]);
    const { customerId, jobId } = await insertJob(db, { status: "running" });
    const units: { kind: "cpu" | "gpu"; status: string; debit?: number }[] = [
      { kind: "gpu", status: "pending" },
      { kind: "gpu", status: "ready" },
      { kind: "gpu", status: "ready" },
      { kind: "gpu", status: "assigned" },
      { kind: "gpu", status: "running" },
      { kind: "gpu", status: "completed", debit: 30 },
      { kind: "cpu", status: "ready" },
      { kind: "cpu", status: "completed", debit: 12 },
      { kind: "cpu", status: "failed" },
    ];
    for (const [i, u] of units.entries()) {
      const unitId = randomUUID();
      await db.query(
        `INSERT INTO compute_units (id, job_id, customer_id, name, kind, status, entrypoint, attempt, max_attempts, node_id)
         VALUES ($1, $2, $3, $4, $5, $6, 'train.py', 1, 3, $7)`,
        [unitId, jobId, customerId, `u${i}`, u.kind, u.status, u.status === "assigned" || u.status === "running" ? node : null],
      );
      if (u.debit !== undefined) {
        await db.query(`INSERT INTO ledger_entries (id, customer_id, amount, kind, job_id, compute_unit_id) VALUES ($1, $2, $3, 'debit', $4, $5)`, [
          randomUUID(),
          customerId,
          -u.debit,
          jobId,
          unitId,
        ]);
      }
    }
    await db.query(`INSERT INTO ledger_entries (id, customer_id, amount, kind) VALUES ($1, $2, 1000, 'grant')`, [randomUUID(), customerId]);
  });
  after(async () => {
    await db.close();
  });

  it("counts the units waiting for placement by kind and status, and only those", async () => {
    const rows = (await countWaitingUnits(db)).map((r) => `${r.kind}/${r.status}=${r.count}`).sort();
    assert.deepEqual(rows, ["cpu/ready=1", "gpu/pending=1", "gpu/ready=2"]);
  });

  it("counts the nodes by state and trust level", async () => {
    const rows = (await countNodesByStateAndTrust(db)).map((r) => `${r.state}/${r.trust}=${r.count}`).sort();
    assert.deepEqual(rows, ["draining/community=1", "online/controlled=1"]);
  });

  it("sums the credits debited, leaving grants out", async () => {
    assert.equal(await totalCreditsDebited(db), 42);
  });

  it("gives each kind's queue: pending, ready, and on a node (assigned or running), ordered by kind", async () => {
    assert.deepEqual(await queueDepths(db), [
      { kind: "cpu", pending: 0, ready: 1, running: 0 },
      { kind: "gpu", pending: 1, ready: 2, running: 2 },
    ]);
  });

  it("answers a ping while open, and rejects one once closed", async () => {
    await pingDatabase(db);
    const closed = await openMigratedPGlite();
    await closed.close();
    await assert.rejects(pingDatabase(closed));
  });
});
