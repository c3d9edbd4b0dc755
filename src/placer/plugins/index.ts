/**
 * The plugin registry. A new rule is one file, one line here and one test.
 *
 * Filter order matters twice: a node is counted under the first filter that
 * rejects it, and the first nine (schedulable, owner, isolation, trust, the
 * GPU count and constraints, VRAM) are the ones the index in cycle-state.ts
 * and the GPU eligibility (gpu-eligibility.ts) settle without visiting
 * nodes, so they must stay first for the skipped counts to equal a full
 * scan's. The static GPU rules (count, model, capability, CUDA) come before
 * VRAM so that a node that could never run the unit is counted as such
 * (unresolvable), not as busy.
 */
import { binPack } from "./bin-pack.ts";
import { computeCapability } from "./compute-capability.ts";
import { cpuFit } from "./cpu-fit.ts";
import { cudaVersion } from "./cuda-version.ts";
import { dataLocality } from "./data-locality.ts";
import { diskFit } from "./disk-fit.ts";
import { gpuCount } from "./gpu-count.ts";
import { gpuFragmentation } from "./gpu-fragmentation.ts";
import { gpuModel } from "./gpu-model.ts";
import { gpuScarcity } from "./gpu-scarcity.ts";
import { gpuVram } from "./gpu-vram.ts";
import { memoryFit } from "./memory-fit.ts";
import { nodeConcurrency } from "./node-concurrency.ts";
import { nodeExcluded } from "./node-excluded.ts";
import { nodeIsolation } from "./node-isolation.ts";
import { nodeSchedulable } from "./node-schedulable.ts";
import { ownerAvailability } from "./owner-availability.ts";
import type { FilterPlugin, ScorePlugin } from "./plugin.ts";
import { reliability } from "./reliability.ts";
import { trustTier } from "./trust-tier.ts";

export type { FilterPlugin, ScorePlugin } from "./plugin.ts";
export { binPack, type BinPackAsk, binPackAskOf, binPackScore, binPackScoreOf, fitShare, type FreeResources, freeOf, leftOver, roomHalf } from "./bin-pack.ts";
export { cachedDatasetScore } from "./data-locality.ts";
export { reliabilityScore } from "./reliability.ts";
export { fragmentationScore, gpuFragmentation, growthOnNode, neutralFragmentationScore, typicalVramMb } from "./gpu-fragmentation.ts";
export { gpuScarcity, plentifulScore } from "./gpu-scarcity.ts";
export {
  computeCapability,
  cpuFit,
  cudaVersion,
  dataLocality,
  diskFit,
  gpuCount,
  gpuModel,
  gpuVram,
  memoryFit,
  nodeConcurrency,
  nodeExcluded,
  nodeIsolation,
  nodeSchedulable,
  ownerAvailability,
  reliability,
  trustTier,
};

/** Filters in evaluation order. */
export const filterPlugins: readonly FilterPlugin[] = [
  nodeSchedulable,
  ownerAvailability,
  nodeIsolation,
  trustTier,
  gpuCount,
  gpuModel,
  computeCapability,
  cudaVersion,
  gpuVram,
  nodeExcluded,
  diskFit,
  cpuFit,
  memoryFit,
  nodeConcurrency,
];

/** How many of the first filters the index and the GPU eligibility settle without a visit. */
export const indexedFilterCount = 9;

/**
 * The filters the index cannot settle, in evaluation order: the first nine
 * are decided by cycle-state.ts and gpu-eligibility.ts (and, for a unit with
 * GPU constraints or several GPUs, a count of the visited node's GPUs), so
 * the placer runs only these on the nodes it visits.
 */
export const visitFilters: readonly FilterPlugin[] = filterPlugins.slice(indexedFilterCount);

/** Scorers; each names its weight in PlacerOptions.weights. */
export const scorePlugins: readonly ScorePlugin[] = [binPack, reliability, dataLocality, gpuScarcity, gpuFragmentation];
