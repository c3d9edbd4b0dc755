/**
 * SQL for the units handed to nodes (assigned, running), as the control side of the agents' streams
 * reads them: what to send a node, what it should be running, which nodes have assignments waiting.
 */
import type { Sql } from "./database.ts";
import type { UnitRow } from "./jobs.ts";
import type { UnitStatus } from "./state-machines.ts";
import { sqlStatusList, unitsOnNodeStatuses } from "./state-machines.ts";

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
  attempt: number;
  status: UnitStatus;
  assignment_id: string | null;
}

/** The attempts the node should hold now (assigned or running there). */
export async function listAttemptsOnNode(sql: Sql, nodeId: string): Promise<AttemptOnNode[]> {
  return sql.query<AttemptOnNode>(`SELECT id, attempt, status, assignment_id FROM compute_units WHERE node_id = $1 AND status IN ${onNodeSql}`, [nodeId]);
}

/** Of `unitIds`, the current attempts of those still assigned to or running on the node. */
export async function findAttemptsOnNode(sql: Sql, nodeId: string, unitIds: readonly string[]): Promise<{ id: string; attempt: number }[]> {
  return sql.query<{ id: string; attempt: number }>(
    `SELECT id, attempt FROM compute_units WHERE id = ANY($1::uuid[]) AND node_id = $2 AND status IN ${onNodeSql}`,
    [[...unitIds], nodeId],
  );
}
