/**
 * REST transcoding of `google.api.http` annotations: one generic router driven
 * by the service descriptors, with no code per endpoint.
 *
 *   HTTP request ──match rule──▶ JSON object (query → body → path variables)
 *        ──fromJson──▶ request message ──▶ the same ServiceImpl the Connect
 *        router serves, with a HandlerContext of its own ──toJson──▶ HTTP response
 *
 * The implementation is invoked directly with a HandlerContext of the same
 * shape as connect's (request headers in, response headers out), so handlers
 * cannot tell REST was used and errors stay ApiErrors. Going through an in-memory Connect transport
 * instead cost a binary encode and decode per call and made REST ~10× slower
 * than a bare route (bench:api); it is used only when extra router
 * interceptors are configured, so that they run for REST calls too.
 *
 * Server-streaming rpcs whose `response_body` is a `google.api.HttpBody` (the
 * CSV exports) are served the grpc-gateway way: the first message decides the
 * status and content type, each message's `data` is written as it arrives
 * (waiting for 'drain' when the socket is full), and the response ends with the
 * stream. A failure before the first message is the usual error envelope; after
 * it, the response is destroyed, so a truncated file never looks complete.
 * Server-streaming rpcs with an event shape (WatchTrainingJob; rest-methods.ts,
 * isEventStream) are served the same way as Server-Sent Events, one event per
 * message, `Last-Event-ID` filling the request's resume field.
 *
 * Conventions (documented in the contract, decided here once):
 * - JSON uses proto field names and always emits fields with default values
 *   (`"progress": 0`, `"error": ""`), so clients see every field.
 * - A POST rule of an rpc named `Create*` answers 201 (AIP-133); others 200.
 * - Path variables win over body and query fields naming the same field: the
 *   URL names the resource, a body cannot redirect the call to another one.
 * - Unknown query parameters, unknown body fields and wrong types are 400
 *   VALIDATION_FAILED naming the field; a typo must not silently widen a query.
 */
import http2 from "node:http2";
import { promisify } from "node:util";
import { brotliDecompress, gunzip, inflate } from "node:zlib";
import type { ZlibOptions } from "node:zlib";
import { ScalarType, create, createRegistry, fromJson, getOption, isMessage, toJson } from "@bufbuild/protobuf";
import type { DescField, DescMessage, DescMethodServerStreaming, DescMethodUnary, DescService, JsonObject, JsonValue, MessageInitShape, MessageShape, Registry } from "@bufbuild/protobuf";
import { createContextValues, createRouterTransport } from "@connectrpc/connect";
import type { HandlerContext, Interceptor, ServiceImpl, Transport } from "@connectrpc/connect";
import { http } from "../../gen/google/api/annotations_pb.ts";
import type { HttpRule } from "../../gen/google/api/http_pb.ts";
import type { HttpBody } from "../../gen/google/api/httpbody_pb.ts";
import type { RestRequest, RestResponse } from "../../platform/http-types.ts";
import { createErrorInterceptor, serverErrorCause } from "../connect-errors.ts";
import type { ErrorLogger } from "../connect-errors.ts";
import { ApiError, validationError } from "../../platform/errors.ts";
import { apiErrorFrom, httpStatusOf } from "../errors.ts";
import { isImmutableMessage } from "../immutable-message.ts";
import { hasRestShape, isEventStream, isHttpBodyField, resumeFieldName } from "./rest-methods.ts";

/** A service and the (possibly partial) implementation the Connect router also serves. */
export interface RestServiceBinding<S extends DescService = DescService> {
  readonly service: S;
  readonly impl: Partial<ServiceImpl<S>>;
}

/**
 * Pairs a service with its implementation, checking the impl against that
 * service's methods; the result fits the transcoder's heterogeneous list.
 */
export function restService<S extends DescService>(service: S, impl: Partial<ServiceImpl<S>>): RestServiceBinding {
  return { service, impl } as unknown as RestServiceBinding;
}

/** Options of {@link createRestTranscoder}. */
export interface RestTranscoderOptions {
  readonly services: ReadonlyArray<RestServiceBinding>;
  /** Largest request body accepted, in bytes; larger is 413 PAYLOAD_TOO_LARGE. Default 1 MiB. */
  readonly maxBodyBytes?: number;
  /**
   * Interceptors of the Connect router, so REST calls pass the same ones
   * (auth, limits). The error interceptor is always added first.
   */
  readonly interceptors?: ReadonlyArray<Interceptor>;
  /**
   * Receives causes of server errors raised behind the interceptors (never sent to clients). Errors of
   * direct calls are recorded by writeApiError and logged by the server with the request id.
   */
  readonly logger?: ErrorLogger;
}

/** A REST front for the services, to be called from an HTTP server's request handler. */
export interface RestTranscoder {
  /**
   * Serves the request if its path matches a rule. Resolves false only when no
   * rule's path matches and the path is outside `/api/`, so the caller can
   * fall through; every other outcome (including 404 under `/api/`) is
   * answered here and resolves true.
   */
  handle(req: RestRequest, res: RestResponse, requestId: string): Promise<boolean>;
  /** The compiled routes, "METHOD /template", for docs and startup logs. */
  readonly routes: ReadonlyArray<string>;
}

const defaultMaxBodyBytes = 1024 * 1024;
/**
 * Builds the transcoder: compiles the HttpRule (and its additional bindings) of
 * every method with a REST shape once, and, when interceptors are configured,
 * an in-memory Connect transport over the impls.
 */
