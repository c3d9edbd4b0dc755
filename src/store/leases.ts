/**
 * SQL for `scheduler_leases`: the one row whose term fences placement commits. Two ways to lead write
 * it: without etcd the replicas elect through the row itself (scheduling/leadership.ts: take, renew,
 * release); with etcd a new leader records its campaign key's create_revision as the term, only ever
 * upwards (control-plane.ts). Either way the placement commit (`assignReadyUnitsUnderTerm` in
 * placement.ts) locks the row and must find its own term, so a leader that was paused past its lease
 * and woke up commits nothing. The database's `now()` is the point here: every replica compares lease
 * ages on the one clock they share, not on their own.
 */
import type { Sql } from "./database.ts";

/** Name of the lease row whose term fences placement commits. */
export const placementLease = "placement";

/** Tries to take the lease; returns the new term, or undefined while another replica holds it. */
export async function tryAcquireLease(sql: Sql, holder: string, ttlMs: number, force: boolean): Promise<number | undefined> {
  const [row] = await sql.query<{ term: number }>(
    `INSERT INTO scheduler_leases (name, term, holder, updated_at) VALUES ($1, 1, $2, now())
     ON CONFLICT (name) DO UPDATE SET term = scheduler_leases.term + 1, holder = $2, updated_at = now()
       WHERE $4 OR scheduler_leases.holder = $2 OR scheduler_leases.updated_at < now() - make_interval(secs => $3::double precision / 1000)
     RETURNING term`,
    [placementLease, holder, ttlMs, force],
  );
  return row?.term;
}

/** Renews the lease; false when it was lost (taken over after expiring). */
export async function renewLease(sql: Sql, holder: string, term: number): Promise<boolean> {
  const rows = await sql.query(`UPDATE scheduler_leases SET updated_at = now() WHERE name = $1 AND holder = $2 AND term = $3 RETURNING term`, [
    placementLease,
    holder,
    term,
  ]);
  return rows.length === 1;
}

/** Gives the lease up at once (graceful shutdown), so another replica need not wait for the ttl. */
export async function releaseLease(sql: Sql, holder: string, term: number): Promise<void> {
  await sql.query(`UPDATE scheduler_leases SET updated_at = '-infinity' WHERE name = $1 AND holder = $2 AND term = $3`, [placementLease, holder, term]);
}

/**
 * Records `term` as the current one for `holder`. True when it is current now (written, or already ours);
 * false when a newer term is already recorded, i.e. this leader is stale and must not lead.
 */
export async function claimFencingTerm(sql: Sql, term: number, holder: string): Promise<boolean> {
  const rows = await sql.query<{ term: number; holder: string }>(
    `INSERT INTO scheduler_leases (name, term, holder, updated_at) VALUES ($1, $2, $3, now())
     ON CONFLICT (name) DO UPDATE SET term = EXCLUDED.term, holder = EXCLUDED.holder, updated_at = now()
       WHERE scheduler_leases.term < EXCLUDED.term OR (scheduler_leases.term = EXCLUDED.term AND scheduler_leases.holder = EXCLUDED.holder)
     RETURNING term, holder`,
    [placementLease, term, holder],
  );
  return rows.length === 1;
}

/** The recorded term and holder (observability, tests). */
export async function currentFencingTerm(sql: Sql): Promise<{ term: number; holder: string } | undefined> {
  const [row] = await sql.query<{ term: number; holder: string }>(`SELECT term, holder FROM scheduler_leases WHERE name = $1`, [placementLease]);
  return row;
}

/**
 * Locks the lease row until the transaction ends and returns its term (undefined when no one ever led):
 * the fence a placement commit checks against its own term, inside the same transaction.
 */
export async function lockFencingTerm(tx: Sql): Promise<number | undefined> {
  const [lease] = await tx.query<{ term: number }>(`SELECT term FROM scheduler_leases WHERE name = $1 FOR UPDATE`, [placementLease]);
  return lease?.term;
}
