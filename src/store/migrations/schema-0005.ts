/**
 * Sign-in failures are counted per (client address, e-mail) pair and per address, no longer per
 * customer row (src/auth/login-throttle.ts explains the policy):
 *
 * - A per-account count told an attacker which e-mails have accounts (only they ever locked) and
 *   let anyone lock a customer out from anywhere. A pair row exists whether or not the e-mail has
 *   an account, and locks only that address's attempts at that e-mail.
 * - `email_key` is the SHA-256 of the normalized e-mail, not the text: a fixed 64 characters
 *   however long the input, and the table never holds what people type into the e-mail field
 *   (sometimes their password).
 * - `last_success_at` marks a pair that signed in recently: the per-address budget does not
 *   refuse it, so a spray from a shared address (a NAT, a proxy) does not shut out customers who
 *   sign in from there.
 * - `expires_at` is when the row is no longer needed (its lock over, its failures forgotten, its
 *   success too old to matter); rows past it are deleted in batches as sign-ins happen.
 *
 * `login_address_budgets` is a leaky bucket per address: `level` failures at `updated_at`,
 * draining continuously. Both tables are keyed by their primary keys, so concurrent replicas
 * update one row per key with upserts.
 *
 * The old customer columns (`failed_logins`, `locked_until`) are no longer read or written: their
 * counts have no address and cannot be carried over. They stay in place, unused, so that replicas
 * still running the previous version keep signing customers in during a rolling upgrade; a later
 * migration drops them once no such replica can be left.
 */
export const schema0005 = [
  `CREATE TABLE login_attempts (
     address text NOT NULL,
     email_key text NOT NULL,
     failures integer NOT NULL,
     last_failure_at timestamptz,
     locked_until timestamptz,
     last_success_at timestamptz,
     expires_at timestamptz NOT NULL,
     PRIMARY KEY (address, email_key)
   )`,
  `CREATE INDEX login_attempts_expiry ON login_attempts (expires_at)`,
  // The per-address row bound keeps the newest failing pairs; trusted pairs are not counted.
  `CREATE INDEX login_attempts_failing ON login_attempts (address, last_failure_at DESC) WHERE last_success_at IS NULL`,
  `CREATE TABLE login_address_budgets (
     address text PRIMARY KEY,
     level double precision NOT NULL,
     updated_at timestamptz NOT NULL
   )`,
  `CREATE INDEX login_address_budgets_updated ON login_address_budgets (updated_at)`,
];
