// npm run bench:hostile — hostile clients on loopback against one control-plane process
// (`node cmd/scheduler.ts`, embedded database, the production transport defaults unless set in the
// environment: GPU_AGENT_MAX_BODY_BYTES, GPU_AGENT_BODY_TIMEOUT_MS, … see docs/limits.md). Prints one
// JSON line. Every rss figure is the scheduler process's (from /proc), never this one's.
//
//   bomb: a 400 KB gzip body that inflates to 400 MiB, POSTed to the unauthenticated Connect Login:
//         status, ms to the answer, scheduler rss before / peak while it ran / after, and how long a
//         /healthz took meanwhile; then BENCH_PARALLEL_BOMBS (default 3) of them at once.
//   streams: BENCH_STREAMS (default 10,000) HTTP/2 streams that each send their headers and one body
//         byte and then nothing, from a client that never acknowledges the server's SETTINGS: on one
//         connection, then spread over 100 connections. For each: how many the server kept open
//         (neither refused nor reset) 2 s later and the scheduler's rss growth, and how many it still
//         kept once its body timeout had passed (BENCH_WAIT_BODY_TIMEOUT=0 skips that wait).
//   connections: 2 × the per-address cap of idle connections opened at once from 127.0.0.1: how many
//         the server kept.
import { type ChildProcess, spawn } from "node:child_process";
import { randomUUID } from "node:crypto";
import { readFileSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as delay } from "node:timers/promises";
import { createGzip } from "node:zlib";
import { defaultTransport, transportConfigFromEnv } from "../src/platform/config.ts";
import type { RawH2Connection } from "../test/server/raw-h2.ts";
import { rawH2 } from "../test/server/raw-h2.ts";

const root = join(import.meta.dirname, "..");
const MiB = 1024 * 1024;
const streamsWanted = Number(process.env["BENCH_STREAMS"] ?? 10_000);
const parallelBombs = Number(process.env["BENCH_PARALLEL_BOMBS"] ?? 3);
const waitBodyTimeout = process.env["BENCH_WAIT_BODY_TIMEOUT"] !== "0";
const transport = transportConfigFromEnv(process.env);
const loginPath = "/gpuagent.customer.v1.CustomerService/Login";

function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = net.createServer().listen(0, "127.0.0.1", () => {
      const port = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(port));
    });
  });
}

/** Resident memory of a process in MiB, from /proc. */
function rssMb(pid: number): number {
  const kb = Number(/^VmRSS:\s+(\d+)/m.exec(readFileSync(`/proc/${pid}/status`, "utf8"))?.[1] ?? 0);
  return Math.round((kb / 1024) * 10) / 10;
}

/** gzip of `inflated` zero bytes, made in 1 MiB pieces. */
async function gzipBomb(inflated: number): Promise<Buffer> {
  const gzip = createGzip({ level: 9 });
  const chunks: Buffer[] = [];
  gzip.on("data", (c: Buffer) => chunks.push(c));
  const done = new Promise((resolve) => gzip.once("end", resolve));
  const zeros = Buffer.alloc(MiB);
  for (let written = 0; written < inflated; written += MiB) if (!gzip.write(zeros)) await new Promise((resolve) => gzip.once("drain", resolve));
  gzip.end();
  await done;
  return Buffer.concat(chunks);
}

/** Runs `work` while sampling the scheduler's rss every 10 ms. */
async function withRss<T>(pid: number, work: () => Promise<T>): Promise<{ result: T; rss_before_mb: number; rss_peak_mb: number; rss_after_mb: number }> {
  const before = rssMb(pid);
  let peak = before;
  const sampler = setInterval(() => (peak = Math.max(peak, rssMb(pid))), 10);
  try {
    const result = await work();
    const after = rssMb(pid);
    return { result, rss_before_mb: before, rss_peak_mb: Math.max(peak, after), rss_after_mb: after };
  } finally {
    clearInterval(sampler);
  }
}

async function timed<T>(work: () => Promise<T>): Promise<{ value: T; ms: number }> {
  const started = performance.now();
  const value = await work();
  return { value, ms: Math.round(performance.now() - started) };
}

/** Streams the server still holds on these connections: opened, not refused or reset, connection open. */
function kept(connections: RawH2Connection[], opened: number[]): number {
  let n = 0;
  connections.forEach((c, i) => {
    if (!c.report.closed) n += opened[i]! - c.report.resets.size;
  });
  return n;
}

/** Opens `perConnection` streams (headers and one body byte each) on each of `count` raw connections. */
async function idleStreams(port: number, count: number, perConnection: number): Promise<{ connections: RawH2Connection[]; opened: number[] }> {
  const connections: RawH2Connection[] = [];
  for (let i = 0; i < count; i++) connections.push(await rawH2(port, { ackSettings: false }));
  await Promise.all(connections.map((c) => c.greeted));
  const opened = connections.map((c) => {
    for (let s = 0; s < perConnection; s++) c.open(loginPath, { body: Buffer.from("{"), headers: [["content-type", "application/json"]] });
    return perConnection;
  });
  return { connections, opened };
}

