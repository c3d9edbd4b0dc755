/** CustomerService handlers: Usage and credits reports: daily usage, CSV exports. */
import type { HandlerContext, ServiceImpl } from "@connectrpc/connect";
import { authorizeCall } from "../../auth/authorize.ts";
import type { AuthorizeDeps } from "../../auth/authorize.ts";
import type { CustomerPrincipal } from "../../auth/authenticate.ts";
import { csvContentType, csvRow } from "../../billing/csv.ts";
import {
  dailyUsageSeries,
  dayString,
  statementCsvHeader,
  usageCsvHeader,
  writeCreditStatementCsvRows,
  writeUsageCsvRows,
} from "../../billing/usage-reports.ts";
import type { CustomerService } from "../../gen/gpuagent/customer/v1/customer_pb.ts";
import type { Database, Sql } from "../../store/database.ts";
import { streamFromTransaction } from "../../store/transaction-stream.ts";
import { ApiError, validationError } from "../../platform/errors.ts";

const dayMs = 86_400_000;
/** Seed 001: daily usage and exports cover at most 90 days. */
const maxDays = 90;
const defaultDays = 30;
const dayPattern = /^(\d{4})-(\d{2})-(\d{2})$/;

/** Rows per query of a CSV export, and so per streamed chunk. */
export const csvBatchRows = 500;

/** Midnight UTC (ms) of the day holding `ms`. */
function startOfDay(ms: number): number {
  return Math.floor(ms / dayMs) * dayMs;
}

/** Midnight UTC (ms) of a YYYY-MM-DD day, or a 400 naming the field. */
function parseDay(value: string, field: string): number {
  const m = dayPattern.exec(value);
  const ms = m === null ? NaN : Date.UTC(Number(m[1]), Number(m[2]) - 1, Number(m[3]));
  // Date.UTC rolls 2026-02-30 over to March; the round trip catches days that do not exist.
  if (Number.isNaN(ms) || dayString(ms) !== value) {
    throw validationError(`${field} must be a date written YYYY-MM-DD`, { field });
  }
  return ms;
}

/** An inclusive range of whole UTC days, as midnights in ms. */
interface DayRange {
  from: number;
  to: number;
}

/**
 * Resolves date_from/date_to. Both empty: the last 30 days, today included.
 * Only one given: the other is today (date_to) or 30 days before date_to
 * (date_from), so a lone bound still yields the default-sized window.
 */
function resolveRange(dateFrom: string, dateTo: string, nowMs: number): DayRange {
  const fromText = dateFrom.trim();
  const toText = dateTo.trim();
  const to = toText === "" ? startOfDay(nowMs) : parseDay(toText, "date_to");
  const from = fromText === "" ? to - (defaultDays - 1) * dayMs : parseDay(fromText, "date_from");
  if (from > to) throw validationError("date_from must not be after date_to", { field: "date_from" });
  const days = (to - from) / dayMs + 1;
  if (days > maxDays) {
    throw new ApiError("EXPORT_RANGE_TOO_LARGE", `the range spans ${days} days; export at most ${maxDays} days at a time`, {
      details: { days, max_days: maxDays },
    });
  }
  return { from, to };
}

/**
 * Streams a CSV export as HttpBody chunks: the header row travels with the
 * first batch (and the content type with the first chunk), then one chunk per
 * batch of rows. `produce` reads its batches inside one REPEATABLE READ
 * transaction, so the file is one snapshot however long the download takes.
 *
 * PGlite has a single connection: a transaction that waited on the client
 * would stop every other query of the control plane (agent heartbeats,
 * dispatch) for as long as the slowest download, and a stalled client would
 * stall the service. There the producer never waits: batches are read at
 * database speed and queued, so memory grows with the export (at most 90 days
 * of one customer) — the embedded backend's price. On PostgreSQL the producer
 * waits for the consumer once a few chunks are queued: memory stays bounded and
 * one pooled connection is held per export in flight.
 */
async function* csvChunks(
  db: Database,
  signal: AbortSignal,
  header: readonly string[],
  produce: (tx: Sql, emitRows: (rows: string) => Promise<void>) => Promise<void>,
): AsyncGenerator<{ body: { contentType?: string; data: Uint8Array } }, void, undefined> {
  const encoder = new TextEncoder();
  const maxQueued = db.kind === "pglite" ? Infinity : 4;
  let first = true;
  const chunks = streamFromTransaction<string>(db, { isolation: "repeatable read", maxQueued, signal }, async (tx, emit) => {
    let pending = csvRow(header);
    await produce(tx, async (rows) => {
      // The header rides with the first rows, so a failing first query is still an error answer, not a 200.
      await emit(pending + rows);
      pending = "";
    });
    if (pending !== "") await emit(pending);
  });
  for await (const text of chunks) {
    const data = encoder.encode(text);
    yield first ? { body: { contentType: csvContentType, data } } : { body: { data } };
    first = false;
  }
}

/** Sets the download file name the REST transcoder passes on (before the first chunk, so it leads the headers). */
function attachment(ctx: HandlerContext, filename: string): void {
  ctx.responseHeader.set("content-disposition", `attachment; filename="${filename}"`);
}

/** The usage part of CustomerService. */
export function createUsageHandlers(deps: AuthorizeDeps): Partial<ServiceImpl<typeof CustomerService>> {
  const { db, clock } = deps;

  async function reader(ctx: HandlerContext): Promise<CustomerPrincipal> {
    return authorizeCall(deps, ctx);
  }

  return {
    async getDailyUsage(req, ctx) {
      const principal = await reader(ctx);
      // 0 is proto3's "not set".
      const days = req.days === 0 ? defaultDays : req.days;
      if (!Number.isInteger(days) || days < 1 || days > maxDays) {
        throw validationError(`days must be between 1 and ${maxDays}`, { field: "days" });
      }
      const today = startOfDay(clock.now());
      const data = await dailyUsageSeries(db, principal.customerId, today - (days - 1) * dayMs, days);
      return {
        data: data.map((d) => ({
          date: d.date,
          computeUnitsCompleted: d.computeUnitsCompleted,
          gpuSeconds: BigInt(d.gpuSeconds),
          cpuSeconds: BigInt(d.cpuSeconds),
          creditsDebited: BigInt(d.creditsDebited),
        })),
      };
    },

    async *exportUsageCsv(req, ctx) {
      const principal = await reader(ctx);
      const range = resolveRange(req.dateFrom, req.dateTo, clock.now());
      const from = new Date(range.from);
      const to = new Date(range.to + dayMs);
      attachment(ctx, `usage-${dayString(range.from)}-${dayString(range.to)}.csv`);
      yield* csvChunks(db, ctx.signal, usageCsvHeader, (tx, emitRows) => writeUsageCsvRows(tx, principal.customerId, from, to, csvBatchRows, emitRows));
    },

    async *getCreditStatementCsv(req, ctx) {
      const principal = await reader(ctx);
      const range = resolveRange(req.dateFrom, req.dateTo, clock.now());
      const from = new Date(range.from);
      const to = new Date(range.to + dayMs);
      attachment(ctx, `credit-statement-${dayString(range.from)}-${dayString(range.to)}.csv`);
      yield* csvChunks(db, ctx.signal, statementCsvHeader, (tx, emitRows) =>
        writeCreditStatementCsvRows(tx, principal.customerId, from, to, csvBatchRows, emitRows),
      );
    },
  };
}
