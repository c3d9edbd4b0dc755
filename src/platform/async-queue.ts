/**
 * A bounded async queue: one writer side (`push`), one async-iterator reader.
 * Used as the outbound half of a stream, so one writer serialises messages and
 * a full queue is visible to the producer (flow control) instead of growing
 * memory without bound.
 *
 * `pushReserved` is for items whose room the producer accounted for itself
 * (an agent stream's acks, bounded by its ack window: src/agent-streams/ack-window.ts);
 * `onTake` tells such a producer when the reader made room.
 */
export class AsyncQueue<T> implements AsyncIterable<T> {
  private readonly items: T[] = [];
  private waiter: ((r: IteratorResult<T>) => void) | undefined;
  private closed = false;
  private failure: unknown;
  readonly capacity: number;
  /** Called each time the reader takes an item, and once when the queue closes. */
  onTake: (() => void) | undefined;

  constructor(capacity: number) {
    this.capacity = capacity;
  }

  /** Queued items not yet read. */
  get size(): number {
    return this.items.length;
  }

  get isClosed(): boolean {
    return this.closed;
  }

  /** Adds an item; returns false (dropping nothing) when closed or full. */
  push(item: T): boolean {
    return this.add(item, false);
  }

  /**
   * Adds an item even past `capacity`; false only when closed. For a producer
   * that bounds its own items (it must never exceed a bound of its own).
   */
  pushReserved(item: T): boolean {
    return this.add(item, true);
  }

  private add(item: T, reserved: boolean): boolean {
    if (this.closed) return false;
    if (this.waiter !== undefined) {
      const w = this.waiter;
      this.waiter = undefined;
      w({ value: item, done: false });
      this.onTake?.();
      return true;
    }
    if (!reserved && this.items.length >= this.capacity) return false;
    this.items.push(item);
    return true;
  }

  /** Ends the stream after the queued items (or at once with an error). */
  close(error?: unknown): void {
    if (this.closed) return;
    this.closed = true;
    this.failure = error;
    if (this.waiter !== undefined) {
      const w = this.waiter;
      this.waiter = undefined;
      w({ value: undefined, done: true });
    }
    this.onTake?.();
  }

  async *[Symbol.asyncIterator](): AsyncIterator<T> {
    for (;;) {
      const next = this.items.shift();
      if (next !== undefined) {
        this.onTake?.();
        yield next;
        continue;
      }
      if (this.closed) {
        if (this.failure !== undefined) throw this.failure;
        return;
      }
      const result = await new Promise<IteratorResult<T>>((resolve) => {
        this.waiter = resolve;
      });
      if (result.done === true) {
        if (this.failure !== undefined) throw this.failure;
        return;
      }
      yield result.value;
    }
  }
}