const dataDir = await mkdtemp(join(tmpdir(), "bench-hostile-"));
const port = await freePort();
const scheduler: ChildProcess = spawn(process.execPath, [join(root, "cmd", "scheduler.ts")], {
  env: { ...process.env, PORT: String(port), GPU_AGENT_DATA_DIR: dataDir, GPU_AGENT_ADMIN_TOKEN: randomUUID() + randomUUID(), LOG_LEVEL: "warn" },
  stdio: ["ignore", "ignore", "inherit"],
});
try {
  const base = `http://127.0.0.1:${port}`;
  for (let i = 0; ; i++) {
    if (await fetch(`${base}/readyz`).then((r) => r.ok, () => false)) break;
    if (i > 600) throw new Error("the scheduler did not become ready");
    await delay(100);
  }
  const pid = scheduler.pid!;
  await delay(1000);

  // ---- the bomb
  const bomb = await gzipBomb(400 * MiB);
  const postBomb = () =>
    timed(async () => {
      const res = await fetch(base + loginPath, { method: "POST", headers: { "content-type": "application/json", "content-encoding": "gzip" }, body: bomb });
      const body = (await res.json()) as { code?: string; details?: Array<{ debug?: { code?: string } }> };
      return { status: res.status, code: body.code, reason: body.details?.[0]?.debug?.code };
    });
  const single = await withRss(pid, async () => {
    const answer = postBomb();
    // Is the port still responsive while the bomb is handled?
    const healthz = await timed(() => fetch(`${base}/healthz`).then((r) => r.status));
    return { answer: await answer, healthz };
  });
  const parallel = await withRss(pid, () => timed(() => Promise.all(Array.from({ length: parallelBombs }, postBomb))));

  // ---- idle streams
  const streamRuns: Record<string, unknown>[] = [];
  for (const connections of [1, 100]) {
    const perConnection = Math.ceil(streamsWanted / connections);
    const rssBefore = rssMb(pid);
    const openedAt = performance.now();
    const run = await idleStreams(port, connections, perConnection);
    await delay(2000);
    const rssAfter = rssMb(pid);
    const entry: Record<string, unknown> = {
      connections,
      attempted: perConnection * connections,
      kept_after_2s: kept(run.connections, run.opened),
      refused: run.connections.reduce((n, c) => n + [...c.report.resets.values()].filter((code) => code === 7).length, 0),
      connections_closed_by_server: run.connections.filter((c) => c.report.closed).length,
      goaway_codes: [...new Set(run.connections.map((c) => c.report.goaway).filter((code) => code !== undefined))],
      advertised_max_concurrent_streams: run.connections[0]?.report.maxConcurrentStreams[0],
      rss_before_mb: rssBefore,
      rss_after_mb: rssAfter,
      rss_growth_mb: Math.round((rssAfter - rssBefore) * 10) / 10,
    };
    if (waitBodyTimeout) {
      // The server reaches the last of them a while after they were sent; each is reset a body timeout after that.
      while (kept(run.connections, run.opened) > 0 && performance.now() - openedAt < 3 * transport.bodyTimeoutMs) await delay(250);
      entry["kept_in_the_end"] = kept(run.connections, run.opened);
      entry["all_reset_after_ms"] = Math.round(performance.now() - openedAt);
      entry["rss_then_mb"] = rssMb(pid);
    }
    streamRuns.push(entry);
    for (const c of run.connections) c.destroy();
    await delay(500);
  }

  // ---- connections per address
  const cap = transport.maxConnectionsPerAddress;
  const wanted = cap === 0 ? 512 : cap * 2;
  const sockets = await Promise.all(
    Array.from(
      { length: wanted },
      () =>
        new Promise<net.Socket>((resolve) => {
          const s = net.connect(port, "127.0.0.1", () => {
            // An HTTP/2 preface, so the connection is held as an idle session rather than cut as silent.
            s.write("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00");
            resolve(s);
          });
          s.on("error", () => undefined);
          s.on("data", () => undefined);
        }),
    ),
  );
  await delay(1000);
  const connectionsKept = sockets.filter((s) => !s.destroyed && s.readyState === "open").length;
  for (const s of sockets) s.destroy();

  console.log(
    JSON.stringify({
      transport: { ...defaultTransport, ...transport },
      bomb: {
        wire_bytes: bomb.length,
        inflates_to_bytes: 400 * MiB,
        status: single.result.answer.value.status,
        code: single.result.answer.value.code,
        reason: single.result.answer.value.reason,
        answer_ms: single.result.answer.ms,
        healthz_ms_meanwhile: single.result.healthz.ms,
        rss_before_mb: single.rss_before_mb,
        rss_peak_mb: single.rss_peak_mb,
        rss_after_mb: single.rss_after_mb,
      },
      bombs_at_once: {
        count: parallelBombs,
        statuses: parallel.result.value.map((a) => a.value.status),
        all_answered_ms: parallel.result.ms,
        rss_before_mb: parallel.rss_before_mb,
        rss_peak_mb: parallel.rss_peak_mb,
        rss_after_mb: parallel.rss_after_mb,
      },
      idle_streams: streamRuns,
      connections_from_one_address: { attempted: wanted, kept: connectionsKept, cap },
    }),
  );
} finally {
  scheduler.kill("SIGTERM");
  await new Promise((resolve) => scheduler.once("exit", resolve));
  await rm(dataDir, { recursive: true, force: true });
}
