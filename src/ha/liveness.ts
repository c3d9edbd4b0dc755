/**
 * Node liveness across replicas. A node's stream lives on one replica, but the leader places on every
 * node: it treats a node as live when its stream is here and recently heard from, or when the node is
 * online and its persisted heartbeat (written by whichever replica holds the stream, throttled to a
 * third of the grace period) is within the grace period.
 *
 * The persisted part is read at most once per `maxAgeMs`, and after the first read in the background:
 * reading every online node's id costs ~10 ms at 10,000 nodes, and a placement cycle that waited for it
 * would add that to every assignment. A set a few seconds old is safe because it only steers the plan:
 * the commit re-checks a node that is not live here against its persisted heartbeat in the same UPDATE
 * that assigns the unit (see `placementCycle`'s commit).
 */
import { ChangedIds } from "../platform/changed-ids.ts";
import type { Clock } from "../platform/clock.ts";
import type { Sql } from "../store/database.ts";
import { findOnlineNodesHeardSince } from "../store/nodes.ts";

/** What liveness needs of a locally held stream. */
export interface LocalStream {
  lastSeenMs: number;
}

/** Options of {@link NodeLiveness}. */
export interface NodeLivenessOptions {
  /** A node silent this long is not live. */
  silenceMs: number;
  /** The stream of a node held by this replica, if any. */
  local: (nodeId: string) => LocalStream | undefined;
  /**
   * How old the persisted-heartbeat set may get before it is read again: by default a tenth of the
   * grace period, between 250 ms and 3 s. The heartbeats it reads are written at most every third of
   * the grace period, so the set is never much staler than the data behind it.
   */
  maxAgeMs?: number;
}

/** Which nodes the leader may place on. */
export class NodeLiveness {
  private readonly clock: Clock;
  private readonly silenceMs: number;
  private readonly local: (nodeId: string) => LocalStream | undefined;
  private readonly maxAgeMs: number;
  private remote = new Set<string>();
  private readAtMs = Number.NEGATIVE_INFINITY;
  private reading: Promise<void> | undefined;
  private failure: unknown;
  /** Nodes whose liveness may have changed since the last `takeChanged` ("all" before that). */
  private readonly changed = new ChangedIds();

  constructor(clock: Clock, options: NodeLivenessOptions) {
    this.clock = clock;
    this.silenceMs = options.silenceMs;
    this.local = options.local;
    this.maxAgeMs = options.maxAgeMs ?? Math.min(3000, Math.max(250, options.silenceMs / 10));
  }

  /** Whether the node's stream is held here and heard from within the grace period. */
  isLocallyLive(nodeId: string): boolean {
    const stream = this.local(nodeId);
    return stream !== undefined && this.clock.now() - stream.lastSeenMs < this.silenceMs;
  }

  /**
   * Whether placement may use the node: its stream is held here, or another replica's persisted heartbeat
   * for it was fresh at the last read. A stream here that fell silent counts until the re-scan closes it
   * (ha/cluster-sessions.ts, within seconds), so that every change of this answer is an event the
   * snapshot memo hears of (`takeChanged`), never the mere passing of time.
   */
  isLive(nodeId: string): boolean {
    return this.local(nodeId) !== undefined || this.remote.has(nodeId);
  }

  /** A stream of this node opened or closed here (the session registry calls this). */
  localChanged(nodeId: string): void {
    this.changed.add(nodeId);
  }

  /**
   * The nodes whose liveness may have changed since the previous call ("all" on the first): streams
   * opened or closed here, and nodes that entered or left the persisted-heartbeat set. A local stream
   * that falls silent counts once the re-scan closes it (ha/cluster-sessions.ts), within seconds.
   */
  takeChanged(): ReadonlySet<string> | "all" {
    return this.changed.take();
  }

  /** A persisted heartbeat older than this says the node is silent. */
  silentBefore(): Date {
    return new Date(this.clock.now() - this.silenceMs);
  }

  /** Settles when no read of persisted heartbeats is in flight. */
  async whenRead(): Promise<void> {
    await this.reading?.catch(() => undefined);
  }

  /**
   * Brings the persisted-heartbeat set up to date: the first call waits for the read; later ones start a
   * read in the background when the set is older than `maxAgeMs` and use the one they have. A background
   * read that failed is reported by the next call.
   */
  async refresh(sql: Sql): Promise<void> {
    if (this.failure !== undefined) {
      const failure = this.failure;
      this.failure = undefined;
      throw failure;
    }
    const now = this.clock.now();
    if (this.reading !== undefined || now - this.readAtMs < this.maxAgeMs) return;
    const first = this.readAtMs === Number.NEGATIVE_INFINITY;
    this.readAtMs = now;
    const reading = findOnlineNodesHeardSince(sql, new Date(now - this.silenceMs)).then(
      (ids) => {
        const before = this.remote;
        if (!this.changed.isAll) {
          for (const id of ids) if (!before.has(id)) this.changed.add(id);
          for (const id of before) if (!ids.has(id)) this.changed.add(id);
        }
        this.remote = ids;
      },
      (error: unknown) => {
        // Read again on the next call rather than trusting an old set for another max age.
        this.readAtMs = Number.NEGATIVE_INFINITY;
        if (first) throw error;
        this.failure = error;
      },
    );
    this.reading = reading.finally(() => {
      this.reading = undefined;
    });
    if (first) await this.reading;
    else this.reading.catch(() => undefined);
  }
}
