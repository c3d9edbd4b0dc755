/**
 * The only way out of an environment build's sandbox: its package sources, and nothing else.
 *
 * bubblewrap can give a sandbox the host's whole network or a namespace of its own with loopback only;
 * nothing in between. So a build that must reach the owner's index keeps its own namespace, and the agent
 * serves, for that build only, an HTTP proxy on a Unix socket in a directory bound into the sandbox:
 *
 *   pip ──http(s)_proxy──▶ 127.0.0.1:3128 (forwarder, inside) ──Unix socket──▶ agent's proxy ──▶ index
 *
 * - the forwarder ({@link FORWARDER_PY}) is a short stdlib Python script run with the unit interpreter
 *   (`-I`): it listens on the sandbox's own loopback, starts the build command with the proxy variables,
 *   relays each connection to the socket, and exits with the command's status;
 * - the proxy allows `CONNECT host:port` (https) and absolute-URI `GET`/`HEAD` (http) to the origins of the
 *   configured sources only, and answers 403 to anything else, logging it and remembering the origin so
 *   that the build's failure can name it;
 * - it bounds the build: {@link DEFAULT_BUILD_PROXY_LIMITS} concurrent connections, bytes relayed, idle
 *   time per connection; past the byte bound every connection is cut;
 * - it closes, with every connection, when the build command ends.
 *
 * A TCP listener inside the sandbox is needed because pip (requests/urllib3) speaks to proxies over TCP
 * only; socat would do the relaying but is not part of a minimal Debian, Python always is.
 */
import { chmod, chown, mkdir, rm, writeFile } from "node:fs/promises";
import http from "node:http";
import type { IncomingHttpHeaders } from "node:http";
import net from "node:net";
import type { Duplex } from "node:stream";
import path from "node:path";
import type { AgentLogger } from "./logger.ts";

/** Where the proxy's directory (socket and forwarder) appears inside the build's sandbox. */
export const BUILD_PROXY_MOUNT = "/run/gpu-agent-build-proxy";
/** The forwarder's port on the sandbox's own loopback (nothing else listens in a fresh namespace). */
export const BUILD_PROXY_PORT = 3128;
/** Longest Unix socket path Linux accepts (`sun_path` is 108 bytes with its terminating NUL). */
const MAX_SOCKET_PATH = 107;
const SOCKET_NAME = "proxy.sock";
const FORWARDER_NAME = "forward.py";

/** What one build's proxy allows itself. */
export interface BuildProxyLimits {
  /** Connections open at once (pip opens a few). */
  maxConnections: number;
  /** Bytes relayed in both directions over the whole build. */
  maxBytes: number;
  /** A connection with no traffic for this long is closed. */
  idleMs: number;
}

/** 16 connections, 16 GiB (a CUDA build of PyTorch with its NVIDIA wheels is a few GiB), 2 minutes idle. */
export const DEFAULT_BUILD_PROXY_LIMITS: BuildProxyLimits = { maxConnections: 16, maxBytes: 16 * 1024 ** 3, idleMs: 120_000 };

/** `host:port` of an http(s) URL (default ports filled in, host lower-cased), or undefined for anything else. */
export function originOf(url: string): string | undefined {
  const parsed = parseUrl(url);
  if (parsed === undefined) return undefined;
  const defaultPort = parsed.protocol === "https:" ? "443" : parsed.protocol === "http:" ? "80" : undefined;
  if (defaultPort === undefined || parsed.hostname === "") return undefined;
  return `${parsed.hostname.toLowerCase()}:${parsed.port === "" ? defaultPort : parsed.port}`;
}

/**
 * The origin an owner allows by name (`--pip-allow-host`): `host` means `host:443` (pip fetches over https),
 * `host:port` that port; undefined for anything else (a URL, a path, a user, spaces).
 */
