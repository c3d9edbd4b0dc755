/**
 * A named notice between two parts of the control plane that cannot be built
 * in an order where each holds the other: the part that sends and the part
 * that listens both take the notifier, which is built before either. (The
 * agent streams wake the placer, whose leader loop is built from the streams;
 * the cluster bus's reconnects re-scan the streams, which are built on the bus.)
 *
 * A notice sent while nobody listens is dropped: nobody could act on it yet.
 */
export class Notifier {
  readonly #listeners: (() => void)[] = [];

  /** Calls every listener, in the order they were added. */
  notify(): void {
    for (const listener of this.#listeners) listener();
  }

  /** Adds a listener for every later notice. */
  listen(listener: () => void): void {
    this.#listeners.push(listener);
  }
}
