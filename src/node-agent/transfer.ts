/**
 * Moving bytes for a unit: inputs come down by signed URL (no credentials
 * attached but the TLS client certificate, when configured), hashed while they stream to disk; artifacts go up with the
 * node credential, hashed first, then streamed with an exact Content-Length.
 */
import { createHash } from "node:crypto";
import { createWriteStream } from "node:fs";
import type { FileHandle } from "node:fs/promises";
import http from "node:http";
import https from "node:https";
import { Transform } from "node:stream";
import { pipeline } from "node:stream/promises";
import type { Clock } from "../platform/clock.ts";

/**
 * A transfer failed; `retryable` says whether trying again could help. `status` and `code` are
 * the HTTP status and the control plane's error code when the server refused it.
 */
export class TransferError extends Error {
  override name = "TransferError";
  readonly retryable: boolean;
  readonly status: number | undefined;
  readonly code: string | undefined;
  constructor(message: string, retryable: boolean, refusal?: { status: number; code?: string | undefined }) {
    super(message);
    this.retryable = retryable;
    this.status = refusal?.status;
    this.code = refusal?.code;
  }
}

/** Most of an error answer's body read to explain it. */
const errorBodyMaxBytes = 4096;

/** The control plane's `{error: {code, message}}` from a refusal's body, when it is one. */
async function refusalOf(res: http.IncomingMessage): Promise<{ code?: string; message?: string }> {
  const chunks: Buffer[] = [];
  let size = 0;
  try {
    for await (const chunk of res as AsyncIterable<Buffer>) {
      if (size < errorBodyMaxBytes) chunks.push(chunk.subarray(0, errorBodyMaxBytes - size));
      size += chunk.length;
    }
    const parsed = JSON.parse(Buffer.concat(chunks).toString("utf8")) as { error?: { code?: unknown; message?: unknown } };
    const code = typeof parsed.error?.code === "string" ? parsed.error.code : undefined;
    const message = typeof parsed.error?.message === "string" ? parsed.error.message.slice(0, 1000) : undefined;
    return { ...(code === undefined ? {} : { code }), ...(message === undefined ? {} : { message }) };
  } catch {
    return {};
  }
}

/** What a download produced. */
export interface DownloadResult {
  sha256: string;
  sizeBytes: number;
}

/**
 * A client certificate (PEM chain) and its private key (PEM) for mutual TLS;
 * presented to https:// servers that ask for one.
 */
export interface ClientCertificate {
  cert: string;
  key: string;
}

/**
 * The node:http or node:https module for `target`, and the TLS options of a
 * request to it. CAs are not set here: the process defaults apply (see
 * trustCertificateAuthority in agent.ts), so a private CA does not replace
 * the system ones for third-party blob stores.
 */
function transport(target: URL, clientCertificate: ClientCertificate | undefined): { lib: typeof http | typeof https; tls: https.RequestOptions } | undefined {
  if (target.protocol === "http:") return { lib: http, tls: {} };
  if (target.protocol !== "https:") return undefined;
  return { lib: https, tls: clientCertificate === undefined ? {} : { cert: clientCertificate.cert, key: clientCertificate.key } };
}

/**
 * GETs `url` into `dest` (created exclusively), hashing on the way. Stops
 * early when more than `maxBytes` arrive, so a wrong or hostile URL cannot
 * fill the disk. Redirects are not followed: a signed URL points at the blob
 * itself, and following them would let a misconfigured store send the node
 * anywhere. node:http(s) rather than fetch so a client certificate can be
 * presented (mutual TLS).
 */
export async function downloadToFile(
  url: string,
  dest: string,
  maxBytes: number,
  signal: AbortSignal,
  clientCertificate?: ClientCertificate,
): Promise<DownloadResult> {
  let target: URL;
  try {
    target = new URL(url);
  } catch {
    throw new TransferError(`invalid download URL`, false);
  }
  const via = transport(target, clientCertificate);
  if (!via) throw new TransferError(`unsupported download URL scheme ${target.protocol}`, false);
  let response: http.IncomingMessage;
  try {
    response = await new Promise<http.IncomingMessage>((resolve, reject) => {
      const req = via.lib.get(target, { ...via.tls, signal }, resolve);
      req.on("error", reject);
    });
  } catch (err) {
    if (signal.aborted) throw signal.reason;
    throw new TransferError(`GET failed: ${err instanceof Error ? err.message : String(err)}`, true);
  }
  const status = response.statusCode ?? 0;
  if (status < 200 || status >= 300) {
    response.resume();
    if (status >= 300 && status < 400) throw new TransferError(`GET answered HTTP ${status} (redirects are not followed)`, false);
    const retryable = status >= 500 || status === 408 || status === 429;
    throw new TransferError(`GET answered HTTP ${status}`, retryable);
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
    await pipeline(response, meter, createWriteStream(dest, { flags: "wx", mode: 0o644 }), { signal });
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
 * Content-Length (blob stores check it) rather than chunked encoding, and a
 * client certificate can be presented (mutual TLS).
 */
export function putFile(
  url: string,
  fh: FileHandle,
  size: number,
  headers: Record<string, string>,
  signal: AbortSignal,
  clientCertificate?: ClientCertificate,
): Promise<void> {
  const target = new URL(url);
  const via = transport(target, clientCertificate);
  if (!via) return Promise.reject(new TransferError(`unsupported upload URL scheme ${target.protocol}`, false));
  return new Promise<void>((resolve, reject) => {
    const req = via.lib.request(target, {
      ...via.tls,
      method: "PUT",
      headers: { ...headers, "content-length": String(size) },
      signal,
    });
    const body = fh.createReadStream({ start: 0, end: Math.max(0, size - 1), autoClose: false });
    let answered = false;
    req.on("response", (res) => {
      answered = true;
      const status = res.statusCode ?? 0;
      if (status >= 200 && status < 300) {
        res.resume();
        return resolve();
      }
      // A refusal may come before the body is sent (a bound checked on Content-Length): stop sending it.
      body.unpipe(req);
      body.destroy();
      // The server's reason (e.g. a storage quota) is what the customer needs to read in the unit's error.
      void refusalOf(res).then(({ code, message }) => {
        req.destroy();
        const reason = code === undefined ? "" : `: ${code}${message === undefined ? "" : ` ${message}`}`;
        reject(new TransferError(`PUT answered HTTP ${status}${reason}`, status >= 500 || status === 408 || status === 429, { status, code }));
      });
    });
    req.on("error", (err) => {
      // After an answer, the connection's end is not the story: the answer is.
      if (answered && !signal.aborted) return;
      reject(signal.aborted ? signal.reason : new TransferError(`PUT failed: ${err.message}`, true));
    });
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
