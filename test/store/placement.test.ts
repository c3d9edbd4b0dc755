/** The placement commit's SQL (src/store/placement.ts): ready → assigned, fenced by the leader's term and re-checked against fresh rows. */
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import type { Database, Sql } from "../../src/store/database.ts";
import { openDatabase } from "../../src/store/database.ts";
import { claimFencingTerm } from "../../src/store/leases.ts";
import type { PlannedAssignment } from "../../src/store/placement.ts";
import { assignReadyUnitsUnderTerm, listReadyUnits, setUnschedulableReason } from "../../src/store/placement.ts";
import { createTestDatabaseUrl } from "../support/postgres.ts";
import { insertJob, insertNodes } from "../support/rows.ts";

const backends: readonly { name: string; open(): Promise<Database> }[] = [
  { name: "PGlite", open: () => openDatabase({}) },
  { name: "PostgreSQL", open: async () => openDatabase({ url: await createTestDatabaseUrl() }) },
];

const now = new Date("2030-01-01T00:00:00Z");
const silentBefore = new Date(now.getTime() - 30_000);

interface UnitState {
  status: string;
  node_id: string | null;
  assignment_id: string | null;
  assigned_at: Date | null;
  leader_term: number | null;
  unschedulable_reason: string;
}

for (const backend of backends) {
  describe(`store/placement on ${backend.name}`, function () {
    this.timeout(60_000);
    let db: Database;

    before(async () => {
      db = await backend.open();
    });
    after(async () => {
      await db.close();
    });
    beforeEach(async () => {
      await db.query(`DELETE FROM compute_units`);
      await db.query(`DELETE FROM scheduler_leases`);
    });

    /** A ready CPU unit of a queued job, and one online controlled node last heard a second ago. */
    async function readyUnitAndNode(): Promise<{ unitId: string; nodeId: string; jobId: string }> {
      const { customerId, jobId } = await insertJob(db);
      const unitId = randomUUID();
      await db.query(
        `INSERT INTO compute_units (id, job_id, customer_id, name, kind, status, entrypoint, attempt, max_attempts, ready_at, unschedulable_reason)
         VALUES ($1, $2, $3, 'train', 'cpu', 'ready', 'train.py', 1, 3, $4, 'no node had room')`,
        [unitId, jobId, customerId, now],
      );
      const [nodeId] = (await insertNodes(db, 1, new Date(now.getTime() - 1000))) as [string];
      return { unitId, nodeId, jobId };
    }

    const planned = (unitId: string, nodeId: string, change: Partial<PlannedAssignment> = {}): PlannedAssignment => ({
      unitId,
      nodeId,
      gpuIndex: -1,
      assignmentId: randomUUID(),
      trustLevels: ["community", "verified", "controlled"],
      sandboxRequired: false,
      nodeLocallyLive: false,
      ...change,
    });

    const unitState = async (unitId: string): Promise<UnitState> =>
      (await db.query<UnitState>(`SELECT status, node_id, assignment_id, assigned_at, leader_term, unschedulable_reason FROM compute_units WHERE id = $1`, [unitId]))[0]!;

    const commit = (term: number, placements: PlannedAssignment[]) => db.transaction((tx: Sql) => assignReadyUnitsUnderTerm(tx, term, placements, silentBefore, now));

    it("assigns a ready unit under the current term, stamped with the caller's time and the term", async () => {
      const { unitId, nodeId } = await readyUnitAndNode();
      assert.equal(await claimFencingTerm(db, 7, "leader"), true);
      const p = planned(unitId, nodeId);
      assert.deepEqual(await commit(7, [p]), [p]);
      assert.deepEqual(await unitState(unitId), {
        status: "assigned",
        node_id: nodeId,
        assignment_id: p.assignmentId,
        assigned_at: now,
        leader_term: 7,
        unschedulable_reason: "",
      });
    });

    const staleTerms: { name: string; recorded: number | undefined; ours: number }[] = [
      { name: "a newer term is recorded (this leader was deposed)", recorded: 8, ours: 7 },
      { name: "an older term is recorded", recorded: 6, ours: 7 },
      { name: "no term was ever recorded", recorded: undefined, ours: 1 },
    ];
    for (const t of staleTerms) {
      it(`assigns nothing and says so when ${t.name}`, async () => {
        const { unitId, nodeId } = await readyUnitAndNode();
        if (t.recorded !== undefined) assert.equal(await claimFencingTerm(db, t.recorded, "other"), true);
        assert.equal(await commit(t.ours, [planned(unitId, nodeId)]), undefined);
        const state = await unitState(unitId);
        assert.equal(state.status, "ready");
        assert.equal(state.node_id, null);
        assert.equal(state.unschedulable_reason, "no node had room");
      });
    }

    const refusals: { name: string; before(db: Sql, ids: { unitId: string; nodeId: string }): Promise<unknown>; change?: Partial<PlannedAssignment> }[] = [
      { name: "the unit is no longer ready (a cancel won)", before: (sql, { unitId }) => sql.query(`UPDATE compute_units SET status = 'cancelled' WHERE id = $1`, [unitId]) },
      { name: "the node was cordoned since the snapshot", before: (sql, { nodeId }) => sql.query(`UPDATE nodes SET state = 'cordoned' WHERE id = $1`, [nodeId]) },
      { name: "the node's trust is below what the job allows", before: async () => undefined, change: { trustLevels: ["verified"] } },
      { name: "the node's owner paused it since the snapshot", before: (sql, { nodeId }) => sql.query(`UPDATE nodes SET owner_paused = true WHERE id = $1`, [nodeId]) },
      {
        name: "the node left its owner's availability window since the snapshot",
        before: (sql, { nodeId }) => sql.query(`UPDATE nodes SET owner_within_window = false WHERE id = $1`, [nodeId]),
      },
      {
        name: "the node's sandbox became unavailable (its agent restarted without it)",
        before: (sql, { nodeId }) => sql.query(`UPDATE nodes SET isolation = 'unavailable' WHERE id = $1`, [nodeId]),
      },
      {
        name: "the unit is sensitive and the node runs units without a sandbox",
        before: (sql, { nodeId }) => sql.query(`UPDATE nodes SET isolation = 'none' WHERE id = $1`, [nodeId]),
        change: { sandboxRequired: true },
      },
      {
        name: "the node, held elsewhere, went silent since the liveness set was read",
        before: (sql, { nodeId }) => sql.query(`UPDATE nodes SET last_heartbeat_at = $2 WHERE id = $1`, [nodeId, new Date(silentBefore.getTime() - 1)]),
      },
    ];
    for (const r of refusals) {
      it(`leaves the unit ready when ${r.name}`, async () => {
        const ids = await readyUnitAndNode();
        await claimFencingTerm(db, 1, "leader");
        await r.before(db, ids);
        assert.deepEqual(await commit(1, [planned(ids.unitId, ids.nodeId, r.change)]), []);
        assert.equal((await unitState(ids.unitId)).node_id, null);
      });
    }

    it("assigns a public unit to a node that runs units without a sandbox", async () => {
      const { unitId, nodeId } = await readyUnitAndNode();
      await claimFencingTerm(db, 1, "leader");
      await db.query(`UPDATE nodes SET isolation = 'none' WHERE id = $1`, [nodeId]);
      assert.equal((await commit(1, [planned(unitId, nodeId, { sandboxRequired: false })]))?.length, 1);
      assert.equal((await unitState(unitId)).status, "assigned");
    });

    it("does not look at the persisted heartbeat of a node whose stream this replica holds", async () => {
      const { unitId, nodeId } = await readyUnitAndNode();
      await claimFencingTerm(db, 1, "leader");
      await db.query(`UPDATE nodes SET last_heartbeat_at = $2 WHERE id = $1`, [nodeId, new Date(silentBefore.getTime() - 1)]);
      assert.equal((await commit(1, [planned(unitId, nodeId, { nodeLocallyLive: true })]))?.length, 1);
      assert.equal((await unitState(unitId)).status, "assigned");
    });

    it("lists ready units of active jobs only, longest waiting first", async () => {
      const first = await readyUnitAndNode();
      const second = await readyUnitAndNode();
      await db.query(`UPDATE compute_units SET ready_at = $2 WHERE id = $1`, [second.unitId, new Date(now.getTime() - 1000)]);
      const ended = await readyUnitAndNode();
      await db.query(`UPDATE training_jobs SET status = 'cancelled' WHERE id = $1`, [ended.jobId]);
      assert.deepEqual((await listReadyUnits(db, 10)).map((u) => u.id), [second.unitId, first.unitId]);
      assert.deepEqual((await listReadyUnits(db, 1)).map((u) => u.id), [second.unitId]);
    });

    it("records why a unit could not be placed only while it is still ready", async () => {
      const ready = await readyUnitAndNode();
      const assigned = await readyUnitAndNode();
      await claimFencingTerm(db, 1, "leader");
      await commit(1, [planned(assigned.unitId, assigned.nodeId)]);
      await setUnschedulableReason(db, ready.unitId, "no GPU large enough");
      await setUnschedulableReason(db, assigned.unitId, "no GPU large enough");
      assert.equal((await unitState(ready.unitId)).unschedulable_reason, "no GPU large enough");
      assert.equal((await unitState(assigned.unitId)).unschedulable_reason, "");
    });
  });
}
