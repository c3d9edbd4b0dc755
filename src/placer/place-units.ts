/**
 * Placement: order → filter → score → reserve (see ./README.md).
 *
 * Pure: the same snapshot, units and seed always give the same plan, and the
 * snapshot is never mutated (no I/O, clock or Math.random either). The plan
 * is a proposal; the caller commits it after re-checking fit against fresh
 * state, fenced by the leader's term.
 *
 * `placeUnits` is one cycle over a fresh copy of a snapshot. `createPlacer`
 * keeps the copy and its indexes across cycles: a caller that knows what it
 * committed (a simulator, the benchmark) just places again, and the
 * scheduling loop hands it each cycle's fresh snapshot through `sync`, which
 * moves only the index entries that changed.
 */
import { bestGpu, type ClusterState, createState, groupCount, lowerBoundDisk, lowerBoundSlot, type NodeGroup, reserve, reseed, syncState, type WorkingNode } from "./cycle-state.ts";
import { fairOrder } from "./fairness.ts";
import { sandboxRequired } from "./node-rules.ts";
import { cpuFit, diskFit, leftOver, memoryFit, nodeExcluded, scorePlugins, visitFilters } from "./plugins/index.ts";
import { hashString, mulberry32 } from "./prng.ts";
import { defaultProfile, demandProfile } from "./profile.ts";
import { Reason, type ReasonCode } from "./reasons.ts";
import { minimumTrust, trustLevels } from "./trust.ts";
import type { ClusterSnapshot, CycleContext, Placement, PlacementResult, PlacerOptions, UnitRequest, Unplaced } from "./types.ts";
import type { ScoreWeights } from "../platform/config.ts";

/**
 * Default score weights: fit matters most (it decides how many units the
 * cluster holds), then a node's track record, then a warm dataset cache. A
 * cached dataset saves one download but, weighted high, pulls units onto a
 * few nodes whatever their fit (with 0.5 / 0.3 / 0.2 bench:placer places
 * 94,069 units instead of 96,847 on its 10k scenario).
 */
export const defaultWeights: ScoreWeights = { binPack: 0.7, reliability: 0.2, dataLocality: 0.1 };

/**
 * Default cap on feasible nodes scored per unit. Without it a small unit on
 * an empty 10,000-node cluster would score every node; a seeded sample of
 * 32 feasible nodes packs as well as scoring all of them on bench:placer.
 */
export const defaultMaxScored = 32;

const reasonOrder: readonly ReasonCode[] = Object.values(Reason);
const reasonIndex = new Map<ReasonCode, number>(reasonOrder.map((r, i) => [r, i]));
const at = (reason: ReasonCode): number => reasonIndex.get(reason) as number;
const iSandboxRequired = at(Reason.SandboxRequired);
const iTrust = at(Reason.TrustBelowTier);
const iNoGpu = at(Reason.NoGpu);
const iVram = at(Reason.InsufficientVram);
const iExcluded = at(Reason.NodeExcluded);
const iDisk = at(Reason.InsufficientDisk);
const iCpu = at(Reason.InsufficientCpu);
const iMemory = at(Reason.InsufficientMemory);

// The hot loop fuses the visit filters into plain comparisons (a plugin call
// and a Status per node cost more than the check itself, and a unit nothing
// takes visits every candidate). It must stay the same rules in the same
// order; fail loudly at load if the registry changes without it.
const fused = [nodeExcluded, diskFit, cpuFit, memoryFit];
if (visitFilters.length !== fused.length || visitFilters.some((p, i) => p !== fused[i])) {
  throw new Error("placer: visitFilters changed; update the fused checks in place-units.ts (visit) to match");
}


/** One unit's outcome. */
export type Decision = { readonly placed: true; readonly placement: Placement } | { readonly placed: false; readonly unplaced: Unplaced };

