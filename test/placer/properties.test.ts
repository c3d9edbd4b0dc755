import assert from "node:assert/strict";
import fc from "fast-check";
import { chooseGpus, viewOf } from "../../src/placer/cycle-state.ts";
import { allowedTrustLevels, createPlacer, defaultWeights, demandProfile, fairOrder, placeUnits } from "../../src/placer/index.ts";
import { nodeBar } from "../../src/placer/node-rules.ts";
import { filterPlugins, gpuScarcity, leftOver, scorePlugins } from "../../src/placer/plugins/index.ts";
import { seededShuffle } from "../../src/placer/prng.ts";
import type { ScoreWeights } from "../../src/platform/config.ts";
import type { ReasonCode } from "../../src/placer/reasons.ts";
import { constrainsModels, modelPressure } from "../../src/placer/scarcity.ts";
import type { ClusterSnapshot, CycleContext, GpuView, NodeIsolation, NodeSnapshot, Placement, PlacementResult, UnitRequest } from "../../src/placer/types.ts";
import { gpu, unitWith } from "./builders.ts";

const trust = fc.constantFrom("community", "verified", "controlled" as const);
const gpuSizes = [8192, 12288, 16384, 24576, 49152, 81920];
const datasets = ["ds-1", "ds-2", "ds-3"];

const gpuModels = ["NVIDIA GeForce RTX 3090", "NVIDIA GeForce RTX 4090", "NVIDIA A100-SXM4-80GB", "NVIDIA H100 PCIe"];
const versions = ["7.5", "8.0", "8.6", "8.9", "8.10", "9.0", "11.8", "12.2", "12.10"];

const gpuArb = fc
  .record({
    vram: fc.constantFrom(...gpuSizes),
    usedPct: fc.integer({ min: 0, max: 100 }),
    name: fc.constantFrom(...gpuModels),
    // One in five GPUs reports no compute capability or CUDA version (an older agent).
    computeCapability: fc.option(fc.constantFrom(...versions.slice(0, 6)), { nil: undefined, freq: 5 }),
    cudaVersion: fc.option(fc.constantFrom(...versions.slice(6)), { nil: undefined, freq: 5 }),
  })
  .map(({ vram, usedPct, ...rest }) => ({ vram, free: Math.floor((vram * (100 - usedPct)) / 100), ...rest }));

const nodeArb = fc.record({
  trustLevel: trust,
  // Four in five nodes are schedulable, so most scenarios have somewhere to place.
  schedulable: fc.integer({ min: 0, max: 4 }).map((n) => n > 0),
  cpuCores: fc.integer({ min: 1, max: 32 }),
  cpuUsed: fc.integer({ min: 0, max: 32 }),
  memoryMb: fc.integer({ min: 1024, max: 65536 }),
  memUsed: fc.integer({ min: 0, max: 65536 }),
  diskFreeMb: fc.integer({ min: 0, max: 200_000 }),
  gpus: fc.array(gpuArb, { maxLength: 5 }),
  // Most agents tell no unit limit; some have 0 to 3 slots free.
  freeUnitSlots: fc.option(fc.integer({ min: 0, max: 3 }), { nil: undefined, freq: 2 }),
  cached: fc.subarray(datasets),
  reliability: fc.double({ min: 0, max: 1, noNaN: true }),
  // Mostly sandboxed; one in six without a sandbox, one in six unable to start it.
  isolation: fc.integer({ min: 0, max: 5 }).map((n) => (n < 4 ? "sandboxed" : n === 4 ? "none" : "unavailable") as NodeIsolation),
  // Half the nodes without owner controls; of the rest, one in six paused, one in six outside its window.
  owner: fc.option(
    fc.record({
      paused: fc.integer({ min: 0, max: 5 }).map((n) => n === 0),
      withinWindow: fc.integer({ min: 0, max: 5 }).map((n) => n > 0),
      reservedVramMb: fc.constantFrom(0, 0, 2048, 8192),
    }),
    { nil: undefined },
  ),
});

