/**
 * SQL for webhook endpoints (customer-managed) and their deliveries (the outbox the dispatcher
 * drains). Endpoints are soft-deleted: deliveries reference them and stay as history.
 */
import type { Sql } from "./database.ts";

/** A row of webhook_endpoints. */
export interface WebhookEndpointRow {
  id: string;
  customer_id: string;
  url: string;
  events: string[];
  description: string;
  secret: string;
  previous_secret: string | null;
  previous_secret_expires_at: Date | null;
  created_at: Date;
  deleted_at: Date | null;
}

/** A row of webhook_deliveries. */
export interface WebhookDeliveryRow {
  id: string;
  endpoint_id: string;
  customer_id: string;
  event_id: string;
  event_type: string;
  payload: unknown;
  status: "pending" | "delivered" | "failed";
  attempts: number;
  next_attempt_at: Date;
  last_status_code: number | null;
  last_error: string;
  created_at: Date;
  delivered_at: Date | null;
  /** The first delivery of the same event to this endpoint, when this row is a redelivery. */
  redelivery_of: string | null;
}

/** Delivery statuses. */
export const webhookDeliveryStatuses = ["pending", "delivered", "failed"] as const;

/** A delivery claimed by a dispatcher, with what it needs of its endpoint. */
export interface ClaimedDelivery {
  id: string;
  endpoint_id: string;
  event_id: string;
  event_type: string;
  payload: unknown;
  /** Attempts including the one just claimed. */
  attempts: number;
  /** The lease: the claim is held until then, and this value fences the outcome's update. */
  lease_until: Date;
  url: string;
  secret: string;
  previous_secret: string | null;
  previous_secret_expires_at: Date | null;
  endpoint_deleted: boolean;
}

/** How many live (not deleted) endpoints the customer has. */
export async function countWebhookEndpoints(sql: Sql, customerId: string): Promise<number> {
  const [row] = await sql.query<{ n: number }>(
    `SELECT count(*)::int AS n FROM webhook_endpoints WHERE customer_id = $1 AND deleted_at IS NULL`,
    [customerId],
  );
  return row?.n ?? 0;
}

/** Inserts an endpoint. */
export async function insertWebhookEndpoint(
  sql: Sql,
  row: { id: string; customerId: string; url: string; events: readonly string[]; description: string; secret: string; now: Date },
): Promise<WebhookEndpointRow> {
  const [created] = await sql.query<WebhookEndpointRow>(
    `INSERT INTO webhook_endpoints (id, customer_id, url, events, description, secret, created_at)
     VALUES ($1, $2, $3, $4::text[], $5, $6, $7) RETURNING *`,
    [row.id, row.customerId, row.url, row.events, row.description, row.secret, row.now],
  );
  return created!;
}

/** One live endpoint of this customer, or undefined (unknown, deleted or another customer's). */
export async function findWebhookEndpoint(sql: Sql, customerId: string, id: string): Promise<WebhookEndpointRow | undefined> {
  const [row] = await sql.query<WebhookEndpointRow>(
    `SELECT * FROM webhook_endpoints WHERE id = $1 AND customer_id = $2 AND deleted_at IS NULL`,
    [id, customerId],
  );
  return row;
}

/** A customer's live endpoints, newest first, after the cursor key. */
export async function listWebhookEndpoints(
  sql: Sql,
  customerId: string,
  limit: number,
  after?: { at: Date; id: string },
): Promise<WebhookEndpointRow[]> {
  return after === undefined
    ? sql.query<WebhookEndpointRow>(
        `SELECT * FROM webhook_endpoints WHERE customer_id = $1 AND deleted_at IS NULL ORDER BY created_at DESC, id DESC LIMIT $2`,
        [customerId, limit],
      )
    : sql.query<WebhookEndpointRow>(
        `SELECT * FROM webhook_endpoints WHERE customer_id = $1 AND deleted_at IS NULL AND (created_at, id) < ($3, $4)
         ORDER BY created_at DESC, id DESC LIMIT $2`,
        [customerId, limit, after.at, after.id],
      );
}

/**
 * Replaces the secret of a live endpoint; the old one stays valid (signs too) until
 * `previousExpiresAt`. A second rotation inside that window retires the oldest secret at once.
 */
export async function rotateWebhookSecret(
  sql: Sql,
  customerId: string,
  id: string,
  newSecret: string,
  previousExpiresAt: Date,
): Promise<WebhookEndpointRow | undefined> {
  const [row] = await sql.query<WebhookEndpointRow>(
    `UPDATE webhook_endpoints SET previous_secret = secret, previous_secret_expires_at = $4, secret = $3
     WHERE id = $1 AND customer_id = $2 AND deleted_at IS NULL RETURNING *`,
    [id, customerId, newSecret, previousExpiresAt],
  );
  return row;
}