/** A long-lived placer over one cluster: reservations made by a cycle stay for the next. */
export interface Placer {
  /** The number of nodes in the snapshot. */
  readonly size: number;
  /** Places one cycle's units in fair order (fairness.ts) and keeps their reservations. */
  place(units: readonly UnitRequest[], options: PlacerOptions): PlacementResult;
  /**
   * Starts a cycle by hand: sets the seed, weights and cap for the following
   * `decide` calls, and the demand profile from the cycle's units (profile.ts;
   * pass them in fair order, as `place` does).
   */
  startCycle(options: PlacerOptions, units?: readonly UnitRequest[]): void;
  /** Decides one unit (in the caller's order) and reserves what it takes; for callers that time decisions. */
  decide(unit: UnitRequest): Decision;
  /**
   * Replaces the placer's view of the cluster with `snapshot` (what is free
   * now, e.g. read fresh from the database): afterwards the placer plans
   * exactly as `createPlacer(snapshot)` would. O(n) plus the index entries
   * that changed when the nodes, their trust, schedulability, isolation,
   * owner's pause and window, and GPUs are the same as before; otherwise it
   * rebuilds (O(n log n)). Returns true when it did not need to rebuild.
   */
  sync(snapshot: ClusterSnapshot): boolean;
}

function checkWeights(weights: ScoreWeights): number[] {
  const values = scorePlugins.map((p) => weights[p.weight]);
  if (values.some((w) => !Number.isFinite(w) || w < 0) || values.reduce((a, b) => a + b, 0) <= 0) {
    throw new RangeError("placer weights must be finite, non-negative and not all zero");
  }
  return values;
}

function checkUnits(units: readonly UnitRequest[]): void {
  const seen = new Set<string>();
  for (const unit of units) {
    if (seen.has(unit.id)) throw new Error(`placer: duplicate unit id ${unit.id}`);
    seen.add(unit.id);
    for (const value of [unit.vramMb, unit.diskMb, unit.cpuCores, unit.memoryMb]) {
      if (!Number.isFinite(value) || value < 0) throw new RangeError(`placer: unit ${unit.id} asks for ${value}`);
    }
  }
}

function describe(unit: UnitRequest, counts: ReadonlyMap<ReasonCode, number>, nodeCount: number): string {
  const wanted =
    unit.kind === "gpu"
      ? `a GPU of ≥ ${unit.vramMb} MB free VRAM`
      : `${unit.cpuCores} free CPU cores, ${unit.memoryMb} MB free memory and ${unit.diskMb} MB free disk`;
  const parts = [...counts.entries()]
    .sort((a, b) => b[1] - a[1] || reasonOrder.indexOf(a[0]) - reasonOrder.indexOf(b[0]))
    .map(([reason, n]) => `${n} ${reason}`);
  const summary = nodeCount === 0 ? "no nodes" : `${nodeCount} node${nodeCount === 1 ? "" : "s"}: ${parts.join(", ")}`;
  return `no online node with ${wanted} at trust ≥ ${minimumTrust(unit.sensitivity)} (${summary})`;
}

function gcd(a: number, b: number): number {
  while (b !== 0) [a, b] = [b, a % b];
  return a;
}

/** A step through 0..n-1 that visits every position once: coprime with n, near n/φ so early visits spread out. */
function strideFor(n: number): number {
  if (n <= 2) return 1;
  let q = Math.max(1, Math.round(n * 0.6180339887498949));
  while (gcd(q, n) !== 1) q++;
  return q;
}

/**
 * Places as many units as fit, in fair order (fairness.ts). For each unit
 * the index yields the nodes that may fit; a seeded walk visits them in a
 * spread-out order, the filters the index cannot settle run on each, the
 * first `maxScored` survivors are scored (weighted mean of the score
 * plugins, 0..100), the best wins (a tie goes to the tighter fit, then to
 * the node earlier in a shuffle of the node ids seeded by `options.seed`),
 * and its resources are reserved so later units see them taken.
 *
 * Cost: O(n log n) to index, then per unit O(T log n + k · (F + S + G)) with
 * T trust levels, k visited nodes (until `maxScored` feasible ones; every
 * candidate for a unit nothing takes), F/S plugins and G GPUs per node, plus
 * a memmove to re-key the node.
 */
export function placeUnits(snapshot: ClusterSnapshot, units: readonly UnitRequest[], options: PlacerOptions): PlacementResult {
  return createPlacer(snapshot).place(units, options);
}

