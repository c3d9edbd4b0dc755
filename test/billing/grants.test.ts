/**
 * Operators' credit grants as a domain service (src/billing/grants.ts), called directly, on both
 * backends: a grant to an existing customer writes one ledger entry; every refusal writes nothing.
 */
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { grantCreditsToCustomer } from "../../src/billing/grants.ts";
import type { ApiError } from "../../src/platform/errors.ts";
import { creditBalance, insertCustomer } from "../../src/store/customers.ts";
import type { Sql } from "../../src/store/database.ts";
import { describeOnEachBackend } from "../support/billing-rows.ts";
import { refusedWith } from "../support/refusals.ts";

const grantedAt = new Date(Date.UTC(2026, 0, 2));

async function ledgerCount(sql: Sql): Promise<number> {
  const [row] = await sql.query<{ n: number }>(`SELECT count(*)::int AS n FROM ledger_entries`);
  return row!.n;
}

describeOnEachBackend("credit grants", (on) => {
  async function newCustomer(): Promise<string> {
    return (await insertCustomer(on.db, { id: randomUUID(), email: `${randomUUID()}@example.com`, passwordHash: "x" }, grantedAt)).id;
  }

  it("grants credits: one ledger entry with the reason trimmed, at the time given, and the balance after it", async () => {
    const customerId = await newCustomer();
    await grantCreditsToCustomer(on.db, customerId, { amount: 10, reason: "" }, grantedAt);
    const { entry, balance } = await grantCreditsToCustomer(on.db, customerId, { amount: 250, reason: "  pilot  " }, grantedAt);
    assert.equal(entry.description, "pilot");
    assert.equal(Number(entry.amount), 250);
    assert.equal(entry.created_at.getTime(), grantedAt.getTime());
    assert.equal(balance, 260);
    assert.equal(await creditBalance(on.db, customerId), 260);
    const [first] = await on.db.query<{ description: string }>(`SELECT description FROM ledger_entries WHERE customer_id = $1 AND amount = 10`, [customerId]);
    assert.equal(first?.description, "credit grant");
  });

  const refusals: { name: string; amount?: number; reason?: string; customer?: "unknown" | "malformed"; code: ApiError["code"]; field?: string }[] = [
    { name: "an amount of 0", amount: 0, code: "VALIDATION_FAILED", field: "amount" },
    { name: "a negative amount", amount: -5, code: "VALIDATION_FAILED", field: "amount" },
    { name: "a fractional amount", amount: 2.5, code: "VALIDATION_FAILED", field: "amount" },
    { name: "a reason of 501 characters", reason: "r".repeat(501), code: "VALIDATION_FAILED", field: "reason" },
    { name: "a reason with NUL", reason: "a\u0000b", code: "VALIDATION_FAILED", field: "reason" },
    { name: "an unknown customer", customer: "unknown", code: "RESOURCE_NOT_FOUND" },
    { name: "a malformed customer id", customer: "malformed", code: "RESOURCE_NOT_FOUND" },
  ];
  for (const r of refusals) {
    it(`refuses ${r.name} (${r.code}) and writes nothing`, async () => {
      const customerId = r.customer === "unknown" ? randomUUID() : r.customer === "malformed" ? "cus_1" : await newCustomer();
      const before = await ledgerCount(on.db);
      const error = await refusedWith(grantCreditsToCustomer(on.db, customerId, { amount: r.amount ?? 5, reason: r.reason ?? "" }, grantedAt), r.code);
      if (r.field !== undefined) assert.equal(error.details["field"], r.field);
      assert.equal(await ledgerCount(on.db), before);
    });
  }
});
