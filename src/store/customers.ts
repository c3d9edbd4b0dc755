/** SQL for customers, API keys, sessions and the credit ledger. One function per operation. */
import type { Sql } from "./database.ts";

/** A customers row. */
export interface CustomerRow {
  id: string;
  email: string;
  password_hash: string;
  created_at: Date;
}

/** An api_keys row. */
export interface ApiKeyRow {
  id: string;
  customer_id: string;
  name: string;
  prefix: string;
  key_hash: string;
  scopes: string[];
  created_at: Date;
  last_used_at: Date | null;
  revoked_at: Date | null;
}

/** Inserts a customer. */
export async function insertCustomer(sql: Sql, row: { id: string; email: string; passwordHash: string }, now: Date): Promise<CustomerRow> {
  const [created] = await sql.query<CustomerRow>(
    `INSERT INTO customers (id, email, password_hash, created_at) VALUES ($1, $2, $3, $4) RETURNING *`,
    [row.id, row.email, row.passwordHash, now],
  );
  return created!;
}

/** A customer by id. */
export async function findCustomer(sql: Sql, id: string): Promise<CustomerRow | undefined> {
  const [row] = await sql.query<CustomerRow>(`SELECT * FROM customers WHERE id = $1`, [id]);
  return row;
}

/** A customer by e-mail (case-insensitive). */
export async function findCustomerByEmail(sql: Sql, email: string): Promise<CustomerRow | undefined> {
  const [row] = await sql.query<CustomerRow>(`SELECT * FROM customers WHERE lower(email) = lower($1)`, [email]);
  return row;
}

/** Customers, newest first. */
export async function listCustomers(sql: Sql, limit: number, after?: { at: Date; id: string }): Promise<CustomerRow[]> {
  return after === undefined
    ? sql.query<CustomerRow>(`SELECT * FROM customers ORDER BY created_at DESC, id DESC LIMIT $1`, [limit])
    : sql.query<CustomerRow>(
        `SELECT * FROM customers WHERE (created_at, id) < ($2, $3) ORDER BY created_at DESC, id DESC LIMIT $1`,
        [limit, after.at, after.id],
      );
}

/** Locks the customer row: serialises job creation per customer, so limits are exact across replicas. */
export async function lockCustomer(sql: Sql, id: string): Promise<void> {
  await sql.query(`SELECT id FROM customers WHERE id = $1 FOR UPDATE`, [id]);
}

/**
 * Inserts an API key (hash only). Its created_at is the one insert's time still left to the
 * database's clock (the column's default): keys are listed by it, newest first, and keys made while
 * the injected clock reads one instant (a FakeClock stands still; test/api/identity.test.ts pages
 * through six made in a row) must still list in the order they were made.
 */
export async function insertApiKey(
  sql: Sql,
  row: { id: string; customerId: string; name: string; prefix: string; keyHash: string; scopes: readonly string[] },
): Promise<ApiKeyRow> {
  const [created] = await sql.query<ApiKeyRow>(
    `INSERT INTO api_keys (id, customer_id, name, prefix, key_hash, scopes) VALUES ($1, $2, $3, $4, $5, $6::text[]) RETURNING *`,
    [row.id, row.customerId, row.name, row.prefix, row.keyHash, row.scopes],
  );
  return created!;
}

/** An API key by the hash of its plaintext. */
export async function findApiKeyByHash(sql: Sql, keyHash: string): Promise<ApiKeyRow | undefined> {
  const [row] = await sql.query<ApiKeyRow>(`SELECT * FROM api_keys WHERE key_hash = $1`, [keyHash]);
  return row;
}

/** Records use, at most once a minute per key, so reads do not turn into a write per request. */
export async function touchApiKey(sql: Sql, id: string, now: Date): Promise<void> {
  await sql.query(
    `UPDATE api_keys SET last_used_at = $2 WHERE id = $1 AND (last_used_at IS NULL OR last_used_at < $2::timestamptz - interval '1 minute')`,
    [id, now],
  );
}

/** A customer's keys, newest first. */
export async function listApiKeys(sql: Sql, customerId: string, limit: number, after?: { at: Date; id: string }): Promise<ApiKeyRow[]> {
  return after === undefined
    ? sql.query<ApiKeyRow>(`SELECT * FROM api_keys WHERE customer_id = $1 ORDER BY created_at DESC, id DESC LIMIT $2`, [customerId, limit])
    : sql.query<ApiKeyRow>(
        `SELECT * FROM api_keys WHERE customer_id = $1 AND (created_at, id) < ($3, $4) ORDER BY created_at DESC, id DESC LIMIT $2`,
        [customerId, limit, after.at, after.id],
      );
}