/**
 * A placer's mutable context. The hot functions below are module-level and
 * take it as an argument: no closures are made per placer or per decision.
 */
interface Ctx {
  state: ClusterState;
  readonly counts: Int32Array;
  /** Feasible nodes met by the current decision's walk (at most maxScored). */
  candNode: Int32Array;
  /** Per group: where its part of the walk starts in the index, and its length (0 for a group the unit may not use). */
  readonly rangeStart: Int32Array;
  readonly rangeLen: Int32Array;
  /** Per group: 1 when the current unit may use its nodes (trust ≥ the unit's tier; sandboxed, for a sensitive unit). */
  readonly allowed: Uint8Array;
  weights: number[];
  weightSum: number;
  maxScored: number;
  cycle: CycleContext;
  random: () => number;
  started: boolean;
  // The decision in progress.
  unit: UnitRequest;
  seq: number;
  nCand: number;
  visited: number;
  unresolvable: number;
}

/** The weighted mean of the score plugins (0..100), rounded to 3 decimals so float noise cannot decide a tie. */
function scoreNode(ctx: Ctx, unit: UnitRequest, node: WorkingNode): number {
  let total = 0;
  for (let i = 0; i < scorePlugins.length; i++) {
    const w = ctx.weights[i] as number;
    if (w !== 0) total += w * (scorePlugins[i] as (typeof scorePlugins)[number]).score(unit, node, ctx.cycle);
  }
  return Math.round((total / ctx.weightSum) * 1000) / 1000;
}

function startCycle(ctx: Ctx, options: PlacerOptions, units: readonly UnitRequest[]): void {
  ctx.weights = checkWeights(options.weights ?? defaultWeights);
  ctx.weightSum = ctx.weights.reduce((a, b) => a + b, 0);
  const cap = options.maxScored ?? defaultMaxScored;
  if (!Number.isInteger(cap) || cap < 1) throw new RangeError("placer maxScored must be an integer ≥ 1");
  ctx.maxScored = cap;
  const room = Math.max(1, Math.min(cap, ctx.state.size));
  if (ctx.candNode.length < room) ctx.candNode = new Int32Array(room);
  ctx.cycle = { profile: demandProfile(units) };
  reseed(ctx.state, options.seed);
  ctx.random = mulberry32(hashString(`walk:${options.seed}`));
  ctx.started = true;
}

/** The visit filters, fused into comparisons: counts node `i`'s first failing reason, or keeps it as a candidate. */
function visit(ctx: Ctx, i: number): void {
  ctx.visited++;
  const { cpu, memory, disk } = ctx.state;
  const unit = ctx.unit;
  const excluded = unit.excludedNodeIds;
  let reason = -1;
  if (excluded.length !== 0 && excluded.includes((ctx.state.nodes[i] as WorkingNode).node.id)) reason = iExcluded;
  else if ((disk[i] as number) < unit.diskMb) reason = iDisk;
  else if ((cpu[i] as number) < unit.cpuCores) reason = iCpu;
  else if ((memory[i] as number) < unit.memoryMb) reason = iMemory;
  if (reason === -1) ctx.candNode[ctx.nCand++] = i;
  else {
    ctx.counts[reason] = (ctx.counts[reason] as number) + 1;
    if (reason === iExcluded) ctx.unresolvable++;
  }
}

/**
 * The walk: the allowed groups' index ranges (`rangeStart`/`rangeLen`, 0 for
 * the others: GPUs
 * that fit, for `kind` -1; nodes with enough disk in `byDisk[kind]`) joined
 * end to end, visited from a seeded start with a stride coprime to the
 * total, so every position comes up once and the first ones are spread over
 * the whole range (tight and loose fits, every trust level) rather than
 * bunched at one end. It stops at maxScored feasible nodes; a unit nothing
 * takes visits every candidate, which also counts every visited node's
 * reason.
 */
