/**
 * Who is calling. Customers authenticate with `X-API-Key` (scoped) or a portal
 * session (`Authorization: Bearer <session token>`, every scope); operators with
 * the admin token. Secrets are looked up by their sha256, never stored.
 */
import { ApiError } from "../api/errors.ts";
import { hashSecret, safeEqual } from "../platform/ids.ts";
import type { Sql } from "../store/database.ts";
import { findApiKeyByHash, findSessionByHash, touchApiKey } from "../store/customers.ts";
import type { Scope } from "./scopes.ts";
import { allScopes } from "./scopes.ts";

/** An authenticated customer. */
export interface CustomerPrincipal {
  customerId: string;
  method: "api_key" | "session";
  scopes: readonly string[];
  apiKeyId: string | undefined;
}

/** Resolves the customer behind the request headers, or throws the seed's auth error. */
export async function authenticateCustomer(sql: Sql, headers: Headers, now: Date): Promise<CustomerPrincipal> {
  const apiKey = headers.get("x-api-key");
  if (apiKey !== null && apiKey !== "") {
    const row = await findApiKeyByHash(sql, hashSecret(apiKey.trim()));
    if (row === undefined) throw new ApiError("API_KEY_INVALID", "the X-API-Key header does not name a valid key");
    if (row.revoked_at !== null) throw new ApiError("API_KEY_REVOKED", "this API key was revoked; create a new one");
    await touchApiKey(sql, row.id, now);
    return { customerId: row.customer_id, method: "api_key", scopes: row.scopes, apiKeyId: row.id };
  }
  const bearer = /^Bearer\s+(\S+)$/i.exec(headers.get("authorization") ?? "")?.[1];
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
