/**
 * SQL for usage records (one per completed unit) and the usage and credit reports
 * (daily usage, usage CSV, credit statement). One function per operation; every
 * query is scoped to one customer.
 */
import type { LedgerRow } from "./customers.ts";
import type { Sql } from "./database.ts";
import { activeJobStatusSql } from "./state-machines.ts";

/** One UTC day of a customer's usage; days without usage are absent. */
export interface DailyUsageRow {
  /** YYYY-MM-DD (UTC). */
  date: string;
  units: number;
  gpu_seconds: number;
  cpu_seconds: number;
  credits: number;
}

/**
 * Usage per UTC day in [from, to). Seconds are summed per day, then rounded up,
 * so a day's figure is never less than what ran; GPU-seconds count each GPU a
 * unit held, as its debit does. Credits come from the usage records, which hold
 * exactly what each unit's one debit took.
 */
export async function dailyUsage(sql: Sql, customerId: string, from: Date, to: Date): Promise<DailyUsageRow[]> {
  return sql.query<DailyUsageRow>(
    `SELECT to_char((created_at AT TIME ZONE 'UTC')::date, 'YYYY-MM-DD') AS date,
            count(*)::int AS units,
            COALESCE(ceil(sum(run_seconds * gpu_count) FILTER (WHERE kind = 'gpu')), 0)::bigint AS gpu_seconds,
            COALESCE(ceil(sum(run_seconds) FILTER (WHERE kind = 'cpu')), 0)::bigint AS cpu_seconds,
            COALESCE(sum(credits), 0)::bigint AS credits
       FROM usage_records
      WHERE customer_id = $1 AND created_at >= $2 AND created_at < $3
      GROUP BY 1
      ORDER BY 1`,
    [customerId, from, to],
  );
}

/**
 * Usage of one completed unit, once: `usage_records.compute_unit_id` is unique, so a replayed
 * completion inserts nothing.
 */
export async function insertUsageOnce(
  sql: Sql,
  row: { id: string; customerId: string; jobId: string; unitId: string; kind: string; gpuCount: number; runSeconds: number; credits: number },
  now: Date,
): Promise<void> {
  await sql.query(
    `INSERT INTO usage_records (id, customer_id, job_id, compute_unit_id, kind, gpu_count, run_seconds, credits, created_at)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (compute_unit_id) DO NOTHING`,
    [row.id, row.customerId, row.jobId, row.unitId, row.kind, row.gpuCount, row.runSeconds, row.credits, now],
  );
}

/** A usage_records row. */
export interface UsageRecordRow {
  id: string;
  customer_id: string;
  job_id: string;
  compute_unit_id: string;
  kind: string;
  /** GPUs the unit held: 1 to 8 for a gpu unit, 0 for a cpu unit. */
  gpu_count: number;
  run_seconds: number;
  credits: number;
  created_at: Date;
}

/**
 * Where a keyset page ends: the last row's created_at as PostgreSQL prints it
 * (microseconds; a JS Date keeps only milliseconds and would repeat or skip rows
 * sharing one) and its id, the tie-break.
 */
export interface RowKey {
  createdAt: string;
  id: string;
}

/** A row of a keyset page, with the key of the next page's start. */
export type Keyed<T> = T & { key_created_at: string };

/** The key after which the next page starts, or undefined for an empty page. */
export function lastKey(rows: ReadonlyArray<Keyed<{ id: string }>>): RowKey | undefined {
  const last = rows.at(-1);
  return last === undefined ? undefined : { createdAt: last.key_created_at, id: last.id };
}

/**
 * One page of a customer's usage records in [from, to), oldest first, ordered
 * by (created_at, id) and starting after `after`: exports read in pages so
 * memory stays bounded whatever the range.
 */
export async function listUsageRecordsPage(sql: Sql, customerId: string, from: Date, to: Date, after: RowKey | undefined, limit: number): Promise<Array<Keyed<UsageRecordRow>>> {
  return sql.query<Keyed<UsageRecordRow>>(
    `SELECT *, created_at::text AS key_created_at FROM usage_records
      WHERE customer_id = $1 AND created_at >= $2 AND created_at < $3
        AND ($4::timestamptz IS NULL OR (created_at, id) > ($4::timestamptz, $5))
      ORDER BY created_at, id
      LIMIT $6`,
    [customerId, from, to, after?.createdAt ?? null, after?.id ?? null, limit],
  );
}

/** The sum of a customer's ledger strictly before `before`: the opening balance of a statement. */
export async function balanceBefore(sql: Sql, customerId: string, before: Date): Promise<number> {
  const [row] = await sql.query<{ balance: number }>(
    `SELECT COALESCE(sum(amount), 0)::bigint AS balance FROM ledger_entries WHERE customer_id = $1 AND created_at < $2`,
    [customerId, before],
  );
  return row?.balance ?? 0;
}

/**
 * One page of a customer's ledger entries in [from, to), oldest first (the
 * order a running balance needs), ordered by (created_at, id) and starting after `after`.
 */
export async function listLedgerPage(sql: Sql, customerId: string, from: Date, to: Date, after: RowKey | undefined, limit: number): Promise<Array<Keyed<LedgerRow>>> {
  return sql.query<Keyed<LedgerRow>>(
    `SELECT *, created_at::text AS key_created_at FROM ledger_entries
      WHERE customer_id = $1 AND created_at >= $2 AND created_at < $3
        AND ($4::timestamptz IS NULL OR (created_at, id) > ($4::timestamptz, $5))
      ORDER BY created_at, id
      LIMIT $6`,
    [customerId, from, to, after?.createdAt ?? null, after?.id ?? null, limit],
  );
}

/** A customer's totals since the account opened. */
export interface UsageTotalsRow {
  /** Credits taken by debits (a positive number). */
  debited: number;
  granted: number;
  /** Completed units (each has one usage record). */
  units: number;
  gpu_seconds: number;
  cpu_seconds: number;
  jobs_total: number;
  jobs_active: number;
}

/**
 * A customer's totals in one round trip. Seconds are summed, then rounded up,
 * so the figure is never less than what ran; GPU-seconds count each GPU a unit held.
 */
export async function usageTotals(sql: Sql, customerId: string): Promise<UsageTotalsRow> {
  const [row] = await sql.query<UsageTotalsRow>(
    `SELECT
       (SELECT COALESCE(-sum(amount), 0)::bigint FROM ledger_entries WHERE customer_id = $1 AND kind = 'debit') AS debited,
       (SELECT COALESCE(sum(amount), 0)::bigint FROM ledger_entries WHERE customer_id = $1 AND kind = 'grant') AS granted,
       (SELECT count(*)::int FROM usage_records WHERE customer_id = $1) AS units,
       (SELECT COALESCE(ceil(sum(run_seconds * gpu_count) FILTER (WHERE kind = 'gpu')), 0)::bigint FROM usage_records WHERE customer_id = $1) AS gpu_seconds,
       (SELECT COALESCE(ceil(sum(run_seconds) FILTER (WHERE kind = 'cpu')), 0)::bigint FROM usage_records WHERE customer_id = $1) AS cpu_seconds,
       (SELECT count(*)::int FROM training_jobs WHERE customer_id = $1) AS jobs_total,
       (SELECT count(*)::int FROM training_jobs WHERE customer_id = $1 AND status IN ${activeJobStatusSql}) AS jobs_active`,
    [customerId],
  );
  return row ?? { debited: 0, granted: 0, units: 0, gpu_seconds: 0, cpu_seconds: 0, jobs_total: 0, jobs_active: 0 };
}
