/**
 * AgentService.Session over plain gRPC (HTTP/2, `application/grpc`), served
 * straight from Node's HTTP/2 stream instead of through connect-node's router.
 *
 * Why by hand: every node holds one Session stream for as long as it is
 * online, so per-stream memory is the scheduler's scaling limit. A heap
 * snapshot of 3,000 streams through connect-node showed about 23 generators,
 * 150 closures and 140 contexts per stream (its chain of async-iterable
 * transforms for a bidi call), roughly 40 KiB of heap before any of our own
 * state, plus the garbage each message makes through that chain. This route
 * keeps one small reader and one writer per stream and calls the same
 * handler (`createAgentService(...).session`) with the same HandlerContext
 * shape, so handlers still do not know which path called them. Everything
 * else — Enroll, and Session over gRPC-Web or Connect — stays on connect-node.
 *
 * Wire rules (gRPC over HTTP/2): length-prefixed messages (1 flag byte, 4
 * length bytes); compressed messages only as `grpc-encoding: gzip`; response
 * headers at once, trailers with `grpc-status`, `grpc-message` and
 * `grpc-status-details-bin` (via connect's own `setTrailerStatus`, so errors
 * read exactly as connect-node wrote them). Inbound back-pressure: the request
 * is paused while the handler has `inboundHighWater` messages unread.
 */
import { gunzipSync } from "node:zlib";
import type { IncomingMessage } from "node:http";
import type { Http2ServerRequest, Http2ServerResponse } from "node:http2";
import { create, fromBinary, isMessage, toBinary } from "@bufbuild/protobuf";
import type { MessageInitShape } from "@bufbuild/protobuf";
import { Code, ConnectError, createContextValues } from "@connectrpc/connect";
import type { HandlerContext } from "@connectrpc/connect";
import { setTrailerStatus } from "@connectrpc/connect/protocol-grpc";
import { ApiError } from "../platform/errors.ts";
import { toConnectError } from "../api/errors.ts";
import type { ErrorLogger } from "../api/connect-errors.ts";
import { serverErrorCause } from "../api/connect-errors.ts";
import type { SessionRequest, SessionResponse } from "../gen/gpuagent/agent/v1/agent_pb.ts";
import { AgentService, SessionRequestSchema, SessionResponseSchema } from "../gen/gpuagent/agent/v1/agent_pb.ts";
import { defaultTransport } from "../platform/config.ts";
import { messageTooLarge } from "./rpc-adapter.ts";

/** The path of the rpc this route serves. */
export const sessionPath = `/${AgentService.typeName}/${AgentService.method.session.name}`;

/** Largest inbound message after decompression, unless the server says otherwise (GPU_AGENT_MAX_AGENT_MESSAGE_BYTES). */
const defaultMaxMessageBytes = defaultTransport.maxAgentMessageBytes;
/** Unread inbound messages before the request is paused. */
const inboundHighWater = 32;

/** The handler this route calls: AgentService's `session` implementation. */
export type SessionHandler = (
  requests: AsyncIterable<SessionRequest>,
  ctx: HandlerContext,
) => AsyncIterable<SessionResponse | MessageInitShape<typeof SessionResponseSchema>>;

/** True for a request this route serves: the Session rpc, over HTTP/2, in gRPC's binary protocol. */
export function isGrpcSessionRequest(req: IncomingMessage | Http2ServerRequest): boolean {
  if (req.httpVersionMajor !== 2 || req.method !== "POST" || req.url !== sessionPath) return false;
  const type = String(req.headers["content-type"] ?? "");
  return type === "application/grpc" || type === "application/grpc+proto";
}

/**
 * The inbound half: gRPC frames from the request, decoded, as an async
 * iterable the handler pulls from. Pauses the request while the handler lags.
 */
class InboundMessages implements AsyncIterable<SessionRequest> {
  private readonly queue: SessionRequest[] = [];
  private buffer: Buffer = Buffer.alloc(0);
  private waiting: ((r: IteratorResult<SessionRequest>) => void) | undefined;
  private failWaiting: ((e: unknown) => void) | undefined;
  private ended = false;
  private error: unknown;
  private readonly req: Http2ServerRequest;
  private readonly gzip: boolean;
  private readonly maxMessageBytes: number;

  constructor(req: Http2ServerRequest, gzip: boolean, maxMessageBytes: number) {
    this.req = req;
    this.gzip = gzip;
    this.maxMessageBytes = maxMessageBytes;
    req.on("data", (chunk: Buffer) => this.onData(chunk));
    req.on("end", () => this.finish(undefined));
    req.on("error", (err: Error) => this.finish(err));
  }

  private onData(chunk: Buffer): void {
    // After a refusal nothing more is kept: the server resets the stream once the trailers are out.
    if (this.ended) return;
    this.buffer = this.buffer.length === 0 ? chunk : Buffer.concat([this.buffer, chunk]);
    while (this.buffer.length >= 5) {
      const flags = this.buffer[0]!;
      const length = this.buffer.readUInt32BE(1);
      // Refused from its length prefix, before its bytes are buffered.
      if (length > this.maxMessageBytes) return this.finish(messageTooLarge(this.maxMessageBytes));
      if (this.buffer.length < 5 + length) return;
      let body: Uint8Array = this.buffer.subarray(5, 5 + length);
      this.buffer = this.buffer.subarray(5 + length);
      try {
        if ((flags & 1) === 1) {
          if (!this.gzip) throw new ConnectError("compressed message without grpc-encoding", Code.Internal);
          // Inflating stops at the bound: a small gzip bomb costs one bound of memory.
          body = gunzipSync(body, { maxOutputLength: this.maxMessageBytes });
        }
        this.push(fromBinary(SessionRequestSchema, body));
      } catch (err) {
        if ((err as { code?: unknown }).code === "ERR_BUFFER_TOO_LARGE") return this.finish(messageTooLarge(this.maxMessageBytes));
        // Bytes that do not decode (a string that is not UTF-8, say) are the node's to fix: VALIDATION_FAILED tells it so.
        return this.finish(err instanceof ConnectError ? err : new ApiError("VALIDATION_FAILED", `invalid message: ${err instanceof Error ? err.message : String(err)}`));
      }
    }
  }

