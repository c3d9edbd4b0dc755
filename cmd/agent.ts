#!/usr/bin/env node
/**
 * gpu-agent: the node agent command line. Parses flags and environment,
 * builds the dependencies and hands over to src/node-agent/.
 *
 *   gpu-agent enroll --url URL --token T --data-dir D [--dev-gpu MIB|NAME:MIB[:CC[:CUDA]]]... [--ca FILE] [--cert FILE --key FILE]
 *   gpu-agent run --data-dir D [--dev-gpu MIB|NAME:MIB[:CC[:CUDA]]]... [--max-units N] [--grace-seconds S] [--ca FILE] [--cert FILE --key FILE]
 *                 [--python /abs/path/python3] [--cache-mb MIB] [--available "Mon-Fri 18:00-08:00"] [--reserve-vram-mb MB]
 *                 [--isolation bubblewrap|none] [--unit-uid-base UID]
 *                 [--pip-index-url URL] [--pip-allow-host HOST[:PORT]]... [--find-links DIR]... [--env-cache-mb MIB]
 *   gpu-agent install [--user NAME] [--data-dir /var/lib/gpu-agent] [--url URL] [--unit-path FILE] [--dry-run]
 *                     [--available W] [--reserve-vram-mb MB] [--python P] [--pip-index-url URL] [--pip-allow-host H]... [--find-links DIR]...
 *                     [--env-cache-mb MIB]
 *   gpu-agent pause [--now] | resume | status [--json]   [--data-dir D]   (over the running agent's control socket)
 *
 * An https:// URL uses TLS; --ca (or GPU_AGENT_CA_FILE) names a PEM file of a
 * private CA to trust besides the system ones. --cert/--key (or
 * GPU_AGENT_CLIENT_CERT/GPU_AGENT_CLIENT_KEY) name the PEM client certificate
 * and key for mutual TLS, presented on the stream, downloads and uploads. They
 * are read at each start and never stored in node.json, so they can be rotated.
 *
 * GPU_AGENT_DEV_GPU_MIB is the same as --dev-gpu (several GPUs comma-separated); GPU_AGENT_KEEP_WORK=1 keeps
 * unit work directories for debugging.
 */
import { existsSync, readFileSync, realpathSync, statSync } from "node:fs";
import { isAbsolute, resolve as resolvePath } from "node:path";
import { fileURLToPath } from "node:url";
import tls from "node:tls";
import { Command, InvalidArgumentError } from "commander";
import pino from "pino";
import type { AgentTlsOptions } from "../src/node-agent/agent.ts";
import { createNodeAgent, enrollNode, trustCertificateAuthority } from "../src/node-agent/agent.ts";
import { AGENT_VERSION, parseDevGpu } from "../src/node-agent/capabilities.ts";
import type { DeclaredGpu } from "../src/node-agent/capabilities.ts";
import { allowedHostOrigin } from "../src/node-agent/build-proxy.ts";
import { DEFAULT_ENV_CACHE_MB } from "../src/node-agent/python-envs.ts";
import type { PackageSources } from "../src/node-agent/python-envs.ts";
import { ControlClientError, formatAgentStatus, sendControlCommand } from "../src/node-agent/control-socket.ts";
import type { ControlRequest } from "../src/node-agent/control-socket.ts";
import { parseAvailabilityWindow } from "../src/node-agent/availability-window.ts";
import { INSTALL_DEFAULTS, installAgentService } from "../src/node-agent/systemd-unit.ts";
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

/**
 * --isolation wins over GPU_AGENT_ISOLATION; "bubblewrap" (the default) sandboxes every unit and takes
 * none where the sandbox cannot start; "none" is the operator's explicit choice to run units unisolated.
 */
function isolationMode(flag: string | undefined): "bubblewrap" | "none" {
  const value = flag ?? (process.env["GPU_AGENT_ISOLATION"] || "bubblewrap");
  if (value !== "bubblewrap" && value !== "none") throw new Error(`--isolation (GPU_AGENT_ISOLATION) must be "bubblewrap" or "none", got ${JSON.stringify(value)}`);
  return value;
}

