/**
 * Webhook endpoints as a domain service (src/webhooks/endpoints.ts), called directly, on both
 * backends: registered within the per-customer cap, tested, given a new secret, deleted, their
 * deliveries paged and redelivered; other customers' ids are not found; every refusal stores nothing.
 */
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { FakeClock } from "../../src/platform/clock.ts";
import type { ApiError } from "../../src/platform/errors.ts";
import { insertCustomer } from "../../src/store/customers.ts";
import type { Sql } from "../../src/store/database.ts";
import { findWebhookDelivery } from "../../src/store/webhooks.ts";
import type { WebhookEndpointDeps, WebhookEndpointRequest } from "../../src/webhooks/endpoints.ts";
import {
  createWebhookEndpoint,
  endpointDeliveriesPage,
  maxWebhookEndpointsPerCustomer,
  previousSecretValidityMs,
  redeliver,
  removeWebhookEndpoint,
  rotateEndpointSecret,
  sendTestEvent,
} from "../../src/webhooks/endpoints.ts";
import { describeOnEachBackend } from "../support/billing-rows.ts";
import { refusedWith } from "../support/refusals.ts";

async function liveEndpointCount(sql: Sql, customerId: string): Promise<number> {
  const [row] = await sql.query<{ n: number }>(`SELECT count(*)::int AS n FROM webhook_endpoints WHERE customer_id = $1 AND deleted_at IS NULL`, [customerId]);
  return row!.n;
}

