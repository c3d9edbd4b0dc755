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
import { cachesDataset, chooseGpus, type ClusterState, createState, freeVramByModel, groupCount, lowerBoundDisk, lowerBoundSlot, type NodeGroup, reserve, reseed, syncState, type WorkingNode } from "./cycle-state.ts";
import { defaultReserveAfterMs, isOverdue, placementOrder } from "./fairness.ts";
import { fragmentationCeiling, fragmentationScoreOn, fragmentationTable, type FragmentationTable } from "./fragmentation-scorer.ts";
import { eligibilityFor, firstUnresolvableVerdict, type GpuEligibility, staticGpuReasons } from "./gpu-eligibility.ts";
import { failedConstraint, GpuConstraint, gpuCountOf, hasGpuConstraints } from "./gpu-rules.ts";
import { sandboxRequired } from "./node-rules.ts";
import {
  binPack,
  type BinPackAsk,
  binPackAskOf,
  binPackScoreOf,
  cachedDatasetScore,
  cpuFit,
  dataLocality,
  diskFit,
  type FreeResources,
  gpuFragmentation,
  gpuScarcity,
  leftOver,
  memoryFit,
  fragmentationScore,
  neutralFragmentationScore,
  nodeConcurrency,
  nodeExcluded,
  plentifulScore,
  reliability,
  reliabilityScore,
  scorePlugins,
  visitFilters,
} from "./plugins/index.ts";
import { hashString, mulberry32 } from "./prng.ts";
import { defaultProfile, demandProfile } from "./profile.ts";
import { constrainsModels, modelPressure, scarcityScore } from "./scarcity.ts";
import { Reason, type ReasonCode } from "./reasons.ts";
import { minimumTrust, trustLevels } from "./trust.ts";
import type { ClusterSnapshot, CycleContext, GpuView, Placement, PlacementResult, PlacerOptions, UnitRequest, Unplaced } from "./types.ts";
import type { ScoreWeights } from "../platform/config.ts";

/**
 * Default score weights: fit matters most (it decides how many units the
 * cluster holds), then a node's track record, then a warm dataset cache. A
 * cached dataset saves one download but, weighted high, pulls units onto a
 * few nodes whatever their fit (with 0.5 / 0.3 / 0.2 bench:placer places
 * 94,069 units instead of 96,847 on its 10k scenario). Reliability and
 * DataLocality are preferences between nodes that fit alike: at 0.2 and 0.1
 * a cached dataset (6.7 points of the total) outweighed 14 points of
 * BinPack, and on bench:placer 10k they cost 366 units (96,924 placed
 * against 97,290 at 0.1 and 0.05) for 25 % more cache hits and 0.001 of
 * mean node reliability (README, "Scores"). The fragmentation score (FGD)
 * at 0.3 keeps GPUs usable for the work that is arriving: it packs more on
 * both benchmarks than without it, and bench:trace (where the other scores
 * tie on every node) packs the same from 0.3 to 1 (README, "Fragmentation
 * score").
 */
export const defaultWeights: ScoreWeights = { binPack: 0.7, reliability: 0.1, dataLocality: 0.05, gpuFragmentation: 0.3, gpuScarcity: 0.2 };

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
const iGpus = at(Reason.InsufficientGpus);
const iExcluded = at(Reason.NodeExcluded);
const iDisk = at(Reason.InsufficientDisk);
const iCpu = at(Reason.InsufficientCpu);
const iMemory = at(Reason.InsufficientMemory);
const iFull = at(Reason.NodeFull);
const iReserved = at(Reason.NodeReserved);
const iStatic = staticGpuReasons.map(at);
/**
 * A unit with GPU rules walks the nodes they allow instead of the GPUs with the VRAM when those GPUs are
 * more than this many times as many: then most of the GPU walk would be skipping nodes the rules reject.
 */
const eligibleWalkRatio = 1;
/** The most GPUs of one node a unit may ask for. */
export const maxGpuCount = 8;

// The hot loop fuses the visit filters into plain comparisons (a plugin call
// and a Status per node cost more than the check itself, and a unit nothing
// takes visits every candidate). It must stay the same rules in the same
// order; fail loudly at load if the registry changes without it.
const fused = [nodeExcluded, diskFit, cpuFit, memoryFit, nodeConcurrency];
if (visitFilters.length !== fused.length || visitFilters.some((p, i) => p !== fused[i])) {
  throw new Error("placer: visitFilters changed; update the fused checks in place-units.ts (visit) to match");
}
// The scorers are fused the same way (scoreNode): BinPack, Reliability and DataLocality read the state's
// typed arrays, not the node objects (following each scored node to its snapshot, GPU array and dataset
// Set cost more than the scores). The fragmentation score runs as its plugin; GpuScarcity reads each GPU's
// kind (its model's score is worked out once per kind per cycle, `kindScarcity`).
const fusedScores = [binPack, reliability, dataLocality, gpuScarcity, gpuFragmentation];
/** Positions of the two scores the fused scorer treats apart (the others are summed in `partialScore`, in this order). */
const iScarcity = scorePlugins.indexOf(gpuScarcity);
const iFragmentation = scorePlugins.indexOf(gpuFragmentation);
if (scorePlugins.length !== fusedScores.length || scorePlugins.some((p, i) => p !== fusedScores[i])) {
  throw new Error("placer: scorePlugins changed; update the fused scores in place-units.ts (scoreNode) to match");
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
  // An optional weight left out (gpuFragmentation, gpuScarcity) is 0: that score is off.
  const values = scorePlugins.map((p) => weights[p.weight] ?? 0);
  if (values.some((w) => !Number.isFinite(w) || w < 0) || values.reduce((a, b) => a + b, 0) <= 0) {
    throw new RangeError("placer weights must be finite, non-negative and not all zero");
  }
  return values;
}

