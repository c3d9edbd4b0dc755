/**
 * SQL for unit telemetry: log tails and progress histories per attempt (see
 * migrations/schema-0003.ts). Writes take many attempts at once (arrays and
 * `unnest`), so one flush is a handful of statements however many units it
 * covers.
 */
import type { Sql } from "./database.ts";

/** A unit attempt. */
export interface AttemptKey {
  readonly unitId: string;
  readonly attempt: number;
}

/** A unit_telemetry row. */
export interface TelemetryRow {
  unit_id: string;
  attempt: number;
  node_id: string;
  next_seq: number;
  stdout_next_line: number;
  stderr_next_line: number;
  dropped_lines: number;
  reports: number;
  next_sample: number;
  point_stride: number;
  updated_at: Date;
}

/** A stored line: [at (ms since the epoch), "o" (stdout) | "e" (stderr), text]. */
export type StoredLine = [number, "o" | "e", string];

/** The lines of one flush of one attempt. */
export interface LogChunk extends AttemptKey {
  readonly firstSeq: number;
  readonly lines: readonly StoredLine[];
  /** UTF-8 bytes of the lines' text. */
  readonly bytes: number;
}

/** One kept progress report. */
export interface MetricPointRow extends AttemptKey {
  readonly ordinal: number;
  readonly atMs: number;
  readonly progress: number;
  readonly metrics: Readonly<Record<string, number>>;
}

/** The counters a flush leaves in unit_telemetry. */
export interface TelemetryCounters extends AttemptKey {
  readonly nextSeq: number;
  readonly stdoutNextLine: number;
  readonly stderrNextLine: number;
  readonly droppedLines: number;
  readonly reports: number;
  readonly nextSample: number;
  readonly pointStride: number;
}

const units = (keys: readonly AttemptKey[]) => keys.map((k) => k.unitId);
const attempts = (keys: readonly AttemptKey[]) => keys.map((k) => k.attempt);

/** The current attempt and node of each unit named (for checking who may report about it). */
export async function currentAttemptsOf(sql: Sql, unitIds: readonly string[]): Promise<{ id: string; attempt: number; node_id: string | null }[]> {
  if (unitIds.length === 0) return [];
  return sql.query(`SELECT id, attempt, node_id FROM compute_units WHERE id = ANY($1::uuid[])`, [[...new Set(unitIds)]]);
}

/** Locks and returns the telemetry rows of these attempts that exist, in key order (the lock order of every writer). */
export async function lockTelemetryRows(sql: Sql, keys: readonly AttemptKey[]): Promise<TelemetryRow[]> {
  if (keys.length === 0) return [];
  return sql.query<TelemetryRow>(
    `SELECT t.* FROM unit_telemetry t
       JOIN unnest($1::uuid[], $2::int[]) AS k(unit_id, attempt) ON k.unit_id = t.unit_id AND k.attempt = t.attempt
      ORDER BY t.unit_id, t.attempt
        FOR UPDATE OF t`,
    [units(keys), attempts(keys)],
  );
}

/** Creates the telemetry rows of attempts run by these nodes (rows that exist meanwhile are left alone). */
export async function insertTelemetryRows(sql: Sql, rows: readonly (AttemptKey & { nodeId: string })[], now: Date): Promise<void> {
  if (rows.length === 0) return;
  await sql.query(
    `INSERT INTO unit_telemetry (unit_id, attempt, node_id, updated_at)
     SELECT k.unit_id, k.attempt, k.node_id, $4 FROM unnest($1::uuid[], $2::int[], $3::uuid[]) AS k(unit_id, attempt, node_id)
     ORDER BY k.unit_id, k.attempt
     ON CONFLICT (unit_id, attempt) DO NOTHING`,
    [units(rows), attempts(rows), rows.map((r) => r.nodeId), now],
  );
}

/** Stores chunks of lines. */
export async function insertLogChunks(sql: Sql, chunks: readonly LogChunk[]): Promise<void> {
  if (chunks.length === 0) return;
  await sql.query(
    `INSERT INTO unit_log_chunks (unit_id, attempt, first_seq, line_count, bytes, lines)
     SELECT c.unit_id, c.attempt, c.first_seq, c.line_count, c.bytes, c.lines::jsonb
       FROM unnest($1::uuid[], $2::int[], $3::bigint[], $4::int[], $5::int[], $6::text[]) AS c(unit_id, attempt, first_seq, line_count, bytes, lines)`,
    [
      units(chunks),
      attempts(chunks),
      chunks.map((c) => c.firstSeq),
      chunks.map((c) => c.lines.length),
      chunks.map((c) => c.bytes),
      chunks.map((c) => JSON.stringify(c.lines)),
    ],
  );
}

/**
 * Deletes the chunks of these attempts that newer chunks make useless: those
 * with at least `maxLines` lines or `maxBytes` bytes stored after them. What
 * remains holds the tail and at most one chunk more.
 */
