/**
 * The replica-side recorder of unit telemetry: the log lines and progress
 * reports agents stream (LogLines, Progress) are buffered in memory on the
 * replica that holds the node's stream and written in batches — every
 * `flushIntervalMs` (so at most that often per unit), and at once for an
 * attempt whose Finished arrives, before the Finished is applied.
 *
 * Delivery: agents resend every message not acknowledged, after a reconnect
 * (src/node-agent/session.ts). The stream handler hands each LogLines/Progress here
 * with its ack, and the ack is sent only once the flush that holds it has
 * committed, so a replica that dies with a full buffer loses nothing the agent
 * still holds. Resent messages are stored once: lines carry their index in the
 * attempt's stream (LogLines.first_line) and reports their number
 * (Progress.sample), and each attempt's row remembers the next ones expected
 * (older indices are duplicates; a jump is lines lost on the way, counted in
 * `dropped_lines`). Agents that do not number them are stored as they come.
 *
 * Bounds: a buffer holds at most one tail (`tailLines`, `tailBytes`) and
 * `historyPoints` reports per attempt — anything older could not be kept
 * anyway — and all buffers together at most `maxBufferedBytes`; past a bound
 * the oldest buffered lines go first and are counted as dropped, so a flood
 * of lines costs bounded memory and one write per interval.
 *
 * Tenancy: only the node that runs an attempt adds to it. An attempt's first
 * flush checks that it is the unit's current attempt on that node and records
 * the node; later flushes (late lines of an attempt the unit has moved past,
 * say) must come from that node. Anything else is dropped.
 */
import type { Logger } from "pino";
import type { Clock } from "../platform/clock.ts";
import type { Database } from "../store/database.ts";
import { stageJobEvent, transactionWithJobEvents } from "../store/job-events.ts";
import type { AttemptKey, LogChunk, MetricPointRow, StoredLine, TelemetryCounters, TelemetryRow } from "../store/telemetry.ts";
import {
  currentAttemptsOf,
  insertLogChunks,
  insertMetricPoints,
  insertTelemetryRows,
  lockTelemetryRows,
  thinMetricPoints,
  trimLogChunks,
  updateTelemetryCounters,
} from "../store/telemetry.ts";
import type { LogStream } from "./log-lines.ts";
import { lineBytes, normalizeLine, tailLength } from "./log-lines.ts";
import { addReports, isKept } from "./metric-thinning.ts";

/** Bounds and timing of the recorder. */
export interface TelemetryOptions {
  /** How often buffered telemetry is written; each attempt is written at most this often (and when it finishes). */
  readonly flushIntervalMs: number;
  /** Lines of an attempt's log tail kept. */
  readonly tailLines: number;
  /** UTF-8 bytes of an attempt's log tail kept. */
  readonly tailBytes: number;
  /** Points of an attempt's progress history kept (≥ 2). */
  readonly historyPoints: number;
  /** Bytes buffered on this replica for all attempts together (log text plus an estimate per report). */
  readonly maxBufferedBytes: number;
  /** Attempts written per transaction. */
  readonly attemptsPerTransaction: number;
  /** Metric names kept per report (the first ones, by name). */
  readonly maxMetrics: number;
}

/** Documented defaults. */
export const defaultTelemetryOptions: TelemetryOptions = {
  flushIntervalMs: 2000,
  tailLines: 500,
  tailBytes: 64 * 1024,
  historyPoints: 500,
  maxBufferedBytes: 64 * 1024 * 1024,
  attemptsPerTransaction: 200,
  maxMetrics: 32,
};

/** One LogLines message, as the stream handler passes it. */
export interface LogBatchInput {
  readonly stream: string;
  readonly lines: readonly string[];
  /** Index of lines[0] in the attempt's stream, when the agent numbers lines. */
  readonly firstLine?: number | undefined;
  /** When the agent read lines[0] (ms since the epoch). */
  readonly atMs?: number | undefined;
}

/** One Progress message. */
export interface ReportInput {
  readonly progress: number;
  readonly metrics: Readonly<Record<string, number>>;
  /** The report's number in the attempt, when the agent numbers reports. */
  readonly sample?: number | undefined;
  readonly atMs?: number | undefined;
}

/** Counters for tests and operators. */
export interface TelemetryStats {
  /** Attempts with something buffered. */
  readonly attempts: number;
  readonly bufferedBytes: number;
  readonly bufferedLines: number;
  /** Lines dropped from buffers since start (bounds reached). */
  readonly droppedLines: number;
  /** Flushes that failed (retried at the next interval). */
  readonly failedFlushes: number;
  /** Buffered attempts refused because another node (or none) runs them. */
  readonly refusedAttempts: number;
}

