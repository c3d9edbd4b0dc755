/**
 * Upper bounds on how many units any placement could fit: an exact branch
 * and bound for small scenarios, and a relaxation (a family of fractional
 * knapsack bounds, the smallest taken) for large ones. Both obey the
 * placer's hard rules: trust tiers, `gpuCount` GPUs of one node per gpu unit
 * that satisfy its constraints, cores, memory and disk per node, free unit
 * slots, excluded nodes (the relaxation ignores exclusions, and GPU
 * constraints beyond "some node could host the unit at the start", which
 * only loosens it).
 */
import { failedConstraint, GpuConstraint, gpuCountOf, hasGpuConstraints } from "../../src/placer/gpu-rules.ts";
import type { GpuView, NodeSnapshot, UnitRequest } from "../../src/placer/types.ts";
import { allowedKinds, type FlatCluster, flatten, gpuFits, minTrustOf, take } from "./baselines.ts";

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
 *   Σ eff_t, plus every other unit; a unit of K GPUs weighs K asks. The same
 *   over the GPUs of nodes with ≥ K GPUs for the units of ≥ K GPUs, and over
 *   the GPUs a set of GPU constraints allows for the units of that set;
 * - free unit slots: every unit takes one;
 * - a surrogate of each pair and of all four resources: a unit weighs the
 *   sum of its shares of D's free totals, and the set must weigh ≤ the
 *   number of resources in the combination.
 *
 * Units no node could host at the start (GPU count, constraints, VRAM, trust)
 * are left out first: nothing ends in the benchmark, so they never fit.
 * Each is a relaxation of the placement problem, so each (and their minimum)
 * is ≥ the best placement; it is not always reached (node-level packing of
 * cores and memory is not modelled).
 */