/**
 * The sum of the weights of the scores a cycle weighs, in plugin order: GpuScarcity's only when the cycle has
 * pressure on some model (else every node would score the same, and leaving it out keeps plans exactly those
 * without it), unless it is the only weight.
 */
function weightSumOf(weights: readonly number[], cycle: CycleContext): number {
  const scarcity = scorePlugins.indexOf(gpuScarcity);
  const all = weights.reduce((a, b) => a + b, 0);
  if (cycle.modelPressure !== undefined) return all;
  const rest = weights.reduce((a, b, i) => (i === scarcity ? a : a + b), 0);
  return rest > 0 ? rest : all;
}

function checkUnits(units: readonly UnitRequest[]): void {
  const seen = new Set<string>();
  for (const unit of units) {
    if (seen.has(unit.id)) throw new Error(`placer: duplicate unit id ${unit.id}`);
    seen.add(unit.id);
    for (const value of [unit.vramMb, unit.diskMb, unit.cpuCores, unit.memoryMb]) {
      if (!Number.isFinite(value) || value < 0) throw new RangeError(`placer: unit ${unit.id} asks for ${value}`);
    }
    const count = gpuCountOf(unit);
    if (unit.kind === "gpu" && (!Number.isInteger(count) || count < 1 || count > maxGpuCount)) {
      throw new RangeError(`placer: unit ${unit.id} asks for ${count} GPUs (1 to ${maxGpuCount})`);
    }
  }
}

/** The GPUs a gpu unit asks for, as the customer reads it: "4 GPUs (model A100 or H100, compute capability ≥ 8.0) of ≥ 20000 MB free VRAM each". */
function describeGpus(unit: UnitRequest): string {
  const count = gpuCountOf(unit);
  const rules: string[] = [];
  if (unit.gpuModels !== undefined && unit.gpuModels.length > 0) rules.push(`model ${unit.gpuModels.join(" or ")}`);
  if ((unit.minComputeCapability ?? "") !== "") rules.push(`compute capability ≥ ${unit.minComputeCapability}`);
  if ((unit.minCudaVersion ?? "") !== "") rules.push(`CUDA ≥ ${unit.minCudaVersion}`);
  const which = rules.length === 0 ? "" : ` (${rules.join(", ")})`;
  return count === 1 ? `a GPU${which} of ≥ ${unit.vramMb} MB free VRAM` : `${count} GPUs${which} of ≥ ${unit.vramMb} MB free VRAM each`;
}

function describe(unit: UnitRequest, counts: ReadonlyMap<ReasonCode, number>, nodeCount: number): string {
  const wanted =
    unit.kind === "gpu"
      ? describeGpus(unit)
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
  /** A cpu unit's GPU-less ranges when `walkOpen` walked them, visited in full only if it stays unplaced. */
  readonly gpuLessStart: Int32Array;
  readonly gpuLessLen: Int32Array;
  /** Per group: 1 when the current unit may use its nodes (trust ≥ the unit's tier; sandboxed, for a sensitive unit). */
  readonly allowed: Uint8Array;
  weights: number[];
  /** The sum of the weights of the scores this cycle weighs (GpuScarcity's only when there is pressure: `kindScarcity`). */
  weightSum: number;
  /** Per GPU kind (`state.gpuKinds`): GpuScarcity's score of its model this cycle; undefined when the cycle has no pressure. */
  kindScarcity: Float64Array | undefined;
  maxScored: number;
  cycle: CycleContext;
  /** The profile's asks when the fragmentation score weighs anything: then a unit's GPUs are chosen by it too (`chooseGpus`). */
  fragmentationAsks: CycleContext["profile"]["asks"];
  /** Those asks compiled for the fused scorer, with its per-node cache (fragmentation-scorer.ts); undefined when the score is off or neutral. */
  frag: FragmentationTable | undefined;
  /** Per candidate (parallel to `candNode`): the GPU position a one-GPU unit would get there, chosen by the fragmentation score; -1 otherwise. */
  candGpu: Int32Array;
  /** Scratch per candidate for the fragmentation score's pruning: the other scores' sum, and the candidates by it. */
  candPartial: Float64Array;
  candOrder: Int32Array;
  /** The decision's best candidate so far (position in `candNode`, -1: none), its score, and its leftover once a tie needs it (NaN until then). */
  bestK: number;
  bestScore: number;
  bestLeft: number;
  /** Scratch for the fragmentation score: a node's GPU positions that fit the unit, and the one it chose. */
  fragGpus: Int32Array;
  readonly fragChoice: Int32Array;
  random: () => number;
  started: boolean;
  /** The cycle's time and the wait after which a unit is overdue (`PlacerOptions.nowMs`, `reserveAfterMs`). */
  nowMs: number | undefined;
  reserveAfterMs: number;
  /** Per node: 1 while an overdue unit reserves it this cycle (it takes no other unit); `blockedList` says which to clear. */
  blocked: Uint8Array;
  readonly blockedList: number[];
  /** Node each overdue unit reserved last cycle (unit id → node id), kept again while it still can; and this cycle's. */
  held: Map<string, string>;
  heldNext: Map<string, string>;
  /**
   * The GPU-less nodes that may still take a cpu unit of this cycle: a free unit slot and at least the
   * least cores and memory any of the cycle's cpu units asks (`hostMinCpu`, `hostMinMemory`); per group,
   * rebuilt when `openStale[g]` (a reservation on one of them, a sync, a new cycle). See `walkOpen`.
   */
  hostMinCpu: number;
  hostMinMemory: number;
  readonly open: Int32Array[];
  readonly openStale: Uint8Array;
  /** Scratch for `walkOpen`: the open nodes in range and their walk positions. */
  openNode: Int32Array;
  openStep: Float64Array;
  /** Per node: the decision (`seq`) whose unit excludes it (`UnitRequest.excludedNodeIds`), so a visit compares numbers, not ids. */
  excluded: Int32Array;
  /** Scratch for the BinPack score's free resources (no allocation per scored node). */
  readonly free: FreeResources;
  // The decision in progress.
  unit: UnitRequest;
  /** The unit's BinPack asks against the cycle's profile, the same on every node it is scored on. */
  readonly ask: BinPackAsk;
  /** The unit's dataset as `state.datasets` numbers it (-1: no node caches it). */
  dataset: number;
  /** The unit's static GPU rules over the cluster, for a unit with several GPUs or GPU constraints; else undefined. */
  elig: GpuEligibility | undefined;
  seq: number;
  nCand: number;
  visited: number;
  unresolvable: number;
}

