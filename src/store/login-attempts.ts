/**
 * SQL for sign-in throttling (schema-0005.ts has the tables, src/auth/login-throttle.ts the policy).
 * Every decision is one conditional upsert, so concurrent attempts on any replica can neither lose
 * a count nor slip past a lock: PostgreSQL re-evaluates an ON CONFLICT's WHERE on the row as it
 * stands once locked.
 */
import type { Sql } from "./database.ts";

/** One (client address, e-mail) pair: the address key and the SHA-256 of the normalized e-mail. */
export interface LoginPairKey {
  readonly address: string;
  readonly emailKey: string;
}

/** How a pair is throttled. */
export interface PairPolicy {
  /** The attempt that brings the pair's consecutive failures to this locks it. */
  readonly failuresBeforeLock: number;
  /** The first lock; each further failure doubles it. */
  readonly lockSeconds: number;
  readonly maxLockSeconds: number;
  /** A pair whose last failure is older than this starts counting again from one. */
  readonly forgetAfterSeconds: number;
  /** How long after a successful sign-in the pair counts as trusted. */
  readonly trustSeconds: number;
}

/** The leaky bucket of failures per address: `failures` per `windowSeconds`, as a burst and as a rate. */
export interface AddressBudget {
  readonly failures: number;
  readonly windowSeconds: number;
}

/** The outcome of counting one attempt for its pair. */
export type PairAdmission =
  | { readonly admitted: true; readonly trusted: boolean; readonly inserted: boolean }
  | { readonly admitted: false; readonly lockedUntil: Date };

// $1 address, $2 email key, $3 now, $4 failures before lock, $5 lock s, $6 max lock s, $7 forget s, $8 trust s.
const nextFailures = `(CASE WHEN a.last_failure_at > $3::timestamptz - make_interval(secs => $7::double precision) THEN a.failures + 1 ELSE 1 END)`;
const lockAfter = (failures: string) =>
  `(CASE WHEN ${failures} >= $4::integer THEN $3::timestamptz + make_interval(secs => LEAST($6::double precision,
     $5::double precision * power(2, LEAST(${failures} - $4::integer, 30)))) END)`;
const forgetAt = `$3::timestamptz + make_interval(secs => $7::double precision)`;

/**
 * Counts an attempt for the pair before its password is checked, unless the pair is locked: then
 * nothing changes. Counting first means concurrent guesses cannot all pass the check before any is
 * recorded; a correct password then clears the count ({@link recordLoginSuccess}).
 */
export async function admitPairAttempt(sql: Sql, key: LoginPairKey, now: Date, policy: PairPolicy): Promise<PairAdmission> {
  const params = [key.address, key.emailKey, now, policy.failuresBeforeLock, policy.lockSeconds, policy.maxLockSeconds, policy.forgetAfterSeconds, policy.trustSeconds];
  const [row] = await sql.query<{ trusted: boolean; inserted: boolean }>(
    `INSERT INTO login_attempts AS a (address, email_key, failures, last_failure_at, locked_until, expires_at)
     VALUES ($1, $2, 1, $3::timestamptz, ${lockAfter("1")}, GREATEST(${forgetAt}, ${lockAfter("1")}))
     ON CONFLICT (address, email_key) DO UPDATE
        SET failures = ${nextFailures},
            last_failure_at = $3::timestamptz,
            locked_until = ${lockAfter(nextFailures)},
            expires_at = GREATEST(${forgetAt}, ${lockAfter(nextFailures)}, a.last_success_at + make_interval(secs => $8::double precision))
      WHERE a.locked_until IS NULL OR a.locked_until <= $3::timestamptz
     RETURNING (a.last_success_at > $3::timestamptz - make_interval(secs => $8::double precision)) IS TRUE AS trusted,
               (a.xmax = 0) AS inserted`,
    params,
  );
  if (row !== undefined) return { admitted: true, trusted: row.trusted, inserted: row.inserted };
  const [locked] = await sql.query<{ locked_until: Date | null }>(
    `SELECT locked_until FROM login_attempts WHERE address = $1 AND email_key = $2`,
    [key.address, key.emailKey],
  );
  // The lock may have ended (or the row been purged) between the two statements: "retry now".
  return { admitted: false, lockedUntil: locked?.locked_until ?? now };
}

