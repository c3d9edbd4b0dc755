/**
 * SQL for the units handed to nodes (assigned, running): what to send a node, what it should be
 * running, which nodes have assignments waiting, and which of its attempts to take back.
 */
import type { Sql } from "./database.ts";
import type { UnitRow } from "./jobs.ts";
import type { UnitStatus } from "./state-machines.ts";
import { sqlStatusList, unitsOnNodeStatuses } from "./state-machines.ts";

/** A status of a unit handed to a node. */
export type UnitOnNodeStatus = (typeof unitsOnNodeStatuses)[number];

const onNodeSql = sqlStatusList(unitsOnNodeStatuses);
/** Placed, and not yet accepted by the node's agent. */
const assignedSql = sqlStatusList(["assigned"]);

/** The node's assignments not yet accepted, in the order they were made. */
export async function listAssignmentsOfNode(sql: Sql, nodeId: string): Promise<UnitRow[]> {
  return sql.query<UnitRow>(
    `SELECT * FROM compute_units WHERE node_id = $1 AND status IN ${assignedSql} AND assignment_id IS NOT NULL ORDER BY assigned_at, id`,
    [nodeId],
  );
}

/** Of `nodeIds`, those with assignments not yet accepted (few: the re-scan dispatches only these). */
export async function findNodesWithAssignmentsWaiting(sql: Sql, nodeIds: readonly string[]): Promise<string[]> {
  const rows = await sql.query<{ node_id: string }>(
    `SELECT DISTINCT node_id FROM compute_units WHERE node_id = ANY($1::uuid[]) AND status IN ${assignedSql} AND assignment_id IS NOT NULL`,
    [[...nodeIds]],
  );
  return rows.map((r) => r.node_id);
}

/** Nodes holding an assignment made before `before` that their agent has not accepted yet. */
export async function findNodesWithAssignmentsBefore(sql: Sql, before: Date): Promise<string[]> {
  const rows = await sql.query<{ node_id: string }>(`SELECT DISTINCT node_id FROM compute_units WHERE status IN ${assignedSql} AND assigned_at < $1`, [before]);
  return rows.map((r) => r.node_id);
}

/** An attempt handed to a node. */
export interface AttemptOnNode {
  id: string;
  job_id: string;
  attempt: number;
  status: UnitStatus;
  assignment_id: string | null;
}

/** Which of a node's attempts to read; each field narrows the read. */
export interface AttemptsOnNodeFilter {
  /** Only these units (e.g. the ones an agent reports, or no longer has). */
  unitIds?: readonly string[];
  /** Only these statuses (by default both: assigned and running). */
  statuses?: readonly UnitOnNodeStatus[];
  /** Only attempts assigned before this time (assignments never accepted). */
  assignedBefore?: Date;
}

/**
 * The attempts the node should hold now (assigned or running there), narrowed by `filter`. Unlocked:
 * a caller that moves them locks their jobs, then each unit, and checks the attempt again.
 */
export async function listAttemptsOnNode(sql: Sql, nodeId: string, filter: AttemptsOnNodeFilter = {}): Promise<AttemptOnNode[]> {
  const params: unknown[] = [nodeId];
  // The IN list matches the partial index compute_units_node; the bound arrays narrow it.
  let where = `node_id = $1 AND status IN ${onNodeSql}`;
  if (filter.statuses !== undefined) {
    params.push(filter.statuses);
    where += ` AND status = ANY($${params.length}::text[])`;
  }
  if (filter.unitIds !== undefined) {
    params.push(filter.unitIds);
    where += ` AND id = ANY($${params.length}::uuid[])`;
  }
  if (filter.assignedBefore !== undefined) {
    params.push(filter.assignedBefore);
    where += ` AND assigned_at < $${params.length}`;
  }
  return sql.query<AttemptOnNode>(`SELECT id, job_id, attempt, status, assignment_id FROM compute_units WHERE ${where}`, params);
}
