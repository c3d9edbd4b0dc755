/**
 * Retention of live job events, on a FakeClock and both backends: the storage sweep deletes every
 * event of a job once the artifact retention after its end has passed (its counter row too), never
 * more than 1,000 rows per transaction, leaves the events of later and running jobs alone, and a
 * watch of a swept job still gets the job's snapshot and ends.
 */
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pino } from "pino";
import type { StorageSweepDeps } from "../../src/blobs/storage-sweeper.ts";
import { createLocalBlobStore } from "../../src/blobs/blob-store.ts";
import { sweepStorage } from "../../src/blobs/storage-sweeper.ts";
import type { WatchItem } from "../../src/jobs/job-event-feed.ts";
import { createJobEventFeed } from "../../src/jobs/job-event-feed.ts";
import { FakeClock } from "../../src/platform/clock.ts";
import { defaultJobEvents, defaultLimits } from "../../src/platform/config.ts";
import type { Database, Sql } from "../../src/store/database.ts";
import { openDatabase } from "../../src/store/database.ts";
import { openMigratedPGlite } from "../support/database-template.ts";
import { appendJobEvents, deleteEventsOfEndedJobs, jobEventBounds } from "../../src/store/job-events.ts";
import { createMigratedTestDatabaseUrl } from "../support/postgres.ts";
import { seedJob } from "./support.ts";

const minute = 60_000;
const day = 86_400_000;

/** Each backend, and for PostgreSQL a second connection to the same database (another replica). */
const backends: { name: string; open: () => Promise<{ db: Database; openReplica?: () => Promise<Database> }> }[] = [
  { name: "PGlite", open: async () => ({ db: await openMigratedPGlite() }) },
  {
    name: "PostgreSQL",
    open: async () => {
      const url = await createMigratedTestDatabaseUrl();
      return { db: await openDatabase({ url }), openReplica: () => openDatabase({ url }) };
    },
  },
];

/** `count` log events of the job's unit, as that many flushes of one line would leave them. */
const appendLogEvents = (sql: Sql, unitId: string, count: number) =>
  appendJobEvents(sql, Array.from({ length: count }, (_, i) => ({ type: "log" as const, unitId, attempt: 1, firstSeq: i + 1, lineCount: 1 })));

const storedEvents = async (sql: Sql, jobId: string) =>
  (await sql.query<{ n: number }>(`SELECT count(*)::int AS n FROM job_events WHERE job_id = $1`, [jobId]))[0]?.n ?? 0;