export function createRestTranscoder(options: RestTranscoderOptions): RestTranscoder {
  const maxBodyBytes = options.maxBodyBytes ?? defaultMaxBodyBytes;
  const routes: Route[] = [];
  for (const { service, impl } of options.services) {
    for (const m of service.methods) {
      // Other streaming rpcs have no REST shape (the agent stream is gRPC only).
      if (!hasRestShape(m)) continue;
      const method = m as RestMethod; // DescMethod is not a discriminated union; hasRestShape checked the kind.
      const rule = getOption(method, http);
      const fn = (impl as Record<string, unknown>)[method.localName];
      const bound = typeof fn === "function" ? (fn as (req: unknown, ctx: HandlerContext) => unknown).bind(impl) : undefined;
      for (const r of [rule, ...rule.additionalBindings]) {
        const route = compileRoute(method, r, bound);
        if (route !== undefined) routes.push(route);
      }
    }
  }
  routes.sort((a, b) => compareSpecificity(a.template, b.template));
  const index = createRouteIndex(routes);

  const transport: Transport | undefined = (options.interceptors ?? []).length === 0 ? undefined : createRouterTransport(
    (router) => {
      for (const { service, impl } of options.services) router.service(service, impl);
    },
    {
      router: {
        interceptors: [
          createErrorInterceptor(options.logger === undefined ? {} : { logger: options.logger }),
          ...(options.interceptors ?? []),
        ],
      },
    },
  );
  // Any-typed fields (HttpBody.extensions) need the types of the services' files.
  const registry = createRegistry(...options.services.map((s) => s.service.file));

  async function handle(req: RestRequest, res: RestResponse, requestId: string): Promise<boolean> {
    const method = req.method === undefined ? "GET" : req.method.toUpperCase();
    if (res.getHeader("x-request-id") !== requestId) setHeader(res, "x-request-id", requestId);
    try {
      const url = parseTarget(req.url ?? "/");
      const path = normalizePath(url.pathname);
      const matches = index.match(path);
      if (matches.length === 0) {
        if (!path.startsWith("/api/") && path !== "/api") return false;
        throw new ApiError("ROUTE_NOT_FOUND", `no route for ${method} ${url.pathname}`);
      }
      const match = matches.find((m) => m.route.httpMethod === method);
      if (match === undefined) {
        const allowed = [...new Set(matches.map((m) => m.route.httpMethod))].sort();
        throw new ApiError("METHOD_NOT_ALLOWED", `${method} is not allowed on ${url.pathname}; allowed: ${allowed.join(", ")}`, {
          headers: { allow: allowed.join(", ") },
        });
      }
      await serve(match.route, match.vars, url, req, res, requestId);
    } catch (error) {
      writeApiError(res, error, requestId);
    }
    return true;
  }

  async function serve(route: Route, vars: Map<string, string>, url: RequestTarget, req: RestRequest, res: RestResponse, requestId: string): Promise<void> {
    const { method } = route;
    if (!route.implemented) {
      throw new ApiError("NOT_IMPLEMENTED", `${method.parent.name}.${method.name} is not implemented`);
    }
    const built = buildInput(route, vars, url, req, maxBodyBytes);
    const input = built instanceof Promise ? await built : built;
    // Aborted when the client goes away before the response is complete; made when first asked for.
    const clientGone = lazyClientSignal(res);
    const header = forwardedRequestHeaders(req, requestId);
    if (method.methodKind === "server_streaming") {
      if (isEventStream(method)) resumeFromLastEventId(method, input, req);
      await serveStream(route, method, input, url, res, header, clientGone());
      return;
    }
    let response: { message: MessageShape<DescMessage>; header: Headers; trailer: Headers };
    if (transport === undefined) {
      const context = restContext(method, route.httpMethod, url.href, clientGone, header);
      const implFn = route.impl as (req: unknown, ctx: HandlerContext) => Promise<MessageInitShape<DescMessage>> | MessageInitShape<DescMessage>;
      try {
        const output = await implFn(input, context);
        response = { message: isMessage(output, method.output) ? output : create(method.output, output), header: context.responseHeader, trailer: context.responseTrailer };
      } catch (error) {
        // The cause of a server error is logged by the server, with the request id (writeApiError records it).
        copyResponseHeaders(context.responseHeader, res);
        throw error;
      }
    } else {
      try {
        const r = await transport.unary(method, clientGone(), undefined, header, input);
        response = { message: r.message as MessageShape<DescMessage>, header: r.header, trailer: r.trailer };
      } catch (error) {
        // Headers the handler set before failing (x-ratelimit-*, Retry-After) still reach the client.
        const metadata = (error as { metadata?: unknown }).metadata;
        if (metadata instanceof Headers) copyResponseHeaders(metadata, res);
        throw error;
      }
    }
    copyResponseHeaders(response.header, res);
    copyResponseHeaders(response.trailer, res);
    const status = route.httpMethod === "POST" && method.name.startsWith("Create") ? 201 : 200;
    const field = route.responseField;
    if (field !== undefined && isHttpBodyField(field)) {
      const body = (response.message as Record<string, unknown>)[field.localName] as HttpBody | undefined;
      res.statusCode = status;
      setHeader(res, "content-type", body?.contentType || "application/octet-stream");
      res.end(Buffer.from(body?.data ?? new Uint8Array()));
      return;
    }
    // An immutable response (src/api/immutable-message.ts) is encoded once per route and kept with it.
    const immutable = isImmutableMessage(response.message);
    let text = immutable ? route.encoded.get(response.message) : undefined;
    if (text === undefined) {
      const json = toJson(method.output, response.message, { useProtoFieldName: true, alwaysEmitImplicit: true, registry });
      text = JSON.stringify(field === undefined ? json : ((json as JsonObject)[field.name] ?? null));
      if (immutable) route.encoded.set(response.message, text);
    }
    writeJsonText(res, status, text);
  }

  /**
   * Serves a server-streaming rpc as one response (relayStream): an HttpBody
   * stream as its chunks, an event stream as Server-Sent Events.
   */
  async function serveStream(
    route: Route,
    method: DescMethodServerStreaming,
    input: MessageShape<DescMessage>,
    url: RequestTarget,
    res: RestResponse,
    header: Headers,
    signal: AbortSignal,
  ): Promise<void> {
    const writer = isEventStream(method) ? eventWriter(method, res, registry) : httpBodyWriter(route, method, res);
    await relayStream(openStream(route, method, input, url, header, signal), res, signal, writer);
  }

  /** Starts the handler of a server-streaming call, directly or through the transport. */
  function openStream(route: Route, method: DescMethodServerStreaming, input: MessageShape<DescMessage>, url: RequestTarget, header: Headers, signal: AbortSignal): OpenStream {
    if (transport === undefined) {
      const context = restContext(method, route.httpMethod, url.href, () => signal, header);
      const implFn = route.impl as (req: unknown, ctx: HandlerContext) => AsyncIterable<unknown>;
      return { messages: implFn(input, context)[Symbol.asyncIterator](), failureHeader: () => context.responseHeader, responseHeader: () => context.responseHeader };
    }
    let streamHeader: Headers | undefined;
    const response = transport.stream(method, signal, undefined, header, oneMessage(input)).then((r) => {
      streamHeader = r.header;
      return r.message[Symbol.asyncIterator]();
    });
    return {
      messages: {
        next: async () => (await response).next(),
        return: async () => (await response).return?.() ?? { done: true, value: undefined },
      },
      failureHeader: (error) => (error as { metadata?: unknown }).metadata,
      responseHeader: () => streamHeader,
    };
  }

  return { handle, routes: routes.map((r) => `${r.httpMethod} ${r.pattern}`) };
}

/** A server-streaming handler's messages, and where its response headers are once it produced the first one or failed. */
interface OpenStream {
  readonly messages: AsyncIterator<unknown>;
  readonly failureHeader: (error: unknown) => unknown;
  readonly responseHeader: () => Headers | undefined;
}

/** How {@link relayStream} writes one kind of stream. */
interface StreamWriter {
  /** Sets the status and headers from the first message (undefined: the stream was empty); false ends the response there. */
  start(first: unknown): boolean;
  /** The bytes of one message. */
  chunk(message: unknown): Uint8Array | undefined;
}

/**
 * Writes a server stream as one response: headers (the handler's, then the
 * writer's) go out with the first message, each message is written as it
 * arrives (a slow client slows the handler), and the stream's end ends the
 * response. Errors before the first message propagate (the envelope); later
 * ones destroy the response through writeApiError's headersSent branch. When
 * the client goes away or a write fails, the handler is stopped (its
 * transaction, its watch end with it).
 */
async function relayStream(open: OpenStream, res: RestResponse, signal: AbortSignal, writer: StreamWriter): Promise<void> {
  const { messages } = open;
  let done = false;
  try {
    let first: IteratorResult<unknown>;
    try {
      first = await messages.next();
    } catch (error) {
      done = true;
      // Headers the handler set before failing (x-ratelimit-*, Retry-After) still reach the client.
      const metadata = open.failureHeader(error);
      if (metadata instanceof Headers) copyResponseHeaders(metadata, res);
      throw error;
    }
    copyResponseHeaders(open.responseHeader() ?? new Headers(), res);
    res.statusCode = 200;
    if (!writer.start(first.done === true ? undefined : first.value)) {
      done = first.done === true;
      res.end();
      return;
    }
    // No content-length: HTTP/1.1 chunked encoding or HTTP/2 DATA frames carry the stream.
    if (res instanceof http2.Http2ServerResponse) res.writeHead(res.statusCode);
    else res.flushHeaders();
    if (first.done !== true) {
      await writeChunk(res, writer.chunk(first.value), signal);
      for (;;) {
        let next: IteratorResult<unknown>;
        try {
          next = await messages.next();
        } catch (error) {
          done = true;
          throw error;
        }
        if (next.done === true) break;
        await writeChunk(res, writer.chunk(next.value), signal);
      }
    }
    done = true;
    res.end();
  } finally {
    if (!done) await messages.return?.().catch(() => undefined);
  }
}