/** Commander's collector for a repeatable --find-links: each must be an existing directory, named absolutely. */
function collectDirs(value: string, previous: string[] | undefined): string[] {
  return [...(previous ?? []), wheelhouseDir(value)];
}

function wheelhouseDir(value: string): string {
  const dir = resolvePath(value);
  if (!existsSync(dir) || !statSync(dir).isDirectory()) throw new InvalidArgumentError(`${value} is not a directory`);
  return dir;
}

/** Commander's collector for a repeatable --pip-allow-host: each must be `host` or `host:port`. */
function collectHosts(value: string, previous: string[] | undefined): string[] {
  return [...(previous ?? []), allowedHost(value)];
}

function allowedHost(value: string): string {
  const origin = allowedHostOrigin(value);
  if (origin === undefined) throw new InvalidArgumentError(`${value} is not a host or host:port (e.g. files.example.org or 10.0.0.5:8080)`);
  return origin;
}

/**
 * Where packages' requirements come from and how much of their environments is kept: the flags win over
 * GPU_AGENT_PIP_INDEX_URL, GPU_AGENT_PIP_ALLOW_HOSTS (comma-separated), GPU_AGENT_FIND_LINKS (colon-separated)
 * and GPU_AGENT_ENV_CACHE_MB. An index must be an http(s) URL; allowed hosts go with an index.
 */
function pythonEnvOptions(opts: { pipIndexUrl?: string; pipAllowHost?: string[]; findLinks?: string[]; envCacheMb?: number }): { maxBytes: number; sources: PackageSources } {
  const indexUrl = opts.pipIndexUrl ?? (process.env["GPU_AGENT_PIP_INDEX_URL"] || undefined);
  if (indexUrl !== undefined) checkIndexUrl(indexUrl);
  const allowedHosts = opts.pipAllowHost ?? (process.env["GPU_AGENT_PIP_ALLOW_HOSTS"] ?? "").split(",").filter((h) => h !== "").map(allowedHost);
  checkAllowedHosts(indexUrl, allowedHosts);
  const findLinks = opts.findLinks ?? (process.env["GPU_AGENT_FIND_LINKS"] ?? "").split(":").filter((d) => d !== "").map(wheelhouseDir);
  const envCacheMb = opts.envCacheMb ?? envNonNegativeInt("GPU_AGENT_ENV_CACHE_MB") ?? DEFAULT_ENV_CACHE_MB;
  return {
    maxBytes: envCacheMb * 1024 * 1024,
    sources: { ...(indexUrl !== undefined ? { indexUrl } : {}), findLinks, ...(allowedHosts.length > 0 ? { allowedHosts } : {}) },
  };
}

/** A host is allowed for an index's files: without an index it would open the build's network for nothing. */
function checkAllowedHosts(indexUrl: string | undefined, allowedHosts: readonly string[]): void {
  if (indexUrl === undefined && allowedHosts.length > 0) throw new Error("--pip-allow-host (GPU_AGENT_PIP_ALLOW_HOSTS) goes with --pip-index-url: it allows the hosts an index serves its files from");
}

/** A package index must be an http(s) URL. */
function checkIndexUrl(url: string): void {
  if (!/^https?:\/\/[^\s]+$/.test(url)) throw new Error(`--pip-index-url (GPU_AGENT_PIP_INDEX_URL) must be an http(s) URL, got ${url}`);
}

/**
 * The declared development GPUs: --dev-gpu (repeatable) wins over GPU_AGENT_DEV_GPU_MIB (comma-separated);
 * each is `MIB` or `NAME:MIB[:CC[:CUDA]]` (capabilities.ts parseDevGpu).
 */
function devGpus(flags: DeclaredGpu[] | undefined): DeclaredGpu[] | undefined {
  if (flags !== undefined) return flags;
  const env = process.env["GPU_AGENT_DEV_GPU_MIB"];
  if (env === undefined || env === "") return undefined;
  return env.split(",").map((spec) => parseDevGpu(spec));
}

