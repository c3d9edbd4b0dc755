/**
 * Output for gpuctl. stdout carries the result only (one JSON document with
 * `--json`, human text otherwise); progress bars and diagnostics go to stderr
 * so `gpuctl … --json | jq` always parses.
 */
import cliProgress from "cli-progress";
import { CliApiError, CliError } from "./client.ts";
import type { Int64 } from "./types.ts";

/** Where a command writes; the process streams in `cmd/`, buffers in tests. */
export interface Io {
  stdout(text: string): void;
  stderr(text: string): void;
  /** Stream the progress bars draw on (stderr in a process). */
  progressStream: NodeJS.WritableStream;
  /** Bars are drawn only on a terminal; pipes and CI logs get plain lines. */
  stderrIsTTY: boolean;
}

/** The real process streams. */
export function createProcessIo(): Io {
  return {
    stdout: (text) => void process.stdout.write(text),
    stderr: (text) => void process.stderr.write(text),
    progressStream: process.stderr,
    stderrIsTTY: process.stderr.isTTY === true,
  };
}

/** Prints one JSON document (pretty, newline-terminated) on stdout. */
export function printJson(io: Io, value: unknown): void {
  io.stdout(`${JSON.stringify(value, null, 2)}\n`);
}

/** Prints `label  value` lines with aligned values, skipping empty values. */
export function printFields(io: Io, fields: [string, unknown][]): void {
  const shown = fields.filter(([, v]) => v !== undefined && v !== null && v !== "");
  const width = Math.max(0, ...shown.map(([k]) => k.length));
  for (const [k, v] of shown) io.stdout(`${k.padEnd(width)}  ${String(v)}\n`);
}

/** Prints rows as a left-aligned table; an empty list prints `emptyText`. */
export function printTable(io: Io, columns: string[], rows: string[][], emptyText = "(none)"): void {
  if (rows.length === 0) {
    io.stdout(`${emptyText}\n`);
    return;
  }
  const widths = columns.map((c, i) => Math.max(c.length, ...rows.map((r) => (r[i] ?? "").length)));
  const line = (cells: string[]) =>
    cells
      .map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i] ?? 0)))
      .join("  ")
      .trimEnd();
  io.stdout(`${line(columns.map((c) => c.toUpperCase()))}\n`);
  for (const r of rows) io.stdout(`${line(r)}\n`);
}

/** Human size, e.g. `1.5 MiB`; int64 strings accepted. */
export function formatBytes(value: Int64 | undefined): string {
  if (value === undefined) return "";
  const n = Number(value);
  if (!Number.isFinite(n)) return String(value);
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let v = n;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return i === 0 ? `${n} B` : `${v.toFixed(1)} ${units[i]}`;
}

/** A number for humans: integers as they are, others to 4 significant digits. */
export function formatNumber(n: number): string {
  return Number.isInteger(n) ? String(n) : Number(n.toPrecision(4)).toString();
}

/**
 * Metrics as `epoch=3 loss=0.1234 …`: epoch and loss first (what a trainer
 * looks at), the rest by name, at most `max` entries so a line stays short.
 */
export function formatMetrics(metrics: Record<string, number> | undefined, max = 4): string {
  if (metrics === undefined) return "";
  const order = (k: string) => (k === "epoch" ? 0 : k === "loss" ? 1 : 2);
  return Object.keys(metrics)
    .sort((a, b) => order(a) - order(b) || (a < b ? -1 : a > b ? 1 : 0))
    .slice(0, max)
    .map((k) => `${k}=${formatNumber(metrics[k] ?? 0)}`)
    .join(" ");
}

/** A progress bar that may be a no-op; callers need not care which. */
export interface Progress {
  start(total: number, payload?: Record<string, string>): void;
  update(value: number, payload?: Record<string, string>): void;
  stop(): void;
}

const noProgress: Progress = { start() {}, update() {}, stop() {} };

/**
 * A cli-progress bar on stderr when it is a terminal and the output is not
 * JSON; otherwise a no-op. `format` may use cli-progress tokens plus payload keys.
 */
export function createProgress(io: Io, enabled: boolean, format: string): Progress {
  if (!enabled || !io.stderrIsTTY) return noProgress;
  const bar = new cliProgress.SingleBar(
    { format, stream: io.progressStream, hideCursor: false, clearOnComplete: false, etaBuffer: 20 },
    cliProgress.Presets.shades_classic,
  );
  let started = false;
  return {
    start(total, payload) {
      bar.start(total, 0, payload ?? {});
      started = true;
    },
    update(value, payload) {
      if (started) bar.update(value, payload ?? {});
    },
    stop() {
      if (started) bar.stop();
      started = false;
    },
  };
}

/** Format of the byte-transfer bars; `done` and `size` are payload keys set by {@link transferPayload}. */
export const TRANSFER_BAR_FORMAT = "{label} [{bar}] {percentage}% | {done}/{size} | ETA {eta_formatted}";

/** Payload of a transfer bar: human sizes, since cli-progress prints raw numbers. */
export function transferPayload(label: string, done: number, size: number): Record<string, string> {
  return { label, done: formatBytes(done), size: formatBytes(size) };
}

/**
 * Writes an error to stderr: `error: message (code X, request Y)`, or the
 * error envelope as JSON when `--json` was asked, so scripts can parse it too.
 */
export function reportError(io: Io, err: unknown, json: boolean): number {
  const cliErr =
    err instanceof CliError ? err : new CliError("INTERNAL", err instanceof Error ? err.message : String(err));
  const requestId = cliErr instanceof CliApiError ? cliErr.requestId : "";
  if (json) {
    const body: Record<string, unknown> = { code: cliErr.code, message: cliErr.message };
    if (requestId !== "") body["request_id"] = requestId;
    if (cliErr instanceof CliApiError) body["status"] = cliErr.status;
    io.stderr(`${JSON.stringify({ error: body })}\n`);
  } else {
    const extra = [`code ${cliErr.code}`];
    if (requestId !== "") extra.push(`request ${requestId}`);
    io.stderr(`error: ${cliErr.message} (${extra.join(", ")})\n`);
  }
  return cliErr.exitCode;
}
