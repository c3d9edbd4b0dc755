/**
 * The demand profile of a cycle: what the typical waiting gpu unit asks for.
 * BinPack (plugins/bin-pack.ts) counts a node's free capacity in these units,
 * so a resource is scarce on a node exactly when it would run out before the
 * others for the work that is waiting now.
 */
import type { DemandProfile, UnitRequest } from "./types.ts";

/**
 * The profile used when a cycle has no gpu unit (cpu units only still protect
 * capacity for gpu units to come): a small fine-tune, 4 GB VRAM, 2 cores,
 * 4 GB RAM, 20 GB disk.
 */
export const defaultProfile: DemandProfile = { vramMb: 4096, cpuCores: 2, memoryMb: 4096, diskMb: 20_000 };

/**
 * The mean ask of the gpu units among `units` (their order does not matter),
 * or {@link defaultProfile} when there is none. A zero mean (no gpu unit asks
 * for that resource) leaves the resource out of BinPack's capacity measure.
 */
export function demandProfile(units: readonly UnitRequest[]): DemandProfile {
  let n = 0;
  let vramMb = 0;
  let cpuCores = 0;
  let memoryMb = 0;
  let diskMb = 0;
  for (const u of units) {
    if (u.kind !== "gpu") continue;
    n++;
    vramMb += u.vramMb;
    cpuCores += u.cpuCores;
    memoryMb += u.memoryMb;
    diskMb += u.diskMb;
  }
  if (n === 0) return defaultProfile;
  return { vramMb: vramMb / n, cpuCores: cpuCores / n, memoryMb: memoryMb / n, diskMb: diskMb / n };
}
