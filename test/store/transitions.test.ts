/**
 * The store's transition functions (src/store/transitions.ts) against real
 * databases: each makes its move from exactly the statuses spelled out here,
 * and asked for any other move throws IllegalTransitionError and leaves the
 * row as it was; a caller's stale status cannot make a move either.
 */
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import type { Database, Sql } from "../../src/store/database.ts";
import { openDatabase } from "../../src/store/database.ts";
import { openMigratedPGlite } from "../support/database-template.ts";
import type { JobStatus, UnitStatus } from "../../src/store/state-machines.ts";
import { IllegalTransitionError } from "../../src/store/state-machines.ts";
import {
  cancelUnit,
  markJobCompleted,
  markJobEnded,
  markJobRunning,
  markUnitCompleted,
  markUnitFailed,
  markUnitRunning,
  readyPendingUnit,
  recordUnitCancelled,
  recordUnitProgress,
  requeueUnit,
} from "../../src/store/transitions.ts";
import { createMigratedTestDatabaseUrl } from "../support/postgres.ts";
import { insertJob, insertNodes } from "../support/rows.ts";

const now = new Date("2030-01-01T00:00:00Z");
const allUnitStatuses: UnitStatus[] = ["pending", "ready", "assigned", "running", "completed", "failed", "cancelled"];
const allJobStatuses: JobStatus[] = ["queued", "running", "completed", "failed", "cancelled", "expired"];

/** A store operation that moves a row of one machine into `to`. */
interface Operation<S extends string> {
  name: string;
  to: S;
  /** The statuses it moves from; every other one throws. */
  from: readonly S[];
  run: (sql: Sql, row: { id: string; status: S }) => Promise<boolean>;
}

const unitOperations: Operation<UnitStatus>[] = [
  { name: "markUnitRunning", to: "running", from: ["assigned"], run: (sql, u) => markUnitRunning(sql, u, now) },
  { name: "recordUnitProgress", to: "running", from: ["assigned", "running"], run: (sql, u) => recordUnitProgress(sql, u, 0.5, { loss: 1 }) },
  {
    name: "requeueUnit",
    to: "ready",
    from: ["assigned", "running"],
    run: (sql, u) => requeueUnit(sql, u, { excludeNode: undefined, reason: "lost", newAttempt: true, failure: "node", exitCode: undefined, now }),
  },
  { name: "markUnitCompleted", to: "completed", from: ["assigned", "running"], run: (sql, u) => markUnitCompleted(sql, u, now, 5) },
  {
    name: "markUnitFailed",
    to: "failed",
    from: ["assigned", "running"],
    run: (sql, u) => markUnitFailed(sql, u, { exitCode: 1, error: "boom", runSeconds: 5, counts: "code", now }),
  },
  { name: "recordUnitCancelled", to: "cancelled", from: ["assigned", "running"], run: (sql, u) => recordUnitCancelled(sql, u, now, 137, 5) },
  { name: "cancelUnit", to: "cancelled", from: ["pending", "ready", "assigned", "running"], run: (sql, u) => cancelUnit(sql, u, now, "job cancelled") },
  { name: "readyPendingUnit", to: "ready", from: ["pending"], run: (sql, u) => readyPendingUnit(sql, u, now) },
];

/** Where the jobs' ends may start from, spelled out. */
const jobEndsFrom: JobStatus[] = ["queued", "running"];

const jobEnds: Operation<JobStatus>[] = [
  { name: "markJobCompleted", to: "completed", from: jobEndsFrom, run: (sql, j) => markJobCompleted(sql, j, now) },
  { name: "markJobEnded(failed)", to: "failed", from: jobEndsFrom, run: (sql, j) => markJobEnded(sql, j, "failed", "a unit failed", now) },
  { name: "markJobEnded(cancelled)", to: "cancelled", from: jobEndsFrom, run: (sql, j) => markJobEnded(sql, j, "cancelled", "by the customer", now) },
  { name: "markJobEnded(expired)", to: "expired", from: jobEndsFrom, run: (sql, j) => markJobEnded(sql, j, "expired", "too long", now) },
];

const backends: { name: string; databaseUrl: () => Promise<string | undefined> }[] = [
  { name: "the embedded database (PGlite)", databaseUrl: async () => undefined },
  { name: "PostgreSQL", databaseUrl: () => createMigratedTestDatabaseUrl() },
];

