/**
 * The webhook dispatcher: drains the outbox (webhook_deliveries) written by outbox.ts and the
 * TestWebhook handler. Safe to run on every replica at once: rows are claimed with
 * `FOR UPDATE SKIP LOCKED` and leased (next_attempt_at pushed past the HTTP call) before any
 * request is made, and an outcome is only recorded by the holder of the lease.
 *
 * A delivery is an HTTPS POST of the event JSON, signed (signature.ts), with a 10 s limit, to an
 * address that was resolved and checked to be public just before (url-safety.ts); the connection
 * goes to that very address, so DNS cannot be re-pointed between the check and the connect.
 * Redirects are never followed (a 3xx is a failed attempt). A 2xx is delivered; anything else is
 * retried with exponential backoff and jitter until `maxAttempts`, then the delivery is `failed`.
 */
import type { OutgoingHttpHeaders } from "node:http";
import { request as httpsRequest } from "node:https";
import type { LookupFunction } from "node:net";
import type { Logger } from "pino";
import type { Clock } from "../platform/clock.ts";
import type { Database } from "../store/database.ts";
import type { ClaimedDelivery } from "../store/webhooks.ts";
import { claimDueDeliveries, markDeliveryDelivered, markDeliveryFailed, markDeliveryRetry } from "../store/webhooks.ts";
import { signPayload, signatureHeaderName } from "./signature.ts";
import type { ResolvedAddress, Resolver } from "./url-safety.ts";
import { resolvePublicAddress, systemResolver } from "./url-safety.ts";

/** One HTTP request of a delivery, already resolved to the checked address. */
export interface WebhookHttpRequest {
  readonly url: URL;
  /** The address to connect to (checked); the URL's host name still goes into SNI, certificate check and Host. */
  readonly address: ResolvedAddress;
  readonly headers: Readonly<Record<string, string>>;
  readonly body: string;
  /** Aborted when the delivery's time is up. */
  readonly signal: AbortSignal;
}

/** What came back: the status code and the start of the body (for last_error). */
export interface WebhookHttpResponse {
  readonly status: number;
  readonly bodySnippet: string;
}

/** Sends one delivery request; rejects on network errors and on abort. */
export type WebhookTransport = (request: WebhookHttpRequest) => Promise<WebhookHttpResponse>;

/** Options of {@link createWebhookDispatcher}. */
export interface WebhookDispatcherOptions {
  /** Resolves host names at delivery time; default `dns.lookup(host, { all: true })`. */
  readonly resolver?: Resolver;
  /** Sends the request; default {@link createHttpsTransport} with `tls`. */
  readonly transport?: WebhookTransport;
  /**
   * TESTS ONLY: skip the public-address check so a receiver on 127.0.0.1 can be reached. Never set
   * in production: it reopens SSRF to the control plane's own network. Default false.
   */
  readonly allowPrivateAddresses?: boolean;
  /** TLS settings of the default transport; `ca` (PEM) replaces the system roots (tests with a self-signed receiver). */
  readonly tls?: { readonly ca?: string };
  /** Deliveries claimed per pass (default 10). */
  readonly batchSize?: number;
  /** Pause between passes that found nothing more to do (default 1000 ms). */
  readonly pollIntervalMs?: number;
  /** Base of the exponential backoff (default {@link webhookRetryBaseMs}, 10 s); tests shorten it. */
  readonly retryBaseMs?: number;
  /**
   * False: `run` delivers nothing and returns at once (an API-only replica; the other replicas
   * drain the outbox). Deliveries stay queued. Default true.
   */
  readonly deliver?: boolean;
  /** Attempts before a delivery is `failed` (default 8: about 21 minutes of retries). */
  readonly maxAttempts?: number;
  /** Limit of one HTTP request (default 10 000 ms). */
  readonly timeoutMs?: number;
  /** How long a claim is held; must exceed timeoutMs (default 60 000 ms). */
  readonly leaseMs?: number;
  /**
   * Random number in [0, 1) for the retry jitter. Required by {@link createWebhookDispatcher}; the
   * control plane passes `systemRandom` (src/platform/random.ts) unless its caller gives one.
   */
  readonly random?: () => number;
  /** Called once per attempt with its outcome (e.g. for the deliveries-by-outcome metric). */
  readonly onOutcome?: (outcome: WebhookAttemptOutcome) => void;
}

/** How one attempt ended. */
export type WebhookAttemptOutcome = "delivered" | "retry" | "failed" | "lost_lease";

/** A running dispatcher. */
export interface WebhookDispatcher {
  /** Delivers until `signal` aborts; resolves then (after finishing the pass in progress). */
  run(signal: AbortSignal): Promise<void>;
  /** One pass: claims the due deliveries and attempts each once; resolves with how many were claimed. */
  deliverDue(): Promise<number>;
}

/** Base of the exponential backoff. */
export const webhookRetryBaseMs = 10_000;
/** Longest wait between two attempts. */
export const webhookRetryCapMs = 3_600_000;

