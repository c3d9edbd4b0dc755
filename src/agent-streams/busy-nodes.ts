/**
 * How long a node that answered an assignment `Rejected{busy}` counts as full, and when it has room again
 * (issue 15 point 4, schema-0011.ts).
 *
 * Why a hold rather than the owner's measured VRAM in the placer's snapshot: heartbeats report each GPU's
 * total use, the node's own units included, and what a unit really uses is not what it asked for, so "the
 * owner's use" is a guess the agent makes better (it knows what its running units asked, right now); the
 * placer would also need every heartbeat's sample persisted (a row write per node per beat, at 10,000
 * nodes). The node itself says when it is full, so the control plane believes it for a bounded time: the
 * heartbeat interval (the agent's next report), at most `maxBusyHoldMs`, and less when a unit on the
 * node ends or a heartbeat shows the unit's GPUs with room again.
 */
import type { GpuUsage } from "../gen/gpuagent/agent/v1/agent_pb.ts";
import type { StoredGpu } from "../store/nodes.ts";

/** The longest a busy node is held full: a node whose owner came back is tried again within this. */
export const maxBusyHoldMs = 10_000;

/** The hold for an agent that heartbeats every `heartbeatIntervalSeconds`. */
export function busyHoldMs(heartbeatIntervalSeconds: number): number {
  return Math.min(heartbeatIntervalSeconds * 1000, maxBusyHoldMs);
}

/** What the unit the node turned down as busy asked of its GPUs. */
export interface BusyNeed {
  gpuIndexes: readonly number[];
  vramMb: number;
}

/**
 * Whether a heartbeat shows room for the need again, by the agent's own rule (vramShortfall in
 * src/node-agent/unit-gpus.ts): on each GPU the owner's use is what is used beyond what the node's units
 * asked there, and the GPU's total less the larger of that use and the reserve, less what units asked,
 * must leave the unit's VRAM. A GPU the heartbeat did not measure does not hold the node back (the agent
 * refuses nothing on an unmeasured GPU either).
 */
export function hasRoomAgain(
  need: BusyNeed,
  measured: readonly GpuUsage[],
  gpus: readonly StoredGpu[],
  reservedVramMb: number,
  askedByUnits: ReadonlyMap<number, number>,
): boolean {
  if (need.vramMb <= 0) return true;
  return need.gpuIndexes.every((index) => {
    const usage = measured.find((g) => g.index === index);
    const totalMb = gpus.find((g) => (g.index ?? 0) === index)?.vramMb;
    if (usage === undefined || totalMb === undefined) return true;
    const ours = askedByUnits.get(index) ?? 0;
    const owners = Math.max(0, usage.vramUsedMb - ours);
    return totalMb - Math.max(owners, reservedVramMb) - ours >= need.vramMb;
  });
}
