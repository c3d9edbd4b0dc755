/**
 * The rules about a node itself, whatever the unit (is it online, does its owner let it take work,
 * can it run units at all), and about which units need a sandbox. Shared by the filter plugins
 * (plugins/node-schedulable.ts, owner-availability.ts, node-isolation.ts, gpu-vram.ts) and by the
 * index (cycle-state.ts), which settles them without visiting nodes; one definition, so the two can
 * never disagree.
 */
import { Reason, type ReasonCode } from "./reasons.ts";
import type { GpuView, NodeSnapshot, Sensitivity } from "./types.ts";

/** Why the node's owner lets it take no unit now (paused first, then outside the window), or undefined. */
export function ownerBar(node: NodeSnapshot): ReasonCode | undefined {
  if (node.owner === undefined) return undefined;
  if (node.owner.paused) return Reason.NodePaused;
  if (!node.owner.withinWindow) return Reason.OutsideWindow;
  return undefined;
}

/**
 * Why the node takes no unit at all now, whatever the unit, as the first of the node-level filters
 * (in filter order: NodeSchedulable, OwnerAvailability, NodeIsolation's "unavailable") would say; undefined
 * when some unit may run there.
 */
export function nodeBar(node: NodeSnapshot): ReasonCode | undefined {
  if (!node.schedulable) return Reason.NodeUnschedulable;
  const owner = ownerBar(node);
  if (owner !== undefined) return owner;
  if (node.isolation === "unavailable") return Reason.SandboxUnavailable;
  return undefined;
}

/** Whether units of this sensitivity may run only inside a sandbox: all but public ones. */
export function sandboxRequired(sensitivity: Sensitivity): boolean {
  return sensitivity !== "public";
}

/** A GPU's free VRAM less what the node's owner keeps on every GPU: what units may use. */
export function usableVramMb(node: NodeSnapshot, gpu: GpuView): number {
  return gpu.freeVramMb - (node.owner?.reservedVramMb ?? 0);
}
