/**
 * Webhooks end to end, with the control plane as a real child process (`node cmd/scheduler.ts`) and a
 * real HTTPS receiver on loopback (self-signed certificate made with openssl at test time):
 *
 * - a real job, run by a real agent process, produces `artifact.ready` and `job.completed`
 *   deliveries whose signatures verify with `verifyWebhookSignature`; the receiver fails the first
 *   two attempts of every delivery (500), and each arrives on the third, after the backoff;
 * - durability: an event is written to the outbox by a replica that does not deliver
 *   (`GPU_AGENT_WEBHOOK_DELIVER=0`), the replica is SIGKILLed, a new one starts on the same data
 *   directory, and the event still arrives.
 *
 * The scheduler reaches the receiver through the test-only settings GPU_AGENT_WEBHOOK_ALLOW_PRIVATE,
 * GPU_AGENT_WEBHOOK_RESOLVE (the receiver's public-looking name → 127.0.0.1) and
 * GPU_AGENT_WEBHOOK_CA_FILE, with a short backoff (GPU_AGENT_WEBHOOK_RETRY_BASE_MS). Real clock.
 */
import assert from "node:assert/strict";
import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import type { IncomingHttpHeaders, IncomingMessage, ServerResponse } from "node:http";
import { createServer, type Server } from "node:https";
import { type AddressInfo, createServer as createNetServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { ControlPlane } from "../../src/control-plane.ts";
import { verifyWebhookSignature } from "../../src/webhooks/signature.ts";
import { examplePackageZip } from "../limits/plane.ts";
import type { TestAgent, TestControlPlane } from "../support/control-plane.ts";
import { adminRequest, createCustomer, request, startTestAgent, uploadResource, waitFor } from "../support/control-plane.ts";

const repoRoot = join(import.meta.dirname, "..", "..");
const example = join(repoRoot, "examples", "tiny-mlp");
const receiverHost = "hooks.example.com";
const retryBaseMs = 400;

interface Received {
  at: number;
  path: string;
  headers: IncomingHttpHeaders;
  body: string;
  answered: number;
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createNetServer();
    server.on("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const port = (server.address() as AddressInfo).port;
      server.close(() => resolve(port));
    });
  });
}

/** `node cmd/scheduler.ts` on a data directory, until stopped or killed. */
interface SchedulerProcess {
  cp: TestControlPlane;
  child: ChildProcess;
  output(): string;
  kill(signal: NodeJS.Signals): Promise<void>;
}

async function startScheduler(dataDir: string, port: number, adminToken: string, env: Record<string, string>): Promise<SchedulerProcess> {
  const child = spawn(process.execPath, [join(repoRoot, "cmd", "scheduler.ts")], {
    env: {
      ...process.env,
      PORT: String(port),
      HOST: "127.0.0.1",
      GPU_AGENT_DATA_DIR: dataDir,
      GPU_AGENT_ADMIN_TOKEN: adminToken,
      GPU_AGENT_PLACEMENT_INTERVAL_MS: "200",
      GPU_AGENT_HEARTBEAT_SECONDS: "1",
      DATABASE_URL: "",
      ETCD_ENDPOINTS: "",
      LOG_LEVEL: "info",
      ...env,
    },
    stdio: ["ignore", "pipe", "pipe"],
  });
  const chunks: Buffer[] = [];
  child.stdout?.on("data", (c: Buffer) => chunks.push(c));
  child.stderr?.on("data", (c: Buffer) => chunks.push(c));
  const output = () => Buffer.concat(chunks).toString("utf8");
  const exited = new Promise<void>((resolve) => child.on("exit", () => resolve()));
  const url = `http://127.0.0.1:${port}`;
  await waitFor(
    "the scheduler to be ready",
    async () => {
      if (child.exitCode !== null) throw new Error(`the scheduler exited (${child.exitCode}):\n${output()}`);
      try {
        return (await fetch(`${url}/readyz`)).status === 200 ? true : undefined;
      } catch {
        return undefined;
      }
    },
    60_000,
    output,
  );
  const cp: TestControlPlane = {
    // The plane runs in the child; helpers only use url and adminToken.
    plane: undefined as unknown as ControlPlane,
    url,
    adminToken,
    dataDir,
    stop: async () => undefined,
  };
  return {
    cp,
    child,
    output,
    async kill(signal) {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill(signal);
        await exited;
      }
    },
  };
}

