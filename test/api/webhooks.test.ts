/**
 * Webhook endpoints over the real REST API: create (secret shown once), list, test, rotate the
 * secret, delete; their deliveries: list (cursor, status filter), redeliver; URL and event
 * validation; tenants isolated.
 */
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { hashSecret, newSecret } from "../../src/platform/ids.ts";
import { insertApiKey } from "../../src/store/customers.ts";
import { findWebhookDelivery } from "../../src/store/webhooks.ts";
import type { TestControlPlane } from "../support/control-plane.ts";
import { createCustomer, request, startTestControlPlane } from "../support/control-plane.ts";

const seedUrl = "https://your-receiver.example.com/gpu-agent";
const seedEvents = ["job.completed", "job.failed", "artifact.ready"];

function errorCode(body: Record<string, unknown>): string {
  return (body["error"] as Record<string, string> | undefined)?.["code"] ?? "";
}

describe("webhook endpoints API", () => {
  let cp: TestControlPlane;
  let apiKey: string;
  let customerId: string;
  const headers = () => ({ "x-api-key": apiKey });
  const create = (body: unknown, key = apiKey) => request(cp, "POST", "/api/v1/customer/webhooks", { body, headers: { "x-api-key": key } });

  before(async () => {
    cp = await startTestControlPlane();
    ({ apiKey, customerId } = await createCustomer(cp));
  });
  after(async () => {
    await cp?.stop();
  });

  it("creates the seed's endpoint and shows its whsec_ secret exactly once", async () => {
    const res = await create({ url: seedUrl, events: seedEvents, description: "postman-test" });
    assert.equal(res.status, 201, JSON.stringify(res.body));
    const secret = res.body["secret"] as string;
    assert.match(secret, /^whsec_[A-Za-z0-9_-]{40,}$/);
    const webhook = res.body["webhook"] as Record<string, unknown>;
    assert.equal(webhook["url"], seedUrl);
    assert.deepEqual(webhook["events"], seedEvents);
    assert.equal(webhook["description"], "postman-test");
    assert.equal(typeof webhook["created_at"], "string");

    const list = await request(cp, "GET", "/api/v1/customer/webhooks", { headers: headers() });
    assert.equal(list.status, 200);
    const text = JSON.stringify(list.body);
    assert.ok(!text.includes(secret), "the list must never show the secret");
    assert.ok(!text.includes("whsec_"));
    const found = (list.body["data"] as Record<string, unknown>[]).find((w) => w["id"] === webhook["id"]);
    assert.ok(found !== undefined);
    assert.equal(found["url"], seedUrl);
  });

  it("de-duplicates the event list", async () => {
    const res = await create({ url: seedUrl, events: ["job.failed", "job.failed", " job.completed "] });
    assert.equal(res.status, 201, JSON.stringify(res.body));
    assert.deepEqual((res.body["webhook"] as Record<string, unknown>)["events"], ["job.failed", "job.completed"]);
  });

  const invalidUrls: [string, string][] = [
    ["http://example.com/hook", "plain http"],
    ["https://localhost/hook", "localhost"],
    ["https://127.0.0.1/hook", "loopback"],
    ["https://10.0.0.8/hook", "a private address"],
    ["https://169.254.169.254/hook", "the metadata address"],
    ["https://[::1]/hook", "IPv6 loopback"],
    ["https://[::ffff:127.0.0.1]/hook", "IPv4-mapped loopback"],
    ["https://user:pass@example.com/hook", "credentials"],
    ["https://svc.internal/hook", "an *.internal name"],
    ["", "no URL"],
  ];
  for (const [url, what] of invalidUrls) {
    it(`answers 400 WEBHOOK_INVALID_URL for ${what}`, async () => {
      const res = await create({ url, events: ["job.completed"] });
      assert.equal(res.status, 400, JSON.stringify(res.body));
      assert.equal(errorCode(res.body), "WEBHOOK_INVALID_URL");
    });
  }

  const invalidEvents: [unknown, string][] = [
    [[], "no events"],
    [["job.exploded"], "an unknown event"],
    [["webhook.test"], "the test event, which is sent on request only"],
  ];
  for (const [events, what] of invalidEvents) {
    it(`answers 400 VALIDATION_FAILED for ${what}`, async () => {
      const res = await create({ url: seedUrl, events });
      assert.equal(res.status, 400, JSON.stringify(res.body));
      assert.equal(errorCode(res.body), "VALIDATION_FAILED");
      assert.match(String((res.body["error"] as Record<string, unknown>)["message"]), /event/);
    });
  }

  it("queues a webhook.test delivery for that endpoint only", async () => {
    const a = await create({ url: seedUrl, events: ["job.completed"] });
    const id = (a.body["webhook"] as Record<string, string>)["id"]!;
    const res = await request(cp, "POST", `/api/v1/customer/webhooks/${id}/test`, { headers: headers() });
    assert.equal(res.status, 200, JSON.stringify(res.body));
    assert.equal(res.body["status"], "queued");
    const delivery = await findWebhookDelivery(cp.plane.deps.db, res.body["delivery_id"] as string);
    assert.ok(delivery !== undefined);
    assert.equal(delivery.endpoint_id, id);
    assert.equal(delivery.event_type, "webhook.test");
    assert.equal(delivery.status, "pending");
    assert.equal((delivery.payload as Record<string, unknown>)["type"], "webhook.test");
    const others = await cp.plane.deps.db.query(`SELECT id FROM webhook_deliveries WHERE event_id = $1`, [delivery.event_id]);
    assert.equal(others.length, 1);
  });

  it("rotates the secret: a new one, shown once, the old one valid for 24 hours", async () => {
    const created = await create({ url: seedUrl, events: ["job.completed"] });
    const id = (created.body["webhook"] as Record<string, string>)["id"]!;
    const oldSecret = created.body["secret"] as string;
    const before = Date.now();
    const res = await request(cp, "POST", `/api/v1/customer/webhooks/${id}/rotate-secret`, { headers: headers() });
    assert.equal(res.status, 200, JSON.stringify(res.body));
    const newSecret = res.body["secret"] as string;
    assert.match(newSecret, /^whsec_/);
    assert.notEqual(newSecret, oldSecret);
    const expires = Date.parse(res.body["previous_secret_expires_at"] as string);
    assert.ok(Math.abs(expires - (before + 24 * 3600 * 1000)) < 60_000, `expires at ${String(res.body["previous_secret_expires_at"])}`);
    assert.equal((res.body["webhook"] as Record<string, unknown>)["previous_secret_expires_at"], res.body["previous_secret_expires_at"]);
    const [row] = await cp.plane.deps.db.query<{ secret: string; previous_secret: string }>(
      `SELECT secret, previous_secret FROM webhook_endpoints WHERE id = $1`,
      [id],
    );
    assert.deepEqual(row, { secret: newSecret, previous_secret: oldSecret });
    const list = await request(cp, "GET", "/api/v1/customer/webhooks", { headers: headers() });
    assert.ok(!JSON.stringify(list.body).includes(newSecret));
  });

  it("deletes softly: gone from the list, a second delete and a test are 404", async () => {
    const created = await create({ url: seedUrl, events: ["job.completed"] });
    const id = (created.body["webhook"] as Record<string, string>)["id"]!;
    const res = await request(cp, "DELETE", `/api/v1/customer/webhooks/${id}`, { headers: headers() });
    assert.equal(res.status, 200, JSON.stringify(res.body));
    assert.deepEqual(res.body, { id, deleted: true });
    const list = await request(cp, "GET", "/api/v1/customer/webhooks?limit=100", { headers: headers() });
    assert.ok(!(list.body["data"] as Record<string, unknown>[]).some((w) => w["id"] === id));
    const [row] = await cp.plane.deps.db.query<{ deleted_at: Date | null }>(`SELECT deleted_at FROM webhook_endpoints WHERE id = $1`, [id]);
    assert.ok(row?.deleted_at instanceof Date, "the row stays, marked deleted");
    assert.equal((await request(cp, "DELETE", `/api/v1/customer/webhooks/${id}`, { headers: headers() })).status, 404);
    const test = await request(cp, "POST", `/api/v1/customer/webhooks/${id}/test`, { headers: headers() });
    assert.equal(test.status, 404);
    assert.equal(errorCode(test.body), "RESOURCE_NOT_FOUND");
  });

  it("answers 404 RESOURCE_NOT_FOUND for another customer's endpoint, and leaves it alone", async () => {
    const created = await create({ url: seedUrl, events: ["job.completed"] });
    const id = (created.body["webhook"] as Record<string, string>)["id"]!;
    const other = await createCustomer(cp);
    const otherHeaders = { "x-api-key": other.apiKey };
    for (const [method, path] of [
      ["POST", `/api/v1/customer/webhooks/${id}/test`],
      ["POST", `/api/v1/customer/webhooks/${id}/rotate-secret`],
      ["DELETE", `/api/v1/customer/webhooks/${id}`],
    ] as const) {
      const res = await request(cp, method, path, { headers: otherHeaders });
      assert.equal(res.status, 404, `${method} ${path}: ${JSON.stringify(res.body)}`);
      assert.equal(errorCode(res.body), "RESOURCE_NOT_FOUND");
    }
    const theirs = await request(cp, "GET", "/api/v1/customer/webhooks", { headers: otherHeaders });
    assert.deepEqual(theirs.body["data"], []);
    const [row] = await cp.plane.deps.db.query<{ deleted_at: Date | null; previous_secret: string | null }>(
      `SELECT deleted_at, previous_secret FROM webhook_endpoints WHERE id = $1`,
      [id],
    );
    assert.deepEqual(row, { deleted_at: null, previous_secret: null });
  });

  for (const [what, id] of [
    ["an unknown id", randomUUID()],
    ["a malformed id", "not-a-uuid"],
  ]) {
    it(`answers 404 RESOURCE_NOT_FOUND for ${what}`, async () => {
      const res = await request(cp, "POST", `/api/v1/customer/webhooks/${id}/rotate-secret`, { headers: headers() });
      assert.equal(res.status, 404);
      assert.equal(errorCode(res.body), "RESOURCE_NOT_FOUND");
    });
  }

  it("needs the webhook:write scope to create, test, rotate and delete", async () => {
    const key = newSecret("sk_live_");
    await insertApiKey(cp.plane.deps.db, {
      id: randomUUID(),
      customerId,
      name: "read only",
      prefix: key.slice(0, 12),
      keyHash: hashSecret(key),
      scopes: ["usage:read"],
    });
    const res = await create({ url: seedUrl, events: ["job.completed"] }, key);
    assert.equal(res.status, 403);
    assert.equal(errorCode(res.body), "API_KEY_SCOPE_DENIED");
    const own = await create({ url: seedUrl, events: ["job.completed"] });
    const id = (own.body["webhook"] as Record<string, string>)["id"]!;
    for (const [method, path] of [
      ["POST", `/api/v1/customer/webhooks/${id}/test`],
      ["POST", `/api/v1/customer/webhooks/${id}/rotate-secret`],
      ["DELETE", `/api/v1/customer/webhooks/${id}`],
    ] as const) {
      const denied = await request(cp, method, path, { headers: { "x-api-key": key } });
      assert.equal(denied.status, 403, `${method} ${path}`);
      assert.equal(errorCode(denied.body), "API_KEY_SCOPE_DENIED");
    }
    // The proto declares webhook:write for listing too (endpoints and their deliveries).
    for (const path of ["/api/v1/customer/webhooks", `/api/v1/customer/webhooks/${id}/deliveries`]) {
      const list = await request(cp, "GET", path, { headers: { "x-api-key": key } });
      assert.equal(list.status, 403, path);
      assert.equal(errorCode(list.body), "API_KEY_SCOPE_DENIED");
    }
  });

  it("needs authentication", async () => {
    const res = await request(cp, "GET", "/api/v1/customer/webhooks");
    assert.equal(res.status, 401);
  });

  it("allows at most 20 endpoints per customer and pages through them", async () => {
    const customer = await createCustomer(cp);
    for (let i = 0; i < 20; i++) {
      const res = await create({ url: `${seedUrl}/${i}`, events: ["job.completed"] }, customer.apiKey);
      assert.equal(res.status, 201, JSON.stringify(res.body));
    }
    const over = await create({ url: seedUrl, events: ["job.completed"] }, customer.apiKey);
    assert.equal(over.status, 429);
    assert.equal(errorCode(over.body), "RATE_LIMITED");
    assert.match(String((over.body["error"] as Record<string, unknown>)["message"]), /20/);

    const seen = new Set<string>();
    let cursor = "";
    for (;;) {
      const page = await request(cp, "GET", `/api/v1/customer/webhooks?limit=7${cursor === "" ? "" : `&cursor=${cursor}`}`, {
        headers: { "x-api-key": customer.apiKey },
      });
      assert.equal(page.status, 200);
      for (const w of page.body["data"] as Record<string, string>[]) seen.add(w["id"]!);
      const info = page.body["page"] as Record<string, unknown>;
      if (info["has_more"] !== true) break;
      cursor = info["next_cursor"] as string;
    }
    assert.equal(seen.size, 20);

    // Deleting one makes room again.
    const [first] = [...seen];
    assert.equal((await request(cp, "DELETE", `/api/v1/customer/webhooks/${first}`, { headers: { "x-api-key": customer.apiKey } })).status, 200);
    assert.equal((await create({ url: seedUrl, events: ["job.completed"] }, customer.apiKey)).status, 201);
  });

  describe("deliveries", () => {
    let owner: { apiKey: string; customerId: string };
    let endpointId: string;
    const auth = () => ({ "x-api-key": owner.apiKey });
    const list = (query = "", id = endpointId, key = owner.apiKey) =>
      request(cp, "GET", `/api/v1/customer/webhooks/${id}/deliveries${query}`, { headers: { "x-api-key": key } });

    before(async () => {
      owner = await createCustomer(cp);
      const res = await create({ url: seedUrl, events: ["job.completed"] }, owner.apiKey);
      endpointId = (res.body["webhook"] as Record<string, string>)["id"]!;
    });

    it("lists an endpoint's deliveries newest first, through cursor pages, with a status filter", async () => {
      const queued: string[] = [];
      for (let i = 0; i < 5; i++) {
        const res = await request(cp, "POST", `/api/v1/customer/webhooks/${endpointId}/test`, { headers: auth() });
        queued.push(res.body["delivery_id"] as string);
      }
      // Mark two as delivered, as the dispatcher would (no receiver is reachable from this test).
      await cp.plane.deps.db.query(`UPDATE webhook_deliveries SET status = 'delivered', delivered_at = now(), last_status_code = 204 WHERE id = ANY($1::uuid[])`, [
        queued.slice(0, 2),
      ]);
      const seen: Record<string, unknown>[] = [];
      let cursor = "";
      for (let pages = 0; pages < 10; pages++) {
        const page = await list(`?limit=2${cursor === "" ? "" : `&cursor=${cursor}`}`);
        assert.equal(page.status, 200, JSON.stringify(page.body));
        seen.push(...(page.body["data"] as Record<string, unknown>[]));
        const info = page.body["page"] as Record<string, unknown>;
        assert.equal(info["limit"], 2);
        if (info["has_more"] !== true) break;
        cursor = info["next_cursor"] as string;
      }
      assert.equal(seen.length, 5, "every delivery once, none skipped or repeated across pages");
      assert.deepEqual(new Set(seen.map((d) => d["id"])), new Set(queued));
      const times = seen.map((d) => Date.parse(d["created_at"] as string));
      assert.ok(times.every((t, i) => i === 0 || t <= times[i - 1]!), "newest first");
      const first = seen.find((d) => d["id"] === queued[0])!;
      assert.equal(first["webhook_id"], endpointId);
      assert.equal(first["event_type"], "webhook.test");
      assert.equal(first["status"], "delivered");
      assert.equal(first["last_status_code"], 204);
      assert.equal(typeof first["delivered_at"], "string");
      const last = seen.find((d) => d["id"] === queued[4])!;
      assert.equal(last["status"], "pending");
      assert.equal(typeof last["next_attempt_at"], "string");

      const delivered = await list("?status=delivered");
      assert.deepEqual((delivered.body["data"] as Record<string, unknown>[]).map((d) => d["id"]).sort(), queued.slice(0, 2).sort());
      const pending = await list("?status=pending");
      assert.equal((pending.body["data"] as unknown[]).length, 3);
      const bad = await list("?status=sent");
      assert.equal(bad.status, 400);
      assert.equal(errorCode(bad.body), "VALIDATION_FAILED");
      const badCursor = await list("?cursor=not-a-cursor");
      assert.equal(badCursor.status, 400);
      assert.equal(errorCode(badCursor.body), "PAGINATION_INVALID_CURSOR");
    });

    it("answers 404 RESOURCE_NOT_FOUND for another customer's webhook and its deliveries", async () => {
      const stranger = await createCustomer(cp);
      const res = await list("", endpointId, stranger.apiKey);
      assert.equal(res.status, 404);
      assert.equal(errorCode(res.body), "RESOURCE_NOT_FOUND");
      assert.equal((await list("", "not-a-uuid")).status, 404);
      const [one] = (await list("?limit=1")).body["data"] as Record<string, string>[];
      const redeliver = await request(cp, "POST", `/api/v1/customer/webhooks/${endpointId}/deliveries/${one!["id"]!}/redeliver`, {
        headers: { "x-api-key": stranger.apiKey },
        body: {},
      });
      assert.equal(redeliver.status, 404);
      assert.equal(errorCode(redeliver.body), "RESOURCE_NOT_FOUND");
      // A delivery id of another endpoint, even the caller's own, is not found under this one.
      const other = await create({ url: seedUrl, events: ["job.completed"] }, owner.apiKey);
      const otherId = (other.body["webhook"] as Record<string, string>)["id"]!;
      const crossed = await request(cp, "POST", `/api/v1/customer/webhooks/${otherId}/deliveries/${one!["id"]!}/redeliver`, { headers: auth(), body: {} });
      assert.equal(crossed.status, 404);
    });

    it("redelivers: a new pending delivery of the same event and payload; asking again returns the one still queued", async () => {
      const test = await request(cp, "POST", `/api/v1/customer/webhooks/${endpointId}/test`, { headers: auth() });
      const originalId = test.body["delivery_id"] as string;
      await cp.plane.deps.db.query(`UPDATE webhook_deliveries SET status = 'failed', attempts = 8, last_error = 'WEBHOOK_DELIVERY_FAILED: gave up' WHERE id = $1`, [originalId]);
      const path = `/api/v1/customer/webhooks/${endpointId}/deliveries/${originalId}/redeliver`;
      const res = await request(cp, "POST", path, { headers: auth(), body: {} });
      assert.equal(res.status, 200, JSON.stringify(res.body));
      const copy = res.body["delivery"] as Record<string, unknown>;
      assert.notEqual(copy["id"], originalId);
      assert.equal(copy["status"], "pending");
      assert.equal(copy["attempts"], 0);
      assert.equal(copy["webhook_id"], endpointId);
      const original = await findWebhookDelivery(cp.plane.deps.db, originalId);
      const stored = await findWebhookDelivery(cp.plane.deps.db, copy["id"] as string);
      assert.equal(copy["event_id"], original!.event_id);
      assert.deepEqual(stored!.payload, original!.payload);
      assert.equal(stored!.redelivery_of, originalId);
      assert.equal(original!.status, "failed", "the original keeps its history");

      // While that redelivery is queued, asking again (a retried click) does not queue another.
      const again = await request(cp, "POST", path, { headers: auth(), body: {} });
      assert.equal((again.body["delivery"] as Record<string, unknown>)["id"], copy["id"]);
      // Concurrent requests too.
      await cp.plane.deps.db.query(`UPDATE webhook_deliveries SET status = 'delivered' WHERE id = $1`, [copy["id"]]);
      const racing = await Promise.all(Array.from({ length: 10 }, () => request(cp, "POST", path, { headers: auth(), body: {} })));
      const ids = new Set(racing.map((r) => (r.body["delivery"] as Record<string, unknown>)["id"]));
      assert.equal(ids.size, 1, "ten racing redeliveries queue one copy");
      // Redelivering the redelivery links to the first delivery of the event.
      const ofCopy = await request(cp, "POST", `/api/v1/customer/webhooks/${endpointId}/deliveries/${copy["id"] as string}/redeliver`, { headers: auth(), body: {} });
      assert.equal((ofCopy.body["delivery"] as Record<string, unknown>)["id"], [...ids][0]);
      const rows = await cp.plane.deps.db.query<{ n: number }>(`SELECT count(*)::int AS n FROM webhook_deliveries WHERE event_id = $1`, [copy["event_id"]]);
      assert.equal(rows[0]!.n, 3);

      const unknown = await request(cp, "POST", `/api/v1/customer/webhooks/${endpointId}/deliveries/${randomUUID()}/redeliver`, { headers: auth(), body: {} });
      assert.equal(unknown.status, 404);
      assert.equal(errorCode(unknown.body), "RESOURCE_NOT_FOUND");
    });
  });
});
