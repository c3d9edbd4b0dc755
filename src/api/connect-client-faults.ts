/**
 * Three faults of the client that connect-es (2.x) answers with a 5xx, found by the fuzz test
 * (test/contract/fuzz.test.ts):
 *
 * - a unary Connect body that is not valid protobuf binary: `internal`, HTTP 500 ("parse binary: …";
 *   connect-es 1.x said `invalid_argument`, as connect-go does);
 * - a `content-encoding` the server does not support: `unimplemented`, HTTP 501 (RFC 9110 answers an
 *   unsupported content coding with 415);
 * - a bidirectional stream (AgentService.Session) over HTTP/1.1: a bare 505.
 *
 * All three are decided in connect's protocol layer, before any interceptor runs, so the error
 * interceptor never sees them. This wraps the router's handlers and rewrites exactly those answers
 * as the seed-coded 4xx they are (VALIDATION_FAILED 400, UNSUPPORTED_MEDIA_TYPE 415,
 * VALIDATION_FAILED 400), in the Connect error JSON every other refusal has; any other answer
 * passes untouched. gRPC and gRPC-Web carry the first two as a grpc-status in an HTTP 200
 * (INTERNAL for a malformed message, as grpc-go does) and Connect streams in their end-stream
 * message; those are left as the protocols define them.
 */
import type { UniversalHandler, UniversalServerRequest, UniversalServerResponse } from "@connectrpc/connect/protocol";
import { createAsyncIterable, readAllBytes } from "@connectrpc/connect/protocol";
import { errorToJsonBytes } from "@connectrpc/connect/protocol-connect";
import { ApiError } from "../platform/errors.ts";
import { httpStatusOf, reasonMetadataKey, toConnectError } from "./errors.ts";
import type { ErrorCode } from "../platform/errors.ts";

/** Replaces each handler of the router (in place, before the server indexes them) with one that rewrites those answers. */
export function answerClientFaultsWith4xx(handlers: UniversalHandler[]): void {
  for (let i = 0; i < handlers.length; i++) {
    const inner = handlers[i]!;
    const outer = async (req: UniversalServerRequest): Promise<UniversalServerResponse> => rewrite(inner, await inner(req));
    handlers[i] = Object.assign(outer, inner);
  }
}

async function rewrite(handler: UniversalHandler, res: UniversalServerResponse): Promise<UniversalServerResponse> {
  const rpc = `${handler.method.parent.typeName}/${handler.method.name}`;
  if (res.status === 505) {
    // connect sends `Connection: close` so a client expecting full duplex does not hang; kept.
    return fault("VALIDATION_FAILED", `${rpc} is a bidirectional stream, which HTTP/1.1 cannot carry: call it over HTTP/2`, { connection: "close" });
  }
  // Only the unary Connect errors in question: uncompressed JSON (error bodies are under connect's compression threshold).
  if ((res.status !== 500 && res.status !== 501) || res.header?.has("content-encoding") === true || res.body === undefined) return res;
  const bytes = res.body instanceof Uint8Array ? res.body : await readAllBytes(res.body, 1024 * 1024);
  const error = parseError(bytes);
  if (res.status === 500 && error?.code === "internal" && error.message.startsWith("parse binary: ")) {
    const why = error.message.slice("parse binary: ".length);
    return fault("VALIDATION_FAILED", `the request body is not a valid ${handler.method.input.typeName} in protobuf binary (${why})`);
  }
  if (res.status === 501 && error?.code === "unimplemented" && error.message.startsWith("unknown compression")) {
    return fault("UNSUPPORTED_MEDIA_TYPE", error.message);
  }
  // The body was read to look at it: the answer goes on with the same bytes.
  return { ...res, body: createAsyncIterable([bytes]) };
}

function parseError(bytes: Uint8Array): { code: string; message: string } | undefined {
  try {
    const json = JSON.parse(new TextDecoder().decode(bytes)) as { code?: unknown; message?: unknown };
    return typeof json.code === "string" && typeof json.message === "string" ? { code: json.code, message: json.message } : undefined;
  } catch {
    return undefined;
  }
}

function fault(code: ErrorCode, message: string, extra: Record<string, string> = {}): UniversalServerResponse {
  const body = errorToJsonBytes(toConnectError(new ApiError(code, message)), {});
  const header = new Headers({ ...extra, "content-type": "application/json", "content-length": String(body.byteLength), [reasonMetadataKey]: code });
  return { status: httpStatusOf(code), header, body: createAsyncIterable([body]) };
}