/** Random clusters: node ids are distinct but not in index order, so id order and input order differ. */
const clusterArb = fc
  .array(nodeArb, { maxLength: 12 })
  .chain((nodes) => fc.tuple(fc.constant(nodes), fc.shuffledSubarray(nodes.map((_, i) => i), { minLength: nodes.length })))
  .map(([nodes, perm]): ClusterSnapshot => ({
    nodes: nodes.map(
      (n, i): NodeSnapshot => ({
        id: `node-${String(perm[i]).padStart(2, "0")}`,
        trustLevel: n.trustLevel,
        schedulable: n.schedulable,
        cpuCores: n.cpuCores,
        freeCpuCores: Math.max(0, n.cpuCores - n.cpuUsed),
        memoryMb: n.memoryMb,
        freeMemoryMb: Math.max(0, n.memoryMb - n.memUsed),
        diskFreeMb: n.diskFreeMb,
        gpus: n.gpus.map((g, index) => ({
          ...gpu(index * 2, g.vram, g.free),
          name: g.name,
          ...(g.computeCapability === undefined ? {} : { computeCapability: g.computeCapability }),
          ...(g.cudaVersion === undefined ? {} : { cudaVersion: g.cudaVersion }),
        })),
        cachedDatasetIds: new Set(n.cached),
        reliability: n.reliability,
        isolation: n.isolation,
        ...(n.freeUnitSlots === undefined ? {} : { freeUnitSlots: n.freeUnitSlots }),
        // Spread: fast-check's records have no prototype, and a structured clone's do.
        ...(n.owner === undefined ? {} : { owner: { ...n.owner } }),
      }),
    ),
  }));

/** A value from `arb` one time in `n`, else undefined. */
function oneIn<T>(n: number, arb: fc.Arbitrary<T>): fc.Arbitrary<T | undefined> {
  return fc.oneof({ arbitrary: fc.constant(undefined), weight: n - 1 }, { arbitrary: arb, weight: 1 });
}

function unitsArb(nodeIds: string[]): fc.Arbitrary<UnitRequest[]> {
  const unit = fc.record({
    customerId: fc.constantFrom("cust-a", "cust-b", "cust-c"),
    kind: fc.constantFrom("cpu", "gpu" as const),
    vramMb: fc.constantFrom(1000, 6000, 8000, 12000, 16000, 20000, 24000, 40000, 80000, 90000),
    diskMb: fc.integer({ min: 0, max: 80_000 }),
    cpuCores: fc.integer({ min: 1, max: 8 }),
    memoryMb: fc.integer({ min: 256, max: 16384 }),
    sensitivity: fc.constantFrom("public", "low_sensitive", "high_sensitive" as const),
    datasetId: fc.constantFrom(...datasets),
    excludedNodeIds: nodeIds.length === 0 ? fc.constant([]) : fc.subarray(nodeIds, { maxLength: Math.min(3, nodeIds.length) }),
    readySinceMs: fc.integer({ min: 0, max: 5 }),
    // Mostly one GPU and no constraints, as today; some units ask for several GPUs or constrain them.
    gpuCount: oneIn(3, fc.constantFrom(1, 2, 3, 4, 8)),
    gpuModels: oneIn(4, fc.subarray(["4090", "a100", "H100", "RTX"], { minLength: 1 })),
    minComputeCapability: oneIn(4, fc.constantFrom("8.0", "8.9", "8.10")),
    minCudaVersion: oneIn(4, fc.constantFrom("12.2", "12.10")),
  });
  return fc.array(unit, { maxLength: 30 }).map((us) =>
    us.map(({ gpuCount, gpuModels, minComputeCapability, minCudaVersion, ...u }, i) =>
      unitWith({
        ...u,
        id: `unit-${String(i).padStart(2, "0")}`,
        vramMb: u.kind === "gpu" ? u.vramMb : 0,
        ...(gpuCount === undefined ? {} : { gpuCount }),
        ...(gpuModels === undefined ? {} : { gpuModels }),
        ...(minComputeCapability === undefined ? {} : { minComputeCapability }),
        ...(minCudaVersion === undefined ? {} : { minCudaVersion }),
      }),
    ),
  );
}

