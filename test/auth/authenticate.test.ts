/**
 * The API key cache in front of authentication: one database read for callers
 * that miss together, revocation on this replica refused at once (also against
 * a read already under way), `last_used_at` written at most once a minute.
 */
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { ApiKeyCache, authenticateCustomer } from "../../src/auth/authenticate.ts";
import { hashSecret } from "../../src/platform/ids.ts";
import type { Database } from "../../src/store/database.ts";
import { openMigratedPGlite } from "../support/database-template.ts";
import type { ApiKeyRow } from "../../src/store/customers.ts";

function keyRow(overrides: Partial<ApiKeyRow> = {}): ApiKeyRow {
  return { id: randomUUID(), customer_id: randomUUID(), scopes: ["training:read"], revoked_at: null, ...overrides } as ApiKeyRow;
}

function deferred<T>(): { promise: Promise<T>; resolve: (value: T) => void } {
  let resolve!: (value: T) => void;
  const promise = new Promise<T>((r) => (resolve = r));
  return { promise, resolve };
}

describe("API key cache", () => {
  it("shares one read among callers that miss together, then answers from memory until the TTL", async () => {
    const cache = new ApiKeyCache(5000);
    const row = keyRow();
    const slow = deferred<ApiKeyRow | undefined>();
    let reads = 0;
    const read = () => {
      reads++;
      return slow.promise;
    };
    const all = Array.from({ length: 32 }, () => cache.load("h", 0, read));
    slow.resolve(row);
    assert.ok((await Promise.all(all)).every((r) => r === row));
    assert.equal(reads, 1);
    assert.equal(await cache.load("h", 4999, read), row);
    assert.equal(reads, 1);
    await cache.load("h", 5000, async () => {
      reads++;
      return row;
    });
    assert.equal(reads, 2);
  });

  it("does not cache what a read under way at a revocation (clear) brings back", async () => {
    const cache = new ApiKeyCache(60_000);
    const before = keyRow();
    const slow = deferred<ApiKeyRow | undefined>();
    const reading = cache.load("h", 0, () => slow.promise);
    cache.clear(); // the key was revoked and the cache cleared while the read was at the database
    slow.resolve(before);
    assert.equal(await reading, before); // the caller that started before the revocation
    const revoked = { ...before, revoked_at: new Date() };
    assert.equal(await cache.load("h", 1, async () => revoked), revoked); // a later one reads again
  });

  it("never caches an unknown key, and never shares a read that failed at once", async () => {
    const cache = new ApiKeyCache();
    assert.equal(await cache.load("h", 0, async () => undefined), undefined);
    await assert.rejects(
      cache.load("h", 0, () => {
        throw new Error("db down");
      }),
      /db down/,
    );
    const row = keyRow();
    assert.equal(await cache.load("h", 0, async () => row), row);
  });

  it("claims the last-used write at most once per interval, and again after a failed write", async () => {
    const cache = new ApiKeyCache(5000);
    await cache.load("h", 0, async () => keyRow());
    assert.equal(cache.claimTouch("h", 0, 60_000), true);
    assert.equal(cache.claimTouch("h", 1, 60_000), false);
    cache.releaseTouch("h");
    assert.equal(cache.claimTouch("h", 2, 60_000), true);
    // A refreshed entry keeps when it was last written.
    await cache.load("h", 10_000, async () => keyRow());
    assert.equal(cache.claimTouch("h", 10_000, 60_000), false);
    assert.equal(cache.claimTouch("h", 60_002, 60_000), true);
  });
});

describe("authenticateCustomer with the API key cache (PGlite)", () => {
  let db: Database;

  beforeEach(async () => {
    db = await openMigratedPGlite();
  });
  afterEach(async () => {
    await db.close();
  });

  async function seedKey(): Promise<{ key: string; keyId: string; customerId: string }> {
    const customerId = randomUUID();
    const keyId = randomUUID();
    const key = `sk_test_${randomUUID()}`;
    await db.query(`INSERT INTO customers (id, email, password_hash) VALUES ($1, $2, 'x')`, [customerId, `${customerId}@example.com`]);
    await db.query(`INSERT INTO api_keys (id, customer_id, name, prefix, key_hash, scopes) VALUES ($1, $2, 'k', 'sk_test', $3, $4::text[])`, [
      keyId,
      customerId,
      hashSecret(key),
      ["training:read"],
    ]);
    return { key, keyId, customerId };
  }

  it("refuses a key revoked on this replica at once, though it was cached", async () => {
    const { key, keyId, customerId } = await seedKey();
    const cache = new ApiKeyCache(60_000);
    const headers = new Headers({ "x-api-key": key });
    const now = new Date();
    assert.equal((await authenticateCustomer(db, headers, now, cache)).customerId, customerId);
    await db.query(`UPDATE api_keys SET revoked_at = now() WHERE id = $1`, [keyId]);
    cache.clear(); // what the revoke handler does after its commit
    await assert.rejects(authenticateCustomer(db, headers, now, cache), (e: Error & { code?: string }) => e.code === "API_KEY_REVOKED");
  });

  it("32 concurrent calls after the entry expired cost one key read and no more than one last-used write", async () => {
    const { key } = await seedKey();
    const cache = new ApiKeyCache(1000);
    const headers = new Headers({ "x-api-key": key });
    await authenticateCustomer(db, headers, new Date(0), cache);
    const seen: string[] = [];
    const counting = { query: (text: string, params?: readonly unknown[]) => (seen.push(text.trim().split(/\s+/)[0]!), db.query(text, params)) };
    await Promise.all(Array.from({ length: 32 }, () => authenticateCustomer(counting as unknown as Database, headers, new Date(2000), cache)));
    assert.equal(seen.filter((s) => s === "SELECT").length, 1);
    assert.equal(seen.filter((s) => s === "UPDATE").length, 0, "written at 0 ms: not due again for a minute");
  });
});
