/**
 * One typed configuration for the control plane, parsed from the environment
 * in cmd/ and passed down; nothing below cmd/ reads process.env.
 */
import { join } from "node:path";

/**
 * Relative importance of the placer's score plugins (src/placer/plugins/); only the ratios matter.
 * A config type, so it lives here and the pure placer imports it.
 */
export interface ScoreWeights {
  binPack: number;
  reliability: number;
  dataLocality: number;
  /** GPU fragmentation against the arriving work (plugins/gpu-fragmentation.ts); absent: 0, that score off. */
  gpuFragmentation?: number;
  /** Keeping each GPU model for the constrained work that needs it (plugins/gpu-scarcity.ts); absent: 0, that score off. */
  gpuScarcity?: number;
}

/** Limits from seed 001 plus upload bounds. */
export interface LimitsConfig {
  jobCreationsPerMinute: number;
  activeJobs: number;
  computeUnitsPerDay: number;
  datasetMaxBytes: number;
  packageMaxBytes: number;
  packageMaxEntries: number;
  uploadUrlTtlSeconds: number;
  downloadUrlTtlSeconds: number;
  /** Storage each customer may hold (docs/limits.md, "Storage per customer"). */
  storage: StorageQuotas;
  /** Sign-in throttling (docs/limits.md, "Sign-in attempts"; src/auth/login-throttle.ts). */
  login: LoginLimits;
}

/** Sign-in throttling: per (client address, e-mail) pair, and per address over all e-mails. */
export interface LoginLimits {
  /** The attempt that brings one e-mail's consecutive failures from one address to this locks that pair. */
  failuresBeforeLock: number;
  /** The pair's first lock; each further failure doubles it, up to `maxLockSeconds`. */
  lockSeconds: number;
  maxLockSeconds: number;
  /** Failed sign-ins one address may make over all e-mails per 10 minutes; 0 turns this budget off. */
  failuresPerAddress: number;
}

/**
 * Per-customer storage quotas, the per-unit artifact bound and artifact retention. Counts and
 * bytes are of what a customer holds now: datasets and packages not deleted (an upload reserves
 * its declared size from creation), artifacts not expired.
 */
export interface StorageQuotas {
  datasetsMaxCount: number;
  datasetsMaxBytes: number;
  packagesMaxCount: number;
  packagesMaxBytes: number;
  artifactsMaxCount: number;
  artifactsMaxBytes: number;
  /** Total bytes of the artifacts one compute-unit attempt may upload (the agent checks before uploading, the upload route exactly). */
  unitArtifactsMaxBytes: number;
  /** Artifacts of a finished job are removed this many days after it ended. */
  artifactRetentionDays: number;
  /** How often each replica sweeps expired artifacts and blobs left to delete. */
  sweepIntervalSeconds: number;
}

/** Workload rates: credits per started minute of run time. */
export interface RatesConfig {
  cpuCreditsPerMinute: number;
  gpuCreditsPerMinute: number;
}

/** Agent stream timing. */
export interface AgentsConfig {
  heartbeatIntervalSeconds: number;
  /** Without a heartbeat for this long a node is unreachable and its units are re-queued. */
  unreachableAfterSeconds: number;
  /** An Assign not accepted within this time is taken back and re-placed. */
  assignAckTimeoutSeconds: number;
  maxAttempts: number;
}

/** TLS for the one port (HTTPS and gRPC over TLS); absent → cleartext. */
export interface TlsConfig {
  certFile: string;
  keyFile: string;
  /** CA bundle for client certificates. */
  caFile?: string;
  /** Mutual TLS: every client must present a certificate from `caFile`. */
  requireClientCert: boolean;
}

/** Live job events: WatchTrainingJob and its REST form (docs/limits.md, "Live job events"). */
export interface JobEventsConfig {
  /** A watch with nothing to send for this long sends a heartbeat (an SSE comment over REST). */
  heartbeatMs: number;
  /** Watches one customer may hold open on one replica; one more is RATE_LIMITED. */
  watchesPerCustomer: number;
}

/** Default live-event settings. */
export const defaultJobEvents: JobEventsConfig = { heartbeatMs: 15_000, watchesPerCustomer: 10 };