/**
 * An HttpBody stream (the CSV exports): the first message's content type, each
 * message's `data` as it arrives.
 */
function httpBodyWriter(route: Route, method: DescMethodServerStreaming, res: RestResponse): StreamWriter {
  const field = route.responseField;
  if (field === undefined) throw new Error(`${method.parent.typeName}.${method.name}: streamed without response_body`);
  return {
    start(first) {
      setHeader(res, "content-type", (first === undefined ? undefined : bodyOf(first, method, field)?.contentType) || "application/octet-stream");
      return true;
    },
    chunk: (message) => bodyOf(message, method, field)?.data,
  };
}

/**
 * An event stream (rest-methods.ts, isEventStream) as Server-Sent Events: 204
 * when it ends before its first message, else `text/event-stream` with one
 * event per message.
 */
function eventWriter(method: DescMethodServerStreaming, res: RestResponse, registry: Registry): StreamWriter {
  const encoder = new TextEncoder();
  return {
    start(first) {
      if (first === undefined) {
        res.statusCode = 204;
        return false;
      }
      setHeader(res, "content-type", "text/event-stream");
      // Nothing may keep or delay an event on its way: not a cache, not a buffering proxy (nginx).
      setHeader(res, "cache-control", "no-cache");
      setHeader(res, "x-accel-buffering", "no");
      return true;
    },
    chunk: (message) => encoder.encode(eventFrame(method, message, registry)),
  };
}

/** One message of an event stream as its SSE frame (see isEventStream in rest-methods.ts). */
function eventFrame(method: DescMethodServerStreaming, message: unknown, registry: Registry): string {
  const full = (isMessage(message, method.output) ? message : create(method.output, message as MessageInitShape<DescMessage>)) as MessageShape<DescMessage> & Record<string, unknown>;
  const json = toJson(method.output, full, { useProtoFieldName: true, alwaysEmitImplicit: true, registry }) as JsonObject;
  const type = typeof json["type"] === "string" ? json["type"] : "";
  if (type === "heartbeat") return ": heartbeat\n\n";
  // JSON.stringify writes no line breaks, so the event is one data line.
  return `id: ${String(json["id"] ?? "")}\n${type === "" ? "" : `event: ${type}\n`}data: ${JSON.stringify(json)}\n\n`;
}

/**
 * Fills an event stream's resume field from `Last-Event-ID` (EventSource sends
 * the last id it saw when it reconnects) unless the query already set it.
 */
function resumeFromLastEventId(method: DescMethodServerStreaming, input: MessageShape<DescMessage>, req: RestRequest): void {
  const raw = req.headers["last-event-id"];
  const value = (Array.isArray(raw) ? raw[0] : raw)?.trim();
  const field = method.input.fields.find((f) => f.name === resumeFieldName);
  if (value === undefined || value === "" || field?.fieldKind !== "scalar") return;
  const fields = input as unknown as Record<string, unknown>;
  const current = fields[field.localName];
  if (current !== 0n && current !== 0 && current !== "") return;
  if (field.scalar === ScalarType.STRING) {
    fields[field.localName] = value;
    return;
  }
  if (!/^[0-9]{1,19}$/.test(value) || BigInt(value) > 0x7fffffffffffffffn) {
    throw validationError(`Last-Event-ID must be the id of an event this stream sent, got "${clip(value)}"`, { field: "Last-Event-ID" });
  }
  fields[field.localName] = typeof current === "bigint" ? BigInt(value) : Number(value);
}

/** The request of a server-streaming call, as the one-message input stream a transport takes. */
async function* oneMessage<T>(message: T): AsyncGenerator<T> {
  yield message;
}

/** The HttpBody of one streamed message (a plain init object from a handler, or a message). */
function bodyOf(message: unknown, method: DescMethodServerStreaming, field: DescField): HttpBody | undefined {
  const full = isMessage(message, method.output) ? message : create(method.output, message as MessageInitShape<DescMessage>);
  return (full as Record<string, unknown>)[field.localName] as HttpBody | undefined;
}

/** The client closed the response while a streamed body was being written. */
class ClientGone extends Error {
  constructor() {
    super("the client closed the response");
    this.name = "ClientGone";
  }
}

/**
 * Writes one chunk, waiting for 'drain' when the response's buffer is full, so
 * a slow client slows the handler instead of growing memory.
 */
async function writeChunk(res: RestResponse, data: Uint8Array | undefined, signal: AbortSignal): Promise<void> {
  if (signal.aborted) throw new ClientGone();
  if (data === undefined || data.length === 0) return;
  if ((res as NodeJS.WritableStream).write(data)) return;
  const emitter = res as NodeJS.EventEmitter;
  await new Promise<void>((resolve, reject) => {
    const onDrain = (): void => {
      signal.removeEventListener("abort", onAbort);
      resolve();
    };
    const onAbort = (): void => {
      emitter.off("drain", onDrain);
      reject(new ClientGone());
    };
    emitter.once("drain", onDrain);
    signal.addEventListener("abort", onAbort, { once: true });
  });
}

/** Causes of the server errors writeApiError answered (or cut responses) with, for the server's log. */
const serverErrorCauses = new WeakMap<RestResponse, unknown>();

/**
 * The cause of the server error (5xx, or a response cut after its headers)
 * that {@link writeApiError} wrote on `res`; undefined when it wrote none.
 * src/server/http-server.ts logs it with the request id when the response
 * closes, so every route that answers through writeApiError is covered.
 */
export function serverErrorCauseOf(res: RestResponse): unknown {
  return serverErrorCauses.get(res);
}

/**
 * Writes the REST error envelope `{"error":{"code","message","request_id"[,"details"]}}`
 * with the ApiError's status and extra headers. Anything that is not an ApiError
 * is converted with `apiErrorFrom` (unknown errors become a bare 500).
 */
export function writeApiError(res: RestResponse, error: unknown, requestId: string): void {
  const api = apiErrorFrom(error);
  const cause = error instanceof ClientGone ? undefined : serverErrorCause(error);
  if (cause !== undefined) serverErrorCauses.set(res, cause);
  if (res.headersSent) {
    // Too late for an envelope: cut the response so the client sees a failure, not a short body.
    res.destroy();
    return;
  }
  for (const [k, v] of Object.entries(api.headers)) setHeader(res, k, v);
  setHeader(res, "x-request-id", requestId);
  const body: JsonObject = { code: api.code, message: api.message, request_id: requestId };
  if (Object.keys(api.details).length > 0) body["details"] = api.details as JsonObject;
  writeJson(res, httpStatusOf(api.code), { error: body });
}

// ---------------------------------------------------------------- routes

/** The methods with a REST shape: unary ones and server-streaming HttpBody ones. */
type RestMethod = DescMethodUnary | DescMethodServerStreaming;

interface Route {
  readonly method: RestMethod;
  readonly httpMethod: string;
  readonly pattern: string;
  readonly template: Template;
  /** "" (no body), "*" (the whole body), or a top-level request field. */
  readonly body: "" | "*" | DescField;
  readonly responseField: DescField | undefined;
  readonly implemented: boolean;
  /** The implementation, bound to its service object; undefined when not implemented. */
  readonly impl: ((req: unknown, ctx: HandlerContext) => unknown) | undefined;
  /** JSON bodies of immutable response messages, by message. */
  readonly encoded: WeakMap<object, string>;
  /**
   * Set when the request is made of path variables only and each names a
   * top-level string field (`/jobs/{id}`): variable → the field's local name.
   * Such a request without a query is built directly, as fromJson would.
   */
  readonly pathOnlyInput: ReadonlyMap<string, string> | undefined;
}

