/**
 * Output for gpuctl. stdout carries the result only (one JSON document with
 * `--json`, human text otherwise); progress bars and diagnostics go to stderr
 * so `gpuctl … --json | jq` always parses.
 */
import type { DescMessage, JsonValue, MessageShape } from "@bufbuild/protobuf";
import { toJson } from "@bufbuild/protobuf";
import type { Timestamp } from "@bufbuild/protobuf/wkt";
import { TimestampSchema } from "@bufbuild/protobuf/wkt";
import cliProgress from "cli-progress";
import type { ListPage, TransferProgress } from "../sdk/index.ts";
import { GpuAgentError } from "../sdk/index.ts";
import { CliError } from "./errors.ts";

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
  // A reader that went away (`gpuctl jobs logs -f | head`) ends the command quietly, as `cat` does, not with a stack trace.
  process.stdout.on("error", (error: NodeJS.ErrnoException) => {
    if (error.code === "EPIPE") process.exit(0);
    throw error;
  });
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

/**
 * A message as the REST API writes it: proto field names, fields at their default included, int64
 * as strings, timestamps in RFC 3339. `--json` prints exactly this, so scripts written against
 * the REST answers keep working.
 */
export function messageJson<Desc extends DescMessage>(schema: Desc, message: MessageShape<Desc>): JsonValue {
  return toJson(schema, message, { useProtoFieldName: true, alwaysEmitImplicit: true });
}

/** Prints a message as {@link messageJson}. */
export function printMessage<Desc extends DescMessage>(io: Io, schema: Desc, message: MessageShape<Desc>): void {
  printJson(io, messageJson(schema, message));
}

/** A timestamp as the API writes it (RFC 3339, UTC); empty when unset. */
export function formatTime(ts: Timestamp | undefined): string {
  return ts === undefined ? "" : String(toJson(TimestampSchema, ts));
}

/** Columns of a table and how one item fills a row. */
export interface Table<T> {
  columns: string[];
  row(item: T): string[];
  /** Printed instead of an empty table. */
  empty: string;
  /** What `-q` prints of an item; default its `id`. */
  id?: (item: T) => string;
}

/** `-q/--quiet` of the create and list commands: ids only, one per line, for `$(…)` and `xargs`. */
export interface QuietOption {
  quiet?: boolean | undefined;
}

/** How a command prints its result: a table or fields (the default), `--json`, or ids (`-q`). */
export interface OutputMode extends QuietOption {
  json: boolean;
}

/** The id of a resource, which every message of the API has. */
function idOf(item: unknown): string {
  const id = (item as { id?: unknown }).id;
  return typeof id === "string" ? id : "";
}

/** Prints the ids of `items`, one per line (nothing at all for none, so `xargs` runs nothing). */
export function printIds<T>(io: Io, items: T[], id: (item: T) => string = idOf): void {
  for (const item of items) io.stdout(`${id(item)}\n`);
}

/**
 * One page of a list rpc: the response as JSON, its ids, or a table; when there is more, how to
 * ask for the next page (on stderr; scripts read `page.next_cursor` from `--json`).
 */
export function printListPage<Desc extends DescMessage, T>(io: Io, mode: OutputMode, schema: Desc, res: MessageShape<Desc> & ListPage<T>, table: Table<T>): void {
  if (mode.json) {
    printMessage(io, schema, res);
    return;
  }
  if (mode.quiet === true) printIds(io, res.data, table.id);
  else printTable(io, table.columns, res.data.map((item) => table.row(item)), table.empty);
  if (res.page?.hasMore === true && res.page.nextCursor !== "") io.stderr(`more results: --cursor ${res.page.nextCursor}\n`);
}

/** Every item of a walk over all pages: `{"data": [...]}` as JSON, their ids, or a table. */
export function printAll<Desc extends DescMessage>(io: Io, mode: OutputMode, schema: Desc, items: MessageShape<Desc>[], table: Table<MessageShape<Desc>>): void {
  if (mode.json) printJson(io, { data: items.map((item) => messageJson(schema, item)) });
  else if (mode.quiet === true) printIds(io, items, table.id);
  else printTable(io, table.columns, items.map((item) => table.row(item)), table.empty);
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

/** Human size, e.g. `1.5 MiB`. */
export function formatBytes(value: bigint | number): string {
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
 * Runs a transfer with a progress bar fed by the SDK's `onProgress`: one bar per phase it reports
 * (`hashing`, then `uploading`; or `downloading`), labelled `sha256 <label>` while hashing. The
 * bar is stopped whatever happens.
 */
export async function withTransferBar<T>(io: Io, enabled: boolean, label: string, run: (onProgress: (p: TransferProgress) => void) => Promise<T>): Promise<T> {
  const bar = createProgress(io, enabled, TRANSFER_BAR_FORMAT);
  let phase: TransferProgress["phase"] | undefined;
  const onProgress = (p: TransferProgress): void => {
    const total = p.totalBytes ?? 0;
    const shown = p.phase === "hashing" ? `sha256 ${label}` : label;
    if (p.phase !== phase) {
      bar.stop();
      bar.start(total, transferPayload(shown, 0, total));
      phase = p.phase;
    }
    bar.update(p.bytesDone, transferPayload(shown, p.bytesDone, total));
  };
  try {
    return await run(onProgress);
  } finally {
    bar.stop();
  }
}

/** What an error report says. */
interface ErrorReport {
  code: string;
  message: string;
  requestId: string;
  /** HTTP status of an API failure; 0 when nothing answered or the failure is gpuctl's own. */
  httpStatus: number;
  exitCode: number;
}

function describeError(err: unknown): ErrorReport {
  if (err instanceof GpuAgentError) {
    return { code: err.code, message: err.message, requestId: err.requestId, httpStatus: err.httpStatus, exitCode: 1 };
  }
  if (err instanceof CliError) return { code: err.code, message: err.message, requestId: "", httpStatus: 0, exitCode: err.exitCode };
  return { code: "INTERNAL", message: err instanceof Error ? err.message : String(err), requestId: "", httpStatus: 0, exitCode: 1 };
}

/**
 * Writes an error to stderr: `error: message (code X, request Y)`, or `{"error":{code, message,
 * request_id, status}}` when `--json` was asked, so scripts can parse it too. API failures keep
 * the SDK's seed code and the server's request id (what support asks for). Returns the exit code.
 */
export function reportError(io: Io, err: unknown, json: boolean): number {
  const e = describeError(err);
  if (json) {
    const body: Record<string, unknown> = { code: e.code, message: e.message };
    if (e.requestId !== "") body["request_id"] = e.requestId;
    if (e.httpStatus > 0) body["status"] = e.httpStatus;
    io.stderr(`${JSON.stringify({ error: body })}\n`);
  } else {
    const extra = [`code ${e.code}`];
    if (e.requestId !== "") extra.push(`request ${e.requestId}`);
    io.stderr(`error: ${e.message} (${extra.join(", ")})\n`);
  }
  return e.exitCode;
}
