/**
 * The openb experiment (../shared/traces/openb/README.md): tasks arrive one
 * after another in a seeded shuffled order, extended by drawing more tasks
 * from the trace until arrived GPU demand reaches 130% of capacity, and never
 * leave; after each arrival the scheduler places it or not. The metric at
 * arrival level x is the GPU allocation rate (allocated GPU in thousandths, as
 * % of the cluster's GPUs) averaged over the arrivals at which arrived demand,
 * rounded, is x% of capacity.
 */
import { hashString, mulberry32, seededShuffle } from "../../src/placer/prng.ts";
import { taskGpuMilli, type TraceTask } from "./openb.ts";

/** Arrived GPU demand stops at this multiple of the cluster's GPU capacity. */
export const demandRatio = 1.3;

/**
 * The arrival order for one seed: the trace shuffled, then tasks drawn from
 * it at random (with replacement) until the next one would take arrived GPU
 * demand above `ratio` × capacity. A trace that already asks for more stops
 * at the same point (the paper's artifact drops random tasks until it fits,
 * which leaves a random subset in shuffled order: the same in distribution).
 */
export function arrivalOrder(tasks: readonly TraceTask[], seed: string, capacityMilli: number, ratio = demandRatio): TraceTask[] {
  if (tasks.length === 0) return [];
  const limit = ratio * capacityMilli;
  const order: TraceTask[] = [];
  let demand = 0;
  for (const task of seededShuffle(tasks, `openb:${seed}`)) {
    if (demand + taskGpuMilli(task) > limit) return order;
    demand += taskGpuMilli(task);
    order.push(task);
  }
  const draw = mulberry32(hashString(`openb-draw:${seed}`));
  for (;;) {
    const task = tasks[Math.floor(draw() * tasks.length)] as TraceTask;
    if (demand + taskGpuMilli(task) > limit) return order;
    demand += taskGpuMilli(task);
    order.push(task);
  }
}

/** A policy under test: told each arrival in turn, it places it (true) or not (false), never moving an earlier one. */
export interface TraceScheduler {
  place(task: TraceTask, arrival: number): boolean;
}

/** What a replay records per arrival: GPU demand arrived so far and GPU allocated, both in thousandths. */
export interface ReplayLog {
  arrivedMilli: Float64Array;
  allocatedMilli: Float64Array;
  /** Tasks placed. */
  placed: number;
}

/** Feeds `arrivals` to `scheduler` one by one and records demand and allocation after each. */
export function replay(arrivals: readonly TraceTask[], scheduler: TraceScheduler): ReplayLog {
  const arrivedMilli = new Float64Array(arrivals.length);
  const allocatedMilli = new Float64Array(arrivals.length);
  let arrived = 0;
  let allocated = 0;
  let placed = 0;
  arrivals.forEach((task, i) => {
    arrived += taskGpuMilli(task);
    if (scheduler.place(task, i)) {
      allocated += taskGpuMilli(task);
      placed++;
    }
    arrivedMilli[i] = arrived;
    allocatedMilli[i] = allocated;
  });
  return { arrivedMilli, allocatedMilli, placed };
}

/**
 * The allocation rate (% of capacity) at each arrival level (% of capacity,
 * rounded): the mean over the arrivals whose arrived demand rounds to that
 * level. Levels no arrival lands on are absent.
 */
export function allocationByLevel(log: ReplayLog, capacityMilli: number): Map<number, number> {
  const sums = new Map<number, { total: number; n: number }>();
  for (let i = 0; i < log.arrivedMilli.length; i++) {
    const level = Math.round((100 * (log.arrivedMilli[i] as number)) / capacityMilli);
    const rate = (100 * (log.allocatedMilli[i] as number)) / capacityMilli;
    const s = sums.get(level);
    if (s === undefined) sums.set(level, { total: rate, n: 1 });
    else {
      s.total += rate;
      s.n++;
    }
  }
  return new Map([...sums].map(([level, s]) => [level, s.total / s.n]));
}
