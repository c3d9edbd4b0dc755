/**
 * One typed configuration for the control plane, parsed from the environment
 * in cmd/ and passed down; nothing below cmd/ reads process.env.
 */
import { join } from "node:path";

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
  build: string;
}

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

function intFrom(env: NodeJS.ProcessEnv, name: string, fallback: number): number {
  const raw = env[name];
  if (raw === undefined || raw === "") return fallback;
  const value = Number(raw);
  if (!Number.isInteger(value) || value < 0) throw new Error(`${name} must be a non-negative integer, got ${JSON.stringify(raw)}`);
  return value;
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
    },
    rates: defaultRates,
    agents: {
      ...defaultAgents,
      heartbeatIntervalSeconds: intFrom(env, "GPU_AGENT_HEARTBEAT_SECONDS", defaultAgents.heartbeatIntervalSeconds),
      unreachableAfterSeconds: intFrom(env, "GPU_AGENT_UNREACHABLE_SECONDS", defaultAgents.unreachableAfterSeconds),
    },
    build: env["GPU_AGENT_BUILD"] ?? "dev",
  };
}
