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
 * Both use one connect-node adapter: RPC paths go to the Connect router; the
 * rest falls back, in order, to /healthz, /readyz, /metrics, the raw
 * `httpRoutes`, the REST transcoder, and finally a 404 envelope.
 */
import { randomUUID } from "node:crypto";
import http from "node:http";
import http2 from "node:http2";
import net from "node:net";
import type tls from "node:tls";
import type { ConnectRouter, Interceptor } from "@connectrpc/connect";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import type { Logger } from "pino";
import { createErrorInterceptor } from "../api/connect-errors.ts";
import { ApiError } from "../api/errors.ts";
import { requestPathname, writeApiError } from "../api/rest/transcoder.ts";
import type { RestRequest, RestResponse, RestTranscoder } from "../api/rest/transcoder.ts";

/**
 * A raw HTTP route for what must stream or is not an rpc (signed blob upload
 * and download URLs, artifact uploads). `pattern` is tested against the path
 * without the query string.
 */
export interface HttpRoute {
  readonly method: string;
  readonly pattern: RegExp;
  handle(req: RestRequest, res: RestResponse, match: RegExpMatchArray, requestId: string): Promise<void>;
}

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
/** A connection that sends nothing for this long is dropped before it is classified. */
const prefaceTimeoutMs = 30_000;
const requestIdPattern = /^[A-Za-z0-9._:-]{1,128}$/;

/**
 * Starts the server and resolves once it listens. Every response carries
 * `x-request-id` (the client's if it looks sane, else a fresh UUID), which is
 * also set on the request so handlers and logs see the same id.
 */
export async function startHttpServer(options: HttpServerOptions): Promise<HttpServer> {
  const { logger, rest, health } = options;
  const httpRoutes = options.httpRoutes ?? [];
  const closeGraceMs = options.closeGraceMs ?? 2000;

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

  const adapter = connectNodeAdapter({
    routes: options.connectRoutes,
    interceptors: [createErrorInterceptor({ logger }), ...(options.interceptors ?? [])],
    // connect-node's response type only narrows write(); the object is Node's own response.
    fallback: (req, nodeRes) => {
      const res = nodeRes as unknown as RestResponse;
      const requestId = requestIdOf(req);
      fallback(req, res, requestId).catch((error: unknown) => {
        // ApiErrors are answers; anything else is a bug whose cause only the log may see.
        if (!(error instanceof ApiError)) logger.error({ err: error, request_id: requestId }, "request failed");
        writeApiError(res, error, requestId);
      });
    },
  });

  const onRequest = (req: RestRequest, res: RestResponse): void => {
    const started = performance.now();
    const requestId = assignRequestId(req);
    res.setHeader("x-request-id", requestId);
    // HTTP/1.1 sockets with a request in flight are busy: close() lets them finish (HTTP/2 closes by session).
    const socket = req.httpVersionMajor === 1 ? (req as http.IncomingMessage).socket : undefined;
    if (socket !== undefined) busy.set(socket, (busy.get(socket) ?? 0) + 1);
    // One close listener per request does the bookkeeping, the metric and the log line.
    res.once("close", () => {
      if (socket !== undefined) {
        const n = (busy.get(socket) ?? 1) - 1;
        if (n > 0) busy.set(socket, n);
        else busy.delete(socket);
        if (closing && n <= 0) socket.destroy();
      }
      const seconds = (performance.now() - started) / 1000;
      // The path only: query strings carry signatures of signed URLs.
      const url = req.url ?? "/";
      const query = url.indexOf("?");
      const path = query === -1 ? url : url.slice(0, query);
      options.onRequest?.(req.method ?? "GET", path, res.statusCode, seconds);
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
    // Long-lived gRPC streams served without connect-node's per-stream pipeline (src/agents/session-route.ts).
    if (options.grpcStreamRoute?.(req, res) === true) return;
    adapter(req, res);
  };

  // ---- connection bookkeeping, so close() can finish without waiting on clients
  const sockets = new Set<net.Socket>();
  const busy = new Map<net.Socket, number>();
  const sessions = new Set<http2.ServerHttp2Session>();
  // HTTP/2 sockets close through their session (GOAWAY first), not directly.
  const h2Sockets = new WeakSet<net.Socket>();
  let closing = false;

  const http1 = http.createServer(
    {
      // Slow-header clients are cut after this; see the "listening" note below.
      headersTimeout: 30_000,
      // No whole-request deadline: raw httpRoutes stream large uploads for minutes.
      requestTimeout: 0,
    },
    onRequest,
  );
  // Node starts the header/request timeout checks (slowloris protection) and
  // the connection list behind closeIdleConnections() on "listening", which a
  // server fed sockets by another listener never emits; emit it ourselves.
  http1.emit("listening");
  const h2 = http2.createServer({}, onRequest);
  h2.on("session", (session: http2.ServerHttp2Session) => {
    sessions.add(session);
    session.once("close", () => sessions.delete(session));
    if (closing) session.close();
  });
  h2.on("sessionError", (error: Error) => logger.debug({ err: error }, "http2 session error"));

  // TCP_NODELAY as http.createServer sets it on the sockets it accepts (this listener accepts them for it):
  // without it, a response written in more than one segment can wait for the client's delayed ACK.
  const cleartext = (): net.Server => net.createServer({ noDelay: true }, (socket) => {
    sockets.add(socket);
    socket.once("close", () => {
      sockets.delete(socket);
      busy.delete(socket);
    });
    // Until the socket is handed over, nobody else listens for its errors.
    const onEarlyError = (error: Error): void => logger.debug({ err: error }, "connection failed before the first request");
    socket.on("error", onEarlyError);
    socket.setTimeout(prefaceTimeoutMs, () => socket.destroy());
    let head = Buffer.alloc(0);
    const onData = (chunk: Buffer): void => {
      head = Buffer.concat([head, chunk]);
      const n = Math.min(head.length, h2Preface.length);
      const isH2 = head.subarray(0, n).equals(h2Preface.subarray(0, n));
      // Wait for more bytes only while they still could be the preface.
      if (isH2 && head.length < h2Preface.length) return;
      socket.off("data", onData);
      socket.off("error", onEarlyError);
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
      },
      onRequest,
    );
    server.on("secureConnection", (socket: tls.TLSSocket) => {
      sockets.add(socket);
      socket.once("close", () => {
        sockets.delete(socket);
        busy.delete(socket);
      });
      if (socket.alpnProtocol === "h2") h2Sockets.add(socket);
    });
    server.on("session", (session: http2.ServerHttp2Session) => {
      sessions.add(session);
      session.once("close", () => sessions.delete(session));
      if (closing) session.close();
    });
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
  const id = typeof incoming === "string" && requestIdPattern.test(incoming) ? incoming : randomUUID();
  req.headers["x-request-id"] = id;
  // The peer address, for limits on callers without credentials. Always overwritten: a client cannot choose it.
  req.headers[peerAddressHeader] = req.socket.remoteAddress ?? "unknown";
  return id;
}

/** Request header the server sets to the TCP peer's address (never taken from the client). */
export const peerAddressHeader = "x-gpu-agent-peer-address";

function requestIdOf(req: RestRequest): string {
  const id = req.headers["x-request-id"];
  return typeof id === "string" ? id : randomUUID();
}

function writeJson(res: RestResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.statusCode = status;
  res.setHeader("content-type", "application/json; charset=utf-8");
  res.setHeader("content-length", String(Buffer.byteLength(text)));
  res.end(text);
}