const DEV_GPU_HELP =
  'declare a development GPU when none is detected (repeatable, one per GPU): MIB, or NAME:MIB[:CC[:CUDA]], e.g. "RTX 4090:24564:8.9:12.4"; env GPU_AGENT_DEV_GPU_MIB, comma-separated';

/** Commander's parser of a repeatable --dev-gpu. */
function collectDevGpus(value: string, previous: DeclaredGpu[] | undefined): DeclaredGpu[] {
  try {
    return [...(previous ?? []), parseDevGpu(value)];
  } catch (err) {
    throw new InvalidArgumentError((err as Error).message);
  }
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
  .option("--dev-gpu <spec>", DEV_GPU_HELP, collectDevGpus)
  .option("--ca <file>", "PEM file of a private CA that signed the control plane's certificate (https:// URLs)")
  .option("--cert <file>", "PEM client certificate for mutual TLS (with --key); env GPU_AGENT_CLIENT_CERT")
  .option("--key <file>", "PEM private key of --cert; env GPU_AGENT_CLIENT_KEY")
  .option("--isolation <mode>", "bubblewrap (default) or none: reported to the control plane as run will use it; env GPU_AGENT_ISOLATION")
  .action(async (opts: { url: string; token: string; dataDir: string; devGpu?: DeclaredGpu[]; ca?: string; cert?: string; key?: string; isolation?: string }) => {
    const dev = devGpus(opts.devGpu);
    const identity = await enrollNode({
      url: opts.url,
      token: opts.token,
      dataDir: opts.dataDir,
      isolation: isolationMode(opts.isolation),
      logger,
      tls: tlsOptions(opts),
      ...(dev !== undefined ? { devGpus: dev } : {}),
    });
    process.stdout.write(`${JSON.stringify({ node_id: identity.node_id, trust_level: identity.trust_level })}\n`);
  });

program
  .command("run")
  .description("hold the session with the control plane and run assigned units until SIGINT/SIGTERM")
  .requiredOption("--data-dir <dir>", "agent data directory (holds node.json)")
  .option("--dev-gpu <spec>", DEV_GPU_HELP, collectDevGpus)
  .option("--max-units <n>", "most units run at once (reported to the control plane: the placer sends no more)", positiveInt, 2)
  .option("--grace-seconds <s>", "on shutdown, how long running units may finish before they are killed", positiveInt, 30)
  .option("--ca <file>", "PEM file of a private CA that signed the control plane's certificate (https:// URLs)")
  .option("--cert <file>", "PEM client certificate for mutual TLS (with --key); env GPU_AGENT_CLIENT_CERT")
  .option("--key <file>", "PEM private key of --cert; env GPU_AGENT_CLIENT_KEY")
  .option("--cache-mb <mib>", "bound of the dataset/package cache in <data-dir>/cache (0 turns it off); env GPU_AGENT_CACHE_MB", nonNegativeInt)
  .option("--python <path>", "absolute path of the interpreter units run with (e.g. a venv that has PyTorch); env GPU_AGENT_PYTHON; default python3 on the unit's PATH")
  .option("--pip-index-url <url>", "package index packages' requirements.txt are installed from (the build's sandbox then reaches that index's host:port, and no other); env GPU_AGENT_PIP_INDEX_URL; default none")
  .option("--pip-allow-host <host>", "host[:port] (default port 443) the build may also reach, for an index that serves its files from another host (repeatable); env GPU_AGENT_PIP_ALLOW_HOSTS, comma-separated", collectHosts)
  .option("--find-links <dir>", "directory of wheels requirements are installed from, offline (repeatable); env GPU_AGENT_FIND_LINKS, colon-separated", collectDirs)
  .option("--env-cache-mb <mib>", `bound of the packages' Python environments in <data-dir>/envs, least recently used first (default ${DEFAULT_ENV_CACHE_MB}); env GPU_AGENT_ENV_CACHE_MB`, nonNegativeInt)
  .option("--available <window>", 'when new units may start, local time, e.g. "Mon-Fri 18:00-08:00; Sat,Sun 00:00-24:00"; env GPU_AGENT_AVAILABLE; default always')
  .option("--reserve-vram-mb <mb>", "VRAM per GPU kept for the owner, never counted as free; env GPU_AGENT_RESERVE_VRAM_MB", nonNegativeInt)
  .option(
    "--isolation <mode>",
    "bubblewrap (default: every unit in its sandbox; no units where it cannot start) or none (units as plain processes); env GPU_AGENT_ISOLATION",
  )
  .option("--unit-uid-base <uid>", "first of the 65536 user ids sandboxed units run as when the agent is root; env GPU_AGENT_UNIT_UID_BASE", positiveInt)
  .action(async (opts: { dataDir: string; devGpu?: DeclaredGpu[]; maxUnits: number; graceSeconds: number; ca?: string; cert?: string; key?: string; python?: string; cacheMb?: number; pipIndexUrl?: string; pipAllowHost?: string[]; findLinks?: string[]; envCacheMb?: number; available?: string; reserveVramMb?: number; isolation?: string; unitUidBase?: number }) => {
    const dev = devGpus(opts.devGpu);
    const isolation = isolationMode(opts.isolation);
    const unitUidBase = opts.unitUidBase ?? envNonNegativeInt("GPU_AGENT_UNIT_UID_BASE");
    const available = opts.available ?? (process.env["GPU_AGENT_AVAILABLE"] || undefined);
    const reservedVramMb = opts.reserveVramMb ?? envNonNegativeInt("GPU_AGENT_RESERVE_VRAM_MB");
    const python = unitPython(opts.python ?? process.env["GPU_AGENT_PYTHON"]);
    const cacheMb = opts.cacheMb ?? envNonNegativeInt("GPU_AGENT_CACHE_MB");
    const pythonEnvs = pythonEnvOptions(opts);
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
      ...(dev !== undefined ? { devGpus: dev } : {}),
      isolation,
      runner: { ...(python !== undefined ? { python } : {}), ...(unitUidBase !== undefined ? { unitUidBase } : {}), pythonEnvs },
      ...(cacheMb !== undefined ? { inputCacheBytes: cacheMb * 1024 * 1024 } : {}),
      owner: { ...(available !== undefined ? { available } : {}), ...(reservedVramMb !== undefined ? { reservedVramMb } : {}) },
    });
    await agent.run(stop.signal);
  });

