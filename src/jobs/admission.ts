/**
 * Admission: a job is accepted only when every one of its stages could ever run on some enrolled,
 * non-revoked node (src/placer/node-capability.ts says what "ever" means). A job no node could run
 * would hold one of the customer's active-job slots, and its cheap first stages would run and be
 * charged, while it waited for a machine that does not exist. Whether a capable node is online now is
 * not admission's question: the placement cycle holds such a job (pending_reason) until one is, or
 * until its queue timeout.
 *
 * Also the translation of stored rows into the capability check's terms, shared with the placement
 * cycle's stage gating.
 */
import type { PlannedUnit } from "../planner/plan.ts";
import type { NodeCapacity, UnitNeeds } from "../placer/node-capability.ts";
import { explainIncapable } from "../placer/node-capability.ts";
import type { NodeIsolation, Sensitivity } from "../placer/types.ts";
import { ApiError } from "../platform/errors.ts";
import type { Sql } from "../store/database.ts";
import type { WaitingUnitNeedsRow } from "../store/jobs.ts";
import type { IsolationMechanism, NodeCapacityRow } from "../store/nodes.ts";
import { listEnrolledNodeCapacities } from "../store/nodes.ts";

/** What each isolation mechanism means to the placer (as src/scheduling/node-snapshots.ts reads it). */
const placerIsolation: Record<IsolationMechanism, NodeIsolation> = { bubblewrap: "sandboxed", none: "none", unavailable: "unavailable" };

/** A node's static capacity from its stored row (the capabilities its agent last reported in Hello). */
export function nodeCapacityOf(row: NodeCapacityRow): NodeCapacity {
  const c = row.capabilities;
  return {
    id: row.id,
    trustLevel: row.trust_level,
    // A mechanism this control plane does not know contains nothing it can vouch for.
    isolation: placerIsolation[row.isolation] ?? "none",
    cpuCores: c.cpuCores ?? 0,
    memoryMb: c.memoryMb ?? 0,
    diskMb: c.diskFreeMb ?? 0,
    gpus: (c.gpus ?? []).map((g) => ({
      name: g.name ?? "",
      vramMb: g.vramMb ?? 0,
      // "" is how an agent says it does not know: no version, so no minimum is met.
      ...(g.computeCapability ? { computeCapability: g.computeCapability } : {}),
      ...(g.cudaVersion ? { cudaVersion: g.cudaVersion } : {}),
    })),
  };
}

/** What a planned unit of a job of `sensitivity` asks of a node. */
export function plannedUnitNeeds(unit: PlannedUnit, sensitivity: Sensitivity): UnitNeeds {
  return {
    kind: unit.kind,
    vramMb: unit.vramMb,
    gpuCount: unit.gpuCount,
    gpuModels: unit.gpuModels,
    minComputeCapability: unit.minComputeCapability,
    minCudaVersion: unit.minCudaVersion,
    diskMb: unit.diskMb,
    cpuCores: unit.cpuCores,
    memoryMb: unit.memoryMb,
    sensitivity,
  };
}

/** What a stored waiting unit asks of a node. */
export function storedUnitNeeds(row: WaitingUnitNeedsRow): UnitNeeds {
  return {
    kind: row.kind,
    vramMb: row.kind === "gpu" ? row.required_vram_mb : 0,
    gpuCount: row.kind === "gpu" ? row.required_gpu_count : 0,
    gpuModels: row.gpu_models,
    minComputeCapability: row.min_compute_capability,
    minCudaVersion: row.min_cuda_version,
    diskMb: row.required_disk_mb,
    cpuCores: row.required_cpu_cores,
    memoryMb: row.required_memory_mb,
    sensitivity: row.sensitivity,
  };
}

/**
 * Refuses a job one of whose units no enrolled, non-revoked node could ever run. Reads the fleet in
 * one query on `sql` (the creating transaction), and only the nodes' identity and capabilities.
 * @throws ApiError NO_CAPABLE_NODE naming the first such unit and the closest figures.
 */
export async function admitPlannedJob(sql: Sql, units: readonly PlannedUnit[], sensitivity: Sensitivity): Promise<void> {
  const fleet = (await listEnrolledNodeCapacities(sql)).map(nodeCapacityOf);
  // Replicas of one stage ask the same: each distinct ask is checked against the fleet once.
  const checked = new Set<string>();
  for (const unit of units) {
    const needs = plannedUnitNeeds(unit, sensitivity);
    const key = JSON.stringify(needs);
    if (checked.has(key)) continue;
    checked.add(key);
    const why = explainIncapable(unit.name, needs, fleet);
    if (why !== undefined) throw new ApiError("NO_CAPABLE_NODE", why, { details: { stage: unit.name } });
  }
}
