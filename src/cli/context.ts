/**
 * What every command action receives besides its options: the SDK clients, the output streams and
 * the injected clock and randomness. Actions are plain async functions over this, so tests call
 * them without a process.
 *
 * Configuration, each setting on its own, first one found wins: the flag (`--url`, `--api-key`,
 * `--admin-token`), the environment (`GPU_AGENT_URL`, `GPU_AGENT_API_KEY`,
 * `GPU_AGENT_ADMIN_TOKEN`), the profile `gpuctl login` wrote (URL and API key; the profile named by
 * `--profile`, else `GPUCTL_PROFILE`, else `default`), the default. The config file is read only
 * when a flag and the environment left something out, and a credential is checked only when a
 * command needs it, so `gpuctl webhooks verify` works with neither.
 */
import { hostname as osHostname } from "node:os";
import type { GpuAgentAdminClient, GpuAgentClient } from "../sdk/index.ts";
import { createGpuAgentAdminClient, createGpuAgentClient } from "../sdk/index.ts";
import type { Clock } from "../platform/clock.ts";
import type { ConfigFile, ConfigStore, Profile } from "./config.ts";
import { DEFAULT_PROFILE, checkProfileName, configFilePath, configStore } from "./config.ts";
import { usageError } from "./errors.ts";
import type { Io } from "./output.ts";
import type { Stdin } from "./terminal.ts";

/** Where gpuctl talks when no flag, environment variable or profile says otherwise. */
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
  /** The user's home directory: the config file is `~/.config/gpuctl/config.json` unless XDG_CONFIG_HOME says otherwise. */
  homeDir: string;
  /** Standard input: passwords, asked for without echo or piped with `--password-stdin`. */
  stdin: Stdin;
  /** gpuctl's version (package.json), printed by `--version`. */
  version: string;
  /** This machine's name, in the name of the key `login` makes (`gpuctl@<hostname>`); default os.hostname(). */
  hostname?: string;
  /** fetch of the SDK's upload and download paths; defaults to the global fetch. */
  fetch?: typeof fetch;
}

/** The connection flags every command inherits. */
export interface ConnectionFlags {
  url?: string | undefined;
  apiKey?: string | undefined;
  adminToken?: string | undefined;
  profile?: string | undefined;
}

/** The profile a command works with, and where it came from. */
export interface ProfileChoice {
  name: string;
  /** True when `--profile` or `GPUCTL_PROFILE` named it (rather than the default). */
  named: boolean;
}

/** The resources bag of one gpuctl invocation. */
export interface CliContext {
  /** The customer client; a usage error (`API_KEY_MISSING`) when no API key is configured. */
  customer(): GpuAgentClient;
  /** The operator client; a usage error (`ADMIN_TOKEN_MISSING`) when no admin token is configured. */
  admin(): GpuAgentAdminClient;
  /** A customer client without credentials (Login) or with a session token (the session-only rpcs). */
  sessionClient(sessionToken?: string): GpuAgentClient;
  /** The API URL this command talks to (flag, environment, profile, default). */
  url(): string;
  /** The profile this command reads and `login`/`logout` write. */
  profile: ProfileChoice;
  /** The profile's stored settings, or undefined when the config file has none by that name. */
  storedProfile(): Profile | undefined;
  /** What gives the API key instead of any profile (`--api-key`, `GPU_AGENT_API_KEY`), if anything does. */
  apiKeyOverride: string | undefined;
  /** The config file. */
  config: ConfigStore;
  /** Re-reads the config file (login and logout change one profile of it and keep the others). */
  readConfig(): ConfigFile;
  io: Io;
  stdin: Stdin;
  clock: Clock;
  /** Default idempotency keys. */
  randomUUID: () => string;
  /** Where temporary zips are written. */
  tmpDir: string;
  hostname: string;
}

/** Output mode every command accepts. */
export interface JsonOption {
  json: boolean;
}

/** Builds the context from the flags and the environment; clients are made, and the config file read, on first use. */
export function createCliContext(flags: ConnectionFlags, deps: CliDeps): CliContext {
  const env = (name: string) => (deps.env[name] === "" ? undefined : deps.env[name]);
  const namedProfile = flags.profile ?? env("GPUCTL_PROFILE");
  const profile: ProfileChoice = { name: checkProfileName(namedProfile ?? DEFAULT_PROFILE), named: namedProfile !== undefined };
  const config = configStore(configFilePath(deps.env, deps.homeDir), deps.randomUUID);
  let stored: { profile: Profile | undefined } | undefined;
  const storedProfile = () => {
    stored ??= { profile: config.read((warning) => deps.io.stderr(warning)).profiles[profile.name] };
    return stored.profile;
  };

  const apiKeyFlagOrEnv = flags.apiKey ?? env("GPU_AGENT_API_KEY");
  const adminToken = flags.adminToken ?? env("GPU_AGENT_ADMIN_TOKEN") ?? "";
  let url: string | undefined;
  const resolveUrl = () => {
    url ??= flags.url ?? env("GPU_AGENT_URL") ?? storedProfile()?.url ?? DEFAULT_BASE_URL;
    return url;
  };
  const common = () => {
    const base = resolveUrl();
    if (!URL.canParse(base) || !/^https?:$/.test(new URL(base).protocol)) throw usageError("INVALID_URL", `not a valid http(s) URL: ${base}`);
    return {
      baseUrl: base,
      clock: deps.clock,
      requestTimeoutMs: REQUEST_TIMEOUT_MS,
      ...(deps.fetch === undefined ? {} : { fetch: deps.fetch }),
    };
  };
  const apiKey = (): string => {
    if (apiKeyFlagOrEnv !== undefined) {
      if (profile.named && flags.apiKey === undefined) deps.io.stderr(`note: GPU_AGENT_API_KEY is set and wins over profile ${profile.name}\n`);
      return apiKeyFlagOrEnv;
    }
    const key = storedProfile()?.api_key;
    if (key !== undefined) return key;
    if (profile.named) {
      throw usageError("PROFILE_NOT_FOUND", `no profile ${profile.name} in ${config.path}: run gpuctl login --profile ${profile.name} --email <email>`);
    }
    throw usageError("API_KEY_MISSING", "no API key: run gpuctl login --email <email>, set GPU_AGENT_API_KEY or pass --api-key");
  };

  let customer: GpuAgentClient | undefined;
  let admin: GpuAgentAdminClient | undefined;
  return {
    customer() {
      customer ??= createGpuAgentClient({ ...common(), apiKey: apiKey() });
      return customer;
    },
    admin() {
      if (adminToken === "") throw usageError("ADMIN_TOKEN_MISSING", "no admin token: set GPU_AGENT_ADMIN_TOKEN or pass --admin-token");
      admin ??= createGpuAgentAdminClient({ ...common(), adminToken });
      return admin;
    },
    sessionClient(sessionToken) {
      return createGpuAgentClient({ ...common(), ...(sessionToken === undefined ? {} : { sessionToken }) });
    },
    url: resolveUrl,
    profile,
    storedProfile,
    apiKeyOverride: flags.apiKey !== undefined ? "--api-key" : apiKeyFlagOrEnv !== undefined ? "GPU_AGENT_API_KEY" : undefined,
    config,
    readConfig: () => config.read(),
    io: deps.io,
    stdin: deps.stdin,
    clock: deps.clock,
    randomUUID: deps.randomUUID,
    tmpDir: deps.tmpDir,
    hostname: deps.hostname ?? osHostname(),
  };
}
