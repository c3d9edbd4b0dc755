/**
 * The line protocol between a training script and the agent (see README.md in
 * this folder). A stdout line that starts with `@@gpu-agent ` followed by a
 * JSON object is a progress report; every other line is a log line. Parsing
 * is pure so it can be tested table-driven; splitting bounds memory so a
 * script that prints gigabytes without a newline cannot exhaust the agent.
 */

/** The prefix that marks a progress line on the child's stdout. */
export const PROGRESS_PREFIX = "@@gpu-agent ";

/** Longest log line kept, in bytes (UTF-16 units, close enough); longer lines are cut. */
export const MAX_LINE_BYTES = 4096;

/** A parsed stdout/stderr line. */
export type ParsedLine =
  | { kind: "progress"; progress?: number; metrics: Record<string, number>; checkpoint?: string }
  | { kind: "log"; line: string };

/**
 * Classifies one stdout line. A progress line must hold a JSON object with a
 * finite numeric `progress` (clamped to 0..1) and/or a `metrics` object;
 * non-numeric metric values are dropped. Anything malformed stays a log line,
 * so a script's own output that happens to start with the prefix is never lost.
 */
export function parseStdoutLine(line: string): ParsedLine {
  if (!line.startsWith(PROGRESS_PREFIX)) return { kind: "log", line };
  let value: unknown;
  try {
    value = JSON.parse(line.slice(PROGRESS_PREFIX.length));
  } catch {
    return { kind: "log", line };
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) return { kind: "log", line };
  const record = value as Record<string, unknown>;
  const rawProgress = record["progress"];
  const rawMetrics = record["metrics"];
  // A checkpoint the unit just wrote into $GPU_AGENT_CHECKPOINT_DIR, by file name (checkpoints.ts uploads it).
  const rawCheckpoint = record["checkpoint"];
  if (rawCheckpoint !== undefined && (typeof rawCheckpoint !== "string" || rawCheckpoint === "")) return { kind: "log", line };
  if (rawProgress === undefined && rawMetrics === undefined && rawCheckpoint === undefined) return { kind: "log", line };
  if (rawProgress !== undefined && (typeof rawProgress !== "number" || !Number.isFinite(rawProgress))) {
    return { kind: "log", line };
  }
  if (
    rawMetrics !== undefined &&
    (typeof rawMetrics !== "object" || rawMetrics === null || Array.isArray(rawMetrics))
  ) {
    return { kind: "log", line };
  }
  const metrics: Record<string, number> = {};
  for (const [key, metric] of Object.entries((rawMetrics ?? {}) as Record<string, unknown>)) {
    // Booleans are not numbers here: a metric is something you can plot.
    if (typeof metric === "number" && Number.isFinite(metric)) metrics[key] = metric;
  }
  const checkpoint = rawCheckpoint === undefined ? {} : { checkpoint: rawCheckpoint };
  if (rawProgress === undefined) return { kind: "progress", metrics, ...checkpoint };
  return { kind: "progress", progress: Math.min(1, Math.max(0, rawProgress)), metrics, ...checkpoint };
}

/**
 * Splits a byte stream into lines, cutting each at `maxBytes` and discarding
 * the rest of an over-long line until its newline. A trailing `\r` is dropped
 * so Windows-style output reads cleanly. Call `end()` once the stream closes
 * to emit a final unterminated line.
 */
export function createLineSplitter(
  onLine: (line: string) => void,
  maxBytes: number = MAX_LINE_BYTES,
): { write(chunk: Buffer): void; end(): void } {
  let parts: Buffer[] = [];
  let length = 0;
  let overflowed = false;

  const emit = () => {
    let buf = Buffer.concat(parts, length);
    if (buf.length > 0 && buf[buf.length - 1] === 0x0d) buf = buf.subarray(0, buf.length - 1);
    // A cut may land inside a multi-byte character; the decoder replaces it.
    onLine(buf.toString("utf8") + (overflowed ? " …[truncated]" : ""));
    parts = [];
    length = 0;
    overflowed = false;
  };

  const append = (piece: Buffer) => {
    if (overflowed) return;
    const room = maxBytes - length;
    if (piece.length > room) {
      parts.push(piece.subarray(0, room));
      length += room;
      overflowed = true;
    } else {
      parts.push(piece);
      length += piece.length;
    }
  };

  return {
    write(chunk) {
      let start = 0;
      for (;;) {
        const nl = chunk.indexOf(0x0a, start);
        if (nl === -1) {
          if (start < chunk.length) append(chunk.subarray(start));
          return;
        }
        append(chunk.subarray(start, nl));
        emit();
        start = nl + 1;
      }
    },
    end() {
      if (length > 0 || overflowed) emit();
    },
  };
}
