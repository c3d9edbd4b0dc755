/**
 * The demand profile of a cycle: what the typical waiting gpu unit asks for.
 * BinPack (plugins/bin-pack.ts) counts a node's free capacity in these units,
 * so a resource is scarce on a node exactly when it would run out before the
 * others for the work that is waiting now.
 */
import type { DemandAsk, DemandProfile, UnitRequest } from "./types.ts";

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
 * The mean ask of the gpu units among `units` (VRAM: of a node, K × the
 * per-GPU ask for a unit of K GPUs), counting {@link profilePrior}
 * units of {@link defaultProfile} among them (so with no gpu unit it is the
 * default). Sums are taken in the order given (`place` passes the fair
 * order), so equal inputs give equal profiles.
 */
export function demandProfile(units: readonly UnitRequest[], recentAsks?: readonly DemandAsk[]): DemandProfile {
  let n = profilePrior;
  let vramMb = profilePrior * defaultProfile.vramMb;
  let cpuCores = profilePrior * defaultProfile.cpuCores;
  let memoryMb = profilePrior * defaultProfile.memoryMb;
  let diskMb = profilePrior * defaultProfile.diskMb;
  for (const u of units) {
    if (u.kind !== "gpu") continue;
    n++;
    // A unit of K GPUs takes K × its VRAM of a node's free VRAM, as BinPack asks it (plugins/bin-pack.ts).
    vramMb += u.vramMb * (u.gpuCount ?? 1);
    cpuCores += u.cpuCores;
    memoryMb += u.memoryMb;
    diskMb += u.diskMb;
  }
  return { vramMb: vramMb / n, cpuCores: cpuCores / n, memoryMb: memoryMb / n, diskMb: diskMb / n, asks: recentAsks ?? demandAsks(units) };
}

/**
 * At most this many asks describe the arriving work. Fragmentation costs
 * O(asks) per GPU tried on a scored node, so this bounds the score's cost;
 * the openb trace has 20 to 84 kinds of gpu task, of which a handful carry
 * most of the demand, and a cycle of bench:placer a few hundred (every job
 * its own VRAM). Past the bound, kinds are merged or the rarest left out
 * (see `topAsks`), so the distribution keeps its shape. 16: with 12, the
 * multi-GPU workload of bench:trace packed below the paper's FGD (97.05);
 * 24 cost bench:placer packing and speed and gained the trace nothing.
 */
export const maxAsks = 16;

/**
 * Units of one kind: the same GPU shape (`gpuCount` GPUs of `vramMb`, the same
 * model allow-list); cores and memory are their means. A kind is the GPU
 * shape alone because the GPU shape is what fragments GPUs: keyed on cores
 * and memory too, the rare multi-GPU shapes (a few of the openb default
 * workload's tasks, 7% of its GPU demand, and the ones that need whole
 * nodes) split into kinds too rare to be kept.
 */
interface Kind {
  readonly gpuCount: number;
  readonly vramMb: number;
  readonly gpuModels: readonly string[];
  count: number;
  cpuCores: number;
  memoryMb: number;
}

/** The kind of a gpu unit's ask; cpu units have none (fragmentation leaves their asks out). */
function kindKey(unit: UnitRequest): string | undefined {
  if (unit.kind !== "gpu") return undefined;
  return `${unit.gpuCount ?? 1}\u0000${unit.vramMb}\u0000${(unit.gpuModels ?? []).join("|")}`;
}

/** Adds (`sign` 1) or removes (−1) one unit of `key` to the kinds. */
function count(kinds: Map<string, Kind>, key: string, unit: UnitRequest, sign: 1 | -1): void {
  let kind = kinds.get(key);
  if (kind === undefined) {
    kind = { gpuCount: unit.gpuCount ?? 1, vramMb: unit.vramMb, gpuModels: unit.gpuModels ?? [], count: 0, cpuCores: 0, memoryMb: 0 };
    kinds.set(key, kind);
  }
  kind.count += sign;
  kind.cpuCores += sign * unit.cpuCores;
  kind.memoryMb += sign * unit.memoryMb;
  if (kind.count === 0) kinds.delete(key);
}

/**
 * The kinds as at most {@link maxAsks} asks, weights summing to 1, the most
 * frequent first (ties: the kind met first). While there are more, the
 * cheapest of these changes is made, cost counted in the GPU memory of the
 * demand the change misstates (units × GPUs × MB): two kinds of the same
 * shape (GPU count and model allow-list) next to each other in VRAM join
 * into one (VRAM, cores and memory become the means of the two, weighted by
 * their units; it costs the rarer one's units × GPUs × the VRAM gap), or a
 * kind is left out (all of its demand). So a cycle of a thousand distinct
 * VRAM asks becomes a few buckets of similar asks, a rare shape (a GPU model
 * few ask for) is left out before a common one loses its distinct sizes (a
 * whole GPU and a half one are not averaged while rarer kinds remain), and
 * a rare multi-GPU shape, which asks for whole nodes, counts by the GPUs it
 * asks for, not by its few units. O(kinds²).
 */
