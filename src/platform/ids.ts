/**
 * Identifiers and secrets. Ids are UUIDv4; secrets are 32 random bytes, base64url. The only module
 * of src/ that draws random bytes (the effects lint, eslint.config.js).
 */
import { hash, randomBytes, randomUUID, timingSafeEqual } from "node:crypto";

/** A new random UUID. */
export function newId(): string {
  return randomUUID();
}

/** A secret with a readable prefix, e.g. `sk_live_…`, `nc_…`. */
export function newSecret(prefix: string): string {
  return `${prefix}${randomBytes(32).toString("base64url")}`;
}

/** `length` random bytes, e.g. a password hash's salt. */
export function randomSalt(length: number): Buffer {
  return randomBytes(length);
}

/** sha256 hex of a secret; what the database stores instead of the secret. (One-shot `hash`: a third of createHash's cost, per API call.) */
export function hashSecret(secret: string): string {
  return hash("sha256", secret, "hex");
}

/** Constant-time string comparison. */
export function safeEqual(a: string, b: string): boolean {
  const ab = Buffer.from(a);
  const bb = Buffer.from(b);
  return ab.length === bb.length && timingSafeEqual(ab, bb);
}

const uuidPattern = /^[0-9a-f]{8}-[0-9a-f]{4}-[1-8][0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/i;

/** True for a syntactically valid UUID (so bad ids never reach SQL as uuid casts). */
export function isUuid(value: string): boolean {
  return uuidPattern.test(value);
}