/** See the file header. */
export interface TelemetryRecorder {
  /** Buffers a LogLines message of an attempt run by `nodeId`; `ack` runs once it is written (or refused). */
  addLog(nodeId: string, ref: AttemptKey, batch: LogBatchInput, ack?: () => void): void;
  /** Buffers a Progress message; `ack` as for {@link addLog}. */
  addProgress(nodeId: string, ref: AttemptKey, report: ReportInput, ack?: () => void): void;
  /** Writes what is buffered for this attempt now (call before applying its Finished). */
  flushAttempt(ref: AttemptKey): Promise<void>;
  /** Writes everything buffered now. */
  flush(): Promise<void>;
  /** Writes every `flushIntervalMs` until `signal` aborts, then writes what is left. */
  run(signal: AbortSignal): Promise<void>;
  stats(): TelemetryStats;
  /** The bounds in force (readers cut tails with the same ones). */
  readonly options: TelemetryOptions;
}

/** Estimated memory of one buffered report beyond its metric names. */
const reportOverheadBytes = 96;

interface PendingBatch {
  readonly stream: LogStream;
  firstLine: number | undefined;
  readonly atMs: number;
  lines: string[];
  sizes: number[];
}

interface PendingReport {
  readonly sample: number | undefined;
  readonly atMs: number;
  readonly progress: number;
  readonly metrics: Record<string, number>;
  readonly bytes: number;
}

interface AttemptBuffer {
  readonly unitId: string;
  readonly attempt: number;
  readonly nodeId: string;
  batches: PendingBatch[];
  lines: number;
  lineBytes: number;
  /** Unnumbered lines dropped here (numbered ones are counted from their indices when written). */
  droppedUnnumbered: number;
  /** Per stream: the index after the last numbered line dropped here. */
  droppedUpTo: Record<LogStream, number>;
  reports: PendingReport[];
  reportBytes: number;
  acks: (() => void)[];
}

const streamCode: Record<LogStream, StoredLine[1]> = { stdout: "o", stderr: "e" };

const keyOf = (nodeId: string, ref: AttemptKey) => `${ref.unitId}/${ref.attempt}/${nodeId}`;
const attemptKeyOf = (ref: AttemptKey) => `${ref.unitId}/${ref.attempt}`;

