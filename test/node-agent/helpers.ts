/** Shared fixtures of the agent tests: zips, hashes and a blob server on port 0. */
import { createHash } from "node:crypto";
import http from "node:http";
import type { AddressInfo } from "node:net";
import yazl from "yazl";

/** sha256 hex of a buffer. */
export function sha256(data: Buffer): string {
  return createHash("sha256").update(data).digest("hex");
}

/** A zip of `files` (name → content) made with yazl. */
export function zipOf(files: Record<string, string | Buffer>): Promise<Buffer> {
  const zip = new yazl.ZipFile();
  for (const [name, content] of Object.entries(files)) zip.addBuffer(Buffer.from(content), name);
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

