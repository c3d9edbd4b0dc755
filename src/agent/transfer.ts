/**
 * Moving bytes for a unit: inputs come down by signed URL (no credentials
 * attached), hashed while they stream to disk; artifacts go up with the
 * node credential, hashed first, then streamed with an exact Content-Length.
 */
import { createHash } from "node:crypto";
import { createWriteStream } from "node:fs";
import type { FileHandle } from "node:fs/promises";
import http from "node:http";
import https from "node:https";
import { Readable, Transform } from "node:stream";
import { pipeline } from "node:stream/promises";
import type { Clock } from "../platform/clock.ts";

/** A transfer failed; `retryable` says whether trying again could help. */
export class TransferError extends Error {
  override name = "TransferError";
  readonly retryable: boolean;
  constructor(message: string, retryable: boolean) {
    super(message);
    this.retryable = retryable;
  }
}

/** What a download produced. */
export interface DownloadResult {
  sha256: string;
  sizeBytes: number;
}

/**
 * GETs `url` into `dest` (created exclusively), hashing on the way. Stops
 * early when more than `maxBytes` arrive, so a wrong or hostile URL cannot
 * fill the disk.
 */
export async function downloadToFile(url: string, dest: string, maxBytes: number, signal: AbortSignal): Promise<DownloadResult> {
  let response: Response;
  try {
    // redirect "error": a signed URL points at the blob itself; following
    // redirects would let a misconfigured store send the node anywhere.
    response = await fetch(url, { signal, redirect: "error" });
  } catch (err) {
    if (signal.aborted) throw signal.reason;
    throw new TransferError(`GET failed: ${err instanceof Error ? err.message : String(err)}`, true);
  }
  if (!response.ok || !response.body) {
    await response.body?.cancel().catch(() => {});
    const retryable = response.status >= 500 || response.status === 408 || response.status === 429;
    throw new TransferError(`GET answered HTTP ${response.status}`, retryable);
  }
  const hash = createHash("sha256");
  let size = 0;
  const meter = new Transform({
    transform(chunk: Buffer, _enc, cb) {
      size += chunk.length;
      if (size > maxBytes) return cb(new TransferError(`download larger than ${maxBytes} bytes`, false));
      hash.update(chunk);
      cb(null, chunk);
    },
  });
  try {
    await pipeline(Readable.fromWeb(response.body), meter, createWriteStream(dest, { flags: "wx", mode: 0o644 }), { signal });
  } catch (err) {
    if (signal.aborted) throw signal.reason;
    if (err instanceof TransferError) throw err;
    throw new TransferError(`download interrupted: ${err instanceof Error ? err.message : String(err)}`, true);
  }
  return { sha256: hash.digest("hex"), sizeBytes: size };
}

/** sha256 hex and size of an open file, read from the start. */
export async function hashFile(fh: FileHandle): Promise<DownloadResult> {
  const hash = createHash("sha256");
  let size = 0;
  for await (const chunk of fh.createReadStream({ start: 0, autoClose: false }) as AsyncIterable<Buffer>) {
    hash.update(chunk);
    size += chunk.length;
  }
  return { sha256: hash.digest("hex"), sizeBytes: size };
}

/**
 * PUTs `size` bytes of an open file to `url` with `headers`; resolves on 2xx.
 * node:http instead of fetch so the body streams with an exact
 * Content-Length (blob stores check it) rather than chunked encoding.
 */
export function putFile(url: string, fh: FileHandle, size: number, headers: Record<string, string>, signal: AbortSignal): Promise<void> {
  const target = new URL(url);
  const lib = target.protocol === "https:" ? https : target.protocol === "http:" ? http : undefined;
  if (!lib) return Promise.reject(new TransferError(`unsupported upload URL scheme ${target.protocol}`, false));
  return new Promise<void>((resolve, reject) => {
    const req = lib.request(target, {
      method: "PUT",
      headers: { ...headers, "content-length": String(size) },
      signal,
    });
    req.on("response", (res) => {
      res.resume();
      const status = res.statusCode ?? 0;
      if (status >= 200 && status < 300) resolve();
      else reject(new TransferError(`PUT answered HTTP ${status}`, status >= 500 || status === 408 || status === 429));
    });
    req.on("error", (err) => {
      reject(signal.aborted ? signal.reason : new TransferError(`PUT failed: ${err.message}`, true));
    });
    const body = fh.createReadStream({ start: 0, end: Math.max(0, size - 1), autoClose: false });
    if (size === 0) {
      body.destroy();
      req.end();
    } else {
      body.on("error", (err) => req.destroy(err));
      body.pipe(req);
    }
  });
}

/**
 * Runs `attempt` until it succeeds, a non-retryable TransferError is thrown,
 * or `tries` attempts are spent, sleeping 0.5 s, 1 s, 2 s … between them.
 */
export async function withRetries<T>(tries: number, clock: Clock, signal: AbortSignal, attempt: () => Promise<T>): Promise<T> {
  let last: unknown;
  for (let i = 0; i < tries; i++) {
    if (i > 0) await clock.sleep(500 * 2 ** (i - 1), signal);
    try {
      return await attempt();
    } catch (err) {
      last = err;
      if (signal.aborted) throw err;
      if (err instanceof TransferError && !err.retryable) throw err;
    }
  }
  throw last;
}
