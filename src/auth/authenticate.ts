/**
 * Who is calling. Customers authenticate with `X-API-Key` (scoped) or a portal
 * session (`Authorization: Bearer <session token>` or the portal's session
 * cookie, every scope); operators with
 * the admin token; nodes with the credential they got at enrollment
 * (`Authorization: Bearer <node_credential>`). Secrets are looked up by their
 * sha256, never stored.
 */
import { ApiError } from "../platform/errors.ts";
import { hashSecret, safeEqual } from "../platform/ids.ts";
import type { Sql } from "../store/database.ts";
import type { ApiKeyRow } from "../store/customers.ts";
import { findApiKeyByHash, findSessionByHash, touchApiKey } from "../store/customers.ts";
import type { NodeRow } from "../store/nodes.ts";
import { findNodeByCredential } from "../store/nodes.ts";
import type { Scope } from "./scopes.ts";
import { allScopes } from "./scopes.ts";
import { cookieSessionToken } from "./session-cookie.ts";

/** An authenticated customer. */
export interface CustomerPrincipal {
  customerId: string;
  method: "api_key" | "session";
  scopes: readonly string[];
  apiKeyId: string | undefined;
}

/**
 * Recently verified API keys, so an API call costs no database round trip for
 * its key. An entry lives `ttlMs`: a key revoked on this replica is forgotten
 * at once (`clear`), one revoked through another replica within `ttlMs`.
 * Unknown keys are never cached, so a new key works at once.
 *
 * Callers that miss at the same moment (every connection of a busy client when
 * its entry expires) share one database read. A read that was under way when
 * `clear()` ran may carry the row from before the revocation: it answers the
 * callers that started before the revocation ended, and is not cached.
 */
export class ApiKeyCache {
  /** Insertion order is age: the first entry is the one evicted at the bound. */
  private readonly entries = new Map<string, { row: ApiKeyRow; fetchedAtMs: number; touchedAtMs: number }>();
  private readonly flights = new Map<string, { stale: boolean; row: Promise<ApiKeyRow | undefined> }>();
  readonly ttlMs: number;
  readonly maxEntries: number;

  constructor(ttlMs = 5000, maxEntries = 10_000) {
    this.ttlMs = ttlMs;
    this.maxEntries = maxEntries;
  }

  /** The cached row for a key hash while fresh. */
  get(keyHash: string, nowMs: number): { row: ApiKeyRow; touchedAtMs: number } | undefined {
    const entry = this.entries.get(keyHash);
    if (entry === undefined || nowMs - entry.fetchedAtMs >= this.ttlMs) return undefined;
    return entry;
  }

  /**
   * The row for a key hash: the cached one while fresh, else `read()`'s, one
   * read for all concurrent callers, cached when found and not cleared meanwhile.
   */
  async load(keyHash: string, nowMs: number, read: () => Promise<ApiKeyRow | undefined>): Promise<ApiKeyRow | undefined> {
    const cached = this.get(keyHash, nowMs);
    if (cached !== undefined) return cached.row;
    const joined = this.flights.get(keyHash);
    if (joined !== undefined) return joined.row;
    const started: { stale: boolean; row: Promise<ApiKeyRow | undefined> } = { stale: false, row: Promise.resolve(undefined) };
    let settled = false;
    started.row = (async () => {
      try {
        const row = await read();
        if (row !== undefined && !started.stale) this.set(keyHash, row, nowMs, this.entries.get(keyHash)?.touchedAtMs ?? Number.NEGATIVE_INFINITY);
        return row;
      } finally {
        settled = true;
        if (this.flights.get(keyHash) === started) this.flights.delete(keyHash);
      }
    })();
    // (A read that failed at once has settled already and must not be shared.)
    if (!settled) this.flights.set(keyHash, started);
    return started.row;
  }

  /**
   * True when the key's `last_used_at` is due a write (at most once per
   * `everyMs` per cached key), and notes it as written now.
   */
  claimTouch(keyHash: string, nowMs: number, everyMs: number): boolean {
    const entry = this.entries.get(keyHash);
    if (entry === undefined) return true;
    if (nowMs - entry.touchedAtMs < everyMs) return false;
    entry.touchedAtMs = nowMs;
    return true;
  }

  /** Forgets that the key's last use was written (the write failed). */
  releaseTouch(keyHash: string): void {
    const entry = this.entries.get(keyHash);
    if (entry !== undefined) entry.touchedAtMs = Number.NEGATIVE_INFINITY;
  }