/** Live-event settings from `GPU_AGENT_EVENTS_HEARTBEAT_MS` and `GPU_AGENT_EVENTS_WATCHES_PER_CUSTOMER` (docs/limits.md). */
export function jobEventsConfigFromEnv(env: NodeJS.ProcessEnv): JobEventsConfig {
  return {
    heartbeatMs: intFrom(env, "GPU_AGENT_EVENTS_HEARTBEAT_MS", defaultJobEvents.heartbeatMs, { min: 10 }),
    watchesPerCustomer: intFrom(env, "GPU_AGENT_EVENTS_WATCHES_PER_CUSTOMER", defaultJobEvents.watchesPerCustomer, { min: 1 }),
  };
}

/** Everything the scheduler process needs. */
export interface SchedulerConfig {
  host: string;
  port: number;
  tls?: TlsConfig;
  /** Base URL that signed URLs point to (what agents and customers can reach). */
  publicUrl: string;
  dataDir: string;
  /** PostgreSQL URL; absent → embedded PGlite in dataDir. */
  databaseUrl: string | undefined;
  /** etcd endpoints; empty → this replica is always leader. */
  etcdEndpoints: string[];
  replicaId: string;
  adminToken: string | undefined;
  blobDir: string;
  placementIntervalMs: number;
  limits: LimitsConfig;
  rates: RatesConfig;
  agents: AgentsConfig;
  /** Relative weights of the placer's scores; absent → the placer's defaults (src/placer/README.md). */
  placerWeights?: ScoreWeights;
  build: string;
  /** Bounds and timeouts of the port; absent → {@link defaultTransport}. */
  transport?: TransportConfig;
  /** Live job events; absent → {@link defaultJobEvents}. */
  events?: JobEventsConfig;
}

/**
 * Request-size bounds, timeouts and connection caps of the one port
 * (src/server/http-server.ts; docs/limits.md lists each with its variable).
 */
export interface TransportConfig {
  /** Largest REST body and Customer/Admin rpc message, in bytes after decompression. */
  maxBodyBytes: number;
  /** Largest AgentService message (Enroll, each Session stream message), in bytes after decompression. */
  maxAgentMessageBytes: number;
  /** Until a connection's first bytes, a request's headers, or a TLS handshake are complete. */
  headersTimeoutMs: number;
  /** A request whose body is not complete and receives nothing for this long is cut (agent Session streams excepted). */
  bodyTimeoutMs: number;
  /** HTTP/1.1: an idle keep-alive connection is closed after this long. */
  keepAliveTimeoutMs: number;
  /** HTTP/2: a connection without an open stream for this long is closed (GOAWAY). */
  http2IdleTimeoutMs: number;
  /** SETTINGS_MAX_CONCURRENT_STREAMS of HTTP/2 connections. */
  maxConcurrentStreams: number;
  /** The same, once a connection has carried an AgentService rpc. */
  agentMaxConcurrentStreams: number;
  /** Open connections one client address may hold; 0 = no cap. */
  maxConnectionsPerAddress: number;
  /** Open HTTP/2 streams one client address may hold over all its connections; 0 = no cap. */
  maxStreamsPerAddress: number;
}

/** Default transport bounds (docs/limits.md). */
export const defaultTransport: TransportConfig = {
  maxBodyBytes: 1024 * 1024,
  maxAgentMessageBytes: 4 * 1024 * 1024,
  headersTimeoutMs: 30_000,
  bodyTimeoutMs: 30_000,
  keepAliveTimeoutMs: 5_000,
  http2IdleTimeoutMs: 60_000,
  maxConcurrentStreams: 100,
  agentMaxConcurrentStreams: 8,
  maxConnectionsPerAddress: 256,
  maxStreamsPerAddress: 512,
};

/** Documented defaults (seed 001 for the limits). */
export const defaultLimits: LimitsConfig = {
  jobCreationsPerMinute: 10,
  activeJobs: 3,
  computeUnitsPerDay: 200,
  datasetMaxBytes: 10 * 1024 ** 3,
  packageMaxBytes: 512 * 1024 ** 2,
  packageMaxEntries: 10_000,
  uploadUrlTtlSeconds: 3600,
  downloadUrlTtlSeconds: 900,
  storage: {
    datasetsMaxCount: 100,
    datasetsMaxBytes: 100 * 1024 ** 3,
    packagesMaxCount: 100,
    packagesMaxBytes: 10 * 1024 ** 3,
    artifactsMaxCount: 10_000,
    artifactsMaxBytes: 100 * 1024 ** 3,
    unitArtifactsMaxBytes: 2 * 1024 ** 3,
    artifactRetentionDays: 30,
    sweepIntervalSeconds: 300,
  },
  login: { failuresBeforeLock: 5, lockSeconds: 30, maxLockSeconds: 15 * 60, failuresPerAddress: 20 },
};