program
  .command("install")
  .description("write a systemd service that runs this agent as root with only the capabilities its sandbox needs, and print how to enroll and start it")
  .option("--user <name>", "run the agent as this system user instead (created when missing); its units then share that user's id outside their namespaces")
  .option("--data-dir <dir>", "agent data directory (made 0700, the agent's user's)", INSTALL_DEFAULTS.dataDir)
  .option("--url <url>", "control plane URL, for the printed enroll command")
  .option("--unit-path <file>", "where the unit file goes", INSTALL_DEFAULTS.unitPath)
  .option("--available <window>", "passed on to gpu-agent run")
  .option("--reserve-vram-mb <mb>", "passed on to gpu-agent run", nonNegativeInt)
  .option("--python <path>", "passed on to gpu-agent run")
  .option("--pip-index-url <url>", "passed on to gpu-agent run")
  .option("--pip-allow-host <host>", "passed on to gpu-agent run (repeatable)", collectHosts)
  .option("--find-links <dir>", "passed on to gpu-agent run (repeatable)", collectDirs)
  .option("--env-cache-mb <mib>", "passed on to gpu-agent run", nonNegativeInt)
  .option("--dry-run", "print the unit and the steps; write nothing")
  .action(async (opts: { user?: string; dataDir: string; url?: string; unitPath: string; available?: string; reserveVramMb?: number; python?: string; pipIndexUrl?: string; pipAllowHost?: string[]; findLinks?: string[]; envCacheMb?: number; dryRun?: boolean }) => {
    // Checked here, so a typo fails the install rather than the service's first start.
    if (opts.available !== undefined) parseAvailabilityWindow(opts.available);
    const python = unitPython(opts.python);
    if (opts.pipIndexUrl !== undefined) checkIndexUrl(opts.pipIndexUrl);
    checkAllowedHosts(opts.pipIndexUrl, opts.pipAllowHost ?? []);
    const result = await installAgentService({
      spec: {
        ...(opts.user !== undefined ? { user: opts.user } : {}),
        dataDir: resolvePath(opts.dataDir),
        // This very Node and this very script: what the owner just ran is what the service runs.
        agentCommand: [process.execPath, realpathSync(fileURLToPath(import.meta.url))],
        runArgs: [
          ...(opts.available !== undefined ? ["--available", opts.available] : []),
          ...(opts.reserveVramMb !== undefined ? ["--reserve-vram-mb", String(opts.reserveVramMb)] : []),
          ...(python !== undefined ? ["--python", python] : []),
          ...(opts.pipIndexUrl !== undefined ? ["--pip-index-url", opts.pipIndexUrl] : []),
          ...(opts.pipAllowHost ?? []).flatMap((host) => ["--pip-allow-host", host]),
          ...(opts.findLinks ?? []).flatMap((dir) => ["--find-links", dir]),
          ...(opts.envCacheMb !== undefined ? ["--env-cache-mb", String(opts.envCacheMb)] : []),
        ],
      },
      unitPath: resolvePath(opts.unitPath),
      dryRun: opts.dryRun === true,
      ...(opts.url !== undefined ? { url: opts.url } : {}),
    });
    if (opts.dryRun === true) process.stdout.write(`${result.unit}\n`);
    for (const warning of result.warnings) process.stderr.write(`warning: ${warning}\n`);
    process.stdout.write(`${result.nextSteps.join("\n")}\n`);
  });

