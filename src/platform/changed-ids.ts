/**
 * The ids a source changed since its consumer last asked, or "all" when it cannot say which (before its
 * first look, after a reset). FleetCache, NodeHistory and NodeLiveness each keep one, so that the leader's
 * snapshot memo (src/scheduling/node-snapshots.ts) looks again only at the nodes that moved.
 */
export class ChangedIds {
  private ids: Set<string> | "all" = "all";

  /** Whether every id counts as changed: single ids need not be worked out then. */
  get isAll(): boolean {
    return this.ids === "all";
  }

  add(id: string): void {
    if (this.ids !== "all") this.ids.add(id);
  }

  /** Every id counts as changed until the next `take`. */
  all(): void {
    this.ids = "all";
  }

  /** What changed since the previous call; starts afresh. */
  take(): ReadonlySet<string> | "all" {
    const ids = this.ids;
    this.ids = new Set();
    return ids;
  }
}
