/**
 * TLS on the one public port: gRPC over h2 and plain HTTP/1.1 on the same
 * port, chosen by ALPN; the agent's transport trusting a private CA; mutual
 * TLS refusing a client without a certificate; and a real agent process with
 * a client certificate enrolling, holding its stream and running a job end to
 * end against a control plane that requires mutual TLS (stream, signed-URL
 * downloads and artifact uploads all over it). Certificates are made with
 * openssl for each run.
 */
import assert from "node:assert/strict";
import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { createHash } from "node:crypto";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import https from "node:https";
import { tmpdir } from "node:os";
import { join } from "node:path";
import tls from "node:tls";
import { create } from "@bufbuild/protobuf";
import { createClient } from "@connectrpc/connect";
import { pino } from "pino";
import { controlPlaneTransport } from "../../src/node-agent/agent.ts";
import { createRestTranscoder } from "../../src/api/rest/transcoder.ts";
import { zipDirectory } from "../../src/cli/files.ts";
import type { ControlPlane } from "../../src/control-plane.ts";
import { startControlPlane } from "../../src/control-plane.ts";
import { defaultAgents, defaultLimits, defaultRates } from "../../src/platform/config.ts";
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

const repoRoot = join(import.meta.dirname, "..", "..");
const agentCmd = join(repoRoot, "cmd", "agent.ts");
const example = join(repoRoot, "examples", "tiny-mlp");

type Json = Record<string, unknown>;

/** A request over HTTPS with the test CA and, when given, a client certificate; resolves status and parsed JSON. */
function httpsJson(
  url: string,
  options: { method: string; ca: string; cert?: string; key?: string; headers?: Record<string, string>; body?: Buffer | string },
): Promise<{ status: number; body: Json }> {
  return new Promise((resolve, reject) => {
    const req = https.request(
      url,
      {
        method: options.method,
        ca: options.ca,
        ...(options.cert === undefined ? {} : { cert: options.cert }),
        ...(options.key === undefined ? {} : { key: options.key }),
        headers: { ...options.headers, ...(options.body === undefined ? {} : { "content-length": String(Buffer.byteLength(options.body)) }) },
        agent: false,
      },
      (res) => {
        let text = "";
        res.setEncoding("utf8");
        res.on("data", (c: string) => (text += c));
        res.on("end", () => {
          let body: Json = {};
          try {
            body = text === "" ? {} : (JSON.parse(text) as Json);
          } catch {
            body = { text };
          }
          resolve({ status: res.statusCode ?? 0, body });
        });
      },
    );
    req.on("error", reject);
    req.end(options.body);
  });
}

/** Runs a command to its end; resolves exit code and output (stdout + stderr). */
function runToEnd(child: ChildProcess): Promise<{ code: number | null; output: string }> {
  const chunks: Buffer[] = [];
  child.stdout?.on("data", (c: Buffer) => chunks.push(c));
  child.stderr?.on("data", (c: Buffer) => chunks.push(c));
  return new Promise((resolve) => child.on("exit", (code) => resolve({ code, output: Buffer.concat(chunks).toString("utf8") })));
}

async function waitUntil<T>(what: string, check: () => Promise<T | undefined>, timeoutMs: number, onTimeout: () => string): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}\n${onTimeout()}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