for (const backend of backends) {
  describe(`store/transitions on ${backend.name}`, function () {
    this.timeout(60_000);
    let db: Database;
    let customerId: string;
    let jobId: string;
    let nodeId: string;

    before(async () => {
      const url = await backend.databaseUrl();
      db = url === undefined ? await openMigratedPGlite() : await openDatabase({ url });
      ({ customerId, jobId } = await insertJob(db, { status: "running" }));
      [nodeId] = (await insertNodes(db, 1, now)) as [string];
    });
    after(async () => {
      await db.close();
    });

    async function seedUnit(status: UnitStatus): Promise<string> {
      const id = randomUUID();
      const onNode = status !== "pending" && status !== "ready";
      await db.query(
        `INSERT INTO compute_units (id, job_id, customer_id, name, kind, status, entrypoint, attempt, max_attempts, node_id, assigned_at)
         VALUES ($1, $2, $3, $4, 'cpu', $5, 'train.py', 1, 3, $6, $7)`,
        [id, jobId, customerId, `u-${id}`, status, onNode ? nodeId : null, onNode ? now : null],
      );
      return id;
    }
    const readUnit = async (id: string) => (await db.query<Record<string, unknown>>(`SELECT * FROM compute_units WHERE id = $1`, [id]))[0]!;

    async function seedJob(status: JobStatus): Promise<string> {
      const { jobId: id } = await insertJob(db, { customerId });
      await db.query(`UPDATE training_jobs SET status = $2 WHERE id = $1`, [id, status]);
      return id;
    }
    const readJob = async (id: string) => (await db.query<Record<string, unknown>>(`SELECT * FROM training_jobs WHERE id = $1`, [id]))[0]!;

    /** One test per status: `op` moves a row seeded in it to `op.to`, or throws and leaves the row as it was. */
    function itMovesOnlyFrom<S extends string>(
      machine: "job" | "unit",
      op: Operation<S>,
      statuses: readonly S[],
      seed: (status: S) => Promise<string>,
      read: (id: string) => Promise<Record<string, unknown>>,
    ): void {
      for (const from of statuses) {
        const legal = op.from.includes(from);
        it(`${op.name} from ${from}: ${legal ? `moves the ${machine} to ${op.to}` : "throws IllegalTransitionError and leaves the row unchanged"}`, async () => {
          const id = await seed(from);
          const before = await read(id);
          if (legal) {
            assert.equal(await db.transaction((tx) => op.run(tx, { id, status: from })), true);
            assert.equal((await read(id)).status, op.to);
          } else {
            await assert.rejects(
              db.transaction((tx) => op.run(tx, { id, status: from })),
              (e: unknown) => e instanceof IllegalTransitionError && e.machine === machine && e.from === from && e.to === op.to,
            );
            assert.deepEqual(await read(id), before);
          }
        });
      }
    }

    for (const op of unitOperations) itMovesOnlyFrom("unit", op, allUnitStatuses, seedUnit, readUnit);
    for (const op of jobEnds) itMovesOnlyFrom("job", op, allJobStatuses, seedJob, readJob);

    it("a caller's stale status cannot make the move: told a completed unit is assigned, markUnitRunning changes nothing", async () => {
      const id = await seedUnit("completed");
      const before = await readUnit(id);
      assert.equal(await db.transaction((tx) => markUnitRunning(tx, { id, status: "assigned" }, now)), false);
      assert.deepEqual(await readUnit(id), before);
    });

    it("requeueUnit stamps ready_at with the caller's clock, keeps an exit code only when given one, and avoids the node once", async () => {
      const id = await seedUnit("running");
      const later = new Date(now.getTime() + 60_000);
      await db.transaction((tx) =>
        requeueUnit(tx, { id, status: "running" }, { excludeNode: nodeId, reason: "failed", newAttempt: true, failure: "code", exitCode: 3, now: later }),
      );
      const first = await readUnit(id);
      assert.deepEqual(
        { ready_at: first.ready_at, exit_code: first.exit_code, attempt: first.attempt, code_failures: first.code_failures, node_id: first.node_id },
        { ready_at: later, exit_code: 3, attempt: 2, code_failures: 1, node_id: null },
      );
      await db.query(`UPDATE compute_units SET status = 'assigned', node_id = $2 WHERE id = $1`, [id, nodeId]);
      await db.transaction((tx) =>
        requeueUnit(tx, { id, status: "assigned" }, { excludeNode: nodeId, reason: "rejected", newAttempt: false, failure: undefined, exitCode: undefined, now }),
      );
      const second = await readUnit(id);
      assert.deepEqual(
        { exit_code: second.exit_code, attempt: second.attempt, excluded_node_ids: second.excluded_node_ids },
        { exit_code: 3, attempt: 2, excluded_node_ids: [nodeId] },
      );
    });

    it("markJobRunning starts only a queued job, and leaves any other as it is without an error (every accepted unit asks)", async () => {
      for (const from of allJobStatuses) {
        const id = await seedJob(from);
        await db.transaction((tx) => markJobRunning(tx, id, now));
        const job = await readJob(id);
        assert.equal(job.status, from === "queued" ? "running" : from, `from ${from}`);
        assert.deepEqual(job.started_at, from === "queued" ? now : null, `from ${from}`);
      }
    });
  });
}
