/**
 * The Connect router behind the port (Connect, gRPC, gRPC-Web), served like
 * connect-node's `connectNodeAdapter`, with every request message bounded
 * after decompression and the refusal carrying `PAYLOAD_TOO_LARGE`.
 *
 * connect's `readMaxBytes` already bounds what it buffers: a unary Connect
 * body by its `content-length` before reading and by its running count while
 * reading, each enveloped message (gRPC, gRPC-Web, Connect streams) by the
 * length in its prefix, and decompression by zlib's `maxOutputLength`, which
 * stops inflating at the bound (a 400 KB gzip body that would inflate to
 * 400 MB costs one bound of memory). Its refusals are bare
 * `resource_exhausted` errors raised before any interceptor runs, so they
 * would carry no seed code. Here the same bounds are checked one step
 * earlier, by code that throws `toConnectError(PAYLOAD_TOO_LARGE)`:
 *
 * - a request gate (runs before the body is read): a unary Connect request
 *   whose `content-length` is over the bound;
 * - the body handed to the router: counts bytes (unary Connect) or reads each
 *   envelope prefix (enveloped protocols) as the bytes pass, and throws instead
 *   of passing on the chunk that would cross the bound;
 * - the compressions: connect-node's gzip and brotli, whose "larger than
 *   readMaxBytes after decompression" error is replaced by the same refusal.
 *
 * connect's own checks stay as a backstop. A refused body is not read further:
 * the server (http-server.ts) closes an HTTP/1.1 connection whose request body
 * was not read to its end and resets such an HTTP/2 stream.
 */
import { Code, ConnectError, createConnectRouter } from "@connectrpc/connect";
import type { ConnectRouter, HandlerContext, Interceptor } from "@connectrpc/connect";
import type { Compression, UniversalHandler, UniversalServerResponse } from "@connectrpc/connect/protocol";
import { compressionBrotli, compressionGzip, universalRequestFromNodeRequest, universalResponseToNodeResponse } from "@connectrpc/connect-node";
import type { Logger } from "pino";
import { ApiError, validationError } from "../platform/errors.ts";
import { reasonMetadataKey, toConnectError } from "../api/errors.ts";
import { writeApiError } from "../api/rest/transcoder.ts";
import type { RestRequest, RestResponse } from "../platform/http-types.ts";

/** Options of {@link createRpcAdapter}. */
export interface RpcAdapterOptions {
  readonly routes: (router: ConnectRouter) => void;
  readonly interceptors: ReadonlyArray<Interceptor>;
  /** Largest request message of a service (its type name), after decompression. */
  readonly maxMessageBytes: (serviceTypeName: string) => number;
  /** Requests for paths that are not rpcs. */
  readonly fallback: (req: RestRequest, res: RestResponse) => void;
  readonly logger: Logger;
}

/** The refusal of a message over `limit` bytes, as every protocol carries it. */
export function messageTooLarge(limit: number): ConnectError {
  return toConnectError(new ApiError("PAYLOAD_TOO_LARGE", `the request message exceeds ${limit} bytes`, { details: { max_body_bytes: limit } }));
}

/**
 * A compression whose "over readMaxBytes after decompression" error is {@link messageTooLarge}, and
 * whose other failures (a truncated or corrupt body, which connect-node calls `internal` when zlib
 * says "unexpected end of file") are the client's: `VALIDATION_FAILED`.
 */
function boundedCompression(compression: Compression): Compression {
  return {
    name: compression.name,
    compress: (bytes) => compression.compress(bytes),
    decompress: (bytes, readMaxBytes) =>
      compression.decompress(bytes, readMaxBytes).catch((error: unknown) => {
        const connectError = ConnectError.from(error);
        if (connectError.code === Code.ResourceExhausted) throw messageTooLarge(readMaxBytes);
        const cause = connectError.cause instanceof Error ? connectError.cause.message : connectError.rawMessage;
        throw toConnectError(new ApiError("VALIDATION_FAILED", `the request message is not valid ${compression.name}: ${cause}`));
      }),
  };
}

/** Content types whose body is a sequence of length-prefixed messages (gRPC, gRPC-Web, Connect streaming). */
const envelopedType = /^application\/(grpc|connect\+)/i;

/**
 * The request body as the router reads it, checked as it passes: the total
 * (unary Connect) or each envelope's declared length (enveloped protocols)
 * must stay within `limit`. Returning early never destroys the request: the
 * server decides what happens to a body left unread (see the file comment).
 */