  private push(message: SessionRequest): void {
    if (this.waiting !== undefined) {
      const resolve = this.waiting;
      this.waiting = this.failWaiting = undefined;
      resolve({ value: message, done: false });
      return;
    }
    this.queue.push(message);
    if (this.queue.length >= inboundHighWater && !this.req.isPaused()) this.req.pause();
  }

  /** Ends the iterable: cleanly on `end`, with `error` otherwise. */
  finish(error: unknown): void {
    if (this.ended) return;
    this.ended = true;
    this.error = error;
    if (this.waiting !== undefined && this.queue.length === 0) {
      const [resolve, reject] = [this.waiting, this.failWaiting];
      this.waiting = this.failWaiting = undefined;
      if (error === undefined) resolve({ value: undefined, done: true });
      else reject?.(error);
    }
  }

  [Symbol.asyncIterator](): AsyncIterator<SessionRequest> {
    return {
      next: () => {
        const message = this.queue.shift();
        if (message !== undefined) {
          if (this.queue.length < inboundHighWater / 2 && this.req.isPaused()) this.req.resume();
          return Promise.resolve({ value: message, done: false });
        }
        if (this.ended) return this.error === undefined ? Promise.resolve({ value: undefined, done: true }) : Promise.reject(this.error);
        return new Promise<IteratorResult<SessionRequest>>((resolve, reject) => {
          this.waiting = resolve;
          this.failWaiting = reject;
        });
      },
      return: () => {
        this.finish(undefined);
        return Promise.resolve({ value: undefined, done: true });
      },
    };
  }
}

/** One gRPC frame around `bytes`. */
function frame(bytes: Uint8Array): Buffer {
  const out = Buffer.allocUnsafe(5 + bytes.length);
  out[0] = 0;
  out.writeUInt32BE(bytes.length, 1);
  out.set(bytes, 5);
  return out;
}

/** Request headers without HTTP/2 pseudo-headers. */
function requestHeaders(req: Http2ServerRequest): Headers {
  const headers = new Headers();
  for (const [name, value] of Object.entries(req.headers)) {
    if (name.startsWith(":") || value === undefined) continue;
    if (Array.isArray(value)) for (const v of value) headers.append(name, v);
    else headers.set(name, value);
  }
  return headers;
}

/**
 * Serves one Session stream: decodes requests, runs `handler`, writes its
 * responses with back-pressure, and ends with gRPC trailers. Resolves when the
 * stream is over; never rejects (errors go to the client as a grpc-status).
 */
export async function serveGrpcSession(
  req: Http2ServerRequest,
  res: Http2ServerResponse,
  handler: SessionHandler,
  logger?: ErrorLogger,
  limits: { maxMessageBytes?: number } = {},
): Promise<void> {
  const abort = new AbortController();
  let inbound: InboundMessages | undefined;
  // The client reset the stream or the connection died: the handler's reads end and its signal fires.
  const onGone = () => {
    const reason = new ConnectError("the stream was closed", Code.Canceled);
    inbound?.finish(reason);
    abort.abort(reason);
  };
  res.once("close", onGone);
  const encoding = String(req.headers["grpc-encoding"] ?? "identity");
  res.writeHead(200, {
    "content-type": "application/grpc+proto",
    "grpc-accept-encoding": "identity,gzip",
  });
  let failure: ConnectError | undefined;
  if (encoding !== "identity" && encoding !== "gzip") {
    failure = new ConnectError(`unsupported grpc-encoding ${encoding}`, Code.Unimplemented);
  } else {
    inbound = new InboundMessages(req, encoding === "gzip", limits.maxMessageBytes ?? defaultMaxMessageBytes);
    const ctx: HandlerContext = {
      service: AgentService,
      method: AgentService.method.session,
      protocolName: "grpc",
      requestMethod: "POST",
      url: req.url,
      signal: abort.signal,
      timeoutMs: () => undefined,
      requestHeader: requestHeaders(req),
      responseHeader: new Headers(),
      responseTrailer: new Headers(),
      values: createContextValues(),
    };
    try {
      for await (const message of handler(inbound, ctx)) {
        if (abort.signal.aborted) break;
        const response = isMessage(message, SessionResponseSchema) ? message : create(SessionResponseSchema, message);
        if (!res.write(frame(toBinary(SessionResponseSchema, response)))) {
          await new Promise<void>((resolve) => {
            const done = () => {
              res.off("drain", done);
              res.off("close", done);
              resolve();
            };
            res.on("drain", done);
            res.on("close", done);
          });
        }
      }
    } catch (err) {
      const cause = serverErrorCause(err);
      if (cause !== undefined) {
        logger?.error({ err: cause, rpc: `${AgentService.typeName}/Session`, request_id: req.headers["x-request-id"] }, "handler failed with a server error");
      }
      failure = toConnectError(err);
    } finally {
      inbound.finish(undefined);
    }
  }
  res.off("close", onGone);
  if (res.destroyed || res.writableEnded || abort.signal.aborted) return;
  const trailers = setTrailerStatus(new Headers(), failure);
  failure?.metadata.forEach((value, name) => trailers.set(name, value));
  const plain: Record<string, string> = {};
  trailers.forEach((value, name) => {
    plain[name] = value;
  });
  res.addTrailers(plain);
  res.end();
}