describe("mutual TLS between the control plane and a real agent process", function () {
  this.timeout(180_000);
  let dir: string;
  let pki: Pki;
  let plane: ControlPlane;
  let agentDir: string;
  let agentRun: ChildProcess | undefined;
  let agentOutput = (): string => "";
  const adminToken = "test-admin-token-mtls";

  /** The test process is a client too: every call presents the client certificate. */
  const api = (method: string, path: string, headers: Record<string, string>, body?: unknown) =>
    httpsJson(plane.url + path, {
      method,
      ca: pki.ca,
      cert: pki.clientCert,
      key: pki.clientKey,
      headers: { ...headers, ...(body === undefined ? {} : { "content-type": "application/json" }) },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
  const admin = async (method: string, path: string, body?: unknown): Promise<Json> => {
    const res = await api(method, path, { authorization: `Bearer ${adminToken}` }, body);
    if (res.status >= 300) throw new Error(`${method} ${path} → ${res.status} ${JSON.stringify(res.body)}`);
    return res.body;
  };
  const enrollmentToken = async (): Promise<string> => (await admin("POST", "/api/v1/admin/enrollment-tokens", { trust_level: "controlled" }))["token"] as string;
  const agentEnv = { ...process.env, LOG_LEVEL: "debug", GPU_AGENT_DEV_GPU_MIB: "", GPU_AGENT_CA_FILE: "", GPU_AGENT_CLIENT_CERT: "", GPU_AGENT_CLIENT_KEY: "" };

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), "gpu-agent-mtls-"));
    pki = await makePki(dir);
    agentDir = await mkdtemp(join(tmpdir(), "gpu-agent-mtls-node-"));
    plane = await startControlPlane(
      {
        host: "127.0.0.1",
        port: 0,
        tls: { certFile: join(dir, "server.pem"), keyFile: join(dir, "server.key"), caFile: join(dir, "ca.pem"), requireClientCert: true },
        publicUrl: "https://127.0.0.1:0",
        dataDir: join(dir, "cp"),
        databaseUrl: undefined,
        etcdEndpoints: [],
        replicaId: "test-replica",
        adminToken,
        blobDir: join(dir, "cp", "blobs"),
        placementIntervalMs: 200,
        limits: defaultLimits,
        rates: defaultRates,
        agents: { ...defaultAgents, heartbeatIntervalSeconds: 1 },
        build: "test",
      },
      { logger: pino({ level: process.env["TEST_LOG_LEVEL"] ?? "silent" }) },
    );
  });

  after(async () => {
    if (agentRun !== undefined && agentRun.exitCode === null && agentRun.signalCode === null) {
      const exited = new Promise((resolve) => agentRun?.on("exit", resolve));
      agentRun.kill("SIGTERM");
      await exited;
    }
    await plane?.close();
    await rm(agentDir, { recursive: true, force: true });
    await rm(dir, { recursive: true, force: true });
  });

  it("refuses an agent without a client certificate, and one with only half of the pair", async () => {
    assert.match(plane.url, /^https:\/\/127\.0\.0\.1:\d+$/);
    const token = await enrollmentToken();
    const noCertDir = await mkdtemp(join(tmpdir(), "gpu-agent-mtls-nocert-"));
    try {
      const refused = await runToEnd(
        spawn(process.execPath, [agentCmd, "enroll", "--url", plane.url, "--token", token, "--data-dir", noCertDir, "--dev-gpu", "1024", "--ca", join(dir, "ca.pem")], { env: agentEnv }),
      );
      assert.notEqual(refused.code, 0, refused.output);
      assert.match(refused.output, /gpu-agent failed/);

      const half = await runToEnd(
        spawn(process.execPath, [agentCmd, "enroll", "--url", plane.url, "--token", token, "--data-dir", noCertDir, "--ca", join(dir, "ca.pem"), "--cert", join(dir, "client.pem")], {
          env: agentEnv,
        }),
      );
      assert.notEqual(half.code, 0, half.output);
      assert.match(half.output, /--key \(GPU_AGENT_CLIENT_KEY\) is not/);
    } finally {
      await rm(noCertDir, { recursive: true, force: true });
    }
    // The in-process transport without a certificate is refused as well.
    const bare = createClient(AgentService, controlPlaneTransport(plane.url, { ca: pki.ca }));
    await assert.rejects(bare.enroll(create(EnrollRequestSchema, { token })));
  });

  it("enrolls an agent with a client certificate (flags for enroll, environment for run), holds its stream and completes a job", async () => {
    const token = await enrollmentToken();
    const enroll = await runToEnd(
      spawn(
        process.execPath,
        [agentCmd, "enroll", "--url", plane.url, "--token", token, "--data-dir", agentDir, "--dev-gpu", "24576", "--ca", join(dir, "ca.pem"), "--cert", join(dir, "client.pem"), "--key", join(dir, "client.key")],
        { env: agentEnv },
      ),
    );
    assert.equal(enroll.code, 0, enroll.output);
    const nodeId = (JSON.parse(enroll.output.split("\n").find((l) => l.startsWith('{"node_id"')) ?? "{}") as { node_id?: string }).node_id;
    assert.ok(nodeId, enroll.output);
    // The certificate paths are run-time options: node.json does not hold them.
    const identity = JSON.parse(await readFile(join(agentDir, "node.json"), "utf8")) as Json;
    assert.deepEqual(Object.keys(identity).sort(), ["node_credential", "node_id", "trust_level", "url"]);

    agentRun = spawn(process.execPath, [agentCmd, "run", "--data-dir", agentDir, "--dev-gpu", "24576", "--grace-seconds", "1"], {
      env: { ...agentEnv, GPU_AGENT_CA_FILE: join(dir, "ca.pem"), GPU_AGENT_CLIENT_CERT: join(dir, "client.pem"), GPU_AGENT_CLIENT_KEY: join(dir, "client.key") },
    });
    const chunks: Buffer[] = [];
    agentRun.stdout?.on("data", (c: Buffer) => chunks.push(c));
    agentRun.stderr?.on("data", (c: Buffer) => chunks.push(c));
    agentOutput = () => Buffer.concat(chunks).toString("utf8");

    await waitUntil(
      "the node to come online over its stream",
      async () => (((await admin("GET", "/api/v1/admin/nodes"))["data"] as Json[]).some((n) => n["id"] === nodeId && n["state"] === "online") ? true : undefined),
      30_000,
      agentOutput,
    );

    // A customer, the tiny-mlp example's dataset and package, uploaded over mutual TLS.
    const customer = await admin("POST", "/api/v1/admin/customers", { email: `mtls-${Date.now()}@example.com`, password: "correct horse battery", credits: 10_000 });
    const auth = { "x-api-key": customer["api_key"] as string };
    const upload = async (kind: "datasets" | "training-packages", name: string, bytes: Buffer, extra: Json): Promise<Json> => {
      const sha256 = createHash("sha256").update(bytes).digest("hex");
      const created = await api("POST", `/api/v1/customer/${kind}`, auth, { name, size_bytes: bytes.length, sha256, ...extra });
      assert.equal(created.status, 201, JSON.stringify(created.body));
      const put = await httpsJson(created.body["upload_url"] as string, {
        method: "PUT",
        ca: pki.ca,
        cert: pki.clientCert,
        key: pki.clientKey,
        headers: { "content-type": "application/octet-stream" },
        body: bytes,
      });
      assert.equal(put.status, 200, JSON.stringify(put.body));
      const finalized = await api("POST", `/api/v1/customer/${kind}/${created.body["id"] as string}/finalize`, auth, {});
      assert.equal(finalized.status, 200, JSON.stringify(finalized.body));
      return finalized.body;
    };
    const dataset = await upload("datasets", "tiny-mlp-dataset", await readFile(join(example, "dataset.csv")), { format: "csv" });
    const zipFile = join(dir, "package.zip");
    await zipDirectory(join(example, "package"), zipFile);
    const pkg = await upload("training-packages", "tiny-mlp", await readFile(zipFile), { entrypoint: "train.py" });

    const created = await api("POST", "/api/v1/customer/training-jobs", auth, {
      name: "tiny-mlp-over-mtls",
      dataset_id: dataset["id"],
      training_package_id: pkg["id"],
      required_vram_mb: 8000,
      required_disk_mb: 1024,
      max_runtime_seconds: 600,
      sensitivity: "low_sensitive",
    });
    assert.equal(created.status, 201, JSON.stringify(created.body));
    const jobId = created.body["id"] as string;
    const job = await waitUntil(
      "the job to finish",
      async () => {
        const res = await api("GET", `/api/v1/customer/training-jobs/${jobId}`, auth);
        return ["completed", "failed", "cancelled", "expired"].includes(res.body["status"] as string) ? res.body : undefined;
      },
      150_000,
      agentOutput,
    );
    assert.equal(job["status"], "completed", `job ended ${String(job["status"])}: ${String(job["error"])}\n${agentOutput()}`);

    // Every unit ran on this node; its inputs came down and its artifacts went up over mutual TLS.
    const units = (await api("GET", `/api/v1/customer/training-jobs/${jobId}/compute-units`, auth)).body["data"] as Json[];
    assert.ok(units.length > 0 && units.every((u) => u["status"] === "completed" && u["node_id"] === nodeId), JSON.stringify(units));
    const artifacts = (await api("GET", `/api/v1/customer/training-jobs/${jobId}/artifacts`, auth)).body["data"] as Json[];
    assert.ok(
      artifacts.some((a) => a["kind"] === "checkpoint"),
      `a checkpoint was uploaded: ${JSON.stringify(artifacts.map((a) => a["name"]))}`,
    );
  });
});
