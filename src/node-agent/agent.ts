/**
 * The node agent: enrollment, and the long-running loop that ties the
 * session (the stream to the control plane) to the runner (the units).
 *
 * Agent lifecycle:
 *   Starting → identity read from <dataDir>/node.json, capabilities detected → Serving
 *   Serving  → Drain from the control plane → Draining (runs finish, no new units)
 *            → signal aborted                → ShuttingDown
 *   Draining → signal aborted                → ShuttingDown
 *   ShuttingDown: refuse new units; wait up to shutdownGraceMs for running
 *   units; kill the rest (outcome NODE_ERROR so the control plane re-queues
 *   them); wait briefly for the outbox to be acked; close the stream.
 */
import { mkdir, readFile, rename, writeFile } from "node:fs/promises";
import path from "node:path";
import tls from "node:tls";
import { create } from "@bufbuild/protobuf";
import { createClient } from "@connectrpc/connect";
import type { Transport } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { AgentService, EnrollRequestSchema, HeartbeatSchema } from "../gen/gpuagent/agent/v1/agent_pb.ts";
import type { Capabilities, GpuUsage } from "../gen/gpuagent/agent/v1/agent_pb.ts";
import type { Clock } from "../platform/clock.ts";
import type { UtcOffset } from "./availability-window.ts";
import { detectCapabilities, diskFreeMb, gpuUsage, prepareIsolation } from "./capabilities.ts";
import type { DeclaredGpu } from "./capabilities.ts";
import { listenControlSocket } from "./control-socket.ts";
import { InputCache } from "./input-cache.ts";
import type { AgentLogger } from "./logger.ts";
import { createOwnerCommandHandler, openOwnerControls } from "./owner-controls.ts";
import { createUnitRunner } from "./runner.ts";
import { allowedCpus } from "./unit-limits.ts";
import { nvidiaGpuNodes } from "./unit-sandbox.ts";
import type { UnitRunnerOptions } from "./runner.ts";
import { createAgentSession } from "./session.ts";
import type { AgentSession } from "./session.ts";
import type { ClientCertificate } from "./transfer.ts";

export type { ClientCertificate } from "./transfer.ts";

/** What `enroll` stores in `<dataDir>/node.json` (snake_case, as printed). */
export interface NodeIdentity {
  /** Control plane base URL, e.g. http://scheduler:8080. */
  url: string;
  node_id: string;
  /** Secret: the file is written with mode 0600. */
  node_credential: string;
  trust_level: string;
}

/** Name of the identity file inside the data directory. */
export const NODE_FILE = "node.json";

/** Reads and checks `<dataDir>/node.json`. */
export async function readNodeIdentity(dataDir: string): Promise<NodeIdentity> {
  const file = path.join(dataDir, NODE_FILE);
  let raw: string;
  try {
    raw = await readFile(file, "utf8");
  } catch (err) {
    throw new Error(`cannot read ${file}: run "gpu-agent enroll" first (${(err as Error).message})`);
  }
  const value = JSON.parse(raw) as Partial<Record<keyof NodeIdentity, unknown>>;
  for (const key of ["url", "node_id", "node_credential", "trust_level"] as const) {
    if (typeof value[key] !== "string" || (key !== "trust_level" && value[key] === "")) {
      throw new Error(`${file}: field ${key} is missing`);
    }
  }
  return value as NodeIdentity;
}

/** Writes node.json atomically with mode 0600 (it holds the node credential). */
export async function writeNodeIdentity(dataDir: string, identity: NodeIdentity): Promise<void> {
  await mkdir(dataDir, { recursive: true, mode: 0o700 });
  const file = path.join(dataDir, NODE_FILE);
  const tmp = `${file}.${process.pid}.tmp`;
  await writeFile(tmp, `${JSON.stringify(identity, null, 2)}\n`, { mode: 0o600, flag: "w" });
  await rename(tmp, file);
}

/**
 * TLS settings of the agent's connections to the control plane. Not stored
 * in node.json: they are given at each start (files may be rotated).
 */
export interface AgentTlsOptions {
  /** PEM of the CA that signed the control plane's certificate (a private CA); the system CAs otherwise. */
  ca?: string;
  /**
   * The agent's client certificate for mutual TLS: presented on the gRPC
   * stream, the signed-URL downloads and the artifact uploads (to https://
   * servers that ask for one). Set together with `key`.
   */
  clientCertificate?: ClientCertificate;
}

/**
 * Adds a private CA to the CAs this process trusts by default, so the
 * signed-URL downloads (fetch) and artifact uploads (https) trust the control
 * plane's certificate as the stream does. Call once at start-up.
 */
