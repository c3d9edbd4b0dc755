#!/usr/bin/env node
// `npm start`: the control plane on its embedded default (PGlite + a local
// blob directory, always leader) together with one local node agent, enrolled
// as `controlled`. Where no GPU is detected the local agent declares a
// development GPU (GPU_AGENT_DEV_GPU_MIB, default 24576) so seed 001's example
// job runs on any laptop; production agents never do this unless told to.
import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { rename } from "node:fs/promises";
import { join, resolve } from "node:path";
import { pino } from "pino";
import { startControlPlane } from "../src/control-plane.ts";
import { controlPlaneOptionsFromEnv } from "../src/control-plane-env.ts";
import { hashSecret, newId, newSecret } from "../src/platform/ids.ts";
import { schedulerConfigFromEnv } from "../src/platform/config.ts";
import { insertEnrollmentToken } from "../src/store/nodes.ts";

const logger = pino({ name: "gpu-agent-scheduler", level: process.env["LOG_LEVEL"] ?? "info" });
const config = schedulerConfigFromEnv(process.env);

// The local agent's own data directory sits beside the control plane's, not inside it: the control
// plane's is private to its user (0700), and units the agent runs as another user (nobody, when it
// runs as root) must reach their work directories through every parent.
const agentDir = resolve(process.env["GPU_AGENT_LOCAL_AGENT_DIR"] || `${resolve(config.dataDir)}-local-agent`);
const legacyAgentDir = resolve(config.dataDir, "local-agent");
if (existsSync(join(legacyAgentDir, "node.json")) && !existsSync(agentDir)) {
  // Where earlier versions kept it; moved before the control plane makes its data directory private.
  await rename(legacyAgentDir, agentDir);
  logger.info({ from: legacyAgentDir, to: agentDir }, "moved the local agent's data directory out of the control plane's");
}
const plane = await startControlPlane(config, controlPlaneOptionsFromEnv(process.env, config, logger));
logger.info({ url: plane.url, database: config.databaseUrl === undefined ? "embedded (PGlite)" : "postgresql" }, "control plane listening");

const agentCmd = join(import.meta.dirname, "agent.ts");
const devGpu = process.env["GPU_AGENT_DEV_GPU_MIB"] ?? "24576";
if (!existsSync(join(agentDir, "node.json"))) {
  const token = newSecret("et_");
  await insertEnrollmentToken(plane.deps.db, { id: newId(), tokenHash: hashSecret(token), trustLevel: "controlled", expiresAt: new Date(Date.now() + 600_000) });
  // Asynchronous: the agent enrolls against this very process, whose event loop must keep serving.
  const enroll = spawn(process.execPath, [agentCmd, "enroll", "--url", plane.url, "--token", token, "--data-dir", agentDir, "--dev-gpu", devGpu], {
    stdio: ["ignore", "ignore", "inherit"],
  });
  const status = await new Promise<number | null>((resolve) => enroll.on("exit", resolve));
  if (status !== 0) {
    logger.error("the local agent could not enroll");
    await plane.close();
    process.exit(1);
  }
}
const agent = spawn(process.execPath, [agentCmd, "run", "--data-dir", agentDir, "--dev-gpu", devGpu], { stdio: ["ignore", "inherit", "inherit"] });

const adminLine = plane.adminTokenGenerated
  ? `Admin token (shown once; stored in ${join(config.dataDir, "admin-token")}):\n  export GPU_AGENT_ADMIN_TOKEN=${plane.adminToken}`
  : `Admin token: export GPU_AGENT_ADMIN_TOKEN=$(cat ${join(config.dataDir, "admin-token")})${config.adminToken !== undefined ? " (or the GPU_AGENT_ADMIN_TOKEN you set)" : ""}`;
process.stderr.write(`
GPU-Agent is running at ${plane.url} with one local agent (trust level: controlled).
Web portal: ${plane.url}/portal/ (sign in with the e-mail and password given to create-customer below).
${adminLine}
Submit the example:
  export GPU_AGENT_URL=${plane.url}
  export GPU_AGENT_API_KEY=$(npx gpuctl admin create-customer --email you@example.com --password 'change-me-please' --credits 1000 | node -pe 'JSON.parse(require("fs").readFileSync(0)).api_key')
  DS=$(npx gpuctl datasets upload examples/tiny-mlp/dataset.csv --json | node -pe 'JSON.parse(require("fs").readFileSync(0)).id')
  PKG=$(npx gpuctl packages upload examples/tiny-mlp/package --json | node -pe 'JSON.parse(require("fs").readFileSync(0)).id')
  npx gpuctl jobs create --dataset $DS --package $PKG --vram-mb 8000 --sensitivity low_sensitive --watch
`);

let stopping = false;
const stop = () => {
  if (stopping) return;
  stopping = true;
  agent.kill("SIGTERM");
  const closing = plane.close();
  const agentGone = new Promise<void>((r) => (agent.exitCode !== null ? r() : agent.once("exit", () => r())));
  Promise.all([closing, agentGone]).then(
    () => process.exit(0),
    () => process.exit(1),
  );
};
agent.on("exit", (code) => {
  if (!stopping) logger.error({ code }, "the local agent exited");
});
process.on("SIGINT", stop);
process.on("SIGTERM", stop);
