#!/usr/bin/env node
/**
 * gpu-agent: the node agent command line. Parses flags and environment,
 * builds the dependencies and hands over to src/agent/.
 *
 *   gpu-agent enroll --url URL --token T --data-dir D [--dev-gpu MIB] [--ca FILE]
 *   gpu-agent run --data-dir D [--dev-gpu MIB] [--max-units N] [--grace-seconds S] [--ca FILE]
 *
 * An https:// URL uses TLS; --ca (or GPU_AGENT_CA_FILE) names a PEM file of a
 * private CA to trust besides the system ones.
 *
 * GPU_AGENT_DEV_GPU_MIB is the same as --dev-gpu; GPU_AGENT_KEEP_WORK=1 keeps
 * unit work directories for debugging.
 */
import { readFileSync } from "node:fs";
import { Command, InvalidArgumentError } from "commander";
import pino from "pino";
import type { AgentTlsOptions } from "../src/agent/agent.ts";
import { createNodeAgent, enrollNode, trustCertificateAuthority } from "../src/agent/agent.ts";
import { AGENT_VERSION } from "../src/agent/capabilities.ts";
import { systemClock } from "../src/platform/clock.ts";

/** Logs go to stderr so stdout stays clean for JSON output. */
const logger = pino({ name: "gpu-agent", level: process.env["LOG_LEVEL"] ?? "info" }, pino.destination(2));

function positiveInt(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n <= 0) throw new InvalidArgumentError("must be a positive integer");
  return n;
}

/** --dev-gpu wins over GPU_AGENT_DEV_GPU_MIB; both are MiB. */
function devGpuMib(flag: number | undefined): number | undefined {
  if (flag !== undefined) return flag;
  const env = process.env["GPU_AGENT_DEV_GPU_MIB"];
  if (env === undefined || env === "") return undefined;
  const n = Number(env);
  if (!Number.isInteger(n) || n <= 0) throw new Error(`GPU_AGENT_DEV_GPU_MIB must be a positive integer, got ${JSON.stringify(env)}`);
  return n;
}

/** --ca wins over GPU_AGENT_CA_FILE; the CA is trusted by the stream, downloads and uploads alike. */
function tlsOptions(flag: string | undefined): AgentTlsOptions {
  const file = flag ?? (process.env["GPU_AGENT_CA_FILE"] || undefined);
  if (file === undefined) return {};
  const ca = readFileSync(file, "utf8");
  if (!ca.includes("-----BEGIN CERTIFICATE-----")) throw new Error(`${file} is not a PEM certificate`);
  trustCertificateAuthority(ca);
  return { ca };
}

const program = new Command()
  .name("gpu-agent")
  .description("GPU-Agent node agent: runs training units assigned by the control plane")
  .version(AGENT_VERSION);

program
  .command("enroll")
  .description("exchange a one-time enrollment token for a node identity (written to <data-dir>/node.json)")
  .requiredOption("--url <url>", "control plane URL, e.g. http://127.0.0.1:8080")
  .requiredOption("--token <token>", "one-time enrollment token")
  .requiredOption("--data-dir <dir>", "agent data directory")
  .option("--dev-gpu <mib>", "declare a development GPU of this many MiB when none is detected", positiveInt)
  .option("--ca <file>", "PEM file of a private CA that signed the control plane's certificate (https:// URLs)")
  .action(async (opts: { url: string; token: string; dataDir: string; devGpu?: number; ca?: string }) => {
    const dev = devGpuMib(opts.devGpu);
    const identity = await enrollNode({
      url: opts.url,
      token: opts.token,
      dataDir: opts.dataDir,
      logger,
      tls: tlsOptions(opts.ca),
      ...(dev !== undefined ? { devGpuMib: dev } : {}),
    });
    process.stdout.write(`${JSON.stringify({ node_id: identity.node_id, trust_level: identity.trust_level })}\n`);
  });

program
  .command("run")
  .description("hold the session with the control plane and run assigned units until SIGINT/SIGTERM")
  .requiredOption("--data-dir <dir>", "agent data directory (holds node.json)")
  .option("--dev-gpu <mib>", "declare a development GPU of this many MiB when none is detected", positiveInt)
  .option("--max-units <n>", "most units run at once", positiveInt, 2)
  .option("--grace-seconds <s>", "on shutdown, how long running units may finish before they are killed", positiveInt, 30)
  .option("--ca <file>", "PEM file of a private CA that signed the control plane's certificate (https:// URLs)")
  .action(async (opts: { dataDir: string; devGpu?: number; maxUnits: number; graceSeconds: number; ca?: string }) => {
    const dev = devGpuMib(opts.devGpu);
    const tls = tlsOptions(opts.ca);
    const stop = new AbortController();
    let signals = 0;
    const onSignal = (sig: NodeJS.Signals) => {
      signals++;
      if (signals === 1) {
        logger.info({ signal: sig }, "stopping: no new units; running units get the grace period");
        stop.abort();
      } else {
        // A second signal means the operator will not wait.
        logger.warn({ signal: sig }, "second signal: exiting now");
        process.exit(130);
      }
    };
    process.on("SIGINT", onSignal);
    process.on("SIGTERM", onSignal);
    const agent = createNodeAgent({
      dataDir: opts.dataDir,
      maxConcurrentUnits: opts.maxUnits,
      shutdownGraceMs: opts.graceSeconds * 1000,
      keepWork: process.env["GPU_AGENT_KEEP_WORK"] === "1",
      clock: systemClock,
      logger,
      tls,
      ...(dev !== undefined ? { devGpuMib: dev } : {}),
    });
    await agent.run(stop.signal);
  });

program.parseAsync(process.argv).catch((err: unknown) => {
  logger.error({ err: err instanceof Error ? err.message : String(err) }, "gpu-agent failed");
  process.exitCode = 1;
});
