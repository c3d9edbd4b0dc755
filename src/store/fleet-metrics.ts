/**
 * Cluster-wide counts for the operators' views: the Prometheus gauges read at
 * scrape time (src/observability/metrics.ts), the admin scheduler status, and
 * the readiness probe's round trip. Every replica reads the same rows, so each
 * reports the same values.
 */
import type { Sql } from "./database.ts";
import { sqlStatusList, unitsOnNodeStatuses, waitingUnitStatuses } from "./state-machines.ts";

/** Units not yet handed to a node, counted by kind and status. */
export interface WaitingUnitCount {
  kind: string;
  status: (typeof waitingUnitStatuses)[number];
  count: number;
}

/** Compute units waiting for placement (`pending` on dependencies, `ready` to place), by kind and status; absent groups are left out. */
export function countWaitingUnits(sql: Sql): Promise<WaitingUnitCount[]> {
  return sql.query<WaitingUnitCount>(
    `SELECT kind, status, count(*)::int AS count FROM compute_units WHERE status IN ${sqlStatusList(waitingUnitStatuses)} GROUP BY kind, status`,
  );
}

/** Enrolled nodes counted by state and trust level. */
export interface NodeCount {
  state: string;
  trust: string;
  count: number;
}

/** Enrolled nodes by state and trust level; absent groups are left out. */
export function countNodesByStateAndTrust(sql: Sql): Promise<NodeCount[]> {
  return sql.query<NodeCount>(`SELECT state, trust_level AS trust, count(*)::int AS count FROM nodes GROUP BY state, trust_level`);
}

/** Every credit ever debited, all customers (debits are negative ledger amounts; the sum never decreases). */
export async function totalCreditsDebited(sql: Sql): Promise<number> {
  const [row] = await sql.query<{ total: number }>(`SELECT COALESCE(-sum(amount), 0)::bigint AS total FROM ledger_entries WHERE kind = 'debit'`);
  return row?.total ?? 0;
}

/** One kind's queue: units waiting on dependencies, ready to place, and on a node. */
export interface QueueDepth {
  kind: string;
  pending: number;
  ready: number;
  running: number;
}

/** The queues by kind (kinds without any unit are left out), ordered by kind. */
export function queueDepths(sql: Sql): Promise<QueueDepth[]> {
  return sql.query<QueueDepth>(
    `SELECT kind, count(*) FILTER (WHERE status IN ${sqlStatusList(["pending"])})::int AS pending,
            count(*) FILTER (WHERE status IN ${sqlStatusList(["ready"])})::int AS ready,
            count(*) FILTER (WHERE status IN ${sqlStatusList(unitsOnNodeStatuses)})::int AS running
     FROM compute_units GROUP BY kind ORDER BY kind`,
  );
}

/** One round trip to the database; rejects when it does not answer. */
export async function pingDatabase(sql: Sql): Promise<void> {
  await sql.query(`SELECT 1`);
}
