/**
 * `gpuctl webhooks …`: manage webhook endpoints and their deliveries over the SDK, and `verify`,
 * the receiver's helper: checks a delivery's `GPU-Agent-Signature` against one or more secrets
 * (during a rotation, the new and the previous) with the SDK's verifier, the same code the server
 * signs with.
 */
import { readFile } from "node:fs/promises";
import type { Webhook, WebhookDelivery } from "../sdk/index.ts";
import { defaultWebhookToleranceSeconds, verifyWebhookSignature } from "../sdk/index.ts";
import {
  CreateWebhookResponseSchema,
  DeleteWebhookResponseSchema,
  ListWebhookDeliveriesResponseSchema,
  ListWebhooksResponseSchema,
  RotateWebhookSecretResponseSchema,
  TestWebhookResponseSchema,
  WebhookDeliverySchema,
} from "../gen/gpuagent/customer/v1/customer_pb.ts";
import type { CliContext, JsonOption } from "./context.ts";
import type { IdOptions, ListOptions } from "./datasets.ts";
import { pageOf } from "./datasets.ts";
import { formatTime, printFields, printJson, printListPage, printMessage } from "./output.ts";

/** Default accepted timestamp age of `webhooks verify`, in seconds. */
export const defaultToleranceSeconds = defaultWebhookToleranceSeconds;

/** Options of `webhooks verify`. */
export interface WebhookVerifyOptions extends JsonOption {
  /** The raw request body, exactly as received. */
  bodyFile: string;
  /** The GPU-Agent-Signature header value. */
  signature: string;
  secrets: string[];
  toleranceS: number;
}

/** Exit 0 when the signature holds for one of the secrets, 1 otherwise. */
export async function webhooksVerify(opts: WebhookVerifyOptions, ctx: CliContext): Promise<number> {
  const body = await readFile(opts.bodyFile);
  const valid = verifyWebhookSignature(body, opts.signature, opts.secrets, opts.toleranceS, Math.floor(ctx.clock.now() / 1000));
  if (opts.json) printJson(ctx.io, { valid });
  else if (valid) ctx.io.stdout("signature valid\n");
  else ctx.io.stderr("signature INVALID (wrong secret, altered body, or a timestamp outside the tolerance)\n");
  return valid ? 0 : 1;
}

/** Options of `webhooks create`. */
export interface WebhookCreateOptions extends JsonOption {
  url: string;
  events: string[];
  description?: string | undefined;
}

/** Creates an endpoint and shows its signing secret, which the API shows this once only. */
export async function webhooksCreate(opts: WebhookCreateOptions, ctx: CliContext): Promise<number> {
  const res = await ctx.customer().webhooks.create({ url: opts.url, events: opts.events, description: opts.description ?? "" });
  if (opts.json) {
    printMessage(ctx.io, CreateWebhookResponseSchema, res);
    return 0;
  }
  printFields(ctx.io, [...(res.webhook === undefined ? [] : webhookFields(res.webhook)), ["secret", res.secret]]);
  ctx.io.stderr("store the secret now: it is not shown again (webhooks rotate makes a new one)\n");
  return 0;
}

/** One page of endpoints. */
export async function webhooksList(opts: ListOptions, ctx: CliContext): Promise<number> {
  printListPage(ctx.io, opts, ListWebhooksResponseSchema, await ctx.customer().webhooks.list(pageOf(opts)), {
    columns: ["id", "url", "events", "created"],
    row: (w: Webhook) => [w.id, w.url, w.events.join(","), formatTime(w.createdAt)],
    empty: "no webhooks",
  });
  return 0;
}

/** Queues a `webhook.test` delivery to the endpoint. */
export async function webhooksTest(opts: IdOptions, ctx: CliContext): Promise<number> {
  const res = await ctx.customer().webhooks.test(opts.id);
  if (opts.json) printMessage(ctx.io, TestWebhookResponseSchema, res);
  else printFields(ctx.io, [["delivery_id", res.deliveryId], ["status", res.status]]);
  return 0;
}

/** A new signing secret; the previous one keeps signing until the time shown. */
export async function webhooksRotate(opts: IdOptions, ctx: CliContext): Promise<number> {
  const res = await ctx.customer().webhooks.rotate(opts.id);
  if (opts.json) {
    printMessage(ctx.io, RotateWebhookSecretResponseSchema, res);
    return 0;
  }
  printFields(ctx.io, [
    ["id", opts.id],
    ["secret", res.secret],
    ["previous_secret_expires_at", formatTime(res.previousSecretExpiresAt)],
  ]);
  ctx.io.stderr("store the new secret now: it is not shown again\n");
  return 0;
}

/** Deletes an endpoint; exit 1 when the server deleted nothing. */
export async function webhooksDelete(opts: IdOptions, ctx: CliContext): Promise<number> {
  const res = await ctx.customer().webhooks.delete(opts.id);
  if (opts.json) printMessage(ctx.io, DeleteWebhookResponseSchema, res);
  else printFields(ctx.io, [["id", res.id], ["deleted", String(res.deleted)]]);
  if (res.deleted) return 0;
  if (!opts.json) ctx.io.stderr(`webhook ${opts.id} was not deleted: nothing to do\n`);
  return 1;
}

/** Options of `webhooks deliveries`. */
export interface WebhookDeliveriesOptions extends ListOptions {
  id: string;
  status?: string | undefined;
}

const deliveryColumns = ["id", "event", "status", "attempts", "last_status", "created", "note"];

function deliveryRow(d: WebhookDelivery): string[] {
  return [d.id, d.eventType, d.status, String(d.attempts), d.lastStatusCode === 0 ? "" : String(d.lastStatusCode), formatTime(d.createdAt), d.lastError];
}

/** One page of an endpoint's deliveries, newest first, optionally filtered by status. */
export async function webhooksDeliveries(opts: WebhookDeliveriesOptions, ctx: CliContext): Promise<number> {
  const res = await ctx.customer().webhooks.deliveries(opts.id, { ...pageOf(opts), ...(opts.status === undefined ? {} : { status: opts.status }) });
  printListPage(ctx.io, opts, ListWebhookDeliveriesResponseSchema, res, { columns: deliveryColumns, row: deliveryRow, empty: "no deliveries" });
  return 0;
}

/** Options of `webhooks redeliver`. */
export interface WebhookRedeliverOptions extends IdOptions {
  deliveryId: string;
}

/** Queues a new delivery of the same event. */
export async function webhooksRedeliver(opts: WebhookRedeliverOptions, ctx: CliContext): Promise<number> {
  const delivery = await ctx.customer().webhooks.redeliver(opts.id, opts.deliveryId);
  if (opts.json) printMessage(ctx.io, WebhookDeliverySchema, delivery);
  else printFields(ctx.io, deliveryColumns.map((c, i) => [c, deliveryRow(delivery)[i]]));
  return 0;
}

function webhookFields(w: Webhook): [string, unknown][] {
  return [
    ["id", w.id],
    ["url", w.url],
    ["events", w.events.join(",")],
    ["description", w.description],
    ["created_at", formatTime(w.createdAt)],
  ];
}