const scenarioArb = clusterArb.chain((snapshot) =>
  fc.record({
    snapshot: fc.constant(snapshot),
    units: unitsArb(snapshot.nodes.map((n) => n.id)),
    seed: fc.string({ maxLength: 12 }),
  }),
);

interface Residual {
  cpu: number;
  memory: number;
  disk: number;
  slots: number;
  gpus: Map<number, number>;
}

/** What is left on each node after the plan, computed independently of the placer. */
function residuals(snapshot: ClusterSnapshot, units: readonly UnitRequest[], result: PlacementResult): Map<string, Residual> {
  const left = new Map<string, Residual>(
    snapshot.nodes.map((n) => [
      n.id,
      {
        cpu: n.freeCpuCores,
        memory: n.freeMemoryMb,
        disk: n.diskFreeMb,
        slots: n.freeUnitSlots ?? Infinity,
        gpus: new Map(n.gpus.map((g) => [g.index, g.freeVramMb])),
      },
    ]),
  );
  const byId = new Map(units.map((u) => [u.id, u]));
  for (const p of result.placements) {
    const unit = byId.get(p.unitId);
    const r = left.get(p.nodeId);
    assert.ok(unit !== undefined && r !== undefined);
    r.cpu -= unit.cpuCores;
    r.memory -= unit.memoryMb;
    r.disk -= unit.diskMb;
    r.slots -= 1;
    if (unit.kind === "gpu") {
      assert.equal(p.gpuIndexes.length, unit.gpuCount ?? 1, `unit ${unit.id} got ${p.gpuIndexes.length} GPUs`);
      assert.deepEqual(p.gpuIndexes, [...new Set(p.gpuIndexes)].sort((a, b) => a - b), "GPU indexes are distinct and ascending");
      assert.equal(p.gpuIndex, p.gpuIndexes[0]);
      for (const index of p.gpuIndexes) {
        const free = r.gpus.get(index);
        assert.ok(free !== undefined, `unit ${unit.id} got GPU ${index}, which node ${p.nodeId} does not have`);
        r.gpus.set(index, free - unit.vramMb);
      }
    } else {
      assert.equal(p.gpuIndex, -1);
      assert.deepEqual(p.gpuIndexes, []);
    }
  }
  return left;
}

/** The VRAM a node's owner keeps on each GPU. */
const reserveOf = (node: NodeSnapshot): number => node.owner?.reservedVramMb ?? 0;

/** Whether the node takes units now at all (online, its owner lets it, its sandbox can start), and this unit's sensitivity. */
function takesNow(unit: UnitRequest, node: NodeSnapshot): boolean {
  const owner = node.owner ?? { paused: false, withinWindow: true };
  return (
    node.schedulable &&
    !owner.paused &&
    owner.withinWindow &&
    node.isolation !== "unavailable" &&
    (unit.sensitivity === "public" || node.isolation === "sandboxed")
  );
}

/** Whether a GPU is one the unit allows, read independently of the placer: model substring, then "major.minor" minimums. */
function gpuAllowed(unit: UnitRequest, g: GpuView): boolean {
  const atLeast = (have: string | undefined, min: string | undefined): boolean => {
    if (min === undefined) return true;
    if (have === undefined) return false;
    const [a = 0, b = 0] = have.split(".").map(Number);
    const [c = 0, d = 0] = min.split(".").map(Number);
    return a > c || (a === c && b >= d);
  };
  const models = unit.gpuModels ?? [];
  return (
    (models.length === 0 || models.some((m) => g.name.toLowerCase().includes(m.toLowerCase()))) &&
    atLeast(g.computeCapability, unit.minComputeCapability) &&
    atLeast(g.cudaVersion, unit.minCudaVersion)
  );
}

