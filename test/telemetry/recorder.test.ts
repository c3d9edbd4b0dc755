/**
 * The telemetry recorder against a real database (in-memory PGlite, then a
 * throwaway PostgreSQL server) and a fake clock: nothing is written before the interval, a flood costs one
 * bounded buffer, resent messages are stored once, histories are thinned with
 * their first and last points, and only the node that runs an attempt writes.
 */
import assert from "node:assert/strict";
import { pino } from "pino";
import { FakeClock } from "../../src/platform/clock.ts";
import type { Database } from "../../src/store/database.ts";
import { openDatabase } from "../../src/store/database.ts";
import { openMigratedPGlite } from "../support/database-template.ts";
import type { TestPostgres } from "../support/postgres.ts";
import { startPostgres } from "../support/postgres.ts";
import { readTelemetryOfUnits } from "../../src/store/telemetry.ts";
import { readLogTail, readMetricHistories } from "../../src/telemetry/reads.ts";
import type { TelemetryOptions, TelemetryRecorder } from "../../src/telemetry/recorder.ts";
import { createTelemetryRecorder, defaultTelemetryOptions } from "../../src/telemetry/recorder.ts";
import { seedRunningUnit } from "./support.ts";

const lines = (from: number, n: number, prefix = "line") => Array.from({ length: n }, (_, i) => `${prefix} ${from + i}`);

/** Lets queued promise callbacks (and PGlite's work) run. */
const settle = () => new Promise((resolve) => setTimeout(resolve, 20));