/** A pair signed in: its failures and lock are cleared and it is trusted from now on. */
export async function recordLoginSuccess(sql: Sql, key: LoginPairKey, now: Date, trustSeconds: number): Promise<void> {
  await sql.query(
    `INSERT INTO login_attempts AS a (address, email_key, failures, last_success_at, expires_at)
     VALUES ($1, $2, 0, $3::timestamptz, $3::timestamptz + make_interval(secs => $4::double precision))
     ON CONFLICT (address, email_key) DO UPDATE
        SET failures = 0, last_failure_at = NULL, locked_until = NULL, last_success_at = $3::timestamptz, expires_at = EXCLUDED.expires_at`,
    [key.address, key.emailKey, now, trustSeconds],
  );
}

// $1 address, $2 now, $3 failures, $4 window s. Multiplying before dividing keeps whole seconds exact.
const drained = (b: string) =>
  `GREATEST(0::double precision, ${b}.level - GREATEST(0::double precision, EXTRACT(EPOCH FROM ($2::timestamptz - ${b}.updated_at))::double precision) * $3::double precision / $4::double precision)`;

/** The outcome of taking one failure from an address's budget. */
export type AddressAdmission = { readonly admitted: true } | { readonly admitted: false; readonly retryAfterS: number };

/**
 * Takes one unit from the address's budget if one is left; otherwise nothing changes (so a refused
 * address regains budget at the same rate however hard it keeps trying).
 */
export async function admitAddressAttempt(sql: Sql, address: string, now: Date, budget: AddressBudget): Promise<AddressAdmission> {
  const params = [address, now, budget.failures, budget.windowSeconds];
  const taken = await sql.query(
    `INSERT INTO login_address_budgets AS b (address, level, updated_at) VALUES ($1, 1, $2::timestamptz)
     ON CONFLICT (address) DO UPDATE SET level = ${drained("b")} + 1, updated_at = $2::timestamptz
      WHERE ${drained("b")} + 1 <= $3::double precision
     RETURNING b.level`,
    params,
  );
  if (taken.length === 1) return { admitted: true };
  const [row] = await sql.query<{ level: number }>(`SELECT ${drained("b")} AS level FROM login_address_budgets b WHERE b.address = $1`, params);
  const over = (row?.level ?? 0) + 1 - budget.failures;
  return { admitted: false, retryAfterS: Math.max(1, Math.ceil((over * budget.windowSeconds) / budget.failures)) };
}

/** Gives back the unit an attempt took: only failures spend an address's budget. */
export async function refundAddressAttempt(sql: Sql, address: string): Promise<void> {
  await sql.query(`UPDATE login_address_budgets SET level = GREATEST(level - 1, 0) WHERE address = $1`, [address]);
}

/**
 * Keeps the tables bounded. With `newPair`, the address's failing (untrusted) pairs beyond the
 * newest `maxFailingPairs` are deleted, the current one kept: one address cannot grow the table
 * without limit by trying ever new e-mails. Then up to `batch` rows whose time is over go from each
 * table. The outer conditions are repeated so that a row refreshed by a concurrent attempt after
 * the subquery read it is not deleted (PostgreSQL re-checks them on the newest row version).
 */
export async function purgeLoginAttempts(
  sql: Sql,
  now: Date,
  options: { current?: LoginPairKey; maxFailingPairs: number; batch: number; budgetWindowSeconds: number },
): Promise<void> {
  if (options.current !== undefined) {
    await sql.query(
      `DELETE FROM login_attempts
        WHERE address = $1 AND email_key <> $2 AND last_success_at IS NULL
          AND email_key IN (SELECT email_key FROM login_attempts
                             WHERE address = $1 AND email_key <> $2 AND last_success_at IS NULL
                             ORDER BY last_failure_at DESC, email_key
                             OFFSET $3::integer)`,
      [options.current.address, options.current.emailKey, Math.max(0, options.maxFailingPairs - 1)],
    );
  }
  await sql.query(
    `DELETE FROM login_attempts
      WHERE expires_at <= $1::timestamptz
        AND (address, email_key) IN (SELECT address, email_key FROM login_attempts WHERE expires_at <= $1::timestamptz ORDER BY expires_at LIMIT $2::integer)`,
    [now, options.batch],
  );
  // A bucket untouched for a whole window has drained to zero: the row says nothing any more.
  await sql.query(
    `DELETE FROM login_address_budgets
      WHERE updated_at <= $1::timestamptz - make_interval(secs => $3::double precision)
        AND address IN (SELECT address FROM login_address_budgets
                         WHERE updated_at <= $1::timestamptz - make_interval(secs => $3::double precision)
                         ORDER BY updated_at LIMIT $2::integer)`,
    [now, options.batch, options.budgetWindowSeconds],
  );
}
