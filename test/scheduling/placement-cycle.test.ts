import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import type { ControlPlaneDeps } from "../../src/deps.ts";
import { placeUnits } from "../../src/placer/index.ts";
import type { ClusterSnapshot, NodeSnapshot } from "../../src/placer/types.ts";
import { NodeHistory } from "../../src/scheduling/node-history.ts";
import { createCyclePlacer, runPlacementCycle } from "../../src/scheduling/placement-cycle.ts";
import type { Database } from "../../src/store/database.ts";
import { openMigratedPGlite } from "../support/database-template.ts";
import { insertJob, insertNodes } from "../support/rows.ts";
import { gpu, nodeWith, unitWith } from "../placer/builders.ts";

function withFree(node: NodeSnapshot, vram: number[], cores: number): NodeSnapshot {
  return { ...node, freeCpuCores: cores, gpus: node.gpus.map((g, pos) => ({ ...g, freeVramMb: vram[pos] ?? g.freeVramMb })) };
}

describe("createCyclePlacer: the scheduling loop's long-lived placer", () => {
  const base: NodeSnapshot[] = [
    nodeWith({ id: "a", vram: [24576, 12288] }),
    nodeWith({ id: "b", gpus: [gpu(0, 81920, 30000)], trustLevel: "controlled" }),
    nodeWith({ id: "c", vram: [], freeCpuCores: 8 }),
  ];
  const units = (cycle: number) => [
    unitWith({ id: `u${cycle}-1`, vramMb: 8000, readySinceMs: 1 }),
    unitWith({ id: `u${cycle}-2`, customerId: "b", vramMb: 20000, sensitivity: "high_sensitive", readySinceMs: 2 }),
    unitWith({ id: `u${cycle}-3`, kind: "cpu", vramMb: 0, cpuCores: 4, readySinceMs: 3 }),
  ];

  it("plans every cycle exactly as placeUnits on that cycle's snapshot, as resources are taken and freed", () => {
    const placer = createCyclePlacer();
    const snapshots: ClusterSnapshot[] = [
      { nodes: base },
      // Some work started (less free), then finished (all free again), then a node's GPU filled up.
      { nodes: [withFree(base[0] as NodeSnapshot, [16576, 12288], 14), base[1] as NodeSnapshot, withFree(base[2] as NodeSnapshot, [], 4)] },
      { nodes: base },
      { nodes: [base[0] as NodeSnapshot, withFree(base[1] as NodeSnapshot, [0], 16), base[2] as NodeSnapshot] },
    ];
    snapshots.forEach((snapshot, cycle) => {
      const seed = `cycle-${cycle}`;
      assert.deepEqual(placer.plan(snapshot, units(cycle), seed), placeUnits(snapshot, units(cycle), { seed }), `cycle ${cycle}`);
    });
  });

  it("rebuilds when nodes join, leave or change trust, and still plans as placeUnits", () => {
    const placer = createCyclePlacer();
    const snapshots: ClusterSnapshot[] = [
      { nodes: base },
      { nodes: [...base, nodeWith({ id: "d", vram: [49152] })] },
      { nodes: base.slice(1) },
      { nodes: [{ ...(base[0] as NodeSnapshot), trustLevel: "controlled" }, ...base.slice(1)] },
      { nodes: [] },
    ];
    snapshots.forEach((snapshot, cycle) => {
      const seed = `cycle-${cycle}`;
      assert.deepEqual(placer.plan(snapshot, units(cycle), seed), placeUnits(snapshot, units(cycle), { seed }), `cycle ${cycle}`);
    });
  });

  it("plans with the configured weights (GPU_AGENT_PLACER_WEIGHTS) when given, as placeUnits would", () => {
    const placer = createCyclePlacer();
    const weights = { binPack: 0, reliability: 1, dataLocality: 0 };
    const nodes = [nodeWith({ id: "tight", vram: [8192], reliability: 0.5 }), nodeWith({ id: "roomy", vram: [81920], reliability: 1 })];
    const plan = placer.plan({ nodes }, [unitWith({ id: "u", vramMb: 8000 })], "s", weights);
    assert.deepEqual(plan, placeUnits({ nodes }, [unitWith({ id: "u", vramMb: 8000 })], { seed: "s", weights }));
    assert.equal(plan.placements[0]?.nodeId, "roomy", "reliability alone decides");
  });

  it("keeps each control plane's placer apart: two in one process never see each other's cluster", () => {
    const one = createCyclePlacer();
    const two = createCyclePlacer();
    const small: ClusterSnapshot = { nodes: [nodeWith({ id: "s", vram: [8192] })] };
    const big: ClusterSnapshot = { nodes: [nodeWith({ id: "b", vram: [81920] })] };
    one.plan(small, units(0), "x");
    const plan = two.plan(big, [unitWith({ id: "large", vramMb: 40000 })], "y");
    assert.deepEqual(plan.placements.map((p) => p.nodeId), ["b"]);
    assert.deepEqual(one.plan(small, [unitWith({ id: "large", vramMb: 40000 })], "z").placements, []);
  });
});

