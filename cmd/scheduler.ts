#!/usr/bin/env node
// gpu-agent-scheduler: the control plane alone. Configuration is environment
// only (PORT, DATABASE_URL, ETCD_ENDPOINTS, GPU_AGENT_DATA_DIR,
// GPU_AGENT_ADMIN_TOKEN, GPU_AGENT_REPLICA_ID, …; see README).
import { pino } from "pino";
import { startControlPlane } from "../src/control-plane.ts";
import { schedulerConfigFromEnv } from "../src/platform/config.ts";

const logger = pino({ name: "gpu-agent-scheduler", level: process.env["LOG_LEVEL"] ?? "info" });
const config = schedulerConfigFromEnv(process.env);
if (config.etcdEndpoints.length > 0) {
  logger.warn("ETCD_ENDPOINTS is set but multi-replica leader election is not built yet; this replica leads alone");
}
const plane = await startControlPlane(config, { logger });
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
