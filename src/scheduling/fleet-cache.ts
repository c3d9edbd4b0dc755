/**
 * The online nodes' rows for placement cycles, read at most once per
 * `maxAgeMs` instead of once per cycle: at 10,000 nodes that read costs the
 * embedded database 100-150 ms, and under a steady stream of jobs the leader
 * runs a cycle per job.
 *
 * What may be stale, and why that is safe: the rows give each node's state,
 * trust level and capabilities. Free resources are not taken from here (the
 * cycle sums the units held on each node afresh), liveness comes from the
 * streams (`isLive`), and the commit re-checks state and trust against the
 * fresh row in the same UPDATE that assigns the unit. So a stale row can at
 * worst leave a just-connected node unused, or plan onto a just-cordoned one
 * whose assignment the commit then refuses, for at most `maxAgeMs`.
 */
import type { Clock } from "../platform/clock.ts";
import type { Sql } from "../store/database.ts";
import type { NodeRow } from "../store/nodes.ts";

/** Caches `SELECT * FROM nodes WHERE state = 'online'` for placement. */
export class FleetCache {
  private readonly clock: Clock;
  private readonly maxAgeMs: number;
  private rows: NodeRow[] = [];
  private readAtMs = Number.NEGATIVE_INFINITY;

  constructor(clock: Clock, maxAgeMs = 1000) {
    this.clock = clock;
    this.maxAgeMs = maxAgeMs;
  }

  /** The online nodes, re-read when the copy is older than `maxAgeMs`. */
  async onlineNodes(sql: Sql): Promise<readonly NodeRow[]> {
    const now = this.clock.now();
    if (now - this.readAtMs >= this.maxAgeMs) {
      this.rows = await sql.query<NodeRow>(`SELECT * FROM nodes WHERE state = 'online'`);
      this.readAtMs = now;
    }
    return this.rows;
  }

  /** The next read goes to the database. */
  invalidate(): void {
    this.readAtMs = Number.NEGATIVE_INFINITY;
  }
}
