/**
 * Helpers of the SDK and CLI tests: the typed rejection of a call, and a clock that does not wait.
 */
import assert from "node:assert/strict";
import type { Clock } from "../../src/platform/clock.ts";
import { GpuAgentError } from "../../src/sdk/index.ts";

/** The GpuAgentError `p` rejects with; fails the test when it resolves or throws anything else. */
export async function rejection(p: Promise<unknown>): Promise<GpuAgentError> {
  const error = await p.then(
    () => assert.fail("expected an error"),
    (e: unknown) => e,
  );
  assert.ok(error instanceof GpuAgentError, `expected a GpuAgentError, got ${String(error)}`);
  return error;
}

/** A clock whose sleeps return at once and are recorded, so retries and polls cost no time. */
export function instantClock(): Clock & { sleeps: number[] } {
  const sleeps: number[] = [];
  let now = Date.UTC(2026, 0, 1);
  return {
    sleeps,
    now: () => now,
    sleep: async (ms) => {
      sleeps.push(ms);
      now += ms;
    },
  };
}
