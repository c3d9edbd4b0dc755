/** Shared fixtures of the agent tests: zips, hashes and a blob server on port 0. */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { readdirSync, readFileSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import http from "node:http";
import type { AddressInfo } from "node:net";
import os from "node:os";
import path from "node:path";
import yazl from "yazl";
import { prepareIsolation } from "../../src/node-agent/capabilities.ts";
import { silentLogger } from "../../src/node-agent/logger.ts";
import type { UnitIsolation } from "../../src/node-agent/unit-sandbox.ts";

/** sha256 hex of a buffer. */
export function sha256(data: Buffer): string {
  return createHash("sha256").update(data).digest("hex");
}

/** A zip of `files` (name → content) made with yazl. */
export function zipOf(files: Record<string, string | Buffer>, options: { mtime?: Date } = {}): Promise<Buffer> {
  const zip = new yazl.ZipFile();
  for (const [name, content] of Object.entries(files)) zip.addBuffer(Buffer.from(content), name, options.mtime === undefined ? {} : { mtime: options.mtime });
  zip.end();
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    zip.outputStream.on("data", (c: Buffer) => chunks.push(c));
    zip.outputStream.on("end", () => resolve(Buffer.concat(chunks)));
    zip.outputStream.on("error", reject);
  });
}

/** Serves GET /blobs/<key> and records PUT /artifacts/<unit>/<name>. */
export interface BlobServer {
  url: string;
  blobs: Map<string, Buffer>;
  uploads: Map<string, { body: Buffer; headers: http.IncomingHttpHeaders }>;
  close(): Promise<void>;
}

/** Starts the blob server on 127.0.0.1, port 0. */
export async function startBlobServer(): Promise<BlobServer> {
  const blobs = new Map<string, Buffer>();
  const uploads = new Map<string, { body: Buffer; headers: http.IncomingHttpHeaders }>();
  const server = http.createServer((req, res) => {
    const url = new URL(req.url ?? "/", "http://x");
    if (req.method === "GET" && url.pathname.startsWith("/blobs/")) {
      const blob = blobs.get(decodeURIComponent(url.pathname.slice("/blobs/".length)));
      if (!blob) return void res.writeHead(404).end();
      return void res.writeHead(200, { "content-length": blob.length }).end(blob);
    }
    if (req.method === "PUT" && url.pathname.startsWith("/artifacts/")) {
      const chunks: Buffer[] = [];
      req.on("data", (c: Buffer) => chunks.push(c));
      req.on("end", () => {
        uploads.set(decodeURIComponent(url.pathname.slice("/artifacts/".length)), {
          body: Buffer.concat(chunks),
          headers: req.headers,
        });
        res.writeHead(201).end();
      });
      return;
    }
    res.writeHead(404).end();
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    blobs,
    uploads,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}


/** Host pids of the processes whose real uid is `uid` (a sandboxed unit's own uid when the agent is root). */
export function processesOfUid(uid: number): number[] {
  const pids: number[] = [];
  for (const name of readdirSync("/proc")) {
    if (!/^\d+$/.test(name)) continue;
    let status: string;
    try {
      status = readFileSync(`/proc/${name}/status`, "utf8");
    } catch {
      continue;
    }
    const real = status.match(/^Uid:\s+(\d+)/m)?.[1];
    if (Number(real) === uid && !/^State:\s+Z/m.test(status)) pids.push(Number(name));
  }
  return pids;
}

/** Resolves with `probe()`'s first defined value, polling every 20 ms; fails after `timeoutMs`. */
export async function waitFor<T>(what: string, probe: () => T | undefined, timeoutMs = 10_000): Promise<T> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const value = probe();
    if (value !== undefined) return value;
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** The bubblewrap sandbox of this machine, probed as the agent probes it at start; a machine without one fails the test. */
export async function probedSandbox(): Promise<UnitIsolation> {
  const probeDir = await mkdtemp(path.join(os.tmpdir(), "gpu-agent-probe-"));
  const sandbox = (await prepareIsolation({ requested: "bubblewrap", dataDir: probeDir, manageCgroups: false, logger: silentLogger })).runner;
  await rm(probeDir, { recursive: true, force: true });
  assert.equal(sandbox.mechanism, "bubblewrap", sandbox.mechanism === "unavailable" ? sandbox.reason : "");
  return sandbox;
}
