/**
 * A checksum of everything a control plane stores in its database, for tests that assert a request
 * changed nothing: per table, the row count and an md5 of every row (rows sorted, so the order
 * PostgreSQL returns them in does not matter), over every base table and every column of the
 * current schema but the volatile ones below. Tables added later are covered without listing them.
 *
 * Columns left out of the checksum, and why (all other columns of all tables count):
 *  - api_keys.last_used_at: authenticating with a key records its use (at most once a minute),
 *    also when the request is then refused; it is bookkeeping, not data the request changed.
 *  - login_attempts, login_address_budgets (every column, so the tables are left out): a sign-in
 *    attempt is counted by design, before its password is checked; those counts are the lock.
 *  - scheduler_leases.updated_at: the leader renews its lease in the background.
 *  - nodes.last_heartbeat_at: agents' heartbeats (no agent runs here; listed for safety).
 *  - training_jobs.pending_reason: the leader's placement cycles say why a queued job waits, at their
 *    own pace, whatever request came in between.
 * A test should first take two snapshots a second apart with no request in between, so a table
 * that changes on its own (added later) is reported by name instead of making cases flaky.
 */
import type { Sql } from "../../src/store/database.ts";

/** Columns whose changes are not the request's doing (see the header comment). */
export const volatileColumns: Readonly<Record<string, readonly string[]>> = {
  api_keys: ["last_used_at"],
  login_attempts: ["address", "email_key", "failures", "last_failure_at", "locked_until", "last_success_at", "expires_at"],
  login_address_budgets: ["address", "level", "updated_at"],
  scheduler_leases: ["updated_at"],
  nodes: ["last_heartbeat_at"],
  training_jobs: ["pending_reason"],
};

/** Per table, "N rows, md5 …". */
export type DbSnapshot = Map<string, string>;

/** Takes snapshots of one database; build it once the schema exists (after the control plane started). */
export interface DbChecksum {
  snapshot(): Promise<DbSnapshot>;
  /** The tables that differ, one line each ("table: before → after"); empty when nothing changed. */
  diff(before: DbSnapshot, after: DbSnapshot): string[];
}

/** Reads the schema once and prepares the snapshot query (one SELECT per table, UNION ALL). */
export async function createDbChecksum(db: Sql): Promise<DbChecksum> {
  const columns = await db.query<{ table_name: string; column_name: string }>(
    `SELECT c.table_name::text AS table_name, c.column_name::text AS column_name
       FROM information_schema.columns c
       JOIN information_schema.tables t ON t.table_schema = c.table_schema AND t.table_name = c.table_name AND t.table_type = 'BASE TABLE'
      WHERE c.table_schema = current_schema()
      ORDER BY c.table_name, c.ordinal_position`,
  );
  const byTable = new Map<string, string[]>();
  for (const { table_name, column_name } of columns) {
    if ((volatileColumns[table_name] ?? []).includes(column_name)) continue;
    byTable.set(table_name, [...(byTable.get(table_name) ?? []), column_name]);
  }
  if (!(byTable.has("training_jobs") && byTable.has("ledger_entries") && byTable.has("webhook_endpoints"))) {
    throw new Error(`the checksum does not see the schema (tables: ${[...byTable.keys()].join(", ") || "none"})`);
  }
  const q = (name: string) => `"${name.replace(/"/g, '""')}"`;
  const sql = [...byTable]
    .map(
      ([table, cols]) =>
        `SELECT '${table}'::text AS t, count(*)::int AS n, md5(coalesce(string_agg(x.r, E'\\n' ORDER BY x.r), '')) AS sum
           FROM (SELECT ROW(${cols.map(q).join(", ")})::text AS r FROM ${q(table)}) x`,
    )
    .join("\nUNION ALL\n");
  return {
    async snapshot() {
      const rows = await db.query<{ t: string; n: number; sum: string }>(sql);
      return new Map(rows.map((r) => [r.t, `${r.n} rows, md5 ${r.sum}`]));
    },
    diff(before, after) {
      const tables = new Set([...before.keys(), ...after.keys()]);
      return [...tables].filter((t) => before.get(t) !== after.get(t)).map((t) => `${t}: ${before.get(t) ?? "absent"} → ${after.get(t) ?? "absent"}`);
    },
  };
}
