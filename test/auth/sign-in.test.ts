/**
 * Signing in as a domain service (src/auth/sign-in.ts), called directly, on both backends: a right
 * pair opens a session for the account; a wrong password and an unknown e-mail get the same answer
 * and open nothing; bad input is refused before it counts as an attempt.
 */
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { createCustomerAccount } from "../../src/auth/accounts.ts";
import type { SignInDeps } from "../../src/auth/sign-in.ts";
import { sessionTtlSeconds, signIn } from "../../src/auth/sign-in.ts";
import { FakeClock } from "../../src/platform/clock.ts";
import { defaultLimits } from "../../src/platform/config.ts";
import { hashSecret } from "../../src/platform/ids.ts";
import { findSessionByHash } from "../../src/store/customers.ts";
import type { Sql } from "../../src/store/database.ts";
import { describeOnEachBackend } from "../support/billing-rows.ts";
import { refusedWith } from "../support/refusals.ts";

const password = "correct horse battery";

async function sessionCount(sql: Sql, customerId: string): Promise<number> {
  const [row] = await sql.query<{ n: number }>(`SELECT count(*)::int AS n FROM sessions WHERE customer_id = $1`, [customerId]);
  return row!.n;
}

async function loginAttemptCount(sql: Sql): Promise<number> {
  const [row] = await sql.query<{ n: number }>(`SELECT count(*)::int AS n FROM login_attempts`);
  return row!.n;
}

describeOnEachBackend("signing in", (on) => {
  const clock = new FakeClock();
  const deps = (): SignInDeps => ({ db: on.db, clock, config: { limits: { login: defaultLimits.login } } });

  async function newAccount(credits = 7) {
    return createCustomerAccount(on.db, { email: `${randomUUID()}@example.com`, password, credits }, new Date(clock.now()));
  }

  it("opens a session for the right pair, whatever the e-mail's case, with the account and its balance", async () => {
    const { customer } = await newAccount();
    const session = await signIn(deps(), { email: ` ${customer.email.toUpperCase()} `, password, peer: "127.0.0.2" });
    assert.match(session.sessionToken, /^st_/);
    assert.equal(session.expiresAt.getTime(), clock.now() + sessionTtlSeconds * 1000);
    assert.equal(session.account.customer.id, customer.id);
    assert.equal(session.account.creditsBalance, 7);
    const stored = await findSessionByHash(on.db, hashSecret(session.sessionToken));
    assert.equal(stored?.customer_id, customer.id);
  });

  it("answers a wrong password and an unknown e-mail alike (CUSTOMER_AUTH_REQUIRED) and opens no session", async () => {
    const { customer } = await newAccount();
    const wrong = await refusedWith(signIn(deps(), { email: customer.email, password: "not it", peer: "127.0.0.3" }), "CUSTOMER_AUTH_REQUIRED");
    const unknown = await refusedWith(signIn(deps(), { email: `${randomUUID()}@example.com`, password, peer: "127.0.0.3" }), "CUSTOMER_AUTH_REQUIRED");
    assert.equal(wrong.message, unknown.message);
    assert.equal(await sessionCount(on.db, customer.id), 0);
  });

  it("locks the pair after repeated failures (RATE_LIMITED), the right password included", async () => {
    const { customer } = await newAccount();
    for (let i = 1; i < defaultLimits.login.failuresBeforeLock; i++) {
      await refusedWith(signIn(deps(), { email: customer.email, password: "not it", peer: "127.0.0.4" }), "CUSTOMER_AUTH_REQUIRED");
    }
    await refusedWith(signIn(deps(), { email: customer.email, password: "not it", peer: "127.0.0.4" }), "CUSTOMER_AUTH_REQUIRED");
    await refusedWith(signIn(deps(), { email: customer.email, password, peer: "127.0.0.4" }), "RATE_LIMITED");
    assert.equal(await sessionCount(on.db, customer.id), 0);
    // Another address is not locked out by these failures.
    await signIn(deps(), { email: customer.email, password, peer: "127.0.0.5" });
  });

  const badInput: { name: string; email: string; password: string; field: string }[] = [
    { name: "an empty e-mail", email: "  ", password, field: "email" },
    { name: "an e-mail of 321 characters", email: `${"e".repeat(309)}@example.com`, password, field: "email" },
    { name: "an e-mail with NUL", email: "a\u0000@example.com", password, field: "email" },
    { name: "an empty password", email: "a@example.com", password: "", field: "password" },
    { name: "a password of 1025 characters", email: "a@example.com", password: "p".repeat(1025), field: "password" },
  ];
  for (const b of badInput) {
    it(`refuses ${b.name} (VALIDATION_FAILED on ${b.field}) without counting an attempt`, async () => {
      const before = await loginAttemptCount(on.db);
      const error = await refusedWith(signIn(deps(), { email: b.email, password: b.password, peer: "127.0.0.6" }), "VALIDATION_FAILED");
      assert.equal(error.details["field"], b.field);
      assert.equal(await loginAttemptCount(on.db), before);
    });
  }
});