/** One path segment of a template: a literal, `*` (one segment) or `**` (zero or more). */
type Segment = { kind: "literal"; value: string } | { kind: "one" } | { kind: "any" };

interface Template {
  readonly segments: ReadonlyArray<{ readonly segment: Segment; readonly variable: string | undefined }>;
  readonly verb: string | undefined;
  /** When every variable is one `*` segment (`/jobs/{id}`): [segment index, variable] pairs, for a quicker capture. */
  readonly singleSegmentVariables: ReadonlyArray<readonly [number, string]> | undefined;
}

function compileRoute(method: RestMethod, rule: HttpRule, impl: Route["impl"]): Route | undefined {
  const implemented = impl !== undefined;
  let httpMethod: string;
  let pattern: string;
  switch (rule.pattern.case) {
    case "get":
    case "put":
    case "post":
    case "delete":
    case "patch":
      httpMethod = rule.pattern.case.toUpperCase();
      pattern = rule.pattern.value;
      break;
    case "custom":
      httpMethod = rule.pattern.value.kind.toUpperCase();
      pattern = rule.pattern.value.path;
      break;
    case undefined:
      return undefined;
  }
  const where = `${method.parent.typeName}.${method.name}`;
  let body: Route["body"] = "";
  if (rule.body === "*") body = "*";
  else if (rule.body !== "") body = fieldOrThrow(method.input, rule.body, where);
  const responseField = rule.responseBody === "" ? undefined : fieldOrThrow(method.output, rule.responseBody, where);
  const template = compileTemplate(pattern, where);
  for (const s of template.segments) {
    if (s.variable !== undefined) fieldPathOrThrow(method.input, s.variable, where);
  }
  let pathOnlyInput: Map<string, string> | undefined = body === "" ? new Map() : undefined;
  for (const { variable } of template.segments) {
    if (variable === undefined || pathOnlyInput === undefined) continue;
    const field = method.input.fields.find((f) => f.name === variable);
    if (field?.fieldKind === "scalar" && field.scalar === ScalarType.STRING) pathOnlyInput.set(variable, field.localName);
    else pathOnlyInput = undefined;
  }
  return { method, httpMethod, pattern, template, body, responseField, implemented, impl, encoded: new WeakMap(), pathOnlyInput };
}

function fieldOrThrow(desc: DescMessage, name: string, where: string): DescField {
  const field = desc.fields.find((f) => f.name === name);
  if (field === undefined) throw new Error(`${where}: google.api.http names unknown field "${name}" of ${desc.typeName}`);
  return field;
}

function fieldPathOrThrow(desc: DescMessage, path: string, where: string): void {
  let current: DescMessage | undefined = desc;
  for (const name of path.split(".")) {
    if (current === undefined) throw new Error(`${where}: path variable "${path}" walks into a non-message field`);
    const field = fieldOrThrow(current, name, where);
    current = field.fieldKind === "message" ? field.message : undefined;
  }
}

/**
 * Compiles a path template (`/v1/{name=shelves/*}/books/{id}:verb`). Errors are
 * thrown at startup: a bad annotation is a build bug, not a request error.
 */
function compileTemplate(pattern: string, where: string): Template {
  if (!pattern.startsWith("/")) throw new Error(`${where}: path template "${pattern}" must start with /`);
  let rest = pattern.slice(1);
  let verb: string | undefined;
  // A verb follows the last segment after ":" outside braces.
  const lastSlash = rest.lastIndexOf("/");
  const colon = rest.indexOf(":", lastSlash + 1);
  if (colon !== -1 && !rest.slice(colon).includes("}")) {
    verb = rest.slice(colon + 1);
    rest = rest.slice(0, colon);
  }
  const segments: Array<{ segment: Segment; variable: string | undefined }> = [];
  const tokens = rest.match(/\{[^}]*\}|[^/]+/g) ?? [];
  for (const token of tokens) {
    if (token.startsWith("{")) {
      const inner = token.slice(1, -1);
      const eq = inner.indexOf("=");
      const variable = eq === -1 ? inner : inner.slice(0, eq);
      const sub = eq === -1 ? "*" : inner.slice(eq + 1);
      for (const part of sub.split("/")) segments.push({ segment: segmentOf(part), variable });
    } else {
      segments.push({ segment: segmentOf(token), variable: undefined });
    }
  }
  const anyAt = segments.findIndex((s) => s.segment.kind === "any");
  if (anyAt !== -1 && anyAt !== segments.length - 1) throw new Error(`${where}: "**" must be the last segment of "${pattern}"`);
  const variables = segments.flatMap((s, i) => (s.variable === undefined ? [] : [[i, s.variable, s.segment.kind] as const]));
  const single = anyAt === -1 && variables.every(([, name, kind]) => kind === "one" && variables.filter((v) => v[1] === name).length === 1);
  return { segments, verb, singleSegmentVariables: single ? variables.map(([i, name]) => [i, name] as const) : undefined };
}

function segmentOf(token: string): Segment {
  if (token === "**") return { kind: "any" };
  if (token === "*") return { kind: "one" };
  return { kind: "literal", value: token };
}

/** Literal segments beat variables, and `*` beats `**`, so `/jobs/export` wins over `/jobs/{id}`. */
function compareSpecificity(a: Template, b: Template): number {
  const rank = (s: Segment | undefined): number => (s === undefined ? 3 : s.kind === "literal" ? 0 : s.kind === "one" ? 1 : 2);
  const n = Math.max(a.segments.length, b.segments.length);
  for (let i = 0; i < n; i++) {
    const d = rank(a.segments[i]?.segment) - rank(b.segments[i]?.segment);
    if (d !== 0) return d;
  }
  return 0;
}

/**
 * The routes as a tree of path segments, so matching a path costs one walk
 * down the tree instead of a test of every template.
 *
 * A path matches a template when, after the template's verb (if any) is cut
 * from the end of the path, each segment matches in turn: a literal equal to
 * it, `*` any non-empty segment, `**` all that remain (zero or more). Every
 * matching route is returned, most specific first (the order of `routes`),
 * with its decoded variables: the caller picks the first with the request's
 * HTTP method, and lists the methods of all of them for a 405.
 */
interface RouteIndex {
  match(path: string): Array<{ route: Route; vars: Map<string, string> }>;
}

interface RouteNode {
  readonly literals: Map<string, RouteNode>;
  one: RouteNode | undefined;
  /** Routes whose template ends at this node, by verb ("" for none). */
  readonly ends: Map<string, Route[]>;
  /** Routes whose template ends with `**` at this node, by verb. */
  readonly rests: Map<string, Route[]>;
}

function routeNode(): RouteNode {
  return { literals: new Map(), one: undefined, ends: new Map(), rests: new Map() };
}