function walk(ctx: Ctx, kind: -1 | 0 | 1): void {
  const { groups, stamp } = ctx.state;
  const { rangeStart, rangeLen, seq, maxScored } = ctx;
  let total = 0;
  for (let g = 0; g < groups.length; g++) total += rangeLen[g] as number;
  if (total === 0) return;
  const step = strideFor(total);
  let p = Math.floor(ctx.random() * total);
  for (let j = 0; j < total && ctx.nCand < maxScored; j++) {
    let g = 0;
    let c = p;
    while (c >= (rangeLen[g] as number)) c -= rangeLen[g++] as number;
    const group = groups[g] as NodeGroup;
    const at = (rangeStart[g] as number) + c;
    const i = (kind === -1 ? group.slotNode[at] : group.byDisk[kind][at]) as number;
    // A node met again through another of its GPUs adds nothing.
    if (stamp[i] !== seq) {
      stamp[i] = seq;
      visit(ctx, i);
    }
    p += step;
    if (p >= total) p -= total;
  }
}

function decide(ctx: Ctx, unit: UnitRequest): Decision {
  if (!ctx.started) throw new Error("placer: startCycle before decide");
  const state = ctx.state;
  if (state.seq === 0x7fffffff) {
    // The stamp array is Int32: start over before it wraps.
    state.stamp.fill(0);
    state.seq = 0;
  }
  const counts = ctx.counts;
  ctx.unit = unit;
  ctx.seq = ++state.seq;
  counts.fill(0);
  const minTrust = trustLevels.indexOf(minimumTrust(unit.sensitivity));
  const sensitive = sandboxRequired(unit.sensitivity);
  ctx.nCand = 0;
  ctx.visited = 0;
  ctx.unresolvable = 0;
  const groups = state.groups;
  const { allowed, rangeStart, rangeLen } = ctx;
  for (let g = 0; g < groups.length; g++) {
    const group = groups[g] as NodeGroup;
    allowed[g] = group.trust >= minTrust && (group.sandboxed || !sensitive) ? 1 : 0;
    rangeLen[g] = 0;
  }
  const gpu = unit.kind === "gpu";
  let skippedDisk = 0;
  const { rank, nodes } = state;

  if (gpu) {
    for (let g = 0; g < groups.length; g++) {
      if (allowed[g] === 0) continue;
      const group = groups[g] as NodeGroup;
      const start = lowerBoundSlot(state, group, unit.vramMb, -1, -1);
      rangeStart[g] = start;
      rangeLen[g] = group.slotFree.length - start;
    }
    walk(ctx, -1);
  } else {
    // Nodes without a GPU first; GPU nodes only when none of those can take
    // the unit, so cpu units do not use up the cores and memory that GPU
    // units need next to a free GPU.
    for (let kind = 0; kind < 2 && ctx.nCand === 0; kind++) {
      for (let g = 0; g < groups.length; g++) {
        if (allowed[g] === 0) continue;
        const order = (groups[g] as NodeGroup).byDisk[kind as 0 | 1];
        const start = lowerBoundDisk(state, order, unit.diskMb, -1);
        skippedDisk += start;
        rangeStart[g] = start;
        rangeLen[g] = order.length - start;
      }
      walk(ctx, kind as 0 | 1);
    }
  }

  // Score the candidates: the best score wins, then the tighter fit, then the earlier seeded rank.
  let best: WorkingNode | undefined;
  let bestScore = -1;
  // The best's leftover, computed only once a tie needs it (NaN until then).
  let bestLeft = NaN;
  for (let k = 0; k < ctx.nCand; k++) {
    const w = nodes[ctx.candNode[k] as number] as WorkingNode;
    const score = scoreNode(ctx, unit, w);
    if (best === undefined || score > bestScore) {
      best = w;
      bestScore = score;
      bestLeft = NaN;
    } else if (score === bestScore) {
      if (Number.isNaN(bestLeft)) bestLeft = leftOver(unit, best);
      const left = leftOver(unit, w);
      if (left < bestLeft || (left === bestLeft && (rank[w.idx] as number) < (rank[best.idx] as number))) {
        best = w;
        bestLeft = left;
      }
    }
  }

  if (best !== undefined) {
    const gpuPos = gpu ? bestGpu(best, unit.vramMb) : -1;
    const gpuIndex = gpuPos === -1 ? -1 : (best.node.gpus[gpuPos]?.index ?? -1);
    reserve(state, best, unit, gpuPos);
    return { placed: true, placement: { unitId: unit.id, nodeId: best.node.id, gpuIndex, score: bestScore } };
  }

  // Unplaced: count the nodes the index skipped under the reason a full scan would give them.
  let unresolvable = ctx.unresolvable;
  for (const [reason, n] of state.barred) counts[at(reason)] = (counts[at(reason)] as number) + n;
  for (let g = 0; g < groups.length; g++) {
    const group = groups[g] as NodeGroup;
    if (allowed[g] === 0) {
      // NodeIsolation comes before TrustTier: an unsandboxed node is counted under it for a sensitive unit.
      const reason = sensitive && !group.sandboxed ? iSandboxRequired : iTrust;
      counts[reason] = (counts[reason] as number) + group.size;
      unresolvable += group.size;
    } else if (gpu) {
      counts[iNoGpu] = (counts[iNoGpu] as number) + group.size - group.gpuNodes;
      counts[iVram] = (counts[iVram] as number) + group.gpuNodes;
    }
  }
  // Nodes before a disk index's start have less free disk than asked.
  counts[iDisk] = (counts[iDisk] as number) + skippedDisk;
  if (gpu) {
    // Every visited node has a GPU that fits; the rest of the GPU nodes have none.
    counts[iVram] = (counts[iVram] as number) - ctx.visited;
  } else {
    // The disk index skipped those nodes before NodeExcluded (which comes first) could see them.
    for (const id of new Set(unit.excludedNodeIds)) {
      const w = state.byId.get(id);
      if (w === undefined || w.group === -1 || allowed[w.group] === 0 || w.diskFreeMb >= unit.diskMb) continue;
      counts[iDisk] = (counts[iDisk] as number) - 1;
      counts[iExcluded] = (counts[iExcluded] as number) + 1;
      unresolvable++;
    }
  }
  const map = new Map<ReasonCode, number>();
  reasonOrder.forEach((reason, i) => {
    const n = counts[i] as number;
    if (n > 0) map.set(reason, n);
  });
  return {
    placed: false,
    unplaced: {
      unitId: unit.id,
      reasons: Object.fromEntries(map) as Partial<Record<ReasonCode, number>>,
      unresolvable: state.size > 0 && unresolvable === state.size,
      message: describe(unit, map, state.size),
    },
  };
}

