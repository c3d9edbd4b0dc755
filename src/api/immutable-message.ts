/**
 * Response messages that will never change, so a protocol may encode each once.
 *
 * A handler that answers many calls with the same data (a cached job view)
 * builds the response message once, freezes it with {@link immutableMessage},
 * and returns that same object every time. The REST transcoder then keeps the
 * JSON text it wrote for it (a WeakMap keyed by the message: gone with it), so
 * the message is neither rebuilt nor re-encoded per call. Handlers stay
 * protocol-agnostic: Connect and gRPC simply encode the frozen message.
 */
import { isMessage } from "@bufbuild/protobuf";
import type { Message } from "@bufbuild/protobuf";

const immutable = new WeakSet<object>();

/** Freezes `message` deeply (nested messages, lists, maps) and marks it immutable; returns it. */
export function immutableMessage<T extends Message>(message: T): T {
  deepFreeze(message);
  immutable.add(message);
  return message;
}

/** True for a message marked by {@link immutableMessage}. */
export function isImmutableMessage(value: unknown): boolean {
  return typeof value === "object" && value !== null && immutable.has(value) && isMessage(value);
}

/** Freezes a message tree. Bytes (typed arrays) cannot be frozen: their contents stay writable by contract only. */
function deepFreeze(value: unknown): void {
  if (typeof value !== "object" || value === null || ArrayBuffer.isView(value)) return;
  Object.freeze(value);
  for (const child of Object.values(value)) deepFreeze(child);
}
