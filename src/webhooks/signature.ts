/**
 * Webhook signatures. Every delivery carries
 *
 *     GPU-Agent-Signature: t=<unix seconds>,v1=<hex>[,v1=<hex>]
 *
 * where each `v1` is HMAC-SHA256, keyed with an endpoint secret, over `${t}.${rawBody}`. Signing the
 * timestamp with the body lets a receiver refuse replays of old deliveries; one `v1` per valid
 * secret lets a receiver keep working through a secret rotation whichever secret it holds.
 * docs/webhooks.md shows receivers how to verify.
 */
import { createHmac, timingSafeEqual } from "node:crypto";

/** The header carrying the signature. */
export const signatureHeaderName = "GPU-Agent-Signature";

/** The default tolerance between the signed timestamp and the receiver's clock, in seconds. */
export const defaultToleranceSeconds = 300;

function hmacHex(secret: string, timestamp: number, body: string | Uint8Array): string {
  return createHmac("sha256", secret).update(`${timestamp}.`).update(body).digest("hex");
}

/**
 * The `GPU-Agent-Signature` value for `body` at `nowS` (unix seconds): one `v1` per secret, in the
 * order given (current secret first, then the previous one during a rotation).
 */
export function signPayload(body: string | Uint8Array, secrets: readonly string[], nowS: number): string {
  if (secrets.length === 0) throw new Error("signPayload needs at least one secret");
  const t = Math.floor(nowS);
  return [`t=${t}`, ...secrets.map((s) => `v1=${hmacHex(s, t, body)}`)].join(",");
}

/**
 * True when `header` is a valid signature of `rawBody` (the bytes exactly as received, before any
 * JSON parsing) by any of `secrets`, and its timestamp is within `toleranceS` seconds of `nowS`
 * (either direction). Comparisons are constant-time. Malformed headers are simply not valid.
 */
export function verifyWebhookSignature(
  rawBody: string | Uint8Array,
  header: string | null | undefined,
  secrets: readonly string[],
  toleranceS: number,
  nowS: number,
): boolean {
  if (header === null || header === undefined || secrets.length === 0) return false;
  let timestamp: number | undefined;
  const candidates: Buffer[] = [];
  for (const part of header.split(",")) {
    const eq = part.indexOf("=");
    if (eq < 0) continue;
    const key = part.slice(0, eq).trim();
    const value = part.slice(eq + 1).trim();
    if (key === "t" && /^\d{1,12}$/.test(value)) timestamp = Number(value);
    else if (key === "v1" && /^[0-9a-f]{64}$/i.test(value)) candidates.push(Buffer.from(value, "hex"));
  }
  if (timestamp === undefined || candidates.length === 0) return false;
  if (Math.abs(Math.floor(nowS) - timestamp) > toleranceS) return false;
  const t = timestamp;
  const expected = secrets.map((s) => Buffer.from(hmacHex(s, t, rawBody), "hex"));
  let ok = false;
  // No early exit: every pair is compared, so timing does not reveal which one matched.
  for (const e of expected) for (const c of candidates) ok = timingSafeEqual(e, c) || ok;
  return ok;
}