/**
 * The wait after the `attempts`-th failed attempt: 10 s (`baseMs`) · 2^(attempts-1), capped at 1 h,
 * times a jitter factor in [0.8, 1.2) so that endpoints that failed together do not retry in lockstep.
 */
export function webhookRetryDelayMs(attempts: number, random: () => number, baseMs: number = webhookRetryBaseMs): number {
  const base = Math.min(webhookRetryCapMs, baseMs * 2 ** Math.max(0, attempts - 1));
  return Math.round(Math.min(webhookRetryCapMs, base * (0.8 + 0.4 * random())));
}

const maxSnippetBytes = 512;

/**
 * The default transport: node:https to the checked address (via a `lookup` that answers it, so no
 * second DNS query happens), with SNI and certificate verification against the URL's host name,
 * no redirects, no proxy, no connection reuse across endpoints.
 */
export function createHttpsTransport(tls: { readonly ca?: string } = {}): WebhookTransport {
  return (req) =>
    new Promise<WebhookHttpResponse>((resolve, reject) => {
      const lookup: LookupFunction = (_hostname, options, callback) => {
        if (options.all === true) {
          (callback as unknown as (err: null, addresses: { address: string; family: number }[]) => void)(null, [
            { address: req.address.address, family: req.address.family },
          ]);
        } else {
          callback(null, req.address.address, req.address.family);
        }
      };
      const headers: OutgoingHttpHeaders = { ...req.headers, "content-length": Buffer.byteLength(req.body) };
      const client = httpsRequest(
        req.url,
        {
          method: "POST",
          headers,
          lookup,
          agent: false,
          signal: req.signal,
          ...(tls.ca === undefined ? {} : { ca: tls.ca }),
        },
        (res) => {
          const chunks: Buffer[] = [];
          let size = 0;
          const finish = () =>
            resolve({ status: res.statusCode ?? 0, bodySnippet: Buffer.concat(chunks).subarray(0, maxSnippetBytes).toString("utf8") });
          res.on("data", (chunk: Buffer) => {
            chunks.push(chunk);
            size += chunk.length;
            // The status is the answer; a snippet is enough for last_error, so a huge or
            // endlessly dripping body is not read to its end.
            if (size >= maxSnippetBytes) {
              finish();
              res.destroy();
            }
          });
          res.on("end", finish);
          res.on("error", reject);
          // Closed without "end" (aborted by the deadline, reset by the peer): the promise is
          // settled already when finish() ran, otherwise this rejects it.
          res.on("close", () => reject(new Error("the response was cut off")));
        },
      );
      client.on("error", reject);
      client.end(req.body);
    });
}

/** What the dispatcher needs (a subset of ControlPlaneDeps). */
export interface WebhookDispatcherDeps {
  readonly db: Database;
  readonly clock: Clock;
  readonly logger: Logger;
}

