/**
 * The rows store-level tests start from, inserted directly: a customer with a
 * ready dataset, package and job, and online nodes. Unit rows differ by test
 * (ready, assigned, running) and stay with each test.
 */
import { randomUUID } from "node:crypto";
import type { Sql } from "../../src/store/database.ts";

/** A job of `customerId` (created unless given) on a fresh ready dataset and package. */
export async function insertJob(
  sql: Sql,
  options: { customerId?: string; status?: "queued" | "running" } = {},
): Promise<{ customerId: string; datasetId: string; packageId: string; jobId: string }> {
  const customerId = options.customerId ?? randomUUID();
  const datasetId = randomUUID();
  const packageId = randomUUID();
  const jobId = randomUUID();
  if (options.customerId === undefined) {
    await sql.query(`INSERT INTO customers (id, email, password_hash) VALUES ($1, $2, 'x')`, [customerId, `${customerId}@example.com`]);
  }
  await sql.query(
    `INSERT INTO datasets (id, customer_id, name, size_bytes, sha256, status, blob_key, upload_expires_at) VALUES ($1, $2, 'd', 1, 'h', 'ready', 'k', now())`,
    [datasetId, customerId],
  );
  await sql.query(
    `INSERT INTO training_packages (id, customer_id, name, size_bytes, sha256, entrypoint, status, blob_key, upload_expires_at)
     VALUES ($1, $2, 'p', 1, 'h', 'train.py', 'ready', 'k', now())`,
    [packageId, customerId],
  );
  await sql.query(
    `INSERT INTO training_jobs (id, customer_id, name, dataset_id, training_package_id, status, required_vram_mb, required_disk_mb, max_runtime_seconds, sensitivity)
     VALUES ($1, $2, 'j', $3, $4, $5, 1024, 1024, 600, 'public')`,
    [jobId, customerId, datasetId, packageId, options.status ?? "queued"],
  );
  return { customerId, datasetId, packageId, jobId };
}

/** `count` online controlled nodes with the sandbox, last heard at `heardAt` (default the database's now()). */
export async function insertNodes(sql: Sql, count: number, heardAt?: Date): Promise<string[]> {
  const ids: string[] = [];
  for (let i = 0; i < count; i++) {
    const id = randomUUID();
    await sql.query(
      `INSERT INTO nodes (id, trust_level, state, credential_hash, last_heartbeat_at, isolation) VALUES ($1, 'controlled', 'online', $2, COALESCE($3::timestamptz, now()), 'bubblewrap')`,
      [id, `hash-${id}`, heardAt ?? null],
    );
    ids.push(id);
  }
  return ids;
}
