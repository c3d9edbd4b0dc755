/**
 * The proxy an environment build's sandbox reaches its package sources through (src/node-agent/build-proxy.ts),
 * spoken to over its Unix socket as the sandbox's forwarder does: real listeners on 127.0.0.1 stand for
 * the owner's index and for a host the build must not reach.
 */
import assert from "node:assert/strict";
import { once } from "node:events";
import { mkdtemp, rm } from "node:fs/promises";
import http from "node:http";
import net from "node:net";
import type { AddressInfo } from "node:net";
import os from "node:os";
import path from "node:path";
import { allowedHostOrigin, originOf, startBuildProxy } from "../../src/node-agent/build-proxy.ts";
import type { BuildProxy, BuildProxyLimits } from "../../src/node-agent/build-proxy.ts";
import type { AgentLogger } from "../../src/node-agent/logger.ts";
import { sourceOrigins } from "../../src/node-agent/python-envs.ts";

/** What a proxy logged at warn level. */
interface Warnings {
  logger: AgentLogger;
  lines: { obj: object; msg: string | undefined }[];
}

function recordingLogger(): Warnings {
  const lines: Warnings["lines"] = [];
  const ignore = () => {};
  return { lines, logger: { debug: ignore, info: ignore, error: ignore, warn: (obj, msg) => void lines.push({ obj, msg }) } };
}

/** An HTTP server on 127.0.0.1 answering every GET with `body`. */
async function startOrigin(body: Buffer): Promise<{ origin: string; requests: string[]; server: http.Server }> {
  const requests: string[] = [];
  const server = http.createServer((req, res) => {
    requests.push(`${req.method} ${req.url}`);
    res.writeHead(200, { "content-length": body.length }).end(body);
  });
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  return { origin: `127.0.0.1:${(server.address() as AddressInfo).port}`, requests, server };
}

/** A TCP server on 127.0.0.1 that echoes what it reads. */
async function startEcho(): Promise<{ origin: string; server: net.Server }> {
  const server = net.createServer((socket) => socket.pipe(socket));
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  return { origin: `127.0.0.1:${(server.address() as AddressInfo).port}`, server };
}

/**
 * Sends CONNECT for `target` over the proxy's socket, as the forwarder relays pip's; the status line's code,
 * the body of a refusal, and the tunnel when it opened. A connection the proxy drops unanswered is status 0.
 */
async function connectThrough(socketPath: string, target: string): Promise<{ status: number; body: string; tunnel: net.Socket | undefined }> {
  const socket = net.connect(socketPath);
  socket.on("error", () => {});
  socket.write(`CONNECT ${target} HTTP/1.1\r\nhost: ${target}\r\n\r\n`);
  let received = "";
  // events.once would reject on the EPIPE of a dropped connection: plain listeners instead.
  const closed = new Promise<undefined>((resolve) => socket.once("close", () => resolve(undefined)));
  while (!received.includes("\r\n\r\n")) {
    const chunk = await Promise.race([new Promise<string>((resolve) => socket.once("data", (c) => resolve(String(c)))), closed]);
    if (chunk === undefined) return { status: 0, body: received, tunnel: undefined };
    received += chunk;
  }
  const status = Number(/^HTTP\/1\.1 (\d{3}) /.exec(received)?.[1] ?? 0);
  if (status === 200) return { status, body: "", tunnel: socket };
  socket.on("data", (chunk) => (received += String(chunk)));
  await closed;
  return { status, body: received.slice(received.indexOf("\r\n\r\n") + 4), tunnel: undefined };
}

/** Sends `method url` (absolute URI) over the proxy's socket. */
async function requestThrough(socketPath: string, method: string, url: string): Promise<{ status: number; body: Buffer }> {
  const req = http.request({ socketPath, method, path: url, agent: false });
  req.end();
  const [res] = (await once(req, "response")) as [http.IncomingMessage];
  const chunks: Buffer[] = [];
  for await (const chunk of res) chunks.push(chunk as Buffer);
  return { status: res.statusCode ?? 0, body: Buffer.concat(chunks) };
}

/** Writes `text` into a tunnel and reads as many bytes back. */
async function echoThrough(tunnel: net.Socket, text: string): Promise<string> {
  tunnel.write(text);
  let got = "";
  while (got.length < text.length) got += String((await once(tunnel, "data"))[0]);
  return got;
}

