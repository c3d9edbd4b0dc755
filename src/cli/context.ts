/**
 * What every command action receives besides its options: the SDK clients, the output streams and
 * the injected clock and randomness. Actions are plain async functions over this, so tests call
 * them without a process.
 *
 * Configuration: `--url`, `--api-key` and `--admin-token` win over `GPU_AGENT_URL`,
 * `GPU_AGENT_API_KEY` and `GPU_AGENT_ADMIN_TOKEN`. A credential is checked only when a command
 * needs it, so `gpuctl webhooks verify` works with neither.
 */
import type { GpuAgentAdminClient, GpuAgentClient } from "../sdk/index.ts";
import { createGpuAgentAdminClient, createGpuAgentClient } from "../sdk/index.ts";
import type { Clock } from "../platform/clock.ts";
import { usageError } from "./errors.ts";
import type { Io } from "./output.ts";

/** Where gpuctl talks when neither `--url` nor `GPU_AGENT_URL` says otherwise. */
export const DEFAULT_BASE_URL = "http://127.0.0.1:8080";

/** Deadline of one API call, its 429 retry waits included; uploads and downloads have none. */
export const REQUEST_TIMEOUT_MS = 60_000;

/** What a gpuctl run depends on; `cmd/gpuctl.ts` passes the real ones. */
export interface CliDeps {
  env: Record<string, string | undefined>;
  io: Io;
  clock: Clock;
  randomUUID: () => string;
  tmpDir: string;
  /** fetch of the SDK's upload and download paths; defaults to the global fetch. */
  fetch?: typeof fetch;
}

/** The connection flags every command inherits. */
export interface ConnectionFlags {
  url?: string | undefined;
  apiKey?: string | undefined;
  adminToken?: string | undefined;
}

/** The resources bag of one gpuctl invocation. */
export interface CliContext {
  /** The customer client; a usage error (`API_KEY_MISSING`) when no API key is configured. */
  customer(): GpuAgentClient;
  /** The operator client; a usage error (`ADMIN_TOKEN_MISSING`) when no admin token is configured. */
  admin(): GpuAgentAdminClient;
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

/** Builds the context from the flags and the environment; clients are made on first use. */
export function createCliContext(flags: ConnectionFlags, deps: CliDeps): CliContext {
  const url = flags.url ?? deps.env["GPU_AGENT_URL"] ?? DEFAULT_BASE_URL;
  const apiKey = flags.apiKey ?? deps.env["GPU_AGENT_API_KEY"] ?? "";
  const adminToken = flags.adminToken ?? deps.env["GPU_AGENT_ADMIN_TOKEN"] ?? "";
  const common = () => {
    if (!URL.canParse(url) || !/^https?:$/.test(new URL(url).protocol)) throw usageError("INVALID_URL", `not a valid http(s) URL: ${url}`);
    return {
      baseUrl: url,
      clock: deps.clock,
      requestTimeoutMs: REQUEST_TIMEOUT_MS,
      ...(deps.fetch === undefined ? {} : { fetch: deps.fetch }),
    };
  };
  let customer: GpuAgentClient | undefined;
  let admin: GpuAgentAdminClient | undefined;
  return {
    customer() {
      if (apiKey === "") throw usageError("API_KEY_MISSING", "no API key: set GPU_AGENT_API_KEY or pass --api-key");
      customer ??= createGpuAgentClient({ ...common(), apiKey });
      return customer;
    },
    admin() {
      if (adminToken === "") throw usageError("ADMIN_TOKEN_MISSING", "no admin token: set GPU_AGENT_ADMIN_TOKEN or pass --admin-token");
      admin ??= createGpuAgentAdminClient({ ...common(), adminToken });
      return admin;
    },
    io: deps.io,
    clock: deps.clock,
    randomUUID: deps.randomUUID,
    tmpDir: deps.tmpDir,
  };
}
