/**
 * The webhook dispatcher against the real control plane's database and a local HTTPS receiver with a
 * self-signed certificate (made with openssl at test time). The receiver's name resolves to
 * 127.0.0.1 through an injected resolver, so the real TLS path (SNI, certificate check against the
 * name, connect to the checked address) is exercised. Time is a FakeClock, so backoff is exact.
 */
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import type { IncomingHttpHeaders, IncomingMessage, ServerResponse } from "node:http";
import { createServer, type Server } from "node:https";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { FakeClock } from "../../src/platform/clock.ts";
import { findWebhookDelivery } from "../../src/store/webhooks.ts";
import type { WebhookDispatcherOptions, WebhookTransport } from "../../src/webhooks/dispatcher.ts";
import { createWebhookDispatcher, webhookRetryDelayMs } from "../../src/webhooks/dispatcher.ts";
import { verifyWebhookSignature } from "../../src/webhooks/signature.ts";
import type { Resolver } from "../../src/webhooks/url-safety.ts";
import type { TestControlPlane } from "../support/control-plane.ts";
import { createCustomer, request, startTestControlPlane } from "../support/control-plane.ts";
import { createMigratedTestDatabaseUrl } from "../support/postgres.ts";

const receiverHost = "hooks.example.com";

interface Received {
  headers: IncomingHttpHeaders;
  body: string;
}

describe("webhook retry backoff", () => {
  it("computes backoff as 10 s · 2^(attempt-1) with ±20 % jitter, capped at one hour", () => {
    const table: [number, number, number][] = [
      [1, 0.5, 10_000],
      [2, 0.5, 20_000],
      [3, 0, 32_000],
      [4, 0.999_999, 96_000],
      [12, 0.5, 3_600_000],
      [30, 0.999_999, 3_600_000],
    ];
    for (const [attempts, random, expected] of table) {
      assert.equal(webhookRetryDelayMs(attempts, () => random), expected, `attempt ${attempts}, random ${random}`);
    }
  });
});

describe("webhook retry backoff with a configured base", () => {
  it("scales every step by the base (tests use a short one)", () => {
    assert.deepEqual([1, 2, 3].map((n) => webhookRetryDelayMs(n, () => 0.5, 400)), [400, 800, 1600]);
    assert.equal(webhookRetryDelayMs(40, () => 0.5, 400), 3_600_000, "still capped at one hour");
  });
});

// Claims rely on FOR UPDATE SKIP LOCKED; PostgreSQL is where several connections really race.
const backends: { name: string; databaseUrl: () => Promise<string | undefined> }[] = [
  { name: "the embedded database (PGlite)", databaseUrl: async () => undefined },
  { name: "PostgreSQL", databaseUrl: () => createMigratedTestDatabaseUrl() },
];