function fitsNow(unit: UnitRequest, node: NodeSnapshot, r: Residual): boolean {
  const gpusThatFit = node.gpus.filter((g) => gpuAllowed(unit, g) && (r.gpus.get(g.index) as number) - reserveOf(node) >= unit.vramMb).length;
  return (
    takesNow(unit, node) &&
    allowedTrustLevels(unit.sensitivity).includes(node.trustLevel) &&
    !unit.excludedNodeIds.includes(node.id) &&
    r.disk >= unit.diskMb &&
    r.cpu >= unit.cpuCores &&
    r.memory >= unit.memoryMb &&
    r.slots >= 1 &&
    (unit.kind === "cpu" || gpusThatFit >= (unit.gpuCount ?? 1))
  );
}

/** Whether a GPU's residual VRAM keeps its owner's reserve: placing never eats into it (a GPU nothing went to may already be short). */
function keepsReserve(node: NodeSnapshot, index: number, free: number): boolean {
  const before = node.gpus.find((g) => g.index === index)?.freeVramMb;
  return free === before || free - reserveOf(node) >= 0;
}

describe("placeUnits properties", () => {
  it("never over-commits a node: VRAM per GPU (less the owner's reserve), disk, cores and memory stay within what was free", () => {
    fc.assert(
      fc.property(scenarioArb, ({ snapshot, units, seed }) => {
        const result = placeUnits(snapshot, units, { seed });
        const nodes = new Map(snapshot.nodes.map((n) => [n.id, n]));
        for (const [id, r] of residuals(snapshot, units, result)) {
          assert.ok(r.cpu >= 0 && r.memory >= 0 && r.disk >= 0, `node ${id} over-committed: ${JSON.stringify(r)}`);
          for (const [index, free] of r.gpus) assert.ok(keepsReserve(nodes.get(id) as NodeSnapshot, index, free), `GPU ${index} of node ${id} over-committed`);
        }
      }),
      { numRuns: 300 },
    );
  });

  it("never breaks a tier rule, uses a node that takes nothing now (unschedulable, paused, outside its window, no sandbox for a sensitive unit) or an excluded node", () => {
    fc.assert(
      fc.property(scenarioArb, ({ snapshot, units, seed }) => {
        const nodes = new Map(snapshot.nodes.map((n) => [n.id, n]));
        const byId = new Map(units.map((u) => [u.id, u]));
        for (const p of placeUnits(snapshot, units, { seed }).placements) {
          const node = nodes.get(p.nodeId);
          const unit = byId.get(p.unitId);
          assert.ok(node !== undefined && unit !== undefined);
          assert.ok(allowedTrustLevels(unit.sensitivity).includes(node.trustLevel), `${unit.sensitivity} unit on ${node.trustLevel} node`);
          assert.ok(takesNow(unit, node), `${unit.sensitivity} unit on node ${JSON.stringify({ isolation: node.isolation, owner: node.owner })}`);
          assert.ok(!unit.excludedNodeIds.includes(node.id));
        }
      }),
      { numRuns: 300 },
    );
  });

  it("accounts for every unit once and for every node in each unplaced unit's reasons", () => {
    fc.assert(
      fc.property(scenarioArb, ({ snapshot, units, seed }) => {
        const result = placeUnits(snapshot, units, { seed });
        const seen = [...result.placements.map((p) => p.unitId), ...result.unplaced.map((u) => u.unitId)].sort();
        assert.deepEqual(seen, units.map((u) => u.id).sort());
        for (const u of result.unplaced) {
          const total = Object.values(u.reasons).reduce((a, b) => a + b, 0);
          assert.equal(total, snapshot.nodes.length);
        }
        for (const p of result.placements) assert.ok(p.score >= 0 && p.score <= 100);
      }),
      { numRuns: 300 },
    );
  });

  it("leaves no unit unplaced while a node could still take it after the cycle (the index skips nothing feasible)", () => {
    fc.assert(
      fc.property(scenarioArb, ({ snapshot, units, seed }) => {
        const result = placeUnits(snapshot, units, { seed });
        const left = residuals(snapshot, units, result);
        const byId = new Map(units.map((u) => [u.id, u]));
        for (const u of result.unplaced) {
          const unit = byId.get(u.unitId);
          assert.ok(unit !== undefined);
          for (const node of snapshot.nodes) {
            assert.ok(!fitsNow(unit, node, left.get(node.id) as Residual), `unit ${unit.id} left unplaced but fits ${node.id}`);
          }
        }
      }),
      { numRuns: 300 },
    );
  });

  it("is deterministic for the same seed, whatever the order of nodes and units, and leaves the snapshot alone", () => {
    fc.assert(
      fc.property(scenarioArb, fc.integer(), ({ snapshot, units, seed }, salt) => {
        const before = structuredClone(snapshot);
        const first = placeUnits(snapshot, units, { seed });
        assert.deepEqual(placeUnits(snapshot, units, { seed }), first);
        const rotate = <T>(xs: readonly T[]): T[] => {
          const k = xs.length === 0 ? 0 : Math.abs(salt) % xs.length;
          return [...xs.slice(k), ...xs.slice(0, k)].reverse();
        };
        assert.deepEqual(placeUnits({ nodes: rotate(snapshot.nodes) }, rotate(units), { seed }), first);
        assert.deepEqual(snapshot, before);
      }),
      { numRuns: 200 },
    );
  });
});

