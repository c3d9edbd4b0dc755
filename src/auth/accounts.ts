/**
 * Customer accounts: opened by an operator with a password, an opening credit grant and a first
 * API key holding every scope, all in one transaction (an account is never half made); read back
 * with the balance for the customer's own "me".
 *
 * Why in auth/: an account is the principal auth/ knows (its credentials and keys live here); the
 * opening grant is one ledger row written in the same transaction through the store, so auth/
 * needs nothing of billing/.
 */
import { ApiError, validationError } from "../platform/errors.ts";
import { newId } from "../platform/ids.ts";
import type { Database, Sql } from "../store/database.ts";
import { isUniqueViolation } from "../store/database.ts";
import type { CustomerRow } from "../store/customers.ts";
import { creditBalance, findCustomer, insertCustomer, insertGrant, listCustomers } from "../store/customers.ts";
import type { PageInfo, PageRequest } from "../store/pagination.ts";
import { toPage } from "../store/pagination.ts";
import { mintApiKey } from "./api-keys.ts";
import { hashPassword } from "./passwords.ts";
import { allScopes } from "./scopes.ts";

const emailPattern = /^[^\s@]{1,64}@[^\s@]{1,255}\.[^\s@]{2,}$/;

/** A customer and their credit balance now. */
export interface CustomerAccount {
  customer: CustomerRow;
  creditsBalance: number;
}

/** A new account and its first API key's plaintext (shown once). */
export interface OpenedAccount extends CustomerAccount {
  apiKey: string;
}

/**
 * Opens a customer account at `now`: the customer, an opening grant of `credits` (none when 0) and
 * a first key named "default" with every scope. An e-mail already taken is a STATE_CONFLICT; any
 * refusal stores nothing.
 */
export async function createCustomerAccount(db: Database, request: { email: string; password: string; credits: number }, now: Date): Promise<OpenedAccount> {
  const email = request.email.trim();
  if (!emailPattern.test(email) || email.includes("\u0000")) throw validationError("email must be a valid e-mail address", { field: "email" });
  if (request.password.length < 8 || request.password.length > 256) throw validationError("password must be 8 to 256 characters", { field: "password" });
  const { credits } = request;
  if (!Number.isSafeInteger(credits) || credits < 0) throw validationError("credits must be a non-negative integer", { field: "credits" });
  const passwordHash = await hashPassword(request.password);
  try {
    return await db.transaction(async (tx) => {
      const customer = await insertCustomer(tx, { id: newId(), email, passwordHash }, now);
      if (credits > 0) await insertGrant(tx, { id: newId(), customerId: customer.id, amount: credits, description: "opening grant" }, now);
      const apiKey = await mintApiKey(tx, customer.id, "default", allScopes);
      return { customer, creditsBalance: credits, apiKey };
    });
  } catch (error) {
    if (isUniqueViolation(error)) throw new ApiError("STATE_CONFLICT", `a customer with e-mail ${email} already exists`);
    throw error;
  }
}

/** The signed-in customer's account; one deleted since the credential was issued must sign in again. */
export async function customerAccount(sql: Sql, customerId: string): Promise<CustomerAccount> {
  const customer = await findCustomer(sql, customerId);
  if (customer === undefined) throw new ApiError("CUSTOMER_AUTH_REQUIRED", "the account no longer exists; sign in again");
  return { customer, creditsBalance: await creditBalance(sql, customerId) };
}

/** A page of customers, newest first, each with their balance (operators' list). */
export async function customerAccountsPage(sql: Sql, request: PageRequest): Promise<{ rows: CustomerAccount[]; page: PageInfo }> {
  const cut = toPage(await listCustomers(sql, request.limit + 1, request.after), request, (c) => ({ at: c.created_at, id: c.id }));
  const rows = await Promise.all(cut.rows.map(async (customer) => ({ customer, creditsBalance: await creditBalance(sql, customer.id) })));
  return { rows, page: cut.page };
}
