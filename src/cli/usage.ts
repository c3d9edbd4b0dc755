/**
 * `gpuctl usage …` and `gpuctl credits …`: credits and compute used, in total and per day, the
 * usage export and the credit statement (CSV, streamed by the API), and the credit ledger.
 */
import { open, rename, rm } from "node:fs/promises";
import path from "node:path";
import type { LedgerEntry } from "../sdk/index.ts";
import { GetDailyUsageResponseSchema, GetUsageSummaryResponseSchema, ListCreditLedgerResponseSchema } from "../gen/gpuagent/customer/v1/customer_pb.ts";
import type { CliContext, JsonOption } from "./context.ts";
import type { ListOptions } from "./datasets.ts";
import { pageOf } from "./datasets.ts";
import { formatTime, printFields, printListPage, printMessage, printTable } from "./output.ts";

/** Balance, totals and job counts. */
export async function usageSummary(opts: JsonOption, ctx: CliContext): Promise<number> {
  const s = await ctx.customer().usage.summary();
  if (opts.json) {
    printMessage(ctx.io, GetUsageSummaryResponseSchema, s);
    return 0;
  }
  printFields(ctx.io, [
    ["credits_balance", s.creditsBalance],
    ["credits_debited_total", s.creditsDebitedTotal],
    ["credits_granted_total", s.creditsGrantedTotal],
    ["compute_units_completed", s.computeUnitsCompleted],
    ["gpu_seconds", s.gpuSeconds],
    ["cpu_seconds", s.cpuSeconds],
    ["jobs_total", s.jobsTotal],
    ["jobs_active", s.jobsActive],
  ]);
  return 0;
}

/** Options of `usage daily`. */
export interface UsageDailyOptions extends JsonOption {
  /** How many days back (server default 30, at most 90). */
  days?: number | undefined;
}

/** One row per day (UTC). */
export async function usageDaily(opts: UsageDailyOptions, ctx: CliContext): Promise<number> {
  const res = await ctx.customer().usage.daily(opts.days === undefined ? {} : { days: opts.days });
  if (opts.json) {
    printMessage(ctx.io, GetDailyUsageResponseSchema, res);
    return 0;
  }
  printTable(
    ctx.io,
    ["date", "units", "gpu_seconds", "cpu_seconds", "credits"],
    res.data.map((d) => [d.date, String(d.computeUnitsCompleted), String(d.gpuSeconds), String(d.cpuSeconds), String(d.creditsDebited)]),
    "no usage",
  );
  return 0;
}

/** Options of the CSV commands (`usage export`, `credits statement`). */
export interface CsvOptions {
  /** First day, `YYYY-MM-DD` (UTC), inclusive. */
  from?: string | undefined;
  /** Last day, inclusive. */
  to?: string | undefined;
  /** Write here instead of stdout. */
  out?: string | undefined;
}

/**
 * Writes a CSV the API streams: to stdout as it comes, or to `--out`, where it is written beside
 * the destination and renamed into place only once complete, so a file there is never a cut one.
 */
export async function writeCsv(chunks: AsyncIterable<Uint8Array>, opts: CsvOptions, ctx: CliContext): Promise<number> {
  if (opts.out === undefined) {
    const decoder = new TextDecoder();
    for await (const chunk of chunks) ctx.io.stdout(decoder.decode(chunk, { stream: true }));
    const rest = decoder.decode();
    if (rest !== "") ctx.io.stdout(rest);
    return 0;
  }
  const partial = path.join(path.dirname(opts.out), `.${path.basename(opts.out)}.${ctx.randomUUID()}.partial`);
  let bytes = 0;
  try {
    const file = await open(partial, "wx");
    try {
      for await (const chunk of chunks) {
        await file.write(chunk);
        bytes += chunk.length;
      }
    } finally {
      await file.close();
    }
    await rename(partial, opts.out);
  } catch (error) {
    await rm(partial, { force: true });
    throw error;
  }
  ctx.io.stderr(`wrote ${opts.out} (${bytes} bytes)\n`);
  return 0;
}

const range = (opts: CsvOptions) => ({ ...(opts.from === undefined ? {} : { dateFrom: opts.from }), ...(opts.to === undefined ? {} : { dateTo: opts.to }) });

/** Usage per compute unit as CSV (server default: the last 30 days; at most 90). */
export async function usageExport(opts: CsvOptions, ctx: CliContext): Promise<number> {
  return writeCsv(ctx.customer().usage.exportCsv(range(opts)), opts, ctx);
}

/** The credit statement as CSV: an opening balance, then every entry with the balance after it. */
export async function creditsStatement(opts: CsvOptions, ctx: CliContext): Promise<number> {
  return writeCsv(ctx.customer().credits.statementCsv(range(opts)), opts, ctx);
}

/** One page of the credit ledger, newest first, under the current balance. */
export async function creditsLedger(opts: ListOptions, ctx: CliContext): Promise<number> {
  const res = await ctx.customer().credits.ledger(pageOf(opts));
  if (!opts.json && opts.quiet !== true) ctx.io.stdout(`balance ${res.balance}\n`);
  printListPage(ctx.io, opts, ListCreditLedgerResponseSchema, res, {
    columns: ["id", "created", "kind", "amount", "job", "description"],
    row: (e: LedgerEntry) => [e.id, formatTime(e.createdAt), e.kind, String(e.amount), e.jobId, e.description],
    empty: "no ledger entries",
  });
  return 0;
}
