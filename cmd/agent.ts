#!/usr/bin/env node
/**
 * gpu-agent: the node agent command line. Parses flags and environment,
 * builds the dependencies and hands over to src/node-agent/.
 *
 *   gpu-agent enroll --url URL --token T --data-dir D [--dev-gpu MIB] [--ca FILE] [--cert FILE --key FILE]
 *   gpu-agent run --data-dir D [--dev-gpu MIB] [--max-units N] [--grace-seconds S] [--ca FILE] [--cert FILE --key FILE]
 *                 [--python /abs/path/python3] [--cache-mb MIB]
 *
 * An https:// URL uses TLS; --ca (or GPU_AGENT_CA_FILE) names a PEM file of a
 * private CA to trust besides the system ones. --cert/--key (or
 * GPU_AGENT_CLIENT_CERT/GPU_AGENT_CLIENT_KEY) name the PEM client certificate
 * and key for mutual TLS, presented on the stream, downloads and uploads. They
 * are read at each start and never stored in node.json, so they can be rotated.
 *
 * GPU_AGENT_DEV_GPU_MIB is the same as --dev-gpu; GPU_AGENT_KEEP_WORK=1 keeps
 * unit work directories for debugging.
 */
import { readFileSync } from "node:fs";
import { isAbsolute } from "node:path";
import tls from "node:tls";
import { Command, InvalidArgumentError } from "commander";
import pino from "pino";
import type { AgentTlsOptions } from "../src/node-agent/agent.ts";
import { createNodeAgent, enrollNode, trustCertificateAuthority } from "../src/node-agent/agent.ts";
import { AGENT_VERSION } from "../src/node-agent/capabilities.ts";
import { systemClock } from "../src/platform/clock.ts";

/** Logs go to stderr so stdout stays clean for JSON output. */
const logger = pino({ name: "gpu-agent", level: process.env["LOG_LEVEL"] ?? "info" }, pino.destination(2));

function positiveInt(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n <= 0) throw new InvalidArgumentError("must be a positive integer");
  return n;
}

function nonNegativeInt(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0) throw new InvalidArgumentError("must be a non-negative integer");
  return n;
}

/** A non-negative integer from the environment, or undefined when unset. */
function envNonNegativeInt(name: string): number | undefined {
  const value = process.env[name];
  if (value === undefined || value === "") return undefined;
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0) throw new Error(`${name} must be a non-negative integer, got ${value}`);
  return n;
}

/**
 * The unit interpreter must be an absolute path: units run with a PATH built
 * from scratch (the system PATH when the agent is root), so a bare name would
 * not find the operator's venv.
 */
function unitPython(value: string | undefined): string | undefined {
  if (value === undefined || value === "") return undefined;
  if (!isAbsolute(value)) throw new Error(`--python (GPU_AGENT_PYTHON) must be an absolute path, got ${value}`);
  return value;
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

/** A flag wins over its environment variable; an empty variable counts as unset. */
function fileOption(flag: string | undefined, envName: string): string | undefined {
  return flag ?? (process.env[envName] || undefined);
}

/**
 * --ca wins over GPU_AGENT_CA_FILE, --cert/--key over GPU_AGENT_CLIENT_CERT/
 * GPU_AGENT_CLIENT_KEY. The CA is trusted by the stream, downloads and uploads
 * alike; so is the client certificate presented to all three.
 */
function tlsOptions(flags: { ca?: string; cert?: string; key?: string }): AgentTlsOptions {
  const options: AgentTlsOptions = {};
  const caFile = fileOption(flags.ca, "GPU_AGENT_CA_FILE");
  if (caFile !== undefined) {
    const ca = readFileSync(caFile, "utf8");
    if (!ca.includes("-----BEGIN CERTIFICATE-----")) throw new Error(`${caFile} is not a PEM certificate`);
    trustCertificateAuthority(ca);
    options.ca = ca;
  }
  const certFile = fileOption(flags.cert, "GPU_AGENT_CLIENT_CERT");
  const keyFile = fileOption(flags.key, "GPU_AGENT_CLIENT_KEY");
  if (certFile === undefined && keyFile === undefined) return options;
  if (certFile === undefined) throw new Error("--key (GPU_AGENT_CLIENT_KEY) is set but --cert (GPU_AGENT_CLIENT_CERT) is not");
  if (keyFile === undefined) throw new Error("--cert (GPU_AGENT_CLIENT_CERT) is set but --key (GPU_AGENT_CLIENT_KEY) is not");
  const cert = readFileSync(certFile, "utf8");
  if (!cert.includes("-----BEGIN CERTIFICATE-----")) throw new Error(`${certFile} is not a PEM certificate`);
  const key = readFileSync(keyFile, "utf8");
  if (!/-----BEGIN [A-Z ]*PRIVATE KEY-----/.test(key)) throw new Error(`${keyFile} is not a PEM private key`);
  // Fails early (here, not on the first connection) when the key does not match the certificate.
  try {
    tls.createSecureContext({ cert, key });
  } catch (err) {
    throw new Error(`client certificate ${certFile} and key ${keyFile} do not go together: ${err instanceof Error ? err.message : String(err)}`);
  }
  options.clientCertificate = { cert, key };
  return options;
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
  .option("--cert <file>", "PEM client certificate for mutual TLS (with --key); env GPU_AGENT_CLIENT_CERT")
  .option("--key <file>", "PEM private key of --cert; env GPU_AGENT_CLIENT_KEY")
  .action(async (opts: { url: string; token: string; dataDir: string; devGpu?: number; ca?: string; cert?: string; key?: string }) => {
    const dev = devGpuMib(opts.devGpu);
    const identity = await enrollNode({
      url: opts.url,
      token: opts.token,
      dataDir: opts.dataDir,
      logger,
      tls: tlsOptions(opts),
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
  .option("--cert <file>", "PEM client certificate for mutual TLS (with --key); env GPU_AGENT_CLIENT_CERT")
  .option("--key <file>", "PEM private key of --cert; env GPU_AGENT_CLIENT_KEY")
  .option("--cache-mb <mib>", "bound of the dataset/package cache in <data-dir>/cache (0 turns it off); env GPU_AGENT_CACHE_MB", nonNegativeInt)
  .option("--python <path>", "absolute path of the interpreter units run with (e.g. a venv that has PyTorch); env GPU_AGENT_PYTHON; default python3 on the unit's PATH")
  .action(async (opts: { dataDir: string; devGpu?: number; maxUnits: number; graceSeconds: number; ca?: string; cert?: string; key?: string; python?: string; cacheMb?: number }) => {
    const dev = devGpuMib(opts.devGpu);
    const python = unitPython(opts.python ?? process.env["GPU_AGENT_PYTHON"]);
    const cacheMb = opts.cacheMb ?? envNonNegativeInt("GPU_AGENT_CACHE_MB");
    const tlsConfig = tlsOptions(opts);
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
      tls: tlsConfig,
      ...(dev !== undefined ? { devGpuMib: dev } : {}),
      ...(python !== undefined ? { runner: { python } } : {}),
      ...(cacheMb !== undefined ? { inputCacheBytes: cacheMb * 1024 * 1024 } : {}),
    });
    await agent.run(stop.signal);
  });

program.parseAsync(process.argv).catch((err: unknown) => {
  logger.error({ err: err instanceof Error ? err.message : String(err) }, "gpu-agent failed");
  process.exitCode = 1;
});
