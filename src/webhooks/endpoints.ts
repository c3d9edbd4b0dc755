/**
 * A customer's webhook endpoints, whichever protocol asked: registered (a public https URL, the
 * events it wants, a signing secret shown once) within a per-customer cap, sent a test event,
 * given a new secret (the old one signs on for a day), deleted; and their deliveries listed and
 * redelivered. Unknown, malformed, deleted and other customers' ids are all simply not found: no
 * tenant learns another's ids or the id syntax.
 */
import type { Clock } from "../platform/clock.ts";
import { ApiError, validationError } from "../platform/errors.ts";
import { isUuid, newId, newSecret } from "../platform/ids.ts";
import { lockCustomer } from "../store/customers.ts";
import type { Database, Sql } from "../store/database.ts";
import type { WebhookDeliveryRow, WebhookEndpointRow } from "../store/webhooks.ts";
import {
  countWebhookEndpoints,
  deleteWebhookEndpoint,
  findDeliveryOfEndpoint,
  findWebhookEndpoint,
  insertRedelivery,
  insertWebhookDelivery,
  insertWebhookEndpoint,
  listWebhookDeliveries,
  rotateWebhookSecret,
  webhookDeliveryStatuses,
} from "../store/webhooks.ts";
import type { PageInfo } from "../store/pagination.ts";
import { pageRequest, toPage } from "../store/pagination.ts";
import type { WebhookEventType } from "./outbox.ts";
import { webhookEventTypes } from "./outbox.ts";
import { checkWebhookUrl } from "./url-safety.ts";

/** The most live endpoints one customer may have. */
export const maxWebhookEndpointsPerCustomer = 20;
/** How long the previous secret keeps signing after a rotation. */
export const previousSecretValidityMs = 24 * 3600 * 1000;
/** Prefix of webhook signing secrets. */
export const webhookSecretPrefix = "whsec_";
const maxDescriptionLength = 500;

/** Event types an endpoint may subscribe to: all but `webhook.test`, which is sent on request only. */
export const subscribableWebhookEvents: readonly WebhookEventType[] = webhookEventTypes.filter((t) => t !== "webhook.test");

/** What managing endpoints needs (a subset of ControlPlaneDeps). */
export interface WebhookEndpointDeps {
  readonly db: Database;
  readonly clock: Clock;
}

/** An endpoint as the customer asks for it, not yet checked. */
export interface WebhookEndpointRequest {
  url: string;
  events: readonly string[];
  description: string;
}

const notFound = (id: string) => new ApiError("RESOURCE_NOT_FOUND", `webhook ${JSON.stringify(id)} not found`);
const deliveryNotFound = (id: string) => new ApiError("RESOURCE_NOT_FOUND", `webhook delivery ${JSON.stringify(id)} not found`);

/** The endpoint id, lower-cased; a malformed one is not found (named as the customer wrote it). */
function requireWebhookId(id: string): string {
  if (!isUuid(id)) throw notFound(id);
  return id.toLowerCase();
}

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

/** Registers an endpoint within the per-customer cap; returns it and its signing secret (shown once). A refusal stores nothing. */
export async function createWebhookEndpoint(
  deps: WebhookEndpointDeps,
  customerId: string,
  request: WebhookEndpointRequest,
): Promise<{ row: WebhookEndpointRow; secret: string }> {
  const url = checkWebhookUrl(request.url);
  const events = parseEvents(request.events);
  const description = request.description.trim();
  if (description.length > maxDescriptionLength) {
    throw validationError(`description must be at most ${maxDescriptionLength} characters`, { field: "description" });
  }
  // PostgreSQL text cannot hold U+0000: refused here rather than failing the INSERT (a 500).
  if (description.includes("\u0000")) throw validationError("description must not contain NUL (U+0000) characters", { field: "description" });
  const secret = newSecret(webhookSecretPrefix);
  const row = await deps.db.transaction(async (tx) => {
    // The customer row lock serialises concurrent creates, so the limit holds under races.
    await lockCustomer(tx, customerId);
    if ((await countWebhookEndpoints(tx, customerId)) >= maxWebhookEndpointsPerCustomer) {
      throw new ApiError("RATE_LIMITED", `at most ${maxWebhookEndpointsPerCustomer} webhook endpoints per customer; delete one before adding another`, {
        details: { limit: maxWebhookEndpointsPerCustomer },
      });
    }
    return insertWebhookEndpoint(tx, { id: newId(), customerId, url: url.href, events, description, secret, now: new Date(deps.clock.now()) });
  });
  return { row, secret };
}

