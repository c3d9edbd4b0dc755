/** The placer's public surface: one pure function, a long-lived form of it for many cycles, and their types. */
export { createPlacer, defaultMaxScored, defaultWeights, maxGpuCount, placeUnits, type Decision, type Placer } from "./place-units.ts";
export { reasonCounts, type ReasonCounts } from "./reason-counts.ts";
export { allowedTrustLevels, minimumTrust } from "./trust.ts";
export { sandboxRequired } from "./node-rules.ts";
export { Reason, type ReasonCode } from "./reasons.ts";
export { defaultReserveAfterMs, fairOrder, placementOrder } from "./fairness.ts";
export { createDemandWindow, defaultProfile, demandAsks, demandProfile, type DemandWindow } from "./profile.ts";
export type {
  ClusterSnapshot,
  CycleContext,
  DemandAsk,
  DemandProfile,
  GpuView,
  NodeIsolation,
  NodeSnapshot,
  OwnerPolicy,
  Placement,
  PlacementResult,
  PlacerOptions,
  Sensitivity,
  TrustLevel,
  UnitKind,
  UnitRequest,
  Unplaced,
} from "./types.ts";
