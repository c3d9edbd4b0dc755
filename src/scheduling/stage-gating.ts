/**
 * Stage gating: no unit of a job starts while another of its waiting stages has no capable node online.
 * Without it a job whose `train` only an offline 80 GB node could run would start its `prepare` now, be
 * charged for it, and then wait for that node, perhaps until its queue timeout. Capability is the
 * static kind (src/placer/node-capability.ts: could the unit ever run there); online means live now
 * (its stream connected and heard from). Whether there is room now is the placer's question: a busy
 * capable node does not hold a job back, since its units end.
 *
 * The stage that has no capable node online is still offered to the placer, which then says in its
 * own words, counted per node, why it waits (it cannot place it: the placer's filters include the
 * static checks); the job's other ready units are held, with a reason naming that stage.
 */
import type { NodeCapacity } from "../placer/node-capability.ts";
import { canEverRun, shortfallDetail } from "../placer/node-capability.ts";
import type { WaitingUnitNeedsRow } from "../store/jobs.ts";
import type { NodeRow } from "../store/nodes.ts";
import { nodeCapacityOf, storedUnitNeeds } from "../jobs/admission.ts";

/** What gating decided for one cycle. */
export interface GatingDecision {
  /** Ready units not offered to the placer this cycle, each with the reason its view shows. */
  heldUnits: Map<string, string>;
  /** The jobs one of whose waiting stages has no capable node online, with the reason (their pending_reason). */
  jobReasons: Map<string, string>;
}

/** A ready unit as gating sees it. */
export interface GatedUnit {
  id: string;
  job_id: string;
  name: string;
}

/**
 * Decides which ready units wait for another stage of their job. `waiting` are the waiting (pending and
 * ready) units of the jobs of `ready`; `online` the nodes live now.
 */
export function gateReadyUnits(ready: readonly GatedUnit[], waiting: readonly WaitingUnitNeedsRow[], online: readonly NodeCapacity[]): GatingDecision {
  const decision: GatingDecision = { heldUnits: new Map(), jobReasons: new Map() };
  // Many units (replicas, jobs of one template) ask the same: each distinct ask is checked once per cycle.
  const verdicts = new Map<string, boolean>();
  const blockedStages = new Map<string, { name: string; needs: ReturnType<typeof storedUnitNeeds> }>();
  for (const unit of waiting) {
    if (blockedStages.has(unit.job_id)) continue;
    const needs = storedUnitNeeds(unit);
    const key = JSON.stringify(needs);
    let capable = verdicts.get(key);
    if (capable === undefined) {
      capable = online.some((node) => canEverRun(needs, node));
      verdicts.set(key, capable);
    }
    if (!capable) blockedStages.set(unit.job_id, { name: unit.name, needs });
  }
  for (const [jobId, stage] of blockedStages) {
    const detail = online.length === 0 ? "no node is online" : `no online node can run it: it ${shortfallDetail(stage.needs, online)}`;
    decision.jobReasons.set(jobId, `stage "${stage.name}" waits for a capable node to come online (${detail})`);
  }
  for (const unit of ready) {
    const stage = blockedStages.get(unit.job_id);
    if (stage === undefined || stage.name === unit.name) continue;
    decision.heldUnits.set(unit.id, `held until a node that can run stage "${stage.name}" of this job is online, so nothing runs (or is charged) before it can`);
  }
  return decision;
}

/**
 * The static capacity of online rows, kept per row object: the fleet cache hands back the same object
 * while a node's row is unchanged, so a cycle converts only the rows that changed.
 */
export class OnlineCapacities {
  private readonly byRow = new WeakMap<NodeRow, NodeCapacity>();

  /** The capacities of the rows whose node is live now. */
  of(rows: readonly NodeRow[], isLive: (nodeId: string) => boolean): NodeCapacity[] {
    const result: NodeCapacity[] = [];
    for (const row of rows) {
      if (!isLive(row.id)) continue;
      let capacity = this.byRow.get(row);
      if (capacity === undefined) {
        capacity = nodeCapacityOf(row);
        this.byRow.set(row, capacity);
      }
      result.push(capacity);
    }
    return result;
  }
}
