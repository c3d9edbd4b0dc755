/**
 * CustomerService handlers: Webhook endpoints: create, list, test, rotate the secret, delete; and
 * their deliveries: list (with a status filter), redeliver. What each does is
 * src/webhooks/endpoints.ts; delivery itself is src/webhooks/dispatcher.ts.
 */
import type { MessageInitShape } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import type { HandlerContext, ServiceImpl } from "@connectrpc/connect";
import { authorizeCall } from "../../auth/authorize.ts";
import type { AuthorizeDeps } from "../../auth/authorize.ts";
import type { CustomerService, WebhookDeliverySchema, WebhookSchema } from "../../gen/gpuagent/customer/v1/customer_pb.ts";
import { pageRequest, toPage } from "../../store/pagination.ts";
import type { WebhookDeliveryRow, WebhookEndpointRow } from "../../store/webhooks.ts";
import { listWebhookEndpoints } from "../../store/webhooks.ts";
import {
  createWebhookEndpoint,
  endpointDeliveriesPage,
  redeliver,
  removeWebhookEndpoint,
  rotateEndpointSecret,
  sendTestEvent,
} from "../../webhooks/endpoints.ts";

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

/** The webhooks part of CustomerService. */
export function createWebhookHandlers(deps: AuthorizeDeps): Partial<ServiceImpl<typeof CustomerService>> {
  const { db } = deps;
  // Authentication and the rpc's access policy (declared in the proto) are checked here, once.
  const caller = (ctx: HandlerContext) => authorizeCall(deps, ctx);

  return {
    async createWebhook(req, ctx) {
      const principal = await caller(ctx);
      const { row, secret } = await createWebhookEndpoint(deps, principal.customerId, { url: req.url, events: req.events, description: req.description });
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
      const delivery = await sendTestEvent(deps, principal.customerId, req.id);
      return { deliveryId: delivery.id, status: "queued" };
    },

    async rotateWebhookSecret(req, ctx) {
      const principal = await caller(ctx);
      const { row, secret, previousSecretExpiresAt } = await rotateEndpointSecret(deps, principal.customerId, req.id);
      return { webhook: webhookMessage(row), secret, previousSecretExpiresAt: timestampFromDate(previousSecretExpiresAt) };
    },

    async deleteWebhook(req, ctx) {
      const principal = await caller(ctx);
      return { id: await removeWebhookEndpoint(deps, principal.customerId, req.id), deleted: true };
    },

    async listWebhookDeliveries(req, ctx) {
      const principal = await caller(ctx);
      const { rows, page } = await endpointDeliveriesPage(db, principal.customerId, req.id, { limit: req.limit, cursor: req.cursor, status: req.status });
      return { data: rows.map(deliveryMessage), page };
    },

    async redeliverWebhookDelivery(req, ctx) {
      const principal = await caller(ctx);
      return { delivery: deliveryMessage(await redeliver(deps, principal.customerId, req.id, req.deliveryId)) };
    },
  };
}
