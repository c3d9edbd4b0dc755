/** A node that already holds the dataset skips the download and the sha256 check. */
import type { NodeView } from "../cycle-state.ts";
import type { UnitRequest } from "../types.ts";
import type { ScorePlugin } from "./plugin.ts";

/** The score of a node that caches the unit's dataset (else 0). */
export const cachedDatasetScore = 100;

/** {@link cachedDatasetScore} when the node caches the unit's dataset, else 0. */
export const dataLocality = {
  name: "DataLocality",
  weight: "dataLocality",
  score(unit: UnitRequest, node: NodeView) {
    return node.node.cachedDatasetIds.has(unit.datasetId) ? cachedDatasetScore : 0;
  },
} as const satisfies ScorePlugin;
