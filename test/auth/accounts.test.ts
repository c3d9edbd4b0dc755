/**
 * Customer accounts as a domain service (src/auth/accounts.ts), called directly, on both backends:
 * an account opens with its opening grant and a first key in one transaction; a refusal (bad input,
 * an e-mail taken) stores nothing; accounts read back with their balance.
 */
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { createCustomerAccount, customerAccount, customerAccountsPage } from "../../src/auth/accounts.ts";
import { verifyPassword } from "../../src/auth/passwords.ts";
import { allScopes } from "../../src/auth/scopes.ts";
import { hashSecret } from "../../src/platform/ids.ts";
import { findApiKeyByHash, findCustomerByEmail, insertGrant } from "../../src/store/customers.ts";
import type { Sql } from "../../src/store/database.ts";
import { pageRequest } from "../../src/store/pagination.ts";
import { describeOnEachBackend } from "../support/billing-rows.ts";
import { refusedWith } from "../support/refusals.ts";

const openedAt = new Date(Date.UTC(2026, 0, 1));

/** Rows of the account's tables held by customers with this e-mail. */
async function accountRows(sql: Sql, email: string): Promise<{ customers: number; keys: number; ledger: number }> {
  const [row] = await sql.query<{ customers: number; keys: number; ledger: number }>(
    `SELECT (SELECT count(*)::int FROM customers WHERE lower(email) = lower($1)) AS customers,
            (SELECT count(*)::int FROM api_keys k JOIN customers c ON c.id = k.customer_id WHERE lower(c.email) = lower($1)) AS keys,
            (SELECT count(*)::int FROM ledger_entries l JOIN customers c ON c.id = l.customer_id WHERE lower(c.email) = lower($1)) AS ledger`,
    [email],
  );
  return row!;
}

/** Rows of the account's tables, all customers together. */
async function allAccountRows(sql: Sql): Promise<{ customers: number; keys: number; ledger: number }> {
  const [row] = await sql.query<{ customers: number; keys: number; ledger: number }>(
    `SELECT (SELECT count(*)::int FROM customers) AS customers, (SELECT count(*)::int FROM api_keys) AS keys, (SELECT count(*)::int FROM ledger_entries) AS ledger`,
  );
  return row!;
}

describeOnEachBackend("customer accounts", (on) => {
  const newEmail = () => `${randomUUID()}@example.com`;

  it("opens an account: the customer with a password hash, the opening grant, a first key with every scope", async () => {
    const email = newEmail();
    const opened = await createCustomerAccount(on.db, { email: `  ${email} `, password: "pw-123456", credits: 500 }, openedAt);
    assert.equal(opened.customer.email, email);
    assert.equal(opened.customer.created_at.getTime(), openedAt.getTime());
    assert.equal(opened.creditsBalance, 500);
    assert.ok(await verifyPassword("pw-123456", opened.customer.password_hash));
    const key = await findApiKeyByHash(on.db, hashSecret(opened.apiKey));
    assert.equal(key?.customer_id, opened.customer.id);
    assert.equal(key?.name, "default");
    assert.deepEqual(key?.scopes, [...allScopes]);
    const [grant] = await on.db.query<{ amount: number; description: string; created_at: Date }>(
      `SELECT amount::int AS amount, description, created_at FROM ledger_entries WHERE customer_id = $1`,
      [opened.customer.id],
    );
    assert.deepEqual(grant, { amount: 500, description: "opening grant", created_at: openedAt });
  });

  it("opens an account without credits with no ledger entry", async () => {
    const email = newEmail();
    const opened = await createCustomerAccount(on.db, { email, password: "pw-123456", credits: 0 }, openedAt);
    assert.equal(opened.creditsBalance, 0);
    assert.deepEqual(await accountRows(on.db, email), { customers: 1, keys: 1, ledger: 0 });
  });

  const refusals: { name: string; request: { email?: string; password?: string; credits?: number }; field: string }[] = [
    { name: "an e-mail without a domain", request: { email: "someone" }, field: "email" },
    { name: "an e-mail with NUL", request: { email: "a\u0000b@example.com" }, field: "email" },
    { name: "a password of 7 characters", request: { password: "1234567" }, field: "password" },
    { name: "a password of 257 characters", request: { password: "p".repeat(257) }, field: "password" },
    { name: "negative credits", request: { credits: -1 }, field: "credits" },
    { name: "fractional credits", request: { credits: 1.5 }, field: "credits" },
  ];
  for (const r of refusals) {
    it(`refuses ${r.name} (VALIDATION_FAILED on ${r.field}) and stores nothing`, async () => {
      const email = r.request.email ?? newEmail();
      const before = await allAccountRows(on.db);
      const error = await refusedWith(
        createCustomerAccount(on.db, { email, password: r.request.password ?? "pw-123456", credits: r.request.credits ?? 10 }, openedAt),
        "VALIDATION_FAILED",
      );
      assert.equal(error.details["field"], r.field);
      assert.deepEqual(await allAccountRows(on.db), before);
    });
  }

  it("refuses an e-mail already taken, whatever its case (STATE_CONFLICT), adding nothing to the first account", async () => {
    const email = newEmail();
    await createCustomerAccount(on.db, { email, password: "pw-123456", credits: 5 }, openedAt);
    const error = await refusedWith(createCustomerAccount(on.db, { email: email.toUpperCase(), password: "pw-654321", credits: 7 }, openedAt), "STATE_CONFLICT");
    assert.equal(error.message, `a customer with e-mail ${email.toUpperCase()} already exists`);
    assert.deepEqual(await accountRows(on.db, email), { customers: 1, keys: 1, ledger: 1 });
  });

  it("reads an account back with its balance; one that does not exist must sign in again", async () => {
    const opened = await createCustomerAccount(on.db, { email: newEmail(), password: "pw-123456", credits: 40 }, openedAt);
    await insertGrant(on.db, { id: randomUUID(), customerId: opened.customer.id, amount: 2, description: "top-up" }, openedAt);
    const account = await customerAccount(on.db, opened.customer.id);
    assert.equal(account.customer.id, opened.customer.id);
    assert.equal(account.creditsBalance, 42);
    await refusedWith(customerAccount(on.db, randomUUID()), "CUSTOMER_AUTH_REQUIRED");
  });

  it("pages through accounts newest first, each with its balance", async () => {
    const first = await createCustomerAccount(on.db, { email: newEmail(), password: "pw-123456", credits: 1 }, new Date(Date.UTC(2030, 0, 1)));
    const second = await createCustomerAccount(on.db, { email: newEmail(), password: "pw-123456", credits: 2 }, new Date(Date.UTC(2030, 0, 2)));
    const one = await customerAccountsPage(on.db, pageRequest(1, ""));
    assert.deepEqual(
      one.rows.map((a) => [a.customer.id, a.creditsBalance]),
      [[second.customer.id, 2]],
    );
    assert.equal(one.page.hasMore, true);
    const next = await customerAccountsPage(on.db, pageRequest(1, one.page.nextCursor));
    assert.deepEqual(
      next.rows.map((a) => [a.customer.id, a.creditsBalance]),
      [[first.customer.id, 1]],
    );
    assert.equal((await findCustomerByEmail(on.db, first.customer.email))?.id, first.customer.id);
  });
});