describe("webhooks end to end (scheduler process, HTTPS receiver, real agent)", function () {
  this.timeout(240_000);
  let work: string;
  let caFile: string;
  let server: Server;
  let receiverPort: number;
  const received: Received[] = [];
  /** Attempts seen per delivery id, for the flaky receiver. */
  const attemptsByDelivery = new Map<string, number>();
  let failFirst = 0;

  const webhookEnv = () => ({
    GPU_AGENT_WEBHOOK_ALLOW_PRIVATE: "1",
    GPU_AGENT_WEBHOOK_RESOLVE: `${receiverHost}:127.0.0.1`,
    GPU_AGENT_WEBHOOK_CA_FILE: caFile,
    GPU_AGENT_WEBHOOK_RETRY_BASE_MS: String(retryBaseMs),
  });

  before(async () => {
    work = await mkdtemp(join(tmpdir(), "gpu-agent-webhook-e2e-"));
    caFile = join(work, "cert.pem");
    execFileSync(
      "openssl",
      [
        "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", join(work, "key.pem"), "-out", caFile, "-days", "2",
        "-subj", `/CN=${receiverHost}`, "-addext", `subjectAltName=DNS:${receiverHost}`,
      ],
      { stdio: "pipe" },
    );
    server = createServer({ key: await readFile(join(work, "key.pem")), cert: await readFile(caFile) }, (req: IncomingMessage, res: ServerResponse) => {
      const chunks: Buffer[] = [];
      req.on("data", (c: Buffer) => chunks.push(c));
      req.on("end", () => {
        const deliveryId = String(req.headers["gpu-agent-delivery"] ?? "");
        const attempt = (attemptsByDelivery.get(deliveryId) ?? 0) + 1;
        attemptsByDelivery.set(deliveryId, attempt);
        const status = attempt <= failFirst ? 500 : 200;
        received.push({ at: Date.now(), path: req.url ?? "", headers: req.headers, body: Buffer.concat(chunks).toString("utf8"), answered: status });
        res.writeHead(status).end(status === 200 ? "ok" : "try again");
      });
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    receiverPort = (server.address() as AddressInfo).port;
  });

  after(async () => {
    await new Promise<void>((resolve) => server?.close(() => resolve()));
    await rm(work, { recursive: true, force: true });
  });

  async function registerWebhook(cp: TestControlPlane, apiKey: string, path: string, events: string[]): Promise<{ id: string; secret: string }> {
    const res = await request(cp, "POST", "/api/v1/customer/webhooks", {
      body: { url: `https://${receiverHost}:${receiverPort}${path}`, events },
      headers: { "x-api-key": apiKey },
    });
    assert.equal(res.status, 201, JSON.stringify(res.body));
    return { id: (res.body["webhook"] as Record<string, string>)["id"]!, secret: res.body["secret"] as string };
  }

  function assertSigned(r: Received, secret: string): Record<string, unknown> {
    const header = r.headers["gpu-agent-signature"];
    assert.equal(typeof header, "string");
    assert.ok(verifyWebhookSignature(r.body, header as string, [secret], 300, Date.now() / 1000), `signature of ${r.body.slice(0, 80)} verifies`);
    assert.ok(!verifyWebhookSignature(r.body, header as string, ["whsec_wrong"], 300, Date.now() / 1000));
    assert.ok(!verifyWebhookSignature(r.body + " ", header as string, [secret], 300, Date.now() / 1000), "a changed body does not verify");
    const event = JSON.parse(r.body) as Record<string, unknown>;
    assert.equal(r.headers["gpu-agent-event"], event["type"]);
    return event;
  }

  it("delivers signed artifact.ready and job.completed for a real job, each after two failed attempts", async () => {
    const dataDir = join(work, "plane-1");
    const scheduler = await startScheduler(dataDir, await freePort(), "e2e-admin-token-0123456789abcdef", webhookEnv());
    let agent: TestAgent | undefined;
    try {
      const cp = scheduler.cp;
      agent = await startTestAgent(cp, { trustLevel: "controlled", devGpuMib: 24576 });
      const { apiKey } = await createCustomer(cp, 10_000);
      const auth = { "x-api-key": apiKey };
      const hook = await registerWebhook(cp, apiKey, "/flaky", ["job.completed", "artifact.ready"]);
      failFirst = 2;

      const dataset = await uploadResource(cp, apiKey, "datasets", "d", await readFile(join(example, "dataset.csv")), { format: "csv" });
      const pkg = await uploadResource(cp, apiKey, "training-packages", "p", await examplePackageZip(), { entrypoint: "train.py" });
      const created = await request(cp, "POST", "/api/v1/customer/training-jobs", {
        headers: auth,
        body: { name: "webhook-e2e", dataset_id: dataset["id"], training_package_id: pkg["id"], required_vram_mb: 8000, max_runtime_seconds: 600, sensitivity: "low_sensitive" },
      });
      assert.equal(created.status, 201, JSON.stringify(created.body));
      const jobId = created.body["id"] as string;

      const job = await waitFor(
        "the job to finish",
        async () => {
          const res = await request(cp, "GET", `/api/v1/customer/training-jobs/${jobId}`, { headers: auth });
          return ["completed", "failed", "cancelled", "expired"].includes(res.body["status"] as string) ? res.body : undefined;
        },
        180_000,
        () => `${scheduler.output()}\n${agent?.output() ?? ""}`,
      );
      assert.equal(job["status"], "completed", String(job["error"]));
      const artifacts = (await request(cp, "GET", `/api/v1/customer/training-jobs/${jobId}/artifacts`, { headers: auth })).body["data"] as Record<string, unknown>[];

      const delivered = (type: string) => received.filter((r) => r.path === "/flaky" && r.answered === 200 && JSON.parse(r.body)["type"] === type);
      await waitFor(
        "job.completed and every artifact.ready to be delivered",
        async () => (delivered("job.completed").length >= 1 && delivered("artifact.ready").length >= artifacts.length ? true : undefined),
        60_000,
        scheduler.output,
      );
      const completed = assertSigned(delivered("job.completed")[0]!, hook.secret);
      assert.deepEqual((completed["data"] as Record<string, unknown>)["job_id"], jobId);
      assert.equal((completed["data"] as Record<string, unknown>)["status"], "completed");
      const readyArtifactIds = delivered("artifact.ready").map((r) => {
        const event = assertSigned(r, hook.secret);
        assert.equal((event["data"] as Record<string, unknown>)["job_id"], jobId);
        return (event["data"] as Record<string, unknown>)["artifact_id"];
      });
      assert.deepEqual(new Set(readyArtifactIds), new Set(artifacts.map((a) => a["id"])));

      // Every delivery: two 500s, then the 200, same delivery id and event, spaced by the backoff.
      for (const ok of [...delivered("job.completed"), ...delivered("artifact.ready")]) {
        const id = ok.headers["gpu-agent-delivery"];
        const tries = received.filter((r) => r.headers["gpu-agent-delivery"] === id);
        assert.deepEqual(tries.map((r) => r.answered), [500, 500, 200]);
        assert.ok(tries.every((t) => t.body === ok.body), "every attempt carries the same event");
        for (const t of tries) assertSigned(t, hook.secret);
        const gap1 = tries[1]!.at - tries[0]!.at;
        const gap2 = tries[2]!.at - tries[1]!.at;
        assert.ok(gap1 >= retryBaseMs * 0.8 - 50, `first retry after ${gap1} ms`);
        assert.ok(gap2 >= retryBaseMs * 2 * 0.8 - 50, `second retry after ${gap2} ms`);
      }

      // The deliveries API tells the same story.
      const list = await request(cp, "GET", `/api/v1/customer/webhooks/${hook.id}/deliveries?status=delivered`, { headers: auth });
      const rows = list.body["data"] as Record<string, unknown>[];
      assert.equal(rows.length, 1 + artifacts.length);
      assert.ok(rows.every((r) => r["attempts"] === 3 && r["last_status_code"] === 200), JSON.stringify(rows));
    } finally {
      failFirst = 0;
      await agent?.stop();
      await scheduler.kill("SIGTERM");
    }
  });

  it("keeps an event written to the outbox across a SIGKILL and delivers it after the restart", async () => {
    const dataDir = join(work, "plane-2");
    const port = await freePort();
    const adminToken = "e2e-admin-token-fedcba9876543210";
    // This replica writes the outbox but delivers nothing, so the kill surely comes before delivery.
    const first = await startScheduler(dataDir, port, adminToken, { ...webhookEnv(), GPU_AGENT_WEBHOOK_DELIVER: "0" });
    let jobId: string;
    let hook: { id: string; secret: string };
    let apiKey: string;
    try {
      const cp = first.cp;
      // Admission wants a node that could run the job: one enrolls and goes away, so the job waits, queued.
      const enrolled = await startTestAgent(cp, { trustLevel: "controlled", devGpuMib: 24576 });
      await enrolled.stop();
      ({ apiKey } = await createCustomer(cp, 10_000));
      const auth = { "x-api-key": apiKey };
      hook = await registerWebhook(cp, apiKey, "/durable", ["job.cancelled"]);
      const dataset = await uploadResource(cp, apiKey, "datasets", "d", await readFile(join(example, "dataset.csv")), { format: "csv" });
      const pkg = await uploadResource(cp, apiKey, "training-packages", "p", await examplePackageZip(), { entrypoint: "train.py" });
      const created = await request(cp, "POST", "/api/v1/customer/training-jobs", {
        headers: auth,
        body: { name: "durable", dataset_id: dataset["id"], training_package_id: pkg["id"], required_vram_mb: 8000, max_runtime_seconds: 600 },
      });
      assert.equal(created.status, 201, JSON.stringify(created.body));
      jobId = created.body["id"] as string;
      // Cancelling writes job.cancelled to the outbox in the cancel's transaction.
      const cancelled = await request(cp, "POST", `/api/v1/customer/training-jobs/${jobId}/cancel`, { headers: auth, body: {} });
      assert.equal(cancelled.body["status"], "cancelled");
      const pending = await request(cp, "GET", `/api/v1/customer/webhooks/${hook.id}/deliveries`, { headers: auth });
      const rows = pending.body["data"] as Record<string, unknown>[];
      assert.deepEqual(rows.map((r) => [r["event_type"], r["status"], r["attempts"]]), [["job.cancelled", "pending", 0]]);
    } finally {
      await first.kill("SIGKILL");
    }
    assert.equal(first.child.signalCode, "SIGKILL");
    assert.equal(received.filter((r) => r.path === "/durable").length, 0, "nothing was delivered before the kill");

    const second = await startScheduler(dataDir, port, adminToken, webhookEnv());
    try {
      const arrived = await waitFor(
        "job.cancelled to arrive after the restart",
        async () => received.find((r) => r.path === "/durable"),
        30_000,
        second.output,
      );
      const event = assertSigned(arrived, hook.secret);
      assert.equal(event["type"], "job.cancelled");
      assert.equal((event["data"] as Record<string, unknown>)["job_id"], jobId);
      const after = await waitFor(
        "the delivery to be recorded",
        async () => {
          const res = await request(second.cp, "GET", `/api/v1/customer/webhooks/${hook.id}/deliveries?status=delivered`, { headers: { "x-api-key": apiKey } });
          const data = res.body["data"] as Record<string, unknown>[];
          return data.length === 1 ? data[0] : undefined;
        },
        10_000,
      );
      assert.equal(after["attempts"], 1);
      assert.equal(after["id"], arrived.headers["gpu-agent-delivery"]);
    } finally {
      await second.kill("SIGTERM");
    }
  });

  it("refuses GPU_AGENT_WEBHOOK_RESOLVE without GPU_AGENT_WEBHOOK_ALLOW_PRIVATE", async () => {
    const child = spawn(process.execPath, [join(repoRoot, "cmd", "scheduler.ts")], {
      env: { ...process.env, PORT: "0", GPU_AGENT_DATA_DIR: join(work, "plane-3"), GPU_AGENT_WEBHOOK_RESOLVE: `${receiverHost}:127.0.0.1` },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let err = "";
    child.stderr?.on("data", (c: Buffer) => (err += c.toString("utf8")));
    const code = await new Promise<number | null>((resolve) => child.on("exit", resolve));
    assert.notEqual(code, 0);
    assert.match(err, /GPU_AGENT_WEBHOOK_ALLOW_PRIVATE/);
  });
});
