/**
 * The webhook outbox. An event is written in the same transaction as the
 * state change that causes it, one delivery row per subscribed endpoint, so no
 * event is lost if the process dies and none is sent for a change that rolled
 * back. The dispatcher (dispatcher.ts) delivers the rows.
 */
import { newId } from "../platform/ids.ts";
import type { Sql } from "../store/database.ts";
import { insertDeliveriesToSubscribers } from "../store/webhooks.ts";

/** Event types a webhook may subscribe to. */
export const webhookEventTypes = ["job.completed", "job.failed", "job.cancelled", "job.expired", "artifact.ready", "webhook.test"] as const;
/** One event type. */
export type WebhookEventType = (typeof webhookEventTypes)[number];

/** Writes one delivery per endpoint of `customerId` subscribed to `type`; returns how many. */
export async function enqueueWebhookEvent(
  tx: Sql,
  customerId: string,
  type: WebhookEventType,
  data: Record<string, unknown>,
  now: Date,
): Promise<number> {
  const eventId = newId();
  const payload = { id: eventId, type, created_at: now.toISOString(), data };
  return insertDeliveriesToSubscribers(tx, { customerId, eventId, eventType: type, payload, now });
}