export function allowedHostOrigin(value: string): string | undefined {
  if (!/^(?:[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?|\[[0-9A-Fa-f:.]+\])(?::\d{1,5})?$/.test(value)) return undefined;
  const origin = originOf(`https://${value}`);
  return origin !== undefined && Number(origin.slice(origin.lastIndexOf(":") + 1)) > 0 ? origin : undefined;
}

/** `host:port` of a CONNECT request's target (`[::1]:443` keeps its brackets), or undefined when it has no port. */
function connectTarget(authority: string): { origin: string; host: string; port: number } | undefined {
  const match = /^(\[[0-9a-fA-F:.]+\]|[^:[\]\s/]+):(\d{1,5})$/.exec(authority);
  if (match === null) return undefined;
  const host = (match[1] as string).toLowerCase();
  const port = Number(match[2]);
  if (port < 1 || port > 65535) return undefined;
  return { origin: `${host}:${port}`, host: host.replace(/^\[|\]$/g, ""), port };
}

/** Options of startBuildProxy. */
export interface BuildProxyOptions {
  /** The Unix socket it listens on (at most 107 bytes). */
  socketPath: string;
  /** `host:port` origins it relays to ({@link originOf}); everything else is refused. */
  allowed: readonly string[];
  logger: AgentLogger;
  /** Named in its log lines (the build's directory name). */
  label: string;
  limits?: BuildProxyLimits;
}

/** One build's proxy. */
export interface BuildProxy {
  /** Origins it refused, each once, in order. */
  refused(): string[];
  /** Why it cut the build's connections (a bound reached), or undefined. */
  limitReached(): string | undefined;
  /** Stops listening and cuts every connection. */
  close(): Promise<void>;
}

/** Hop-by-hop headers (RFC 9110 §7.6.1) and the proxy's own: never passed on. */
const HOP_HEADERS = new Set(["connection", "keep-alive", "proxy-connection", "proxy-authenticate", "proxy-authorization", "te", "trailer", "transfer-encoding", "upgrade"]);

/** 16 GiB, 512 MiB, 2048 bytes. */
function bytesText(bytes: number): string {
  for (const [unit, size] of [["GiB", 1024 ** 3], ["MiB", 1024 ** 2], ["KiB", 1024]] as const) {
    if (bytes >= size && bytes % size === 0) return `${bytes / size} ${unit}`;
  }
  return `${bytes} bytes`;
}

/** An absolute URL, or undefined. */
function parseUrl(text: string): URL | undefined {
  try {
    return new URL(text);
  } catch {
    return undefined;
  }
}

function endToEnd(headers: IncomingHttpHeaders): IncomingHttpHeaders {
  return Object.fromEntries(Object.entries(headers).filter(([name]) => !HOP_HEADERS.has(name)));
}

/**
 * Starts a proxy that relays to `allowed` only.
 * @throws Error when the socket path is too long or cannot be listened on
 */
export async function startBuildProxy(opts: BuildProxyOptions): Promise<BuildProxy> {
  if (Buffer.byteLength(opts.socketPath) > MAX_SOCKET_PATH) {
    throw new Error(`the build proxy's socket path is longer than ${MAX_SOCKET_PATH} bytes (a shorter --data-dir fixes it)`);
  }
  const limits = opts.limits ?? DEFAULT_BUILD_PROXY_LIMITS;
  const allowed = new Set(opts.allowed.map((o) => o.toLowerCase()));
  const refused: string[] = [];
  const sockets = new Set<Duplex>();
  let relayed = 0;
  let limit: string | undefined;

  const track = (socket: Duplex) => {
    sockets.add(socket);
    socket.once("close", () => sockets.delete(socket));
  };
  const refuse = (origin: string, how: string) => {
    if (!refused.includes(origin)) refused.push(origin);
    opts.logger.warn({ build: opts.label, origin, request: how }, "build proxy refused a connection outside the package sources (an index serving its files from this host needs --pip-allow-host)");
  };
  /** Counts bytes relayed; past the bound every connection is cut. */
  const count = (bytes: number) => {
    relayed += bytes;
    if (relayed <= limits.maxBytes || limit !== undefined) return;
    limit = `the build transferred more than ${bytesText(limits.maxBytes)}, this node's bound for one environment`;
    opts.logger.warn({ build: opts.label, bytes: relayed }, "build proxy cut the build at its byte bound");
    for (const socket of sockets) socket.destroy();
  };
  const counted = (socket: Duplex) => socket.on("data", (chunk: Buffer) => count(chunk.length));

  const forbid = (res: http.ServerResponse, body: string) => res.writeHead(403, { "content-type": "text/plain", connection: "close" }).end(body);
  const server = http.createServer((req, res) => {
    const url = parseUrl(req.url ?? "");
    const origin = url === undefined ? undefined : originOf(url.href);
    if (limit !== undefined) return void forbid(res, `${limit}\n`);
    // Only plain-http absolute URIs: an https URL comes through CONNECT, so TLS stays end to end.
    if (url === undefined || origin === undefined || url.protocol !== "http:" || (req.method !== "GET" && req.method !== "HEAD")) {
      opts.logger.warn({ build: opts.label, request: `${req.method} ${String(req.url)}` }, "build proxy refused a request it does not relay");
      return void forbid(res, "only CONNECT (https) and GET or HEAD of an absolute http URL are relayed\n");
    }
    if (!allowed.has(origin)) {
      refuse(origin, `${req.method} ${url.href}`);
      return void forbid(res, `${origin} is not among this node's package sources\n`);
    }
    const port = Number(origin.slice(origin.lastIndexOf(":") + 1));
    const upstream = http.request(
      { host: url.hostname.replace(/^\[|\]$/g, ""), port, method: req.method, path: `${url.pathname}${url.search}`, headers: endToEnd(req.headers), agent: false },
      (answer) => {
        res.writeHead(answer.statusCode ?? 502, endToEnd(answer.headers));
        answer.on("data", (chunk: Buffer) => count(chunk.length));
        answer.pipe(res);
      },
    );
    upstream.on("socket", track);
    upstream.setTimeout(limits.idleMs, () => upstream.destroy());
    upstream.on("error", () => (res.headersSent ? res.destroy() : res.writeHead(502, { connection: "close" }).end()));
    res.on("close", () => upstream.destroy());
    req.pipe(upstream);
  });
  server.maxConnections = limits.maxConnections;
  server.on("drop", () => opts.logger.warn({ build: opts.label, max_connections: limits.maxConnections }, "build proxy dropped a connection over its bound"));
  server.on("connection", (socket: net.Socket) => {
    track(socket);
    socket.setTimeout(limits.idleMs, () => socket.destroy());
  });
  server.on("connect", (req: http.IncomingMessage, client: Duplex, head: Buffer) => {
    const answer = (status: string, body: string) =>
      client.end(`HTTP/1.1 ${status}\r\ncontent-type: text/plain\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`);
    const target = connectTarget(req.url ?? "");
    if (limit !== undefined) return answer("403 Forbidden", `${limit}\n`);
    if (target === undefined) return answer("400 Bad Request", "CONNECT needs host:port\n");
    if (!allowed.has(target.origin)) {
      refuse(target.origin, `CONNECT ${target.origin}`);
      return answer("403 Forbidden", `${target.origin} is not among this node's package sources\n`);
    }
    const upstream = net.connect({ host: target.host, port: target.port });
    track(upstream);
    upstream.setTimeout(limits.idleMs, () => upstream.destroy());
    let connected = false;
    upstream.once("connect", () => {
      connected = true;
      client.write("HTTP/1.1 200 Connection Established\r\n\r\n");
      if (head.length > 0) {
        count(head.length);
        upstream.write(head);
      }
      counted(client).pipe(upstream);
      counted(upstream).pipe(client);
    });
    // The pipes end each side in turn; an error, or the client gone, ends both at once.
    upstream.once("error", () => (connected ? client.destroy() : answer("502 Bad Gateway", `${target.origin} did not answer\n`)));
    client.once("error", () => upstream.destroy());
    client.once("close", () => upstream.destroy());
  });

  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(opts.socketPath, () => {
      server.off("error", reject);
      resolve();
    });
  });
  return {
    refused: () => [...refused],
    limitReached: () => limit,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        for (const socket of sockets) socket.destroy();
      }),
  };
}