/**
 * The weighted mean of the score plugins (0..100), rounded to 3 decimals so float noise cannot decide a tie.
 * The plugins' own arithmetic on the state's arrays (`fusedScores`); a property test checks it against them.
 */
function scoreNode(ctx: Ctx, unit: UnitRequest, i: number, k: number): number {
  let total = partialScore(ctx, unit, i);
  ctx.candGpu[k] = -1;
  const wFragmentation = ctx.weights[iFragmentation] as number;
  if (wFragmentation !== 0) total += wFragmentation * fragmentationOn(ctx, unit, i, k);
  return Math.round((total / ctx.weightSum) * 1000) / 1000;
}

/** The weighted sum of every score but GpuFragmentation (not divided, not rounded), summed in `scorePlugins` order. */
function partialScore(ctx: Ctx, unit: UnitRequest, i: number): number {
  const state = ctx.state;
  const weights = ctx.weights;
  let total = 0;
  const wBinPack = weights[0] as number;
  if (wBinPack !== 0) {
    // freeOf's sum of the GPUs' free VRAM, in the same order.
    const { gpuBase, gpuFree } = state;
    const to = gpuBase[i + 1] as number;
    let vramMb = 0;
    for (let k = gpuBase[i] as number; k < to; k++) vramMb += Math.max(0, gpuFree[k] as number);
    const free = ctx.free;
    free.vramMb = vramMb;
    free.cpuCores = state.cpu[i] as number;
    free.memoryMb = state.memory[i] as number;
    free.diskMb = state.disk[i] as number;
    free.unitSlots = state.slots[i] as number;
    total += wBinPack * binPackScoreOf(ctx.ask, free, ctx.cycle.profile);
  }
  const wReliability = weights[1] as number;
  if (wReliability !== 0) total += wReliability * reliabilityScore(state.reliability[i] as number);
  const wLocality = weights[2] as number;
  if (wLocality !== 0) total += wLocality * (cachesDataset(state, i, ctx.dataset) ? cachedDatasetScore : 0);
  const kindScarcity = ctx.kindScarcity;
  if (kindScarcity !== undefined) total += (weights[iScarcity] as number) * scarcityOnNode(ctx, kindScarcity, unit, i);
  return total;
}

/** GpuScarcity's score of node `i` (plugins/gpu-scarcity.ts) from the cycle's score per GPU kind, in the plugin's order of sums. */
function scarcityOnNode(ctx: Ctx, kindScarcity: Float64Array, unit: UnitRequest, i: number): number {
  if (unit.kind !== "gpu") return plentifulScore;
  const { gpuBase, gpuFree, gpuKind } = ctx.state;
  const ok = ctx.elig?.gpuOk;
  const to = gpuBase[i + 1] as number;
  let sum = 0;
  let n = 0;
  for (let k = gpuBase[i] as number; k < to; k++) {
    if ((gpuFree[k] as number) < unit.vramMb || (ok !== undefined && ok[k] !== 1)) continue;
    sum += kindScarcity[gpuKind[k] as number] as number;
    n++;
  }
  return n === 0 ? plentifulScore : sum / n;
}

/**
 * The GpuFragmentation score of node i (candidate k) through the fused scorer (fragmentation-scorer.ts):
 * the plugin's number, with a one-GPU unit's GPU remembered in `candGpu[k]`.
 */
function fragmentationOn(ctx: Ctx, unit: UnitRequest, i: number, k: number): number {
  const t = ctx.frag;
  if (t === undefined) return neutralFragmentationScore;
  const state = ctx.state;
  const count = unit.kind === "gpu" ? gpuCountOf(unit) : 0;
  const from = state.gpuBase[i] as number;
  const gpus = (state.gpuBase[i + 1] as number) - from;
  if (ctx.fragGpus.length < gpus) ctx.fragGpus = new Int32Array(gpus);
  const list = ctx.fragGpus;
  let m = 0;
  if (count === 1) {
    // A unit with GPU constraints has its per-GPU verdicts in ctx.elig (gpu-eligibility.ts).
    const ok = ctx.elig?.gpuOk;
    for (let pos = 0; pos < gpus; pos++) {
      if ((state.gpuFree[from + pos] as number) < unit.vramMb) continue;
      if (ok !== undefined && ok[from + pos] === 0) continue;
      list[m++] = pos;
    }
  } else if (count > 1) {
    for (const pos of chooseGpus(state.nodes[i] as WorkingNode, unit)) list[m++] = pos;
  }
  const score = fragmentationScoreOn(t, i, unit, count === 1, list, m, ctx.fragChoice);
  ctx.candGpu[k] = ctx.fragChoice[0] as number;
  return score;
}

/**
 * Candidate k with its score against the decision's best so far: the best score wins, then the tighter fit,
 * then the earlier seeded rank. That order is total, so candidates may come in any order (see `scorePruned`).
 */
