/**
 * The plugin registry. A new rule is one file, one line here and one test.
 *
 * Filter order matters twice: a node is counted under the first filter that
 * rejects it, and the first five (schedulable, owner, isolation, trust, VRAM)
 * are the ones the index in cycle-state.ts evaluates without visiting nodes,
 * so they must stay first for the skipped counts to equal a full scan's.
 */
import { binPack } from "./bin-pack.ts";
import { cpuFit } from "./cpu-fit.ts";
import { dataLocality } from "./data-locality.ts";
import { diskFit } from "./disk-fit.ts";
import { gpuVram } from "./gpu-vram.ts";
import { memoryFit } from "./memory-fit.ts";
import { nodeExcluded } from "./node-excluded.ts";
import { nodeIsolation } from "./node-isolation.ts";
import { nodeSchedulable } from "./node-schedulable.ts";
import { ownerAvailability } from "./owner-availability.ts";
import type { FilterPlugin, ScorePlugin } from "./plugin.ts";
import { reliability } from "./reliability.ts";
import { trustTier } from "./trust-tier.ts";

export type { FilterPlugin, ScorePlugin } from "./plugin.ts";
export { binPack, binPackScore, fitShare, freeOf, leftOver, roomHalf } from "./bin-pack.ts";
export { cpuFit, dataLocality, diskFit, gpuVram, memoryFit, nodeExcluded, nodeIsolation, nodeSchedulable, ownerAvailability, reliability, trustTier };

/** Filters in evaluation order. */
export const filterPlugins: readonly FilterPlugin[] = [
  nodeSchedulable,
  ownerAvailability,
  nodeIsolation,
  trustTier,
  gpuVram,
  nodeExcluded,
  diskFit,
  cpuFit,
  memoryFit,
];

/**
 * The filters the index cannot settle, in evaluation order: the first five
 * (schedulable, owner, isolation, trust, VRAM) are decided by cycle-state.ts
 * without a visit, so the placer runs only these on the nodes it visits.
 */
export const visitFilters: readonly FilterPlugin[] = filterPlugins.slice(5);

/** Scorers; each names its weight in PlacerOptions.weights. */
export const scorePlugins: readonly ScorePlugin[] = [binPack, reliability, dataLocality];
