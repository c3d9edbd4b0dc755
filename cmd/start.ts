#!/usr/bin/env node
// `npm start`: the control plane on its embedded default (PGlite + a local
// blob directory, always leader) together with one local node agent, enrolled
// as `controlled`. Where no GPU is detected the local agent declares a
// development GPU (GPU_AGENT_DEV_GPU_MIB, default 24576) so seed 001's example
// job runs on any laptop; production agents never do this unless told to.
//
// Stopping: SIGTERM, SIGINT (Ctrl-C) or SIGHUP (the terminal closed) stops the
// agent (one SIGTERM: it lets running units finish within its grace period)
// and closes the control plane; the process exits once both have stopped. A
// second signal, a second or more later, stops waiting: the agent is told
// again (it then exits at once) and the process exits without waiting for the
// control plane's close. One Ctrl-C under `npm start` arrives twice at once
// (from the terminal, and forwarded by npm), hence the second. The agent runs
// in its own process group, so a Ctrl-C reaches it once, from here. `npm start`
// runs this with `exec`, so the signal `kill <pid of npm start>` makes npm
// forward lands here.
import type { ChildProcess, StdioOptions } from "node:child_process";
import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { rename } from "node:fs/promises";
import { join, resolve } from "node:path";
import { pino } from "pino";
import type { ControlPlane } from "../src/control-plane.ts";
import { startControlPlane } from "../src/control-plane.ts";
import { controlPlaneOptionsFromEnv } from "../src/control-plane-env.ts";
import { sendControlCommand } from "../src/node-agent/control-socket.ts";
import type { AgentStatus } from "../src/node-agent/control-socket.ts";
import { hashSecret, newId, newSecret } from "../src/platform/ids.ts";
import { schedulerConfigFromEnv } from "../src/platform/config.ts";
import { insertEnrollmentToken } from "../src/store/nodes.ts";

const logger = pino({ name: "gpu-agent-scheduler", level: process.env["LOG_LEVEL"] ?? "info" });
const config = schedulerConfigFromEnv(process.env);

// ---- what runs, and how it all stops ----
let planeStarting: Promise<ControlPlane> | undefined;
const children = new Set<ChildProcess>();
let stopSignal: NodeJS.Signals | undefined;
let stopAskedAt = 0;
/** Signals closer together than this are one request to stop. */
const SAME_REQUEST_MS = 1000;

const exited = (child: ChildProcess) =>
  child.exitCode !== null || child.signalCode !== null ? Promise.resolve() : new Promise<void>((r) => child.once("exit", () => r()));

/** A child of ours, in its own process group (so a terminal's Ctrl-C reaches it only through us). */
function startChild(args: string[], stdio: StdioOptions): ChildProcess {
  const child = spawn(process.execPath, args, { stdio, detached: true });
  children.add(child);
  child.once("exit", () => children.delete(child));
  return child;
}

/** Stops the children and the control plane, then exits with `code`. */
async function shutDown(code: number): Promise<never> {
  for (const child of children) child.kill("SIGTERM");
  const gone = Promise.all([...children].map(exited));
  const closed = (async () => {
    // A signal during start-up: let the control plane finish starting, then close it.
    const plane = await planeStarting?.catch(() => undefined);
    await plane?.close();
  })();
  const results = await Promise.allSettled([gone, closed]);
  for (const r of results) if (r.status === "rejected") logger.error({ err: String(r.reason) }, "stopping failed");
  logger.info("stopped");
  process.exit(results.some((r) => r.status === "rejected") ? 1 : code);
}

function onSignal(signal: NodeJS.Signals): void {
  if (stopSignal !== undefined && Date.now() - stopAskedAt < SAME_REQUEST_MS) return;
  if (stopSignal !== undefined) {
    logger.warn({ signal }, "second signal: not waiting any longer");
    for (const child of children) child.kill("SIGTERM");
    void Promise.all([...children].map(exited)).then(() => process.exit(1));
    return;
  }
  stopSignal = signal;
  stopAskedAt = Date.now();
  logger.info({ signal }, "stopping the local agent and the control plane");
  void shutDown(0);
}
process.on("SIGINT", onSignal);
process.on("SIGTERM", onSignal);
process.on("SIGHUP", onSignal);

/** Past each step of the start: a stop asked for meanwhile is under way, so start nothing more. */
const stopping = () => stopSignal !== undefined;

