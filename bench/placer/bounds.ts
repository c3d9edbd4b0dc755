/**
 * Upper bounds on how many units any placement could fit: an exact branch
 * and bound for small scenarios, and a relaxation (a family of fractional
 * knapsack bounds, the smallest taken) for large ones. Both obey the
 * placer's hard rules: trust tiers, one GPU per gpu unit, cores, memory and
 * disk per node, excluded nodes (the relaxation ignores exclusions, which
 * only loosens it).
 */
import type { NodeSnapshot, UnitRequest } from "../../src/placer/types.ts";
import { type FlatCluster, flatten, minTrustOf, take } from "./baselines.ts";

/** How many of `sorted` (ascending) fit in `cap` together: the k smallest, as many as fit. */
function maxCount(sorted: readonly number[], cap: number): number {
  let sum = 0;
  let k = 0;
  for (const v of sorted) {
    if (sum + v > cap) break;
    sum += v;
    k++;
  }
  return k;
}

function gcd(a: number, b: number): number {
  while (b !== 0) [a, b] = [b, a % b];
  return a;
}

const asc = (a: number, b: number) => a - b;

/**
 * The relaxation bound. For each trust domain D (nodes at trust ≥ community,
 * ≥ verified, ≥ controlled) only the units whose tier confines them to D
 * compete for D's capacity; every other unit is counted as placed. Then the
 * smallest of:
 *
 * - per resource (cores, memory, disk): the most confined units whose asks,
 *   smallest first, fit in D's total free amount;
 * - per VRAM threshold t (each distinct ask): gpu units asking ≥ t can only
 *   use GPUs with ≥ t free, and a GPU with F free holds at most eff_t(F) of
 *   them, the largest sum ≤ F of asks ≥ t (so a 12 GB card counts as 8 GB
 *   for 8 GB units: per-GPU indivisibility); the most such units that fit in
 *   Σ eff_t, plus every other unit;
 * - a surrogate of each pair and of all four resources: a unit weighs the
 *   sum of its shares of D's free totals, and the set must weigh ≤ the
 *   number of resources in the combination.
 *
 * Each is a relaxation of the placement problem, so each (and their minimum)
 * is ≥ the best placement; it is not always reached (node-level packing of
 * cores and memory is not modelled).
 */
export function relaxationBound(nodes: readonly NodeSnapshot[], units: readonly UnitRequest[]): number {
  let best = units.length;
  for (let k = 0; k < 3; k++) {
    const domain = nodes.filter((n) => n.schedulable && ["community", "verified", "controlled"].indexOf(n.trustLevel) >= k);
    const confined = units.filter((u) => minTrustOf(u) >= k);
    const others = units.length - confined.length;
    const caps = {
      cpu: domain.reduce((a, n) => a + Math.max(0, n.freeCpuCores), 0),
      mem: domain.reduce((a, n) => a + Math.max(0, n.freeMemoryMb), 0),
      disk: domain.reduce((a, n) => a + Math.max(0, n.diskFreeMb), 0),
      vram: domain.reduce((a, n) => a + n.gpus.reduce((b, g) => b + Math.max(0, g.freeVramMb), 0), 0),
    };
    const ask = {
      cpu: (u: UnitRequest) => u.cpuCores,
      mem: (u: UnitRequest) => u.memoryMb,
      disk: (u: UnitRequest) => u.diskMb,
      // A gpu unit nothing can host weighs more than everything.
      vram: (u: UnitRequest) => (u.kind === "gpu" ? Math.max(u.vramMb, 1e-9) : 0),
    };
    for (const r of ["cpu", "mem", "disk"] as const) {
      best = Math.min(best, others + maxCount(confined.map(ask[r]).sort(asc), caps[r]));
    }
    // VRAM thresholds with per-GPU indivisibility.
    const gpuAsks = confined.filter((u) => u.kind === "gpu").map((u) => u.vramMb).sort(asc);
    const frees = domain.flatMap((n) => n.gpus.map((g) => Math.max(0, g.freeVramMb)));
    const sizes = [...new Set(gpuAsks)];
    for (let s = 0; s < sizes.length; s++) {
      const t = sizes[s] as number;
      const usable = sizes.slice(s);
      const step = usable.reduce(gcd, 0) || 1;
      const maxFree = frees.reduce((a, f) => Math.max(a, f), 0);
      // reach[m]: some multiset of usable asks sums to exactly m·step; bestBelow[m]: largest reachable ≤ m.
      const m = Math.floor(maxFree / step);
      const reach = new Uint8Array(m + 1);
      reach[0] = 1;
      for (let x = 1; x <= m; x++) for (const v of usable) if (v / step <= x && reach[x - v / step] === 1) { reach[x] = 1; break; }
      const bestBelow = new Int32Array(m + 1);
      for (let x = 1; x <= m; x++) bestBelow[x] = reach[x] === 1 ? x : (bestBelow[x - 1] as number);
      let cap = 0;
      for (const f of frees) if (f >= t) cap += (bestBelow[Math.floor(f / step)] as number) * step;
      const large = gpuAsks.filter((v) => v >= t);
      best = Math.min(best, units.length - large.length + maxCount(large, cap));
    }
    // Surrogates: a feasible set satisfies every resource, so any sum of resources too.
    const combos: (keyof typeof caps)[][] = [
      ["vram", "cpu"], ["vram", "mem"], ["vram", "disk"], ["cpu", "mem"], ["cpu", "disk"], ["mem", "disk"], ["vram", "cpu", "mem", "disk"],
    ];
    for (const combo of combos) {
      const weights = confined
        .map((u) => combo.reduce((a, r) => a + (ask[r](u) === 0 ? 0 : caps[r] === 0 ? Infinity : ask[r](u) / caps[r]), 0))
        .sort(asc);
      best = Math.min(best, others + maxCount(weights, combo.length));
    }
  }
  return best;
}