describe("build proxy: an environment build reaches its package sources and nothing else", function () {
  this.timeout(20_000);

  let dir: string;
  let socketPath: string;
  let warnings: Warnings;
  let proxy: BuildProxy | undefined;
  const servers: (net.Server | http.Server)[] = [];

  const start = async (allowed: string[], limits?: Partial<BuildProxyLimits>) => {
    proxy = await startBuildProxy({
      socketPath,
      allowed,
      logger: warnings.logger,
      label: "test-build",
      limits: { maxConnections: 16, maxBytes: 1024 ** 2, idleMs: 10_000, ...limits },
    });
    return proxy;
  };
  const origin = async (body = Buffer.from("index page")) => {
    const o = await startOrigin(body);
    servers.push(o.server);
    return o;
  };
  const echo = async () => {
    const e = await startEcho();
    servers.push(e.server);
    return e;
  };

  beforeEach(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), "build-proxy-"));
    socketPath = path.join(dir, "proxy.sock");
    warnings = recordingLogger();
  });
  afterEach(async () => {
    await proxy?.close();
    proxy = undefined;
    for (const server of servers.splice(0)) {
      if (server instanceof http.Server) server.closeAllConnections();
      server.close();
    }
    await rm(dir, { recursive: true, force: true });
  });

  it("tunnels CONNECT to an allowed origin (https), both ways", async () => {
    const source = await echo();
    await start([source.origin]);
    const { status, tunnel } = await connectThrough(socketPath, source.origin);
    assert.equal(status, 200);
    assert.equal(await echoThrough(tunnel as net.Socket, "hello through the tunnel"), "hello through the tunnel");
    tunnel?.destroy();
    assert.deepEqual(proxy?.refused(), []);
  });

  it("answers CONNECT to any other host:port with 403, names it and logs it", async () => {
    const source = await echo();
    const other = await echo();
    await start([source.origin]);
    const { status, body, tunnel } = await connectThrough(socketPath, other.origin);
    assert.equal(status, 403);
    assert.equal(tunnel, undefined);
    assert.equal(body, `${other.origin} is not among this node's package sources\n`);
    assert.deepEqual(proxy?.refused(), [other.origin]);
    assert.deepEqual(warnings.lines, [
      { obj: { build: "test-build", origin: other.origin, request: `CONNECT ${other.origin}` }, msg: "build proxy refused a connection outside the package sources (an index serving its files from this host needs --pip-allow-host)" },
    ]);
  });

  it("answers CONNECT to an allowed origin that does not answer with 502", async () => {
    const gone = await echo();
    gone.server.close();
    await once(gone.server, "close");
    await start([gone.origin]);
    const { status, body } = await connectThrough(socketPath, gone.origin);
    assert.deepEqual({ status, body }, { status: 502, body: `${gone.origin} did not answer\n` });
  });

  it("relays an absolute-URI GET to an allowed http origin", async () => {
    const index = await origin(Buffer.from("<a href='/files/x.whl'>x</a>"));
    await start([index.origin]);
    const { status, body } = await requestThrough(socketPath, "GET", `http://${index.origin}/simple/x/`);
    assert.equal(status, 200);
    assert.equal(body.toString(), "<a href='/files/x.whl'>x</a>");
    assert.deepEqual(index.requests, ["GET /simple/x/"]);
  });

  const refusedRequests: { name: string; method: string; url: (allowed: string, other: string) => string; refused: (allowed: string, other: string) => string[] }[] = [
    { name: "a GET to another origin", method: "GET", url: (_a, other) => `http://${other}/files/x.whl`, refused: (_a, other) => [other] },
    { name: "a POST, even to the index", method: "POST", url: (allowed) => `http://${allowed}/simple/`, refused: () => [] },
    { name: "an https URL asked in plain text (TLS must stay end to end)", method: "GET", url: (allowed) => `https://${allowed}/simple/`, refused: () => [] },
    { name: "a request that is not an absolute URI", method: "GET", url: () => "/simple/", refused: () => [] },
  ];
  for (const r of refusedRequests) {
    it(`answers ${r.name} with 403 and reaches nothing`, async () => {
      const index = await origin();
      const other = await origin();
      await start([index.origin]);
      const { status } = await requestThrough(socketPath, r.method, r.url(index.origin, other.origin));
      assert.equal(status, 403);
      assert.deepEqual({ index: index.requests, other: other.requests }, { index: [], other: [] });
      assert.deepEqual(proxy?.refused(), r.refused(index.origin, other.origin));
      assert.equal(warnings.lines.length, 1);
    });
  }

  it("holds at most maxConnections connections: one more is dropped unanswered while they are open", async () => {
    const source = await echo();
    await start([source.origin], { maxConnections: 2 });
    const open = [await connectThrough(socketPath, source.origin), await connectThrough(socketPath, source.origin)];
    assert.deepEqual(
      open.map((o) => o.status),
      [200, 200],
    );
    const extra = await connectThrough(socketPath, source.origin);
    assert.deepEqual(extra, { status: 0, body: "", tunnel: undefined });
    assert.ok(warnings.lines.some((l) => l.msg === "build proxy dropped a connection over its bound"));
    for (const o of open) o.tunnel?.destroy();
  });

  it("cuts every connection past maxBytes, says why, and relays nothing more", async () => {
    const index = await origin(Buffer.alloc(64 * 1024, 0x61));
    await start([index.origin], { maxBytes: 16 * 1024 });
    await assert.rejects(requestThrough(socketPath, "GET", `http://${index.origin}/files/big.whl`));
    assert.match(proxy?.limitReached() ?? "", /^the build transferred more than 16 KiB, this node's bound for one environment$/);
    const after = await requestThrough(socketPath, "GET", `http://${index.origin}/simple/`);
    assert.equal(after.status, 403);
    assert.equal(index.requests.length, 1);
  });

  it("ends open tunnels when it closes, and stops listening", async () => {
    const source = await echo();
    const started = await start([source.origin]);
    const { tunnel } = await connectThrough(socketPath, source.origin);
    const closed = once(tunnel as net.Socket, "close");
    await started.close();
    await closed;
    const late = net.connect(socketPath);
    const [err] = (await once(late, "error")) as [NodeJS.ErrnoException];
    assert.ok(err.code === "ENOENT" || err.code === "ECONNREFUSED", err.code);
  });

  it("refuses to start on a socket path longer than Linux allows, saying how to fix it", async () => {
    await assert.rejects(
      startBuildProxy({ socketPath: path.join(dir, "x".repeat(120)), allowed: [], logger: warnings.logger, label: "test-build" }),
      /socket path is longer than 107 bytes \(a shorter --data-dir fixes it\)/,
    );
  });
});