function consider(ctx: Ctx, unit: UnitRequest, k: number, score: number): void {
  const nodes = ctx.state.nodes;
  const rank = ctx.state.rank;
  const w = nodes[ctx.candNode[k] as number] as WorkingNode;
  if (ctx.bestK === -1 || score > ctx.bestScore) {
    ctx.bestK = k;
    ctx.bestScore = score;
    ctx.bestLeft = NaN;
  } else if (score === ctx.bestScore) {
    const best = nodes[ctx.candNode[ctx.bestK] as number] as WorkingNode;
    // The GPUs compared are those the unit would get: chosen with the fragmentation asks when that score is on.
    if (Number.isNaN(ctx.bestLeft)) ctx.bestLeft = leftOn(ctx, unit, best, ctx.bestK);
    const left = leftOn(ctx, unit, w, k);
    if (left < ctx.bestLeft || (left === ctx.bestLeft && (rank[w.idx] as number) < (rank[best.idx] as number))) {
      ctx.bestK = k;
      ctx.bestLeft = left;
    }
  }
}

/** A total score as `scoreNode` rounds it. */
function rounded(ctx: Ctx, total: number): number {
  return Math.round((total / ctx.weightSum) * 1000) / 1000;
}

/**
 * Scores the candidates with the fragmentation score on, which costs more than the others together: the
 * other scores first, then the candidates in their order, each scored in full only while its other scores
 * plus its fragmentation ceiling (fragmentation-scorer.ts) can still reach the best score. Candidates that
 * cannot are skipped, and once even a perfect fragmentation score could not lift the next one, the rest.
 * The winner is the one a full scoring of every candidate finds.
 */
function scorePruned(ctx: Ctx, unit: UnitRequest, frag: FragmentationTable, wFragmentation: number): void {
  const { candPartial, candOrder, candNode, weightSum } = ctx;
  const n = ctx.nCand;
  // The VRAM the unit takes from a node in all: no node's fragmentation falls by more (fragmentationCeiling).
  const takesMb = unit.kind === "gpu" ? gpuCountOf(unit) * unit.vramMb : 0;
  const ceiling = fragmentationScore(-takesMb - 1, frag.scaleMb);
  for (let k = 0; k < n; k++) {
    candPartial[k] = partialScore(ctx, unit, candNode[k] as number);
    ctx.candGpu[k] = -1;
    candOrder[k] = k;
  }
  for (let o = 0; o < n; o++) {
    // The next candidate by its other scores (ties: the earlier one). A selection, not a sort: the loop
    // usually stops after a few of the ~30 candidates (5 on bench:placer 10k).
    let next = o;
    for (let q = o + 1; q < n; q++) {
      const a = candPartial[candOrder[q] as number] as number;
      const b = candPartial[candOrder[next] as number] as number;
      if (a > b || (a === b && (candOrder[q] as number) < (candOrder[next] as number))) next = q;
    }
    const k = candOrder[next] as number;
    candOrder[next] = candOrder[o] as number;
    candOrder[o] = k;
    const i = candNode[k] as number;
    const partial = candPartial[k] as number;
    if (ctx.bestK !== -1) {
      // Candidates come by their other scores, highest first, and none scores above `ceiling` for fragmentation.
      if (rounded(ctx, partial + wFragmentation * ceiling) < ctx.bestScore) break;
      // The fragmentation score this candidate would need to tie the best (less a margin for the rounding).
      const bar = ((ctx.bestScore - 0.001) * weightSum - partial) / wFragmentation;
      if (rounded(ctx, partial + wFragmentation * fragmentationCeiling(frag, i, takesMb, bar)) < ctx.bestScore) continue;
    }
    consider(ctx, unit, k, rounded(ctx, partial + wFragmentation * fragmentationOn(ctx, unit, i, k)));
  }
}

/** `leftOver` on candidate k: on the GPU the fragmentation score chose for it, when it chose one. */
function leftOn(ctx: Ctx, unit: UnitRequest, w: WorkingNode, k: number): number {
  const chosen = ctx.candGpu[k] as number;
  if (chosen < 0) return leftOver(unit, w);
  return (w.gpuFreeVramMb[chosen] as number) - unit.vramMb;
}

