/**
 * Credits an operator grants to a customer (support, pilots, refunds), whichever protocol asked:
 * the amount and reason checked, the customer required to exist, one ledger entry written.
 */
import { ApiError, validationError } from "../platform/errors.ts";
import { isUuid } from "../platform/ids.ts";
import type { Database } from "../store/database.ts";
import type { LedgerRow } from "../store/customers.ts";
import { findCustomer } from "../store/customers.ts";
import { grantCredits } from "./ledger.ts";

const maxReasonLength = 500;

/**
 * Grants `amount` credits (a positive integer) to an existing customer; an empty reason is written
 * as "credit grant", at `now`. Returns the ledger entry and the balance after it. A refusal writes nothing.
 */
export async function grantCreditsToCustomer(
  db: Database,
  customerId: string,
  request: { amount: number; reason: string },
  now: Date,
): Promise<{ entry: LedgerRow; balance: number }> {
  const { amount, reason } = request;
  if (!Number.isSafeInteger(amount) || amount <= 0) throw validationError("amount must be a positive integer", { field: "amount" });
  if (reason.includes("\u0000") || reason.length > maxReasonLength) {
    throw validationError(`reason must be at most ${maxReasonLength} characters of text`, { field: "reason" });
  }
  if (!isUuid(customerId) || (await findCustomer(db, customerId)) === undefined) {
    throw new ApiError("RESOURCE_NOT_FOUND", `customer ${customerId} not found`);
  }
  return grantCredits(db, customerId, amount, reason.trim() || "credit grant", now);
}