/** One live endpoint of the customer, or RESOURCE_NOT_FOUND. */
async function customerEndpoint(sql: Sql, customerId: string, id: string): Promise<WebhookEndpointRow> {
  const endpoint = await findWebhookEndpoint(sql, customerId, requireWebhookId(id));
  if (endpoint === undefined) throw notFound(id);
  return endpoint;
}

/** Queues a `webhook.test` event for this endpoint alone; returns its delivery. */
export async function sendTestEvent(deps: WebhookEndpointDeps, customerId: string, id: string): Promise<WebhookDeliveryRow> {
  const endpoint = await customerEndpoint(deps.db, customerId, id);
  const at = new Date(deps.clock.now());
  const eventId = newId();
  return insertWebhookDelivery(deps.db, {
    id: newId(),
    endpointId: endpoint.id,
    customerId,
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
}

/** Gives the endpoint a new signing secret (shown once); the previous one keeps signing until `previousSecretExpiresAt`. */
export async function rotateEndpointSecret(
  deps: WebhookEndpointDeps,
  customerId: string,
  id: string,
): Promise<{ row: WebhookEndpointRow; secret: string; previousSecretExpiresAt: Date }> {
  const endpointId = requireWebhookId(id);
  const secret = newSecret(webhookSecretPrefix);
  const previousSecretExpiresAt = new Date(deps.clock.now() + previousSecretValidityMs);
  const row = await rotateWebhookSecret(deps.db, customerId, endpointId, secret, previousSecretExpiresAt);
  if (row === undefined) throw notFound(id);
  return { row, secret, previousSecretExpiresAt };
}

/** Deletes the endpoint; its pending deliveries are given up. Returns the id deleted. */
export async function removeWebhookEndpoint(deps: WebhookEndpointDeps, customerId: string, id: string): Promise<string> {
  const endpointId = requireWebhookId(id);
  const deleted = await deps.db.transaction((tx) => deleteWebhookEndpoint(tx, customerId, endpointId, new Date(deps.clock.now())));
  if (!deleted) throw notFound(id);
  return endpointId;
}

function parseDeliveryStatus(value: string): WebhookDeliveryRow["status"] | undefined {
  const status = value.trim();
  if (status === "") return undefined;
  if (!(webhookDeliveryStatuses as readonly string[]).includes(status)) {
    throw validationError(`status must be one of ${webhookDeliveryStatuses.join(", ")}`, { field: "status" });
  }
  return status as WebhookDeliveryRow["status"];
}

/**
 * One page of the endpoint's deliveries, newest first, optionally of one status ("" for all).
 * A deleted endpoint is gone for the customer, history included (as for every other call).
 */
export async function endpointDeliveriesPage(
  db: Database,
  customerId: string,
  id: string,
  query: { limit: number; cursor: string; status: string },
): Promise<{ rows: WebhookDeliveryRow[]; page: PageInfo }> {
  const endpointId = requireWebhookId(id);
  const page = pageRequest(query.limit, query.cursor);
  const status = parseDeliveryStatus(query.status);
  const endpoint = await findWebhookEndpoint(db, customerId, endpointId);
  if (endpoint === undefined) throw notFound(id);
  const rows = await listWebhookDeliveries(db, endpoint.id, page.limit + 1, status, page.after);
  return toPage(rows, page, (r) => ({ at: r.created_at, id: r.id }));
}

/** Queues a redelivery of one of the endpoint's deliveries (or answers the one already pending for that event). */
export async function redeliver(deps: WebhookEndpointDeps, customerId: string, id: string, deliveryId: string): Promise<WebhookDeliveryRow> {
  const endpointId = requireWebhookId(id);
  if (!isUuid(deliveryId)) throw deliveryNotFound(deliveryId);
  const result = await deps.db.transaction(async (tx) => {
    const endpoint = await findWebhookEndpoint(tx, customerId, endpointId);
    if (endpoint === undefined) throw notFound(id);
    const original = await findDeliveryOfEndpoint(tx, endpoint.id, deliveryId.toLowerCase());
    if (original === undefined) throw deliveryNotFound(deliveryId);
    return insertRedelivery(tx, original, newId(), new Date(deps.clock.now()));
  });
  return result.row;
}
