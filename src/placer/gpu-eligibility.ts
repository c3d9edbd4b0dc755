/**
 * Which nodes and GPUs a gpu unit's static GPU rules allow: enough GPUs in all (`gpuCount`), and
 * enough of them of an allowed model, compute capability and CUDA version (gpu-rules.ts). These are
 * facts of the hardware, the same every cycle, so they are computed once per distinct set of rules
 * (the key) over the whole cluster and kept in the state until it is rebuilt (a GPU's model or
 * versions changing makes `syncState` rebuild). The constraints are judged once per GPU kind (model,
 * versions, size: a handful in a fleet), then each GPU and node is one array lookup, so a new set of
 * rules costs O(GPUs) once.
 *
 * The index walk (place-units.ts) then skips the nodes these rules reject without visiting them and
 * counts them per group, as a full scan would under GpuCount, GpuModel, ComputeCapability and
 * CudaVersion, which come right after TrustTier in plugins/index.ts.
 */
import type { ClusterState, WorkingNode } from "./cycle-state.ts";
import { failedConstraint, GpuConstraint, gpuCountOf, passesUpTo } from "./gpu-rules.ts";
import { Reason, type ReasonCode } from "./reasons.ts";
import type { UnitRequest } from "./types.ts";

/** The static GPU reasons in filter order; `GpuEligibility.verdict` holds positions in this list. */
export const staticGpuReasons: readonly ReasonCode[] = [
  Reason.NoGpu,
  Reason.GpuCountTooLow,
  Reason.GpuModelNotAllowed,
  Reason.ComputeCapabilityTooLow,
  Reason.CudaVersionTooLow,
];
const verdictNoGpu = 0;
const verdictCountTooLow = 1;
/** The verdicts that waiting cannot change: all but no_gpu (kept unschedulable, as before GPU counts existed). */
export const firstUnresolvableVerdict = verdictCountTooLow;

/** What one set of GPU rules allows on the cluster. */
export interface GpuEligibility {
  /** GPUs the unit needs on one node. */
  readonly count: number;
  /** Per node: -1 when at least `count` of its GPUs satisfy every constraint, else its first failing rule (`staticGpuReasons` position). */
  readonly verdict: Int8Array;
  /** Per GPU (`ClusterState.gpuBase` layout): 1 when it satisfies every constraint. */
  readonly gpuOk: Uint8Array;
  /** Per group and verdict (`g * staticGpuReasons.length + verdict`): the group's nodes the rules reject. */
  readonly rejected: Int32Array;
  /** Per group: its nodes the rules allow. */
  readonly allowed: Int32Array;
  /** Per group: those nodes (idx), for a unit the rules allow on few nodes (walked instead of the GPU index). */
  readonly nodes: readonly Int32Array[];
}

/** How many rule sets a state keeps; past this the cache starts over (a fleet sees a few dozen). */
const maxCached = 256;

/** The key of a unit's GPU rules: equal keys, equal eligibility. */
function keyOf(unit: UnitRequest): string {
  const models = unit.gpuModels === undefined ? "" : unit.gpuModels.map((m) => m.toLowerCase()).join("\u0000");
  return `${gpuCountOf(unit)}\u0001${models}\u0001${unit.minComputeCapability ?? ""}\u0001${unit.minCudaVersion ?? ""}`;
}

/** The eligibility of the unit's GPU rules on `state`, computed on first use and cached in the state. */
export function eligibilityFor(state: ClusterState, unit: UnitRequest): GpuEligibility {
  const key = keyOf(unit);
  const cached = state.eligibility.get(key);
  if (cached !== undefined) return cached;
  if (state.eligibility.size >= maxCached) state.eligibility.clear();
  const made = compute(state, unit);
  state.eligibility.set(key, made);
  return made;
}

function compute(state: ClusterState, unit: UnitRequest): GpuEligibility {
  const count = gpuCountOf(unit);
  const failedByKind = state.gpuKinds.map((g) => failedConstraint(unit, g));
  const { gpuBase, gpuKind } = state;
  const gpuOk = new Uint8Array(gpuKind.length);
  const verdict = new Int8Array(state.size);
  const reasons = staticGpuReasons.length;
  const groups = state.groups.length;
  const rejected = new Int32Array(groups * reasons);
  const allowed = new Int32Array(groups);
  const passing = [0, 0, 0];
  const stages = [GpuConstraint.Model, GpuConstraint.ComputeCapability, GpuConstraint.CudaVersion] as const;
  for (let i = 0; i < state.size; i++) {
    const from = gpuBase[i] as number;
    const to = gpuBase[i + 1] as number;
    passing.fill(0);
    for (let k = from; k < to; k++) {
      const failed = failedByKind[gpuKind[k] as number] as (typeof failedByKind)[number];
      stages.forEach((stage, s) => {
        if (passesUpTo(failed, stage)) passing[s] = (passing[s] as number) + 1;
      });
      gpuOk[k] = failed === GpuConstraint.None ? 1 : 0;
    }
    let v = -1;
    if (to === from) v = verdictNoGpu;
    else if (to - from < count) v = verdictCountTooLow;
    else {
      const s = passing.findIndex((n) => n < count);
      if (s !== -1) v = verdictCountTooLow + 1 + s;
    }
    verdict[i] = v;
    const group = (state.nodes[i] as WorkingNode).group;
    if (group === -1) continue;
    if (v === -1) allowed[group] = (allowed[group] as number) + 1;
    else rejected[group * reasons + v] = (rejected[group * reasons + v] as number) + 1;
  }
  const nodes = Array.from({ length: groups }, (_, g) => new Int32Array(allowed[g] as number));
  const filled = new Int32Array(groups);
  for (let i = 0; i < state.size; i++) {
    const group = (state.nodes[i] as WorkingNode).group;
    if (group === -1 || verdict[i] !== -1) continue;
    (nodes[group] as Int32Array)[filled[group] as number] = i;
    filled[group] = (filled[group] as number) + 1;
  }
  return { count, verdict, gpuOk, rejected, allowed, nodes };
}