export function trustCertificateAuthority(caPem: string): void {
  // Node >= 24.5 has it; the pinned @types/node (24.3) does not declare it yet.
  const withSetter = tls as typeof tls & { setDefaultCACertificates(certs: string[]): void };
  withSetter.setDefaultCACertificates([...tls.getCACertificates("default"), caPem]);
}

/** The gRPC (HTTP/2 cleartext for http://, TLS for https://) transport to the control plane. */
export function controlPlaneTransport(url: string, tlsOptions: AgentTlsOptions = {}): Transport {
  const secure = new URL(url).protocol === "https:";
  return createGrpcTransport({
    // gRPC always runs over HTTP/2 here (this transport has no httpVersion
    // switch); a plain http:// URL means HTTP/2 cleartext, https:// TLS with ALPN h2.
    baseUrl: url,
    ...(secure && (tlsOptions.ca !== undefined || tlsOptions.clientCertificate !== undefined)
      ? {
          nodeOptions: {
            ...(tlsOptions.ca !== undefined ? { ca: tlsOptions.ca } : {}),
            ...(tlsOptions.clientCertificate !== undefined ? { cert: tlsOptions.clientCertificate.cert, key: tlsOptions.clientCertificate.key } : {}),
          },
        }
      : {}),
    // Home networks drop idle connections silently; pings notice within ~30 s.
    pingIntervalMs: 15_000,
    pingTimeoutMs: 15_000,
  });
}

/** Options of enrollNode. */
export interface EnrollOptions {
  url: string;
  token: string;
  dataDir: string;
  devGpuMib?: number;
  /** Development GPUs (`--dev-gpu`), declared when none is detected. */
  devGpus?: readonly DeclaredGpu[];
  logger: AgentLogger;
  /** Injected in tests; default gRPC to `url`. */
  transport?: Transport;
  tls?: AgentTlsOptions;
  /** "none" only when the operator says so (`--isolation none`); default "bubblewrap". */
  isolation?: "bubblewrap" | "none";
}

/** Exchanges an enrollment token for a node identity and stores it. */
export async function enrollNode(opts: EnrollOptions): Promise<NodeIdentity> {
  await mkdir(opts.dataDir, { recursive: true, mode: 0o700 });
  const { isolation } = await prepareIsolation({ requested: opts.isolation ?? "bubblewrap", dataDir: opts.dataDir, manageCgroups: false, logger: opts.logger });
  const capabilities = await detectCapabilities({
    dataDir: opts.dataDir,
    logger: opts.logger,
    isolation,
    ...(opts.devGpuMib !== undefined ? { devGpuMib: opts.devGpuMib } : {}),
    ...(opts.devGpus !== undefined ? { devGpus: opts.devGpus } : {}),
  });
  const client = createClient(AgentService, opts.transport ?? controlPlaneTransport(opts.url, opts.tls));
  const res = await client.enroll(create(EnrollRequestSchema, { token: opts.token, capabilities }));
  const identity: NodeIdentity = {
    url: opts.url,
    node_id: res.nodeId,
    node_credential: res.nodeCredential,
    trust_level: res.trustLevel,
  };
  await writeNodeIdentity(opts.dataDir, identity);
  return identity;
}

/** Options of createNodeAgent. */
export interface NodeAgentOptions {
  dataDir: string;
  /** Declare a development GPU of this many MiB when none is detected. */
  devGpuMib?: number;
  /** Development GPUs (`--dev-gpu`), declared when none is detected. */
  devGpus?: readonly DeclaredGpu[];
  /** Most units run at once (`--max-units`); reported as Capabilities.max_units. */
  maxConcurrentUnits: number;
  clock: Clock;
  logger: AgentLogger;
  /** How long shutdown waits for running units before killing them (default 30 s). */
  shutdownGraceMs?: number;
  /** How long shutdown waits for the control plane to ack final messages (default 10 s). */
  flushTimeoutMs?: number;
  /** Keep work directories (GPU_AGENT_KEEP_WORK=1). */
  keepWork?: boolean;
  /** Bound of the dataset/package cache in `<dataDir>/cache` (default 10 GiB; 0 turns it off). */
  inputCacheBytes?: number;
  /** Injected in tests; default gRPC to node.json's url. */
  transport?: Transport;
  tls?: AgentTlsOptions;
  /**
   * The owner's choices (owner-controls.ts): the availability window as written (`--available`, local
   * time), the VRAM kept per GPU (`--reserve-vram-mb`), and the time zone (tests; default the host's).
   * The pause state is not here: it lives in `<dataDir>/owner.json`, set through the control socket.
   */
  owner?: { available?: string; reservedVramMb?: number; utcOffset?: UtcOffset };
  /**
   * "bubblewrap" (the default): every unit in its sandbox, or no units at all when it cannot start here;
   * "none": units as plain processes, the operator's explicit choice (`--isolation none`).
   */
  isolation?: "bubblewrap" | "none";
  /** Runner knobs for tests (kill grace, throttles) and the sandbox's uid range. */
  runner?: Partial<Pick<UnitRunnerOptions, "killGraceMs" | "progressIntervalMs" | "logFlushMs" | "python" | "unitUser" | "agentPath" | "unitUidBase" | "pythonEnvs">>;
}

