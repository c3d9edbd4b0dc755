/**
 * CustomerService handlers: Webhook endpoints: create, list, test, rotate the secret, delete; and
 * their deliveries: list (with a status filter), redeliver.
 */
import type { MessageInitShape } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import type { HandlerContext, ServiceImpl } from "@connectrpc/connect";
import { authorizeCall } from "../../auth/authorize.ts";
import type { AuthorizeDeps } from "../../auth/authorize.ts";
import type { CustomerService, WebhookDeliverySchema, WebhookSchema } from "../../gen/gpuagent/customer/v1/customer_pb.ts";
import { isUuid, newId, newSecret } from "../../platform/ids.ts";
import { lockCustomer } from "../../store/customers.ts";
import { pageRequest, toPage } from "../../store/pagination.ts";
import type { WebhookDeliveryRow, WebhookEndpointRow } from "../../store/webhooks.ts";
import {
  countWebhookEndpoints,
  deleteWebhookEndpoint,
  findDeliveryOfEndpoint,
  findWebhookEndpoint,
  insertRedelivery,
  insertWebhookDelivery,
  insertWebhookEndpoint,
  listWebhookDeliveries,
  listWebhookEndpoints,
  rotateWebhookSecret,
  webhookDeliveryStatuses,
} from "../../store/webhooks.ts";
import type { WebhookEventType } from "../../webhooks/outbox.ts";
import { webhookEventTypes } from "../../webhooks/outbox.ts";
import { checkWebhookUrl } from "../../webhooks/url-safety.ts";
import { ApiError, validationError } from "../../platform/errors.ts";

/** The most live endpoints one customer may have. */
export const maxWebhookEndpointsPerCustomer = 20;
/** How long the previous secret keeps signing after a rotation. */
export const previousSecretValidityMs = 24 * 3600 * 1000;
/** Prefix of webhook signing secrets. */
export const webhookSecretPrefix = "whsec_";
const maxDescriptionLength = 500;

/** Event types an endpoint may subscribe to: all but `webhook.test`, which is sent on request only. */
export const subscribableWebhookEvents: readonly WebhookEventType[] = webhookEventTypes.filter((t) => t !== "webhook.test");

/** Trims, checks and de-duplicates the requested event types (order of first appearance kept). */
function parseEvents(events: readonly string[]): string[] {
  const wanted = [...new Set(events.map((e) => e.trim()))];
  if (wanted.length === 0) {
    throw validationError(`events must name at least one of: ${subscribableWebhookEvents.join(", ")}`, { field: "events" });
  }
  const unknown = wanted.filter((e) => !(subscribableWebhookEvents as readonly string[]).includes(e));
  if (unknown.length > 0) {
    throw validationError(`unknown event type ${unknown.map((e) => JSON.stringify(e)).join(", ")}; known: ${subscribableWebhookEvents.join(", ")}`, {
      field: "events",
    });
  }
  return wanted;
}

function webhookMessage(row: WebhookEndpointRow): MessageInitShape<typeof WebhookSchema> {
  return {
    id: row.id,
    url: row.url,
    events: row.events,
    description: row.description,
    createdAt: timestampFromDate(row.created_at),
    previousSecretExpiresAt: row.previous_secret_expires_at === null ? undefined : timestampFromDate(row.previous_secret_expires_at),
  };
}

function deliveryMessage(row: WebhookDeliveryRow): MessageInitShape<typeof WebhookDeliverySchema> {
  return {
    id: row.id,
    webhookId: row.endpoint_id,
    eventId: row.event_id,
    eventType: row.event_type,
    status: row.status,
    attempts: row.attempts,
    lastStatusCode: row.last_status_code ?? 0,
    lastError: row.last_error,
    createdAt: timestampFromDate(row.created_at),
    // Only a pending delivery has a next attempt (while one is in flight, this is its lease's end).
    nextAttemptAt: row.status === "pending" ? timestampFromDate(row.next_attempt_at) : undefined,
    deliveredAt: row.delivered_at === null ? undefined : timestampFromDate(row.delivered_at),
  };
}

function parseDeliveryStatus(value: string): WebhookDeliveryRow["status"] | undefined {
  const status = value.trim();
  if (status === "") return undefined;
  if (!(webhookDeliveryStatuses as readonly string[]).includes(status)) {
    throw validationError(`status must be one of ${webhookDeliveryStatuses.join(", ")}`, { field: "status" });
  }
  return status as WebhookDeliveryRow["status"];
}

const notFound = (id: string) => new ApiError("RESOURCE_NOT_FOUND", `webhook ${JSON.stringify(id)} not found`);
const deliveryNotFound = (id: string) => new ApiError("RESOURCE_NOT_FOUND", `webhook delivery ${JSON.stringify(id)} not found`);

