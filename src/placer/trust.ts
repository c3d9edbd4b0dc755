/** Sensitivity tiers against node trust levels (DESIGN.md): a unit never runs below its tier. */
import type { Sensitivity, TrustLevel } from "./types.ts";

/** Trust levels from least to most trusted. */
export const trustLevels = ["community", "verified", "controlled"] as const satisfies readonly TrustLevel[];

/** Position of a trust level in {@link trustLevels}; higher is more trusted. */
export function trustRank(level: TrustLevel): number {
  return trustLevels.indexOf(level);
}

/** The least trusted level a unit of this sensitivity may run at. */
export function minimumTrust(s: Sensitivity): TrustLevel {
  switch (s) {
    case "public":
      return "community";
    case "low_sensitive":
      return "verified";
    case "high_sensitive":
      return "controlled";
  }
}

/** Trust levels allowed for a sensitivity: public → all; low_sensitive → verified, controlled; high_sensitive → controlled. */
export function allowedTrustLevels(s: Sensitivity): TrustLevel[] {
  const min = trustRank(minimumTrust(s));
  return trustLevels.filter((level) => trustRank(level) >= min);
}
