/**
 * Placement: order → filter → score → reserve (see ./README.md).
 *
 * Pure: the same snapshot, units and seed always give the same plan, and the
 * snapshot is never mutated (no I/O, clock or Math.random either). The plan
 * is a proposal; the caller commits it after re-checking fit against fresh
 * state, fenced by the leader's term.
 *
 * `placeUnits` is one cycle over a fresh copy of a snapshot. `createPlacer`
 * keeps the copy and its indexes across cycles, so a caller that already
 * knows what it committed (a simulator, the benchmark) need not rebuild them.
 */
import { bestGpu, createState, lowerBoundDisk, lowerBoundSlot, reserve, reseed, type TrustGroup, type WorkingNode } from "./cycle-state.ts";
import { fairOrder } from "./fairness.ts";
import { cpuFit, diskFit, memoryFit, nodeExcluded, scorePlugins, visitFilters } from "./plugins/index.ts";
import { Reason, type ReasonCode } from "./reasons.ts";
import { minimumTrust, trustLevels } from "./trust.ts";
import type { ClusterSnapshot, Placement, PlacementResult, PlacerOptions, ScoreWeights, UnitRequest, Unplaced } from "./types.ts";

/** Default score weights: fit matters most, then a node's track record, then a warm dataset cache. */
export const defaultWeights: ScoreWeights = { binPack: 0.5, reliability: 0.3, dataLocality: 0.2 };

/**
 * Default cap on feasible nodes scored per unit. The candidates come in
 * best-fit order, so the cap only drops looser fits that could win on
 * reliability or a cached dataset; without it a small unit on an empty
 * 10,000-node cluster would score every node.
 */
export const defaultMaxScored = 32;

const reasonOrder: readonly ReasonCode[] = Object.values(Reason);
const reasonIndex = new Map<ReasonCode, number>(reasonOrder.map((r, i) => [r, i]));
const at = (reason: ReasonCode): number => reasonIndex.get(reason) as number;
const iUnschedulable = at(Reason.NodeUnschedulable);
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