/** Default workload rates. */
export const defaultRates: RatesConfig = { cpuCreditsPerMinute: 1, gpuCreditsPerMinute: 10 };

/** Default agent timings. */
export const defaultAgents: AgentsConfig = {
  heartbeatIntervalSeconds: 5,
  unreachableAfterSeconds: 30,
  assignAckTimeoutSeconds: 30,
  maxAttempts: 3,
};

/** The largest value an int32 field (of the config message, of HTTP/2 settings) can carry. */
const int32Max = 2 ** 31 - 1;

/** A non-negative integer setting, within `[min, max]` when given (checked on the value in force, default included). */
function intFrom(env: NodeJS.ProcessEnv, name: string, fallback: number, range: { min?: number; max?: number } = {}): number {
  const raw = env[name];
  let value = fallback;
  if (raw !== undefined && raw !== "") {
    value = Number(raw);
    if (!Number.isInteger(value) || value < 0) throw new Error(`${name} must be a non-negative integer, got ${JSON.stringify(raw)}`);
  }
  if (range.min !== undefined && value < range.min) throw new Error(`${name} must be at least ${range.min}`);
  if (range.max !== undefined && value > range.max) throw new Error(`${name} must be at most ${range.max}, got ${value}`);
  return value;
}

/**
 * `GPU_AGENT_PLACER_WEIGHTS=bin_pack=0.7,reliability=0.1,data_locality=0.05,gpu_fragmentation=0.3,gpu_scarcity=0.2`:
 * every score named once (`gpu_fragmentation` and `gpu_scarcity` may be left out: 0, as before those scores
 * existed, so a value set before them keeps planning as it did), finite and non-negative, not all zero (only
 * their ratios matter). Unset: undefined, and the placer's defaults apply (`defaultWeights`, which include both).
 */
export function placerWeightsFrom(raw: string | undefined): ScoreWeights | undefined {
  if (raw === undefined || raw.trim() === "") return undefined;
  const names: Record<string, keyof ScoreWeights> = {
    bin_pack: "binPack",
    reliability: "reliability",
    data_locality: "dataLocality",
    gpu_fragmentation: "gpuFragmentation",
    gpu_scarcity: "gpuScarcity",
  };
  const optional = new Set(["gpu_fragmentation", "gpu_scarcity"]);
  const weights: Partial<ScoreWeights> = {};
  for (const part of raw.split(",")) {
    const [name, value, extra] = part.split("=").map((x) => x.trim());
    const key = names[name ?? ""];
    const n = Number(value);
    if (key === undefined || extra !== undefined || value === undefined || value === "" || !Number.isFinite(n) || n < 0) {
      throw new Error(`GPU_AGENT_PLACER_WEIGHTS: "${part}" is not one of bin_pack=N, reliability=N, data_locality=N, gpu_fragmentation=N, gpu_scarcity=N with N ≥ 0`);
    }
    if (weights[key] !== undefined) throw new Error(`GPU_AGENT_PLACER_WEIGHTS: ${name} is given twice`);
    weights[key] = n;
  }
  const missing = Object.keys(names).filter((name) => !optional.has(name) && weights[names[name]!] === undefined);
  if (missing.length > 0) throw new Error(`GPU_AGENT_PLACER_WEIGHTS: missing ${missing.join(", ")}`);
  const complete = weights as ScoreWeights;
  if (complete.binPack + complete.reliability + complete.dataLocality + (complete.gpuFragmentation ?? 0) + (complete.gpuScarcity ?? 0) === 0) {
    throw new Error("GPU_AGENT_PLACER_WEIGHTS: the weights may not all be zero");
  }
  return complete;
}