/**
 * Runs in the build's sandbox, with the unit interpreter (`python -I forward.py <socket> <port> -- <command…>`):
 * listens on 127.0.0.1:<port> of the sandbox's own loopback, relays every connection to the agent's proxy
 * over the bound Unix socket, runs the command with the proxy variables, and exits as the command did.
 */
export const FORWARDER_PY = `import os, socket, subprocess, sys, threading

unix_path, port, command = sys.argv[1], int(sys.argv[2]), sys.argv[4:]

def pump(source, sink):
    try:
        while True:
            data = source.recv(65536)
            if not data:
                break
            sink.sendall(data)
    except OSError:
        pass
    finally:
        try:
            sink.shutdown(socket.SHUT_WR)
        except OSError:
            pass

def relay(client):
    upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        upstream.connect(unix_path)
    except OSError:
        client.close()
        upstream.close()
        return
    back = threading.Thread(target=pump, args=(upstream, client), daemon=True)
    back.start()
    pump(client, upstream)
    back.join()
    client.close()
    upstream.close()

def accept(listener):
    while True:
        client, _ = listener.accept()
        threading.Thread(target=relay, args=(client,), daemon=True).start()

listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
listener.bind(("127.0.0.1", port))
listener.listen(64)
threading.Thread(target=accept, args=(listener,), daemon=True).start()
proxy = "http://127.0.0.1:%d" % port
env = dict(os.environ, http_proxy=proxy, https_proxy=proxy, HTTP_PROXY=proxy, HTTPS_PROXY=proxy)
env.pop("no_proxy", None)
env.pop("NO_PROXY", None)
code = subprocess.call(command, env=env)
sys.exit(code if code >= 0 else 128 - code)
`;

