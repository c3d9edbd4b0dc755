/**
 * How much of each GPU model's free VRAM the constrained part of the arriving
 * work will claim: the GpuScarcity score (plugins/gpu-scarcity.ts) keeps a
 * model's GPUs for the units that may run on nothing else.
 *
 * Why a fragmentation score alone does not: it asks where the arriving work
 * could still use a node's free VRAM, and to a unit that any model will do,
 * a rare model's GPU is as good as a common one's. On the openb trace's
 * `gpuspec33` workload (a third of gpu tasks allow only some models) units
 * that allow every model took 719 GPUs of the 1,820 of the rarer models
 * while 633 GPUs of the common one stayed free, and 712 GPUs of constrained
 * demand found no GPU they allow (src/placer/README.md, "GPU model scarcity").
 *
 * For the asks m of the arriving work (weights wₘ, each K GPUs of v, allowing
 * the models Aₘ; an empty allow-list is every model) and the free VRAM S_g of
 * each model g (S = Σ S_g):
 * - dₘ = wₘ K v is what a typical arrival asks of m, D = Σ dₘ over every gpu ask;
 * - a constrained ask spreads over the models it allows in proportion to
 *   their free VRAM: it claims dₘ S_g / S(Aₘ) of model g per arrival;
 * - while the cluster fills (S / D more arrivals), the constrained asks claim
 *   ρ_g = (S / D) × Σ_{m constrained, g ∈ Aₘ} dₘ / S(Aₘ)
 *   of g's free VRAM, as a share of it (the pressure). Above 1 they alone would
 *   take every free GPU of g; near 0 nothing but g-agnostic units wants it.
 *
 * The score of a GPU is 100 × (1 − min(1, ρ_g)²): a unit that several models
 * will do goes to the one the constrained work needs least, and a model the
 * constrained work leaves mostly free is hardly avoided (linear in ρ, the
 * small pressures of bench:placer's constraints cost it units placed). Nothing is
 * specific to a model name: the pressure follows the window's asks and what is
 * free, so a model fills up and its pressure rises, and the units that any
 * model will do move on to the next.
 *
 * Pure: no I/O; asks whose allowed models have no free VRAM are left out
 * (they cannot take any).
 */
import { gpuModelAllowed } from "../planner/gpu-constraints.ts";
import type { DemandAsk } from "./types.ts";

/** Whether any gpu ask of `asks` constrains the GPU model (otherwise there is no pressure to weigh). */
export function constrainsModels(asks: readonly DemandAsk[]): boolean {
  return asks.some((ask) => ask.gpuCount > 0 && ask.weight > 0 && ask.gpuModels.length > 0);
}

/**
 * ρ_g per GPU model name (see the file comment) from the arriving work's
 * `asks` and the free VRAM per model name (`supply`, MB); every name of
 * `supply` is in the result (0 where no constrained ask allows it).
 * O(asks × names).
 */
export function modelPressure(asks: readonly DemandAsk[], supply: ReadonlyMap<string, number>): Map<string, number> {
  const names = [...supply.keys()];
  const pressure = new Map<string, number>(names.map((name) => [name, 0]));
  let supplyTotal = 0;
  for (const s of supply.values()) supplyTotal += Math.max(0, s);
  let demandTotal = 0;
  for (const ask of asks) if (ask.gpuCount > 0 && ask.weight > 0) demandTotal += ask.weight * ask.gpuCount * ask.vramMb;
  if (!(supplyTotal > 0) || !(demandTotal > 0)) return pressure;
  const allowed: string[] = [];
  for (const ask of asks) {
    if (ask.gpuCount === 0 || !(ask.weight > 0) || ask.gpuModels.length === 0) continue;
    allowed.length = 0;
    let reachable = 0;
    for (const name of names) {
      if (!gpuModelAllowed(name, ask.gpuModels)) continue;
      allowed.push(name);
      reachable += Math.max(0, supply.get(name) ?? 0);
    }
    if (!(reachable > 0)) continue;
    const claim = (ask.weight * ask.gpuCount * ask.vramMb) / reachable;
    for (const name of allowed) pressure.set(name, (pressure.get(name) ?? 0) + claim);
  }
  const scale = supplyTotal / demandTotal;
  for (const name of names) pressure.set(name, (pressure.get(name) ?? 0) * scale);
  return pressure;
}

/** A GPU's scarcity score 0..100 from its model's pressure ρ: 100 × (1 − min(1, ρ)²). */
export function scarcityScore(pressure: number): number {
  const share = Math.min(1, Math.max(0, pressure));
  return 100 * (1 - share * share);
}