/** The webhooks part of CustomerService. */
export function createWebhookHandlers(deps: AuthorizeDeps): Partial<ServiceImpl<typeof CustomerService>> {
  const { db, clock } = deps;
  const now = () => new Date(clock.now());
  // Authentication and the rpc's access policy (declared in the proto) are checked here, once.
  const caller = (ctx: HandlerContext) => authorizeCall(deps, ctx);
  // Malformed ids are simply not found: the answer does not reveal id syntax or other tenants.
  const requireWebhookId = (id: string) => {
    if (!isUuid(id)) throw notFound(id);
    return id.toLowerCase();
  };

  return {
    async createWebhook(req, ctx) {
      const principal = await caller(ctx);
      const url = checkWebhookUrl(req.url);
      const events = parseEvents(req.events);
      const description = req.description.trim();
      if (description.length > maxDescriptionLength) {
        throw validationError(`description must be at most ${maxDescriptionLength} characters`, { field: "description" });
      }
      // PostgreSQL text cannot hold U+0000: refused here rather than failing the INSERT (a 500).
      if (description.includes("\u0000")) throw validationError("description must not contain NUL (U+0000) characters", { field: "description" });
      const secret = newSecret(webhookSecretPrefix);
      const row = await db.transaction(async (tx) => {
        // The customer row lock serialises concurrent creates, so the limit holds under races.
        await lockCustomer(tx, principal.customerId);
        if ((await countWebhookEndpoints(tx, principal.customerId)) >= maxWebhookEndpointsPerCustomer) {
          throw new ApiError("RATE_LIMITED", `at most ${maxWebhookEndpointsPerCustomer} webhook endpoints per customer; delete one before adding another`, {
            details: { limit: maxWebhookEndpointsPerCustomer },
          });
        }
        return insertWebhookEndpoint(tx, { id: newId(), customerId: principal.customerId, url: url.href, events, description, secret, now: now() });
      });
      return { webhook: webhookMessage(row), secret };
    },

    async listWebhooks(req, ctx) {
      const principal = await caller(ctx);
      const page = pageRequest(req.limit, req.cursor);
      const rows = await listWebhookEndpoints(db, principal.customerId, page.limit + 1, page.after);
      const cut = toPage(rows, page, (r) => ({ at: r.created_at, id: r.id }));
      return { data: cut.rows.map(webhookMessage), page: cut.page };
    },

    async testWebhook(req, ctx) {
      const principal = await caller(ctx);
      const id = requireWebhookId(req.id);
      const endpoint = await findWebhookEndpoint(db, principal.customerId, id);
      if (endpoint === undefined) throw notFound(req.id);
      const at = now();
      const eventId = newId();
      const delivery = await insertWebhookDelivery(db, {
        id: newId(),
        endpointId: endpoint.id,
        customerId: principal.customerId,
        eventId,
        eventType: "webhook.test",
        payload: {
          id: eventId,
          type: "webhook.test",
          created_at: at.toISOString(),
          data: { webhook_id: endpoint.id, message: "This is a test event from GPU-Agent." },
        },
        now: at,
      });
      return { deliveryId: delivery.id, status: "queued" };
    },

    async rotateWebhookSecret(req, ctx) {
      const principal = await caller(ctx);
      const id = requireWebhookId(req.id);
      const secret = newSecret(webhookSecretPrefix);
      const expiresAt = new Date(clock.now() + previousSecretValidityMs);
      const row = await rotateWebhookSecret(db, principal.customerId, id, secret, expiresAt);
      if (row === undefined) throw notFound(req.id);
      return { webhook: webhookMessage(row), secret, previousSecretExpiresAt: timestampFromDate(expiresAt) };
    },

    async deleteWebhook(req, ctx) {
      const principal = await caller(ctx);
      const id = requireWebhookId(req.id);
      const deleted = await db.transaction((tx) => deleteWebhookEndpoint(tx, principal.customerId, id, now()));
      if (!deleted) throw notFound(req.id);
      return { id, deleted: true };
    },

    async listWebhookDeliveries(req, ctx) {
      const principal = await caller(ctx);
      const id = requireWebhookId(req.id);
      const page = pageRequest(req.limit, req.cursor);
      const status = parseDeliveryStatus(req.status);
      // Deleted endpoints are gone for the customer, history included (as for every other call).
      const endpoint = await findWebhookEndpoint(db, principal.customerId, id);
      if (endpoint === undefined) throw notFound(req.id);
      const rows = await listWebhookDeliveries(db, endpoint.id, page.limit + 1, status, page.after);
      const cut = toPage(rows, page, (r) => ({ at: r.created_at, id: r.id }));
      return { data: cut.rows.map(deliveryMessage), page: cut.page };
    },

    async redeliverWebhookDelivery(req, ctx) {
      const principal = await caller(ctx);
      const id = requireWebhookId(req.id);
      if (!isUuid(req.deliveryId)) throw deliveryNotFound(req.deliveryId);
      const deliveryId = req.deliveryId.toLowerCase();
      const result = await db.transaction(async (tx) => {
        const endpoint = await findWebhookEndpoint(tx, principal.customerId, id);
        if (endpoint === undefined) throw notFound(req.id);
        const original = await findDeliveryOfEndpoint(tx, endpoint.id, deliveryId);
        if (original === undefined) throw deliveryNotFound(req.deliveryId);
        return insertRedelivery(tx, original, newId(), now());
      });
      return { delivery: deliveryMessage(result.row) };
    },
  };
}