function createRouteIndex(routes: readonly Route[]): RouteIndex {
  const root = routeNode();
  const rank = new Map<Route, number>();
  const verbs = new Set<string>();
  for (const [i, route] of routes.entries()) {
    rank.set(route, i);
    const verb = route.template.verb ?? "";
    if (verb !== "") verbs.add(verb);
    let node = root;
    let rest = false;
    for (const { segment } of route.template.segments) {
      if (segment.kind === "any") {
        rest = true;
        break; // compileTemplate made it the last segment
      }
      if (segment.kind === "one") {
        node.one ??= routeNode();
        node = node.one;
      } else {
        let next = node.literals.get(segment.value);
        if (next === undefined) {
          next = routeNode();
          node.literals.set(segment.value, next);
        }
        node = next;
      }
    }
    const lists = rest ? node.rests : node.ends;
    const list = lists.get(verb) ?? [];
    list.push(route);
    lists.set(verb, list);
  }

  const collect = (node: RouteNode, parts: readonly string[], i: number, verb: string, out: Array<{ route: Route; parts: readonly string[] }>): void => {
    const rests = node.rests.size === 0 ? undefined : node.rests.get(verb);
    if (rests !== undefined) for (const route of rests) out.push({ route, parts });
    if (i === parts.length) {
      const ends = node.ends.get(verb);
      if (ends !== undefined) for (const route of ends) out.push({ route, parts });
      return;
    }
    const part = parts[i]!;
    if (part === "") return;
    const literal = node.literals.get(part);
    if (literal !== undefined) collect(literal, parts, i + 1, verb, out);
    if (node.one !== undefined) collect(node.one, parts, i + 1, verb, out);
  };

  return {
    match(path) {
      const raw = path.slice(1);
      const found: Array<{ route: Route; parts: readonly string[] }> = [];
      collect(root, raw === "" ? [] : raw.split("/"), 0, "", found);
      for (const verb of verbs) {
        if (!raw.endsWith(`:${verb}`)) continue;
        const cut = raw.slice(0, -(verb.length + 1));
        collect(root, cut === "" ? [] : cut.split("/"), 0, verb, found);
      }
      if (found.length > 1) found.sort((a, b) => rank.get(a.route)! - rank.get(b.route)!);
      return found.map(({ route, parts }) => ({ route, vars: captureVariables(route.template, parts) }));
    },
  };
}

/** The decoded variables of a template that matches `parts` (see RouteIndex). */
function captureVariables(template: Template, parts: readonly string[]): Map<string, string> {
  if (template.singleSegmentVariables !== undefined) {
    const vars = new Map<string, string>();
    for (const [i, name] of template.singleSegmentVariables) vars.set(name, decodeSegment(parts[i]!));
    return vars;
  }
  const captured = new Map<string, string[]>();
  let i = 0;
  for (const { segment, variable } of template.segments) {
    const taken = segment.kind === "any" ? parts.slice(i) : parts.slice(i, i + 1);
    i += taken.length;
    if (variable !== undefined) {
      const list = captured.get(variable);
      if (list === undefined) captured.set(variable, taken);
      else list.push(...taken);
    }
  }
  const vars = new Map<string, string>();
  for (const [name, segs] of captured) {
    // Each segment is decoded on its own so an encoded "/" (%2F) stays inside its segment.
    vars.set(name, segs.length === 1 ? decodeSegment(segs[0]!) : segs.map(decodeSegment).join("/"));
  }
  return vars;
}

/** The parts of a request target the transcoder reads. */
interface RequestTarget {
  /** The path, still percent-encoded, as `URL.pathname` gives it. */
  readonly pathname: string;
  /** The query parameters; undefined when there is no query. */
  readonly searchParams: URLSearchParams | undefined;
  /** The query as sent (percent-encoded, with its "?"); "" when there is none. */
  readonly search: string;
  /** The absolute URL (on http://localhost), for the handler context. */
  readonly href: string;
}

/** Characters `URL` leaves as they are in a path (no query, fragment, backslash or anything it escapes). */
const plainPathChars = new Uint8Array(128);
for (const c of "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_~!$&'()*+,;=:@%/.") plainPathChars[c.charCodeAt(0)] = 1;

/**
 * A path made only of characters `URL` leaves as they are, with no dot
 * segments (`.`, `..`, or their `%2e` spellings) and no `//` at the start:
 * for such a target `new URL(target, base).pathname` is the target itself.
 */
function isPlainPath(target: string): boolean {
  const n = target.length;
  if (n === 0 || target.charCodeAt(0) !== 0x2f || (n > 1 && target.charCodeAt(1) === 0x2f)) return false;
  let segmentStart = 1;
  for (let i = 1; i <= n; i++) {
    const c = i < n ? target.charCodeAt(i) : 0x2f;
    if (c === 0x2f) {
      const length = i - segmentStart;
      if ((length === 1 || length === 2) && target.charCodeAt(segmentStart) === 0x2e && (length === 1 || target.charCodeAt(segmentStart + 1) === 0x2e)) return false;
      segmentStart = i + 1;
    } else if (c >= 128 || plainPathChars[c] === 0) {
      return false;
    } else if (c === 0x25 && target.charCodeAt(i + 1) === 0x32 && (target.charCodeAt(i + 2) | 0x20) === 0x65) {
      return false; // "%2e" / "%2E": a dot to URL's dot-segment rules
    }
  }
  return true;
}

/**
 * The path of a request target, as `new URL(target, "http://localhost").pathname` gives it (cheaply for a
 * plain path). Never throws, since servers call it outside any handler: for a target no URL can be read
 * from ("//[x", "http://[") it returns the target itself, which no route matches, and the transcoder
 * answers such a request 400.
 */
export function requestPathname(target: string): string {
  try {
    return parseTarget(target).pathname;
  } catch {
    return target;
  }
}

/** Parses a request target like `new URL(target, "http://localhost")`, without building a URL for a plain path. */
function parseTarget(target: string): RequestTarget {
  if (isPlainPath(target)) {
    return { pathname: target, searchParams: undefined, search: "", href: `http://localhost${target}` };
  }
  let url: URL;
  try {
    url = new URL(target, "http://localhost");
  } catch {
    // An absolute-form target with a broken authority ("http://[", "//a b/"): no path can be read from it.
    throw validationError(`the request target ${JSON.stringify(clip(target))} is not a valid URL; send a path such as /api/v1/customer/meta`);
  }
  return { pathname: url.pathname, searchParams: url.search === "" ? undefined : url.searchParams, search: url.search, href: url.href };
}

/** At most 100 characters of client text for an error message. */
function clip(text: string): string {
  return text.length > 100 ? `${text.slice(0, 100)}…` : text;
}

/**
 * URLSearchParams decodes leniently: "%ZZ" stays as typed and bytes that are
 * not UTF-8 become U+FFFD, so a mangled value would reach the handler as
 * something the client never sent. Every name and value must decode strictly,
 * and hold no NUL (PostgreSQL text cannot store it).
 */
function checkQueryEncoding(search: string): void {
  if (!search.includes("%")) return;
  for (const pair of search.slice(1).split("&")) {
    if (!pair.includes("%")) continue;
    const eq = pair.indexOf("=");
    const name = eq === -1 ? pair : pair.slice(0, eq);
    for (const part of eq === -1 ? [pair] : [name, pair.slice(eq + 1)]) {
      let decoded: string;
      try {
        decoded = decodeURIComponent(part.replaceAll("+", " "));
      } catch {
        throw validationError(`query parameter "${clip(name)}" is not valid percent-encoding: write "%" as %25 and encode text as UTF-8`, { field: clip(name) });
      }
      if (decoded.includes("\0")) throw validationError(`query parameter "${clip(name)}" holds a NUL character (%00)`, { field: clip(name) });
    }
  }
}

/**
 * An AbortSignal that aborts when the client closes the response before it
 * finished, made on the first call (most handlers never ask for it, and a
 * signal costs a controller and a close listener per request).
 */
function lazyClientSignal(res: RestResponse): () => AbortSignal {
  let controller: AbortController | undefined;
  return () => {
    if (controller === undefined) {
      const made = new AbortController();
      controller = made;
      if ((res as { destroyed?: boolean }).destroyed === true && !res.writableFinished) made.abort();
      else res.once("close", () => {
        if (!res.writableFinished) made.abort();
      });
    }
    return controller.signal;
  };
}

/**
 * The handler context of a REST call: what connect's `createHandlerContext`
 * builds, without its deadline timer and linked signals (REST calls have no
 * deadline; `signal` is the request's own) and without copying the request
 * headers a second time.
 */