describe("build proxy: which origins a build may reach", () => {
  const urls: { url: string; origin: string | undefined }[] = [
    { url: "https://pypi.org/simple", origin: "pypi.org:443" },
    { url: "http://127.0.0.1:8080/simple/", origin: "127.0.0.1:8080" },
    { url: "http://Mirror.Example/simple/", origin: "mirror.example:80" },
    { url: "https://user:secret@index.example:8443/simple/", origin: "index.example:8443" },
    { url: "http://[::1]:3141/root/pypi/", origin: "[::1]:3141" },
    { url: "/srv/wheels", origin: undefined },
    { url: "file:///srv/wheels", origin: undefined },
  ];
  for (const u of urls) {
    it(`${u.url} is ${u.origin ?? "no origin"}`, () => assert.equal(originOf(u.url), u.origin));
  }

  const hosts: { value: string; origin: string | undefined }[] = [
    { value: "files.example.org", origin: "files.example.org:443" },
    { value: "Files.Example.org:8443", origin: "files.example.org:8443" },
    { value: "10.0.0.5:8080", origin: "10.0.0.5:8080" },
    { value: "[::1]:3141", origin: "[::1]:3141" },
    { value: "https://files.example.org", origin: undefined },
    { value: "files.example.org/path", origin: undefined },
    { value: "user@files.example.org", origin: undefined },
    { value: "files.example.org:0", origin: undefined },
    { value: "files.example.org:99999", origin: undefined },
    { value: "", origin: undefined },
  ];
  for (const h of hosts) {
    it(`--pip-allow-host ${JSON.stringify(h.value)} allows ${h.origin ?? "nothing (refused)"}`, () => assert.equal(allowedHostOrigin(h.value), h.origin));
  }

  const sources: { name: string; indexUrl?: string; findLinks: string[]; allowedHosts?: string[]; origins: string[] }[] = [
    { name: "no index and wheelhouse directories: none", findLinks: ["/srv/wheels"], origins: [] },
    { name: "the owner's index: its origin only", indexUrl: "http://127.0.0.1:8080/simple/", findLinks: ["/srv/wheels"], origins: ["127.0.0.1:8080"] },
    { name: "PyPI: its origin and its file host", indexUrl: "https://pypi.org/simple", findLinks: [], origins: ["pypi.org:443", "files.pythonhosted.org:443"] },
    { name: "find-links given as a URL: its origin too", indexUrl: "https://index.example/simple", findLinks: ["https://wheels.example/cu121/"], origins: ["index.example:443", "wheels.example:443"] },
    {
      name: "an index serving its files from another host: that host once the owner allows it (--pip-allow-host)",
      indexUrl: "https://index.example/simple",
      findLinks: [],
      allowedHosts: ["cdn.example:443", "index.example:443"],
      origins: ["index.example:443", "cdn.example:443"],
    },
  ];
  for (const s of sources) {
    it(s.name, () =>
      assert.deepEqual(
        sourceOrigins({ ...(s.indexUrl !== undefined ? { indexUrl: s.indexUrl } : {}), findLinks: s.findLinks, ...(s.allowedHosts !== undefined ? { allowedHosts: s.allowedHosts } : {}) }),
        s.origins,
      ));
  }
});
