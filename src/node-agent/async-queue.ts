/**
 * A bounded single-consumer async queue: the request side of the agent's
 * stream. The writer awaits `put` while the queue is full, so a slow
 * connection pushes back on the writer instead of growing memory; the
 * transport pulls items through the async iterator. `close()` ends the
 * iteration (the stream's half-close) and wakes every waiter.
 */

/** A bounded async queue that is also the async iterable fed to a stream. */
export interface AsyncQueue<T> extends AsyncIterable<T> {
  /**
   * Adds an item, waiting while the queue is full. Resolves false when the
   * queue was closed (before or while waiting): the item was not queued.
   */
  put(item: T): Promise<boolean>;
  /** Ends the queue: the iterator finishes after the items already queued are dropped. */
  close(): void;
  /** True once closed. */
  readonly closed: boolean;
  /** Items waiting to be read. */
  readonly size: number;
}

/** Creates an AsyncQueue holding at most `capacity` items. */
export function createAsyncQueue<T>(capacity: number): AsyncQueue<T> {
  if (!Number.isInteger(capacity) || capacity < 1) throw new RangeError("capacity must be a positive integer");
  const items: T[] = [];
  let closed = false;
  // At most one reader (a stream has one consumer); many writers may wait.
  let reader: (() => void) | undefined;
  const writers: (() => void)[] = [];

  const wakeReader = () => {
    const r = reader;
    reader = undefined;
    r?.();
  };
  const wakeWriter = () => writers.shift()?.();

  return {
    get closed() {
      return closed;
    },
    get size() {
      return items.length;
    },
    async put(item) {
      while (!closed && items.length >= capacity) {
        await new Promise<void>((resolve) => writers.push(resolve));
      }
      if (closed) return false;
      items.push(item);
      wakeReader();
      return true;
    },
    close() {
      if (closed) return;
      closed = true;
      // Dropping unread items is right here: whatever mattered is still in the
      // session's outbox and is re-sent on the next stream.
      items.length = 0;
      wakeReader();
      while (writers.length > 0) wakeWriter();
    },
    async *[Symbol.asyncIterator]() {
      for (;;) {
        if (closed) return;
        if (items.length > 0) {
          const item = items.shift() as T;
          wakeWriter();
          yield item;
          continue;
        }
        await new Promise<void>((resolve) => {
          reader = resolve;
        });
      }
    },
  };
}