for (const backend of ["pglite", "postgresql"] as const) describe(`unit telemetry recorder (${backend})`, () => {
  let db: Database;
  let server: TestPostgres | undefined;
  let clock: FakeClock;
  let unitId: string;
  let nodes: [string, string];
  const recorders: { stop: AbortController; done: Promise<void> }[] = [];

  before(async () => {
    if (backend === "postgresql") server = await startPostgres();
    db = server === undefined ? await openMigratedPGlite() : await openDatabase({ url: server.url });
  });
  after(async () => {
    await db?.close();
    await server?.stop();
  });
  beforeEach(async () => {
    clock = new FakeClock();
    ({ unitId, nodes } = await seedRunningUnit(db));
  });
  afterEach(async () => {
    for (const r of recorders.splice(0)) {
      r.stop.abort();
      await r.done;
    }
  });

  const recorder = (options: Partial<TelemetryOptions> = {}) => createTelemetryRecorder({ db, clock, logger: pino({ level: "silent" }) }, options);
  const ref = () => ({ unitId, attempt: 1 });
  const tail = (after = 0, attempt = 0) =>
    readLogTail(db, { id: unitId, attempt: 1 }, attempt, after, { lines: defaultTelemetryOptions.tailLines, bytes: defaultTelemetryOptions.tailBytes });
  const storedChunks = async () => (await db.query<{ n: number }>(`SELECT count(*)::int AS n FROM unit_log_chunks WHERE unit_id = $1`, [unitId]))[0]!.n;

  /** Runs the periodic flush on the fake clock. */
  function running(r: TelemetryRecorder): void {
    const stop = new AbortController();
    recorders.push({ stop, done: r.run(stop.signal) });
  }

  it("writes nothing before the interval, then everything buffered in one batch, and acks only after the write", async () => {
    const r = recorder();
    running(r);
    let acked = 0;
    for (let i = 0; i < 5; i++) r.addLog(nodes[0], ref(), { stream: "stdout", lines: lines(i * 10, 10), firstLine: i * 10 }, () => acked++);
    r.addProgress(nodes[0], ref(), { progress: 0.5, metrics: { loss: 1.5, epoch: 1 }, sample: 0 }, () => acked++);
    clock.advance(defaultTelemetryOptions.flushIntervalMs - 1);
    await settle();
    assert.equal(await storedChunks(), 0, "nothing written before the interval");
    assert.equal(acked, 0, "no ack before the write");
    clock.advance(1);
    for (let i = 0; i < 100 && acked < 6; i++) await settle();
    assert.equal(acked, 6, "every message acked once written");
    assert.equal(await storedChunks(), 1, "one chunk for the whole interval");
    const t = await tail();
    assert.deepEqual(
      t.lines.map((l) => l.seq),
      Array.from({ length: 50 }, (_, i) => i + 1),
    );
    assert.equal(t.lines[49]!.text, "line 49");
    assert.equal(t.droppedLines, 0);
    const [h] = await readMetricHistories(db, [{ id: unitId, attempt: 1 }]);
    assert.deepEqual(
      h!.points.map((p) => p.metrics),
      [{ epoch: 1, loss: 1.5 }],
    );
  });

  it("keeps about one tail stored however long the log, and reads exactly the tail", async () => {
    const r = recorder();
    for (let i = 0; i < 30; i++) {
      r.addLog(nodes[0], ref(), { stream: "stdout", lines: lines(i * 100, 100), firstLine: i * 100 });
      await r.flush();
    }
    const stored = (await db.query<{ n: number }>(`SELECT coalesce(sum(line_count), 0)::int AS n FROM unit_log_chunks WHERE unit_id = $1`, [unitId]))[0]!.n;
    assert.ok(stored <= defaultTelemetryOptions.tailLines + 100, `${stored} lines stored`);
    const t = await tail();
    assert.equal(t.lines.length, defaultTelemetryOptions.tailLines);
    assert.equal(t.lines[0]!.seq, 2501);
    assert.equal(t.trimmedLines, 2500);
    assert.equal(t.droppedLines, 0);
  });

  it("keeps at most one tail buffered under a flood, and counts the lines it had to drop", async () => {
    const r = recorder();
    for (let i = 0; i < 200; i++) r.addLog(nodes[0], ref(), { stream: "stdout", lines: lines(i * 100, 100, "x".repeat(60)), firstLine: i * 100 });
    const s = r.stats();
    assert.ok(s.bufferedLines <= defaultTelemetryOptions.tailLines, `${s.bufferedLines} lines buffered`);
    assert.ok(s.bufferedBytes <= defaultTelemetryOptions.tailBytes, `${s.bufferedBytes} bytes buffered`);
    assert.equal(s.droppedLines, 20_000 - s.bufferedLines);
    await r.flush();
    const t = await tail();
    assert.equal(t.lines.length, s.bufferedLines);
    assert.equal(t.lines.at(-1)!.text, `${"x".repeat(60)} 19999`, "the newest line is kept");
    assert.equal(t.droppedLines, 20_000 - t.lines.length, "the lines lost in the flood are counted");
    assert.equal(t.trimmedLines, 0);
    assert.equal(r.stats().bufferedLines, 0);
  });

  it("bounds all buffers together, dropping the oldest lines of the unit that grows", async () => {
    const r = recorder({ maxBufferedBytes: 4096 });
    for (let i = 0; i < 50; i++) r.addLog(nodes[0], ref(), { stream: "stderr", lines: lines(i * 10, 10, "y".repeat(100)), firstLine: i * 10 });
    assert.ok(r.stats().bufferedBytes <= 4096, `${r.stats().bufferedBytes} bytes buffered`);
    await r.flush();
    const t = await tail();
    assert.equal(t.lines.at(-1)!.text, `${"y".repeat(100)} 499`);
    assert.equal(t.lines.at(-1)!.stream, "stderr");
    assert.equal(t.droppedLines + t.lines.length, 500, "every line is either kept or counted as dropped");
  });

  it("stores a batch resent after a reconnect once, and counts a gap as dropped lines", async () => {
    const r = recorder();
    r.addLog(nodes[0], ref(), { stream: "stdout", lines: lines(0, 10), firstLine: 0 });
    await r.flush();
    // The acks were lost: the agent resends, in a new session, what it still holds, then goes on.
    r.addLog(nodes[0], ref(), { stream: "stdout", lines: lines(5, 5), firstLine: 5 });
    r.addLog(nodes[0], ref(), { stream: "stdout", lines: lines(0, 10), firstLine: 0 });
    r.addLog(nodes[0], ref(), { stream: "stdout", lines: lines(10, 5), firstLine: 10 });
    r.addLog(nodes[0], ref(), { stream: "stderr", lines: ["boom"], firstLine: 0 });
    await r.flush();
    r.addLog(nodes[0], ref(), { stream: "stdout", lines: lines(10, 5), firstLine: 10 });
    // Lines 15..19 never arrive (the agent's outbox dropped them).
    r.addLog(nodes[0], ref(), { stream: "stdout", lines: lines(20, 2), firstLine: 20 });
    await r.flush();
    const t = await tail();
    assert.deepEqual(
      t.lines.map((l) => l.text),
      [...lines(0, 15), "boom", ...lines(20, 2)],
    );
    assert.deepEqual(
      t.lines.map((l) => l.seq),
      Array.from({ length: 18 }, (_, i) => i + 1),
    );
    assert.equal(t.droppedLines, 5);
    // Incremental reads after a cursor.
    const later = await tail(15);
    assert.deepEqual(
      later.lines.map((l) => l.text),
      ["boom", "line 20", "line 21"],
    );
    assert.equal(later.nextAfter, 18);
    assert.deepEqual((await tail(18)).lines, []);
    assert.equal((await tail(18)).nextAfter, 18);
  });

  it("stores a progress report resent after a reconnect once", async () => {
    const r = recorder();
    for (let s = 0; s < 5; s++) r.addProgress(nodes[0], ref(), { progress: s / 10, metrics: { epoch: s }, sample: s });
    await r.flush();
    for (let s = 3; s < 8; s++) r.addProgress(nodes[0], ref(), { progress: s / 10, metrics: { epoch: s }, sample: s });
    await r.flush();
    const [h] = await readMetricHistories(db, [{ id: unitId, attempt: 1 }]);
    assert.equal(h!.reports, 8);
    assert.deepEqual(
      h!.points.map((p) => p.metrics["epoch"]),
      [0, 1, 2, 3, 4, 5, 6, 7],
    );
  });

  it("thins a long history evenly and keeps its first and last points", async () => {
    const r = recorder({ historyPoints: 50 });
    let sample = 0;
    for (let flush = 0; flush < 40; flush++) {
      for (let i = 0; i < 25; i++, sample++) {
        clock.advance(100);
        r.addProgress(nodes[0], ref(), { progress: sample / 1000, metrics: { step: sample, loss: 1 / (sample + 1) }, sample, atMs: clock.now() });
      }
      await r.flush();
    }
    const [h] = await readMetricHistories(db, [{ id: unitId, attempt: 1 }]);
    assert.equal(h!.reports, 1000);
    const steps = h!.points.map((p) => p.metrics["step"]!);
    assert.ok(steps.length <= 50 && steps.length >= 25, `${steps.length} points`);
    assert.equal(steps[0], 0, "the first report stays");
    assert.equal(steps.at(-1), 999, "the latest report stays");
    const gaps = new Set(steps.slice(1, -1).map((s, i) => s - steps[i]!));
    assert.equal(gaps.size, 1, `even spacing: ${[...gaps].join(",")}`);
    assert.equal(h!.points.at(-1)!.at.getTime(), clock.now(), "the agent's measurement time is kept");
  });

  it("stores nothing from a node that does not run the attempt", async () => {
    const r = recorder();
    let acked = 0;
    r.addLog(nodes[1], ref(), { stream: "stdout", lines: ["not mine"], firstLine: 0 }, () => acked++);
    r.addProgress(nodes[1], { unitId, attempt: 2 }, { progress: 1, metrics: {} }, () => acked++);
    await r.flush();
    assert.equal(acked, 2, "refused messages are acked (resending them would not help)");
    assert.equal(r.stats().refusedAttempts, 2);
    assert.deepEqual(await readTelemetryOfUnits(db, [unitId]), []);
    // The running node's lines are stored; the other node still cannot add to that attempt.
    r.addLog(nodes[0], ref(), { stream: "stdout", lines: ["mine"], firstLine: 0 });
    await r.flush();
    r.addLog(nodes[1], ref(), { stream: "stdout", lines: ["still not mine"], firstLine: 1 });
    await r.flush();
    assert.deepEqual(
      (await tail()).lines.map((l) => l.text),
      ["mine"],
    );
  });

  it("accepts late lines of an attempt the unit has moved past, from the node that ran it", async () => {
    const r = recorder();
    r.addLog(nodes[0], ref(), { stream: "stdout", lines: ["before"], firstLine: 0 });
    await r.flush();
    // The node went silent: the unit is re-queued as attempt 2.
    await db.query(`UPDATE compute_units SET status = 'ready', node_id = NULL, attempt = 2 WHERE id = $1`, [unitId]);
    r.addLog(nodes[0], ref(), { stream: "stdout", lines: ["late"], firstLine: 1 });
    await r.flush();
    const t = await readLogTail(db, { id: unitId, attempt: 2 }, 0, 0, { lines: 500, bytes: 65536 });
    assert.equal(t.attempt, 1, "the latest attempt that logged is shown");
    assert.deepEqual(
      t.lines.map((l) => l.text),
      ["before", "late"],
    );
  });

  it("keeps a failed write buffered, withholds its acks, and writes it at the next flush", async () => {
    let failNext = true;
    const flaky: Database = {
      ...db,
      query: (text, params) => db.query(text, params),
      transaction: (fn, options) => {
        if (failNext) {
          failNext = false;
          return Promise.reject(new Error("connection reset"));
        }
        return db.transaction(fn, options);
      },
    };
    const r = createTelemetryRecorder({ db: flaky, clock, logger: pino({ level: "silent" }) });
    let acked = 0;
    r.addLog(nodes[0], ref(), { stream: "stdout", lines: ["a"], firstLine: 0 }, () => acked++);
    await r.flush();
    assert.equal(acked, 0);
    assert.equal(r.stats().failedFlushes, 1);
    r.addLog(nodes[0], ref(), { stream: "stdout", lines: ["b"], firstLine: 1 }, () => acked++);
    await r.flush();
    assert.equal(acked, 2);
    assert.deepEqual(
      (await tail()).lines.map((l) => l.text),
      ["a", "b"],
    );
  });

  it("writes an attempt at once when it finishes, and stores unnumbered lines as they come", async () => {
    const r = recorder();
    running(r);
    r.addLog(nodes[0], ref(), { stream: "stdout", lines: ["old agent", "old agent"] });
    r.addLog(nodes[0], ref(), { stream: "stdout", lines: ["old agent"] });
    await r.flushAttempt(ref());
    assert.deepEqual(
      (await tail()).lines.map((l) => l.text),
      ["old agent", "old agent", "old agent"],
    );
  });
});
