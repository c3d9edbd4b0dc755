/**
 * The one public port: HTTP/1.1 (REST, Connect, gRPC-Web, health, metrics,
 * signed blob URLs) and cleartext HTTP/2 with prior knowledge (gRPC, Connect).
 *
 * Without TLS there is no ALPN, and `http2.createServer({allowHTTP1: true})`
 * only falls back to HTTP/1.1 after ALPN, so a plain `net` server reads the
 * first bytes of each connection: the HTTP/2 client preface
 * (`PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n`) sends the socket to an http2 server,
 * anything else to an http1 server. Neither of those listens itself.
 *
 * With `tls` the port speaks TLS instead, and ALPN picks the protocol: `h2`
 * (gRPC, Connect) or `http/1.1` (everything else), both from one
 * `http2.createSecureServer({allowHTTP1: true})`; mutual TLS is optional.
 *
 * Both use one adapter (rpc-adapter.ts): RPC paths go to the Connect router,
 * with each request message bounded after decompression; the rest falls back,
 * in order, to /healthz, /readyz, /metrics, the raw `httpRoutes`, the REST
 * transcoder, and finally a 404 envelope.
 *
 * Hostile or broken clients are bounded here (values in `transport`,
 * docs/limits.md): connections per client address, the time to the first
 * bytes / request headers / TLS handshake, a request body that stops arriving,
 * HTTP/1.1 keep-alive and HTTP/2 connections without streams, and the HTTP/2
 * streams one connection may hold (fewer once it is an agent's). A response
 * that starts before its request body was read to the end (an early 413, 401,
 * 415) closes its HTTP/1.1 connection (`Connection: close`) or resets its
 * HTTP/2 stream (NO_ERROR) after the answer, so the rest of that body is
 * never read.
 */
import http from "node:http";
import http2 from "node:http2";
import net from "node:net";
import type tls from "node:tls";
import type { ConnectRouter, Interceptor } from "@connectrpc/connect";
import type { Logger } from "pino";
import { createErrorInterceptor } from "../api/connect-errors.ts";
import { ApiError } from "../platform/errors.ts";
import { requestPathname, serverErrorCauseOf, writeApiError } from "../api/rest/transcoder.ts";
import type { RestTranscoder } from "../api/rest/transcoder.ts";
import { AgentService } from "../gen/gpuagent/agent/v1/agent_pb.ts";
import type { TransportConfig } from "../platform/config.ts";
import { defaultTransport } from "../platform/config.ts";
import { monotonicMs } from "../platform/clock.ts";
import { newId } from "../platform/ids.ts";
import type { HttpRoute, RestRequest, RestResponse } from "../platform/http-types.ts";
import { peerAddressHeader } from "../platform/http-types.ts";
import { createRpcAdapter } from "./rpc-adapter.ts";

/** Liveness (the process can serve) and readiness (its dependencies answer). */
export interface HealthChecks {
  live(): boolean;
  ready(): Promise<boolean>;
}

/** TLS for the port (PEM strings or buffers). */
export interface HttpServerTlsOptions {
  readonly cert: string | Buffer;
  readonly key: string | Buffer;
  /** CA bundle: sent along as the chain, and the CAs client certificates must chain to. */
  readonly ca?: string | Buffer;
  /**
   * Mutual TLS: every client must present a certificate that chains to `ca`;
   * others are refused in the handshake. This is for the whole port, so turn
   * it on where every client (agents, customers, probes) holds a certificate.
   */
  readonly requestClientCert?: boolean;
}

/** Options of {@link startHttpServer}. */
export interface HttpServerOptions {
  /** 0 picks a free port (tests). */
  readonly port: number;
  /** Default "0.0.0.0". */
  readonly host?: string;
  /** Registers the Connect services (the same impls the REST transcoder calls). */
  readonly connectRoutes: (router: ConnectRouter) => void;
  /** Router interceptors after the error interceptor, which is always first. */
  readonly interceptors?: ReadonlyArray<Interceptor>;
  readonly rest: RestTranscoder;
  readonly httpRoutes?: ReadonlyArray<HttpRoute>;
  /**
   * Tried before connect-node on every request: returns true when it took the request (it then owns
   * `res`). For gRPC streams whose per-stream cost matters (AgentService.Session).
   */
  readonly grpcStreamRoute?: (req: RestRequest, res: RestResponse) => boolean;
  readonly health: HealthChecks;
  readonly metrics?: () => Promise<{ contentType: string; body: string }>;
  readonly logger: Logger;
  /** How long close() lets in-flight requests finish before cutting them. Default 2000 ms. */
  readonly closeGraceMs?: number;
  /** Serve TLS (h2 and http/1.1 by ALPN) instead of cleartext. */
  readonly tls?: HttpServerTlsOptions;
  /** Called once per finished request (metrics); `path` has no query string. */
  readonly onRequest?: (method: string, path: string, status: number, seconds: number) => void;
  /**
   * Bounds and timeouts (docs/limits.md); each field left out is `defaultTransport`'s. `maxBodyBytes`
   * bounds rpc messages here; REST bodies are bounded by the transcoder, raw routes by themselves.
   */
  readonly transport?: Partial<TransportConfig>;
}