for (const backend of backends) describe(`webhook dispatcher on ${backend.name}`, () => {
  let cp: TestControlPlane;
  let apiKey: string;
  let certDir: string;
  let ca: string;
  let server: Server;
  let port: number;
  let received: Received[] = [];
  let respond: (res: ServerResponse) => void = (res) => res.writeHead(200).end("ok");

  /** The receiver's name always resolves to loopback here, as an attacker's DNS could. */
  const resolver: Resolver = async (host) => {
    if (host !== receiverHost) throw new Error(`unexpected lookup of ${host}`);
    return [{ address: "127.0.0.1", family: 4 }];
  };

  /** A dispatcher on the plane's database with a fake clock just after every row queued so far. */
  function dispatcher(options: WebhookDispatcherOptions = {}) {
    const clock = new FakeClock(Date.now() + 1000);
    const d = createWebhookDispatcher(
      { ...cp.plane.deps, clock },
      { resolver, allowPrivateAddresses: true, tls: { ca }, random: () => 0.5, ...options },
    );
    return { clock, ...d };
  }

  async function createEndpoint(events: string[] = ["job.completed"]): Promise<{ id: string; secret: string }> {
    const res = await request(cp, "POST", "/api/v1/customer/webhooks", {
      body: { url: `https://${receiverHost}:${port}/hook`, events },
      headers: { "x-api-key": apiKey },
    });
    assert.equal(res.status, 201, JSON.stringify(res.body));
    return { id: (res.body["webhook"] as Record<string, string>)["id"]!, secret: res.body["secret"] as string };
  }

  async function queueTest(endpointId: string): Promise<string> {
    const res = await request(cp, "POST", `/api/v1/customer/webhooks/${endpointId}/test`, { headers: { "x-api-key": apiKey } });
    assert.equal(res.status, 200, JSON.stringify(res.body));
    return res.body["delivery_id"] as string;
  }

  const delivery = async (id: string) => {
    const row = await findWebhookDelivery(cp.plane.deps.db, id);
    assert.ok(row !== undefined);
    return row;
  };

  before(async () => {
    certDir = await mkdtemp(join(tmpdir(), "gpu-agent-webhook-cert-"));
    execFileSync(
      "openssl",
      [
        "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", join(certDir, "key.pem"), "-out", join(certDir, "cert.pem"), "-days", "2",
        "-subj", `/CN=${receiverHost}`, "-addext", `subjectAltName=DNS:${receiverHost}`,
      ],
      { stdio: "pipe" },
    );
    ca = await readFile(join(certDir, "cert.pem"), "utf8");
    server = createServer({ key: await readFile(join(certDir, "key.pem")), cert: ca }, (req: IncomingMessage, res: ServerResponse) => {
      const chunks: Buffer[] = [];
      req.on("data", (c: Buffer) => chunks.push(c));
      req.on("end", () => {
        received.push({ headers: req.headers, body: Buffer.concat(chunks).toString("utf8") });
        respond(res);
      });
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    port = (server.address() as AddressInfo).port;
    const databaseUrl = await backend.databaseUrl();
    cp = await startTestControlPlane(databaseUrl === undefined ? {} : { databaseUrl });
    ({ apiKey } = await createCustomer(cp));
  });

  beforeEach(() => {
    received = [];
    respond = (res) => res.writeHead(200).end("ok");
  });

  afterEach(async () => {
    // Leftovers of one case must not be delivered by the next case's dispatcher.
    await cp.plane.deps.db.query(`UPDATE webhook_deliveries SET status = 'failed' WHERE status = 'pending'`);
  });

  after(async () => {
    await cp?.stop();
    server?.closeAllConnections();
    await new Promise((resolve) => server?.close(resolve));
    await rm(certDir, { recursive: true, force: true });
  });

  it("delivers a webhook.test event signed and verifiable with the endpoint's secret", async () => {
    const endpoint = await createEndpoint();
    const deliveryId = await queueTest(endpoint.id);
    const d = dispatcher();
    assert.equal(await d.deliverDue(), 1);

    assert.equal(received.length, 1);
    const [got] = received;
    assert.ok(got !== undefined);
    assert.equal(got.headers["content-type"], "application/json");
    assert.equal(got.headers["gpu-agent-event"], "webhook.test");
    assert.equal(got.headers["gpu-agent-delivery"], deliveryId);
    assert.equal(got.headers["host"], `${receiverHost}:${port}`);
    const signature = got.headers["gpu-agent-signature"] as string;
    assert.match(signature, /^t=\d+,v1=[0-9a-f]{64}$/);
    const nowS = Math.floor(d.clock.now() / 1000);
    assert.equal(verifyWebhookSignature(got.body, signature, [endpoint.secret], 300, nowS), true);
    assert.equal(verifyWebhookSignature(got.body, signature, ["whsec_wrong"], 300, nowS), false);
    const payload = JSON.parse(got.body) as Record<string, unknown>;
    assert.equal(payload["type"], "webhook.test");
    assert.deepEqual((payload["data"] as Record<string, unknown>)["webhook_id"], endpoint.id);

    const row = await delivery(deliveryId);
    assert.equal(row.status, "delivered");
    assert.equal(row.attempts, 1);
    assert.equal(row.last_status_code, 200);
    assert.equal(row.delivered_at?.getTime(), d.clock.now());
    assert.equal(await d.deliverDue(), 0, "a delivered event is not sent again");
  });

  it("retries a receiver that answers 500 with exponential backoff", async () => {
    respond = (res) => res.writeHead(500).end("boom");
    const endpoint = await createEndpoint();
    const deliveryId = await queueTest(endpoint.id);
    const d = dispatcher();

    assert.equal(await d.deliverDue(), 1);
    let row = await delivery(deliveryId);
    assert.equal(row.status, "pending");
    assert.equal(row.attempts, 1);
    assert.equal(row.last_status_code, 500);
    assert.match(row.last_error, /HTTP 500: boom/);
    assert.equal(row.next_attempt_at.getTime(), d.clock.now() + 10_000);

    assert.equal(await d.deliverDue(), 0, "not due before its backoff ends");
    d.clock.advance(10_000);
    assert.equal(await d.deliverDue(), 1);
    row = await delivery(deliveryId);
    assert.equal(row.attempts, 2);
    assert.equal(row.next_attempt_at.getTime(), d.clock.now() + 20_000);
    assert.equal(received.length, 2);
    assert.notEqual(received[0]?.headers["gpu-agent-signature"], undefined);
  });

  it("marks a delivery failed with WEBHOOK_DELIVERY_FAILED once maxAttempts is used up", async () => {
    respond = (res) => res.writeHead(503).end();
    const endpoint = await createEndpoint();
    const deliveryId = await queueTest(endpoint.id);
    const d = dispatcher({ maxAttempts: 2 });
    assert.equal(await d.deliverDue(), 1);
    d.clock.advance(60_000);
    assert.equal(await d.deliverDue(), 1);
    const row = await delivery(deliveryId);
    assert.equal(row.status, "failed");
    assert.equal(row.attempts, 2);
    assert.equal(row.last_status_code, 503);
    assert.match(row.last_error, /^WEBHOOK_DELIVERY_FAILED: gave up after 2 attempts; last error: HTTP 503/);
    d.clock.advance(3_600_000);
    assert.equal(await d.deliverDue(), 0);
  });

  it("refuses a name that resolves to a private address and records a failed attempt", async () => {
    const endpoint = await createEndpoint();
    const deliveryId = await queueTest(endpoint.id);
    const d = dispatcher({ allowPrivateAddresses: false });
    assert.equal(await d.deliverDue(), 1);
    assert.equal(received.length, 0, "nothing may reach the private address");
    const row = await delivery(deliveryId);
    assert.equal(row.status, "pending");
    assert.equal(row.attempts, 1);
    assert.equal(row.last_status_code, null);
    assert.match(row.last_error, /refused: .*127\.0\.0\.1.*not a public internet address/);
    assert.ok(row.next_attempt_at.getTime() > d.clock.now());
  });

  it("signs with both secrets during a rotation and with the new one alone after it ends", async () => {
    const endpoint = await createEndpoint();
    const rotated = await request(cp, "POST", `/api/v1/customer/webhooks/${endpoint.id}/rotate-secret`, { headers: { "x-api-key": apiKey } });
    assert.equal(rotated.status, 200);
    const newSecret = rotated.body["secret"] as string;

    await queueTest(endpoint.id);
    const d = dispatcher();
    assert.equal(await d.deliverDue(), 1);
    const during = received[0];
    assert.ok(during !== undefined);
    const header = during.headers["gpu-agent-signature"] as string;
    assert.equal(header.split(",").filter((p) => p.startsWith("v1=")).length, 2);
    const nowS = Math.floor(d.clock.now() / 1000);
    assert.equal(verifyWebhookSignature(during.body, header, [newSecret], 300, nowS), true);
    assert.equal(verifyWebhookSignature(during.body, header, [endpoint.secret], 300, nowS), true);

    d.clock.advance(25 * 3600 * 1000);
    await queueTest(endpoint.id);
    assert.equal(await d.deliverDue(), 1);
    const after = received[1];
    assert.ok(after !== undefined);
    const laterHeader = after.headers["gpu-agent-signature"] as string;
    assert.equal(laterHeader.split(",").filter((p) => p.startsWith("v1=")).length, 1);
    const laterS = Math.floor(d.clock.now() / 1000);
    assert.equal(verifyWebhookSignature(after.body, laterHeader, [newSecret], 300, laterS), true);
    assert.equal(verifyWebhookSignature(after.body, laterHeader, [endpoint.secret], 300, laterS), false);
  });

  it("keeps only the start of a large error body", async () => {
    respond = (res) => res.writeHead(500).end("x".repeat(1 << 20));
    const endpoint = await createEndpoint();
    const deliveryId = await queueTest(endpoint.id);
    const d = dispatcher();
    assert.equal(await d.deliverDue(), 1);
    const row = await delivery(deliveryId);
    assert.equal(row.last_status_code, 500);
    assert.ok(row.last_error.length < 300, `last_error has ${row.last_error.length} characters`);
  });

  it("does not follow redirects", async () => {
    respond = (res) => res.writeHead(302, { location: "https://127.0.0.1:1/elsewhere" }).end();
    const endpoint = await createEndpoint();
    const deliveryId = await queueTest(endpoint.id);
    const d = dispatcher();
    assert.equal(await d.deliverDue(), 1);
    assert.equal(received.length, 1);
    const row = await delivery(deliveryId);
    assert.equal(row.status, "pending");
    assert.equal(row.last_status_code, 302);
    assert.match(row.last_error, /redirects are not followed/);
  });

  it("refuses a receiver whose certificate is not trusted", async () => {
    const endpoint = await createEndpoint();
    const deliveryId = await queueTest(endpoint.id);
    const d = dispatcher({ tls: {} });
    assert.equal(await d.deliverDue(), 1);
    assert.equal(received.length, 0);
    const row = await delivery(deliveryId);
    assert.equal(row.status, "pending");
    assert.match(row.last_error, /request to .* failed: .*(certificate|self.signed)/i);
  });

  it("gives up a request after 10 s on the injected clock", async () => {
    const endpoint = await createEndpoint();
    const deliveryId = await queueTest(endpoint.id);
    let started!: () => void;
    const called = new Promise<void>((resolve) => (started = resolve));
    const hanging: WebhookTransport = (req) =>
      new Promise((_resolve, reject) => {
        started();
        req.signal.addEventListener("abort", () => reject(req.signal.reason as Error), { once: true });
      });
    const d = dispatcher({ transport: hanging });
    const pass = d.deliverDue();
    await called;
    d.clock.advance(10_000);
    assert.equal(await pass, 1);
    const row = await delivery(deliveryId);
    assert.equal(row.status, "pending");
    assert.match(row.last_error, /no response within 10 s/);
  });

  it("never hands a leased delivery to a second dispatcher while the first is sending it", async () => {
    const endpoint = await createEndpoint();
    const deliveryId = await queueTest(endpoint.id);
    let release!: () => void;
    let started!: () => void;
    const called = new Promise<void>((resolve) => (started = resolve));
    const slow: WebhookTransport = () =>
      new Promise((resolve) => {
        started();
        release = () => resolve({ status: 204, bodySnippet: "" });
      });
    const first = dispatcher({ transport: slow });
    const second = dispatcher();
    const pass = first.deliverDue();
    await called;
    assert.equal(await second.deliverDue(), 0);
    release();
    assert.equal(await pass, 1);
    assert.equal((await delivery(deliveryId)).status, "delivered");
    assert.equal(received.length, 0);
  });

  it("delivers each event exactly once when two dispatchers claim at the same time", async () => {
    const endpoint = await createEndpoint();
    const ids = new Set<string>();
    for (let i = 0; i < 6; i++) ids.add(await queueTest(endpoint.id));
    const a = dispatcher({ batchSize: 3 });
    const b = dispatcher({ batchSize: 3 });
    const claimed = (await Promise.all([a.deliverDue(), b.deliverDue(), a.deliverDue(), b.deliverDue()])).reduce((x, y) => x + y, 0);
    assert.equal(claimed, 6);
    const seen = received.map((r) => r.headers["gpu-agent-delivery"] as string);
    assert.equal(seen.length, 6);
    assert.deepEqual(new Set(seen), ids);
  });

  it("runs until its signal aborts", async () => {
    const endpoint = await createEndpoint();
    const deliveryId = await queueTest(endpoint.id);
    const d = dispatcher({ pollIntervalMs: 50 });
    const stop = new AbortController();
    const running = d.run(stop.signal);
    for (let i = 0; i < 100 && (await delivery(deliveryId)).status !== "delivered"; i++) await new Promise((r) => setTimeout(r, 20));
    assert.equal((await delivery(deliveryId)).status, "delivered");
    stop.abort();
    await running;
  });
});