/**
 * Soft-deletes a live endpoint and gives up its pending deliveries (nobody may receive them any
 * more). Returns false when there was no such live endpoint of this customer.
 */
export async function deleteWebhookEndpoint(sql: Sql, customerId: string, id: string, now: Date): Promise<boolean> {
  const rows = await sql.query(
    `UPDATE webhook_endpoints SET deleted_at = $3 WHERE id = $1 AND customer_id = $2 AND deleted_at IS NULL RETURNING id`,
    [id, customerId, now],
  );
  if (rows.length === 0) return false;
  await sql.query(
    `UPDATE webhook_deliveries SET status = 'failed', last_error = 'the webhook endpoint was deleted'
     WHERE endpoint_id = $1 AND status = 'pending'`,
    [id],
  );
  return true;
}

/**
 * The outbox write of one event: a pending delivery, due now, for each live endpoint of the
 * customer subscribed to `eventType`. Part of the transaction whose change caused the event.
 * Returns how many deliveries were queued.
 */
export async function insertDeliveriesToSubscribers(
  sql: Sql,
  event: { customerId: string; eventId: string; eventType: string; payload: Record<string, unknown>; now: Date },
): Promise<number> {
  const rows = await sql.query<{ id: string }>(
    `INSERT INTO webhook_deliveries (id, endpoint_id, customer_id, event_id, event_type, payload, status, next_attempt_at, created_at)
     SELECT gen_random_uuid(), e.id, e.customer_id, $2, $3, $4::jsonb, 'pending', $5, $5
     FROM webhook_endpoints e
     WHERE e.customer_id = $1 AND e.deleted_at IS NULL AND $3 = ANY(e.events)
     RETURNING id`,
    [event.customerId, event.eventId, event.eventType, JSON.stringify(event.payload), event.now],
  );
  return rows.length;
}

/** Queues one delivery for one endpoint only (the `webhook.test` event, which nobody subscribes to). */
export async function insertWebhookDelivery(
  sql: Sql,
  row: { id: string; endpointId: string; customerId: string; eventId: string; eventType: string; payload: Record<string, unknown>; now: Date },
): Promise<WebhookDeliveryRow> {
  const [created] = await sql.query<WebhookDeliveryRow>(
    `INSERT INTO webhook_deliveries (id, endpoint_id, customer_id, event_id, event_type, payload, status, next_attempt_at, created_at)
     VALUES ($1, $2, $3, $4, $5, $6::jsonb, 'pending', $7, $7) RETURNING *`,
    [row.id, row.endpointId, row.customerId, row.eventId, row.eventType, row.payload, row.now],
  );
  return created!;
}

/** One delivery by id (tests, support). */
export async function findWebhookDelivery(sql: Sql, id: string): Promise<WebhookDeliveryRow | undefined> {
  const [row] = await sql.query<WebhookDeliveryRow>(`SELECT * FROM webhook_deliveries WHERE id = $1`, [id]);
  return row;
}

/**
 * An endpoint's deliveries, newest first, after the cursor key, optionally of one status. The
 * caller has checked that the endpoint is the customer's.
 */
export async function listWebhookDeliveries(
  sql: Sql,
  endpointId: string,
  limit: number,
  status: WebhookDeliveryRow["status"] | undefined,
  after?: { at: Date; id: string },
): Promise<WebhookDeliveryRow[]> {
  const params: unknown[] = [endpointId, limit];
  let where = `endpoint_id = $1`;
  if (status !== undefined) {
    params.push(status);
    where += ` AND status = $${params.length}`;
  }
  if (after !== undefined) {
    params.push(after.at, after.id);
    where += ` AND (created_at, id) < ($${params.length - 1}, $${params.length})`;
  }
  return sql.query<WebhookDeliveryRow>(`SELECT * FROM webhook_deliveries WHERE ${where} ORDER BY created_at DESC, id DESC LIMIT $2`, params);
}

/** One delivery of this endpoint, or undefined. */
export async function findDeliveryOfEndpoint(sql: Sql, endpointId: string, id: string): Promise<WebhookDeliveryRow | undefined> {
  const [row] = await sql.query<WebhookDeliveryRow>(`SELECT * FROM webhook_deliveries WHERE id = $1 AND endpoint_id = $2`, [id, endpointId]);
  return row;
}

/**
 * Queues a redelivery of `original`: a new pending row with the same event id, type and payload,
 * linked to the first delivery of that event (`redelivery_of`), due now. When a redelivery of that
 * event is already pending it is returned instead (`created` false), so repeated requests do not
 * pile up copies. Run inside a transaction (the lock on the first delivery serialises requests).
 */