function restContext(method: RestMethod, requestMethod: string, url: string, signal: () => AbortSignal, requestHeader: Headers): HandlerContext {
  return new RestHandlerContext(method, requestMethod, url, signal, requestHeader);
}

/**
 * A class, not an object literal with a `get signal()`: a literal's getter is a
 * new function each time, which gives every context its own hidden class and
 * made every handler touching one megamorphic (and the GC busy).
 */
class RestHandlerContext implements HandlerContext {
  readonly method: RestMethod;
  readonly service: DescService;
  readonly protocolName = "rest";
  readonly requestMethod: string;
  readonly url: string;
  readonly requestHeader: Headers;
  readonly responseHeader = new ResponseHeaders() as unknown as Headers;
  readonly responseTrailer = new ResponseHeaders() as unknown as Headers;
  readonly values = createContextValues();
  readonly #signal: () => AbortSignal;

  constructor(method: RestMethod, requestMethod: string, url: string, signal: () => AbortSignal, requestHeader: Headers) {
    this.method = method;
    this.service = method.parent;
    this.requestMethod = requestMethod;
    this.url = url;
    this.requestHeader = requestHeader;
    this.#signal = signal;
  }

  get signal(): AbortSignal {
    return this.#signal();
  }

  timeoutMs(): number | undefined {
    return undefined;
  }
}

function decodeSegment(segment: string): string {
  if (!segment.includes("%")) return segment;
  let decoded: string;
  try {
    decoded = decodeURIComponent(segment);
  } catch {
    throw validationError(`path segment "${clip(segment)}" is not valid percent-encoding: write "%" as %25 and encode text as UTF-8`);
  }
  // PostgreSQL text cannot hold a NUL: refused here rather than failing in the database.
  if (decoded.includes("\0")) throw validationError(`path segment "${clip(segment)}" holds a NUL character (%00)`);
  return decoded;
}

/** One trailing slash is forgiven: `/api/v1/x/` is `/api/v1/x`. */
function normalizePath(path: string): string {
  return path.length > 1 && path.endsWith("/") ? path.slice(0, -1) : path;
}

// ---------------------------------------------------------------- request

/**
 * The request message: query parameters, then the body, then path variables
 * (which win). Synchronous when the rule has no body, so a GET costs no extra
 * turn of the event loop; a promise when the body must be read.
 */
function buildInput(route: Route, vars: Map<string, string>, url: RequestTarget, req: RestRequest, maxBodyBytes: number): MessageShape<DescMessage> | Promise<MessageShape<DescMessage>> {
  const input = route.method.input;
  const query = url.searchParams;
  if (query === undefined && route.pathOnlyInput !== undefined) {
    const init: Record<string, string> = {};
    for (const [variable, value] of vars) init[route.pathOnlyInput.get(variable)!] = value;
    return create(input, init as MessageInitShape<DescMessage>);
  }
  const obj: JsonObject = {};
  if (query !== undefined) {
    checkQueryEncoding(url.search);
    const seen = new Set<string>();
    for (const key of query.keys()) {
      if (seen.has(key)) continue;
      seen.add(key);
      setQueryParam(obj, input, key, query.getAll(key));
    }
  }
  if (route.body === "") return finishInput(input, obj, vars);
  const bodyField = route.body;
  return readBody(req, maxBodyBytes, bodyField !== "*" && isHttpBodyField(bodyField)).then((body) => {
    if (bodyField === "*") {
      const parsed = body === undefined ? {} : parseJson(body.bytes);
      if (parsed === null || typeof parsed !== "object" || Array.isArray(parsed)) {
        throw validationError("request body must be a JSON object");
      }
      for (const [key, value] of Object.entries(parsed)) {
        const field = findField(input, key);
        if (field === undefined) obj[key] = value;
        else setCanonical(obj, field, value);
      }
    } else if (isHttpBodyField(bodyField)) {
      if (body !== undefined) {
        setCanonical(obj, bodyField, { content_type: body.contentType, data: Buffer.from(body.bytes).toString("base64") });
      }
    } else if (body !== undefined) {
      setCanonical(obj, bodyField, parseJson(body.bytes));
    }
    return finishInput(input, obj, vars);
  });
}

/** Sets the path variables (last, so they win) and decodes the JSON object into the request message. */
function finishInput(input: DescMessage, obj: JsonObject, vars: Map<string, string>): MessageShape<DescMessage> {
  for (const [path, value] of vars) setPath(obj, input, path.split("."), path, [value], "path variable");
  try {
    return fromJson(input, obj);
  } catch (error) {
    // protobuf-es names the field and the value, e.g. `cannot decode field
    // gpuagent.customer.v1.ListTrainingJobsRequest.limit from JSON: "x"`.
    const message = error instanceof Error ? error.message : "invalid request";
    const field = fieldNamedIn(message);
    throw validationError(message, field === undefined ? undefined : { field });
  }
}

/** The field a protobuf-es fromJson error names, for `details.field`. */
function fieldNamedIn(message: string): string | undefined {
  return /cannot decode field [\w.]+\.(\w+) from JSON/.exec(message)?.[1] ?? /key "([^"]+)" is unknown/.exec(message)?.[1];
}

function findField(desc: DescMessage, key: string): DescField | undefined {
  return desc.fields.find((f) => f.name === key || f.jsonName === key);
}

/** Sets a field under its proto name and drops its JSON-name alias, so one source wins cleanly. */
function setCanonical(obj: JsonObject, field: DescField, value: JsonValue): void {
  if (field.jsonName !== field.name) delete obj[field.jsonName];
  obj[field.name] = value;
}

function setQueryParam(obj: JsonObject, desc: DescMessage, key: string, values: string[]): void {
  setPath(obj, desc, key.split("."), key, values, "query parameter");
}

/** Writes a (possibly dotted) field path into the JSON object, coercing strings by field type. */
function setPath(obj: JsonObject, desc: DescMessage, path: string[], name: string, values: string[], what: string): void {
  const [head, ...tail] = path;
  const field = head === undefined ? undefined : findField(desc, head);
  if (field === undefined) throw validationError(`unknown ${what} "${name}"`, { field: name });
  if (tail.length > 0) {
    if (field.fieldKind !== "message") throw validationError(`${what} "${name}": "${field.name}" has no subfields`, { field: name });
    const existing = obj[field.name];
    const child: JsonObject = existing !== null && typeof existing === "object" && !Array.isArray(existing) ? existing : {};
    setCanonical(obj, field, child);
    setPath(child, field.message, tail, name, values, what);
    return;
  }
  if (field.fieldKind === "list") {
    setCanonical(obj, field, values.map((v) => coerce(field.listKind === "scalar" ? field.scalar : undefined, field.listKind === "message" ? field.message : undefined, v)));
    return;
  }
  if (field.fieldKind === "map") throw validationError(`${what} "${name}" cannot set a map field`, { field: name });
  if (values.length !== 1) throw validationError(`${what} "${name}" is given ${values.length} times but is not repeated`, { field: name });
  const value = values[0] ?? "";
  setCanonical(obj, field, coerce(field.fieldKind === "scalar" ? field.scalar : undefined, field.fieldKind === "message" ? field.message : undefined, value));
}

const wrapperScalars: Readonly<Record<string, ScalarType>> = {
  "google.protobuf.DoubleValue": ScalarType.DOUBLE,
  "google.protobuf.FloatValue": ScalarType.FLOAT,
  "google.protobuf.Int32Value": ScalarType.INT32,
  "google.protobuf.UInt32Value": ScalarType.UINT32,
  "google.protobuf.BoolValue": ScalarType.BOOL,
};

