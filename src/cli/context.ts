/**
 * What every command action receives besides its options: the client, the
 * output streams and the injected clock and randomness. Actions are plain
 * async functions over this, so tests call them without a process.
 */
import type { Clock } from "../platform/clock.ts";
import type { GpuAgentClient } from "./client.ts";
import type { Io } from "./output.ts";

/** The resources bag of one gpuctl invocation. */
export interface CliContext {
  client: GpuAgentClient;
  io: Io;
  clock: Clock;
  /** Default idempotency keys. */
  randomUUID: () => string;
  /** Where temporary zips are written. */
  tmpDir: string;
}

/** Output mode every command accepts. */
export interface JsonOption {
  json: boolean;
}