/** Sends one owner command to the running agent; prints its answer; a refusal fails the command. */
async function ownerCommand(dataDir: string, request: ControlRequest, json: boolean): Promise<void> {
  let reply;
  try {
    reply = await sendControlCommand(dataDir, request);
  } catch (err) {
    // Said to a person at a terminal: one plain line, not a JSON log record.
    if (!(err instanceof ControlClientError)) throw err;
    process.stderr.write(`gpu-agent: ${err.message}\n`);
    process.exitCode = 1;
    return;
  }
  if (json) process.stdout.write(`${JSON.stringify(reply)}\n`);
  if (!reply.ok) {
    if (!json) process.stderr.write(`gpu-agent: ${reply.error}\n`);
    process.exitCode = 1;
    return;
  }
  if (json) return;
  if (reply.handed_back !== undefined) {
    const units = reply.handed_back.map((u) => `${u.unit_id} (attempt ${u.attempt})`);
    process.stdout.write(`handed back ${units.length} running unit(s)${units.length > 0 ? `: ${units.join(", ")}` : ""}\n`);
  }
  process.stdout.write(`${formatAgentStatus(reply.status)}\n`);
}

/** A command to the running agent: its --data-dir and --json, the rest per command. */
function ownerSubcommand(name: string, description: string): Command {
  return program
    .command(name)
    .description(description)
    .option("--data-dir <dir>", "the running agent's data directory", INSTALL_DEFAULTS.dataDir)
    .option("--json", "print the agent's answer as JSON");
}

type OwnerFlags = { dataDir: string; json?: boolean };

ownerSubcommand("pause", "take no new units (running ones finish); --now also hands the running ones back to be run elsewhere")
  .option("--now", "hand running units back at once (not billed, not counted against the customer's attempts)")
  .action((opts: OwnerFlags & { now?: boolean }) => ownerCommand(opts.dataDir, { command: "pause", now: opts.now === true }, opts.json === true));
ownerSubcommand("resume", "take new units again (within the availability window)").action((opts: OwnerFlags) =>
  ownerCommand(opts.dataDir, { command: "resume" }, opts.json === true),
);
ownerSubcommand("status", "show whether the agent takes units: paused, window, VRAM reserve, isolation, running units").action((opts: OwnerFlags) =>
  ownerCommand(opts.dataDir, { command: "status" }, opts.json === true),
);

program.parseAsync(process.argv).catch((err: unknown) => {
  logger.error({ err: err instanceof Error ? err.message : String(err) }, "gpu-agent failed");
  process.exitCode = 1;
});