/**
 * Turns a query or path string into the JSON value proto3 JSON expects. A value
 * that does not parse stays a string, so fromJson rejects it and names the field.
 * 64-bit integers stay strings (their JSON form).
 */
function coerce(scalar: ScalarType | undefined, message: DescMessage | undefined, value: string): JsonValue {
  const type = scalar ?? (message === undefined ? undefined : wrapperScalars[message.typeName]);
  switch (type) {
    case ScalarType.BOOL:
      return value === "true" ? true : value === "false" ? false : value;
    case ScalarType.DOUBLE:
    case ScalarType.FLOAT:
    case ScalarType.INT32:
    case ScalarType.UINT32:
    case ScalarType.SINT32:
    case ScalarType.FIXED32:
    case ScalarType.SFIXED32: {
      const n = Number(value);
      return value.trim() !== "" && Number.isFinite(n) ? n : value;
    }
    default:
      return value;
  }
}

function parseJson(bytes: Uint8Array): JsonValue {
  try {
    return JSON.parse(Buffer.from(bytes).toString("utf8")) as JsonValue;
  } catch (error) {
    throw validationError(`request body is not valid JSON: ${error instanceof Error ? error.message : String(error)}`);
  }
}

/** The content codings a REST body may come in (RFC 9110 §8.4.1), with their bounded decoders. */
const bodyDecoders: Readonly<Record<string, (bytes: Buffer, options: ZlibOptions) => Promise<Buffer>>> = {
  gzip: promisify(gunzip),
  "x-gzip": promisify(gunzip),
  deflate: promisify(inflate),
  br: promisify(brotliDecompress),
};

/**
 * Reads the body up to the limit. Resolves undefined for an empty body. A
 * non-JSON content type is 415 unless the body is bound to an HttpBody field
 * (raw bytes). A `content-encoding` of gzip, deflate or br is decoded, and the
 * limit holds for what arrives and for what it decodes to (inflating stops at
 * the limit, so a small bomb costs one limit of memory); another coding is
 * 415. Over the limit is 413, and reading stops there: the server closes the
 * HTTP/1.1 connection after the answer, or resets the HTTP/2 stream, instead
 * of reading the rest.
 */
async function readBody(req: RestRequest, maxBodyBytes: number, raw: boolean): Promise<{ bytes: Uint8Array; contentType: string } | undefined> {
  const contentType = headerValue(req, "content-type") ?? "";
  const declared = Number(headerValue(req, "content-length") ?? "NaN");
  if (declared === 0) return undefined;
  if (!raw && contentType !== "" && !isJsonContentType(contentType)) {
    throw new ApiError("UNSUPPORTED_MEDIA_TYPE", `content type "${contentType}" is not supported; send application/json`);
  }
  const coding = (headerValue(req, "content-encoding") ?? "identity").trim().toLowerCase();
  const decode = coding === "identity" || coding === "" ? undefined : bodyDecoders[coding];
  if (decode === undefined && coding !== "identity" && coding !== "") {
    throw new ApiError("UNSUPPORTED_MEDIA_TYPE", `content encoding "${coding}" is not supported; send the body as is, or in gzip, deflate or br`);
  }
  const tooLarge = (): ApiError => new ApiError("PAYLOAD_TOO_LARGE", `request body exceeds ${maxBodyBytes} bytes`, { details: { max_body_bytes: maxBodyBytes } });
  if (Number.isFinite(declared) && declared > maxBodyBytes) throw tooLarge();
  const chunks: Buffer[] = [];
  let size = 0;
  await new Promise<void>((resolve, reject) => {
    const onData = (chunk: Buffer): void => {
      size += chunk.length;
      if (size > maxBodyBytes) {
        req.off("data", onData);
        req.pause();
        reject(tooLarge());
        return;
      }
      chunks.push(chunk);
    };
    req.on("data", onData);
    req.once("end", () => resolve());
    req.once("error", reject);
    req.once("aborted", () => reject(validationError("request body was aborted")));
  });
  if (size === 0) return undefined;
  let bytes: Buffer = Buffer.concat(chunks);
  if (decode !== undefined) {
    try {
      bytes = await decode(bytes, { maxOutputLength: maxBodyBytes });
    } catch (error) {
      if ((error as { code?: unknown }).code === "ERR_BUFFER_TOO_LARGE") throw tooLarge();
      throw validationError(`request body is not valid ${coding}: ${error instanceof Error ? error.message : String(error)}`);
    }
    if (bytes.length === 0) return undefined;
  }
  return { bytes, contentType: contentType || "application/octet-stream" };
}

function isJsonContentType(contentType: string): boolean {
  const mime = (contentType.split(";")[0] ?? "").trim().toLowerCase();
  return mime === "application/json" || (mime.startsWith("application/") && mime.endsWith("+json"));
}

function headerValue(req: RestRequest, name: string): string | undefined {
  const v = req.headers[name];
  return Array.isArray(v) ? v.join(", ") : v;
}

/**
 * Request headers not forwarded to the handler: HTTP/2 pseudo-headers, hop-by-hop
 * headers, and those describing the REST body or the Connect/gRPC framing (the
 * in-memory transport sets its own; forwarding them would confuse it).
 */
const droppedRequestHeaders = new Set([
  "connection", "keep-alive", "transfer-encoding", "te", "upgrade", "host", "http2-settings", "proxy-connection",
  "content-type", "content-length", "content-encoding", "accept-encoding", "expect", "trailer",
]);

function isForwardedRequestHeader(key: string): boolean {
  return !key.startsWith(":") && !droppedRequestHeaders.has(key) && !key.startsWith("connect-") && !key.startsWith("grpc-");
}

function forwardedRequestHeaders(req: RestRequest, requestId: string): Headers {
  return new RequestHeaders(req.headers, requestId) as unknown as Headers;
}

const headerNamePattern = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
/** What the Headers class refuses in a value (such a header cannot be meant for a handler). */
const badHeaderValuePattern = /[\0\r\n]/;

/**
 * The request headers a handler sees: the request's headers less those above,
 * with the request id. `get` and `has` — all handlers usually do — read Node's
 * parsed headers directly; anything else (iterating, copying, changing) first
 * fills the real `Headers` with them, one by one, which costs a validation per
 * header and is what every request paid before.
 */
/** The Headers class, as a base the TypeScript types let a subclass override (they declare its methods as properties). */
const HeadersBase: new () => object = Headers;
const nativeHeaders = Headers.prototype;

class RequestHeaders extends HeadersBase {
  #raw: NodeJS.Dict<string | string[]> | undefined;
  readonly #requestId: string;

  constructor(raw: NodeJS.Dict<string | string[]>, requestId: string) {
    super();
    this.#raw = raw;
    this.#requestId = requestId;
  }

  #fill(): Headers {
    const self = this as unknown as Headers;
    const raw = this.#raw;
    if (raw === undefined) return self;
    this.#raw = undefined;
    for (const [name, value] of Object.entries(raw)) {
      const key = name.toLowerCase();
      if (value === undefined || !isForwardedRequestHeader(key)) continue;
      try {
        for (const v of Array.isArray(value) ? value : [value]) nativeHeaders.append.call(self, key, v);
      } catch {
        // A value Headers rejects (control characters) cannot be meant for a handler; skip it.
      }
    }
    nativeHeaders.set.call(self, "x-request-id", this.#requestId);
    return self;
  }

