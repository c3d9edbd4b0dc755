/**
 * TLS on the one public port: gRPC over h2 and plain HTTP/1.1 on the same
 * port, chosen by ALPN; the agent's transport trusting a private CA; mutual
 * TLS refusing a client without a certificate. Certificates are made with
 * openssl for each run.
 */
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import https from "node:https";
import { tmpdir } from "node:os";
import { join } from "node:path";
import tls from "node:tls";
import { create } from "@bufbuild/protobuf";
import { createClient } from "@connectrpc/connect";
import { pino } from "pino";
import { controlPlaneTransport } from "../../src/agent/agent.ts";
import { createRestTranscoder } from "../../src/api/rest/transcoder.ts";
import { AgentService, EnrollRequestSchema, EnrollResponseSchema } from "../../src/gen/gpuagent/agent/v1/agent_pb.ts";
import type { HttpServer, HttpServerTlsOptions } from "../../src/server/http-server.ts";
import { startHttpServer } from "../../src/server/http-server.ts";

interface Pki {
  ca: string;
  serverCert: string;
  serverKey: string;
  clientCert: string;
  clientKey: string;
}

/** A CA, a server certificate for 127.0.0.1/localhost and a client certificate, all signed by the CA. */
async function makePki(dir: string): Promise<Pki> {
  const ssl = (...args: string[]) => execFileSync("openssl", args, { cwd: dir, stdio: "pipe" });
  ssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "1", "-subj", "/CN=test-ca");
  for (const [name, ext] of [
    ["server", "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth"],
    ["client", "extendedKeyUsage=clientAuth"],
  ] as const) {
    ssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", `${name}.key`, "-out", `${name}.csr`, "-subj", `/CN=${name}`);
    execFileSync("sh", ["-c", `printf '${ext}\\n' > ${name}.ext`], { cwd: dir });
    ssl("x509", "-req", "-in", `${name}.csr`, "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial", "-out", `${name}.pem`, "-days", "1", "-extfile", `${name}.ext`);
  }
  const read = (f: string) => readFile(join(dir, f), "utf8");
  return { ca: await read("ca.pem"), serverCert: await read("server.pem"), serverKey: await read("server.key"), clientCert: await read("client.pem"), clientKey: await read("client.key") };
}

async function startTlsServer(tlsOptions: HttpServerTlsOptions): Promise<HttpServer> {
  return startHttpServer({
    port: 0,
    host: "127.0.0.1",
    connectRoutes: (router) =>
      router.service(AgentService, {
        enroll: (req) => create(EnrollResponseSchema, { nodeId: `node-for-${req.token}`, nodeCredential: "nc_x", trustLevel: "community" }),
      }),
    rest: createRestTranscoder({ services: [] }),
    health: { live: () => true, ready: async () => true },
    logger: pino({ level: "silent" }),
    tls: tlsOptions,
  });
}

/** GET over HTTP/1.1 (ALPN offers only http/1.1), resolving status, body and the negotiated protocol. */
function getHttp1(url: string, options: https.RequestOptions): Promise<{ status: number; body: string; alpn: string | false | null }> {
  // ALPNProtocols is a tls.connect option that https passes through; RequestOptions does not list it.
  const withAlpn: https.RequestOptions & Pick<tls.ConnectionOptions, "ALPNProtocols"> = { ...options, ALPNProtocols: ["http/1.1"], agent: false };
  return new Promise((resolve, reject) => {
    const req = https.get(url, withAlpn, (res) => {
      let body = "";
      res.setEncoding("utf8");
      res.on("data", (c: string) => (body += c));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, body, alpn: (res.socket as tls.TLSSocket).alpnProtocol }));
    });
    req.on("error", reject);
  });
}

describe("TLS on the public port", function () {
  this.timeout(30_000);
  let dir: string;
  let pki: Pki;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), "gpu-agent-tls-"));
    pki = await makePki(dir);
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it("serves gRPC over h2 to the agent's transport (private CA) and HTTP/1.1 on the same port", async () => {
    const server = await startTlsServer({ cert: pki.serverCert, key: pki.serverKey });
    try {
      assert.match(server.url, /^https:\/\/127\.0\.0\.1:\d+$/);
      const client = createClient(AgentService, controlPlaneTransport(server.url, { ca: pki.ca }));
      const res = await client.enroll(create(EnrollRequestSchema, { token: "t1" }));
      assert.equal(res.nodeId, "node-for-t1");

      const health = await getHttp1(`${server.url}/healthz`, { ca: pki.ca });
      assert.equal(health.status, 200);
      assert.equal(health.alpn, "http/1.1");
      assert.deepEqual(JSON.parse(health.body), { status: "ok" });

      // Without the CA the server's certificate is not trusted.
      const untrusted = createClient(AgentService, controlPlaneTransport(server.url));
      await assert.rejects(untrusted.enroll(create(EnrollRequestSchema, { token: "t2" })));
    } finally {
      await server.close();
    }
  });

  it("with mutual TLS refuses a client without a certificate and serves one with a certificate from the CA", async () => {
    const server = await startTlsServer({ cert: pki.serverCert, key: pki.serverKey, ca: pki.ca, requestClientCert: true });
    try {
      await assert.rejects(getHttp1(`${server.url}/healthz`, { ca: pki.ca }));
      const ok = await getHttp1(`${server.url}/healthz`, { ca: pki.ca, cert: pki.clientCert, key: pki.clientKey });
      assert.equal(ok.status, 200);
    } finally {
      await server.close();
    }
  });
});