// ---- start ----
// The local agent's own data directory sits beside the control plane's, not inside it: the control
// plane's is private to its user (0700), and units the agent runs as another user without its sandbox
// (nobody, when it runs as root with GPU_AGENT_ISOLATION=none) must reach their work directories
// through every parent.
const agentDir = resolve(process.env["GPU_AGENT_LOCAL_AGENT_DIR"] || `${resolve(config.dataDir)}-local-agent`);
const legacyAgentDir = resolve(config.dataDir, "local-agent");
if (existsSync(join(legacyAgentDir, "node.json")) && !existsSync(agentDir)) {
  // Where earlier versions kept it; moved before the control plane makes its data directory private.
  await rename(legacyAgentDir, agentDir);
  logger.info({ from: legacyAgentDir, to: agentDir }, "moved the local agent's data directory out of the control plane's");
}
planeStarting = startControlPlane(config, controlPlaneOptionsFromEnv(process.env, config, logger));
const plane = await planeStarting;
logger.info({ url: plane.url, database: config.databaseUrl === undefined ? "embedded (PGlite)" : "postgresql" }, "control plane listening");

const agentCmd = join(import.meta.dirname, "agent.ts");
const devGpu = process.env["GPU_AGENT_DEV_GPU_MIB"] ?? "24576";
if (!stopping() && !existsSync(join(agentDir, "node.json"))) {
  const token = newSecret("et_");
  const now = new Date();
  await insertEnrollmentToken(plane.deps.db, { id: newId(), tokenHash: hashSecret(token), trustLevel: "controlled", expiresAt: new Date(now.getTime() + 600_000) }, now);
  // Asynchronous: the agent enrolls against this very process, whose event loop must keep serving.
  const enroll = stopping() ? undefined : startChild([agentCmd, "enroll", "--url", plane.url, "--token", token, "--data-dir", agentDir, "--dev-gpu", devGpu], ["ignore", "ignore", "inherit"]);
  if (enroll !== undefined) await exited(enroll);
  if (enroll !== undefined && enroll.exitCode !== 0 && !stopping()) {
    logger.error("the local agent could not enroll");
    stopSignal = "SIGTERM";
    await shutDown(1);
  }
}
if (!stopping()) {
  const agent = startChild([agentCmd, "run", "--data-dir", agentDir, "--dev-gpu", devGpu], ["ignore", "inherit", "inherit"]);
  agent.on("exit", (code) => {
    if (!stopping()) logger.error({ code }, "the local agent exited");
  });
  void announceIsolation(agent);

  const adminLine = plane.adminTokenGenerated
    ? `Admin token (shown once; stored in ${join(config.dataDir, "admin-token")}):\n  export GPU_AGENT_ADMIN_TOKEN=${plane.adminToken}`
    : `Admin token: export GPU_AGENT_ADMIN_TOKEN=$(cat ${join(config.dataDir, "admin-token")})${config.adminToken !== undefined ? " (or the GPU_AGENT_ADMIN_TOKEN you set)" : ""}`;
  process.stderr.write(`
GPU-Agent is running at ${plane.url} with one local agent (trust level: controlled); Ctrl-C stops both.
Web portal: ${plane.url}/portal/ (sign in with the e-mail and password given to create-customer below).
${adminLine}
Submit the example (each line can be run again):
  export GPU_AGENT_URL=${plane.url}
  npx gpuctl admin create-customer --email you@example.com --password 'change-me-please' --credits 1000 --if-missing -q
  echo 'change-me-please' | npx gpuctl login --email you@example.com --password-stdin
  DS=$(npx gpuctl datasets upload examples/tiny-mlp/dataset.csv -q)
  PKG=$(npx gpuctl packages upload examples/tiny-mlp/package -q)
  JOB=$(npx gpuctl jobs create --dataset $DS --package $PKG --vram-mb 8000 --sensitivity low_sensitive -q)
  npx gpuctl jobs watch $JOB
  npx gpuctl jobs logs $JOB
  npx gpuctl artifacts download $JOB
`);
}

/** The line that tells whoever ran `npm start` how the local agent contains the units it runs. */
function isolationLine(isolation: AgentStatus["isolation"]): string {
  switch (isolation.mechanism) {
    case "bubblewrap":
      return "The local agent runs every unit, the example job's too, inside its sandbox (isolation: bubblewrap): its own PID, mount and network namespaces, its own user id, no network.";
    case "none":
      return "The local agent runs units WITHOUT a sandbox (isolation: none, as GPU_AGENT_ISOLATION=none asked).";
    default:
      return `The local agent cannot sandbox units here (isolation: ${isolation.mechanism || "not reported"}: ${isolation.reason}) and takes none, so the example job will wait: install bubblewrap, or run GPU_AGENT_ISOLATION=none npm start to run units without a sandbox.`;
  }
}

/**
 * Asks the local agent, once it answers on its control socket (after its start-up checks, the trial
 * sandbox among them), how it contains units, and says so: the banner above cannot know yet.
 */
async function announceIsolation(agent: ChildProcess): Promise<void> {
  const until = Date.now() + 120_000;
  while (!stopping() && agent.exitCode === null && Date.now() < until) {
    const reply = await sendControlCommand(agentDir, { command: "status" }, 5000).catch(() => undefined);
    if (reply?.ok === true) {
      process.stderr.write(`${isolationLine(reply.status.isolation)}\n`);
      return;
    }
    // Nothing to wait on: the socket appears when the agent is ready.
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
}