export function relaxationBound(nodes: readonly NodeSnapshot[], allUnits: readonly UnitRequest[]): number {
  // A gpu unit no node could host at the start never fits (nothing ends in the benchmark): it cannot count.
  const units = hostable(nodes, allUnits);
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
      // A gpu unit nothing can host weighs more than everything; one of K GPUs asks K times its VRAM.
      vram: (u: UnitRequest) => (u.kind === "gpu" ? Math.max(u.vramMb * gpuCountOf(u), 1e-9) : 0),
    };
    // Every unit takes one of its node's free unit slots.
    const slots = domain.reduce((a, n) => a + Math.max(0, n.freeUnitSlots ?? Infinity), 0);
    best = Math.min(best, others + Math.min(confined.length, slots));
    for (const r of ["cpu", "mem", "disk"] as const) {
      best = Math.min(best, others + maxCount(confined.map(ask[r]).sort(asc), caps[r]));
    }
    // VRAM thresholds with per-GPU indivisibility: all gpu units over all GPUs; the units of ≥ K GPUs over
    // the GPUs of nodes with ≥ K GPUs; the units of one set of GPU constraints over the GPUs it allows.
    const gpuUnits = confined.filter((u) => u.kind === "gpu");
    const gpusOf = (nodeOk: (n: NodeSnapshot) => boolean, gpuOk: (g: GpuView) => boolean) =>
      domain.filter(nodeOk).flatMap((n) => n.gpus.filter(gpuOk).map((g) => Math.max(0, g.freeVramMb)));
    best = Math.min(best, units.length - gpuUnits.length + thresholdBound(gpuUnits, gpusOf(() => true, () => true)));
    for (const k of [...new Set(gpuUnits.map(gpuCountOf))].filter((k) => k > 1)) {
      const members = gpuUnits.filter((u) => gpuCountOf(u) >= k);
      best = Math.min(best, units.length - members.length + thresholdBound(members, gpusOf((n) => n.gpus.length >= k, () => true)));
    }
    const byRules = new Map<string, UnitRequest[]>();
    for (const u of gpuUnits.filter(hasGpuConstraints)) {
      const key = rulesKey(u);
      byRules.set(key, [...(byRules.get(key) ?? []), u]);
    }
    for (const members of byRules.values()) {
      const rules = members[0] as UnitRequest;
      best = Math.min(best, units.length - members.length + thresholdBound(members, gpusOf(() => true, (g) => failedConstraint(rules, g) === GpuConstraint.None)));
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

/** The key of a unit's GPU constraints: equal keys, the same GPUs allowed. */
function rulesKey(u: UnitRequest): string {
  return `${(u.gpuModels ?? []).join(",")}|${u.minComputeCapability ?? ""}|${u.minCudaVersion ?? ""}`;
}

/**
 * eff(F): the most VRAM of a GPU with F free that asks from `asks` can fill together, the largest
 * sum ≤ F of them (repeats allowed); F ≤ `maxFree`.
 */
function effective(asks: readonly number[], maxFree: number): (free: number) => number {
  const step = asks.reduce(gcd, 0) || 1;
  // reach[m]: some multiset of the asks sums to exactly m·step; bestBelow[m]: largest reachable ≤ m.
  const m = Math.floor(maxFree / step);
  const reach = new Uint8Array(m + 1);
  reach[0] = 1;
  for (let x = 1; x <= m; x++) for (const v of asks) if (v / step <= x && reach[x - v / step] === 1) { reach[x] = 1; break; }
  const bestBelow = new Int32Array(m + 1);
  for (let x = 1; x <= m; x++) bestBelow[x] = reach[x] === 1 ? x : (bestBelow[x - 1] as number);
  return (free) => (bestBelow[Math.floor(free / step)] as number) * step;
}

/**
 * The most of the gpu units `members` that GPUs with free VRAM `frees` could hold, each unit weighing
 * `gpuCount` × its ask: per threshold t (each distinct ask), the units asking ≥ t only fit GPUs with
 * ≥ t free, and a GPU with F free holds at most eff_t(F) of them, the largest sum ≤ F of asks ≥ t (a
 * 12 GB card counts as 8 GB for 8 GB units: per-GPU indivisibility): at most the lightest such units
 * that fit in Σ eff_t. The least over t, plus the units asking less than t.
 */
function thresholdBound(members: readonly UnitRequest[], frees: readonly number[]): number {
  let best = members.length;
  const sizes = [...new Set(members.map((u) => u.vramMb))].sort(asc);
  const maxFree = frees.reduce((a, f) => Math.max(a, f), 0);
  for (let s = 0; s < sizes.length; s++) {
    const t = sizes[s] as number;
    const usable = sizes.slice(s);
    const effGpu = effective(usable, maxFree);
    let cap = 0;
    for (const f of frees) if (f >= t) cap += effGpu(f);
    const large = members.filter((u) => u.vramMb >= t).map((u) => u.vramMb * gpuCountOf(u)).sort(asc);
    best = Math.min(best, members.length - large.length + maxCount(large, cap));
  }
  return best;
}

/**
 * The units some node could host at the start (trust, `gpuCount` GPUs that satisfy the unit's
 * constraints with its VRAM free); cpu units all count. Judged once per kind of GPU ask.
 */
function hostable(nodes: readonly NodeSnapshot[], units: readonly UnitRequest[]): UnitRequest[] {
  const c = flatten(nodes);
  const known = new Map<string, boolean>();
  return units.filter((u) => {
    if (u.kind !== "gpu") return true;
    const key = `${u.vramMb}|${gpuCountOf(u)}|${minTrustOf(u)}|${(u.gpuModels ?? []).join(",")}|${u.minComputeCapability ?? ""}|${u.minCudaVersion ?? ""}`;
    let ok = known.get(key);
    if (ok === undefined) {
      const allowed = allowedKinds(c, u);
      const minTrust = minTrustOf(u);
      ok = false;
      for (let i = 0; i < c.n && !ok; i++) {
        if (c.schedulable[i] === 0 || (c.trust[i] as number) < minTrust) continue;
        let fits = 0;
        for (let g = c.gpuStart[i] as number; g < (c.gpuStart[i + 1] as number); g++) if (gpuFits(c, g, u, allowed)) fits++;
        ok = fits >= gpuCountOf(u);
      }
      known.set(key, ok);
    }
    return ok;
  });
}

/** Every way to pick `k` of `items` (in order). */
function combinations(items: readonly number[], k: number): number[][] {
  if (k === 0) return [[]];
  const out: number[][] = [];
  items.forEach((x, i) => {
    for (const rest of combinations(items.slice(i + 1), k - 1)) out.push([x, ...rest]);
  });
  return out;
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
  const constrained = units.some(hasGpuConstraints);
  // Suffix asks, sorted, for the per-resource relaxation of the units still to decide.
  const suffix = order.map((_, i) => {
    const rest = order.slice(i);
    return {
      count: rest.length,
      vram: rest.filter((u) => u.kind === "gpu").map((u) => u.vramMb * gpuCountOf(u)).sort(asc),
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
      sumOf(c.slots, live),
    );
  };
  const nodeKey = (i: number): string => {
    const gpus: number[] = [];
    for (let g = c.gpuStart[i] as number; g < (c.gpuStart[i + 1] as number); g++) gpus.push(c.gpuFree[g] as number);
    // GPUs of different kinds are told apart only when some unit constrains its GPUs.
    const kinds = constrained ? Array.from(c.gpuKind.subarray(c.gpuStart[i] as number, c.gpuStart[i + 1] as number)).join(",") : "";
    return `${c.trust[i]}|${c.cpu[i]}|${c.mem[i]}|${c.disk[i]}|${c.slots[i]}|${gpus.sort(asc).join(",")}|${kinds}|${excludable.has(c.ids[i] as string) ? c.ids[i] : ""}`;
  };
  const dfs = (i: number, placed: number): void => {
    if (++search.nodes > limit) return;
    if (placed > search.best) search.best = placed;
    // Every unit placed: nothing can do better.
    if (search.best === order.length) return;
    const unit = order[i];
    if (unit === undefined) return;
    if (placed + restBound(i) <= search.best) return;
    const minTrust = minTrustOf(unit);
    const tried = new Set<string>();
    const allowed = allowedKinds(c, unit);
    for (let n = 0; n < c.n; n++) {
      if (c.schedulable[n] === 0 || (c.trust[n] as number) < minTrust || (c.slots[n] as number) < 1) continue;
      if ((c.disk[n] as number) < unit.diskMb || (c.cpu[n] as number) < unit.cpuCores || (c.mem[n] as number) < unit.memoryMb) continue;
      if (unit.excludedNodeIds.includes(c.ids[n] as string)) continue;
      const key = nodeKey(n);
      const fitting: number[] = [];
      for (let g = c.gpuStart[n] as number; g < (c.gpuStart[n + 1] as number); g++) if (gpuFits(c, g, unit, allowed)) fitting.push(g);
      for (const gpus of combinations(fitting, gpuCountOf(unit))) {
        const k = `${key}#${gpus.map((g) => `${c.gpuFree[g]}/${c.gpuKind[g]}`).sort().join(",")}`;
        if (tried.has(k)) continue;
        tried.add(k);
        take(c, n, gpus, unit);
        dfs(i + 1, placed + 1);
        untake(c, n, gpus, unit);
        if (search.nodes > limit) return;
      }
    }
    dfs(i + 1, placed);
  };
  dfs(0, 0);
  if (search.nodes > limit) return { value: relaxationBound(nodes, units), exact: false };
  return { value: search.best, exact: true };
}

function untake(c: FlatCluster, i: number, gpus: readonly number[], unit: UnitRequest): void {
  c.cpu[i] = (c.cpu[i] as number) + unit.cpuCores;
  c.mem[i] = (c.mem[i] as number) + unit.memoryMb;
  c.disk[i] = (c.disk[i] as number) + unit.diskMb;
  c.slots[i] = (c.slots[i] as number) + 1;
  for (const g of gpus) c.gpuFree[g] = (c.gpuFree[g] as number) + unit.vramMb;
}