/** A started server. */
export interface HttpServer {
  /** The bound port (the real one when 0 was asked). */
  readonly port: number;
  /** `http://host:port` (`https://` with TLS), with 127.0.0.1 for a wildcard host. */
  readonly url: string;
  /**
   * Stops accepting connections, closes idle keep-alive sockets and HTTP/2
   * sessions at once, lets in-flight requests finish within the grace period,
   * then destroys what is left. Resolves when every socket is gone.
   */
  close(): Promise<void>;
}

const h2Preface = Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
const requestIdPattern = /^[A-Za-z0-9._:-]{1,128}$/;
/** Paths of the agents' rpcs: their connections get `agentMaxConcurrentStreams`. */
const agentPathPrefix = `/${AgentService.typeName}/`;
/** The agent's Session stream: long-lived, quiet between heartbeats, watched by src/agent-streams/ rather than the body timer. */
const agentSessionPath = `/${AgentService.typeName}/${AgentService.method.session.name}`;

/**
 * True while an HTTP/1.1 request's body is still arriving. A request without
 * one is complete from its headers on, though Node marks it `complete` only
 * after the handler that answers it synchronously has run.
 */
function bodyPending(req: http.IncomingMessage): boolean {
  if (req.complete) return false;
  const length = req.headers["content-length"];
  return req.headers["transfer-encoding"] !== undefined || (length !== undefined && Number(length) !== 0);
}

/**
 * An HTTP/1.1 response that closes its connection when it starts before the
 * request body was read to its end (an early 413, 401, 415 …): that body is
 * not read further, so the connection cannot carry another request. (Node
 * would otherwise read and discard the rest, however large, to keep it alive.)
 */
class Http1Response extends http.ServerResponse {
  override writeHead(statusCode: number, ...rest: unknown[]): this {
    if (bodyPending(this.req)) this.shouldKeepAlive = false;
    return Reflect.apply(http.ServerResponse.prototype.writeHead, this, [statusCode, ...rest]) as this;
  }
}

/**
 * How many of something (connections, streams) each client address holds open, within a cap
 * (0: no cap, nothing counted). A held thing counts until it emits "close".
 */
class AddressCounter {
  private readonly open = new Map<string, number>();
  private readonly cap: number;

  constructor(cap: number) {
    this.cap = cap;
  }

  /** Counts `held` against `address` until it closes; false (nothing counted) when the address is at the cap. */
  hold(address: string, held: { once(event: "close", listener: () => void): unknown }): boolean {
    if (this.cap === 0) return true;
    const count = this.open.get(address) ?? 0;
    if (count >= this.cap) return false;
    this.open.set(address, count + 1);
    held.once("close", () => {
      const left = (this.open.get(address) ?? 1) - 1;
      if (left > 0) this.open.set(address, left);
      else this.open.delete(address);
    });
    return true;
  }
}

/**
 * Starts the server and resolves once it listens. Every response carries
 * `x-request-id` (the client's if it looks sane, else a fresh UUID), which is
 * also set on the request so handlers and logs see the same id.
 */