export async function insertRedelivery(
  sql: Sql,
  original: WebhookDeliveryRow,
  id: string,
  now: Date,
): Promise<{ row: WebhookDeliveryRow; created: boolean }> {
  const rootId = original.redelivery_of ?? original.id;
  await sql.query(`SELECT id FROM webhook_deliveries WHERE id = $1 FOR UPDATE`, [rootId]);
  const [pending] = await sql.query<WebhookDeliveryRow>(
    `SELECT * FROM webhook_deliveries WHERE redelivery_of = $1 AND status = 'pending'`,
    [rootId],
  );
  if (pending !== undefined) return { row: pending, created: false };
  const [created] = await sql.query<WebhookDeliveryRow>(
    `INSERT INTO webhook_deliveries (id, endpoint_id, customer_id, event_id, event_type, payload, status, next_attempt_at, created_at, redelivery_of)
     SELECT $1, endpoint_id, customer_id, event_id, event_type, payload, 'pending', $2, $2, $3
     FROM webhook_deliveries WHERE id = $3 RETURNING *`,
    [id, now, rootId],
  );
  return { row: created!, created: true };
}

/**
 * Claims up to `limit` due deliveries for this dispatcher. Run inside a transaction: the rows are
 * locked `FOR UPDATE SKIP LOCKED` (replicas claiming at the same time take disjoint rows), then
 * leased by moving `next_attempt_at` to `leaseUntil` and counting the attempt, so once the
 * transaction commits no other replica sees them as due while the HTTP call runs. A dispatcher that
 * dies mid-delivery loses its lease, and the row is retried when the lease ends.
 */
export async function claimDueDeliveries(sql: Sql, now: Date, leaseUntil: Date, limit: number): Promise<ClaimedDelivery[]> {
  const due = await sql.query<{ id: string }>(
    `SELECT id FROM webhook_deliveries
     WHERE status = 'pending' AND next_attempt_at <= $1
     ORDER BY next_attempt_at, id
     LIMIT $2
     FOR UPDATE SKIP LOCKED`,
    [now, limit],
  );
  if (due.length === 0) return [];
  return sql.query<ClaimedDelivery>(
    `UPDATE webhook_deliveries d SET next_attempt_at = $2, attempts = d.attempts + 1
     FROM webhook_endpoints e
     WHERE d.id = ANY($1::uuid[]) AND e.id = d.endpoint_id
     RETURNING d.id, d.endpoint_id, d.event_id, d.event_type, d.payload, d.attempts, d.next_attempt_at AS lease_until,
               e.url, e.secret, e.previous_secret, e.previous_secret_expires_at, (e.deleted_at IS NOT NULL) AS endpoint_deleted`,
    [due.map((r) => r.id), leaseUntil],
  );
}

/** Records a successful delivery, if this dispatcher still holds the lease. */
export async function markDeliveryDelivered(sql: Sql, id: string, leaseUntil: Date, statusCode: number, now: Date): Promise<boolean> {
  const rows = await sql.query(
    `UPDATE webhook_deliveries SET status = 'delivered', delivered_at = $4, last_status_code = $3, last_error = ''
     WHERE id = $1 AND status = 'pending' AND next_attempt_at = $2 RETURNING id`,
    [id, leaseUntil, statusCode, now],
  );
  return rows.length === 1;
}

/** Records a failed attempt to retry at `nextAttemptAt`, if this dispatcher still holds the lease. */
export async function markDeliveryRetry(
  sql: Sql,
  id: string,
  leaseUntil: Date,
  statusCode: number | null,
  error: string,
  nextAttemptAt: Date,
): Promise<boolean> {
  const rows = await sql.query(
    `UPDATE webhook_deliveries SET next_attempt_at = $5, last_status_code = $3, last_error = $4
     WHERE id = $1 AND status = 'pending' AND next_attempt_at = $2 RETURNING id`,
    [id, leaseUntil, statusCode, error, nextAttemptAt],
  );
  return rows.length === 1;
}

/** Gives a delivery up for good, if this dispatcher still holds the lease. */
export async function markDeliveryFailed(sql: Sql, id: string, leaseUntil: Date, statusCode: number | null, error: string): Promise<boolean> {
  const rows = await sql.query(
    `UPDATE webhook_deliveries SET status = 'failed', last_status_code = $3, last_error = $4
     WHERE id = $1 AND status = 'pending' AND next_attempt_at = $2 RETURNING id`,
    [id, leaseUntil, statusCode, error],
  );
  return rows.length === 1;
}