/**
 * The placer without indexes or a cap: every filter plugin on every node,
 * every feasible node scored (for a cpu unit only the feasible nodes without
 * a GPU when there are any) against the cycle's demand profile, ties to the
 * tighter fit and then by the seeded shuffle. The indexed placer must give
 * the same plan whenever the cap does not bite.
 */
function referencePlace(snapshot: ClusterSnapshot, units: readonly UnitRequest[], seed: string, w: ScoreWeights = defaultWeights): {
  placements: Placement[];
  unplaced: { unitId: string; reasons: Partial<Record<ReasonCode, number>>; unresolvable: boolean }[];
} {
  const nodes = snapshot.nodes.map((n) => ({ ...n, gpus: n.gpus.map((g) => ({ ...g })) }));
  const slots = new Map(nodes.map((n) => [n.id, n.freeUnitSlots ?? Infinity]));
  const rank = new Map(seededShuffle(nodes.map((n) => n.id).sort(), seed).map((id, i) => [id, i]));
  const fragmentationOn = (w.gpuFragmentation ?? 0) > 0;
  const profile = demandProfile(fairOrder(units));
  // GpuScarcity weighs in only when some ask constrains the model: the free VRAM per model of the nodes that take units.
  const scarcityOn = (w.gpuScarcity ?? 0) > 0 && constrainsModels(profile.asks ?? []);
  const free = new Map<string, number>();
  for (const node of snapshot.nodes.filter((n) => nodeBar(n) === undefined)) {
    viewOf(node).gpuFreeVramMb.forEach((f, pos) => {
      const name = (node.gpus[pos] as GpuView).name;
      free.set(name, (free.get(name) ?? 0) + Math.max(0, f));
    });
  }
  const cycle: CycleContext = scarcityOn ? { profile, modelPressure: modelPressure(profile.asks ?? [], free) } : { profile };
  const scored = scorePlugins.filter((p) => p !== gpuScarcity || scarcityOn);
  const placements: Placement[] = [];
  const unplaced: { unitId: string; reasons: Partial<Record<ReasonCode, number>>; unresolvable: boolean }[] = [];
  for (const unit of fairOrder(units)) {
    const reasons: Partial<Record<ReasonCode, number>> = {};
    let unresolvable = 0;
    let best: { node: NodeSnapshot; score: number; left: number } | undefined;
    const feasible: NodeSnapshot[] = [];
    for (const node of nodes) {
      const view = { ...viewOf(node), freeUnitSlots: slots.get(node.id) as number };
      const failed = filterPlugins.map((f) => f.filter(unit, view)).find((st) => st.code !== "success");
      if (failed !== undefined && "reason" in failed) {
        reasons[failed.reason] = (reasons[failed.reason] ?? 0) + 1;
        if (failed.code === "unresolvable") unresolvable++;
        continue;
      }
      feasible.push(node);
    }
    const gpuless = feasible.filter((n) => n.gpus.length === 0);
    for (const node of unit.kind === "cpu" && gpuless.length > 0 ? gpuless : feasible) {
      const view = { ...viewOf(node), freeUnitSlots: slots.get(node.id) as number };
      // A weight left out is 0: that score is off.
      const total = scored.reduce((a, p) => a + (w[p.weight] ?? 0) * p.score(unit, view, cycle), 0);
      const score = Math.round((total / scored.reduce((a, p) => a + (w[p.weight] ?? 0), 0)) * 1000) / 1000;
      // The GPUs compared are those the unit would get: with the fragmentation score on, chosen with the asks.
      const left = leftOver(unit, view, fragmentationOn ? cycle.profile.asks : undefined);
      if (
        best === undefined ||
        score > best.score ||
        (score === best.score && (left < best.left || (left === best.left && (rank.get(node.id) as number) < (rank.get(best.node.id) as number))))
      ) {
        best = { node, score, left };
      }
    }
    if (best === undefined) {
      unplaced.push({ unitId: unit.id, reasons, unresolvable: nodes.length > 0 && unresolvable === nodes.length });
      continue;
    }
    const node = best.node;
    const positions = chooseGpus({ ...viewOf(node), freeUnitSlots: slots.get(node.id) as number }, unit, fragmentationOn ? cycle.profile.asks : undefined);
    node.freeCpuCores -= unit.cpuCores;
    node.freeMemoryMb -= unit.memoryMb;
    node.diskFreeMb -= unit.diskMb;
    slots.set(node.id, (slots.get(node.id) as number) - 1);
    const gpuIndexes = positions.map((pos) => {
      const g = node.gpus[pos] as GpuView;
      g.freeVramMb -= unit.vramMb;
      return g.index;
    });
    gpuIndexes.sort((a, b) => a - b);
    placements.push({ unitId: unit.id, nodeId: node.id, gpuIndex: gpuIndexes[0] ?? -1, gpuIndexes, score: best.score });
  }
  return { placements, unplaced };
}

