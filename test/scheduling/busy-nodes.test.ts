/**
 * Busy is not broken (issue 15 point 4): a node that answered an assignment `Rejected{busy}` is held full
 * for a short, bounded time, then takes the unit again; the unit keeps its place in its customer's queue.
 * Against a real (in-memory PGlite) database, through the placement cycle the leader runs.
 */
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { busyHoldMs, hasRoomAgain, maxBusyHoldMs } from "../../src/agent-streams/busy-nodes.ts";
import type { ControlPlaneDeps } from "../../src/deps.ts";
import { applyRejected } from "../../src/jobs/lifecycle.ts";
import { NodeHistory } from "../../src/scheduling/node-history.ts";
import { NodeSnapshotMemo } from "../../src/scheduling/node-snapshots.ts";
import { createCyclePlacer, runPlacementCycle } from "../../src/scheduling/placement-cycle.ts";
import type { Database } from "../../src/store/database.ts";
import { openMigratedPGlite } from "../support/database-template.ts";
import { listOnlineNodes, releaseNodeBusy } from "../../src/store/nodes.ts";
import { assignReadyUnitsUnderTerm } from "../../src/store/placement.ts";
import { insertJob, insertNodes } from "../support/rows.ts";

const t0 = new Date("2030-01-01T00:00:00Z").getTime();
const holdMs = 5000;

describe("a node that answered busy", function () {
  this.timeout(60_000);
  let db: Database;
  let nowMs = t0;
  const clock = { now: () => nowMs, sleep: async () => {} };
  let customerId: string;
  let jobId: string;
  let nodeId: string;

  beforeEach(async () => {
    nowMs = t0;
    db = await openMigratedPGlite();
    await db.query(`INSERT INTO scheduler_leases (name, term, holder, updated_at) VALUES ('placement', 1, 'this replica', now())`);
    ({ customerId, jobId } = await insertJob(db));
    [nodeId] = (await insertNodes(db, 1, new Date(t0))) as [string];
    await db.query(`UPDATE nodes SET capabilities = $1`, [JSON.stringify({ cpuCores: 8, memoryMb: 16384, diskFreeMb: 100000, gpus: [] })]);
  });
  afterEach(async () => {
    await db.close();
  });

  /** A ready CPU unit of the job, ready since `readyAtMs`. */
  async function readyUnit(name: string, readyAtMs: number): Promise<string> {
    const id = randomUUID();
    await db.query(
      `INSERT INTO compute_units (id, job_id, customer_id, name, kind, status, entrypoint, attempt, max_attempts, ready_at, required_gpu_count)
       VALUES ($1, $2, $3, $4, 'cpu', 'ready', 'train.py', 1, 3, $5, 0)`,
      [id, jobId, customerId, name, new Date(readyAtMs)],
    );
    return id;
  }

  const here = { isLive: () => true, isLocallyLive: () => true };
  const deps = () => ({ db, clock, config: { placerWeights: undefined } }) as unknown as ControlPlaneDeps;
  /** One leader cycle at `atMs`: the units it placed. */
  const cycleAt = async (atMs: number) => {
    nowMs = atMs;
    const result = await runPlacementCycle(deps(), 1, { liveness: here, history: new NodeHistory(clock), placer: createCyclePlacer() });
    return result.placed.map((p) => p.unitId);
  };
  /** The agent turns the unit down as busy at `atMs`; the node is held full for `holdMs`. */
  const rejectBusy = async (unitId: string, atMs: number) => {
    nowMs = atMs;
    return applyRejected(db, nodeId, { unitId, attempt: 1 }, "its owner uses the GPU's VRAM", new Date(atMs), { busy: true, holdUntil: new Date(atMs + holdMs) });
  };
  const readyAtOf = async (unitId: string) =>
    (await db.query<{ ready_at: Date }>(`SELECT ready_at FROM compute_units WHERE id = $1`, [unitId]))[0]!.ready_at.getTime();

  it("is offered the unit again only once its hold has run out", async () => {
    const unitId = await readyUnit("train", t0);
    assert.deepEqual(await cycleAt(t0), [unitId]);
    await rejectBusy(unitId, t0 + 100);
    for (const at of [t0 + 600, t0 + 100 + holdMs - 1]) assert.deepEqual(await cycleAt(at), [], `a cycle ${at - t0} ms in`);
    assert.deepEqual(await cycleAt(t0 + 100 + holdMs), [unitId]);
  });

  it("is offered the unit again as soon as its hold is released (a unit ended there, or its owner freed the VRAM)", async () => {
    const unitId = await readyUnit("train", t0);
    await cycleAt(t0);
    await rejectBusy(unitId, t0 + 100);
    assert.deepEqual(await cycleAt(t0 + 600), []);
    await releaseNodeBusy(db, nodeId);
    assert.deepEqual(await cycleAt(t0 + 700), [unitId]);
  });

  it("is refused by the commit while held, even to a plan made before the busy answer", async () => {
    const unitId = await readyUnit("train", t0);
    await cycleAt(t0);
    await rejectBusy(unitId, t0 + 100);
    const stalePlan = { unitId, nodeId, gpuIndex: -1, assignmentId: randomUUID(), trustLevels: ["controlled"] as const, nodeLocallyLive: true, sandboxRequired: false };
    const commit = (atMs: number) => db.transaction((tx) => assignReadyUnitsUnderTerm(tx, 1, [stalePlan], new Date(0), new Date(atMs)));
    assert.deepEqual(await commit(t0 + 600), []);
    assert.deepEqual((await commit(t0 + 100 + holdMs))?.map((p) => p.unitId), [unitId]);
  });

  it("gets the unit back ahead of a younger unit of the same customer: the unit keeps its place", async () => {
    await db.query(`UPDATE nodes SET max_units = 1 WHERE id = $1`, [nodeId]);
    const older = await readyUnit("older", t0);
    const younger = await readyUnit("younger", t0 + 50);
    assert.deepEqual(await cycleAt(t0 + 60), [older]);
    await rejectBusy(older, t0 + 100);
    assert.equal(await readyAtOf(older), t0, "its readiness time is the one it had");
    assert.deepEqual(await cycleAt(t0 + 100 + holdMs), [older]);
  });

  it("turns full in the leader's kept snapshots and free again when the hold runs out, with no other change", async () => {
    const unitId = await readyUnit("train", t0);
    await cycleAt(t0);
    await rejectBusy(unitId, t0 + 100);
    const memo = new NodeSnapshotMemo();
    const rows = await listOnlineNodes(db);
    const fleet = { rows, row: (id: string) => rows.find((r) => r.id === id) };
    const inputs = (atMs: number) => ({ held: new Map(), datasets: new Map(), isLive: () => true, reliability: () => 1, nowMs: atMs });
    const slots = (atMs: number, changed: ReadonlySet<string> | "all") => memo.snapshots(fleet, changed, inputs(atMs))[0]?.freeUnitSlots;
    assert.equal(slots(t0 + 600, "all"), 0);
    assert.equal(slots(t0 + 100 + holdMs, new Set()), undefined, "no limit told, so no slot count once the hold is over");
  });
});

