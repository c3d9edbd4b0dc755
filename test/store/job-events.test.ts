/**
 * The per-job event log (src/store/job-events.ts): ids 1, 2, 3 … per job in commit order, also
 * when two transactions append to one job at once (PostgreSQL); one event per job and per unit a
 * transaction changed, with the state it left; log events with their chunk's lines, or the count
 * of those no longer kept; a bounded window; listeners told after the commit.
 */
import assert from "node:assert/strict";
import type { Database, Sql } from "../../src/store/database.ts";
import { openDatabase } from "../../src/store/database.ts";
import { openMigratedPGlite } from "../support/database-template.ts";
import { appendJobEvents, jobEventBounds, jobEventsKept, readJobEventsAfter, stageJobEvent, transactionWithJobEvents } from "../../src/store/job-events.ts";
import { insertLogChunks, insertTelemetryRows } from "../../src/store/telemetry.ts";
import { markUnitRunning, recordUnitProgress } from "../../src/store/transitions.ts";
import { assignUnit, seedJob } from "../support/job-events.ts";
import { createMigratedTestDatabaseUrl } from "../support/postgres.ts";
import { insertJob } from "../support/rows.ts";

const backends = [
  { name: "PGlite", open: () => openMigratedPGlite() },
  { name: "PostgreSQL", open: async () => openDatabase({ url: await createMigratedTestDatabaseUrl() }) },
];

const idsOf = async (sql: Sql, jobId: string) => (await readJobEventsAfter(sql, jobId, 0, 1000)).map((e) => e.id);

