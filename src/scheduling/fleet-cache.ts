/**
 * The online nodes' rows for placement cycles, kept in memory and brought up
 * to date with the rows that changed since the last look, instead of reading
 * every online node every cycle: at 10,000 nodes that read costs the embedded
 * database 100-150 ms, and under a steady stream of jobs the leader runs a
 * cycle per job.
 *
 * How it stays right: `nodes.placement_changed_at` moves (by trigger, see
 * schema-0004.ts) whenever a node's state, trust level or capabilities
 * change. At most once per `maxAgeMs` the cache reads the rows whose stamp is
 * newer than its last read minus `overlapMs` (a change stamped before that
 * read but committed after it is still caught, as long as no transaction that
 * changes a node stays open longer than the overlap), and every `fullEveryMs`
 * it reads all online nodes again as a backstop. Times come from the
 * database's clock only.
 *
 * What may be stale, and why that is safe: free resources are not taken from
 * here (the cycle sums the units held on each node afresh), liveness comes
 * from the streams (`isLive`), and the commit re-checks state and trust
 * against the fresh row in the same UPDATE that assigns the unit. So a stale
 * row can at worst leave a just-connected node unused, or plan onto a
 * just-cordoned one whose assignment the commit then refuses, for at most
 * `maxAgeMs`.
 */
import type { Clock } from "../platform/clock.ts";
import type { Sql } from "../store/database.ts";
import type { NodeRow } from "../store/nodes.ts";

/** Options of {@link FleetCache}. */
export interface FleetCacheOptions {
  /** Longest a cycle plans on rows older than this (default 1 s). */
  maxAgeMs?: number;
  /** How far back each incremental read looks before the previous one (default 10 s). */
  overlapMs?: number;
  /** How often every online node is read again (default 60 s). */
  fullEveryMs?: number;
}

/** Caches the online nodes' rows for placement. */
export class FleetCache {
  private readonly clock: Clock;
  private readonly maxAgeMs: number;
  private readonly overlapMs: number;
  private readonly fullEveryMs: number;
  private readonly byId = new Map<string, NodeRow>();
  private rows: NodeRow[] = [];
  private checkedAtMs = Number.NEGATIVE_INFINITY;
  private fullAtMs = Number.NEGATIVE_INFINITY;
  /**
   * The database's clock at the previous read, as the database wrote it: a JS
   * Date would cut it to milliseconds, and a change stamped earlier in the
   * same millisecond would then be read again on every look.
   */
  private lastReadAt: string | undefined;
  /** Nodes whose row changed, appeared or left since the last `takeChanged` ("all" after a full read). */
  private changed: Set<string> | "all" = "all";
  /** Rows read so far (full and incremental), for tests and diagnostics. */
  rowsRead = 0;

  constructor(clock: Clock, options: FleetCacheOptions = {}) {
    this.clock = clock;
    this.maxAgeMs = options.maxAgeMs ?? 1000;
    this.overlapMs = options.overlapMs ?? 10_000;
    this.fullEveryMs = options.fullEveryMs ?? 60_000;
  }

  /** The online nodes, brought up to date when the copy is older than `maxAgeMs`. */
  async onlineNodes(sql: Sql): Promise<readonly NodeRow[]> {
    const now = this.clock.now();
    if (now - this.checkedAtMs < this.maxAgeMs) return this.rows;
    // Taken before the read, so the next look reaches back at least to what this one might have missed.
    const [{ at: readAt }] = (await sql.query<{ at: string }>(`SELECT clock_timestamp()::text AS at`)) as [{ at: string }];
    if (this.lastReadAt === undefined || now - this.fullAtMs >= this.fullEveryMs) {
      const all = await sql.query<NodeRow>(`SELECT * FROM nodes WHERE state = 'online'`);
      this.byId.clear();
      for (const row of all) this.byId.set(row.id, row);
      this.rows = [...this.byId.values()];
      this.rowsRead += all.length;
      this.fullAtMs = now;
      this.changed = "all";
    } else {
      const changed = await sql.query<NodeRow>(
        `SELECT * FROM nodes WHERE placement_changed_at >= $1::timestamptz - make_interval(secs => $2::double precision / 1000)`,
        [this.lastReadAt, this.overlapMs],
      );
      let moved = false;
      for (const row of changed) {
        const before = this.byId.get(row.id);
        if (row.state === "online") {
          // An unchanged row keeps its object, so the placer's sync sees the same node.
          if (before !== undefined && sameForPlacement(before, row)) continue;
          this.byId.set(row.id, row);
          moved = true;
          if (this.changed !== "all") this.changed.add(row.id);
        } else if (before !== undefined) {
          this.byId.delete(row.id);
          moved = true;
          if (this.changed !== "all") this.changed.add(row.id);
        }
      }
      if (moved) this.rows = [...this.byId.values()];
      this.rowsRead += changed.length;
    }
    this.lastReadAt = readAt;
    this.checkedAtMs = now;
    return this.rows;
  }

  /** The row of an online node as of the last look. */
  row(nodeId: string): NodeRow | undefined {
    return this.byId.get(nodeId);
  }

  /**
   * The nodes whose row changed, appeared or left since the previous call, or "all" when every row was
   * read again (or on the first call): what a consumer keeping per-node state must look at again.
   */
  takeChanged(): ReadonlySet<string> | "all" {
    const changed = this.changed;
    this.changed = new Set();
    return changed;
  }

  /** The next look reads every online node again. */
  invalidate(): void {
    this.checkedAtMs = Number.NEGATIVE_INFINITY;
    this.fullAtMs = Number.NEGATIVE_INFINITY;
  }
}

/** Whether two rows of one node would place the same (rows kept as they were, so the placer sees the same object). */
function sameForPlacement(a: NodeRow, b: NodeRow): boolean {
  return a.state === b.state && a.trust_level === b.trust_level && JSON.stringify(a.capabilities) === JSON.stringify(b.capabilities);
}
