#!/usr/bin/env node
// gpu-agent-scheduler: the control plane alone. Configuration is environment
// only (PORT, DATABASE_URL, ETCD_ENDPOINTS, GPU_AGENT_DATA_DIR,
// GPU_AGENT_ADMIN_TOKEN, GPU_AGENT_REPLICA_ID, GPU_AGENT_LEASE_TTL_SECONDS,
// GPU_AGENT_SIGNING_KEY, …; see README). SIGTERM shuts down gracefully:
// leadership resigned, agent streams closed, in-flight requests finished.
import { pino } from "pino";
import { startControlPlane } from "../src/control-plane.ts";
import { controlPlaneOptionsFromEnv } from "../src/control-plane-env.ts";
import { schedulerConfigFromEnv } from "../src/platform/config.ts";

const logger = pino({ name: "gpu-agent-scheduler", level: process.env["LOG_LEVEL"] ?? "info" });
const config = schedulerConfigFromEnv(process.env);
let options: ReturnType<typeof controlPlaneOptionsFromEnv>;
try {
  options = controlPlaneOptionsFromEnv(process.env, config, logger);
} catch (error) {
  // A configuration error, said plainly on stderr (the JSON log goes to stdout).
  process.stderr.write(`gpu-agent-scheduler: ${(error as Error).message}\n`);
  process.exit(2);
}
const plane = await startControlPlane(config, options);
logger.info({ url: plane.url, database: config.databaseUrl === undefined ? "embedded (PGlite)" : "postgresql" }, "control plane listening");
if (plane.adminTokenGenerated) {
  process.stderr.write(`\nAdmin token (shown once; stored in ${config.dataDir}/admin-token):\n  ${plane.adminToken}\n\n`);
}

let stopping = false;
const stop = (signal: string) => {
  if (stopping) return;
  stopping = true;
  logger.info({ signal }, "shutting down");
  plane.close().then(
    () => process.exit(0),
    (error: unknown) => {
      logger.error({ err: error }, "shutdown failed");
      process.exit(1);
    },
  );
};
process.on("SIGINT", () => stop("SIGINT"));
process.on("SIGTERM", () => stop("SIGTERM"));