/** Default bound of the node's dataset/package cache. */
export const defaultInputCacheBytes = 10 * 1024 ** 3;

/** A node agent; `run` resolves after a graceful shutdown. */
export interface NodeAgent {
  run(signal: AbortSignal): Promise<void>;
}

/** Builds the agent. Nothing happens until `run`. */
export function createNodeAgent(opts: NodeAgentOptions): NodeAgent {
  const { clock, logger } = opts;
  return {
    async run(signal) {
      const identity = await readNodeIdentity(opts.dataDir);
      // Before anything slow: a bad --available or a broken owner.json stops the start with its reason.
      const owner = await openOwnerControls({
        dataDir: opts.dataDir,
        clock,
        logger,
        ...(opts.owner?.available !== undefined ? { available: opts.owner.available } : {}),
        ...(opts.owner?.reservedVramMb !== undefined ? { reservedVramMb: opts.owner.reservedVramMb } : {}),
        ...(opts.owner?.utcOffset !== undefined ? { utcOffset: opts.owner.utcOffset } : {}),
      });
      const interpreter = {
        ...(opts.runner?.python !== undefined ? { python: opts.runner.python } : {}),
        ...(opts.runner?.agentPath !== undefined ? { agentPath: opts.runner.agentPath } : {}),
      };
      const isolation = await prepareIsolation({ requested: opts.isolation ?? "bubblewrap", dataDir: opts.dataDir, manageCgroups: true, logger, ...interpreter });
      const capabilities: Capabilities = await detectCapabilities({
        dataDir: opts.dataDir,
        logger,
        isolation: isolation.isolation,
        maxUnits: opts.maxConcurrentUnits,
        ...(opts.devGpuMib !== undefined ? { devGpuMib: opts.devGpuMib } : {}),
        ...(opts.devGpus !== undefined ? { devGpus: opts.devGpus } : {}),
        ...interpreter,
      });
      // A sandboxed GPU unit gets its GPU's device node only: the driver numbers them by UUID.
      const gpuNodes = await nvidiaGpuNodes();
      const unmapped = capabilities.gpus.filter((g) => !g.declared && !gpuNodes.some((n) => n.uuid === g.uuid));
      if (isolation.runner.mechanism === "bubblewrap" && unmapped.length > 0) {
        logger.warn({ gpus: unmapped.map((g) => g.index) }, "no /proc/driver/nvidia/gpus entry for these GPUs: sandboxed units get no device for them");
      }
      logger.info(
        {
          node_id: identity.node_id,
          url: identity.url,
          gpus: capabilities.gpus.map((g) => `${g.index}:${g.name}:${g.vramMb}MiB${g.declared ? " (declared)" : ""}`),
          python: capabilities.pythonVersion,
          max_units: opts.maxConcurrentUnits,
          isolation: capabilities.isolation?.mechanism,
          isolation_reason: capabilities.isolation?.reason,
          isolation_limits: capabilities.isolation?.limits,
          owner: { paused: owner.paused, available: opts.owner?.available ?? "always", reserved_vram_mb: opts.owner?.reservedVramMb ?? 0 },
        },
        "agent starting",
      );
      const reserve = opts.owner?.reservedVramMb ?? 0;
      if (reserve > 0 && capabilities.gpus.length > 0 && capabilities.gpus.every((g) => g.vramMb <= reserve)) {
        logger.warn({ reserved_vram_mb: reserve }, "the VRAM reserve is as large as every GPU: no GPU unit can be placed on this node");
      }
      const client = createClient(AgentService, opts.transport ?? controlPlaneTransport(identity.url, opts.tls));

      // The runner reports through the session; the session is created after
      // the runner, so the forward reference goes through this variable.
      let session: AgentSession | undefined;
      // The GPUs' memory as the last heartbeat measured it: an Assign finding its VRAM taken by the owner is busy.
      let lastUsage: readonly GpuUsage[] = [];
      const cacheBytes = opts.inputCacheBytes ?? defaultInputCacheBytes;
      const runner = createUnitRunner({
        ...opts.runner,
        dataDir: opts.dataDir,
        nodeCredential: identity.node_credential,
        send: (body) => session?.send(body),
        gpuIndexes: () => capabilities.gpus.map((g) => g.index),
        gpuUuid: (index) => capabilities.gpus.find((g) => g.index === index)?.uuid,
        gpuMemory: (index) => {
          const gpu = capabilities.gpus.find((g) => g.index === index);
          const used = lastUsage.find((u) => u.index === index);
          return gpu === undefined || used === undefined ? undefined : { totalMb: gpu.vramMb, usedMb: used.vramUsedMb, reservedMb: owner.policy().reservedVramMb };
        },
        gpuDevice: (index) => {
          const gpu = capabilities.gpus.find((g) => g.index === index && !g.declared);
          const minor = gpuNodes.find((n) => gpu !== undefined && n.uuid === gpu.uuid)?.minor;
          return gpu !== undefined && minor !== undefined ? { uuid: gpu.uuid, minor } : undefined;
        },
        isolation: isolation.runner,
        cpus: await allowedCpus(),
        maxConcurrentUnits: opts.maxConcurrentUnits,
        ownerRefusal: () => owner.refusal(),
        clock,
        logger,
        ...(opts.tls?.clientCertificate !== undefined ? { clientCertificate: opts.tls.clientCertificate } : {}),
        ...(opts.keepWork !== undefined ? { keepWork: opts.keepWork } : {}),
        ...(cacheBytes > 0 ? { inputCache: new InputCache(path.join(opts.dataDir, "cache"), cacheBytes, logger) } : {}),
      });
      const measureGpus = async () => (lastUsage = await gpuUsage(capabilities.gpus));
      await measureGpus();
      const heartbeat = async () => ({
        diskFreeMb: await diskFreeMb(opts.dataDir),
        gpus: await measureGpus(),
        running: runner.running(),
        owner: owner.policy(),
      });
      session = createAgentSession({
        client,
        nodeId: identity.node_id,
        nodeCredential: identity.node_credential,
        clock,
        logger,
        async hello() {
          capabilities.diskFreeMb = await diskFreeMb(opts.dataDir);
          capabilities.owner = owner.policy();
          return { capabilities, running: runner.running() };
        },
        heartbeat,
        onControl(message) {
          switch (message.body.case) {
            case "assign":
              void runner.assign(message.body.value);
              break;
            case "cancel":
              runner.cancel(message.body.value);
              break;
            case "drain":
              logger.warn({ reason: message.body.value.reason }, "drain requested: no new units");
              runner.drain();
              break;
            default:
              break;
          }
        },
      });

      // The control plane hears of the owner's changes at once, not at the next regular heartbeat.
      owner.onChange(() => {
        heartbeat().then(
          (value) => session?.send({ case: "heartbeat", value: create(HeartbeatSchema, value) }),
          (err: unknown) => logger.warn({ err }, "could not build heartbeat"),
        );
      });
      const controlSocket = await listenControlSocket(
        opts.dataDir,
        createOwnerCommandHandler({ controls: owner, runner, nodeId: identity.node_id, isolation: () => capabilities.isolation, clock }),
        logger,
      );

      // The stream outlives `signal` so the last Finished messages still go out.
      const sessionStop = new AbortController();
      const sessionDone = session.run(sessionStop.signal);
      const windowWatched = owner.watchWindow(sessionStop.signal);

      await new Promise<void>((resolve) => {
        if (signal.aborted) return resolve();
        signal.addEventListener("abort", () => resolve(), { once: true });
      });

      runner.drain();
      const graceMs = opts.shutdownGraceMs ?? 30_000;
      logger.info({ running: runner.running().length, grace_ms: graceMs }, "shutting down: waiting for running units");
      const graceOver = new AbortController();
      const finishedInTime = await Promise.race([
        runner.idle().then(() => true),
        clock.sleep(graceMs, graceOver.signal).then(
          () => false,
          () => false,
        ),
      ]);
      graceOver.abort();
      if (!finishedInTime) {
        logger.warn({ running: runner.running().length }, "grace period over: killing running units");
        await runner.killAll();
      }
      const flushed = await session.flushed(opts.flushTimeoutMs ?? 10_000);
      if (!flushed) logger.warn({ unacked: session.unacked() }, "stopping with unacknowledged messages");
      sessionStop.abort();
      await sessionDone;
      await windowWatched;
      await controlSocket.close();
      logger.info({}, "agent stopped");
    },
  };
}
