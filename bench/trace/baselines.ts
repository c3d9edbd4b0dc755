/**
 * The replay's baselines, under the same hard rules as the placer: a task
 * fits a node when the node's model is allowed, it has the cores and memory
 * free, and `numGpu` of its GPUs each have `gpuMilli` free (cores and memory
 * are subtracted as the placer does, in the same floating-point numbers, so
 * both see the same fits).
 *
 * - first-fit: the first node in the trace's order that fits; its lowest
 *   GPUs that fit.
 * - best-fit: as the FGD paper's artifact (hkust-adsl/kubernetes-scheduler-
 *   simulator, plugin/best_fit_score.go) defines it: the node with the least
 *   resources left after placement, by Σ wᵢ (freeᵢ − askᵢ) / maxSpecᵢ over
 *   CPU (max 128 cores) and GPU (the node's total free thousandths, max 8
 *   GPUs), weights 0.5 / 0.5; the artifact scores it as an integer,
 *   ⌊100 × (1 − that)⌋, so nodes within a point tie, and the scheduler picks
 *   one of the tied nodes at random (seeded here). The GPU: a shared task
 *   takes the GPU with the least free share that fits, a task of whole GPUs
 *   the first fully free ones (the artifact's `best` GPU selection).
 */
import { hashString, mulberry32 } from "../../src/placer/prng.ts";
import { milliPerGpu, type TraceNode, type TraceTask } from "./openb.ts";
import type { TraceScheduler } from "./replay.ts";

/** A node's free resources during a replay. */
interface FreeNode {
  readonly model: string;
  cores: number;
  memoryMib: number;
  /** Free thousandths per GPU. */
  readonly gpus: Int32Array;
}

function freeNodes(nodes: readonly TraceNode[]): FreeNode[] {
  return nodes.map((n) => ({ model: n.model, cores: n.cpuMilli / 1000, memoryMib: n.memoryMib, gpus: new Int32Array(n.gpus).fill(milliPerGpu) }));
}

/** Whether `task` fits `node` now (model, cores, memory, `numGpu` GPUs with `gpuMilli` free each). */
export function fits(node: FreeNode, task: TraceTask): boolean {
  if (task.gpuSpec.length > 0 && !task.gpuSpec.includes(node.model)) return false;
  if (node.cores < task.cpuMilli / 1000 || node.memoryMib < task.memoryMib) return false;
  let room = 0;
  for (const free of node.gpus) if (free >= task.gpuMilli) room++;
  return room >= task.numGpu;
}

function take(node: FreeNode, task: TraceTask, gpus: readonly number[]): void {
  node.cores -= task.cpuMilli / 1000;
  node.memoryMib -= task.memoryMib;
  for (const g of gpus) node.gpus[g] = (node.gpus[g] as number) - task.gpuMilli;
}

/** The lowest `numGpu` GPU positions with `gpuMilli` free. */
function lowestGpus(node: FreeNode, task: TraceTask): number[] {
  const out: number[] = [];
  for (let g = 0; g < node.gpus.length && out.length < task.numGpu; g++) if ((node.gpus[g] as number) >= task.gpuMilli) out.push(g);
  return out;
}

/** The first node in trace order that fits, on its lowest GPUs that fit. */
export function createFirstFit(nodes: readonly TraceNode[]): TraceScheduler {
  const free = freeNodes(nodes);
  return {
    place(task) {
      for (const node of free) {
        if (!fits(node, task)) continue;
        take(node, task, lowestGpus(node, task));
        return true;
      }
      return false;
    },
  };
}

/** The artifact's maxima for normalising best-fit: 128 cores and 8 GPUs. */
const maxSpecCores = 128;
const maxSpecMilli = 8 * milliPerGpu;

/** The artifact's integer best-fit score (higher: less left after placing). */
export function bestFitScore(node: FreeNode, task: TraceTask): number {
  let gpuFree = 0;
  for (const free of node.gpus) gpuFree += free;
  const left = (0.5 * (node.cores - task.cpuMilli / 1000)) / maxSpecCores + (0.5 * (gpuFree - task.numGpu * task.gpuMilli)) / maxSpecMilli;
  return Math.trunc((1 - left) * 100);
}

/** The artifact's GPU choice: the tightest GPU for a shared task, the first fully free ones for whole GPUs. */
function bestFitGpus(node: FreeNode, task: TraceTask): number[] {
  if (task.numGpu === 0) return [];
  if (task.numGpu === 1 && task.gpuMilli < milliPerGpu) {
    let best = -1;
    for (let g = 0; g < node.gpus.length; g++) {
      const free = node.gpus[g] as number;
      if (free >= task.gpuMilli && (best === -1 || free < (node.gpus[best] as number))) best = g;
    }
    return [best];
  }
  return lowestGpus(node, task);
}

/** Best-fit as the FGD paper's artifact defines it (see the file comment); ties broken at random from `seed`. */
export function createBestFit(nodes: readonly TraceNode[], seed: string): TraceScheduler {
  const free = freeNodes(nodes);
  const random = mulberry32(hashString(`best-fit:${seed}`));
  return {
    place(task) {
      let best: FreeNode | undefined;
      let bestScore = -Infinity;
      let ties = 0;
      for (const node of free) {
        if (!fits(node, task)) continue;
        const score = bestFitScore(node, task);
        if (score > bestScore) {
          best = node;
          bestScore = score;
          ties = 1;
        } else if (score === bestScore) {
          // Reservoir sampling: each tied node ends up chosen with probability 1 / ties.
          ties++;
          if (random() * ties < 1) best = node;
        }
      }
      if (best === undefined) return false;
      take(best, task, bestFitGpus(best, task));
      return true;
    },
  };
}
