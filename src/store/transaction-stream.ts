/**
 * Streaming the rows of one transaction: a producer reads inside
 * `db.transaction` and emits items, an async generator hands them to the
 * consumer (a streaming rpc), so a long export is one consistent snapshot
 * without being built in memory first.
 *
 * The transaction's callback cannot yield, so the two sides meet in a queue.
 * `maxQueued` bounds it: when full, `emit` waits for the consumer, so memory is
 * bounded and the transaction (and its connection) lives as long as the
 * consumer takes. When the consumer stops early (client gone, error), the
 * producer's next `emit` throws, the transaction rolls back and the generator
 * returns only after it has, so the connection is back in the pool.
 */
import type { Database, Isolation, Sql } from "./database.ts";

/** Options of {@link streamFromTransaction}. */
export interface TransactionStreamOptions {
  readonly isolation: Isolation;
  /** Items queued before `emit` waits for the consumer; `Infinity` never waits. */
  readonly maxQueued: number;
  /**
   * The call's signal. Aborting it stops the producer even if the consumer never
   * resumes or returns the generator, so a cancelled call cannot hold a
   * transaction (and its connection) open.
   */
  readonly signal?: AbortSignal;
}

/** Thrown by `emit` once the consumer has stopped; the producer should let it propagate. */
class ConsumerStopped extends Error {
  constructor() {
    super("the stream's consumer stopped");
    this.name = "ConsumerStopped";
  }
}

/**
 * Runs `produce(tx, emit)` in one transaction and yields what it emits, in
 * order. A producer error is thrown to the consumer at its next pull (items
 * still queued are dropped: a stream that failed must not look complete).
 */
export async function* streamFromTransaction<T>(
  db: Database,
  options: TransactionStreamOptions,
  produce: (tx: Sql, emit: (item: T) => Promise<void>) => Promise<void>,
): AsyncGenerator<T, void, undefined> {
  const queue: T[] = [];
  let finished = false;
  let failure: { error: unknown } | undefined;
  let stopped = false;
  // One waiter per side at most: the consumer waits for an item, the producer for room.
  let wakeConsumer: (() => void) | undefined;
  let wakeProducer: (() => void) | undefined;
  const signalConsumer = (): void => {
    const wake = wakeConsumer;
    wakeConsumer = undefined;
    wake?.();
  };
  const signalProducer = (): void => {
    const wake = wakeProducer;
    wakeProducer = undefined;
    wake?.();
  };

  const emit = async (item: T): Promise<void> => {
    if (stopped) throw new ConsumerStopped();
    queue.push(item);
    signalConsumer();
    while (queue.length >= options.maxQueued && !stopped) {
      await new Promise<void>((resolve) => (wakeProducer = resolve));
    }
    if (stopped) throw new ConsumerStopped();
  };

  const onAbort = (): void => {
    // A cancelled stream ends in an error, never a clean end that would pass for the whole file.
    failure ??= { error: options.signal?.reason ?? new Error("the stream was cancelled") };
    stopped = true;
    signalProducer();
    signalConsumer();
  };
  if (options.signal?.aborted === true) onAbort();
  else options.signal?.addEventListener("abort", onAbort, { once: true });

  const producer = db
    .transaction((tx) => produce(tx, emit), { isolation: options.isolation })
    .then(
      () => {
        finished = true;
      },
      (error: unknown) => {
        if (!(error instanceof ConsumerStopped)) failure = { error };
        finished = true;
      },
    )
    .finally(signalConsumer);

  try {
    for (;;) {
      if (failure !== undefined) throw failure.error;
      if (queue.length > 0) {
        const item = queue.shift() as T;
        signalProducer();
        yield item;
        continue;
      }
      if (finished) return;
      await new Promise<void>((resolve) => (wakeConsumer = resolve));
    }
  } finally {
    options.signal?.removeEventListener("abort", onAbort);
    stopped = true;
    signalProducer();
    // The transaction must have ended (committed or rolled back) before the caller goes on.
    await producer;
  }
}