/** A long-lived placer over one snapshot: reservations made by a cycle stay for the next. */
export interface Placer {
  /** The number of nodes in the snapshot. */
  readonly size: number;
  /** Places one cycle's units in fair order (fairness.ts) and keeps their reservations. */
  place(units: readonly UnitRequest[], options: PlacerOptions): PlacementResult;
  /** Starts a cycle by hand: sets the tie-break seed, weights and cap for the following `decide` calls. */
  startCycle(options: PlacerOptions): void;
  /** Decides one unit (in the caller's order) and reserves what it takes; for callers that time decisions. */
  decide(unit: UnitRequest): Decision;
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

/**
 * Places as many units as fit, in fair order (fairness.ts). For each unit
 * the index yields candidate nodes in best-fit order, the filters the index
 * cannot settle run on each, up to `maxScored` survivors are scored
 * (weighted mean of the score plugins, 0..100), the best wins (a tie goes to
 * the node earlier in a shuffle of the node ids seeded by `options.seed`),
 * and its resources are reserved so later units see them taken.
 *
 * Cost: O(n log n) to index, then per unit O(T log n + k · (F + S + G)) with
 * T trust levels, k visited nodes (≤ `maxScored` feasible ones plus the
 * infeasible ones between them; every candidate for a unit nothing takes),
 * F/S plugins and G GPUs per node, plus a memmove to re-key the node.
 */
export function placeUnits(snapshot: ClusterSnapshot, units: readonly UnitRequest[], options: PlacerOptions): PlacementResult {
  return createPlacer(snapshot).place(units, options);
}

/** A placer over a private copy of `snapshot` (O(n log n)); see {@link Placer}. Node ids must be unique. */
export function createPlacer(snapshot: ClusterSnapshot): Placer {
  const state = createState(snapshot);
  const counts = new Int32Array(reasonOrder.length);
  // Candidates of the current decision (at most maxScored per trust group): node idx, index key, GPU position.
  let candNode = new Int32Array(0);
  let candKey = new Float64Array(0);
  let candPos = new Int32Array(0);
  let weights: number[] = checkWeights(defaultWeights);
  let weightSum = 1;
  let maxScored = defaultMaxScored;
  let started = false;

  /** The weighted mean of the score plugins (0..100), rounded to 3 decimals so float noise cannot decide a tie. */
  function scoreNode(unit: UnitRequest, node: WorkingNode): number {
    let total = 0;
    for (let i = 0; i < scorePlugins.length; i++) total += (weights[i] as number) * (scorePlugins[i] as (typeof scorePlugins)[number]).score(unit, node);
    return Math.round((total / weightSum) * 1000) / 1000;
  }

  function startCycle(options: PlacerOptions): void {
    weights = checkWeights(options.weights ?? defaultWeights);
    weightSum = weights.reduce((a, b) => a + b, 0);
    const cap = options.maxScored ?? defaultMaxScored;
    if (!Number.isInteger(cap) || cap < 1) throw new RangeError("placer maxScored must be an integer ≥ 1");
    maxScored = cap;
    // Never more candidates than nodes, whatever the cap.
    const room = Math.max(1, Math.min(trustLevels.length * cap, state.size));
    if (candNode.length < room) {
      candNode = new Int32Array(room);
      candKey = new Float64Array(room);
      candPos = new Int32Array(room);
    }
    reseed(state, options.seed);
    started = true;
  }

  function decide(unit: UnitRequest): Decision {
    if (!started) throw new Error("placer: startCycle before decide");
    if (state.seq === 0x7fffffff) {
      // The stamp array is Int32: start over before it wraps.
      state.stamp.fill(0);
      state.seq = 0;
    }
    const seq = ++state.seq;
    counts.fill(0);
    const minTrust = trustLevels.indexOf(minimumTrust(unit.sensitivity));
    const groups = state.groups;
    const gpu = unit.kind === "gpu";
    let unresolvable = 0;
    let visited = 0;
    let skippedDisk = 0;

    const excluded = unit.excludedNodeIds;
    const { cpu, memory, disk, rank, stamp, nodes } = state;
    let nCand = 0;
    /**
     * The visit filters, fused into comparisons: counts node `i`'s first
     * failing reason, or records it as a candidate with its index key.
     */
    const visit = (i: number, key: number, pos: number): void => {
      visited++;
      let reason = -1;
      if (excluded.length !== 0 && excluded.includes((nodes[i] as WorkingNode).node.id)) reason = iExcluded;
      else if ((disk[i] as number) < unit.diskMb) reason = iDisk;
      else if ((cpu[i] as number) < unit.cpuCores) reason = iCpu;
      else if ((memory[i] as number) < unit.memoryMb) reason = iMemory;
      if (reason === -1) {
        candNode[nCand] = i;
        candKey[nCand] = key;
        candPos[nCand] = pos;
        nCand++;
      } else {
        counts[reason] = (counts[reason] as number) + 1;
        if (reason === iExcluded) unresolvable++;
      }
    };

    // Each allowed trust group is walked in its own best-fit order up to its
    // first maxScored feasible nodes; the maxScored best fits overall are
    // among them. A unit nothing takes walks every candidate, which also
    // counts every visited node's reason.
    if (gpu) {
      for (let g = minTrust; g < groups.length; g++) {
        const { slotFree, slotNode, slotPos } = groups[g] as TrustGroup;
        const stop = nCand + maxScored;
        for (let c = lowerBoundSlot(state, groups[g] as TrustGroup, unit.vramMb, -1, -1); c < slotFree.length && nCand < stop; c++) {
          const i = slotNode[c] as number;
          // A node's first GPU in this order is its best fit; its other GPUs add nothing.
          if (stamp[i] === seq) continue;
          stamp[i] = seq;
          visit(i, slotFree[c] as number, slotPos[c] as number);
        }
      }
    } else {
      // Nodes without a GPU first; GPU nodes only when none of those can take
      // the unit, so cpu units do not use up the cores and memory that GPU
      // units need next to a free GPU.
      for (let kind = 0; kind < 2 && nCand === 0; kind++) {
        for (let g = minTrust; g < groups.length; g++) {
          const order = (groups[g] as TrustGroup).byDisk[kind as 0 | 1];
          const start = lowerBoundDisk(state, order, unit.diskMb, -1);
          skippedDisk += start;
          const stop = nCand + maxScored;
          for (let c = start; c < order.length && nCand < stop; c++) {
            const i = order[c] as number;
            visit(i, disk[i] as number, 0);
          }
        }
      }
    }

    // Score the maxScored best fits among the candidates: key, then seeded rank, then GPU position.
    let best: WorkingNode | undefined;
    let bestScore = -1;
    if (nCand > 0) {
      const picked = Array.from({ length: nCand }, (_, k) => k);
      if (nCand > maxScored) {
        picked.sort(
          (x, y) =>
            (candKey[x] as number) - (candKey[y] as number) ||
            (rank[candNode[x] as number] as number) - (rank[candNode[y] as number] as number) ||
            (candPos[x] as number) - (candPos[y] as number),
        );
        picked.length = maxScored;
      }
      for (const k of picked) {
        const w = nodes[candNode[k] as number] as WorkingNode;
        const score = scoreNode(unit, w);
        if (best === undefined || score > bestScore || (score === bestScore && (rank[w.idx] as number) < (rank[best.idx] as number))) {
          best = w;
          bestScore = score;
        }
      }
    }

    const chosen = best;
    if (chosen !== undefined) {
      const gpuPos = gpu ? bestGpu(chosen, unit.vramMb) : -1;
      const gpuIndex = gpuPos === -1 ? -1 : (chosen.node.gpus[gpuPos]?.index ?? -1);
      reserve(state, chosen, unit, gpuPos);
      return { placed: true, placement: { unitId: unit.id, nodeId: chosen.node.id, gpuIndex, score: bestScore } };
    }

    // Unplaced: count the nodes the index skipped under the reason a full scan would give them.
    counts[iUnschedulable] = (counts[iUnschedulable] as number) + state.unschedulable;
    for (let g = 0; g < groups.length; g++) {
      const group = groups[g] as TrustGroup;
      if (g < minTrust) {
        counts[iTrust] = (counts[iTrust] as number) + group.size;
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
      counts[iVram] = (counts[iVram] as number) - visited;
    } else {
      // The disk index skipped those nodes before NodeExcluded (which comes first) could see them.
      for (const id of new Set(unit.excludedNodeIds)) {
        const w = state.byId.get(id);
        if (w === undefined || !w.node.schedulable || w.trust < minTrust || w.diskFreeMb >= unit.diskMb) continue;
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

  return {
    size: state.size,
    startCycle,
    decide,
    place(units, options) {
      checkUnits(units);
      startCycle(options);
      const placements: Placement[] = [];
      const unplaced: Unplaced[] = [];
      for (const unit of fairOrder(units)) {
        const d = decide(unit);
        if (d.placed) placements.push(d.placement);
        else unplaced.push(d.unplaced);
      }
      return { placements, unplaced };
    },
  };
}
