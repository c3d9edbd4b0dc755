/**
 * Keeps the job-view caches of every replica in step with the commits
 * (src/jobs/job-view-cache.ts says what that guarantees). A transaction that
 * changed jobs (src/jobs/job-changes.ts) makes this replica forget their views
 * at once; the other replicas hear it over the cluster bus and forget them
 * too, and forget everything when their listening connection reconnects (they
 * may have missed some). On the embedded database this replica is the only one.
 */
import { onJobsChanged } from "../jobs/job-changes.ts";
import type { JobViewCache } from "../jobs/job-view-cache.ts";
import type { Notifier } from "../platform/notifier.ts";
import type { Database } from "../store/database.ts";
import type { ClusterBus } from "./cluster-bus.ts";
import { coalescedPerTurn } from "./cluster-bus.ts";

/** What {@link relayJobViewChanges} connects. */
export interface JobViewRelayOptions {
  readonly db: Database;
  readonly jobViews: JobViewCache;
  readonly bus: Pick<ClusterBus, "publish" | "subscribe">;
  /** Whether other replicas share the database (PostgreSQL); false on the embedded database. */
  readonly otherReplicas: boolean;
  /** Notices that the bus's listening connection reconnected: messages sent meanwhile were missed. */
  readonly busReconnects: Notifier;
}

/** Connects this replica's job-view cache to the commits of `db` and to the other replicas. */
export function relayJobViewChanges(options: JobViewRelayOptions): void {
  const { jobViews, bus } = options;
  const toOtherReplicas = coalescedPerTurn((jobIds) => bus.publish({ type: "jobs-changed", jobIds }));
  onJobsChanged(options.db, (jobIds) => {
    jobViews.invalidate(jobIds);
    if (options.otherReplicas) toOtherReplicas(jobIds);
  });
  bus.subscribe((message) => {
    if (message.type !== "jobs-changed") return;
    if (message.jobIds.length === 0) jobViews.clear();
    else jobViews.invalidate(message.jobIds);
  });
  options.busReconnects.listen(() => jobViews.clear());
}