describe("runPlacementCycle's commit: nodes another replica holds", function () {
  this.timeout(60_000);
  let db: Database;
  const now = new Date("2030-01-01T00:00:00Z");
  const clock = { now: () => now.getTime(), sleep: async () => {} };

  beforeEach(async () => {
    db = await openMigratedPGlite();
    await db.query(`INSERT INTO scheduler_leases (name, term, holder, updated_at) VALUES ('placement', 1, 'this replica', now())`);
  });
  afterEach(async () => {
    await db.close();
  });

  /** One ready CPU unit and one online node last heard at `heardAt`. */
  async function readyUnitAndNode(heardAt: Date): Promise<{ unitId: string; nodeId: string }> {
    const { customerId, jobId } = await insertJob(db);
    const unitId = randomUUID();
    await db.query(
      `INSERT INTO compute_units (id, job_id, customer_id, name, kind, status, entrypoint, attempt, max_attempts, ready_at) VALUES ($1, $2, $3, 'train', 'cpu', 'ready', 'train.py', 1, 3, $4)`,
      [unitId, jobId, customerId, now],
    );
    const [nodeId] = (await insertNodes(db, 1, heardAt)) as [string];
    await db.query(`UPDATE nodes SET capabilities = $1`, [JSON.stringify({ cpuCores: 8, memoryMb: 16384, diskFreeMb: 100000, gpus: [] })]);
    return { unitId, nodeId };
  }

  /** Liveness as the leader sees a node held elsewhere: live by a set read a moment ago. */
  const heldElsewhere = { isLive: () => true, isLocallyLive: () => false, silentBefore: () => new Date(now.getTime() - 30_000) };
  const deps = () => ({ db, clock, config: { placerWeights: undefined } }) as unknown as ControlPlaneDeps;
  const statusOf = async (unitId: string) => (await db.query<{ status: string }>(`SELECT status FROM compute_units WHERE id = $1`, [unitId]))[0]?.status;

  it("assigns when the node's persisted heartbeat is within the grace period", async () => {
    const { unitId, nodeId } = await readyUnitAndNode(new Date(now.getTime() - 10_000));
    const result = await runPlacementCycle(deps(), 1, { liveness: heldElsewhere, history: new NodeHistory(clock), placer: createCyclePlacer() });
    assert.deepEqual(result.placed.map((p) => p.nodeId), [nodeId]);
    assert.equal(await statusOf(unitId), "assigned");
  });

  it("refuses, in the statement that assigns, a node whose heartbeat went silent since the set was read", async () => {
    const { unitId } = await readyUnitAndNode(new Date(now.getTime() - 31_000));
    const result = await runPlacementCycle(deps(), 1, { liveness: heldElsewhere, history: new NodeHistory(clock), placer: createCyclePlacer() });
    assert.deepEqual(result.placed, []);
    assert.equal(await statusOf(unitId), "ready");
  });

  it("does not look at the persisted heartbeat of a node whose live stream is here (its write is throttled)", async () => {
    const { unitId } = await readyUnitAndNode(new Date(now.getTime() - 31_000));
    const here = { ...heldElsewhere, isLocallyLive: () => true };
    const result = await runPlacementCycle(deps(), 1, { liveness: here, history: new NodeHistory(clock), placer: createCyclePlacer() });
    assert.equal(result.placed.length, 1);
    assert.equal(await statusOf(unitId), "assigned");
  });
});