function boundedBody(req: RestRequest, limit: number, enveloped: boolean): AsyncIterable<Uint8Array> {
  return {
    [Symbol.asyncIterator]() {
      const source = (req as AsyncIterable<Buffer>)[Symbol.asyncIterator]();
      let total = 0;
      // Enveloped: the bytes of the current prefix seen so far, and the payload bytes still to pass.
      const prefix = Buffer.alloc(5);
      let prefixFill = 0;
      let payloadLeft = 0;
      const check = (chunk: Buffer): void => {
        if (!enveloped) {
          total += chunk.length;
          if (total > limit) throw messageTooLarge(limit);
          return;
        }
        let at = 0;
        while (at < chunk.length) {
          if (payloadLeft > 0) {
            const n = Math.min(payloadLeft, chunk.length - at);
            payloadLeft -= n;
            at += n;
            continue;
          }
          const n = Math.min(5 - prefixFill, chunk.length - at);
          chunk.copy(prefix, prefixFill, at, at + n);
          prefixFill += n;
          at += n;
          if (prefixFill === 5) {
            payloadLeft = prefix.readUInt32BE(1);
            prefixFill = 0;
            if (payloadLeft > limit) throw messageTooLarge(limit);
          }
        }
      };
      return {
        async next(): Promise<IteratorResult<Uint8Array>> {
          const result = await source.next();
          if (result.done === true) return { done: true, value: undefined };
          check(result.value);
          return { done: false, value: result.value };
        },
        async return(): Promise<IteratorResult<Uint8Array>> {
          return { done: true, value: undefined };
        },
      };
    },
  };
}

/**
 * A unary Connect refusal of a body over the bound answers HTTP 413, as REST does, instead of the
 * 429 Connect gives every `resource_exhausted` (which reads as "retry later"). Connect clients read
 * the code from the JSON body, so they see the same error; gRPC and gRPC-Web answer 200 with a
 * grpc-status and are left alone.
 */
function withPayloadStatus(response: UniversalServerResponse): UniversalServerResponse {
  if (response.status !== 429 || response.header?.get(reasonMetadataKey) !== "PAYLOAD_TOO_LARGE") return response;
  return { ...response, status: 413 };
}

/** Builds the request handler: rpc paths go to the router, the rest to `fallback`. */
export function createRpcAdapter(options: RpcAdapterOptions): (req: RestRequest, res: RestResponse) => void {
  const { maxMessageBytes, logger } = options;
  // A declared unary Connect body over the bound is refused before a byte of it is read.
  const requestGate = (ctx: HandlerContext): void => {
    if (ctx.protocolName !== "connect" || ctx.method.methodKind !== "unary") return;
    const declared = Number(ctx.requestHeader.get("content-length") ?? NaN);
    const limit = maxMessageBytes(ctx.service.typeName);
    if (declared > limit) throw messageTooLarge(limit);
  };
  const router = createConnectRouter({
    interceptors: [...options.interceptors],
    acceptCompression: [boundedCompression(compressionGzip), boundedCompression(compressionBrotli)],
    requestGate,
  });
  // Each service gets its own readMaxBytes (connect's backstop and the bound its decompression is given).
  const registrar = {
    handlers: router.handlers,
    service(service, implementation, serviceOptions) {
      router.service(service, implementation, { readMaxBytes: maxMessageBytes(service.typeName), ...serviceOptions });
      return registrar;
    },
    rpc(method, impl, rpcOptions) {
      router.rpc(method, impl, { readMaxBytes: maxMessageBytes(method.parent.typeName), ...rpcOptions });
      return registrar;
    },
  } as ConnectRouter;
  options.routes(registrar);
  const paths = new Map<string, UniversalHandler>();
  for (const handler of router.handlers) paths.set(handler.requestPath, handler);

  return (req, res) => {
    const url = req.url ?? "";
    const query = url.indexOf("?");
    const handler = paths.get(query === -1 ? url : url.slice(0, query));
    if (handler === undefined) {
      options.fallback(req, res);
      return;
    }
    const limit = maxMessageBytes(handler.service.typeName);
    const enveloped = envelopedType.test(String(req.headers["content-type"] ?? ""));
    // connect-node's response type only narrows write(); the object is Node's own response.
    const nodeRes = res as Parameters<typeof universalResponseToNodeResponse>[1];
    let universal: ReturnType<typeof universalRequestFromNodeRequest>;
    try {
      universal = universalRequestFromNodeRequest(req, nodeRes, undefined, undefined);
    } catch {
      // connect-node builds a URL on the Host header (:authority); one no URL can hold would throw out of
      // the server's request listener and end the process. It is the client's fault: 400.
      const host = String(req.headers[":authority"] ?? req.headers["host"] ?? "").slice(0, 100);
      writeApiError(res, validationError(`the Host header ${JSON.stringify(host)} is not a valid host[:port]`), String(req.headers["x-request-id"] ?? ""));
      return;
    }
    handler({ ...universal, body: boundedBody(req, limit, enveloped) })
      .then((response) => universalResponseToNodeResponse(withPayloadStatus(response), nodeRes))
      .catch((error: unknown) => {
        // The client went away mid-answer: nothing to report.
        if (ConnectError.from(error).code === Code.Aborted) return;
        logger.error({ err: error, rpc: `${handler.service.typeName}/${handler.method.name}` }, "rpc failed while writing its answer");
      });
  };
}
