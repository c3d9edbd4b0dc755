/** The placer's public surface: one pure function and its types. */
export { placeUnits, defaultWeights } from "./place-units.ts";
export { allowedTrustLevels, minimumTrust } from "./trust.ts";
export { Reason, type ReasonCode } from "./reasons.ts";
export { fairOrder } from "./fairness.ts";
export type {
  ClusterSnapshot,
  GpuView,
  NodeSnapshot,
  Placement,
  PlacementResult,
  PlacerOptions,
  ScoreWeights,
  Sensitivity,
  TrustLevel,
  UnitKind,
  UnitRequest,
  Unplaced,
} from "./types.ts";