describe("busyHoldMs and hasRoomAgain", () => {
  it("holds a busy node for the heartbeat interval, at most 10 s", () => {
    assert.deepEqual([1, 5, 10, 60].map(busyHoldMs), [1000, 5000, 10_000, maxBusyHoldMs]);
  });

  const gpus = [
    { index: 0, vramMb: 24_576 },
    { index: 1, vramMb: 24_576 },
  ];
  const cases: { what: string; used: number[]; asked?: [number, number][]; reserved?: number; need: { gpuIndexes: number[]; vramMb: number }; room: boolean }[] = [
    { what: "the owner still holds most of the GPU", used: [20_000, 0], need: { gpuIndexes: [0], vramMb: 8000 }, room: false },
    { what: "the owner freed the GPU", used: [1000, 0], need: { gpuIndexes: [0], vramMb: 8000 }, room: true },
    { what: "the use is the node's own unit's, which asked for it", used: [16_000, 0], asked: [[0, 16_000]], need: { gpuIndexes: [0], vramMb: 8000 }, room: true },
    { what: "the reserve leaves too little", used: [0, 0], reserved: 20_000, need: { gpuIndexes: [0], vramMb: 8000 }, room: false },
    { what: "one GPU of a two-GPU unit is still the owner's", used: [0, 20_000], need: { gpuIndexes: [0, 1], vramMb: 8000 }, room: false },
    { what: "the unit asks no VRAM (it was the unit limit or the owner's pause)", used: [24_576, 24_576], need: { gpuIndexes: [], vramMb: 0 }, room: true },
  ];
  for (const c of cases) {
    it(`says ${c.room ? "room" : "no room"} when ${c.what}`, () => {
      const measured = c.used.map((vramUsedMb, index) => ({ index, vramUsedMb, utilization: 0 }) as never);
      assert.equal(hasRoomAgain(c.need, measured, gpus, c.reserved ?? 0, new Map(c.asked ?? [])), c.room);
    });
  }
});
