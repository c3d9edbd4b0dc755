/**
 * The demand profile of a cycle: what the typical waiting gpu unit asks for.
 * BinPack (plugins/bin-pack.ts) counts a node's free capacity in these units,
 * so a resource is scarce on a node exactly when it would run out before the
 * others for the work that is waiting now.
 */
import type { DemandProfile, UnitRequest } from "./types.ts";

/**
 * The typical unit before any is seen, and all there is in a cycle with no
 * gpu unit (cpu units still protect capacity for gpu units to come): a small
 * fine-tune, 4 GB VRAM, 2 cores, 4 GB RAM, 20 GB disk.
 */
export const defaultProfile: DemandProfile = { vramMb: 4096, cpuCores: 2, memoryMb: 4096, diskMb: 20_000 };

/**
 * How many units of {@link defaultProfile} the mean starts from. A cycle of a
 * few units then still measures capacity in a typical unit rather than in
 * exactly the one unit waiting (whose every ask would then be 1, so it would
 * hit the bottleneck of every node and the fit could not tell nodes apart);
 * against hundreds of waiting units it weighs nothing.
 */
export const profilePrior = 8;

/**
 * The mean ask of the gpu units among `units`, counting {@link profilePrior}
 * units of {@link defaultProfile} among them (so with no gpu unit it is the
 * default). Sums are taken in the order given (`place` passes the fair
 * order), so equal inputs give equal profiles.
 */
export function demandProfile(units: readonly UnitRequest[]): DemandProfile {
  let n = profilePrior;
  let vramMb = profilePrior * defaultProfile.vramMb;
  let cpuCores = profilePrior * defaultProfile.cpuCores;
  let memoryMb = profilePrior * defaultProfile.memoryMb;
  let diskMb = profilePrior * defaultProfile.diskMb;
  for (const u of units) {
    if (u.kind !== "gpu") continue;
    n++;
    vramMb += u.vramMb;
    cpuCores += u.cpuCores;
    memoryMb += u.memoryMb;
    diskMb += u.diskMb;
  }
  return { vramMb: vramMb / n, cpuCores: cpuCores / n, memoryMb: memoryMb / n, diskMb: diskMb / n };
}