/** A placer over a private copy of `snapshot` (O(n log n)); see {@link Placer}. Node ids must be unique. */
export function createPlacer(snapshot: ClusterSnapshot): Placer {
  const ctx: Ctx = {
    state: createState(snapshot),
    counts: new Int32Array(reasonOrder.length),
    candNode: new Int32Array(0),
    rangeStart: new Int32Array(groupCount),
    rangeLen: new Int32Array(groupCount),
    allowed: new Uint8Array(groupCount),
    weights: checkWeights(defaultWeights),
    weightSum: 1,
    maxScored: defaultMaxScored,
    cycle: { profile: defaultProfile },
    random: mulberry32(0),
    started: false,
    unit: undefined as unknown as UnitRequest,
    seq: 0,
    nCand: 0,
    visited: 0,
    unresolvable: 0,
  };
  return {
    get size() {
      return ctx.state.size;
    },
    startCycle(options, units = []) {
      startCycle(ctx, options, units);
    },
    decide(unit) {
      return decide(ctx, unit);
    },
    place(units, options) {
      checkUnits(units);
      const ordered = fairOrder(units);
      startCycle(ctx, options, ordered);
      const placements: Placement[] = [];
      const unplaced: Unplaced[] = [];
      for (const unit of ordered) {
        const d = decide(ctx, unit);
        if (d.placed) placements.push(d.placement);
        else unplaced.push(d.unplaced);
      }
      return { placements, unplaced };
    },
    sync(next) {
      if (syncState(ctx.state, next)) return true;
      ctx.state = createState(next);
      ctx.started = false;
      return false;
    },
  };
}
