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

/** Share of GPU nodes that are 8-GPU servers instead (drawn from the facts stream, see generateNodes). */
const eightGpuShare = 0.01;

/** Models per GPU size (MB), by share, with their compute capability: what an agent reports. */
const modelMix: ReadonlyMap<number, readonly (readonly [{ name: string; computeCapability: string }, number])[]> = new Map([
  [8 * 1024, [[{ name: "NVIDIA GeForce RTX 3070", computeCapability: "8.6" }, 60], [{ name: "NVIDIA GeForce RTX 2080", computeCapability: "7.5" }, 40]]],
  [12 * 1024, [[{ name: "NVIDIA GeForce RTX 3060", computeCapability: "8.6" }, 70], [{ name: "NVIDIA GeForce RTX 2080 Ti", computeCapability: "7.5" }, 30]]],
  [16 * 1024, [[{ name: "NVIDIA GeForce RTX 4060 Ti", computeCapability: "8.9" }, 60], [{ name: "Tesla T4", computeCapability: "7.5" }, 40]]],
  [24 * 1024, [[{ name: "NVIDIA GeForce RTX 3090", computeCapability: "8.6" }, 50], [{ name: "NVIDIA GeForce RTX 4090", computeCapability: "8.9" }, 50]]],
  [48 * 1024, [[{ name: "NVIDIA RTX A6000", computeCapability: "8.6" }, 100]]],
  [80 * 1024, [[{ name: "NVIDIA A100-SXM4-80GB", computeCapability: "8.0" }, 70], [{ name: "NVIDIA H100 PCIe", computeCapability: "9.0" }, 30]]],
]);

/** The highest CUDA version a node's driver supports, by share (one in twenty older agents do not say). */
const cudaMix = [
  ["11.8", 15],
  ["12.2", 35],
  ["12.4", 45],
  [undefined, 5],
] as const;

/**
 * One agent in five tells a unit limit (`--max-units`), set by its owner to half its cores; it already
 * runs 0 to 2 units, so it has that much less free. The others tell none.
 */
const limitedShare = 0.2;

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

/** A multi-GPU unit asks at most 12 GB per GPU (data parallel over smaller cards): a larger draw is drawn again from the lower half. */
function perGpuAsk(drawn: number, gpuCount: number, facts: Rng): number {
  return gpuCount === 1 || drawn <= 12_000 ? drawn : facts.pick(vramMix.slice(0, 7));
}

/**
 * GPUs per gpu unit, by share: multi-GPU units carry about 7 % of the GPUs asked for, as multi-GPU
 * tasks carry 7.3 % of the GPU demand of the openb trace's default workload.
 */
const gpuCountAskMix = [
  [1, 97.5],
  [2, 1.5],
  [4, 0.75],
  [8, 0.25],
] as const;

/** GPU constraints of gpu jobs, by share: most take any GPU. */
const constraintMix = [
  [{}, 80],
  [{ gpuModels: ["4090", "3090"] }, 4],
  [{ gpuModels: ["A100", "H100"] }, 2],
  [{ minComputeCapability: "8.0" }, 6],
  [{ minComputeCapability: "8.9" }, 2],
  [{ minCudaVersion: "12.2" }, 4],
  [{ gpuModels: ["RTX"], minCudaVersion: "12.4" }, 2],
] as const satisfies readonly (readonly [Partial<UnitRequest>, number])[];

const sensitivityMix = [
  ["public", 75],
  ["low_sensitive", 17],
  ["high_sensitive", 8],
] as const satisfies readonly (readonly [Sensitivity, number])[];

/**
 * A cluster of `count` home nodes; ids are random so id order says nothing about size or trust. What
 * issue 15 added (GPU models, compute capabilities, CUDA versions, 8-GPU servers, unit limits) is drawn
 * from a second stream, `facts`, so the rest of the cluster is the one earlier figures were measured on.
 */
export function generateNodes(rng: Rng, count: number, datasets: number, facts: Rng = rngOf("gpu-facts")): NodeSnapshot[] {
  const nodes: NodeSnapshot[] = [];
  for (let i = 0; i < count; i++) {
    const drawn = rng.pick(gpuCountMix);
    const size = rng.pick(gpuMix);
    const model = facts.pick(modelMix.get(size) ?? []);
    const cuda = facts.pick(cudaMix);
    const gpuCount = drawn > 0 && facts.next() < eightGpuShare ? 8 : drawn;
    const gpus: GpuView[] = [];
    for (let g = 0; g < gpuCount; g++) {
      // One card in five is partly busy with work placed in an earlier cycle.
      const from = g < drawn ? rng : facts;
      const used = from.next() < 0.2 ? Math.floor((size * from.int(10, 50)) / 100) : 0;
      gpus.push({
        index: g,
        name: model.name,
        uuid: `GPU-${i}-${g}`,
        vramMb: size,
        freeVramMb: size - used,
        computeCapability: model.computeCapability,
        ...(cuda === undefined ? {} : { cudaVersion: cuda }),
      });
    }
    const cpuCores = rng.pick([[8, 20], [12, 20], [16, 30], [24, 15], [32, 15]] as const);
    const slots = facts.next() < limitedShare ? Math.max(0, cpuCores / 2 - facts.int(0, 2)) : undefined;
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
      ...(slots === undefined ? {} : { freeUnitSlots: slots }),
    });
  }
  return nodes;
}

/**
 * `count` ready units from Zipf-distributed customers (a few big ones, a long
 * tail). Units come in jobs of 1..8 replicas sharing one shape; two in five
 * are cpu units; one in fifty is a retry that excludes a node. A gpu job asks
 * for 2, 4 or 8 GPUs of one node one time in forty, and one in five constrains
 * its GPUs (model allow-list, lowest compute capability or CUDA version);
 * those draws come from `facts`, so the units are otherwise the ones earlier
 * figures were measured on. `readySinceMs` increases with the index, so
 * cycles can take them in arrival order.
 */
export function generateUnits(rng: Rng, count: number, nodes: readonly NodeSnapshot[], datasets: number, facts: Rng = rngOf("gpu-needs")): UnitRequest[] {
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
    const gpuCount = facts.pick(gpuCountAskMix);
    const constraint = facts.pick(constraintMix);
    const shape = gpu
      ? {
          kind: "gpu" as const,
          ...(gpuCount === 1 ? {} : { gpuCount }),
          ...constraint,
          // A multi-GPU job asks for per-GPU VRAM from the lower half of the mix (data parallel over smaller cards).
          vramMb: perGpuAsk(rng.pick(vramMix), gpuCount, facts),
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