export async function trimLogChunks(sql: Sql, keys: readonly AttemptKey[], maxLines: number, maxBytes: number): Promise<void> {
  if (keys.length === 0) return;
  await sql.query(
    `DELETE FROM unit_log_chunks c
      USING (SELECT unit_id, attempt, first_seq,
                    sum(line_count) OVER w - line_count AS newer_lines,
                    sum(bytes) OVER w - bytes AS newer_bytes
               FROM unit_log_chunks
              WHERE (unit_id, attempt) IN (SELECT * FROM unnest($1::uuid[], $2::int[]))
             WINDOW w AS (PARTITION BY unit_id, attempt ORDER BY first_seq DESC)) o
      WHERE c.unit_id = o.unit_id AND c.attempt = o.attempt AND c.first_seq = o.first_seq
        AND (o.newer_lines >= $3 OR o.newer_bytes >= $4)`,
    [units(keys), attempts(keys), maxLines, maxBytes],
  );
}

/** Stores progress reports. */
export async function insertMetricPoints(sql: Sql, points: readonly MetricPointRow[]): Promise<void> {
  if (points.length === 0) return;
  await sql.query(
    `INSERT INTO unit_metric_points (unit_id, attempt, ordinal, at, progress, metrics)
     SELECT p.unit_id, p.attempt, p.ordinal, to_timestamp(p.at_ms / 1000.0), p.progress, p.metrics::jsonb
       FROM unnest($1::uuid[], $2::int[], $3::bigint[], $4::float8[], $5::float8[], $6::text[]) AS p(unit_id, attempt, ordinal, at_ms, progress, metrics)
     ON CONFLICT (unit_id, attempt, ordinal) DO NOTHING`,
    [
      units(points),
      attempts(points),
      points.map((p) => p.ordinal),
      points.map((p) => p.atMs),
      points.map((p) => p.progress),
      points.map((p) => JSON.stringify(p.metrics)),
    ],
  );
}

/**
 * Thins histories to their stride: keeps each ordinal that is a multiple of
 * `stride`, and `latest` (src/telemetry/metric-thinning.ts).
 */
export async function thinMetricPoints(sql: Sql, rows: readonly (AttemptKey & { stride: number; latest: number })[]): Promise<void> {
  if (rows.length === 0) return;
  await sql.query(
    `DELETE FROM unit_metric_points p
      USING unnest($1::uuid[], $2::int[], $3::bigint[], $4::bigint[]) AS k(unit_id, attempt, stride, latest)
      WHERE p.unit_id = k.unit_id AND p.attempt = k.attempt AND p.ordinal % k.stride <> 0 AND p.ordinal <> k.latest`,
    [units(rows), attempts(rows), rows.map((r) => r.stride), rows.map((r) => r.latest)],
  );
}

/** Writes the counters a flush moved. */
export async function updateTelemetryCounters(sql: Sql, rows: readonly TelemetryCounters[], now: Date): Promise<void> {
  if (rows.length === 0) return;
  await sql.query(
    `UPDATE unit_telemetry t
        SET next_seq = k.next_seq, stdout_next_line = k.stdout_next_line, stderr_next_line = k.stderr_next_line,
            dropped_lines = k.dropped_lines, reports = k.reports, next_sample = k.next_sample, point_stride = k.point_stride,
            updated_at = $10
       FROM unnest($1::uuid[], $2::int[], $3::bigint[], $4::bigint[], $5::bigint[], $6::bigint[], $7::bigint[], $8::bigint[], $9::bigint[])
            AS k(unit_id, attempt, next_seq, stdout_next_line, stderr_next_line, dropped_lines, reports, next_sample, point_stride)
      WHERE t.unit_id = k.unit_id AND t.attempt = k.attempt`,
    [
      units(rows),
      attempts(rows),
      rows.map((r) => r.nextSeq),
      rows.map((r) => r.stdoutNextLine),
      rows.map((r) => r.stderrNextLine),
      rows.map((r) => r.droppedLines),
      rows.map((r) => r.reports),
      rows.map((r) => r.nextSample),
      rows.map((r) => r.pointStride),
      now,
    ],
  );
}

// ---- reads -------------------------------------------------------------------------------------

/** Every telemetry row of these units (all attempts), newest attempt first per unit. */
export async function readTelemetryOfUnits(sql: Sql, unitIds: readonly string[]): Promise<TelemetryRow[]> {
  if (unitIds.length === 0) return [];
  return sql.query<TelemetryRow>(`SELECT * FROM unit_telemetry WHERE unit_id = ANY($1::uuid[]) ORDER BY unit_id, attempt DESC`, [[...new Set(unitIds)]]);
}

/** The stored chunks of one attempt, oldest first. */
export async function readLogChunks(sql: Sql, key: AttemptKey): Promise<{ first_seq: number; lines: StoredLine[] }[]> {
  return sql.query(`SELECT first_seq, lines FROM unit_log_chunks WHERE unit_id = $1 AND attempt = $2 ORDER BY first_seq`, [key.unitId, key.attempt]);
}

/** The kept reports of these attempts, oldest first per attempt. */
export async function readMetricPoints(
  sql: Sql,
  keys: readonly AttemptKey[],
): Promise<{ unit_id: string; attempt: number; ordinal: number; at: Date; progress: number; metrics: Record<string, number> }[]> {
  if (keys.length === 0) return [];
  return sql.query(
    `SELECT p.unit_id, p.attempt, p.ordinal, p.at, p.progress, p.metrics FROM unit_metric_points p
       JOIN unnest($1::uuid[], $2::int[]) AS k(unit_id, attempt) ON k.unit_id = p.unit_id AND k.attempt = p.attempt
      ORDER BY p.unit_id, p.attempt, p.ordinal`,
    [units(keys), attempts(keys)],
  );
}
