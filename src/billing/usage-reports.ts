/**
 * The customer's usage and credit reports: usage per day, the usage export and
 * the credit statement as CSV rows. Rows are produced in pages inside the
 * caller's transaction (one snapshot for the whole file); how the text reaches
 * the customer is the caller's business.
 */
import type { Sql } from "../store/database.ts";
import type { RowKey } from "../store/usage.ts";
import { balanceBefore, dailyUsage, lastKey, listLedgerPage, listUsageRecordsPage } from "../store/usage.ts";
import { csvRow } from "./csv.ts";

const dayMs = 86_400_000;

/** Usage export columns (the documented CSV contract; reorder nothing, add at the end). */
export const usageCsvHeader = ["date", "job_id", "compute_unit_id", "kind", "run_seconds", "credits", "gpu_count", "gpu_seconds"] as const;
/** Credit statement columns. */
export const statementCsvHeader = ["date", "entry_id", "kind", "amount", "balance_after", "description", "job_id", "compute_unit_id"] as const;

/** YYYY-MM-DD (UTC) of an instant. */
export function dayString(ms: number): string {
  return new Date(ms).toISOString().slice(0, 10);
}

/** Seconds as stored (double precision), to the millisecond, so the CSV does not show float noise. */
function seconds(value: number): number {
  return Math.round(value * 1000) / 1000;
}

/** One UTC day of usage. */
export interface DayUsage {
  /** YYYY-MM-DD (UTC). */
  date: string;
  computeUnitsCompleted: number;
  gpuSeconds: number;
  cpuSeconds: number;
  creditsDebited: number;
}

/** Usage of `days` whole UTC days from the midnight `fromMs`, every day present (zero days too, so charts need no gap filling). */
export async function dailyUsageSeries(sql: Sql, customerId: string, fromMs: number, days: number): Promise<DayUsage[]> {
  const rows = await dailyUsage(sql, customerId, new Date(fromMs), new Date(fromMs + days * dayMs));
  const byDate = new Map(rows.map((r) => [r.date, r]));
  return Array.from({ length: days }, (_, i) => {
    const date = dayString(fromMs + i * dayMs);
    const row = byDate.get(date);
    return {
      date,
      computeUnitsCompleted: row?.units ?? 0,
      gpuSeconds: row?.gpu_seconds ?? 0,
      cpuSeconds: row?.cpu_seconds ?? 0,
      creditsDebited: row?.credits ?? 0,
    };
  });
}

/** Receives CSV records (CRLF-terminated text), one batch at a time. */
export type EmitCsvRows = (rows: string) => Promise<void>;

/** The usage records of [from, to) as CSV records, oldest first, `batchRows` per query and per emitted batch. */
export async function writeUsageCsvRows(tx: Sql, customerId: string, from: Date, to: Date, batchRows: number, emitRows: EmitCsvRows): Promise<void> {
  let after: RowKey | undefined;
  for (;;) {
    const records = await listUsageRecordsPage(tx, customerId, from, to, after, batchRows);
    if (records.length === 0) return;
    let text = "";
    for (const r of records) {
      const gpuSeconds = r.kind === "gpu" ? seconds(r.run_seconds * r.gpu_count) : 0;
      text += csvRow([dayString(r.created_at.getTime()), r.job_id, r.compute_unit_id, r.kind, seconds(r.run_seconds), r.credits, r.gpu_count, gpuSeconds]);
    }
    await emitRows(text);
    if (records.length < batchRows) return;
    after = lastKey(records);
  }
}

/**
 * The credit statement of [from, to): an opening balance, then every ledger
 * entry with the balance after it. Read in one snapshot (the caller's
 * transaction), so a debit landing mid-download is neither counted twice nor
 * lost, and the running balance adds up.
 */
export async function writeCreditStatementCsvRows(tx: Sql, customerId: string, from: Date, to: Date, batchRows: number, emitRows: EmitCsvRows): Promise<void> {
  let balance = await balanceBefore(tx, customerId, from);
  let text = csvRow([dayString(from.getTime()), "", "opening_balance", 0, balance, "opening balance", "", ""]);
  let after: RowKey | undefined;
  for (;;) {
    const entries = await listLedgerPage(tx, customerId, from, to, after, batchRows);
    for (const e of entries) {
      balance += e.amount;
      text += csvRow([dayString(e.created_at.getTime()), e.id, e.kind, e.amount, balance, e.description, e.job_id ?? "", e.compute_unit_id ?? ""]);
    }
    if (text !== "") await emitRows(text);
    text = "";
    if (entries.length < batchRows) return;
    after = lastKey(entries);
  }
}