  get(name: string): string | null {
    const raw = this.#raw;
    if (raw === undefined || !headerNamePattern.test(name)) return nativeHeaders.get.call(this.#fill(), name);
    const key = name.toLowerCase();
    if (key === "x-request-id") return this.#requestId;
    if (!isForwardedRequestHeader(key)) return null;
    const value = raw[key];
    if (value === undefined) return null;
    const values = Array.isArray(value) ? value.filter((v) => !badHeaderValuePattern.test(v)) : badHeaderValuePattern.test(value) ? [] : [value];
    return values.length === 0 ? null : values.join(", ");
  }

  has(name: string): boolean {
    return this.get(name) !== null;
  }

  append(name: string, value: string): void {
    nativeHeaders.append.call(this.#fill(), name, value);
  }

  set(name: string, value: string): void {
    nativeHeaders.set.call(this.#fill(), name, value);
  }

  delete(name: string): void {
    nativeHeaders.delete.call(this.#fill(), name);
  }

  getSetCookie(): string[] {
    return nativeHeaders.getSetCookie.call(this.#fill());
  }

  forEach(callback: (value: string, key: string, parent: Headers) => void, thisArg?: unknown): void {
    nativeHeaders.forEach.call(this.#fill(), callback, thisArg);
  }

  entries(): ReturnType<Headers["entries"]> {
    return nativeHeaders.entries.call(this.#fill());
  }

  keys(): ReturnType<Headers["keys"]> {
    return nativeHeaders.keys.call(this.#fill());
  }

  values(): ReturnType<Headers["values"]> {
    return nativeHeaders.values.call(this.#fill());
  }

  [Symbol.iterator](): ReturnType<Headers["entries"]> {
    return nativeHeaders[Symbol.iterator].call(this.#fill());
  }
}

const httpWhitespace = /^[\t\n\r ]+|[\t\n\r ]+$/g;
const refusedHeaderValue = /[\0\r\n\u0100-\uffff]/;
/** Header names already found valid (as given → lower case): handlers set the same few on every call. */
const validHeaderNames = new Map<string, string>();

function isHttpWhitespace(c: number): boolean {
  return c === 0x20 || c === 0x09 || c === 0x0a || c === 0x0d;
}

/**
 * The response headers and trailers of a REST call's handler context: a
 * `Headers` (same names, values, validation and errors) kept as a small list,
 * because the transcoder only copies them onto the response. The Headers
 * class validates, sorts and copies on every use, which a GET paid several
 * times (the X-RateLimit-* headers).
 */
export class ResponseHeaders extends HeadersBase {
  /** [lower-case name, value] in the order set; set-cookie may repeat, other names never do. */
  readonly #list: Array<[string, string]> = [];

  #name(name: string): string {
    const known = validHeaderNames.get(name);
    if (known !== undefined) return known;
    if (!headerNamePattern.test(name)) throw new TypeError(`Headers: invalid header name ${JSON.stringify(name)}`);
    const key = name.toLowerCase();
    if (validHeaderNames.size < 1000) validHeaderNames.set(name, key);
    return key;
  }

  #value(name: string, value: string): string {
    let normalized = String(value);
    const last = normalized.length - 1;
    if (last >= 0 && (isHttpWhitespace(normalized.charCodeAt(0)) || isHttpWhitespace(normalized.charCodeAt(last)))) normalized = normalized.replace(httpWhitespace, "");
    // What Headers refuses: NUL, CR, LF, and (not being a ByteString) anything above U+00FF.
    if (refusedHeaderValue.test(normalized)) throw new TypeError(`Headers: invalid value for header ${JSON.stringify(name)}`);
    return normalized;
  }

  /** Each header as the response should carry it: set-cookie once per cookie, other names once. */
  eachForResponse(fn: (key: string, value: string | string[]) => void): void {
    let cookies: string[] | undefined;
    for (const [key, value] of this.#list) {
      if (key === "set-cookie") (cookies ??= []).push(value);
      else fn(key, value);
    }
    if (cookies !== undefined) fn("set-cookie", cookies);
  }

  get(name: string): string | null {
    const key = this.#name(name);
    let out: string | null = null;
    for (const [k, v] of this.#list) if (k === key) out = out === null ? v : `${out}, ${v}`;
    return out;
  }

  has(name: string): boolean {
    const key = this.#name(name);
    return this.#list.some(([k]) => k === key);
  }

  set(name: string, value: string): void {
    const key = this.#name(name);
    const v = this.#value(name, value);
    const at = this.#list.findIndex(([k]) => k === key);
    if (at === -1) {
      this.#list.push([key, v]);
      return;
    }
    this.#list[at] = [key, v];
    for (let i = this.#list.length - 1; i > at; i--) if (this.#list[i]![0] === key) this.#list.splice(i, 1);
  }

  append(name: string, value: string): void {
    const key = this.#name(name);
    const v = this.#value(name, value);
    const at = key === "set-cookie" ? -1 : this.#list.findIndex(([k]) => k === key);
    if (at === -1) this.#list.push([key, v]);
    else this.#list[at] = [key, `${this.#list[at]![1]}, ${v}`];
  }

  delete(name: string): void {
    const key = this.#name(name);
    for (let i = this.#list.length - 1; i >= 0; i--) if (this.#list[i]![0] === key) this.#list.splice(i, 1);
  }

  getSetCookie(): string[] {
    return this.#list.filter(([k]) => k === "set-cookie").map(([, v]) => v);
  }

  /** The Headers view of the list (sorted, set-cookie apart), for everything else. */
  #sorted(): Headers {
    const h = new Headers();
    for (const [k, v] of this.#list) h.append(k, v);
    return h;
  }

  forEach(callback: (value: string, key: string, parent: Headers) => void, thisArg?: unknown): void {
    for (const [k, v] of this.#sorted()) callback.call(thisArg, v, k, this as unknown as Headers);
  }

  entries(): ReturnType<Headers["entries"]> {
    return this.#sorted().entries();
  }

  keys(): ReturnType<Headers["keys"]> {
    return this.#sorted().keys();
  }

  values(): ReturnType<Headers["values"]> {
    return this.#sorted().values();
  }

  [Symbol.iterator](): ReturnType<Headers["entries"]> {
    return this.#sorted()[Symbol.iterator]();
  }
}

/** Response headers the in-memory Connect protocol produces; the REST response has its own. */
const droppedResponseHeaders = new Set([
  "content-type", "content-length", "content-encoding", "transfer-encoding", "connection", "keep-alive",
  "date", "vary", "accept-encoding", "trailer", "te", "upgrade", "x-request-id",
]);

function copyResponseHeaders(from: Headers, res: RestResponse): void {
  if (res.headersSent) return;
  if (from instanceof ResponseHeaders) {
    // Already lower case and valid: straight from its list, in the order set (not sorted, no copies).
    from.eachForResponse((key, value) => {
      if (!droppedResponseHeaders.has(key) && !key.startsWith("connect-") && !key.startsWith("grpc-")) setHeader(res, key, value);
    });
    return;
  }
  for (const [key, value] of from) {
    if (droppedResponseHeaders.has(key) || key.startsWith("connect-") || key.startsWith("grpc-") || key === "set-cookie") continue;
    setHeader(res, key, value);
  }
  const cookies = from.getSetCookie();
  if (cookies.length > 0) setHeader(res, "set-cookie", cookies);
}

// ---------------------------------------------------------------- response

function setHeader(res: RestResponse, name: string, value: string | string[]): void {
  if (res.headersSent) return;
  // HTTP/2 forbids connection-specific headers; one from a handler must not crash the response.
  if (res instanceof http2.Http2ServerResponse && (name === "connection" || name === "keep-alive")) return;
  res.setHeader(name, value);
}

function writeJson(res: RestResponse, status: number, body: JsonValue): void {
  writeJsonText(res, status, JSON.stringify(body));
}

function writeJsonText(res: RestResponse, status: number, text: string): void {
  res.statusCode = status;
  setHeader(res, "content-type", "application/json; charset=utf-8");
  setHeader(res, "content-length", String(Buffer.byteLength(text)));
  res.end(text);
}

