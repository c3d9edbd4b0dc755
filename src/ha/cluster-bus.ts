/**
 * Messages between replicas, for what must reach the replica that holds a node's agent stream:
 * "dispatch this node's assignments", "cancel this attempt", "drain this node", "close this node's stream", "wake the
 * placer" (the leader may be another replica than the one that took the job), "these jobs changed" (forget
 * cached job views; src/jobs/job-view-cache.ts), and "these jobs got events" (wake the watches of those jobs;
 * src/jobs/job-event-feed.ts).
 *
 * On PostgreSQL they travel by `NOTIFY` (sent through the pool) and are received by `LISTEN` on one
 * dedicated connection per replica. NOTIFY is delivered only to sessions listening at the time, so a
 * replica whose listening connection dropped misses messages: it reconnects with backoff and then calls
 * `onResync`, and every replica also re-scans periodically (see ha/cluster-sessions.ts). On the embedded
 * database there is one replica only, so messages are delivered in-process.
 */
import type { Logger } from "pino";
import type { Clock } from "../platform/clock.ts";
import type { ListeningConnection } from "../store/cluster-notifications.ts";
import { listenOn, notifyChannel } from "../store/cluster-notifications.ts";
import type { Sql } from "../store/database.ts";

/** A message to the replicas. */
export type ClusterMessage =
  | { type: "dispatch"; nodeId: string }
  | { type: "cancel"; nodeId: string; unitId: string; attempt: number; reason: string }
  | { type: "drain"; nodeId: string; reason: string }
  | { type: "close-stream"; nodeId: string }
  | { type: "wake" }
  /** Jobs whose views changed; an empty list means any job (the sender could not name them all). */
  | { type: "jobs-changed"; jobIds: string[] }
  /** Jobs that got new events in their event log (src/store/job-events.ts); an empty list means any job. */
  | { type: "job-events"; jobIds: string[] };

/** Publish and subscribe; a replica receives its own messages once (in-process, never again via NOTIFY). */
export interface ClusterBus {
  /** Sends to every replica, this one included. Never throws: a lost message is caught up by the re-scan. */
  publish(message: ClusterMessage): void;
  /** Adds a handler; every handler receives every message. */
  subscribe(handler: (message: ClusterMessage) => void): void;
  /** Stops listening. */
  close(): Promise<void>;
}

/** The NOTIFY channel. */
export const clusterChannel = "gpuagent_cluster";

/** PostgreSQL caps a NOTIFY payload at 8000 bytes; reasons are cut well below that. */
const maxReasonLength = 300;
/** Job ids named in one "jobs-changed" or "job-events" message (36 bytes each); more are sent as "any job". */
export const maxChangedJobIds = 100;
const uuidPattern = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/** Parses a received payload; undefined for anything malformed (logged by the caller). */
export function parseEnvelope(payload: string): { from: string; message: ClusterMessage } | undefined {
  let value: unknown;
  try {
    value = JSON.parse(payload);
  } catch {
    return undefined;
  }
  if (typeof value !== "object" || value === null) return undefined;
  const v = value as Record<string, unknown>;
  const str = (k: string) => (typeof v[k] === "string" ? (v[k] as string) : undefined);
  const from = str("from");
  if (from === undefined) return undefined;
  switch (v["type"]) {
    case "wake":
      return { from, message: { type: "wake" } };
    case "jobs-changed":
    case "job-events": {
      const ids = v["jobIds"];
      if (!Array.isArray(ids) || !ids.every((id) => typeof id === "string" && uuidPattern.test(id))) return undefined;
      return { from, message: { type: v["type"], jobIds: ids as string[] } };
    }
    case "dispatch":
    case "close-stream": {
      const nodeId = str("nodeId");
      return nodeId === undefined ? undefined : { from, message: { type: v["type"], nodeId } };
    }
    case "drain": {
      const nodeId = str("nodeId");
      return nodeId === undefined ? undefined : { from, message: { type: "drain", nodeId, reason: str("reason") ?? "" } };
    }
    case "cancel": {
      const nodeId = str("nodeId");
      const unitId = str("unitId");
      const attempt = v["attempt"];
      if (nodeId === undefined || unitId === undefined || typeof attempt !== "number" || !Number.isInteger(attempt)) return undefined;
      return { from, message: { type: "cancel", nodeId, unitId, attempt, reason: str("reason") ?? "" } };
    }
    default:
      return undefined;
  }
}

function envelope(from: string, message: ClusterMessage): string {
  const m =
    message.type === "cancel" || message.type === "drain"
      ? { ...message, reason: message.reason.slice(0, maxReasonLength) }
      : (message.type === "jobs-changed" || message.type === "job-events") && message.jobIds.length > maxChangedJobIds
        ? { ...message, jobIds: [] }
        : message;
  return JSON.stringify({ from, ...m });
}