function startCycle(ctx: Ctx, options: PlacerOptions, units: readonly UnitRequest[]): void {
  ctx.weights = checkWeights(options.weights ?? defaultWeights);
  const cap = options.maxScored ?? defaultMaxScored;
  if (!Number.isInteger(cap) || cap < 1) throw new RangeError("placer maxScored must be an integer ≥ 1");
  ctx.maxScored = cap;
  const room = Math.max(1, Math.min(cap, ctx.state.size));
  if (ctx.candNode.length < room) {
    ctx.candNode = new Int32Array(room);
    ctx.candGpu = new Int32Array(room);
    ctx.candPartial = new Float64Array(room);
    ctx.candOrder = new Int32Array(room);
  }
  // The asks are tallied only for the fragmentation and scarcity scores (and the former's GPU choice): with their weights 0, none.
  const fragmentationOn = (ctx.weights[iFragmentation] ?? 0) > 0;
  const scarcityWeight = ctx.weights[iScarcity] ?? 0;
  const profile = demandProfile(units, fragmentationOn || scarcityWeight > 0 ? options.recentAsks : []);
  ctx.fragmentationAsks = fragmentationOn ? profile.asks : undefined;
  const asks = ctx.fragmentationAsks;
  ctx.frag = asks === undefined ? undefined : ctx.frag?.asks === asks && ctx.frag.state === ctx.state ? ctx.frag : fragmentationTable(ctx.state, asks, ctx.frag);
  ctx.kindScarcity = undefined;
  ctx.cycle = { profile };
  if (scarcityWeight > 0 && constrainsModels(profile.asks ?? [])) {
    const pressure = modelPressure(profile.asks ?? [], freeVramByModel(ctx.state));
    ctx.cycle = { profile, modelPressure: pressure };
    ctx.kindScarcity = Float64Array.from(ctx.state.gpuKinds, (kind) => scarcityScore(pressure.get(kind.name) ?? 0));
  }
  ctx.weightSum = weightSumOf(ctx.weights, ctx.cycle);
  reseed(ctx.state, options.seed);
  ctx.random = mulberry32(hashString(`walk:${options.seed}`));
  const reserveAfterMs = options.reserveAfterMs ?? defaultReserveAfterMs;
  if (Number.isNaN(reserveAfterMs) || reserveAfterMs < 0) throw new RangeError("placer reserveAfterMs must be ≥ 0");
  ctx.nowMs = options.nowMs;
  ctx.reserveAfterMs = reserveAfterMs;
  for (const i of ctx.blockedList) ctx.blocked[i] = 0;
  ctx.blockedList.length = 0;
  if (ctx.blocked.length !== ctx.state.size) ctx.blocked = new Uint8Array(ctx.state.size);
  ctx.held = ctx.heldNext;
  ctx.hostMinCpu = Infinity;
  ctx.hostMinMemory = Infinity;
  for (const unit of units) {
    if (unit.kind === "gpu") continue;
    ctx.hostMinCpu = Math.min(ctx.hostMinCpu, unit.cpuCores);
    ctx.hostMinMemory = Math.min(ctx.hostMinMemory, unit.memoryMb);
  }
  ctx.openStale.fill(1);
  ctx.heldNext = new Map();
  ctx.started = true;
}

/** How many of node i's GPUs satisfy the unit's rules (`elig`) with free VRAM ≥ `vramMb`. */
function fittingGpus(state: ClusterState, elig: GpuEligibility, i: number, vramMb: number): number {
  const { gpuBase, gpuFree } = state;
  const { gpuOk } = elig;
  const to = gpuBase[i + 1] as number;
  let n = 0;
  for (let k = gpuBase[i] as number; k < to; k++) if (gpuOk[k] === 1 && (gpuFree[k] as number) >= vramMb) n++;
  return n;
}

