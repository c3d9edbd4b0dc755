/**
 * Seeded generator of home clusters and unit mixes for the placer benchmark.
 * Every draw comes from one mulberry32 stream, so a (seed, size) pair always
 * gives the same cluster and units.
 */
import { hashString, mulberry32 } from "../../src/placer/prng.ts";
import type { GpuView, NodeSnapshot, Sensitivity, TrustLevel, UnitRequest } from "../../src/placer/types.ts";

/** A seeded source of draws. */
export interface Rng {
  /** Uniform in [0, 1). */
  next(): number;
  /** Uniform integer in [lo, hi]. */
  int(lo: number, hi: number): number;
  /** One of `choices`, drawn by weight. */
  pick<T>(choices: readonly (readonly [T, number])[]): T;
}

/** A seeded {@link Rng}. */
export function rngOf(seed: string): Rng {
  const next = mulberry32(hashString(seed));
  return {
    next,
    int: (lo, hi) => lo + Math.floor(next() * (hi - lo + 1)),
    pick(choices) {
      const total = choices.reduce((a, [, w]) => a + w, 0);
      let r = next() * total;
      for (const [value, w] of choices) {
        r -= w;
        if (r < 0) return value;
      }
      return (choices[choices.length - 1] as readonly [never, number])[0];
    },
  };
}

const gib = 1024;

/** GPU sizes (MB) by share of nodes: many small consumer cards, few data-centre ones. */
export const gpuMix = [
  [8 * gib, 28],
  [12 * gib, 26],
  [16 * gib, 20],
  [24 * gib, 16],
  [48 * gib, 7],
  [80 * gib, 3],
] as const;

/** GPUs per node by share: some cpu-only boxes, mostly one card, some multi-GPU rigs. */
const gpuCountMix = [
  [0, 6],
  [1, 66],
  [2, 18],
  [3, 4],
  [4, 6],
] as const;

const trustMix = [
  ["community", 55],
  ["verified", 30],
  ["controlled", 15],
] as const satisfies readonly (readonly [TrustLevel, number])[];

/** VRAM asks (MB) of gpu units by share: skewed to small fine-tunes, with a tail of large ones. */
export const vramMix = [
  [1000, 20],
  [2000, 26],
  [3000, 16],
  [4000, 12],
  [6000, 9],
  [8000, 6],
  [12000, 4.5],
  [16000, 2],
  [24000, 1.2],
  [40000, 0.6],
  [70000, 0.3],
] as const;

const sensitivityMix = [
  ["public", 75],
  ["low_sensitive", 17],
  ["high_sensitive", 8],
] as const satisfies readonly (readonly [Sensitivity, number])[];

/** A cluster of `count` home nodes; ids are random so id order says nothing about size or trust. */
export function generateNodes(rng: Rng, count: number, datasets: number): NodeSnapshot[] {
  const nodes: NodeSnapshot[] = [];
  for (let i = 0; i < count; i++) {
    const gpuCount = rng.pick(gpuCountMix);
    const size = rng.pick(gpuMix);
    const gpus: GpuView[] = [];
    for (let g = 0; g < gpuCount; g++) {
      // One card in five is partly busy with work placed in an earlier cycle.
      const used = rng.next() < 0.2 ? Math.floor((size * rng.int(10, 50)) / 100) : 0;
      gpus.push({ index: g, name: `gpu-${size}`, vramMb: size, freeVramMb: size - used });
    }
    const cpuCores = rng.pick([[8, 20], [12, 20], [16, 30], [24, 15], [32, 15]] as const);
    const memoryMb = rng.pick([[16, 15], [32, 35], [64, 35], [128, 15]] as const) * gib;
    const cached = new Set<string>();
    for (let d = rng.int(0, 3); d > 0; d--) cached.add(`ds-${rng.int(0, datasets - 1)}`);
    nodes.push({
      id: `node-${Math.floor(rng.next() * 0xffffffff).toString(16).padStart(8, "0")}-${i}`,
      trustLevel: rng.pick(trustMix),
      schedulable: rng.next() < 0.97,
      cpuCores,
      freeCpuCores: cpuCores - (rng.next() < 0.2 ? rng.int(1, Math.floor(cpuCores / 4)) : 0),
      memoryMb,
      freeMemoryMb: memoryMb - (rng.next() < 0.2 ? rng.int(1, 4) * gib : 0),
      // Log-uniform 100 GB .. 2 TB free.
      diskFreeMb: Math.floor(100_000 * Math.pow(20, rng.next())),
      gpus,
      cachedDatasetIds: cached,
      reliability: 0.7 + 0.3 * rng.next(),
      isolation: "sandboxed",
    });
  }
  return nodes;
}

/**
 * `count` ready units from Zipf-distributed customers (a few big ones, a long
 * tail). Units come in jobs of 1..8 replicas sharing one shape; two in five
 * are cpu units; one in fifty is a retry that excludes a node. `readySinceMs`
 * increases with the index, so cycles can take them in arrival order.
 */
export function generateUnits(rng: Rng, count: number, nodes: readonly NodeSnapshot[], datasets: number): UnitRequest[] {
  const customers = Math.max(3, Math.floor(count / 50));
  // Zipf(1) weights over customers.
  const customerMix = Array.from({ length: customers }, (_, c) => [`cust-${c}`, 1 / (c + 1)] as const);
  const units: UnitRequest[] = [];
  let job = 0;
  while (units.length < count) {
    const customerId = rng.pick(customerMix);
    const sensitivity = rng.pick(sensitivityMix);
    const datasetId = `ds-${rng.int(0, datasets - 1)}`;
    const replicas = Math.min(count - units.length, rng.pick([[1, 50], [2, 20], [4, 20], [8, 10]] as const));
    const gpu = rng.next() < 0.6;
    const shape = gpu
      ? {
          kind: "gpu" as const,
          vramMb: rng.pick(vramMix),
          cpuCores: rng.pick([[1, 60], [2, 35], [4, 5]] as const),
          memoryMb: rng.pick([[2, 40], [4, 35], [8, 25]] as const) * gib,
          diskMb: rng.int(2, 40) * 1000,
        }
      : {
          kind: "cpu" as const,
          vramMb: 0,
          cpuCores: rng.pick([[1, 70], [2, 30]] as const),
          memoryMb: rng.pick([[512, 40], [1024, 30], [4096, 30]] as const),
          diskMb: rng.int(1, 20) * 1000,
        };
    for (let r = 0; r < replicas; r++) {
      const i = units.length;
      const retry = rng.next() < 0.02 && nodes.length > 0;
      units.push({
        id: `unit-${String(i).padStart(7, "0")}`,
        jobId: `job-${job}`,
        customerId,
        ...shape,
        sensitivity,
        datasetId,
        excludedNodeIds: retry ? [(nodes[rng.int(0, nodes.length - 1)] as NodeSnapshot).id] : [],
        readySinceMs: 1_700_000_000_000 + i,
      });
    }
    job++;
  }
  return units;
}