for (const backend of backends) {
  describe(`job event retention (${backend.name})`, function () {
    this.timeout(60_000);
    const clock = new FakeClock(Date.now());
    let db: Database;
    let openReplica: (() => Promise<Database>) | undefined;
    let deps: StorageSweepDeps;
    let blobRoot: string;
    let customerId: string;

    before(async () => {
      ({ db, openReplica } = await backend.open());
      blobRoot = await mkdtemp(join(tmpdir(), "gpu-agent-event-retention-"));
      deps = {
        db,
        blobs: createLocalBlobStore(blobRoot),
        clock,
        logger: pino({ level: "silent" }),
        config: { limits: { storage: { ...defaultLimits.storage, artifactRetentionDays: 30 } } },
      };
      customerId = randomUUID();
      await db.query(`INSERT INTO customers (id, email, password_hash) VALUES ($1, $2, 'x')`, [customerId, `${customerId}@example.com`]);
    });
    after(async () => {
      await db?.close();
      await rm(blobRoot, { recursive: true, force: true });
    });

    it("deletes every event of a job, and its counter, once the artifact retention after its end has passed; later and running jobs keep theirs", async () => {
      const t0 = clock.now();
      const early = await seedJob(db, customerId, { finishedAt: new Date(t0 - day) });
      const late = await seedJob(db, customerId, { finishedAt: new Date(t0) });
      const running = await seedJob(db, customerId, {});
      // More than one transaction deletes (1,000 rows each).
      await appendLogEvents(db, early.unitId, 2_500);
      for (const job of [late, running]) await appendLogEvents(db, job.unitId, 3);

      clock.advance(29 * day - minute);
      const tooEarly = await sweepStorage(deps);
      assert.deepEqual([tooEarly.jobEventLogsDeleted, tooEarly.jobEventsDeleted], [0, 0], "a minute early: nothing is deleted");
      assert.equal(await storedEvents(db, early.jobId), 2_500);

      clock.advance(2 * minute);
      const swept = await sweepStorage(deps);
      assert.deepEqual([swept.jobEventLogsDeleted, swept.jobEventsDeleted], [1, 2_500]);
      assert.deepEqual(await jobEventBounds(db, early.jobId), { lastId: 0, oldestKeptId: undefined }, "no event and no counter left");
      assert.deepEqual(await jobEventBounds(db, late.jobId), { lastId: 3, oldestKeptId: 1 });
      assert.deepEqual(await jobEventBounds(db, running.jobId), { lastId: 3, oldestKeptId: 1 });

      const again = await sweepStorage(deps);
      assert.deepEqual([again.jobEventLogsDeleted, again.jobEventsDeleted], [0, 0], "a second sweep finds nothing");

      clock.advance(day);
      const later = await sweepStorage(deps);
      assert.deepEqual([later.jobEventLogsDeleted, later.jobEventsDeleted], [1, 3], "the later job a day later");
      assert.equal(await storedEvents(db, running.jobId), 3, "a running job keeps its events");
    });

    it("deletes at most the rows asked for in one call, oldest first, and the counter only with the last event", async () => {
      const { jobId, unitId } = await seedJob(db, customerId, { finishedAt: new Date(clock.now() - 31 * day) });
      await appendLogEvents(db, unitId, 5);
      const first = await db.transaction((tx) => deleteEventsOfEndedJobs(tx, [jobId], 3));
      assert.deepEqual(first, { locked: [jobId], events: 3, cleared: [] });
      assert.deepEqual(await jobEventBounds(db, jobId), { lastId: 5, oldestKeptId: 4 });
      const second = await db.transaction((tx) => deleteEventsOfEndedJobs(tx, [jobId], 3));
      assert.deepEqual(second, { locked: [jobId], events: 2, cleared: [jobId] });
      assert.deepEqual(await jobEventBounds(db, jobId), { lastId: 0, oldestKeptId: undefined });
    });

    it("answers a watch of a swept job with the job's snapshot and ends it; one resuming from an old id gets the snapshot marked gap", async () => {
      const { jobId, unitId } = await seedJob(db, customerId, { finishedAt: new Date(clock.now() - 31 * day) });
      await appendLogEvents(db, unitId, 4);
      await sweepStorage(deps);
      assert.equal(await storedEvents(db, jobId), 0);
      const feed = createJobEventFeed({ db, clock }, defaultJobEvents);
      const watchAll = async (afterId: number) => {
        const items: WatchItem[] = [];
        for await (const item of feed.watch(customerId, jobId, afterId, new AbortController().signal)) items.push(item);
        return items;
      };
      for (const [afterId, gap] of [
        [0, false],
        [4, true],
      ] as const) {
        const items = await watchAll(afterId);
        assert.deepEqual(
          items.map((i) => (i.kind === "snapshot" ? { kind: i.kind, lastId: i.lastId, gap: i.gap, status: i.job.status, units: i.units.length } : { kind: i.kind })),
          [{ kind: "snapshot", lastId: 0, gap, status: "completed", units: 1 }],
          `after event ${afterId}`,
        );
      }
      assert.equal(feed.openWatches(), 0);
    });

    // PGlite has one connection: no second replica can hold a lock meanwhile.
    if (backend.name === "PostgreSQL") {
      it("leaves a job another replica is deleting to it, without waiting for its lock", async () => {
        const { jobId, unitId } = await seedJob(db, customerId, { finishedAt: new Date(clock.now() - 31 * day) });
        await appendLogEvents(db, unitId, 2);
        const replica = await openReplica!();
        try {
          const swept = await replica.transaction(async (tx) => {
            await tx.query(`SELECT job_id FROM job_event_counters WHERE job_id = $1 FOR UPDATE`, [jobId]);
            return sweepStorage(deps);
          });
          assert.deepEqual([swept.jobEventLogsDeleted, swept.jobEventsDeleted], [0, 0]);
        } finally {
          await replica.close();
        }
        assert.equal(await storedEvents(db, jobId), 2);
        const next = await sweepStorage(deps);
        assert.deepEqual([next.jobEventLogsDeleted, next.jobEventsDeleted], [1, 2], "the next sweep takes it");
      });
    }
  });
}