/** The visit filters, fused into comparisons: counts node `i`'s first failing reason, or keeps it as a candidate. */
function visit(ctx: Ctx, i: number): void {
  ctx.visited++;
  const { cpu, memory, disk, slots } = ctx.state;
  const unit = ctx.unit;
  const elig = ctx.elig;
  let reason = -1;
  if (elig !== undefined) {
    // The index found one GPU with the VRAM; the unit needs `count` of them that also satisfy its rules.
    const fits = fittingGpus(ctx.state, elig, i, unit.vramMb);
    if (fits < elig.count) reason = fits === 0 ? iVram : iGpus;
  }
  if (reason !== -1) {
    // Counted below.
  } else if (ctx.excluded[i] === ctx.seq) reason = iExcluded;
  else if ((disk[i] as number) < unit.diskMb) reason = iDisk;
  else if ((cpu[i] as number) < unit.cpuCores) reason = iCpu;
  else if ((memory[i] as number) < unit.memoryMb) reason = iMemory;
  else if ((slots[i] as number) < 1) reason = iFull;
  else if (ctx.blocked[i] === 1) reason = iReserved;
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
/**
 * `walkOpen` packs (step, entry) into one number: at most this many open nodes per walk, and a range below
 * `openRange`, so that a step (< the range) times the entry count, and a position times the stride's inverse,
 * stay exact integers in a double.
 */
const openEntries = 2 ** 20;
const openRange = 2 ** 26;

/**
 * Whether a cpu unit's walk of the GPU-less nodes should visit the open ones only (`walkOpen`): the unit asks
 * at least the cycle's least cores and memory, and the open nodes are few next to the range (else the walk
 * meets a candidate every few steps anyway, and sorting the open nodes would cost more than it saves).
 */
function walkOpenPays(ctx: Ctx, unit: UnitRequest): boolean {
  if (unit.cpuCores < ctx.hostMinCpu || unit.memoryMb < ctx.hostMinMemory) return false;
  let total = 0;
  let open = 0;
  for (let g = 0; g < ctx.state.groups.length; g++) {
    const len = ctx.rangeLen[g] as number;
    if (len === 0) continue;
    total += len;
    open += openNodes(ctx, g).length;
  }
  return open * 4 <= total && open < openEntries && total < openRange;
}

/** x⁻¹ mod m, for x coprime with m (extended Euclid). */
function inverseMod(x: number, m: number): number {
  let a = x % m;
  let b = m;
  let u = 1;
  let v = 0;
  while (b !== 0) {
    const q = Math.floor(a / b);
    const r = a - q * b;
    a = b;
    b = r;
    const w = u - q * v;
    u = v;
    v = w;
  }
  return ((u % m) + m) % m;
}

/** Rebuilds group g's list of open GPU-less nodes (see `Ctx.open`) when stale. */
function openNodes(ctx: Ctx, g: number): Int32Array {
  if (ctx.openStale[g] === 0) return ctx.open[g] as Int32Array;
  const { cpu, memory, slots } = ctx.state;
  const order = (ctx.state.groups[g] as NodeGroup).byDisk[0];
  let n = 0;
  for (const i of order) if ((slots[i] as number) >= 1 && (cpu[i] as number) >= ctx.hostMinCpu && (memory[i] as number) >= ctx.hostMinMemory) n++;
  const open = new Int32Array(n);
  n = 0;
  for (const i of order) if ((slots[i] as number) >= 1 && (cpu[i] as number) >= ctx.hostMinCpu && (memory[i] as number) >= ctx.hostMinMemory) open[n++] = i;
  ctx.open[g] = open;
  ctx.openStale[g] = 0;
  return open;
}

/**
 * `walk(ctx, 0)` for a cpu unit asking at least the cycle's least cores and memory, visiting only the
 * open GPU-less nodes: the others have no slot or fewer cores or less memory than any of the cycle's cpu
 * units asks, so the walk would only count them. Each open node in range gets its step in the walk
 * (position = start + step · stride mod total, solved for the step), and they are visited in that order:
 * the same candidates, in the same order, as the walk, from the same draw of its start. Returns whether
 * it skipped nodes the walk would have visited (then an unplaced unit's reasons need them).
 */
function walkOpen(ctx: Ctx): boolean {
  const state = ctx.state;
  const { groups, disk, tie } = state;
  const { rangeStart, rangeLen } = ctx;
  let total = 0;
  for (let g = 0; g < groups.length; g++) total += rangeLen[g] as number;
  if (total === 0) return false;
  const stride = strideFor(total);
  const start = Math.floor(ctx.random() * total);
  const inverse = inverseMod(stride, total);
  let n = 0;
  let offset = 0;
  for (let g = 0; g < groups.length; g++) {
    const len = rangeLen[g] as number;
    if (len === 0) continue;
    const open = openNodes(ctx, g);
    if (ctx.openNode.length < n + open.length) {
      const grown = Math.max(2 * ctx.openNode.length, n + open.length);
      const nodes = new Int32Array(grown);
      nodes.set(ctx.openNode.subarray(0, n));
      const steps = new Float64Array(grown);
      steps.set(ctx.openStep.subarray(0, n));
      ctx.openNode = nodes;
      ctx.openStep = steps;
    }
    const order = (groups[g] as NodeGroup).byDisk[0];
    for (const i of open) {
      if ((disk[i] as number) < ctx.unit.diskMb) continue;
      const position = offset + lowerBoundDisk(state, order, disk[i] as number, tie[i] as number) - (rangeStart[g] as number);
      ctx.openNode[n] = i;
      ctx.openStep[n] = ((((position - start) % total) + total) % total) * inverse % total;
      n++;
    }
    offset += len;
  }
  // Sorted natively as one number each: the step, then the entry (steps are distinct, so the entry only rides along).
  const { openNode, openStep } = ctx;
  for (let k = 0; k < n; k++) openStep[k] = (openStep[k] as number) * openEntries + k;
  const order = openStep.subarray(0, n).sort();
  for (let k = 0; k < n && ctx.nCand < ctx.maxScored; k++) {
    const i = openNode[(order[k] as number) % openEntries] as number;
    state.stamp[i] = ctx.seq;
    visit(ctx, i);
  }
  return true;
}

function walk(ctx: Ctx, kind: -2 | -1 | 0 | 1): void {
  const { groups, stamp } = ctx.state;
  const { rangeStart, rangeLen, seq, maxScored } = ctx;
  let total = 0;
  for (let g = 0; g < groups.length; g++) total += rangeLen[g] as number;
  if (total === 0) return;
  const step = strideFor(total);
  let p = Math.floor(ctx.random() * total);
  // A node the unit's static GPU rules reject is counted per group (gpu-eligibility.ts), never visited.
  const verdict = kind === -1 ? ctx.elig?.verdict : undefined;
  for (let j = 0; j < total && ctx.nCand < maxScored; j++) {
    let g = 0;
    let c = p;
    while (c >= (rangeLen[g] as number)) c -= rangeLen[g++] as number;
    const group = groups[g] as NodeGroup;
    const at = (rangeStart[g] as number) + c;
    const i = (kind === -1 ? group.slotNode[at] : kind === -2 ? (ctx.elig as GpuEligibility).nodes[g]?.[at] : group.byDisk[kind][at]) as number;
    // A node met again through another of its GPUs adds nothing. With the fragmentation score on, only the
    // first of a node's GPUs with the same free VRAM (side by side in the index) lets the walk in, so a node
    // with eight free GPUs is not met eight times as often as one with a single free GPU: the sample would
    // favour the emptiest nodes, the worst candidates for fragmentation (README, "Fragmentation score").
    const twin = kind === -1 && ctx.fragmentationAsks !== undefined && at > 0 && group.slotNode[at - 1] === i && group.slotFree[at - 1] === group.slotFree[at];
    if (!twin && stamp[i] !== seq) {
      stamp[i] = seq;
      if (verdict === undefined || verdict[i] === -1) visit(ctx, i);
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
    ctx.excluded.fill(0);
    state.seq = 0;
  }
  const counts = ctx.counts;
  ctx.unit = unit;
  binPackAskOf(unit, ctx.cycle.profile, ctx.ask);
  ctx.dataset = state.datasets.numberOf.get(unit.datasetId) ?? -1;
  ctx.seq = ++state.seq;
  if (ctx.excluded.length !== state.size) ctx.excluded = new Int32Array(state.size);
  for (const id of unit.excludedNodeIds) {
    const w = state.byId.get(id);
    if (w !== undefined) ctx.excluded[w.idx] = ctx.seq;
  }
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
  ctx.elig = gpu && (gpuCountOf(unit) > 1 || hasGpuConstraints(unit)) ? eligibilityFor(state, unit) : undefined;
  const elig = ctx.elig;
  let skippedDisk = 0;
  const { rank, nodes } = state;

  if (gpu) {
    let slots = 0;
    let eligible = 0;
    for (let g = 0; g < groups.length; g++) {
      if (allowed[g] === 0) continue;
      const group = groups[g] as NodeGroup;
      const start = lowerBoundSlot(state, group, unit.vramMb, -1, -1);
      rangeStart[g] = start;
      rangeLen[g] = group.slotFree.length - start;
      slots += rangeLen[g] as number;
      eligible += elig === undefined ? 0 : (elig.allowed[g] as number);
    }
    if (elig !== undefined && eligible * eligibleWalkRatio < slots) {
      // Few nodes the unit's GPU rules allow among many GPUs with the VRAM (a rare model, eight GPUs): walk those
      // nodes instead of skipping past the others' GPUs; a visit counts a node without GPUs that fit as insufficient_vram.
      for (let g = 0; g < groups.length; g++) {
        rangeStart[g] = 0;
        rangeLen[g] = allowed[g] === 0 ? 0 : (elig.allowed[g] as number);
      }
      walk(ctx, -2);
    } else walk(ctx, -1);
  } else {
    // Nodes without a GPU first; GPU nodes only when none of those can take
    // the unit, so cpu units do not use up the cores and memory that GPU
    // units need next to a free GPU.
    let skippedClosed = false;
    for (let kind = 0; kind < 2 && ctx.nCand === 0; kind++) {
      for (let g = 0; g < groups.length; g++) {
        if (allowed[g] === 0) continue;
        const order = (groups[g] as NodeGroup).byDisk[kind as 0 | 1];
        const start = lowerBoundDisk(state, order, unit.diskMb, -1);
        skippedDisk += start;
        rangeStart[g] = start;
        rangeLen[g] = order.length - start;
      }
      if (kind === 0 && walkOpenPays(ctx, unit)) {
        skippedClosed = walkOpen(ctx);
        ctx.gpuLessStart.set(rangeStart);
        ctx.gpuLessLen.set(rangeLen);
      } else walk(ctx, kind as 0 | 1);
    }
    if (skippedClosed && ctx.nCand === 0) {
      // Unplaced: count the GPU-less nodes walkOpen passed over, as the walk would have.
      for (let g = 0; g < groups.length; g++) {
        const order = (groups[g] as NodeGroup).byDisk[0];
        const from = ctx.gpuLessStart[g] as number;
        const to = from + (ctx.gpuLessLen[g] as number);
        for (let k = from; k < to; k++) {
          const i = order[k] as number;
          if (state.stamp[i] === ctx.seq) continue;
          state.stamp[i] = ctx.seq;
          visit(ctx, i);
        }
      }
    }
  }

  // Score the candidates: the best score wins, then the tighter fit, then the earlier seeded rank.
  ctx.bestK = -1;
  ctx.bestScore = -1;
  ctx.bestLeft = NaN;
  const wFragmentation = ctx.weights[iFragmentation] as number;
  if (wFragmentation === 0 || ctx.frag === undefined) {
    for (let k = 0; k < ctx.nCand; k++) consider(ctx, unit, k, scoreNode(ctx, unit, ctx.candNode[k] as number, k));
  } else scorePruned(ctx, unit, ctx.frag, wFragmentation);
  const bestK = ctx.bestK;
  const best = bestK === -1 ? undefined : (nodes[ctx.candNode[bestK] as number] as WorkingNode);
  const bestScore = ctx.bestScore;

  if (best !== undefined) {
    const chosen = ctx.candGpu[bestK] as number;
    const positions = chosen >= 0 ? [chosen] : chooseGpus(best, unit);
    const node = best.node;
    const gpuIndexes = positions.map((pos) => (node.gpus[pos] as GpuView).index);
    if (gpuIndexes.length > 1) gpuIndexes.sort((a, b) => a - b);
    reserve(state, best, unit, positions);
    if (best.gpuFreeVramMb.length === 0) ctx.openStale[best.group] = 1;
    return { placed: true, placement: { unitId: unit.id, nodeId: node.id, gpuIndex: gpuIndexes[0] ?? -1, gpuIndexes, score: bestScore } };
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
    } else if (gpu && elig === undefined) {
      counts[iNoGpu] = (counts[iNoGpu] as number) + group.size - group.gpuNodes;
      counts[iVram] = (counts[iVram] as number) + group.gpuNodes;
    } else if (gpu && elig !== undefined) {
      // The static GPU rules settle each node of the group once; the nodes they allow have no GPU that fits unless visited.
      const verdicts = staticGpuReasons.length;
      for (let v = 0; v < verdicts; v++) {
        const n = elig.rejected[g * verdicts + v] as number;
        counts[iStatic[v] as number] = (counts[iStatic[v] as number] as number) + n;
        if (v >= firstUnresolvableVerdict) unresolvable += n;
      }
      counts[iVram] = (counts[iVram] as number) + (elig.allowed[g] as number);
    }
  }
  // Nodes before a disk index's start have less free disk than asked.
  counts[iDisk] = (counts[iDisk] as number) + skippedDisk;
  if (gpu) {
    // Each visited node was counted by its visit; the other GPU nodes (the other nodes the GPU rules allow) have no GPU that fits.
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
  const unplaced: Unplaced = {
    unitId: unit.id,
    reasons: Object.fromEntries(map) as Partial<Record<ReasonCode, number>>,
    unresolvable: state.size > 0 && unresolvable === state.size,
    message: describe(unit, map, state.size),
  };
  if (isOverdue(unit, ctx.nowMs, ctx.reserveAfterMs)) {
    const kept = reservationFor(ctx, unit);
    if (kept !== undefined) {
      ctx.blocked[kept.idx] = 1;
      ctx.blockedList.push(kept.idx);
      ctx.heldNext.set(unit.id, kept.node.id);
      unplaced.reservedNodeId = kept.node.id;
      unplaced.message += `; node ${kept.node.id} is kept for it until it fits`;
    }
  }
  return { placed: false, unplaced };
}

/**
 * Whether `w` could run the unit once what runs there ends: it may take units of the unit's tier
 * now, did not fail the unit, and its totals (cores, memory, `gpuCount` GPUs that satisfy the unit's
 * rules with total VRAM less the owner's reserve ≥ the ask) and its free disk suffice. Free disk is
 * what it has now: the snapshot carries no disk total.
 */
function capable(ctx: Ctx, unit: UnitRequest, w: WorkingNode): boolean {
  if (w.group === -1 || ctx.allowed[w.group] === 0 || unit.excludedNodeIds.includes(w.node.id)) return false;
  const node = w.node;
  if (node.cpuCores < unit.cpuCores || node.memoryMb < unit.memoryMb || w.diskFreeMb < unit.diskMb) return false;
  const count = gpuCountOf(unit);
  if (count === 0) return true;
  // What units may ever use of a GPU: all of it but its owner's reserve.
  const reserved = node.owner?.reservedVramMb ?? 0;
  let gpus = 0;
  for (const g of node.gpus) if (g.vramMb - reserved >= unit.vramMb && failedConstraint(unit, g) === GpuConstraint.None) gpus++;
  return gpus >= count;
}

/**
 * How far `w` is from fitting the unit now: per resource the share of the ask that is missing
 * (cores, memory; for GPUs the mean over the `gpuCount` allowed GPUs with the most free VRAM), plus
 * 1 when it has no free unit slot. 0 would fit (except for a reservation by another unit).
 */
function gap(unit: UnitRequest, w: WorkingNode): number {
  const short = (ask: number, free: number) => (ask <= 0 ? 0 : Math.max(0, ask - free) / ask);
  let total = short(unit.cpuCores, w.freeCpuCores) + short(unit.memoryMb, w.freeMemoryMb) + (w.freeUnitSlots < 1 ? 1 : 0);
  const count = gpuCountOf(unit);
  if (count > 0) {
    const frees = w.gpuFreeVramMb.filter((_, pos) => failedConstraint(unit, w.node.gpus[pos] as GpuView) === GpuConstraint.None).sort((a, b) => b - a);
    let missing = 0;
    for (let k = 0; k < count; k++) missing += short(unit.vramMb, frees[k] ?? 0);
    total += missing / count;
  }
  return total;
}

/**
 * The node an overdue unit that fits nowhere keeps this cycle: the one it kept last cycle while that
 * one is still capable and not kept by an older overdue unit (so the wait is bounded by the runs on
 * one node, see README "Reservations"), else the capable node closest to fitting it (`gap`; ties:
 * the seeded rank). Undefined when no node could ever run it. O(n): only for overdue units left over.
 */
function reservationFor(ctx: Ctx, unit: UnitRequest): WorkingNode | undefined {
  const state = ctx.state;
  const usable = (w: WorkingNode | undefined): w is WorkingNode => w !== undefined && ctx.blocked[w.idx] === 0 && capable(ctx, unit, w);
  const last = ctx.held.get(unit.id);
  const kept = last === undefined ? undefined : state.byId.get(last);
  if (usable(kept)) return kept;
  let best: WorkingNode | undefined;
  let bestGap = Infinity;
  for (const w of state.nodes) {
    if (!usable(w)) continue;
    const g = gap(unit, w);
    if (best === undefined || g < bestGap || (g === bestGap && (state.rank[w.idx] as number) < (state.rank[best.idx] as number))) {
      best = w;
      bestGap = g;
    }
  }
  return best;
}

/** A placer over a private copy of `snapshot` (O(n log n)); see {@link Placer}. Node ids must be unique. */
export function createPlacer(snapshot: ClusterSnapshot): Placer {
  const ctx: Ctx = {
    state: createState(snapshot),
    counts: new Int32Array(reasonOrder.length),
    candNode: new Int32Array(0),
    rangeStart: new Int32Array(groupCount),
    rangeLen: new Int32Array(groupCount),
    gpuLessStart: new Int32Array(groupCount),
    gpuLessLen: new Int32Array(groupCount),
    allowed: new Uint8Array(groupCount),
    weights: checkWeights(defaultWeights),
    weightSum: 1,
    kindScarcity: undefined,
    maxScored: defaultMaxScored,
    cycle: { profile: defaultProfile },
    fragmentationAsks: undefined,
    frag: undefined,
    candGpu: new Int32Array(0),
    candPartial: new Float64Array(0),
    candOrder: new Int32Array(0),
    bestK: -1,
    bestScore: -1,
    bestLeft: NaN,
    fragGpus: new Int32Array(8),
    fragChoice: new Int32Array(1),
    random: mulberry32(0),
    started: false,
    nowMs: undefined,
    reserveAfterMs: defaultReserveAfterMs,
    blocked: new Uint8Array(0),
    blockedList: [],
    held: new Map(),
    heldNext: new Map(),
    hostMinCpu: Infinity,
    hostMinMemory: Infinity,
    open: Array.from({ length: groupCount }, () => new Int32Array(0)),
    openStale: new Uint8Array(groupCount).fill(1),
    openNode: new Int32Array(0),
    openStep: new Float64Array(0),
    excluded: new Int32Array(0),
    free: { vramMb: 0, cpuCores: 0, memoryMb: 0, diskMb: 0, unitSlots: Infinity },
    unit: undefined as unknown as UnitRequest,
    ask: { vram: 0, cpu: 0, memory: 0, disk: 0, size: 0 },
    dataset: -1,
    elig: undefined,
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
      const ordered = placementOrder(units, options.nowMs, options.reserveAfterMs);
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
      ctx.openStale.fill(1);
      if (syncState(ctx.state, next)) return true;
      ctx.state = createState(next);
      // Its decision counter starts over: marks left by the old one must not match.
      ctx.excluded = new Int32Array(0);
      ctx.blockedList.length = 0;
      ctx.blocked = new Uint8Array(ctx.state.size);
      ctx.started = false;
      return false;
    },
  };
}
