/**
 * The online nodes' rows for placement cycles, kept in memory and brought up
 * to date with the rows that changed since the last look, instead of reading
 * every online node every cycle: at 10,000 nodes that read costs the embedded
 * database 100-150 ms, and under a steady stream of jobs the leader runs a
 * cycle per job.
 *
 * How it stays right: `nodes.placement_changed_at` moves (by trigger, see
 * schema-0004.ts and schema-0007.ts) whenever a node's state, trust level,
 * capabilities, isolation or owner's controls (pause, window, reserved VRAM)
 * change. At most once per `maxAgeMs` the cache reads the rows whose stamp is
 * newer than its last read minus `overlapMs` (a change stamped before that
 * read but committed after it is still caught, as long as no transaction that
 * changes a node stays open longer than the overlap), and every `fullEveryMs`
 * it reads all online nodes again as a backstop, in the background. Times
 * come from the database's clock only: the stamps are the database's, so the
 * "changed since" watermark must be too (`readDatabaseClock` in store/nodes.ts).
 *
 * What may be stale, and why that is safe: free resources are not taken from
 * here (the cycle sums the units held on each node afresh), liveness comes
 * from the streams (`isLive`), and the commit re-checks state and trust
 * against the fresh row in the same UPDATE that assigns the unit (and the
 * owner's pause and window, and the isolation a sensitive unit needs). So a
 * stale row can at worst leave a just-connected or just-resumed node unused,
 * or plan onto a just-cordoned or just-paused one whose assignment the commit
 * then refuses, for at most `maxAgeMs`. (A reserve that grew is the one
 * change the commit does not re-check, as it re-checks no capacity: for at
 * most `maxAgeMs` a unit may be planned into VRAM its owner just reserved.)
 */
import { ChangedIds } from "../platform/changed-ids.ts";
import type { Clock } from "../platform/clock.ts";
import type { Sql } from "../store/database.ts";
import type { NodeRow } from "../store/nodes.ts";
import { listNodesChangedSince, listOnlineNodes, readDatabaseClock } from "../store/nodes.ts";

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
   * Date would cut PostgreSQL's microseconds to milliseconds, and a change
   * stamped earlier in the same millisecond would be read again. (The embedded
   * PGlite's clock itself ticks in milliseconds; re-reading a row stamped at
   * the instant of a read is the price of never missing one.)
   */
  private lastReadAt: string | undefined;
  /** The periodic full read, while it is in flight. */
  private fullRead: Promise<void> | undefined;
  /** Nodes whose row changed, appeared or left since the last `takeChanged` ("all" after the first read). */
  private readonly changed = new ChangedIds();
  /** Rows read so far (full and incremental), for tests and diagnostics. */
  rowsRead = 0;

  constructor(clock: Clock, options: FleetCacheOptions = {}) {
    this.clock = clock;
    this.maxAgeMs = options.maxAgeMs ?? 1000;
    this.overlapMs = options.overlapMs ?? 10_000;
    this.fullEveryMs = options.fullEveryMs ?? 60_000;
  }

  /**
   * The online nodes, brought up to date when the copy is older than `maxAgeMs`. The first look reads
   * every online node and waits for it; the periodic full read after that runs in the background
   * (reading and parsing 10,000 rows takes tens of milliseconds, which the cycle of the job that
   * happened to be waiting would otherwise pay) while this look reads the changed rows as usual.
   */
  async onlineNodes(sql: Sql): Promise<readonly NodeRow[]> {
    const now = this.clock.now();
    if (now - this.checkedAtMs < this.maxAgeMs) return this.rows;
    // Taken before the read, so the next look reaches back at least to what this one might have missed.
    const readAt = await readDatabaseClock(sql);
    if (this.lastReadAt === undefined) {
      const all = await listOnlineNodes(sql);
      this.byId.clear();
      for (const row of all) this.byId.set(row.id, row);
      this.rows = [...this.byId.values()];
      this.rowsRead += all.length;
      this.fullAtMs = now;
      this.changed.all();
    } else {
      if (now - this.fullAtMs >= this.fullEveryMs && this.fullRead === undefined) this.startFullRead(sql, now);
      const changed = await listNodesChangedSince(sql, this.lastReadAt, this.overlapMs);
      this.rowsRead += changed.length;
      this.apply(changed, false);
    }
    this.lastReadAt = readAt;
    this.checkedAtMs = now;
    return this.rows;
  }

  /** Settles when no background full read is in flight (tests). */
  async whenRead(): Promise<void> {
    await this.fullRead;
  }

  /**
   * Every online node read again off the cycle's path. It may land after an incremental read that saw
   * newer rows; so the next look reads again everything changed since this read began.
   */
  private startFullRead(sql: Sql, now: number): void {
    this.fullAtMs = now;
    this.fullRead = (async () => {
      try {
        const readAt = await readDatabaseClock(sql);
        const all = await listOnlineNodes(sql);
        this.rowsRead += all.length;
        this.apply(all, true);
        this.lastReadAt = readAt;
        this.checkedAtMs = Number.NEGATIVE_INFINITY;
      } catch {
        // The backstop is tried again at the next look; the incremental reads go on meanwhile.
        this.fullAtMs = Number.NEGATIVE_INFINITY;
      } finally {
        this.fullRead = undefined;
      }
    })();
  }

  /**
   * Applies rows read from the database: an online row replaces the copy's unless it is the same for
   * placement (so an unchanged node keeps its object); a row no longer online leaves. With `complete`,
   * the rows are every online node, and a node missing from them leaves too.
   */
  private apply(rows: readonly NodeRow[], complete: boolean): void {
    let moved = false;
    const note = (id: string) => {
      moved = true;
      this.changed.add(id);
    };
    for (const row of rows) {
      const before = this.byId.get(row.id);
      if (row.state === "online") {
        if (before !== undefined && sameForPlacement(before, row)) continue;
        this.byId.set(row.id, row);
        note(row.id);
      } else if (before !== undefined) {
        this.byId.delete(row.id);
        note(row.id);
      }
    }
    if (complete) {
      const online = new Set(rows.map((r) => r.id));
      for (const id of [...this.byId.keys()]) {
        if (online.has(id)) continue;
        this.byId.delete(id);
        note(id);
      }
    }
    if (moved) this.rows = [...this.byId.values()];
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
    return this.changed.take();
  }

  /** The next look reads every online node again, and waits for it. */
  invalidate(): void {
    this.checkedAtMs = Number.NEGATIVE_INFINITY;
    this.lastReadAt = undefined;
  }
}

/** Whether two rows of one node would place the same (rows kept as they were, so the placer sees the same object). */
function sameForPlacement(a: NodeRow, b: NodeRow): boolean {
  return (
    a.state === b.state &&
    a.trust_level === b.trust_level &&
    a.isolation === b.isolation &&
    a.owner_paused === b.owner_paused &&
    a.owner_within_window === b.owner_within_window &&
    a.reserved_vram_mb === b.reserved_vram_mb &&
    JSON.stringify(a.capabilities) === JSON.stringify(b.capabilities)
  );
}
