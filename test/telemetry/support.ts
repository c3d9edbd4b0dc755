/** Rows the telemetry tests start from. */
import { randomUUID } from "node:crypto";
import type { Sql } from "../../src/store/database.ts";
import { insertJob, insertNodes } from "../support/rows.ts";

/**
 * A running job with one unit on node `nodes[0]` (attempt 1); `nodes[1]` runs nothing. The job
 * belongs to `customerId` when given (it must exist), else to a new customer.
 */
export async function seedRunningUnit(
  sql: Sql,
  options: { customerId?: string } = {},
): Promise<{ customerId: string; jobId: string; unitId: string; nodes: [string, string] }> {
  const { customerId, jobId } = await insertJob(sql, { ...options, status: "running" });
  const unitId = randomUUID();
  const nodes = (await insertNodes(sql, 2)) as [string, string];
  await sql.query(
    `INSERT INTO compute_units (id, job_id, customer_id, name, kind, status, entrypoint, attempt, node_id) VALUES ($1, $2, $3, 'train', 'gpu', 'running', 'train.py', 1, $4)`,
    [unitId, jobId, customerId, nodes[0]],
  );
  return { customerId, jobId, unitId, nodes };
}