/** Creates the recorder. `options` fills in {@link defaultTelemetryOptions}. */
export function createTelemetryRecorder(deps: { db: Database; clock: Clock; logger: Logger }, options: Partial<TelemetryOptions> = {}): TelemetryRecorder {
  const { db, clock, logger } = deps;
  const o: TelemetryOptions = { ...defaultTelemetryOptions, ...options };
  if (o.historyPoints < 2) throw new RangeError("historyPoints must be at least 2");
  const buffers = new Map<string, AttemptBuffer>();
  let bufferedBytes = 0;
  let bufferedLines = 0;
  let droppedLines = 0;
  let failedFlushes = 0;
  let refusedAttempts = 0;
  // One flush at a time, so an attempt's lines are written in the order they came.
  let flushing: Promise<void> = Promise.resolve();

  const bufferOf = (nodeId: string, ref: AttemptKey): AttemptBuffer => {
    const key = keyOf(nodeId, ref);
    let buf = buffers.get(key);
    if (buf === undefined) {
      buf = {
        unitId: ref.unitId,
        attempt: ref.attempt,
        nodeId,
        batches: [],
        lines: 0,
        lineBytes: 0,
        droppedUnnumbered: 0,
        droppedUpTo: { stdout: 0, stderr: 0 },
        reports: [],
        reportBytes: 0,
        acks: [],
      };
      buffers.set(key, buf);
    }
    return buf;
  };

  /** Drops the oldest `count` buffered lines of `buf` (fewer if it holds fewer). */
  const dropOldestLines = (buf: AttemptBuffer, count: number): void => {
    let left = count;
    while (left > 0) {
      const first = buf.batches[0];
      if (first === undefined) return;
      const n = Math.min(left, first.lines.length);
      let bytes = 0;
      for (let i = 0; i < n; i++) bytes += first.sizes[i] ?? 0;
      first.lines = first.lines.slice(n);
      first.sizes = first.sizes.slice(n);
      if (first.firstLine === undefined) buf.droppedUnnumbered += n;
      else {
        first.firstLine += n;
        buf.droppedUpTo[first.stream] = Math.max(buf.droppedUpTo[first.stream], first.firstLine);
      }
      if (first.lines.length === 0) buf.batches.shift();
      buf.lines -= n;
      buf.lineBytes -= bytes;
      bufferedLines -= n;
      bufferedBytes -= bytes;
      droppedLines += n;
      left -= n;
    }
  };

  /** How many oldest lines must go for `buf` to fit its tail bounds. */
  const excessLines = (buf: AttemptBuffer): number => {
    if (buf.lines <= o.tailLines && buf.lineBytes <= o.tailBytes) return 0;
    // A buffer holds at most one tail plus the batch just added (itself cut to a tail), so this stays small.
    const sizes = buf.batches.flatMap((b) => b.sizes);
    return sizes.length - tailLength(sizes, { lines: o.tailLines, bytes: o.tailBytes });
  };

  const shrinkToBounds = (buf: AttemptBuffer): void => {
    const excess = excessLines(buf);
    if (excess > 0) dropOldestLines(buf, excess);
    // All buffers together: this one gives up its oldest lines (it is the one growing now).
    while (bufferedBytes > o.maxBufferedBytes && buf.lines > 0) dropOldestLines(buf, Math.max(1, Math.ceil(buf.lines / 8)));
  };

  const addLog: TelemetryRecorder["addLog"] = (nodeId, ref, batch, ack) => {
    const stream = batch.stream === "stdout" || batch.stream === "stderr" ? batch.stream : undefined;
    const buf = bufferOf(nodeId, ref);
    if (ack !== undefined) buf.acks.push(ack);
    if (stream === undefined || batch.lines.length === 0) return;
    const receivedMs = clock.now();
    // More lines than a tail in one message: only the newest can be kept (the gap counts them as dropped).
    const cut = Math.max(0, batch.lines.length - o.tailLines);
    const firstLine = batch.firstLine === undefined ? undefined : batch.firstLine + cut;
    if (cut > 0) {
      droppedLines += cut;
      if (firstLine === undefined) buf.droppedUnnumbered += cut;
    }
    const lines = (cut > 0 ? batch.lines.slice(cut) : batch.lines).map(normalizeLine);
    const sizes = lines.map(lineBytes);
    const bytes = sizes.reduce((s, n) => s + n, 0);
    buf.batches.push({ stream, firstLine, atMs: plausibleTime(batch.atMs, receivedMs), lines, sizes });
    buf.lines += lines.length;
    buf.lineBytes += bytes;
    bufferedLines += lines.length;
    bufferedBytes += bytes;
    shrinkToBounds(buf);
  };

  const addProgress: TelemetryRecorder["addProgress"] = (nodeId, ref, report, ack) => {
    const buf = bufferOf(nodeId, ref);
    if (ack !== undefined) buf.acks.push(ack);
    const metrics: Record<string, number> = {};
    let bytes = reportOverheadBytes;
    for (const name of Object.keys(report.metrics).sort().slice(0, o.maxMetrics)) {
      const value = report.metrics[name];
      if (value === undefined || !Number.isFinite(value) || name.length > 64) continue;
      metrics[name] = value;
      bytes += name.length + 16;
    }
    const progress = Number.isFinite(report.progress) ? Math.min(1, Math.max(0, report.progress)) : 0;
    buf.reports.push({ sample: report.sample, atMs: plausibleTime(report.atMs, clock.now()), progress, metrics, bytes });
    buf.reportBytes += bytes;
    bufferedBytes += bytes;
    // Older reports than one history's worth would be thinned away anyway.
    while (buf.reports.length > o.historyPoints || (bufferedBytes > o.maxBufferedBytes && buf.reports.length > 1)) {
      const dropped = buf.reports.shift();
      if (dropped === undefined) break;
      buf.reportBytes -= dropped.bytes;
      bufferedBytes -= dropped.bytes;
    }
  };

  /** Takes buffers out of the map (new messages start new buffers meanwhile). */
  const take = (match: (buf: AttemptBuffer) => boolean): AttemptBuffer[] => {
    const taken: AttemptBuffer[] = [];
    for (const [key, buf] of buffers) {
      if (!match(buf)) continue;
      buffers.delete(key);
      bufferedBytes -= buf.lineBytes + buf.reportBytes;
      bufferedLines -= buf.lines;
      taken.push(buf);
    }
    return taken;
  };

  /** Puts a buffer whose write failed back in front of what arrived since. */
  const putBack = (buf: AttemptBuffer): void => {
    const key = keyOf(buf.nodeId, buf);
    const newer = buffers.get(key);
    buffers.set(key, buf);
    bufferedBytes += buf.lineBytes + buf.reportBytes;
    bufferedLines += buf.lines;
    if (newer !== undefined) {
      buf.batches.push(...newer.batches);
      buf.lines += newer.lines;
      buf.lineBytes += newer.lineBytes;
      buf.droppedUnnumbered += newer.droppedUnnumbered;
      for (const s of ["stdout", "stderr"] as const) buf.droppedUpTo[s] = Math.max(buf.droppedUpTo[s], newer.droppedUpTo[s]);
      buf.reports.push(...newer.reports);
      buf.reportBytes += newer.reportBytes;
      buf.acks.push(...newer.acks);
    }
    shrinkToBounds(buf);
  };

  /** Writes buffers in transactions of `attemptsPerTransaction`; acks what was written. */
  const write = async (taken: AttemptBuffer[]): Promise<void> => {
    for (let i = 0; i < taken.length; i += o.attemptsPerTransaction) {
      const batch = taken.slice(i, i + o.attemptsPerTransaction);
      try {
        await writeBatch(batch);
      } catch (error) {
        failedFlushes++;
        logger.warn({ err: error, attempts: batch.length }, "writing unit telemetry failed; retrying at the next interval");
        for (const buf of batch) putBack(buf);
        continue;
      }
      for (const buf of batch) for (const ack of buf.acks) ack();
    }
  };

  const writeBatch = async (batch: AttemptBuffer[]): Promise<void> => {
    const now = new Date(clock.now());
    const keys = uniqueKeys(batch);
    // Each chunk of lines is an event of its job (WatchTrainingJob), appended with this commit.
    await transactionWithJobEvents(db, async (tx) => {
      const rows = new Map<string, TelemetryRow>();
      for (const row of await lockTelemetryRows(tx, keys)) rows.set(attemptKeyOf({ unitId: row.unit_id, attempt: row.attempt }), row);
      // An attempt's first write: only while it is the unit's current attempt on the reporting node.
      const missing = batch.filter((b) => !rows.has(attemptKeyOf(b)));
      if (missing.length > 0) {
        const current = new Map((await currentAttemptsOf(tx, missing.map((b) => b.unitId))).map((u) => [u.id, u]));
        const creatable = missing.filter((b) => {
          const unit = current.get(b.unitId);
          return unit !== undefined && unit.attempt === b.attempt && unit.node_id === b.nodeId;
        });
        await insertTelemetryRows(tx, uniqueBy(creatable, attemptKeyOf), now);
        for (const row of await lockTelemetryRows(tx, uniqueKeys(creatable))) rows.set(attemptKeyOf({ unitId: row.unit_id, attempt: row.attempt }), row);
      }
      const chunks: LogChunk[] = [];
      const points: MetricPointRow[] = [];
      const thin: (AttemptKey & { stride: number; latest: number })[] = [];
      const counters = new Map<string, TelemetryCounters>();
      for (const buf of batch) {
        const key = attemptKeyOf(buf);
        const row = rows.get(key);
        if (row === undefined || row.node_id !== buf.nodeId) {
          refusedAttempts++;
          continue;
        }
        const plan = planWrite(buf, row, o);
        if (plan.chunk !== undefined) chunks.push(plan.chunk);
        points.push(...plan.points);
        if (plan.thin !== undefined) thin.push(plan.thin);
        counters.set(key, plan.counters);
        // Two buffers of one attempt in one batch cannot happen (one node per attempt), but stay exact if it does.
        applyCounters(row, plan.counters);
      }
      await insertLogChunks(tx, chunks);
      for (const c of chunks) await stageJobEvent(tx, { type: "log", unitId: c.unitId, attempt: c.attempt, firstSeq: c.firstSeq, lineCount: c.lines.length });
      await trimLogChunks(tx, chunks, o.tailLines, o.tailBytes);
      await insertMetricPoints(tx, points);
      await thinMetricPoints(tx, thin);
      await updateTelemetryCounters(tx, [...counters.values()], now);
    });
  };

  const serialized = (fn: () => Promise<void>): Promise<void> => {
    const next = flushing.then(fn, fn);
    flushing = next.catch(() => undefined);
    return next;
  };

  const flush = () => serialized(() => write(take(() => true)));

  return {
    addLog,
    addProgress,
    flush,
    flushAttempt: (ref) => serialized(() => write(take((b) => b.unitId === ref.unitId && b.attempt === ref.attempt))),
    async run(signal) {
      for (;;) {
        try {
          await clock.sleep(o.flushIntervalMs, signal);
        } catch {
          break;
        }
        await flush().catch((error: unknown) => logger.warn({ err: error }, "unit telemetry flush failed"));
      }
      await flush().catch((error: unknown) => logger.warn({ err: error }, "final unit telemetry flush failed"));
    },
    options: o,
    stats: () => ({ attempts: buffers.size, bufferedBytes, bufferedLines, droppedLines, failedFlushes, refusedAttempts }),
  };
}

