/**
 * What customers read of unit telemetry: an attempt's log tail after a cursor,
 * and the progress histories of a job's units. Callers have checked tenancy
 * (the job is the customer's and the units are the job's).
 */
import type { Sql } from "../store/database.ts";
import type { TelemetryRow } from "../store/telemetry.ts";
import { readLogChunks, readMetricPoints, readTelemetryOfUnits } from "../store/telemetry.ts";
import type { TailBounds, TailLine } from "./log-lines.ts";
import { cutTail } from "./log-lines.ts";

/** A unit as the readers need it. */
export interface UnitRef {
  readonly id: string;
  /** The unit's current attempt (0: never placed). */
  readonly attempt: number;
}

/** An attempt's log after a cursor. */
export interface LogTailView {
  readonly attempt: number;
  /** Lines with seq > after, oldest first, within the tail. */
  readonly lines: TailLine[];
  /** The cursor for the next read. */
  readonly nextAfter: number;
  readonly droppedLines: number;
  /** Lines older than the tail's first line. */
  readonly trimmedLines: number;
}

/** One kept progress report. */
export interface MetricPointView {
  readonly at: Date;
  readonly progress: number;
  readonly metrics: Record<string, number>;
}

/** The history of one unit's attempt. */
export interface MetricHistoryView {
  readonly unitId: string;
  /** 0 when the unit never reported. */
  readonly attempt: number;
  readonly reports: number;
  readonly points: MetricPointView[];
}

const hasLog = (t: TelemetryRow) => t.next_seq > 1 || t.dropped_lines > 0;

/**
 * The attempt whose log to show: `requested` when given, else the latest
 * attempt that logged anything, else the current one.
 */
export function logAttemptOf(unit: UnitRef, rows: readonly TelemetryRow[], requested: number): number {
  if (requested > 0) return requested;
  const latest = rows.filter((r) => r.unit_id === unit.id && hasLog(r)).reduce((max, r) => Math.max(max, r.attempt), 0);
  return latest > 0 ? latest : unit.attempt;
}

/** The log tail of one unit after `after` (0: the whole tail). */
export async function readLogTail(sql: Sql, unit: UnitRef, requestedAttempt: number, after: number, bounds: TailBounds): Promise<LogTailView> {
  const rows = await readTelemetryOfUnits(sql, [unit.id]);
  const attempt = logAttemptOf(unit, rows, requestedAttempt);
  const row = rows.find((r) => r.attempt === attempt);
  if (row === undefined) return { attempt, lines: [], nextAfter: 0, droppedLines: 0, trimmedLines: 0 };
  // Stored chunks hold the tail and at most one chunk more (about two tails at most): cut the exact tail here.
  const stored: TailLine[] = [];
  for (const chunk of await readLogChunks(sql, { unitId: unit.id, attempt })) {
    chunk.lines.forEach(([atMs, stream, text], i) => stored.push({ seq: chunk.first_seq + i, atMs, stream: stream === "e" ? "stderr" : "stdout", text }));
  }
  const tail = cutTail(stored, bounds);
  const lines = tail.filter((l) => l.seq > after);
  const first = tail[0];
  return {
    attempt,
    lines,
    nextAfter: lines.at(-1)?.seq ?? Math.min(after, row.next_seq - 1),
    droppedLines: row.dropped_lines,
    trimmedLines: first === undefined ? row.next_seq - 1 : first.seq - 1,
  };
}

/** The progress history of each unit (its latest attempt that reported), in the order given. */
export async function readMetricHistories(sql: Sql, units: readonly UnitRef[]): Promise<MetricHistoryView[]> {
  const rows = await readTelemetryOfUnits(
    sql,
    units.map((u) => u.id),
  );
  // Rows come newest attempt first per unit: the first with reports is the one to show.
  const chosen = new Map<string, TelemetryRow>();
  for (const r of rows) if (r.reports > 0 && !chosen.has(r.unit_id)) chosen.set(r.unit_id, r);
  const points = await readMetricPoints(
    sql,
    [...chosen.values()].map((r) => ({ unitId: r.unit_id, attempt: r.attempt })),
  );
  const byUnit = new Map<string, MetricPointView[]>();
  for (const p of points) {
    let list = byUnit.get(p.unit_id);
    if (list === undefined) byUnit.set(p.unit_id, (list = []));
    list.push({ at: p.at, progress: p.progress, metrics: p.metrics });
  }
  return units.map((u) => {
    const row = chosen.get(u.id);
    return { unitId: u.id, attempt: row?.attempt ?? 0, reports: row?.reports ?? 0, points: byUnit.get(u.id) ?? [] };
  });
}
