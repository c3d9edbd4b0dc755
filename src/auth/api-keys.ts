/**
 * Customer API keys: minted (the plaintext shown once, only its hash stored), capped per customer,
 * revoked. Keys are managed from a signed-in session (the rpcs' access policy says so); a leaked
 * key must not be able to mint more keys or revoke the owner's.
 */
import type { Clock } from "../platform/clock.ts";
import { ApiError, validationError } from "../platform/errors.ts";
import { hashSecret, isUuid, newId, newSecret } from "../platform/ids.ts";
import type { Database, Sql } from "../store/database.ts";
import type { ApiKeyRow } from "../store/customers.ts";
import { countActiveApiKeys, insertApiKey, lockCustomer, revokeApiKey } from "../store/customers.ts";
import type { ApiKeyCache } from "./authenticate.ts";
import { allScopes, isScope } from "./scopes.ts";
import type { Scope } from "./scopes.ts";

/** Most API keys a customer may hold unrevoked; revoking one frees a slot. */
export const maxActiveApiKeys = 50;

const apiKeyNameMax = 100;

/** The API key prefix: `sk_<env>_` (seed 001 shows `sk_alpha_`). */
export function apiKeyPrefix(env: string): string {
  return `sk_${env}_`;
}

/** A new key's plaintext and what is stored of it: the readable prefix plus 4 characters, and the hash. */
function newApiKey(env: string): { key: string; prefix: string; keyHash: string } {
  const key = newSecret(apiKeyPrefix(env));
  return { key, prefix: key.slice(0, apiKeyPrefix(env).length + 4), keyHash: hashSecret(key) };
}

/** Mints a customer API key inside the caller's transaction (no cap: a new account's first key); returns the plaintext. */
export async function mintApiKey(sql: Sql, customerId: string, name: string, scopes: readonly string[], env = "live"): Promise<string> {
  const { key, prefix, keyHash } = newApiKey(env);
  await insertApiKey(sql, { id: newId(), customerId, name, prefix, keyHash, scopes });
  return key;
}

/** Validates and de-duplicates requested scopes (order of first mention kept). */
function requireScopes(scopes: readonly string[]): Scope[] {
  if (scopes.length === 0) {
    throw validationError(`scopes must name at least one of ${allScopes.join(", ")}`, { field: "scopes" });
  }
  const unique: Scope[] = [];
  for (const scope of scopes) {
    if (!isScope(scope)) {
      throw validationError(`unknown scope ${JSON.stringify(scope)}; known scopes are ${allScopes.join(", ")}`, { field: "scopes", scope });
    }
    if (!unique.includes(scope)) unique.push(scope);
  }
  return unique;
}

/**
 * Creates a key the customer asked for, within the cap of {@link maxActiveApiKeys}; returns its
 * plaintext (shown once) and its row. A refusal stores nothing.
 */
export async function createApiKey(db: Database, customerId: string, request: { name: string; scopes: readonly string[] }): Promise<{ key: string; row: ApiKeyRow }> {
  const name = request.name.trim();
  if (name === "" || name.length > apiKeyNameMax) throw validationError(`name must be 1 to ${apiKeyNameMax} characters`, { field: "name" });
  if (name.includes("\u0000")) throw validationError("name must not contain NUL (U+0000) characters", { field: "name" });
  const scopes = requireScopes(request.scopes);
  const { key, prefix, keyHash } = newApiKey("live");
  const row = await db.transaction(async (tx) => {
    // The customer row lock serialises creations, so the cap holds under concurrent requests and across replicas.
    await lockCustomer(tx, customerId);
    if ((await countActiveApiKeys(tx, customerId)) >= maxActiveApiKeys) {
      throw new ApiError("STATE_CONFLICT", `at most ${maxActiveApiKeys} active API keys per customer; revoke one first`, {
        details: { max_active_api_keys: maxActiveApiKeys },
      });
    }
    return insertApiKey(tx, { id: newId(), customerId, name, prefix, keyHash, scopes });
  });
  return { key, row };
}

/** What revoking a key needs: the database, the clock, and this replica's cache of verified keys. */
export interface RevokeApiKeyDeps {
  readonly db: Database;
  readonly clock: Clock;
  readonly apiKeyCache: ApiKeyCache;
}

/**
 * Revokes one of the customer's keys (idempotent) and forgets verified keys on this replica, so
 * it takes effect at once here (on others within the cache's ttl). Unknown, malformed and other
 * customers' ids answer alike: no tenant learns another's ids.
 */
export async function revokeCustomerApiKey(deps: RevokeApiKeyDeps, customerId: string, id: string): Promise<ApiKeyRow> {
  const notFound = () => new ApiError("RESOURCE_NOT_FOUND", `API key ${JSON.stringify(id)} not found`);
  if (!isUuid(id)) throw notFound();
  const row = await revokeApiKey(deps.db, customerId, id.toLowerCase(), new Date(deps.clock.now()));
  if (row === undefined) throw notFound();
  deps.apiKeyCache.clear();
  return row;
}
