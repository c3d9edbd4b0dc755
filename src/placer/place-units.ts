/**
 * One placement cycle: order → filter → score → reserve (see ./README.md).
 *
 * Pure: the same snapshot, units and seed always give the same plan, and the
 * snapshot is never mutated. The plan is a proposal; the caller commits it
 * after re-checking fit against fresh state, fenced by the leader's term.
 */
import { bestGpu, createCycle, type NodeView } from "./cycle-state.ts";
import { fairOrder } from "./fairness.ts";
import { filterPlugins, scorePlugins } from "./plugins/index.ts";
import { Reason, type ReasonCode } from "./reasons.ts";
import { minimumTrust } from "./trust.ts";
import type { ClusterSnapshot, Placement, PlacementResult, PlacerOptions, ScoreWeights, UnitRequest, Unplaced } from "./types.ts";

/** Default score weights: fit matters most, then a node's track record, then a warm dataset cache. */
export const defaultWeights: ScoreWeights = { binPack: 0.5, reliability: 0.3, dataLocality: 0.2 };

const reasonOrder: readonly ReasonCode[] = Object.values(Reason);

function checkWeights(weights: ScoreWeights): ScoreWeights {
  const values = [weights.binPack, weights.reliability, weights.dataLocality];
  if (values.some((w) => !Number.isFinite(w) || w < 0) || values.reduce((a, b) => a + b, 0) <= 0) {
    throw new RangeError("placer weights must be finite, non-negative and not all zero");
  }
  return weights;
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

/** The weighted mean of the score plugins (0..100), rounded to 3 decimals so float noise cannot break a tie. */
function scoreNode(unit: UnitRequest, node: NodeView, weights: ScoreWeights): number {
  let total = 0;
  let weightSum = 0;
  for (const plugin of scorePlugins) {
    const w = weights[plugin.weight];
    total += w * plugin.score(unit, node);
    weightSum += w;
  }
  return Math.round((total / weightSum) * 1000) / 1000;
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
 * Places as many units as fit, in fair order (fairness.ts). For each unit:
 * the index yields candidate nodes, every filter plugin runs on each, the
 * survivors are scored (weighted mean of the score plugins, 0..100), the
 * best wins (a tie goes to the node earlier in a shuffle of the node ids
 * seeded by `options.seed`), and its resources are reserved in the cycle's
 * working copy so later units see them taken.
 *
 * Cost per unit: O(T log n + k · (F + S + G)), T trust levels, k candidate
 * nodes after the index, F/S plugins, G GPUs per node; plus O(n) for the
 * sorted-array re-key after reserving a GPU unit (a memmove).
 */
export function placeUnits(snapshot: ClusterSnapshot, units: readonly UnitRequest[], options: PlacerOptions): PlacementResult {
  const weights = checkWeights(options.weights ?? defaultWeights);
  checkUnits(units);
  const cycle = createCycle(snapshot, options.seed);
  const placements: Placement[] = [];
  const unplaced: Unplaced[] = [];

  for (const unit of fairOrder(units)) {
    const { nodes, skipped } = cycle.candidates(unit);
    const counts = new Map(skipped);
    let unresolvableCount = skipped.get(Reason.TrustBelowTier) ?? 0;
    let best: { node: NodeView; score: number; rank: number } | undefined;

    for (const node of nodes) {
      let rejected = false;
      for (const plugin of filterPlugins) {
        const status = plugin.filter(unit, node);
        if (status.code === "success") continue;
        counts.set(status.reason, (counts.get(status.reason) ?? 0) + 1);
        if (status.code === "unresolvable") unresolvableCount++;
        rejected = true;
        break;
      }
      if (rejected) continue;
      const score = scoreNode(unit, node, weights);
      const rank = cycle.tieRank(node.node.id);
      if (best === undefined || score > best.score || (score === best.score && rank < best.rank)) {
        best = { node, score, rank };
      }
    }

    if (best === undefined) {
      unplaced.push({
        unitId: unit.id,
        reasons: Object.fromEntries(counts) as Partial<Record<ReasonCode, number>>,
        unresolvable: cycle.size > 0 && unresolvableCount === cycle.size,
        message: describe(unit, counts, cycle.size),
      });
      continue;
    }
    const gpuPos = unit.kind === "gpu" ? bestGpu(best.node, unit.vramMb) : -1;
    const gpuIndex = gpuPos === -1 ? -1 : (best.node.node.gpus[gpuPos]?.index ?? -1);
    cycle.reserve(best.node, unit, gpuPos);
    placements.push({ unitId: unit.id, nodeId: best.node.node.id, gpuIndex, score: best.score });
  }
  return { placements, unplaced };
}