interface Search {
  nodes: number;
  best: number;
}

/**
 * The exact optimum by branch and bound (for ≲ 30 units): each unit, largest
 * first, goes to each distinct (node state, GPU) that fits, or nowhere;
 * identical nodes are tried once; a branch is cut when the units placed plus
 * a relaxation of the rest cannot beat the best found. Gives up after
 * `limit` search nodes and then returns the relaxation bound instead.
 */
export function exactBound(nodes: readonly NodeSnapshot[], units: readonly UnitRequest[], limit = 20_000_000): { value: number; exact: boolean } {
  const c = flatten(nodes);
  const order = [...units].sort((a, b) => b.vramMb - a.vramMb || b.cpuCores - a.cpuCores || b.memoryMb - a.memoryMb || (a.id < b.id ? -1 : 1));
  const excludable = new Set(units.flatMap((u) => u.excludedNodeIds));
  // Suffix asks, sorted, for the per-resource relaxation of the units still to decide.
  const suffix = order.map((_, i) => {
    const rest = order.slice(i);
    return {
      count: rest.length,
      vram: rest.filter((u) => u.kind === "gpu").map((u) => u.vramMb).sort(asc),
      cpuUnits: rest.filter((u) => u.kind !== "gpu").length,
      cpu: rest.map((u) => u.cpuCores).sort(asc),
      mem: rest.map((u) => u.memoryMb).sort(asc),
      disk: rest.map((u) => u.diskMb).sort(asc),
    };
  });
  const search: Search = { nodes: 0, best: 0 };
  const sumOf = (xs: Float64Array, ok: (i: number) => boolean) => {
    let s = 0;
    for (let i = 0; i < xs.length; i++) if (ok(i)) s += Math.max(0, xs[i] as number);
    return s;
  };
  const live = (i: number) => c.schedulable[i] === 1;
  const restBound = (i: number): number => {
    const s = suffix[i];
    if (s === undefined) return 0;
    let vram = 0;
    for (let g = 0; g < c.gpuFree.length; g++) vram += Math.max(0, c.gpuFree[g] as number);
    return Math.min(
      s.count,
      s.cpuUnits + maxCount(s.vram, vram),
      maxCount(s.cpu, sumOf(c.cpu, live)),
      maxCount(s.mem, sumOf(c.mem, live)),
      maxCount(s.disk, sumOf(c.disk, live)),
    );
  };
  const nodeKey = (i: number): string => {
    const gpus: number[] = [];
    for (let g = c.gpuStart[i] as number; g < (c.gpuStart[i + 1] as number); g++) gpus.push(c.gpuFree[g] as number);
    return `${c.trust[i]}|${c.cpu[i]}|${c.mem[i]}|${c.disk[i]}|${gpus.sort(asc).join(",")}|${excludable.has(c.ids[i] as string) ? c.ids[i] : ""}`;
  };
  const dfs = (i: number, placed: number): void => {
    if (++search.nodes > limit) return;
    if (placed > search.best) search.best = placed;
    const unit = order[i];
    if (unit === undefined) return;
    if (placed + restBound(i) <= search.best) return;
    const minTrust = minTrustOf(unit);
    const tried = new Set<string>();
    for (let n = 0; n < c.n; n++) {
      if (c.schedulable[n] === 0 || (c.trust[n] as number) < minTrust) continue;
      if ((c.disk[n] as number) < unit.diskMb || (c.cpu[n] as number) < unit.cpuCores || (c.mem[n] as number) < unit.memoryMb) continue;
      if (unit.excludedNodeIds.includes(c.ids[n] as string)) continue;
      const key = nodeKey(n);
      const options: number[] = [];
      if (unit.kind === "gpu") {
        for (let g = c.gpuStart[n] as number; g < (c.gpuStart[n + 1] as number); g++) if ((c.gpuFree[g] as number) >= unit.vramMb) options.push(g);
      } else options.push(-2);
      for (const g of options) {
        const k = `${key}#${g < 0 ? "" : c.gpuFree[g]}`;
        if (tried.has(k)) continue;
        tried.add(k);
        take(c, n, g, unit);
        dfs(i + 1, placed + 1);
        untake(c, n, g, unit);
        if (search.nodes > limit) return;
      }
    }
    dfs(i + 1, placed);
  };
  dfs(0, 0);
  if (search.nodes > limit) return { value: relaxationBound(nodes, units), exact: false };
  return { value: search.best, exact: true };
}

function untake(c: FlatCluster, i: number, g: number, unit: UnitRequest): void {
  c.cpu[i] = (c.cpu[i] as number) + unit.cpuCores;
  c.mem[i] = (c.mem[i] as number) + unit.memoryMb;
  c.disk[i] = (c.disk[i] as number) + unit.diskMb;
  if (g >= 0) c.gpuFree[g] = (c.gpuFree[g] as number) + unit.vramMb;
}
