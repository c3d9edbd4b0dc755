/** The placement commit's SQL (src/store/placement.ts): ready → assigned, fenced by the leader's term and re-checked against fresh rows. */
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import type { Database, Sql } from "../../src/store/database.ts";
import { openDatabase } from "../../src/store/database.ts";
import { openMigratedPGlite } from "../support/database-template.ts";
import { claimFencingTerm } from "../../src/store/leases.ts";
import type { PlannedAssignment } from "../../src/store/placement.ts";
import { setPendingReasons } from "../../src/store/jobs.ts";
import { assignReadyUnitsUnderTerm, listHeldResources, listReadyUnits, setUnschedulableReason } from "../../src/store/placement.ts";
import { createMigratedTestDatabaseUrl } from "../support/postgres.ts";
import { insertJob, insertNodes } from "../support/rows.ts";

const backends: readonly { name: string; open(): Promise<Database> }[] = [
  { name: "PGlite", open: () => openMigratedPGlite() },
  { name: "PostgreSQL", open: async () => openDatabase({ url: await createMigratedTestDatabaseUrl() }) },
];

const now = new Date("2030-01-01T00:00:00Z");
const silentBefore = new Date(now.getTime() - 30_000);

/** A queued job with one ready CPU unit that last waited for `unschedulableReason`. */
async function insertReadyCpuUnit(db: Database, unschedulableReason: string): Promise<{ unitId: string; jobId: string }> {
  const { customerId, jobId } = await insertJob(db);
  const unitId = randomUUID();
  await db.query(
    `INSERT INTO compute_units (id, job_id, customer_id, name, kind, status, entrypoint, attempt, max_attempts, ready_at, unschedulable_reason, required_gpu_count)
     VALUES ($1, $2, $3, 'train', 'cpu', 'ready', 'train.py', 1, 3, $4, $5, 0)`,
    [unitId, jobId, customerId, now, unschedulableReason],
  );
  return { unitId, jobId };
}

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
      const { unitId, jobId } = await insertReadyCpuUnit(db, "no node had room");
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

    describe("units on several GPUs and nodes with a unit limit", () => {
      /** A node with two 24 GB GPUs (and `maxUnits`), and a ready GPU unit asking `vramMb` on each of its GPUs. */
      async function gpuNodeAndUnit(vramMb: number, maxUnits = 0): Promise<{ unitId: string; nodeId: string }> {
        const { customerId, jobId } = await insertJob(db);
        const [nodeId] = (await insertNodes(db, 1, new Date(now.getTime() - 1000))) as [string];
        const gpus = [
          { index: 0, name: "RTX 4090", vramMb: 24000, uuid: "GPU-a" },
          { index: 1, name: "RTX 4090", vramMb: 24000, uuid: "GPU-b" },
        ];
        await db.query(`UPDATE nodes SET capabilities = $2::jsonb, max_units = $3 WHERE id = $1`, [nodeId, JSON.stringify({ cpuCores: 16, gpus }), maxUnits]);
        return { unitId: await readyGpuUnit(jobId, customerId, vramMb), nodeId };
      }
      async function readyGpuUnit(jobId: string, customerId: string, vramMb: number): Promise<string> {
        const unitId = randomUUID();
        await db.query(
          `INSERT INTO compute_units (id, job_id, customer_id, name, kind, status, entrypoint, attempt, max_attempts, ready_at, required_vram_mb, required_cpu_cores)
           VALUES ($1, $2, $3, $6, 'gpu', 'ready', 'train.py', 1, 3, $4, $5, 2)`,
          [unitId, jobId, customerId, now, vramMb, `train-${unitId}`],
        );
        return unitId;
      }
      const placedGpus = async (unitId: string) =>
        (await db.query<{ gpu_index: number; gpu_indexes: number[] }>(`SELECT gpu_index, gpu_indexes FROM compute_units WHERE id = $1`, [unitId]))[0];

      it("stores every GPU of a multi-GPU placement, the first also as gpu_index", async () => {
        const { unitId, nodeId } = await gpuNodeAndUnit(20000);
        await claimFencingTerm(db, 1, "leader");
        assert.equal((await commit(1, [planned(unitId, nodeId, { gpuIndex: 0, gpuIndexes: [0, 1] })]))?.length, 1);
        assert.deepEqual(await placedGpus(unitId), { gpu_index: 0, gpu_indexes: [0, 1] });
      });

      it("takes a placement that names gpuIndex only (a placer that fills no gpuIndexes) as that one GPU", async () => {
        const { unitId, nodeId } = await gpuNodeAndUnit(20000);
        await claimFencingTerm(db, 1, "leader");
        assert.equal((await commit(1, [planned(unitId, nodeId, { gpuIndex: 1 })]))?.length, 1);
        assert.deepEqual(await placedGpus(unitId), { gpu_index: 1, gpu_indexes: [1] });
      });

      it("counts a multi-GPU unit's VRAM on each of its GPUs and its cores, disk, memory and slot once", async () => {
        const { unitId, nodeId } = await gpuNodeAndUnit(20000);
        await claimFencingTerm(db, 1, "leader");
        await commit(1, [planned(unitId, nodeId, { gpuIndex: 0, gpuIndexes: [0, 1] })]);
        const held = (await listHeldResources(db)).filter((h) => h.node_id === nodeId).sort((a, b) => a.gpu_index - b.gpu_index);
        assert.deepEqual(held, [
          { node_id: nodeId, gpu_index: 0, vram: 20000, disk: 0, cpu: 2, memory: 256, units: 1 },
          { node_id: nodeId, gpu_index: 1, vram: 20000, disk: 0, cpu: 0, memory: 0, units: 0 },
        ]);
      });

      /** Another unit on the node's GPU 1, as placed before `gpu_indexes` existed (gpu_index only). */
      const assignAnotherUnitPlacedBeforeGpuIndexes = async (nodeId: string, { customerId, jobId }: { customerId: string; jobId: string }) => {
        const other = await readyGpuUnit(jobId, customerId, 1000);
        await db.query(`UPDATE compute_units SET status = 'assigned', node_id = $2, gpu_index = 1 WHERE id = $1`, [other, nodeId]);
      };
      const fits: { name: string; before?: (nodeId: string, jobId: { customerId: string; jobId: string }) => Promise<unknown>; gpuIndexes: number[]; maxUnits: number; takes: boolean }[] = [
        { name: "both GPUs have the VRAM", gpuIndexes: [0, 1], maxUnits: 0, takes: true },
        { name: "one of its GPUs is not on the node (any more)", gpuIndexes: [0, 2], maxUnits: 0, takes: false },
        {
          name: "another unit came to hold one of its GPUs' VRAM",
          before: async (nodeId, { customerId, jobId }) => {
            const other = await readyGpuUnit(jobId, customerId, 8000);
            await db.query(`UPDATE compute_units SET status = 'running', node_id = $2, gpu_index = 1, gpu_indexes = '{1}' WHERE id = $1`, [other, nodeId]);
          },
          gpuIndexes: [0, 1],
          maxUnits: 0,
          takes: false,
        },
        {
          name: "the owner's reserve leaves too little",
          before: (nodeId) => db.query(`UPDATE nodes SET reserved_vram_mb = 5000 WHERE id = $1`, [nodeId]),
          gpuIndexes: [0],
          maxUnits: 0,
          takes: false,
        },
        {
          name: "the node is at its max_units (a unit placed before this migration holds gpu_index only)",
          before: assignAnotherUnitPlacedBeforeGpuIndexes,
          gpuIndexes: [0],
          maxUnits: 1,
          takes: false,
        },
        {
          name: "the node has a slot left",
          before: assignAnotherUnitPlacedBeforeGpuIndexes,
          gpuIndexes: [0],
          maxUnits: 2,
          takes: true,
        },
      ];
      for (const f of fits) {
        it(`${f.takes ? "assigns" : "leaves ready"} a unit asking 20 GB on each GPU when ${f.name}`, async () => {
          const { unitId, nodeId } = await gpuNodeAndUnit(20000, f.maxUnits);
          const [{ job_id: jobId, customer_id: customerId }] = (await db.query<{ job_id: string; customer_id: string }>(`SELECT job_id, customer_id FROM compute_units WHERE id = $1`, [unitId])) as [
            { job_id: string; customer_id: string },
          ];
          await f.before?.(nodeId, { customerId, jobId });
          await claimFencingTerm(db, 1, "leader");
          const taken = await commit(1, [planned(unitId, nodeId, { gpuIndex: f.gpuIndexes[0] ?? -1, gpuIndexes: f.gpuIndexes })]);
          assert.equal(taken?.length, f.takes ? 1 : 0);
          assert.equal((await unitState(unitId)).status, f.takes ? "assigned" : "ready");
        });
      }

      it("counts the placements committed before it in the same commit against the node's slots", async () => {
        const { unitId, nodeId } = await gpuNodeAndUnit(1000, 1);
        const [{ job_id: jobId, customer_id: customerId }] = (await db.query<{ job_id: string; customer_id: string }>(`SELECT job_id, customer_id FROM compute_units WHERE id = $1`, [unitId])) as [
          { job_id: string; customer_id: string },
        ];
        const second = await readyGpuUnit(jobId, customerId, 1000);
        await claimFencingTerm(db, 1, "leader");
        const taken = await commit(1, [planned(unitId, nodeId, { gpuIndex: 0 }), planned(second, nodeId, { gpuIndex: 1 })]);
        assert.equal(taken?.length, 1);
      });
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

describe("store/placement: the cycle's advisory writes never wait on rows another transaction holds (PostgreSQL)", function () {
  this.timeout(60_000);
  let db: Database;

  before(async () => {
    db = await openDatabase({ url: await createMigratedTestDatabaseUrl() });
  });
  after(async () => {
    await db.close();
  });

  it("skips a queued job and its unit that a cancel holds (it would deadlock with it), and writes them once it let go", async () => {
    const { unitId, jobId } = await insertReadyCpuUnit(db, "");
    // A cancel's order: the job row, then its units; it holds both until it commits.
    let release!: () => void;
    const released = new Promise<void>((resolve) => (release = resolve));
    let holding!: () => void;
    const held = new Promise<void>((resolve) => (holding = resolve));
    const cancel = db.transaction(async (tx) => {
      await tx.query(`SELECT id FROM training_jobs WHERE id = $1 FOR UPDATE`, [jobId]);
      await tx.query(`SELECT id FROM compute_units WHERE id = $1 FOR UPDATE`, [unitId]);
      holding();
      await released;
    });
    await held;
    // The cycle's two advisory writes, in its order; they answer the jobs whose pending reason changed.
    const advisoryWrites = () =>
      db.transaction(async (tx) => {
        await setUnschedulableReason(tx, unitId, "no node had room");
        return setPendingReasons(tx, new Map([[jobId, "waiting for a node"]]));
      });
    const cycle = advisoryWrites();
    let timer: NodeJS.Timeout | undefined;
    const waited = new Promise<"waited">((resolve) => (timer = setTimeout(() => resolve("waited"), 10_000)));
    const outcome = await Promise.race([cycle, waited]);
    clearTimeout(timer);
    release();
    await cancel;
    assert.deepEqual(outcome, [], "the cycle changed no job while the cancel held it, and did not wait for it");
    const changed = await advisoryWrites();
    assert.deepEqual(changed, [jobId]);
    const [unit] = await db.query<{ unschedulable_reason: string }>(`SELECT unschedulable_reason FROM compute_units WHERE id = $1`, [unitId]);
    assert.equal(unit?.unschedulable_reason, "no node had room");
    const [job] = await db.query<{ pending_reason: string }>(`SELECT pending_reason FROM training_jobs WHERE id = $1`, [jobId]);
    assert.equal(job?.pending_reason, "waiting for a node");
  });
});