/** The single-replica bus (embedded database): delivery in-process only. */
export function createLocalBus(logger: Logger): ClusterBus {
  const handlers = new Set<(message: ClusterMessage) => void>();
  return {
    publish(message) {
      // Asynchronous like a NOTIFY, so a publisher never re-enters its own handler mid-operation.
      queueMicrotask(() => deliverTo(handlers, message, logger));
    },
    subscribe(h) {
      handlers.add(h);
    },
    async close() {
      handlers.clear();
    },
  };
}

function deliverTo(handlers: ReadonlySet<(message: ClusterMessage) => void>, message: ClusterMessage, logger: Logger): void {
  for (const handler of handlers) {
    try {
      handler(message);
    } catch (error) {
      logger.error({ err: error }, "cluster message handler failed");
    }
  }
}

/** Options of {@link createPgBus}. */
export interface PgBusOptions {
  /** The PostgreSQL URL (the listening connection is opened separately from the pool). */
  url: string;
  /** Where NOTIFYs are sent (the pool). */
  sql: Sql;
  replicaId: string;
  clock: Clock;
  logger: Logger;
  /** Called after the listening connection (re)connects: messages sent meanwhile were missed. */
  onResync?: () => void;
}

/** The multi-replica bus over LISTEN/NOTIFY; resolves once the first LISTEN is in place. */
export async function createPgBus(options: PgBusOptions): Promise<ClusterBus> {
  const { url, sql, replicaId, clock, logger } = options;
  const handlers = new Set<(message: ClusterMessage) => void>();
  const stop = new AbortController();
  let client: ListeningConnection | undefined;

  const deliver = (message: ClusterMessage) => deliverTo(handlers, message, logger);

  const connect = (): Promise<ListeningConnection> =>
    listenOn(url, `gpu-agent-listen-${replicaId}`, clusterChannel, (payload) => {
      const parsed = parseEnvelope(payload);
      if (parsed === undefined) {
        logger.warn({ payload: payload.slice(0, 200) }, "malformed cluster message ignored");
        return;
      }
      // Our own messages were delivered in-process when published.
      if (parsed.from !== replicaId) deliver(parsed.message);
    });

  // Keeps one listening connection; on loss, reconnects with capped backoff and asks for a re-scan.
  const keepListening = async (first: ListeningConnection) => {
    let current: ListeningConnection | undefined = first;
    let backoffMs = 100;
    while (!stop.signal.aborted) {
      if (current === undefined) {
        try {
          current = await connect();
          client = current;
          backoffMs = 100;
          logger.info("cluster bus: listening again; re-scanning");
          options.onResync?.();
        } catch (error) {
          logger.warn({ err: error }, "cluster bus: cannot listen; retrying");
          await clock.sleep(backoffMs, stop.signal).catch(() => undefined);
          backoffMs = Math.min(backoffMs * 2, 5000);
          continue;
        }
      }
      const c: ListeningConnection = current;
      await new Promise<void>((resolve) => {
        const done = () => resolve();
        c.once("error", (error: Error) => {
          if (!stop.signal.aborted) logger.warn({ err: error }, "cluster bus: listening connection failed");
          done();
        });
        c.once("end", done);
        stop.signal.addEventListener("abort", done, { once: true });
      });
      await c.end().catch(() => undefined);
      current = undefined;
      client = undefined;
    }
  };

  const first = await connect();
  client = first;
  const listening = keepListening(first);

  return {
    publish(message) {
      // The local replica may hold the stream itself: deliver here without a round trip.
      queueMicrotask(() => deliver(message));
      notifyChannel(sql, clusterChannel, envelope(replicaId, message)).catch((error: unknown) => {
        logger.warn({ err: error, type: message.type }, "cluster bus: NOTIFY failed; the periodic re-scan will catch up");
      });
    },
    subscribe(h) {
      handlers.add(h);
    },
    async close() {
      handlers.clear();
      stop.abort();
      await client?.end().catch(() => undefined);
      await listening;
    },
  };
}

/**
 * Collects the ids given during one turn of the event loop and sends them once, at its end: one NOTIFY per
 * turn, not one per transaction. More ids than a NOTIFY holds travel as "any job" (see {@link maxChangedJobIds}).
 */
export function coalescedPerTurn(send: (jobIds: string[]) => void): (jobIds: readonly string[]) => void {
  let collecting: Set<string> | undefined;
  return (jobIds) => {
    if (collecting === undefined) {
      const ids = new Set<string>();
      collecting = ids;
      setImmediate(() => {
        collecting = undefined;
        send([...ids]);
      });
    }
    for (const id of jobIds) collecting.add(id);
  };
}
