/**
 * Wakes the job watches of every replica when a job gets events (src/jobs/job-event-feed.ts). The
 * events are stored by whichever replica committed the change — the one holding the node's agent
 * stream for units and logs, the leader for placements, any replica for a cancel — while a watch may
 * be open on another. A commit that appended events tells this database's listeners
 * (src/store/job-events.ts); they publish "job-events" on the cluster bus, which delivers it here in
 * process and to the other replicas by NOTIFY. A replica whose listening connection reconnected may
 * have missed some: it wakes every watch, which re-reads the log (each watch also re-reads at every
 * heartbeat, the backstop for a NOTIFY lost otherwise).
 */
import type { JobEventFeed } from "../jobs/job-event-feed.ts";
import type { Notifier } from "../platform/notifier.ts";
import type { Database } from "../store/database.ts";
import type { ClusterBus } from "./cluster-bus.ts";
import { coalescedPerTurn } from "./cluster-bus.ts";

/** What {@link relayJobEvents} connects. */
export interface JobEventRelayOptions {
  readonly db: Database;
  readonly feed: Pick<JobEventFeed, "notify">;
  readonly bus: Pick<ClusterBus, "publish" | "subscribe">;
  /** Notices that the bus's listening connection reconnected: messages sent meanwhile were missed. */
  readonly busReconnects: Notifier;
}

/** Connects the commits of `db` and the other replicas' to this replica's watches. */
export function relayJobEvents(options: JobEventRelayOptions): void {
  const { bus, feed } = options;
  const publish = coalescedPerTurn((jobIds) => bus.publish({ type: "job-events", jobIds }));
  options.db.jobEventListeners.add(publish);
  bus.subscribe((message) => {
    if (message.type === "job-events") feed.notify(message.jobIds);
  });
  options.busReconnects.listen(() => feed.notify([]));
}