/** The storage quotas from `GPU_AGENT_QUOTA_*`, `GPU_AGENT_UNIT_ARTIFACT_BYTES`, `GPU_AGENT_ARTIFACT_RETENTION_DAYS` (docs/limits.md). */
export function storageQuotasFromEnv(env: NodeJS.ProcessEnv): StorageQuotas {
  const d = defaultLimits.storage;
  // Counts and days are int32 fields of the config message; a sweep every 0 s would spin.
  const quotas: StorageQuotas = {
    datasetsMaxCount: intFrom(env, "GPU_AGENT_QUOTA_DATASETS", d.datasetsMaxCount, { max: int32Max }),
    datasetsMaxBytes: intFrom(env, "GPU_AGENT_QUOTA_DATASET_BYTES", d.datasetsMaxBytes),
    packagesMaxCount: intFrom(env, "GPU_AGENT_QUOTA_PACKAGES", d.packagesMaxCount, { max: int32Max }),
    packagesMaxBytes: intFrom(env, "GPU_AGENT_QUOTA_PACKAGE_BYTES", d.packagesMaxBytes),
    artifactsMaxCount: intFrom(env, "GPU_AGENT_QUOTA_ARTIFACTS", d.artifactsMaxCount, { max: int32Max }),
    artifactsMaxBytes: intFrom(env, "GPU_AGENT_QUOTA_ARTIFACT_BYTES", d.artifactsMaxBytes),
    unitArtifactsMaxBytes: intFrom(env, "GPU_AGENT_UNIT_ARTIFACT_BYTES", d.unitArtifactsMaxBytes),
    artifactRetentionDays: intFrom(env, "GPU_AGENT_ARTIFACT_RETENTION_DAYS", d.artifactRetentionDays, { max: int32Max }),
    sweepIntervalSeconds: intFrom(env, "GPU_AGENT_STORAGE_SWEEP_SECONDS", d.sweepIntervalSeconds, { min: 1 }),
  };
  return quotas;
}

/** Sign-in throttling from `GPU_AGENT_LOGIN_*` (docs/limits.md). */
export function loginLimitsFromEnv(env: NodeJS.ProcessEnv): LoginLimits {
  const d = defaultLimits.login;
  const login: LoginLimits = {
    failuresBeforeLock: intFrom(env, "GPU_AGENT_LOGIN_FAILURES_BEFORE_LOCK", d.failuresBeforeLock, { min: 1 }),
    lockSeconds: intFrom(env, "GPU_AGENT_LOGIN_LOCK_SECONDS", d.lockSeconds, { min: 1 }),
    maxLockSeconds: intFrom(env, "GPU_AGENT_LOGIN_MAX_LOCK_SECONDS", d.maxLockSeconds),
    failuresPerAddress: intFrom(env, "GPU_AGENT_LOGIN_FAILURES_PER_ADDRESS", d.failuresPerAddress),
  };
  if (login.maxLockSeconds < login.lockSeconds) throw new Error("GPU_AGENT_LOGIN_MAX_LOCK_SECONDS must be at least GPU_AGENT_LOGIN_LOCK_SECONDS");
  return login;
}

/** Transport bounds from `GPU_AGENT_MAX_BODY_BYTES` … `GPU_AGENT_MAX_STREAMS_PER_ADDRESS` (docs/limits.md). */
export function transportConfigFromEnv(env: NodeJS.ProcessEnv): TransportConfig {
  const d = defaultTransport;
  // A zero bound or timeout would refuse or cut everything ("no cap", 0, exists only for the per-address
  // counts); sizes and stream limits are int32 on the wire.
  const positive = { min: 1 };
  const positiveInt32 = { min: 1, max: int32Max };
  const transport: TransportConfig = {
    maxBodyBytes: intFrom(env, "GPU_AGENT_MAX_BODY_BYTES", d.maxBodyBytes, positiveInt32),
    maxAgentMessageBytes: intFrom(env, "GPU_AGENT_MAX_AGENT_MESSAGE_BYTES", d.maxAgentMessageBytes, positiveInt32),
    headersTimeoutMs: intFrom(env, "GPU_AGENT_HEADERS_TIMEOUT_MS", d.headersTimeoutMs, positive),
    bodyTimeoutMs: intFrom(env, "GPU_AGENT_BODY_TIMEOUT_MS", d.bodyTimeoutMs, positive),
    keepAliveTimeoutMs: intFrom(env, "GPU_AGENT_KEEP_ALIVE_TIMEOUT_MS", d.keepAliveTimeoutMs, positive),
    http2IdleTimeoutMs: intFrom(env, "GPU_AGENT_HTTP2_IDLE_TIMEOUT_MS", d.http2IdleTimeoutMs, positive),
    maxConcurrentStreams: intFrom(env, "GPU_AGENT_MAX_CONCURRENT_STREAMS", d.maxConcurrentStreams, positiveInt32),
    agentMaxConcurrentStreams: intFrom(env, "GPU_AGENT_AGENT_MAX_CONCURRENT_STREAMS", d.agentMaxConcurrentStreams, positiveInt32),
    maxConnectionsPerAddress: intFrom(env, "GPU_AGENT_MAX_CONNECTIONS_PER_ADDRESS", d.maxConnectionsPerAddress),
    maxStreamsPerAddress: intFrom(env, "GPU_AGENT_MAX_STREAMS_PER_ADDRESS", d.maxStreamsPerAddress),
  };
  return transport;
}

