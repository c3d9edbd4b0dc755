/**
 * The fencing term in the database. With etcd, a new leader's term is its campaign key's
 * create_revision; writing it into `scheduler_leases` (only ever upwards) makes the existing
 * commit check in placement-cycle.ts (`SELECT term … FOR UPDATE` must equal the loop's term) reject
 * every commit of an older leader, including one that was paused past its lease and woke up.
 */
import type { Sql } from "../store/database.ts";
import { placementLease } from "../scheduling/placement-cycle.ts";

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