function topAsks(kinds: Iterable<Kind>): DemandAsk[] {
  const list = [...kinds]
    .map((k, met) => ({ ...k, met, shape: `${k.gpuCount}\u0000${k.gpuModels.join("|")}` }))
    .sort((a, b) => (a.shape < b.shape ? -1 : a.shape > b.shape ? 1 : a.vramMb - b.vramMb || a.met - b.met));
  while (list.length > maxAsks) {
    // The cheapest change: join j and j + 1 (same shape), or leave out j. Ties: the first found.
    let at = 0;
    let join = false;
    let cost = Infinity;
    for (let j = 0; j < list.length; j++) {
      const a = list[j] as (typeof list)[number];
      const drop = a.count * a.gpuCount * a.vramMb;
      if (drop < cost) {
        cost = drop;
        at = j;
        join = false;
      }
      const b = list[j + 1];
      if (b === undefined || b.shape !== a.shape) continue;
      const gap = Math.min(a.count, b.count) * a.gpuCount * Math.abs(b.vramMb - a.vramMb);
      if (gap < cost) {
        cost = gap;
        at = j;
        join = true;
      }
    }
    if (join) {
      const into = list[at] as (typeof list)[number];
      const next = list[at + 1] as (typeof list)[number];
      into.vramMb = (into.vramMb * into.count + next.vramMb * next.count) / (into.count + next.count);
      into.count += next.count;
      into.cpuCores += next.cpuCores;
      into.memoryMb += next.memoryMb;
      into.met = Math.min(into.met, next.met);
      list.splice(at + 1, 1);
    } else list.splice(at, 1);
  }
  list.sort((x, y) => y.count - x.count || x.met - y.met);
  const total = list.reduce((sum, k) => sum + k.count, 0);
  return list.map((k) => ({ gpuCount: k.gpuCount, vramMb: k.vramMb, gpuModels: k.gpuModels, cpuCores: k.cpuCores / k.count, memoryMb: k.memoryMb / k.count, weight: k.count / total }));
}

/** The gpu units' asks as a distribution: each kind once, weighted by how many units ask it. */
export function demandAsks(units: readonly UnitRequest[]): DemandAsk[] {
  const kinds = new Map<string, Kind>();
  for (const unit of units) {
    const key = kindKey(unit);
    if (key !== undefined) count(kinds, key, unit, 1);
  }
  return topAsks(kinds.values());
}

/**
 * The asks of the last `size` gpu units that arrived, each unit counted once
 * while it is in the window however many cycles it waits: the arriving work
 * the fragmentation score keeps room for. The scheduling loop records each
 * cycle's ready units and passes `asks()` as `PlacerOptions.recentAsks`.
 */
export interface DemandWindow {
  /** Counts the gpu units not in the window yet; the oldest fall out once it holds `size`. */
  record(units: readonly UnitRequest[]): void;
  /** The window's distribution ({@link maxAsks} kinds at most, weights summing to 1); empty before any gpu unit. */
  asks(): readonly DemandAsk[];
}

/** Default size of a {@link DemandWindow}: enough arrivals that the common kinds of ask all show. */
export const defaultWindowSize = 2000;

/** A {@link DemandWindow} over the last `size` gpu arrivals. */
export function createDemandWindow(size = defaultWindowSize): DemandWindow {
  if (!Number.isInteger(size) || size < 1) throw new RangeError("demand window size must be an integer ≥ 1");
  const ids = new Set<string>();
  const ring: { unit: UnitRequest; key: string }[] = [];
  let next = 0;
  const kinds = new Map<string, Kind>();
  let cached: readonly DemandAsk[] | undefined;
  return {
    record(units) {
      for (const unit of units) {
        const key = kindKey(unit);
        if (key === undefined || ids.has(unit.id)) continue;
        if (ring.length === size) {
          const old = ring[next] as { unit: UnitRequest; key: string };
          ids.delete(old.unit.id);
          count(kinds, old.key, old.unit, -1);
          ring[next] = { unit, key };
          next = (next + 1) % size;
        } else ring.push({ unit, key });
        ids.add(unit.id);
        count(kinds, key, unit, 1);
        cached = undefined;
      }
    },
    asks() {
      cached ??= topAsks(kinds.values());
      return cached;
    },
  };
}
