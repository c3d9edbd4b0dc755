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
  /** The unit's name in its job's plan ("train", "shard-0"). */
  name: string;
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
  /** 0 for a cpu unit (schema-0010.ts). */
  required_gpu_count: number;
  gpu_models: string[];
  min_compute_capability: string;
  min_cuda_version: string;
}

/**
 * Resources held on one GPU of a node (or its CPU side, GPU index -1) by assigned and running units. A
 * unit on several GPUs holds its VRAM on each of them, and its disk, cores, memory and unit slot once:
 * on the row of its first GPU.
 */
export interface HeldRow {
  node_id: string;
  gpu_index: number;
  vram: number;
  disk: number;
  cpu: number;
  memory: number;
  /** Units counted on this row (each unit once per node). */
  units: number;
}

/** The GPUs a compute_units row `u` holds: `gpu_indexes`, or `{gpu_index}` for a row written before them. */
const heldGpusSql = (u: string) => `(CASE WHEN cardinality(${u}.gpu_indexes) > 0 THEN ${u}.gpu_indexes ELSE ARRAY[${u}.gpu_index] END)`;
const onNodeSql = sqlStatusList(unitsOnNodeStatuses);

/** The status placement moves units into; they come from the statuses the state machine allows. */
const placedStatus: UnitStatus = "assigned";
const placeableStatusSql = sqlStatusList(unitStatusesInto(placedStatus));

/** Up to `limit` units the placer may assign (of jobs still active), longest waiting first. */
export async function listReadyUnits(sql: Sql, limit: number): Promise<ReadyUnitRow[]> {
  return sql.query<ReadyUnitRow>(
    `SELECT u.id, u.job_id, u.name, u.customer_id, u.kind, u.required_vram_mb, u.required_disk_mb, u.required_cpu_cores,
            u.required_memory_mb, u.excluded_node_ids, u.ready_at, u.created_at, j.sensitivity, j.dataset_id,
            u.required_gpu_count, u.gpu_models, u.min_compute_capability, u.min_cuda_version
     FROM compute_units u JOIN training_jobs j ON j.id = u.job_id
     WHERE u.status IN ${placeableStatusSql} AND j.status IN ${activeJobStatusSql}
     ORDER BY u.ready_at, u.id LIMIT $1`,
    [limit],
  );
}

/** What the units on nodes hold, summed per node and GPU (nodes holding nothing are absent). */
export async function listHeldResources(sql: Sql): Promise<HeldRow[]> {
  const once = (column: string) => `sum(CASE WHEN g.nth = 1 THEN ${column} ELSE 0 END)::int`;
  return sql.query<HeldRow>(
    `SELECT u.node_id, g.gpu_index, sum(u.required_vram_mb)::int AS vram, ${once("u.required_disk_mb")} AS disk,
            ${once("u.required_cpu_cores")} AS cpu, ${once("u.required_memory_mb")} AS memory, ${once("1")} AS units
     FROM compute_units u CROSS JOIN LATERAL unnest(${heldGpusSql("u")}) WITH ORDINALITY AS g(gpu_index, nth)
     WHERE u.status IN ${onNodeSql} AND u.node_id IS NOT NULL GROUP BY u.node_id, g.gpu_index`,
  );
}

/** The VRAM units on one node asked for, per GPU index (GPUs no unit holds are absent). */
export async function listHeldVramOfNode(sql: Sql, nodeId: string): Promise<Map<number, number>> {
  const rows = await sql.query<{ gpu_index: number; vram: number }>(
    `SELECT g.gpu_index, sum(u.required_vram_mb)::int AS vram
     FROM compute_units u CROSS JOIN LATERAL unnest(${heldGpusSql("u")}) AS g(gpu_index)
     WHERE u.node_id = $1 AND u.status IN ${onNodeSql} GROUP BY g.gpu_index`,
    [nodeId],
  );
  return new Map(rows.map((r) => [r.gpu_index, r.vram]));
}