describeOnEachBackend("webhook endpoints", (on) => {
  const clock = new FakeClock();
  const deps = (): WebhookEndpointDeps => ({ db: on.db, clock });
  const request = (overrides: Partial<WebhookEndpointRequest> = {}): WebhookEndpointRequest => ({
    url: "https://hooks.example.com/gpu-agent",
    events: ["job.completed"],
    description: "",
    ...overrides,
  });

  async function newCustomer(): Promise<string> {
    return (await insertCustomer(on.db, { id: randomUUID(), email: `${randomUUID()}@example.com`, passwordHash: "x" }, new Date(clock.now()))).id;
  }

  it("registers an endpoint with its events de-duplicated in order and a signing secret shown once", async () => {
    const customerId = await newCustomer();
    const { row, secret } = await createWebhookEndpoint(deps(), customerId, request({ events: [" job.failed", "job.completed", "job.failed"], description: " builds " }));
    assert.match(secret, /^whsec_/);
    assert.equal(row.url, "https://hooks.example.com/gpu-agent");
    assert.deepEqual(row.events, ["job.failed", "job.completed"]);
    assert.equal(row.description, "builds");
    assert.equal(row.created_at.getTime(), clock.now());
  });

  const refusals: { name: string; request: Partial<WebhookEndpointRequest>; code: ApiError["code"]; field?: string }[] = [
    { name: "a plain http URL", request: { url: "http://hooks.example.com/x" }, code: "WEBHOOK_INVALID_URL" },
    { name: "a URL to localhost", request: { url: "https://localhost/x" }, code: "WEBHOOK_INVALID_URL" },
    { name: "no events", request: { events: [] }, code: "VALIDATION_FAILED", field: "events" },
    { name: "an unknown event", request: { events: ["job.completed", "job.exploded"] }, code: "VALIDATION_FAILED", field: "events" },
    { name: "the test event, which is sent on request only", request: { events: ["webhook.test"] }, code: "VALIDATION_FAILED", field: "events" },
    { name: "a description of 501 characters", request: { description: "d".repeat(501) }, code: "VALIDATION_FAILED", field: "description" },
    { name: "a description with NUL", request: { description: "a\u0000b" }, code: "VALIDATION_FAILED", field: "description" },
  ];
  for (const r of refusals) {
    it(`refuses ${r.name} (${r.code}) and stores nothing`, async () => {
      const customerId = await newCustomer();
      const error = await refusedWith(createWebhookEndpoint(deps(), customerId, request(r.request)), r.code);
      if (r.field !== undefined) assert.equal(error.details["field"], r.field);
      assert.equal(await liveEndpointCount(on.db, customerId), 0);
    });
  }

  it(`holds at most ${maxWebhookEndpointsPerCustomer} live endpoints under concurrent creations; deleting one frees a slot`, async () => {
    const customerId = await newCustomer();
    const results = await Promise.allSettled(Array.from({ length: maxWebhookEndpointsPerCustomer + 2 }, () => createWebhookEndpoint(deps(), customerId, request())));
    assert.deepEqual(
      results.filter((r) => r.status === "rejected").map((r) => (r.reason as ApiError).code),
      ["RATE_LIMITED", "RATE_LIMITED"],
    );
    assert.equal(await liveEndpointCount(on.db, customerId), maxWebhookEndpointsPerCustomer);
    const first = results.find((r) => r.status === "fulfilled")!;
    await removeWebhookEndpoint(deps(), customerId, first.value.row.id);
    await createWebhookEndpoint(deps(), customerId, request());
  });

  it("queues a test event for that endpoint alone", async () => {
    const customerId = await newCustomer();
    const { row } = await createWebhookEndpoint(deps(), customerId, request());
    const delivery = await sendTestEvent(deps(), customerId, row.id.toUpperCase());
    assert.equal(delivery.endpoint_id, row.id);
    assert.equal(delivery.event_type, "webhook.test");
    assert.equal(delivery.status, "pending");
    assert.equal(delivery.next_attempt_at.getTime(), clock.now());
  });

  it("rotates the secret: a new one, the old one signing until a day from now", async () => {
    const customerId = await newCustomer();
    const { row, secret } = await createWebhookEndpoint(deps(), customerId, request());
    const rotated = await rotateEndpointSecret(deps(), customerId, row.id);
    assert.notEqual(rotated.secret, secret);
    assert.equal(rotated.previousSecretExpiresAt.getTime(), clock.now() + previousSecretValidityMs);
    assert.equal(rotated.row.previous_secret_expires_at?.getTime(), clock.now() + previousSecretValidityMs);
  });

  it("deletes an endpoint: it is gone for every call, and a second delete is not found", async () => {
    const customerId = await newCustomer();
    const { row } = await createWebhookEndpoint(deps(), customerId, request());
    assert.equal(await removeWebhookEndpoint(deps(), customerId, row.id.toUpperCase()), row.id);
    await refusedWith(removeWebhookEndpoint(deps(), customerId, row.id), "RESOURCE_NOT_FOUND");
    await refusedWith(sendTestEvent(deps(), customerId, row.id), "RESOURCE_NOT_FOUND");
    await refusedWith(endpointDeliveriesPage(on.db, customerId, row.id, { limit: 0, cursor: "", status: "" }), "RESOURCE_NOT_FOUND");
  });

  it("pages an endpoint's deliveries newest first, filtered by status", async () => {
    const customerId = await newCustomer();
    const { row } = await createWebhookEndpoint(deps(), customerId, request());
    const older = await sendTestEvent(deps(), customerId, row.id);
    clock.advance(1000);
    const newer = await sendTestEvent(deps(), customerId, row.id);
    const first = await endpointDeliveriesPage(on.db, customerId, row.id, { limit: 1, cursor: "", status: "pending" });
    assert.deepEqual(
      first.rows.map((d) => d.id),
      [newer.id],
    );
    const second = await endpointDeliveriesPage(on.db, customerId, row.id, { limit: 1, cursor: first.page.nextCursor, status: "" });
    assert.deepEqual(
      second.rows.map((d) => d.id),
      [older.id],
    );
    assert.deepEqual((await endpointDeliveriesPage(on.db, customerId, row.id, { limit: 0, cursor: "", status: "delivered" })).rows, []);
    const error = await refusedWith(endpointDeliveriesPage(on.db, customerId, row.id, { limit: 0, cursor: "", status: "lost" }), "VALIDATION_FAILED");
    assert.equal(error.details["field"], "status");
  });

  it("checks the endpoint before the page request: a malformed id is not found whatever the cursor", async () => {
    const customerId = await newCustomer();
    await refusedWith(endpointDeliveriesPage(on.db, customerId, "nope", { limit: 0, cursor: "not a cursor", status: "lost" }), "RESOURCE_NOT_FOUND");
  });

  it("redelivers: a new pending delivery of the same event; asking again answers the one still pending", async () => {
    const customerId = await newCustomer();
    const { row } = await createWebhookEndpoint(deps(), customerId, request());
    const original = await sendTestEvent(deps(), customerId, row.id);
    const again = await redeliver(deps(), customerId, row.id, original.id.toUpperCase());
    assert.notEqual(again.id, original.id);
    assert.equal(again.event_id, original.event_id);
    assert.equal((await findWebhookDelivery(on.db, again.id))?.redelivery_of, original.id);
    assert.equal((await redeliver(deps(), customerId, row.id, original.id)).id, again.id);
  });

  it("answers another customer's, an unknown and a malformed id alike (RESOURCE_NOT_FOUND), changing nothing", async () => {
    const owner = await newCustomer();
    const stranger = await newCustomer();
    const { row } = await createWebhookEndpoint(deps(), owner, request());
    const delivery = await sendTestEvent(deps(), owner, row.id);
    for (const id of [row.id, randomUUID(), "whk_1"]) {
      const error = await refusedWith(sendTestEvent(deps(), stranger, id), "RESOURCE_NOT_FOUND");
      assert.equal(error.message, `webhook ${JSON.stringify(id)} not found`);
      await refusedWith(rotateEndpointSecret(deps(), stranger, id), "RESOURCE_NOT_FOUND");
      await refusedWith(removeWebhookEndpoint(deps(), stranger, id), "RESOURCE_NOT_FOUND");
      await refusedWith(redeliver(deps(), stranger, id, delivery.id), "RESOURCE_NOT_FOUND");
    }
    for (const deliveryId of [randomUUID(), "dlv_1"]) {
      const error = await refusedWith(redeliver(deps(), owner, row.id, deliveryId), "RESOURCE_NOT_FOUND");
      assert.equal(error.message, `webhook delivery ${JSON.stringify(deliveryId)} not found`);
    }
    assert.equal(await liveEndpointCount(on.db, owner), 1);
  });
});