/** Builds the config from environment variables (see README for each). */
export function schedulerConfigFromEnv(env: NodeJS.ProcessEnv): SchedulerConfig {
  const port = intFrom(env, "PORT", 8080);
  const host = env["HOST"] ?? "127.0.0.1";
  const dataDir = env["GPU_AGENT_DATA_DIR"] ?? "./.gpu-agent";
  const certFile = env["GPU_AGENT_TLS_CERT"] ?? "";
  const tls: TlsConfig | undefined =
    certFile === ""
      ? undefined
      : {
          certFile,
          keyFile: env["GPU_AGENT_TLS_KEY"] ?? "",
          ...(env["GPU_AGENT_TLS_CA"] ? { caFile: env["GPU_AGENT_TLS_CA"] } : {}),
          requireClientCert: env["GPU_AGENT_TLS_CLIENT_CERT"] === "require",
        };
  if (tls !== undefined && tls.keyFile === "") throw new Error("GPU_AGENT_TLS_CERT is set but GPU_AGENT_TLS_KEY is not");
  const placerWeights = placerWeightsFrom(env["GPU_AGENT_PLACER_WEIGHTS"]);
  return {
    host,
    port,
    ...(tls === undefined ? {} : { tls }),
    publicUrl: env["GPU_AGENT_PUBLIC_URL"] ?? `${tls === undefined ? "http" : "https"}://${host === "0.0.0.0" ? "127.0.0.1" : host}:${port}`,
    dataDir,
    databaseUrl: env["DATABASE_URL"] || undefined,
    etcdEndpoints: (env["ETCD_ENDPOINTS"] ?? "").split(",").map((s) => s.trim()).filter(Boolean),
    replicaId: env["GPU_AGENT_REPLICA_ID"] ?? `replica-${process.pid}`,
    adminToken: env["GPU_AGENT_ADMIN_TOKEN"] || undefined,
    blobDir: env["GPU_AGENT_BLOB_DIR"] ?? join(dataDir, "blobs"),
    placementIntervalMs: intFrom(env, "GPU_AGENT_PLACEMENT_INTERVAL_MS", 500),
    // Seed 001's limits are the defaults; operators (and the API benchmark) may change them.
    limits: {
      ...defaultLimits,
      jobCreationsPerMinute: intFrom(env, "GPU_AGENT_LIMIT_JOBS_PER_MINUTE", defaultLimits.jobCreationsPerMinute),
      activeJobs: intFrom(env, "GPU_AGENT_LIMIT_ACTIVE_JOBS", defaultLimits.activeJobs),
      computeUnitsPerDay: intFrom(env, "GPU_AGENT_LIMIT_UNITS_PER_DAY", defaultLimits.computeUnitsPerDay),
      storage: storageQuotasFromEnv(env),
      login: loginLimitsFromEnv(env),
    },
    rates: defaultRates,
    agents: {
      ...defaultAgents,
      heartbeatIntervalSeconds: intFrom(env, "GPU_AGENT_HEARTBEAT_SECONDS", defaultAgents.heartbeatIntervalSeconds),
      unreachableAfterSeconds: intFrom(env, "GPU_AGENT_UNREACHABLE_SECONDS", defaultAgents.unreachableAfterSeconds),
    },
    ...(placerWeights === undefined ? {} : { placerWeights }),
    build: env["GPU_AGENT_BUILD"] ?? "dev",
    transport: transportConfigFromEnv(env),
    events: jobEventsConfigFromEnv(env),
  };
}