/** One placement of a plan, to be committed. */
export interface PlannedAssignment {
  unitId: string;
  nodeId: string;
  /** The first of `gpuIndexes`; -1 for a CPU unit. */
  gpuIndex: number;
  /** Every GPU the unit gets, ascending; empty for a CPU unit. Absent: `[gpuIndex]` (none when -1). */
  gpuIndexes?: readonly number[];
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
 * or lowered its trust, or its owner paused it, or it answered an assignment busy (`busy_until`, held
 * full until then), since the snapshot. The fit is checked again too: the
 * node still has a free unit slot (`max_units`, 0: no limit) and each of the unit's GPUs still exists
 * there with the unit's VRAM free (its total less the owner's reserve and what units on it hold), counting
 * the placements committed before it in the same transaction. Returns the placements that took, or
 * undefined when the term is no longer current (a deposed leader commits nothing). Run it inside a
 * transaction: the lease row stays locked until that ends.
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
    const gpus = placementGpus(p);
    const rows = await tx.query(
      `UPDATE compute_units SET status = '${placedStatus}', node_id = $2, gpu_index = $3, gpu_indexes = $11::int[], assignment_id = $4,
         assigned_at = $5, leader_term = $6, unschedulable_reason = ''
       WHERE id = $1 AND status IN ${placeableStatusSql}
         AND EXISTS (SELECT 1 FROM nodes n WHERE n.id = $2 AND n.state = ${sqlNodeState("online")} AND n.trust_level = ANY($7::text[])
                       AND ${nodeTakesUnitsSql} AND (NOT $10::boolean OR n.isolation IN ${sandboxMechanismsSql})
                       AND ($8::boolean OR n.last_heartbeat_at >= $9)
                       AND (n.busy_until IS NULL OR n.busy_until <= $5)
                       AND (n.max_units = 0
                            OR (SELECT count(*) FROM compute_units o WHERE o.node_id = n.id AND o.status IN ${onNodeSql}) < n.max_units)
                       AND NOT EXISTS (
                         SELECT 1 FROM unnest($11::int[]) AS want(gpu_index)
                         WHERE NOT EXISTS (
                           SELECT 1 FROM jsonb_array_elements(COALESCE(n.capabilities->'gpus', '[]'::jsonb)) AS g
                           WHERE (g->>'index')::int = want.gpu_index
                             AND COALESCE((g->>'vramMb')::int, 0) - n.reserved_vram_mb
                                 - (SELECT COALESCE(sum(o.required_vram_mb), 0) FROM compute_units o
                                    WHERE o.node_id = n.id AND o.status IN ${onNodeSql} AND want.gpu_index = ANY(${heldGpusSql("o")}))
                                 >= compute_units.required_vram_mb)))
       RETURNING id`,
      [p.unitId, p.nodeId, gpus[0] ?? -1, p.assignmentId, now, term, [...p.trustLevels], p.nodeLocallyLive, silentBefore, p.sandboxRequired, gpus],
    );
    if (rows.length === 1) {
      assigned.push(p);
      await stageJobEvent(tx, { type: "unit", unitId: p.unitId });
    }
  }
  return assigned;
}

/** The GPUs a placement gives its unit: `gpuIndexes`, or `[gpuIndex]` from a placer that fills only that. */
export function placementGpus(p: Pick<PlannedAssignment, "gpuIndex" | "gpuIndexes">): number[] {
  if (p.gpuIndexes !== undefined && p.gpuIndexes.length > 0) return [...p.gpuIndexes];
  return p.gpuIndex >= 0 ? [p.gpuIndex] : [];
}

/** Says why no node could take a unit this cycle (shown to its customer), while the unit is still ready. */
export async function setUnschedulableReason(sql: Sql, unitId: string, reason: string): Promise<void> {
  // Advisory, written by the placement cycle after it assigned units: a unit another transaction holds (a cancel,
  // which locks the job and then its units) is skipped rather than waited for, so the two never deadlock; the
  // next cycle writes it again.
  await sql.query(
    `UPDATE compute_units SET unschedulable_reason = $2
     WHERE id = (SELECT id FROM compute_units WHERE id = $1 AND status IN ${placeableStatusSql} FOR UPDATE SKIP LOCKED)`,
    [unitId, reason],
  );
}
