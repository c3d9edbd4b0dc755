/**
 * The control plane's start options read from the environment, shared by
 * `gpu-agent-scheduler` and `npm start` so both honour the same variables
 * (GPU_AGENT_LEASE_TTL_SECONDS, GPU_AGENT_SIGNING_KEY,
 * GPU_AGENT_LIMIT_REQUESTS_PER_MINUTE, GPU_AGENT_WEBHOOK_*; see README).
 */
import type { Logger } from "pino";
import type { startControlPlane } from "./control-plane.ts";
import { requestLimitOptionsFromEnv } from "./limits/request-limits.ts";
import type { SchedulerConfig } from "./platform/config.ts";
import { webhookDispatcherOptionsFromEnv } from "./webhooks/env.ts";

type StartOptions = Parameters<typeof startControlPlane>[1];

/** Builds the options; throws with a message naming the variable when one is invalid. */
export function controlPlaneOptionsFromEnv(env: NodeJS.ProcessEnv, config: SchedulerConfig, logger: Logger): StartOptions {
  const rawTtl = env["GPU_AGENT_LEASE_TTL_SECONDS"] ?? "";
  const leaseTtlSeconds = rawTtl === "" ? undefined : Number(rawTtl);
  if (leaseTtlSeconds !== undefined && (!Number.isInteger(leaseTtlSeconds) || leaseTtlSeconds < 1)) {
    throw new Error(`GPU_AGENT_LEASE_TTL_SECONDS must be a whole number of seconds ≥ 1, got ${JSON.stringify(rawTtl)}`);
  }
  // Replicas must sign URLs with one key (a URL minted by one is fetched from another); without it each
  // replica keeps its own key in its data directory, which fits a single replica only.
  const signingKey = env["GPU_AGENT_SIGNING_KEY"] || undefined;
  if (signingKey !== undefined && signingKey.length < 32) throw new Error("GPU_AGENT_SIGNING_KEY must be at least 32 characters");
  if (config.etcdEndpoints.length > 0 && signingKey === undefined) {
    logger.warn("ETCD_ENDPOINTS is set (several replicas) but GPU_AGENT_SIGNING_KEY is not: signed URLs work only on the replica that minted them");
  }
  const webhooks = webhookDispatcherOptionsFromEnv(env);
  if (webhooks.allowPrivateAddresses === true) {
    logger.warn("GPU_AGENT_WEBHOOK_ALLOW_PRIVATE=1: webhooks may be delivered to loopback and private addresses. SSRF protection is OFF. Tests only; never in production.");
  }
  return {
    logger,
    requestLimit: requestLimitOptionsFromEnv(env),
    webhooks,
    ha: leaseTtlSeconds === undefined ? {} : { leaseTtlSeconds },
    ...(signingKey === undefined ? {} : { signingKey }),
  };
}