for (const backend of backends) {
  describe(`job event log (${backend.name})`, function () {
    this.timeout(60_000);
    let db: Database;
    before(async () => {
      db = await backend.open();
    });
    after(async () => {
      await db?.close();
    });

    it("numbers each job's events 1, 2, 3 … apart from other jobs'", async () => {
      const one = await insertJob(db);
      const two = await insertJob(db, { customerId: one.customerId });
      await appendJobEvents(db, [{ type: "job", jobId: one.jobId }]);
      await appendJobEvents(db, [{ type: "job", jobId: two.jobId }, { type: "job", jobId: one.jobId }]);
      await appendJobEvents(db, [{ type: "job", jobId: one.jobId }]);
      assert.deepEqual(await idsOf(db, one.jobId), [1, 2, 3]);
      assert.deepEqual(await idsOf(db, two.jobId), [1]);
      assert.deepEqual(await jobEventBounds(db, one.jobId), { lastId: 3, oldestKeptId: 1 });
    });

    it("writes one event per unit a transaction changed, with the state it left, and tells the listeners after the commit", async () => {
      const { jobId, units } = await seedJob(db, (await insertJob(db)).customerId, ["train"]);
      const unit = units[0]!;
      const node = await assignUnit(db, unit);
      const heard: (readonly string[])[] = [];
      const listener = (ids: readonly string[]) => void heard.push(ids);
      db.jobEventListeners.add(listener);
      try {
        await transactionWithJobEvents(db, async (tx) => {
          await markUnitRunning(tx, { id: unit, status: "assigned" }, new Date());
          await recordUnitProgress(tx, { id: unit, status: "running" }, 0.75, { loss: 0.1 });
          assert.deepEqual(heard, [], "nobody hears of events before the commit");
        });
      } finally {
        db.jobEventListeners.delete(listener);
      }
      assert.deepEqual(heard, [[jobId]]);
      const [event, ...more] = await readJobEventsAfter(db, jobId, 0, 10);
      assert.deepEqual(more, []);
      assert.equal(event?.type, "unit");
      assert.deepEqual(event?.type === "unit" ? [event.body.status, event.body.progress, event.body.metrics, event.body.node_id] : [], ["running", 0.75, { loss: 0.1 }, node]);
    });

    it("appends nothing, and tells nobody, for a transaction that rolled back", async () => {
      const { jobId } = await insertJob(db);
      const heard: (readonly string[])[] = [];
      const listener = (ids: readonly string[]) => void heard.push(ids);
      db.jobEventListeners.add(listener);
      try {
        await assert.rejects(
          transactionWithJobEvents(db, async (tx) => {
            await stageJobEvent(tx, { type: "job", jobId });
            throw new Error("changed its mind");
          }),
          /changed its mind/,
        );
      } finally {
        db.jobEventListeners.delete(listener);
      }
      assert.deepEqual(heard, []);
      assert.deepEqual(await jobEventBounds(db, jobId), { lastId: 0, oldestKeptId: undefined });
    });

    it("gives a log event its chunk's lines, and the count of them once the chunk was trimmed", async () => {
      const { units } = await seedJob(db, (await insertJob(db)).customerId, ["train"]);
      const unit = units[0]!;
      const node = await assignUnit(db, unit);
      await insertTelemetryRows(db, [{ unitId: unit, attempt: 1, nodeId: node }], new Date());
      await insertLogChunks(db, [{ unitId: unit, attempt: 1, firstSeq: 1, lines: [[1000, "o", "a"], [1001, "e", "b"]], bytes: 2 }]);
      const [{ job_id: jobId }] = (await db.query<{ job_id: string }>(`SELECT job_id FROM compute_units WHERE id = $1`, [unit])) as [{ job_id: string }];
      await appendJobEvents(db, [
        { type: "log", unitId: unit, attempt: 1, firstSeq: 1, lineCount: 2 },
        { type: "log", unitId: unit, attempt: 1, firstSeq: 3, lineCount: 4 },
      ]);
      const [kept, trimmed] = await readJobEventsAfter(db, jobId, 0, 10);
      assert.deepEqual(kept?.type === "log" ? [kept.lines, kept.body.line_count] : [], [[[1000, "o", "a"], [1001, "e", "b"]], 2]);
      assert.deepEqual(trimmed?.type === "log" ? [trimmed.lines, trimmed.body.line_count] : [], [null, 4]);
    });

    it(`keeps each job's latest ${jobEventsKept} events`, async () => {
      const { units } = await seedJob(db, (await insertJob(db)).customerId, ["train"]);
      const unitId = units[0]!;
      const [{ job_id: jobId }] = (await db.query<{ job_id: string }>(`SELECT job_id FROM compute_units WHERE id = $1`, [unitId])) as [{ job_id: string }];
      await appendJobEvents(db, Array.from({ length: jobEventsKept }, (_, i) => ({ type: "log" as const, unitId, attempt: 1, firstSeq: i + 1, lineCount: 1 })));
      await appendJobEvents(db, [{ type: "job", jobId }, { type: "unit", unitId }]);
      assert.deepEqual(await jobEventBounds(db, jobId), { lastId: jobEventsKept + 2, oldestKeptId: 3 });
    });
  });
}

describe("job event log under concurrent writers (PostgreSQL)", function () {
  this.timeout(60_000);
  let db: Database;
  before(async () => {
    db = await openDatabase({ url: await createMigratedTestDatabaseUrl() });
  });
  after(async () => {
    await db?.close();
  });

  it("gives a second writer of the same job its ids only after the first commits, so readers never see a later id before an earlier one", async () => {
    const { jobId } = await insertJob(db);
    let commitFirst: () => void = () => undefined;
    const firstHolds = new Promise<void>((resolve) => {
      commitFirst = resolve;
    });
    let firstAppended: () => void = () => undefined;
    const appended = new Promise<void>((resolve) => {
      firstAppended = resolve;
    });
    const first = transactionWithJobEvents(db, async (tx) => {
      await appendJobEvents(tx, [{ type: "job", jobId }]);
      firstAppended();
      await firstHolds;
    });
    await appended;
    const second = transactionWithJobEvents(db, async (tx) => stageJobEvent(tx, { type: "job", jobId }));
    // The second waits on the job's counter row, held by the first until it commits.
    for (;;) {
      const waiting = await db.query(`SELECT 1 FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'`);
      if (waiting.length > 0) break;
      await new Promise((r) => setImmediate(r));
    }
    assert.deepEqual(await idsOf(db, jobId), [], "nothing is visible before the first commits");
    commitFirst();
    await Promise.all([first, second]);
    assert.deepEqual(await idsOf(db, jobId), [1, 2]);
  });
});