/** Builds a dispatcher over the control plane's database and clock, with the random source of its retry jitter. */
export function createWebhookDispatcher(
  deps: WebhookDispatcherDeps,
  options: WebhookDispatcherOptions & { readonly random: () => number },
): WebhookDispatcher {
  const { db, clock, logger } = deps;
  const resolver = options.resolver ?? systemResolver;
  const transport = options.transport ?? createHttpsTransport(options.tls);
  const allowPrivate = options.allowPrivateAddresses ?? false;
  const batchSize = options.batchSize ?? 10;
  const pollIntervalMs = options.pollIntervalMs ?? 1000;
  const maxAttempts = options.maxAttempts ?? 8;
  const timeoutMs = options.timeoutMs ?? 10_000;
  const leaseMs = Math.max(options.leaseMs ?? 60_000, timeoutMs * 2);
  const random = options.random;
  const retryBaseMs = options.retryBaseMs ?? webhookRetryBaseMs;
  if (!(retryBaseMs > 0)) throw new Error(`retryBaseMs must be positive, got ${retryBaseMs}`);
  const deliver = options.deliver ?? true;
  const report = (outcome: WebhookAttemptOutcome) => {
    try {
      options.onOutcome?.(outcome);
    } catch {
      // A metrics callback must never break delivery.
    }
  };

  if (allowPrivate) logger.warn("WEBHOOK DISPATCHER ALLOWS PRIVATE ADDRESSES (loopback, private networks): SSRF protection is OFF; for tests only");
  if (retryBaseMs !== webhookRetryBaseMs) logger.warn({ retryBaseMs }, "webhook retry backoff base changed from its default");

  /** Sends one request with the clock-driven time limit; returns the response or throws. */
  async function send(delivery: ClaimedDelivery, url: URL, address: ResolvedAddress): Promise<WebhookHttpResponse> {
    const body = JSON.stringify(delivery.payload);
    const nowMs = clock.now();
    const secrets = [delivery.secret];
    if (delivery.previous_secret !== null && delivery.previous_secret_expires_at !== null && delivery.previous_secret_expires_at.getTime() > nowMs) {
      secrets.push(delivery.previous_secret);
    }
    const headers = {
      "content-type": "application/json",
      "user-agent": "GPU-Agent-Webhooks/1",
      [signatureHeaderName]: signPayload(body, secrets, Math.floor(nowMs / 1000)),
      "GPU-Agent-Event": delivery.event_type,
      "GPU-Agent-Delivery": delivery.id,
    };
    const deadline = new AbortController();
    const done = new AbortController();
    // The time limit runs on the injected clock; `done` stops the timer once the request is over.
    clock.sleep(timeoutMs, done.signal).then(
      () => deadline.abort(new Error(`no response within ${timeoutMs / 1000} s`)),
      () => undefined,
    );
    try {
      return await transport({ url, address, headers, body, signal: deadline.signal });
    } catch (error) {
      if (deadline.signal.aborted) throw deadline.signal.reason;
      throw error;
    } finally {
      done.abort();
    }
  }

  async function attempt(delivery: ClaimedDelivery): Promise<void> {
    const lease = delivery.lease_until;
    const fail = async (statusCode: number | null, reason: string): Promise<void> => {
      const at = clock.now();
      if (delivery.attempts >= maxAttempts) {
        const message = `WEBHOOK_DELIVERY_FAILED: gave up after ${delivery.attempts} attempts; last error: ${reason}`;
        const ok = await markDeliveryFailed(db, delivery.id, lease, statusCode, message);
        report(ok ? "failed" : "lost_lease");
        logger.warn({ deliveryId: delivery.id, endpointId: delivery.endpoint_id, attempts: delivery.attempts, reason }, "webhook delivery failed for good");
        return;
      }
      const next = new Date(at + webhookRetryDelayMs(delivery.attempts, random, retryBaseMs));
      const ok = await markDeliveryRetry(db, delivery.id, lease, statusCode, reason, next);
      report(ok ? "retry" : "lost_lease");
      logger.info({ deliveryId: delivery.id, attempts: delivery.attempts, nextAttemptAt: next.toISOString(), reason }, "webhook delivery will be retried");
    };

    if (delivery.endpoint_deleted) {
      report((await markDeliveryFailed(db, delivery.id, lease, null, "the webhook endpoint was deleted")) ? "failed" : "lost_lease");
      return;
    }
    if (delivery.attempts > maxAttempts) {
      // The previous holder died during the last allowed attempt; do not exceed the limit.
      const message = `WEBHOOK_DELIVERY_FAILED: gave up after ${maxAttempts} attempts; the last one was interrupted`;
      report((await markDeliveryFailed(db, delivery.id, lease, null, message)) ? "failed" : "lost_lease");
      return;
    }
    let url: URL;
    let address: ResolvedAddress;
    try {
      url = new URL(delivery.url);
      address = await resolvePublicAddress(url, resolver, allowPrivate);
    } catch (error) {
      // Refused (SSRF) or unresolvable: DNS may change, so this is a failed attempt, retried like any other.
      return fail(null, `refused: ${errorText(error)}`);
    }
    let response: WebhookHttpResponse;
    try {
      response = await send(delivery, url, address);
    } catch (error) {
      return fail(null, `request to ${url.host} failed: ${errorText(error)}`);
    }
    if (response.status >= 200 && response.status < 300) {
      report((await markDeliveryDelivered(db, delivery.id, lease, response.status, new Date(clock.now()))) ? "delivered" : "lost_lease");
      return;
    }
    const redirect = response.status >= 300 && response.status < 400 ? " (redirects are not followed)" : "";
    const snippet = response.bodySnippet.trim().slice(0, 200);
    return fail(response.status, `HTTP ${response.status}${redirect}${snippet === "" ? "" : `: ${snippet}`}`);
  }

  async function deliverDue(): Promise<number> {
    const now = clock.now();
    const claimed = await db.transaction((tx) => claimDueDeliveries(tx, new Date(now), new Date(now + leaseMs), batchSize));
    await Promise.all(
      claimed.map((d) =>
        attempt(d).catch((error: unknown) => {
          // The lease expires and the row is retried; nothing else to do here.
          logger.error({ err: error, deliveryId: d.id }, "webhook delivery bookkeeping failed");
        }),
      ),
    );
    return claimed.length;
  }

  async function run(signal: AbortSignal): Promise<void> {
    if (!deliver) {
      logger.warn("webhook delivery is off on this replica; queued deliveries wait for a replica that delivers");
      return;
    }
    while (!signal.aborted) {
      let claimed = 0;
      try {
        claimed = await deliverDue();
      } catch (error) {
        logger.error({ err: error }, "webhook dispatcher pass failed");
      }
      // A full batch suggests more is due: go again at once, otherwise wait.
      if (claimed >= batchSize) continue;
      try {
        await clock.sleep(pollIntervalMs, signal);
      } catch {
        return;
      }
    }
  }

  return { run, deliverDue };
}

function errorText(error: unknown): string {
  if (error instanceof Error) {
    const code = (error as { code?: unknown }).code;
    return typeof code === "string" && !error.message.includes(code) ? `${error.message} (${code})` : error.message;
  }
  return String(error);
}