/** What a sandboxed build needs to reach its sources through a proxy. */
export interface BuildNetwork {
  /** The directory to bind read-only at {@link BUILD_PROXY_MOUNT}. */
  dir: string;
  /** The build command wrapped in the forwarder, run with `python` (the unit interpreter). */
  wrap(python: string, command: string, args: readonly string[]): { command: string; args: string[] };
  proxy: BuildProxy;
  /** Closes the proxy and removes its directory. */
  close(): Promise<void>;
}

/** Options of openBuildNetwork. */
export interface BuildNetworkOptions {
  /** A new directory for the socket and the forwarder (its path short enough for a socket below it). */
  dir: string;
  allowed: readonly string[];
  /** The sandbox's user, as seen from the host; undefined when the agent is not root (the user is then the agent's). */
  uid: number | undefined;
  logger: AgentLogger;
  limits?: BuildProxyLimits;
}

/**
 * Makes the directory a build's sandbox reaches its sources through: the forwarder (read-only) and the
 * proxy's socket, which only the build's user may use.
 */
export async function openBuildNetwork(opts: BuildNetworkOptions): Promise<BuildNetwork> {
  // Not recursive, and nothing removed first: a directory of that name is another build's.
  await mkdir(opts.dir, { mode: 0o700 });
  try {
    await writeFile(path.join(opts.dir, FORWARDER_NAME), FORWARDER_PY, { mode: 0o444 });
    const socketPath = path.join(opts.dir, SOCKET_NAME);
    const proxy = await startBuildProxy({ socketPath, allowed: opts.allowed, logger: opts.logger, label: path.basename(opts.dir), ...(opts.limits !== undefined ? { limits: opts.limits } : {}) });
    await chmod(socketPath, 0o600);
    // The build's user alone may enter the directory and use the socket; the sandbox binds it read-only.
    if (opts.uid !== undefined) {
      await chown(socketPath, opts.uid, opts.uid);
      await chown(opts.dir, opts.uid, opts.uid);
    }
    return {
      dir: opts.dir,
      wrap: (python, command, args) => ({
        command: python,
        args: ["-I", `${BUILD_PROXY_MOUNT}/${FORWARDER_NAME}`, `${BUILD_PROXY_MOUNT}/${SOCKET_NAME}`, String(BUILD_PROXY_PORT), "--", command, ...args],
      }),
      proxy,
      close: async () => {
        await proxy.close();
        await rm(opts.dir, { recursive: true, force: true });
      },
    };
  } catch (err) {
    await rm(opts.dir, { recursive: true, force: true });
    throw err;
  }
}
