/**
 * SQL of the leader's placement cycle (src/scheduling/placement-cycle.ts): the snapshot it plans on
 * (ready units, resources held on nodes) and the commit of the plan, fenced by the leader's term.
 */
import type { Sql } from "./database.ts";
import { stageJobEvent } from "./job-events.ts";
import { lockFencingTerm } from "./leases.ts";
import type { TrustLevel } from "./nodes.ts";
import { nodeTakesUnitsSql, sandboxMechanismsSql, sqlNodeState } from "./nodes.ts";
import type { UnitStatus } from "./state-machines.ts";
import { activeJobStatusSql, sqlStatusList, unitStatusesInto, unitsOnNodeStatuses } from "./state-machines.ts";

/** A unit waiting for placement, with what the placer needs of its job. */
export interface ReadyUnitRow {
  id: string;
  job_id: string;
  customer_id: string;
  kind: "cpu" | "gpu";
  required_vram_mb: number;
  required_disk_mb: number;
  required_cpu_cores: number;
  required_memory_mb: number;
  excluded_node_ids: string[];
  ready_at: Date | null;
  created_at: Date;
  sensitivity: "public" | "low_sensitive" | "high_sensitive";
  dataset_id: string;
}

/** Resources held on one GPU of a node (or its CPU side, GPU index -1) by assigned and running units. */
export interface HeldRow {
  node_id: string;
  gpu_index: number;
  vram: number;
  disk: number;
  cpu: number;
  memory: number;
}

/** The status placement moves units into; they come from the statuses the state machine allows. */
const placedStatus: UnitStatus = "assigned";
const placeableStatusSql = sqlStatusList(unitStatusesInto(placedStatus));

/** Up to `limit` units the placer may assign (of jobs still active), longest waiting first. */
export async function listReadyUnits(sql: Sql, limit: number): Promise<ReadyUnitRow[]> {
  return sql.query<ReadyUnitRow>(
    `SELECT u.id, u.job_id, u.customer_id, u.kind, u.required_vram_mb, u.required_disk_mb, u.required_cpu_cores,
            u.required_memory_mb, u.excluded_node_ids, u.ready_at, u.created_at, j.sensitivity, j.dataset_id
     FROM compute_units u JOIN training_jobs j ON j.id = u.job_id
     WHERE u.status IN ${placeableStatusSql} AND j.status IN ${activeJobStatusSql}
     ORDER BY u.ready_at, u.id LIMIT $1`,
    [limit],
  );
}

/** What the units on nodes hold, summed per node and GPU (nodes holding nothing are absent). */
export async function listHeldResources(sql: Sql): Promise<HeldRow[]> {
  return sql.query<HeldRow>(
    `SELECT node_id, gpu_index, sum(required_vram_mb)::int AS vram, sum(required_disk_mb)::int AS disk,
            sum(required_cpu_cores)::int AS cpu, sum(required_memory_mb)::int AS memory
     FROM compute_units WHERE status IN ${sqlStatusList(unitsOnNodeStatuses)} AND node_id IS NOT NULL GROUP BY node_id, gpu_index`,
  );
}

/** One placement of a plan, to be committed. */
export interface PlannedAssignment {
  unitId: string;
  nodeId: string;
  gpuIndex: number;
  assignmentId: string;
  /** The trust levels the unit's job allows; checked again against the node's fresh row. */
  trustLevels: readonly TrustLevel[];
  /** The unit is `low_sensitive` or `high_sensitive`: only a node whose sandbox contains it may take it. */
  sandboxRequired: boolean;
  /**
   * Whether this replica holds the node's stream and hears from it. When not, the node counted as live
   * by a heartbeat set a few seconds old, so its persisted heartbeat is checked again in the UPDATE.
   */
  nodeLocallyLive: boolean;
}

/**
 * Commits placements under the leader's `term`: locks the lease row and, only while it still carries
 * `term`, moves each unit ready → assigned if it is still ready (a cancel may have won the race) and its
 * node is still online, trusted enough, neither paused by its owner nor outside its window, able to
 * run units (and sandboxed, for a sensitive unit) and (unless `nodeLocallyLive`) heard from at or after
 * `silentBefore`; each re-checked against the fresh rows, since an operator may have cordoned the node
 * or lowered its trust, or its owner paused it, since the snapshot. Returns the placements that took, or undefined when the term
 * is no longer current (a deposed leader commits nothing). Run it inside a transaction: the lease row
 * stays locked until that ends.
 */
export async function assignReadyUnitsUnderTerm(
  tx: Sql,
  term: number,
  placements: readonly PlannedAssignment[],
  silentBefore: Date,
  now: Date,
): Promise<PlannedAssignment[] | undefined> {
  if ((await lockFencingTerm(tx)) !== term) return undefined;
  const assigned: PlannedAssignment[] = [];
  // Unit ids in order, so concurrent transactions touching the same units lock them in the same order.
  for (const p of [...placements].sort((a, b) => (a.unitId < b.unitId ? -1 : 1))) {
    const rows = await tx.query(
      `UPDATE compute_units SET status = '${placedStatus}', node_id = $2, gpu_index = $3, assignment_id = $4, assigned_at = $5,
         leader_term = $6, unschedulable_reason = ''
       WHERE id = $1 AND status IN ${placeableStatusSql}
         AND EXISTS (SELECT 1 FROM nodes n WHERE n.id = $2 AND n.state = ${sqlNodeState("online")} AND n.trust_level = ANY($7::text[])
                       AND ${nodeTakesUnitsSql} AND (NOT $10::boolean OR n.isolation IN ${sandboxMechanismsSql})
                       AND ($8::boolean OR n.last_heartbeat_at >= $9))
       RETURNING id`,
      [p.unitId, p.nodeId, p.gpuIndex, p.assignmentId, now, term, [...p.trustLevels], p.nodeLocallyLive, silentBefore, p.sandboxRequired],
    );
    if (rows.length === 1) {
      assigned.push(p);
      await stageJobEvent(tx, { type: "unit", unitId: p.unitId });
    }
  }
  return assigned;
}

/** Says why no node could take a unit this cycle (shown to its customer), while the unit is still ready. */
export async function setUnschedulableReason(sql: Sql, unitId: string, reason: string): Promise<void> {
  await sql.query(`UPDATE compute_units SET unschedulable_reason = $2 WHERE id = $1 AND status IN ${placeableStatusSql}`, [unitId, reason]);
}