/** The snapshot after a plan's placements, built independently of the placer. */
function afterPlan(snapshot: ClusterSnapshot, units: readonly UnitRequest[], result: PlacementResult): ClusterSnapshot {
  const left = residuals(snapshot, units, result);
  return {
    nodes: snapshot.nodes.map((n) => {
      const r = left.get(n.id) as Residual;
      return {
        ...n,
        freeCpuCores: r.cpu,
        freeMemoryMb: r.memory,
        diskFreeMb: r.disk,
        ...(n.freeUnitSlots === undefined ? {} : { freeUnitSlots: r.slots }),
        gpus: n.gpus.map((g) => ({ ...g, freeVramMb: r.gpus.get(g.index) as number })),
      };
    }),
  };
}

/** The default weights with GpuScarcity on: its pressure comes from the free VRAM the long-lived placer keeps per model. */
const scarcityWeights: ScoreWeights = { ...defaultWeights, gpuScarcity: 0.5 };

describe("placeUnits against a full scan, and the long-lived placer", () => {
  it("gives exactly the plan of an index-free full scan when the cap does not bite", () => {
    fc.assert(
      fc.property(scenarioArb, ({ snapshot, units, seed }) => {
        const result = placeUnits(snapshot, units, { seed });
        const reference = referencePlace(snapshot, units, seed);
        assert.deepEqual(result.placements, reference.placements);
        assert.deepEqual(
          result.unplaced.map(({ unitId, reasons, unresolvable }) => ({ unitId, reasons, unresolvable })),
          reference.unplaced,
        );
      }),
      { numRuns: 300 },
    );
  });

  it("plans as the full scan with the plugins' fragmentation score, weighted to decide: the fused scorer and its pruning change nothing", () => {
    const cases: ScoreWeights[] = [
      { ...defaultWeights, gpuFragmentation: 1 },
      { binPack: 0.1, reliability: 0, dataLocality: 0, gpuFragmentation: 5 },
      { ...defaultWeights, gpuFragmentation: 0 },
    ];
    fc.assert(
      fc.property(scenarioArb, fc.constantFrom(...cases), ({ snapshot, units, seed }, weights) => {
        const result = placeUnits(snapshot, units, { seed, weights });
        const reference = referencePlace(snapshot, units, seed, weights);
        assert.deepEqual(result.placements, reference.placements);
      }),
      { numRuns: 300 },
    );
  });

  it("gives exactly the plan of an index-free full scan with the GPU scarcity score on", () => {
    const weights = scarcityWeights;
    fc.assert(
      fc.property(scenarioArb, ({ snapshot, units, seed }) => {
        assert.deepEqual(placeUnits(snapshot, units, { seed, weights }).placements, referencePlace(snapshot, units, seed, weights).placements);
      }),
      { numRuns: 300 },
    );
  });

  it("keeps every hard rule and leaves nothing feasible unplaced when the cap bites (maxScored 1 and 2)", () => {
    fc.assert(
      fc.property(scenarioArb, fc.constantFrom(1, 2), ({ snapshot, units, seed }, maxScored) => {
        const result = placeUnits(snapshot, units, { seed, maxScored });
        const left = residuals(snapshot, units, result);
        const byId = new Map(units.map((u) => [u.id, u]));
        const nodes = new Map(snapshot.nodes.map((n) => [n.id, n]));
        for (const [id, r] of left) {
          assert.ok(r.cpu >= 0 && r.memory >= 0 && r.disk >= 0, `node ${id} over-committed`);
          for (const [index, free] of r.gpus) assert.ok(keepsReserve(nodes.get(id) as NodeSnapshot, index, free), `a GPU of node ${id} over-committed`);
        }
        for (const u of result.unplaced) {
          const unit = byId.get(u.unitId) as UnitRequest;
          for (const node of snapshot.nodes) assert.ok(!fitsNow(unit, node, left.get(node.id) as Residual));
          assert.equal(Object.values(u.reasons).reduce((a, b) => a + b, 0), snapshot.nodes.length);
        }
      }),
      { numRuns: 300 },
    );
  });

  it("walks only the open GPU-less nodes for a cpu unit and still plans exactly what the full walk plans, cap biting or not", () => {
    // startCycle with the gpu units alone sets the same profile but no cpu ask, so every cpu unit takes the full walk.
    // Besides the scenario's nodes, four GPU-less copies of each that may take any unit but for their free
    // cores, memory and slots, three of them without a free core: many GPU-less nodes compete for the cpu
    // units, few of them open, and the walk's order decides which are scored.
    const gpuLessArb = scenarioArb.map(({ snapshot, units, seed }) => ({
      snapshot: {
        nodes: [
          ...snapshot.nodes,
          ...[0, 1, 2, 3].flatMap((copy) =>
            snapshot.nodes.map((n): NodeSnapshot => {
              const { owner: _owner, ...rest } = n;
              const host = { ...rest, id: `${n.id}-host-${copy}`, gpus: [], schedulable: true, isolation: "sandboxed" as const, trustLevel: "controlled" as const };
              return { ...host, diskFreeMb: 80_000 + n.diskFreeMb, freeCpuCores: copy === 0 ? n.freeCpuCores : 0 };
            }),
          ),
        ],
      },
      units,
      seed,
    }));
    fc.assert(
      fc.property(gpuLessArb, fc.constantFrom(1, 2, 3, 32), ({ snapshot, units, seed }, maxScored) => {
        const fullWalk = createPlacer(snapshot);
        const ordered = fairOrder(units);
        fullWalk.startCycle({ seed, maxScored }, ordered.filter((u) => u.kind === "gpu"));
        const decisions = ordered.map((u) => fullWalk.decide(u));
        const expected: PlacementResult = {
          placements: decisions.flatMap((d) => (d.placed ? [d.placement] : [])),
          unplaced: decisions.flatMap((d) => (d.placed ? [] : [d.unplaced])),
        };
        assert.deepEqual(createPlacer(snapshot).place(units, { seed, maxScored }), expected);
      }),
      { numRuns: 300 },
    );
  });

  it("plans a second cycle on a long-lived placer exactly as placeUnits on the snapshot after the first", () => {
    fc.assert(
      fc.property(scenarioArb, fc.integer({ min: 0, max: 30 }), fc.constantFrom(defaultWeights, scarcityWeights), ({ snapshot, units, seed }, split, weights) => {
        const first = units.slice(0, split);
        const second = units.slice(split);
        const placer = createPlacer(snapshot);
        const one = placer.place(first, { seed, weights });
        const two = placer.place(second, { seed: `${seed}-2`, weights });
        assert.deepEqual(one, placeUnits(snapshot, first, { seed, weights }));
        assert.deepEqual(two, placeUnits(afterPlan(snapshot, first, one), second, { seed: `${seed}-2`, weights }));
      }),
      { numRuns: 200 },
    );
  });

  it("plans exactly as placeUnits on a fresh snapshot after sync, whether only free resources changed or the cluster did", () => {
    fc.assert(
      fc.property(
        scenarioArb,
        fc.array(fc.nat({ max: 100 }), { minLength: 40, maxLength: 40 }),
        clusterArb,
        fc.boolean(),
        fc.constantFrom(defaultWeights, scarcityWeights),
        ({ snapshot, units, seed }, pcts, other, reshape, weights) => {
          const placer = createPlacer(snapshot);
          placer.place(units.slice(0, 10), { seed, weights });
          let k = 0;
          const pct = () => (pcts[k++ % pcts.length] as number) / 100;
          // Same nodes, trust, schedulability, isolation, owner's pause and window, and GPUs; free amounts
          // (and the owner's reserve) anywhere from empty to more than before; reliability and cached datasets
          // changed on some nodes.
          const next: ClusterSnapshot = reshape
            ? other
            : {
                nodes: snapshot.nodes.map((n) => ({
                  ...n,
                  reliability: pct(),
                  cachedDatasetIds: pct() < 0.5 ? n.cachedDatasetIds : new Set(datasets.filter(() => pct() < 0.5)),
                  freeCpuCores: Math.floor(n.cpuCores * pct()),
                  freeMemoryMb: Math.floor(n.memoryMb * pct()),
                  diskFreeMb: Math.floor(200_000 * pct()),
                  ...(n.freeUnitSlots === undefined ? {} : { freeUnitSlots: Math.floor(4 * pct()) }),
                  gpus: n.gpus.map((g) => ({ ...g, freeVramMb: Math.floor(g.vramMb * pct()) })),
                  ...(n.owner === undefined ? {} : { owner: { ...n.owner, reservedVramMb: Math.floor(8192 * pct()) } }),
                })),
              };
          const incremental = placer.sync(next);
          if (!reshape) assert.equal(incremental, true);
          const rest = units.slice(10);
          assert.deepEqual(placer.place(rest, { seed: `${seed}-2`, weights }), placeUnits(next, rest, { seed: `${seed}-2`, weights }));
          // And again from what that cycle reserved.
          assert.equal(placer.sync(next), true);
          assert.deepEqual(placer.place(units, { seed, weights }), placeUnits(next, units, { seed, weights }));
        },
      ),
      { numRuns: 200 },
    );
  });
});