/** The agent's clock is trusted only up to now: a time in the future (or none) is replaced by the time received. */
function plausibleTime(atMs: number | undefined, receivedMs: number): number {
  return atMs === undefined || !Number.isFinite(atMs) || atMs <= 0 || atMs > receivedMs ? receivedMs : atMs;
}

function uniqueBy<T>(items: readonly T[], key: (item: T) => string): T[] {
  const seen = new Map<string, T>();
  for (const item of items) if (!seen.has(key(item))) seen.set(key(item), item);
  return [...seen.values()];
}

function uniqueKeys(items: readonly AttemptKey[]): AttemptKey[] {
  return uniqueBy(items, attemptKeyOf).map((i) => ({ unitId: i.unitId, attempt: i.attempt }));
}

function applyCounters(row: TelemetryRow, c: TelemetryCounters): void {
  row.next_seq = c.nextSeq;
  row.stdout_next_line = c.stdoutNextLine;
  row.stderr_next_line = c.stderrNextLine;
  row.dropped_lines = c.droppedLines;
  row.reports = c.reports;
  row.next_sample = c.nextSample;
  row.point_stride = c.pointStride;
}

/** What one buffer adds to its attempt, given the attempt's stored counters. Pure. */
function planWrite(
  buf: Pick<AttemptBuffer, "unitId" | "attempt" | "batches" | "droppedUnnumbered" | "droppedUpTo" | "reports">,
  row: Pick<TelemetryRow, "next_seq" | "stdout_next_line" | "stderr_next_line" | "dropped_lines" | "reports" | "next_sample" | "point_stride">,
  o: Pick<TelemetryOptions, "historyPoints">,
): { chunk?: LogChunk; points: MetricPointRow[]; thin?: AttemptKey & { stride: number; latest: number }; counters: TelemetryCounters } {
  const key = { unitId: buf.unitId, attempt: buf.attempt };
  const next: Record<LogStream, number> = { stdout: row.stdout_next_line, stderr: row.stderr_next_line };
  let dropped = row.dropped_lines + buf.droppedUnnumbered;
  // Lines dropped from the buffer come before every line still in it, per stream.
  for (const s of ["stdout", "stderr"] as const) {
    if (buf.droppedUpTo[s] > next[s]) {
      dropped += buf.droppedUpTo[s] - next[s];
      next[s] = buf.droppedUpTo[s];
    }
  }
  const lines: StoredLine[] = [];
  let bytes = 0;
  for (const b of buf.batches) {
    let start = 0;
    if (b.firstLine !== undefined) {
      const expected = next[b.stream];
      if (b.firstLine < expected) start = Math.min(b.lines.length, expected - b.firstLine);
      else if (b.firstLine > expected) dropped += b.firstLine - expected;
      next[b.stream] = Math.max(expected, b.firstLine + b.lines.length);
    }
    for (let i = start; i < b.lines.length; i++) {
      lines.push([b.atMs, streamCode[b.stream], b.lines[i] ?? ""]);
      bytes += b.sizes[i] ?? 0;
    }
  }
  const chunk: LogChunk | undefined = lines.length === 0 ? undefined : { ...key, firstSeq: row.next_seq, lines, bytes };

  let nextSample = row.next_sample;
  const fresh: PendingReport[] = [];
  for (const r of buf.reports) {
    if (r.sample !== undefined) {
      if (r.sample < nextSample) continue;
      nextSample = r.sample + 1;
    }
    fresh.push(r);
  }
  const state = addReports({ reports: row.reports, stride: row.point_stride }, fresh.length, o.historyPoints);
  const points: MetricPointRow[] = [];
  fresh.forEach((r, i) => {
    const ordinal = row.reports + i;
    if (isKept(ordinal, state.reports, state.stride)) points.push({ ...key, ordinal, atMs: r.atMs, progress: r.progress, metrics: r.metrics });
  });
  return {
    ...(chunk === undefined ? {} : { chunk }),
    points,
    ...(fresh.length === 0 ? {} : { thin: { ...key, stride: state.stride, latest: state.reports - 1 } }),
    counters: {
      ...key,
      nextSeq: row.next_seq + lines.length,
      stdoutNextLine: next.stdout,
      stderrNextLine: next.stderr,
      droppedLines: dropped,
      reports: state.reports,
      nextSample,
      pointStride: state.stride,
    },
  };
}