export async function startHttpServer(options: HttpServerOptions): Promise<HttpServer> {
  const { logger, rest, health } = options;
  const httpRoutes = options.httpRoutes ?? [];
  const closeGraceMs = options.closeGraceMs ?? 2000;
  const limits: TransportConfig = { ...defaultTransport, ...options.transport };

  const fallback = async (req: RestRequest, res: RestResponse, requestId: string): Promise<void> => {
    const path = requestPathname(req.url ?? "/");
    const method = (req.method ?? "GET").toUpperCase();
    if (path === "/healthz") {
      const live = health.live();
      return writeJson(res, live ? 200 : 503, { status: live ? "ok" : "not_live" });
    }
    if (path === "/readyz") {
      const ready = await health.ready().catch((error: unknown) => {
        logger.warn({ err: error, request_id: requestId }, "readiness check failed");
        return false;
      });
      return writeJson(res, ready ? 200 : 503, { status: ready ? "ready" : "not_ready" });
    }
    if (path === "/metrics" && options.metrics !== undefined) {
      const m = await options.metrics();
      res.statusCode = 200;
      res.setHeader("content-type", m.contentType);
      res.end(m.body);
      return;
    }
    for (const route of httpRoutes) {
      if (route.method.toUpperCase() !== method) continue;
      const match = path.match(route.pattern);
      if (match !== null) return route.handle(req, res, match, requestId);
    }
    if (await rest.handle(req, res, requestId)) return;
    throw new ApiError("ROUTE_NOT_FOUND", `no route for ${method} ${path}`);
  };

  const adapter = createRpcAdapter({
    routes: options.connectRoutes,
    interceptors: [createErrorInterceptor({ logger }), ...(options.interceptors ?? [])],
    maxMessageBytes: (service) => (service === AgentService.typeName ? limits.maxAgentMessageBytes : limits.maxBodyBytes),
    logger,
    fallback: (req, res) => {
      const requestId = requestIdOf(req);
      // A server error's cause is logged when the response closes (writeApiError records it).
      fallback(req, res, requestId).catch((error: unknown) => writeApiError(res, error, requestId));
    },
  });

  const onRequest = (req: RestRequest, res: RestResponse): void => {
    // Over its address's stream cap, an HTTP/2 stream is refused before anything is set up for it.
    if (req.httpVersionMajor === 2 && !admitStream(req as http2.Http2ServerRequest)) return;
    const started = monotonicMs();
    const requestId = assignRequestId(req);
    res.setHeader("x-request-id", requestId);
    // HTTP/1.1 sockets with a request in flight are busy: close() lets them finish (HTTP/2 closes by session).
    const socket = req.httpVersionMajor === 1 ? (req as http.IncomingMessage).socket : undefined;
    if (socket !== undefined) {
      busy.set(socket, (busy.get(socket) ?? 0) + 1);
      latestRequest.set(socket, req as http.IncomingMessage);
      // The socket's inactivity timer watches the body until it is in (see onHttp1Timeout).
      if (bodyPending(req as http.IncomingMessage)) socket.setTimeout(limits.bodyTimeoutMs);
    } else {
      watchStream(req as http2.Http2ServerRequest);
    }
    // One close listener per request does the bookkeeping, the metric and the log line.
    res.once("close", () => {
      if (socket !== undefined) {
        const n = (busy.get(socket) ?? 1) - 1;
        if (n > 0) busy.set(socket, n);
        else busy.delete(socket);
        if (latestRequest.get(socket) === req) latestRequest.delete(socket);
        if (closing && n <= 0) socket.destroy();
      }
      const seconds = (monotonicMs() - started) / 1000;
      // The path only: query strings carry signatures of signed URLs.
      const url = req.url ?? "/";
      const query = url.indexOf("?");
      const path = query === -1 ? url : url.slice(0, query);
      options.onRequest?.(req.method ?? "GET", path, res.statusCode, seconds);
      // Every server error answered through writeApiError (REST, raw routes, this fallback), with its cause.
      const cause = serverErrorCauseOf(res);
      if (cause !== undefined) logger.error({ err: cause, method: req.method, path, status: res.statusCode, request_id: requestId }, "request failed with a server error");
      // Checked first: the log line's fields are not even gathered at a level that drops it.
      if (!logger.isLevelEnabled("info")) return;
      logger.info(
        {
          method: req.method,
          path,
          status: res.statusCode,
          duration_ms: Math.round(seconds * 10_000) / 10,
          request_id: requestId,
          http_version: req.httpVersion,
          aborted: !res.writableFinished,
        },
        "request",
      );
    });
    // Long-lived gRPC streams served without connect-node's per-stream pipeline (src/server/grpc-session-route.ts).
    if (options.grpcStreamRoute?.(req, res) === true) return;
    adapter(req, res);
  };

  // ---- connection bookkeeping, so close() can finish without waiting on clients
  const sockets = new Set<net.Socket>();
  const busy = new Map<net.Socket, number>();
  /** The newest request of each HTTP/1.1 socket while it is in flight (one at a time without pipelining). */
  const latestRequest = new WeakMap<net.Socket, http.IncomingMessage>();
  const sessions = new Set<http2.ServerHttp2Session>();
  // HTTP/2 sockets close through their session (GOAWAY first), not directly.
  const h2Sockets = new WeakSet<net.Socket>();
  let closing = false;

  // ---- per-address caps
  /** Open connections per client address. */
  const connectionsPerAddress = new AddressCounter(limits.maxConnectionsPerAddress);
  /** Counts the connection against its address, or destroys it when the address is at its cap. */
  const admit = (socket: net.Socket): boolean => {
    const address = socket.remoteAddress ?? "unknown";
    if (connectionsPerAddress.hold(address, socket)) return true;
    logger.debug({ address }, "connection refused: too many from this address");
    socket.destroy();
    return false;
  };
  /**
   * Open HTTP/2 streams per client address, over all its connections: the per-connection
   * stream limit times the connection cap (25,600 waiting requests) is too much for one
   * address to hold. HTTP/1.1 needs no such count: one request at a time per connection.
   */
  const streamsPerAddress = new AddressCounter(limits.maxStreamsPerAddress);
  const admitStream = (req: http2.Http2ServerRequest): boolean => {
    const address = req.socket.remoteAddress ?? "unknown";
    if (streamsPerAddress.hold(address, req.stream)) return true;
    logger.debug({ address }, "stream refused: too many open from this address");
    // REFUSED_STREAM tells the client nothing was processed, so it may retry.
    req.stream.close(http2.constants.NGHTTP2_REFUSED_STREAM);
    return false;
  };

  // ---- timers
  /**
   * An HTTP/1.1 socket's inactivity timer fired: between requests (keep-alive or
   * before the first one) it closes, as Node would; with a request whose body
   * is still arriving, it closes unless the handler is what holds the body back
   * (bytes wait unread). A request whose body is in may take its time.
   */
  const onHttp1Timeout = (target: unknown): void => {
    // The TLS server also reports HTTP/2 sessions here; only sockets are watched.
    if (!(target instanceof net.Socket)) return;
    const req = latestRequest.get(target);
    if (req === undefined || !busy.has(target)) {
      target.destroy();
      return;
    }
    if (!bodyPending(req)) return;
    if (req.readableLength > 0) {
      target.setTimeout(limits.bodyTimeoutMs);
      return;
    }
    logger.info({ request_id: requestIdOf(req), path: requestPathname(req.url ?? "/") }, `request body stalled for ${limits.bodyTimeoutMs} ms; connection closed`);
    target.destroy();
  };

  /**
   * Per HTTP/2 request: a body that stops arriving resets the stream (the agent
   * Session excepted: heartbeats and src/agent-streams/ watch it); an answer that ends
   * before the body did resets the stream with NO_ERROR (RFC 9113 §8.1), so the
   * rest is never read. The first agent rpc on a connection lowers its
   * stream limit.
   */
  const watchStream = (req: http2.Http2ServerRequest): void => {
    const stream = req.stream;
    // rpc paths carry no query: the raw target is compared, without parsing it.
    const target = req.url ?? "/";
    if (target.startsWith(agentPathPrefix)) markAgentSession(stream.session);
    // A request that ended with its headers (GET, HEAD) has no body to watch.
    if (stream.endAfterHeaders) return;
    // JS may have read the end before nghttp2's state says the peer half-closed; either means the body is in.
    const bodyComplete = (): boolean => req.readableEnded || stream.readableEnded || stream.state.remoteClose === 1;
    const discardRest = (): void => {
      if (!stream.closed && !stream.destroyed && !bodyComplete()) stream.close(http2.constants.NGHTTP2_NO_ERROR);
    };
    // Node's compatibility response always ends with trailers (empty without addTrailers): once they are
    // handed to nghttp2 the answer is complete, and a reset queued after them cannot overtake them.
    stream.once("wantTrailers", () => setImmediate(discardRest));
    if (target === agentSessionPath) return;
    stream.setTimeout(limits.bodyTimeoutMs);
    stream.on("timeout", () => {
      if (stream.closed || stream.destroyed) return;
      if (bodyComplete()) {
        stream.setTimeout(0);
        return;
      }
      if (stream.writableFinished) {
        // Answered already: the rest of the body is not wanted.
        discardRest();
        return;
      }
      if (req.readableLength > 0 || stream.readableLength > 0) {
        stream.setTimeout(limits.bodyTimeoutMs);
        return;
      }
      logger.info({ request_id: requestIdOf(req), path: requestPathname(target) }, `request body stalled for ${limits.bodyTimeoutMs} ms; stream reset`);
      stream.close(http2.constants.NGHTTP2_CANCEL);
    });
  };

  const agentSessions = new WeakSet<http2.Http2Session>();
  const markAgentSession = (session: http2.Http2Session | undefined): void => {
    if (session === undefined || agentSessions.has(session) || session.closed || session.destroyed) return;
    agentSessions.add(session);
    if (limits.agentMaxConcurrentStreams !== limits.maxConcurrentStreams) session.settings({ maxConcurrentStreams: limits.agentMaxConcurrentStreams });
  };

  /** Bookkeeping of every HTTP/2 session, and its idle timer: no open stream for `http2IdleTimeoutMs` closes it. */
  const onSession = (session: http2.ServerHttp2Session): void => {
    sessions.add(session);
    let open = 0;
    const idle = setTimeout(() => {
      if (open > 0 || session.closed || session.destroyed) return;
      session.close();
      // A peer that does not read cannot take the GOAWAY; it is cut after the grace.
      setTimeout(() => session.destroy(), closeGraceMs).unref();
    }, limits.http2IdleTimeoutMs);
    idle.unref();
    session.on("stream", (stream: http2.ServerHttp2Stream) => {
      open += 1;
      stream.once("close", () => {
        open -= 1;
        if (open === 0) idle.refresh();
      });
    });
    session.once("close", () => {
      clearTimeout(idle);
      sessions.delete(session);
    });
    if (closing) session.close();
  };

  const http1Options = {
    ServerResponse: Http1Response,
    // Slow-header clients are cut after this; see the "listening" note below.
    headersTimeout: limits.headersTimeoutMs,
    // No whole-request deadline: raw httpRoutes stream large uploads for minutes. A stalled body is cut by onHttp1Timeout.
    requestTimeout: 0,
    keepAliveTimeout: limits.keepAliveTimeoutMs,
    // How often Node looks for connections past headersTimeout (its default, 30 s, would double the bound).
    connectionsCheckingInterval: Math.max(10, Math.min(1000, Math.floor(limits.headersTimeoutMs / 2))),
  };
  const http2Settings = { maxConcurrentStreams: limits.maxConcurrentStreams };

  const http1 = http.createServer(http1Options as http.ServerOptions, onRequest);
  // Node reports an HTTP/1.1 socket's timeout to its server; a listener there decides instead of Node's destroy.
  http1.on("timeout", onHttp1Timeout);
  // Node starts the header/request timeout checks (slowloris protection) and
  // the connection list behind closeIdleConnections() on "listening", which a
  // server fed sockets by another listener never emits; emit it ourselves.
  http1.emit("listening");
  const h2 = http2.createServer({ settings: http2Settings }, onRequest);
  h2.on("session", onSession);
  h2.on("sessionError", (error: Error) => logger.debug({ err: error }, "http2 session error"));

  // TCP_NODELAY as http.createServer sets it on the sockets it accepts (this listener accepts them for it):
  // without it, a response written in more than one segment can wait for the client's delayed ACK.
  const cleartext = (): net.Server => net.createServer({ noDelay: true }, (socket) => {
    if (!admit(socket)) return;
    sockets.add(socket);
    socket.once("close", () => {
      sockets.delete(socket);
      busy.delete(socket);
    });
    // Until the socket is handed over, nobody else listens for its errors.
    const onEarlyError = (error: Error): void => logger.debug({ err: error }, "connection failed before the first request");
    socket.on("error", onEarlyError);
    // A connection that sends nothing is dropped before it is classified. (Its own listener, removed at
    // hand-over: a leftover one would destroy the socket when the HTTP/1.1 body timer fires later.)
    const onSilent = (): void => void socket.destroy();
    socket.setTimeout(limits.headersTimeoutMs);
    socket.once("timeout", onSilent);
    let head = Buffer.alloc(0);
    const onData = (chunk: Buffer): void => {
      head = Buffer.concat([head, chunk]);
      const n = Math.min(head.length, h2Preface.length);
      const isH2 = head.subarray(0, n).equals(h2Preface.subarray(0, n));
      // Wait for more bytes only while they still could be the preface.
      if (isH2 && head.length < h2Preface.length) return;
      socket.off("data", onData);
      socket.off("error", onEarlyError);
      socket.off("timeout", onSilent);
      socket.setTimeout(0);
      socket.pause();
      socket.unshift(head);
      if (isH2) {
        // The HTTP/2 session reads the buffered bytes itself and then consumes
        // the handle natively; resuming the JS stream here would steal frames.
        h2Sockets.add(socket);
        h2.emit("connection", socket);
      } else {
        http1.emit("connection", socket);
        socket.resume();
      }
    };
    socket.on("data", onData);
  });

  const secure = (tlsOptions: HttpServerTlsOptions): net.Server => {
    const mutual = tlsOptions.requestClientCert === true;
    const server = http2.createSecureServer(
      {
        cert: tlsOptions.cert,
        key: tlsOptions.key,
        ...(tlsOptions.ca === undefined ? {} : { ca: tlsOptions.ca }),
        allowHTTP1: true,
        ALPNProtocols: ["h2", "http/1.1"],
        requestCert: mutual,
        rejectUnauthorized: mutual,
        handshakeTimeout: limits.headersTimeoutMs,
        settings: http2Settings,
        // The HTTP/1.1 side of the port: the same response class and timeouts as cleartext.
        ...http1Options,
        Http1ServerResponse: Http1Response,
      } as http2.SecureServerOptions,
      onRequest,
    );
    // Before the handshake: a refused address costs no TLS work.
    server.prependListener("connection", (socket: net.Socket) => void admit(socket));
    server.on("timeout", onHttp1Timeout);
    server.on("secureConnection", (socket: tls.TLSSocket) => {
      sockets.add(socket);
      socket.once("close", () => {
        sockets.delete(socket);
        busy.delete(socket);
      });
      if (socket.alpnProtocol === "h2") h2Sockets.add(socket);
    });
    server.on("session", onSession);
    server.on("sessionError", (error: Error) => logger.debug({ err: error }, "http2 session error"));
    server.on("tlsClientError", (error: Error) => logger.debug({ err: error }, "TLS handshake failed"));
    // (HTTP/1.1 requests over TLS are counted busy by onRequest, as the cleartext ones.)
    return server;
  };

  const server = options.tls === undefined ? cleartext() : secure(options.tls);

  const host = options.host ?? "0.0.0.0";
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(options.port, host, () => {
      server.off("error", reject);
      resolve();
    });
  });
  const address = server.address();
  if (address === null || typeof address === "string") throw new Error("server has no TCP address");
  const urlHost = host === "0.0.0.0" || host === "::" ? "127.0.0.1" : host.includes(":") ? `[${host}]` : host;
  logger.info({ port: address.port, host }, "http server listening");

  let closed: Promise<void> | undefined;
  const close = (): Promise<void> => {
    closed ??= new Promise<void>((resolve) => {
      closing = true;
      server.close(() => resolve());
      // Stops http1's timeout checker; it never listened, so its "not running" error is expected.
      http1.close(() => undefined);
      // Idle keep-alive sockets and sockets still being classified go now.
      for (const socket of sockets) if (!busy.has(socket) && !h2Sockets.has(socket)) socket.destroy();
      for (const session of sessions) session.close();
      const deadline = setTimeout(() => {
        for (const session of sessions) session.destroy();
        for (const socket of sockets) socket.destroy();
      }, closeGraceMs);
      deadline.unref();
      server.once("close", () => clearTimeout(deadline));
    });
    return closed;
  };

  const scheme = options.tls === undefined ? "http" : "https";
  return { port: address.port, url: `${scheme}://${urlHost}:${address.port}`, close };
}

/** Reuses a sane incoming x-request-id, else mints one, and writes it back onto the request. */
function assignRequestId(req: RestRequest): string {
  const incoming = req.headers["x-request-id"];
  const id = typeof incoming === "string" && requestIdPattern.test(incoming) ? incoming : newId();
  req.headers["x-request-id"] = id;
  // The peer address, for limits on callers without credentials. Always overwritten: a client cannot choose it.
  req.headers[peerAddressHeader] = req.socket.remoteAddress ?? "unknown";
  return id;
}

function requestIdOf(req: RestRequest): string {
  const id = req.headers["x-request-id"];
  return typeof id === "string" ? id : newId();
}

function writeJson(res: RestResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.statusCode = status;
  res.setHeader("content-type", "application/json; charset=utf-8");
  res.setHeader("content-length", String(Buffer.byteLength(text)));
  res.end(text);
}
