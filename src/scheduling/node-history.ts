/**
 * What the placer's scores know about nodes beyond their capacity: how
 * reliable each has been (attempts completed vs lost to it over a window) and
 * which datasets each already holds. Read from `node_attempts` and
 * `node_datasets` (schema-0002.ts) by the leader's placement cycle.
 *
 * Reliability is aggregated over a 30-day window, so the GROUP BY runs at most
 * once per `refreshMs` rather than on every cycle; a score a few seconds old
 * changes a preference, never a constraint. Dataset holders are read per cycle
 * for the datasets of the waiting units only (an index lookup).
 */
import { ChangedIds } from "../platform/changed-ids.ts";
import type { Clock } from "../platform/clock.ts";
import type { Sql } from "../store/database.ts";
import { readNodeAttemptCounts, readNodesHoldingDatasets } from "../store/nodes.ts";

/**
 * A node's reliability in 0..1: the share of its recent attempts it completed,
 * smoothed by a prior of `priorCompleted` completed and `priorLost` lost
 * attempts. A new node starts at 0.9 with the default prior — trusted, but
 * below a node with a long clean record — and a handful of losses cannot
 * condemn a node that has completed hundreds.
 */
export function nodeReliability(completed: number, lost: number, priorCompleted = 9, priorLost = 1): number {
  const c = Math.max(0, completed) + priorCompleted;
  const l = Math.max(0, lost) + priorLost;
  return c / (c + l);
}

/** How far back reliability looks: a node's record from last season says little about it today. */
export const reliabilityWindowMs = 30 * 86_400_000;

/** Reads and caches node history for placement cycles. */
export class NodeHistory {
  private readonly clock: Clock;
  private readonly refreshMs: number;
  private readonly windowMs: number;
  private readonly datasetWindowMs: number;
  private counts = new Map<string, { completed: number; lost: number }>();
  private readAtMs = Number.NEGATIVE_INFINITY;
  /** Nodes whose counts changed since the last `takeChanged` ("all" before the first read). */
  private readonly changed = new ChangedIds();

  constructor(clock: Clock, options: { refreshMs?: number; windowMs?: number; datasetWindowMs?: number } = {}) {
    this.clock = clock;
    this.refreshMs = options.refreshMs ?? 30_000;
    this.windowMs = options.windowMs ?? reliabilityWindowMs;
    // The agent's input cache is bounded and evicts the least recently used: a hint older than this is not worth a preference.
    this.datasetWindowMs = options.datasetWindowMs ?? 7 * 86_400_000;
  }

  /** Reliability of every node (nodes without history get the prior). */
  async reliability(sql: Sql): Promise<(nodeId: string) => number> {
    const now = this.clock.now();
    if (now - this.readAtMs >= this.refreshMs) {
      const before = this.counts;
      const after = await readNodeAttemptCounts(sql, new Date(now - this.windowMs));
      if (!this.changed.isAll) {
        for (const [nodeId, c] of after) {
          const b = before.get(nodeId);
          if (b === undefined || b.completed !== c.completed || b.lost !== c.lost) this.changed.add(nodeId);
        }
        for (const nodeId of before.keys()) if (!after.has(nodeId)) this.changed.add(nodeId);
      }
      this.counts = after;
      this.readAtMs = now;
    }
    const counts = this.counts;
    return (nodeId) => {
      const c = counts.get(nodeId);
      return c === undefined ? nodeReliability(0, 0) : nodeReliability(c.completed, c.lost);
    };
  }

  /** The nodes whose reliability may have changed since the previous call ("all" on the first). */
  takeChanged(): ReadonlySet<string> | "all" {
    return this.changed.take();
  }

  /** Node id → datasets (among `datasetIds`) it holds. */
  async datasetsByNode(sql: Sql, datasetIds: readonly string[]): Promise<Map<string, Set<string>>> {
    const holders = await readNodesHoldingDatasets(sql, datasetIds, new Date(this.clock.now() - this.datasetWindowMs));
    const byNode = new Map<string, Set<string>>();
    for (const [datasetId, nodeIds] of holders) {
      for (const nodeId of nodeIds) {
        let held = byNode.get(nodeId);
        if (held === undefined) byNode.set(nodeId, (held = new Set()));
        held.add(datasetId);
      }
    }
    return byNode;
  }

  /** Forget the cached counts (tests, or after an operator resets a node's record). */
  invalidate(): void {
    this.readAtMs = Number.NEGATIVE_INFINITY;
    this.changed.all();
  }
}