/** Revokes a key of this customer (idempotent); undefined when it is not theirs. */
export async function revokeApiKey(sql: Sql, customerId: string, id: string, now: Date): Promise<ApiKeyRow | undefined> {
  const [row] = await sql.query<ApiKeyRow>(
    `UPDATE api_keys SET revoked_at = COALESCE(revoked_at, $3) WHERE id = $1 AND customer_id = $2 RETURNING *`,
    [id, customerId, now],
  );
  return row;
}

/** A sessions row. */
export interface SessionRow {
  id: string;
  customer_id: string;
  token_hash: string;
  expires_at: Date;
  revoked_at: Date | null;
}

/** Inserts a session. */
export async function insertSession(sql: Sql, row: { id: string; customerId: string; tokenHash: string; expiresAt: Date }, now: Date): Promise<void> {
  await sql.query(`INSERT INTO sessions (id, customer_id, token_hash, expires_at, created_at) VALUES ($1, $2, $3, $4, $5)`, [
    row.id,
    row.customerId,
    row.tokenHash,
    row.expiresAt,
    now,
  ]);
}

/** A session by token hash. */
export async function findSessionByHash(sql: Sql, tokenHash: string): Promise<SessionRow | undefined> {
  const [row] = await sql.query<SessionRow>(`SELECT * FROM sessions WHERE token_hash = $1`, [tokenHash]);
  return row;
}

/** Revokes the session with this token hash (sign-out); true when one was active. */
export async function revokeSessionByHash(sql: Sql, tokenHash: string, now: Date): Promise<boolean> {
  const rows = await sql.query<{ id: string }>(`UPDATE sessions SET revoked_at = $2 WHERE token_hash = $1 AND revoked_at IS NULL RETURNING id`, [tokenHash, now]);
  return rows.length > 0;
}

/** A ledger_entries row. */
export interface LedgerRow {
  id: string;
  customer_id: string;
  amount: number;
  kind: "grant" | "debit";
  description: string;
  job_id: string | null;
  compute_unit_id: string | null;
  created_at: Date;
}

/** Adds a grant (positive) to the ledger. */
export async function insertGrant(sql: Sql, row: { id: string; customerId: string; amount: number; description: string }, now: Date): Promise<LedgerRow> {
  const [created] = await sql.query<LedgerRow>(
    `INSERT INTO ledger_entries (id, customer_id, amount, kind, description, created_at) VALUES ($1, $2, $3, 'grant', $4, $5) RETURNING *`,
    [row.id, row.customerId, row.amount, row.description, now],
  );
  return created!;
}

/**
 * Debits a completed unit. The partial unique index on compute_unit_id makes a
 * replayed completion a no-op: returns false when the unit was already debited.
 */
export async function insertDebitOnce(
  sql: Sql,
  row: { id: string; customerId: string; amount: number; jobId: string; computeUnitId: string; description: string },
  now: Date,
): Promise<boolean> {
  const inserted = await sql.query(
    `INSERT INTO ledger_entries (id, customer_id, amount, kind, description, job_id, compute_unit_id, created_at)
     VALUES ($1, $2, $3, 'debit', $4, $5, $6, $7)
     ON CONFLICT (compute_unit_id) WHERE kind = 'debit' DO NOTHING RETURNING id`,
    [row.id, row.customerId, -Math.abs(row.amount), row.description, row.jobId, row.computeUnitId, now],
  );
  return inserted.length === 1;
}

/** The balance is the sum of the ledger. */
export async function creditBalance(sql: Sql, customerId: string): Promise<number> {
  const [row] = await sql.query<{ balance: number }>(
    `SELECT COALESCE(sum(amount), 0)::bigint AS balance FROM ledger_entries WHERE customer_id = $1`,
    [customerId],
  );
  return row?.balance ?? 0;
}

/** Ledger rows, newest first. */
export async function listLedger(sql: Sql, customerId: string, limit: number, after?: { at: Date; id: string }): Promise<LedgerRow[]> {
  return after === undefined
    ? sql.query<LedgerRow>(`SELECT * FROM ledger_entries WHERE customer_id = $1 ORDER BY created_at DESC, id DESC LIMIT $2`, [customerId, limit])
    : sql.query<LedgerRow>(
        `SELECT * FROM ledger_entries WHERE customer_id = $1 AND (created_at, id) < ($3, $4) ORDER BY created_at DESC, id DESC LIMIT $2`,
        [customerId, limit, after.at, after.id],
      );
}

/** How many of a customer's API keys are not revoked. */
export async function countActiveApiKeys(sql: Sql, customerId: string): Promise<number> {
  const [row] = await sql.query<{ n: number }>(
    `SELECT count(*)::int AS n FROM api_keys WHERE customer_id = $1 AND revoked_at IS NULL`,
    [customerId],
  );
  return row?.n ?? 0;
}
