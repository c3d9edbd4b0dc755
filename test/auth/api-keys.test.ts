/**
 * API keys as a domain service (src/auth/api-keys.ts), called directly, on both backends: a key is
 * stored as its hash with a readable prefix, within the per-customer cap; revoking forgets verified
 * keys on this replica; every refusal stores nothing.
 */
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { createApiKey, maxActiveApiKeys, mintApiKey, revokeCustomerApiKey } from "../../src/auth/api-keys.ts";
import { ApiKeyCache } from "../../src/auth/authenticate.ts";
import { allScopes } from "../../src/auth/scopes.ts";
import { FakeClock } from "../../src/platform/clock.ts";
import type { ApiError } from "../../src/platform/errors.ts";
import { hashSecret } from "../../src/platform/ids.ts";
import { findApiKeyByHash, insertCustomer } from "../../src/store/customers.ts";
import type { Sql } from "../../src/store/database.ts";
import { describeOnEachBackend } from "../support/billing-rows.ts";
import { refusedWith } from "../support/refusals.ts";

async function apiKeyCount(sql: Sql, customerId: string): Promise<number> {
  const [row] = await sql.query<{ n: number }>(`SELECT count(*)::int AS n FROM api_keys WHERE customer_id = $1`, [customerId]);
  return row!.n;
}

describeOnEachBackend("API keys", (on) => {
  const clock = new FakeClock();

  async function newCustomer(): Promise<string> {
    return (await insertCustomer(on.db, { id: randomUUID(), email: `${randomUUID()}@example.com`, passwordHash: "x" }, new Date(clock.now()))).id;
  }

  it("creates a key: the plaintext once, its hash and a readable prefix stored, scopes de-duplicated in order", async () => {
    const customerId = await newCustomer();
    const { key, row } = await createApiKey(on.db, customerId, { name: "  ci  ", scopes: ["usage:read", "dataset:write", "usage:read"] });
    assert.match(key, /^sk_live_/);
    assert.equal(row.name, "ci");
    assert.deepEqual(row.scopes, ["usage:read", "dataset:write"]);
    assert.equal(row.prefix, key.slice(0, "sk_live_".length + 4));
    assert.equal((await findApiKeyByHash(on.db, hashSecret(key)))?.id, row.id);
  });

  it("mints an account's first key inside the caller's transaction, with the scopes given", async () => {
    const customerId = await newCustomer();
    const key = await on.db.transaction((tx) => mintApiKey(tx, customerId, "default", allScopes));
    const row = await findApiKeyByHash(on.db, hashSecret(key));
    assert.equal(row?.customer_id, customerId);
    assert.deepEqual(row?.scopes, [...allScopes]);
  });

  const refusals: { name: string; request: { name: string; scopes: string[] }; field: string }[] = [
    { name: "an empty name", request: { name: "  ", scopes: ["usage:read"] }, field: "name" },
    { name: "a name of 101 characters", request: { name: "k".repeat(101), scopes: ["usage:read"] }, field: "name" },
    { name: "a name with NUL", request: { name: "a\u0000b", scopes: ["usage:read"] }, field: "name" },
    { name: "no scopes", request: { name: "k", scopes: [] }, field: "scopes" },
    { name: "an unknown scope", request: { name: "k", scopes: ["usage:read", "root"] }, field: "scopes" },
  ];
  for (const r of refusals) {
    it(`refuses ${r.name} (VALIDATION_FAILED on ${r.field}) and stores nothing`, async () => {
      const customerId = await newCustomer();
      const error = await refusedWith(createApiKey(on.db, customerId, r.request), "VALIDATION_FAILED");
      assert.equal(error.details["field"], r.field);
      assert.equal(await apiKeyCount(on.db, customerId), 0);
    });
  }

  it(`holds at most ${maxActiveApiKeys} unrevoked keys, under concurrent creations too; revoking one frees a slot`, async () => {
    const customerId = await newCustomer();
    const results = await Promise.allSettled(Array.from({ length: maxActiveApiKeys + 3 }, (_, i) => createApiKey(on.db, customerId, { name: `k${i}`, scopes: ["usage:read"] })));
    const refused = results.filter((r) => r.status === "rejected").map((r) => (r.reason as ApiError).code);
    assert.deepEqual(refused, ["STATE_CONFLICT", "STATE_CONFLICT", "STATE_CONFLICT"]);
    assert.equal(await apiKeyCount(on.db, customerId), maxActiveApiKeys);
    const first = results.find((r) => r.status === "fulfilled")!;
    await revokeCustomerApiKey({ db: on.db, clock, apiKeyCache: new ApiKeyCache() }, customerId, first.value.row.id);
    await createApiKey(on.db, customerId, { name: "after revoking", scopes: ["usage:read"] });
  });

  it("revokes a key (again: the same answer) and forgets the keys this replica had verified", async () => {
    const customerId = await newCustomer();
    const { key, row } = await createApiKey(on.db, customerId, { name: "k", scopes: ["usage:read"] });
    const cache = new ApiKeyCache();
    await cache.load(hashSecret(key), clock.now(), () => findApiKeyByHash(on.db, hashSecret(key)));
    assert.ok(cache.get(hashSecret(key), clock.now()) !== undefined);
    const revoked = await revokeCustomerApiKey({ db: on.db, clock, apiKeyCache: cache }, customerId, row.id.toUpperCase());
    assert.equal(revoked.revoked_at?.getTime(), clock.now());
    assert.equal(cache.get(hashSecret(key), clock.now()), undefined);
    const again = await revokeCustomerApiKey({ db: on.db, clock, apiKeyCache: cache }, customerId, row.id);
    assert.equal(again.revoked_at?.getTime(), clock.now());
  });

  it("answers another customer's, an unknown and a malformed key id alike (RESOURCE_NOT_FOUND) and revokes nothing", async () => {
    const owner = await newCustomer();
    const stranger = await newCustomer();
    const { row } = await createApiKey(on.db, owner, { name: "k", scopes: ["usage:read"] });
    for (const id of [row.id, randomUUID(), "sk_live_abc"]) {
      const error = await refusedWith(revokeCustomerApiKey({ db: on.db, clock, apiKeyCache: new ApiKeyCache() }, stranger, id), "RESOURCE_NOT_FOUND");
      assert.equal(error.message, `API key ${JSON.stringify(id)} not found`);
    }
    const [stored] = await on.db.query<{ revoked_at: Date | null }>(`SELECT revoked_at FROM api_keys WHERE id = $1`, [row.id]);
    assert.equal(stored?.revoked_at, null);
  });
});
