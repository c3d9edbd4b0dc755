/**
 * What the customer sees of a running unit beyond its latest progress: the tail
 * of its log and the history of its progress reports, per attempt. Written by
 * the replica that holds the node's stream, in batches at most every couple of
 * seconds per unit (src/telemetry/recorder.ts), never per agent message.
 *
 * - `unit_telemetry`: one row per attempt that reported anything, with the node
 *   that ran it (only that node may add to it) and the counters that make
 *   resent messages harmless: the next line index expected per stream
 *   (`stdout_next_line`, `stderr_next_line`, from the agent's LogLines.first_line)
 *   and the next report number (`next_sample`, from Progress.sample). `next_seq`
 *   numbers stored lines over both streams (the customer's `after` cursor);
 *   `dropped_lines` counts lines lost before they were stored; `reports` counts
 *   progress reports stored (each one's `ordinal`), `point_stride` is the
 *   thinning of the history (see src/telemetry/metric-thinning.ts).
 * - `unit_log_chunks`: the lines of one flush, `[at_ms, stream, text]` each, in
 *   seq order. Older chunks are deleted once newer ones hold the tail (500
 *   lines, 64 KiB), so an attempt keeps about one tail's worth.
 * - `unit_metric_points`: the progress reports kept: every ordinal that is a
 *   multiple of `point_stride`, plus the latest one.
 */
export const schema0003 = [
  `CREATE TABLE unit_telemetry (
     unit_id uuid NOT NULL REFERENCES compute_units(id),
     attempt integer NOT NULL,
     node_id uuid NOT NULL REFERENCES nodes(id),
     next_seq bigint NOT NULL DEFAULT 1,
     stdout_next_line bigint NOT NULL DEFAULT 0,
     stderr_next_line bigint NOT NULL DEFAULT 0,
     dropped_lines bigint NOT NULL DEFAULT 0,
     reports bigint NOT NULL DEFAULT 0,
     next_sample bigint NOT NULL DEFAULT 0,
     point_stride bigint NOT NULL DEFAULT 1 CHECK (point_stride >= 1),
     updated_at timestamptz NOT NULL,
     PRIMARY KEY (unit_id, attempt)
   )`,
  `CREATE TABLE unit_log_chunks (
     unit_id uuid NOT NULL,
     attempt integer NOT NULL,
     first_seq bigint NOT NULL,
     line_count integer NOT NULL CHECK (line_count > 0),
     bytes integer NOT NULL,
     lines jsonb NOT NULL,
     PRIMARY KEY (unit_id, attempt, first_seq),
     FOREIGN KEY (unit_id, attempt) REFERENCES unit_telemetry (unit_id, attempt)
   )`,
  `CREATE TABLE unit_metric_points (
     unit_id uuid NOT NULL,
     attempt integer NOT NULL,
     ordinal bigint NOT NULL,
     at timestamptz NOT NULL,
     progress double precision NOT NULL,
     metrics jsonb NOT NULL,
     PRIMARY KEY (unit_id, attempt, ordinal),
     FOREIGN KEY (unit_id, attempt) REFERENCES unit_telemetry (unit_id, attempt)
   )`,
];
