/**
 * Real processes for high-availability tests and the failover benchmark: a
 * single-member etcd (Debian's etcd-server) on free loopback ports in a temp
 * directory, and scheduler replicas as child processes of cmd/scheduler.ts
 * sharing one PostgreSQL database, one etcd, one blob directory and one
 * signing key.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { once } from "node:events";
import { mkdtemp, rm } from "node:fs/promises";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";

const repoRoot = join(import.meta.dirname, "..", "..");

/** A free TCP port on 127.0.0.1. */
export async function freePort(): Promise<number> {
  const server = createServer();
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  const address = server.address();
  const port = typeof address === "object" && address !== null ? address.port : 0;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

/** Thrown from a poll check to stop polling at once (a process died). */
export class PollAbort extends Error {}

/** Polls `check` every `everyMs` until it returns a value (for real processes without an event to await). */
export async function poll<T>(what: string, check: () => Promise<T | undefined>, timeoutMs: number, everyMs = 50): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check().catch((error: unknown) => {
      if (error instanceof PollAbort) throw error;
      return undefined;
    });
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

/** A running etcd. */
export interface TestEtcd {
  readonly endpoint: string;
  stop(): Promise<void>;
}

/** Starts a one-member etcd cluster (healthy in about a second). */
export async function startEtcd(): Promise<TestEtcd> {
  const dir = await mkdtemp(join(tmpdir(), "gpu-agent-etcd-"));
  const [clientPort, peerPort] = [await freePort(), await freePort()];
  const client = `http://127.0.0.1:${clientPort}`;
  const peer = `http://127.0.0.1:${peerPort}`;
  const child = spawn(
    "etcd",
    [
      "--name=test",
      `--data-dir=${join(dir, "data")}`,
      `--listen-client-urls=${client}`,
      `--advertise-client-urls=${client}`,
      `--listen-peer-urls=${peer}`,
      `--initial-advertise-peer-urls=${peer}`,
      `--initial-cluster=test=${peer}`,
      "--log-level=error",
      "--unsafe-no-fsync",
    ],
    { stdio: ["ignore", "ignore", "pipe"] },
  );
  const errors: Buffer[] = [];
  child.stderr?.on("data", (c: Buffer) => errors.push(c));
  const stop = async () => {
    if (child.exitCode === null && child.signalCode === null) {
      const exited = once(child, "exit");
      child.kill("SIGKILL");
      await exited;
    }
    await rm(dir, { recursive: true, force: true });
  };
  try {
    await poll(
      "etcd to be healthy",
      async () => {
        if (child.exitCode !== null) throw new PollAbort(`etcd exited: ${Buffer.concat(errors).toString()}`);
        const res = await fetch(`${client}/health`);
        const body = (await res.json()) as { health?: string };
        return body.health === "true" ? true : undefined;
      },
      10_000,
    );
  } catch (error) {
    await stop();
    throw error;
  }
  return { endpoint: client, stop };
}

/** What every replica of one cluster shares. */
export interface ClusterSettings {
  databaseUrl: string;
  etcdEndpoint: string;
  blobDir: string;
  signingKey: string;
  adminToken: string;
  leaseTtlSeconds: number;
  /** Extra environment (limits, timings). */
  env?: Record<string, string>;
}

/** A scheduler replica running as a child process. */
export interface Replica {
  readonly id: string;
  readonly url: string;
  readonly adminToken: string;
  readonly child: ChildProcess;
  output(): string;
  /** The replica's view of the election (GET /api/v1/admin/scheduler). */
  status(): Promise<{ isLeader: boolean; leaderId: string; term: number }>;
  signal(signal: NodeJS.Signals): void;
  /** Resolves once the process exited. */
  exited(): Promise<void>;
  /** Kills it (SIGKILL) if running and removes its data directory. */
  stop(): Promise<void>;
}

/** Cluster-wide settings with fresh secrets. */
export async function clusterSettings(databaseUrl: string, etcdEndpoint: string, leaseTtlSeconds: number, env: Record<string, string> = {}): Promise<ClusterSettings> {
  return {
    databaseUrl,
    etcdEndpoint,
    blobDir: await mkdtemp(join(tmpdir(), "gpu-agent-blobs-")),
    signingKey: randomBytes(32).toString("base64url"),
    adminToken: `admin-${randomBytes(16).toString("hex")}`,
    leaseTtlSeconds,
    env,
  };
}

/** Starts `node cmd/scheduler.ts` as replica `id` and waits until it answers /readyz. */
export async function startReplica(settings: ClusterSettings, id: string): Promise<Replica> {
  const port = await freePort();
  const dataDir = await mkdtemp(join(tmpdir(), `gpu-agent-${id}-`));
  const url = `http://127.0.0.1:${port}`;
  const child = spawn(process.execPath, [join(repoRoot, "cmd", "scheduler.ts")], {
    env: {
      ...process.env,
      PORT: String(port),
      HOST: "127.0.0.1",
      DATABASE_URL: settings.databaseUrl,
      ETCD_ENDPOINTS: settings.etcdEndpoint,
      GPU_AGENT_DATA_DIR: dataDir,
      GPU_AGENT_BLOB_DIR: settings.blobDir,
      GPU_AGENT_SIGNING_KEY: settings.signingKey,
      GPU_AGENT_ADMIN_TOKEN: settings.adminToken,
      GPU_AGENT_REPLICA_ID: id,
      GPU_AGENT_LEASE_TTL_SECONDS: String(settings.leaseTtlSeconds),
      GPU_AGENT_PLACEMENT_INTERVAL_MS: "200",
      LOG_LEVEL: process.env["TEST_REPLICA_LOG_LEVEL"] ?? "info",
      ...settings.env,
    },
    stdio: ["ignore", "pipe", "pipe"],
  });
  const chunks: Buffer[] = [];
  child.stdout?.on("data", (c: Buffer) => chunks.push(c));
  child.stderr?.on("data", (c: Buffer) => chunks.push(c));
  const output = () => Buffer.concat(chunks).toString("utf8");
  const exit = once(child, "exit").then(() => undefined);
  const replica: Replica = {
    id,
    url,
    adminToken: settings.adminToken,
    child,
    output,
    async status() {
      const res = await fetch(`${url}/api/v1/admin/scheduler`, { headers: { authorization: `Bearer ${settings.adminToken}` }, signal: AbortSignal.timeout(1000) });
      if (res.status !== 200) throw new Error(`status ${res.status}`);
      const body = (await res.json()) as { is_leader?: boolean; leader_id?: string; term?: string };
      return { isLeader: body.is_leader === true, leaderId: body.leader_id ?? "", term: Number(body.term ?? 0) };
    },
    signal(sig) {
      if (child.exitCode === null && child.signalCode === null) child.kill(sig);
    },
    exited: () => exit,
    async stop() {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill("SIGCONT");
        child.kill("SIGKILL");
        await exit;
      }
      await rm(dataDir, { recursive: true, force: true });
    },
  };
  try {
    await poll(
      `replica ${id} to be ready`,
      async () => {
        if (child.exitCode !== null) throw new PollAbort(`replica ${id} exited`);
        const res = await fetch(`${url}/readyz`);
        return res.status === 200 ? true : undefined;
      },
      30_000,
    );
  } catch (error) {
    await replica.stop();
    throw new Error(`${(error as Error).message}\n${output()}`);
  }
  return replica;
}

/** The replica that leads (as it reports itself), waiting for one. */
export async function waitForLeader(replicas: readonly Replica[], timeoutMs: number, except?: Replica): Promise<{ replica: Replica; term: number }> {
  return poll(
    "a leader",
    async () => {
      for (const r of replicas) {
        if (r === except || r.child.exitCode !== null || r.child.signalCode !== null) continue;
        const s = await r.status().catch(() => undefined);
        if (s?.isLeader === true) return { replica: r, term: s.term };
      }
      return undefined;
    },
    timeoutMs,
    20,
  );
}
