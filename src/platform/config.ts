/**
 * One typed configuration for the control plane, parsed from the environment
 * in cmd/ and passed down; nothing below cmd/ reads process.env.
 */
import type { ScoreWeights } from "../placer/types.ts";
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
  /** Relative weights of the placer's scores; absent → the placer's defaults (src/placer/README.md). */
  placerWeights?: ScoreWeights;
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

/**
 * `GPU_AGENT_PLACER_WEIGHTS=bin_pack=0.7,reliability=0.2,data_locality=0.1`: every score named once,
 * finite and non-negative, not all zero (only their ratios matter).
 */
export function placerWeightsFrom(raw: string | undefined): ScoreWeights | undefined {
  if (raw === undefined || raw.trim() === "") return undefined;
  const names: Record<string, keyof ScoreWeights> = { bin_pack: "binPack", reliability: "reliability", data_locality: "dataLocality" };
  const weights: Partial<ScoreWeights> = {};
  for (const part of raw.split(",")) {
    const [name, value, extra] = part.split("=").map((x) => x.trim());
    const key = names[name ?? ""];
    const n = Number(value);
    if (key === undefined || extra !== undefined || value === undefined || value === "" || !Number.isFinite(n) || n < 0) {
      throw new Error(`GPU_AGENT_PLACER_WEIGHTS: "${part}" is not one of bin_pack=N, reliability=N, data_locality=N with N ≥ 0`);
    }
    if (weights[key] !== undefined) throw new Error(`GPU_AGENT_PLACER_WEIGHTS: ${name} is given twice`);
    weights[key] = n;
  }
  const missing = Object.keys(names).filter((name) => weights[names[name]!] === undefined);
  if (missing.length > 0) throw new Error(`GPU_AGENT_PLACER_WEIGHTS: missing ${missing.join(", ")}`);
  const complete = weights as ScoreWeights;
  if (complete.binPack + complete.reliability + complete.dataLocality === 0) throw new Error("GPU_AGENT_PLACER_WEIGHTS: the weights may not all be zero");
  return complete;
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
    },
    rates: defaultRates,
    agents: {
      ...defaultAgents,
      heartbeatIntervalSeconds: intFrom(env, "GPU_AGENT_HEARTBEAT_SECONDS", defaultAgents.heartbeatIntervalSeconds),
      unreachableAfterSeconds: intFrom(env, "GPU_AGENT_UNREACHABLE_SECONDS", defaultAgents.unreachableAfterSeconds),
    },
    ...(placerWeights === undefined ? {} : { placerWeights }),
    build: env["GPU_AGENT_BUILD"] ?? "dev",
  };
}
