/** Rows the telemetry tests start from. */
import { randomUUID } from "node:crypto";
import type { Sql } from "../../src/store/database.ts";

/**
 * A running job with one unit on node `nodes[0]` (attempt 1); `nodes[1]` runs nothing. The job
 * belongs to `customerId` when given (it must exist), else to a new customer.
 */
export async function seedRunningUnit(
  sql: Sql,
  options: { customerId?: string } = {},
): Promise<{ customerId: string; jobId: string; unitId: string; nodes: [string, string] }> {
  const customerId = options.customerId ?? randomUUID();
  const datasetId = randomUUID();
  const packageId = randomUUID();
  const jobId = randomUUID();
  const unitId = randomUUID();
  const nodes: [string, string] = [randomUUID(), randomUUID()];
  if (options.customerId === undefined) await sql.query(`INSERT INTO customers (id, email, password_hash) VALUES ($1, $2, 'x')`, [customerId, `${customerId}@example.com`]);
  await sql.query(`INSERT INTO datasets (id, customer_id, name, size_bytes, sha256, status, blob_key, upload_expires_at) VALUES ($1, $2, 'd', 1, 'h', 'ready', 'k', now())`, [
    datasetId,
    customerId,
  ]);
  await sql.query(
    `INSERT INTO training_packages (id, customer_id, name, size_bytes, sha256, entrypoint, status, blob_key, upload_expires_at)
     VALUES ($1, $2, 'p', 1, 'h', 'train.py', 'ready', 'k', now())`,
    [packageId, customerId],
  );
  await sql.query(
    `INSERT INTO training_jobs (id, customer_id, name, dataset_id, training_package_id, status, required_vram_mb, required_disk_mb, max_runtime_seconds, sensitivity)
     VALUES ($1, $2, 'j', $3, $4, 'running', 1024, 1024, 600, 'public')`,
    [jobId, customerId, datasetId, packageId],
  );
  for (const id of nodes) {
    await sql.query(`INSERT INTO nodes (id, trust_level, state, credential_hash, last_heartbeat_at) VALUES ($1, 'controlled', 'online', $2, now())`, [id, `hash-${id}`]);
  }
  await sql.query(
    `INSERT INTO compute_units (id, job_id, customer_id, name, kind, status, entrypoint, attempt, node_id) VALUES ($1, $2, $3, 'train', 'gpu', 'running', 'train.py', 1, $4)`,
    [unitId, jobId, customerId, nodes[0]],
  );
  return { customerId, jobId, unitId, nodes };
}