  set(keyHash: string, row: ApiKeyRow, nowMs: number, touchedAtMs: number): void {
    this.entries.delete(keyHash);
    if (this.entries.size >= this.maxEntries) {
      const oldest = this.entries.keys().next().value;
      if (oldest !== undefined) this.entries.delete(oldest);
    }
    this.entries.set(keyHash, { row, fetchedAtMs: nowMs, touchedAtMs });
  }

  /** Forgets every key, and keeps reads under way from caching what they read (after a revocation on this replica). */
  clear(): void {
    this.entries.clear();
    for (const flight of this.flights.values()) flight.stale = true;
    this.flights.clear();
  }
}

/** `last_used_at` is kept to the minute; it is not worth a write per request. */
const touchEveryMs = 60_000;

/** Resolves the customer behind the request headers, or throws the seed's auth error. */
export async function authenticateCustomer(sql: Sql, headers: Headers, now: Date, cache?: ApiKeyCache): Promise<CustomerPrincipal> {
  const apiKey = headers.get("x-api-key");
  if (apiKey !== null && apiKey !== "") {
    const keyHash = hashSecret(apiKey.trim());
    const nowMs = now.getTime();
    // A fresh cached key costs no await at all (this runs on every API call).
    const row = cache?.get(keyHash, nowMs)?.row ?? (cache === undefined ? await findApiKeyByHash(sql, keyHash) : await cache.load(keyHash, nowMs, () => findApiKeyByHash(sql, keyHash)));
    if (row === undefined) throw new ApiError("API_KEY_INVALID", "the X-API-Key header does not name a valid key");
    if (row.revoked_at !== null) throw new ApiError("API_KEY_REVOKED", "this API key was revoked; create a new one");
    if (cache === undefined || cache.claimTouch(keyHash, nowMs, touchEveryMs)) {
      try {
        await touchApiKey(sql, row.id, now);
      } catch (error) {
        cache?.releaseTouch(keyHash);
        throw error;
      }
    }
    return { customerId: row.customer_id, method: "api_key", scopes: row.scopes, apiKeyId: row.id };
  }
  // The portal's HttpOnly cookie carries the same session token (src/auth/session-cookie.ts; its CSRF check is in authorize.ts).
  const bearer = /^Bearer\s+(\S+)$/i.exec(headers.get("authorization") ?? "")?.[1] ?? cookieSessionToken(headers);
  if (bearer !== undefined) {
    const session = await findSessionByHash(sql, hashSecret(bearer));
    if (session === undefined || session.revoked_at !== null || session.expires_at.getTime() <= now.getTime()) {
      throw new ApiError("CUSTOMER_AUTH_REQUIRED", "the session is unknown or expired; sign in again");
    }
    return { customerId: session.customer_id, method: "session", scopes: allScopes, apiKeyId: undefined };
  }
  throw new ApiError("CUSTOMER_AUTH_REQUIRED", "sign in or supply an API key in the X-API-Key header");
}

/** Throws API_KEY_SCOPE_DENIED unless the principal holds `scope`. */
export function requireScope(principal: CustomerPrincipal, scope: Scope): void {
  if (!principal.scopes.includes(scope)) {
    throw new ApiError("API_KEY_SCOPE_DENIED", `this API key lacks the "${scope}" scope`, { details: { required_scope: scope } });
  }
}

/** Throws unless the request carries the admin token. */
export function requireAdmin(headers: Headers, adminToken: string): void {
  const bearer = /^Bearer\s+(\S+)$/i.exec(headers.get("authorization") ?? "")?.[1];
  if (bearer === undefined || !safeEqual(hashSecret(bearer), hashSecret(adminToken))) {
    throw new ApiError("ADMIN_AUTH_REQUIRED", "operator endpoints need Authorization: Bearer <admin token>");
  }
}

/** Finds the node behind a stream's (or an artifact upload's) bearer credential. */
export async function authenticateNode(sql: Sql, authorization: string | null): Promise<NodeRow> {
  const credential = /^Bearer\s+(\S+)$/i.exec(authorization ?? "")?.[1];
  if (credential === undefined) throw new ApiError("NODE_AUTH_INVALID", "missing node credential (authorization: Bearer <node_credential>)");
  const node = await findNodeByCredential(sql, hashSecret(credential));
  if (node === undefined) throw new ApiError("NODE_AUTH_INVALID", "unknown node credential; enroll the node again");
  if (node.state === "revoked") throw new ApiError("NODE_AUTH_INVALID", "this node was revoked by an operator");
  return node;
}
