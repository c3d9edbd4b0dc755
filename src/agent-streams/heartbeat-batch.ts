/**
 * Group commit of persisted heartbeats. Every local stream persists its node's liveness every few
 * seconds; one UPDATE per node made the database do N writes per interval (thousands per second at
 * 10,000 streams). Here the nodes that come due while a write is in flight wait for the next one, and
 * that one UPDATE covers them all, so the number of writes follows the database's speed, not the
 * fleet's size. A caller's promise settles once its node's row is written, so an acknowledged
 * heartbeat is still a persisted one.
 *
 * Writes start at most once per `spacingMs` (default 250 ms): back to back, small writes kept the
 * database busy all the time, and every other statement (a job's creation, a placement commit) waited
 * behind one; on the embedded database, which runs on this process's thread, that doubled the time to
 * create a job at 10,000 streams. A heartbeat is persisted every few seconds per node, so a quarter
 * second of batching costs liveness nothing.
 */
import type { Clock } from "../platform/clock.ts";
import type { Sql } from "../store/database.ts";
import { touchNodeHeartbeats } from "../store/nodes.ts";

/** Persists heartbeats of many nodes in as few statements as the database's pace allows. */
export interface HeartbeatBatcher {
  /** Records that `nodeId` was heard at `at`; resolves once that is in the database. */
  touch(nodeId: string, at: Date): Promise<void>;
}

interface Batch {
  readonly ids: Set<string>;
  /** The earliest time heard in the batch: the whole batch is written with it, so liveness is never overstated. */
  at: Date;
  readonly done: Promise<void>;
  resolve(): void;
  reject(error: unknown): void;
}

/** Options of {@link createHeartbeatBatcher}. */
export interface HeartbeatBatcherOptions {
  /** Waits between the starts of two writes. */
  clock: Clock;
  /** Least time between the starts of two writes (default 250 ms; 0: back to back). */
  spacingMs?: number;
}

/** Builds a batcher writing through `sql`. */
export function createHeartbeatBatcher(sql: Sql, options: HeartbeatBatcherOptions): HeartbeatBatcher {
  const { clock } = options;
  const spacingMs = options.spacingMs ?? 250;
  let pending: Batch | undefined;
  let writing = false;
  let lastStartedMs = Number.NEGATIVE_INFINITY;

  const newBatch = (at: Date): Batch => {
    let resolve!: () => void;
    let reject!: (error: unknown) => void;
    const done = new Promise<void>((res, rej) => {
      resolve = res;
      reject = rej;
    });
    // A failed write rejects every waiter; nobody may be waiting yet, which must not crash the process.
    done.catch(() => undefined);
    return { ids: new Set(), at, done, resolve, reject };
  };

  const flush = async (): Promise<void> => {
    writing = true;
    try {
      while (pending !== undefined) {
        const wait = lastStartedMs + spacingMs - clock.now();
        if (wait > 0) await clock.sleep(wait);
        const batch = pending;
        pending = undefined;
        lastStartedMs = clock.now();
        try {
          await touchNodeHeartbeats(sql, [...batch.ids], batch.at);
          batch.resolve();
        } catch (error) {
          batch.reject(error);
        }
      }
    } finally {
      writing = false;
    }
  };

  return {
    touch(nodeId, at) {
      pending ??= newBatch(at);
      const batch = pending;
      batch.ids.add(nodeId);
      if (at.getTime() < batch.at.getTime()) batch.at = at;
      // Started on the next microtask so heartbeats handled in the same tick share the first write too.
      if (!writing) {
        writing = true;
        queueMicrotask(() => void flush());
      }
      return batch.done;
    },
  };
}
