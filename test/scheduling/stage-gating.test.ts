/**
 * Stage gating in the placement cycle (src/scheduling/stage-gating.ts): no unit of a job starts while
 * another of its waiting stages has no capable node online, and the job says why (pending_reason);
 * once such a node is online the job's first stage is placed and the reason clears.
 */
import assert from "node:assert/strict";
import type { ControlPlaneDeps } from "../../src/deps.ts";
import { createJob } from "../../src/jobs/create-job.ts";
import { FakeClock } from "../../src/platform/clock.ts";
import { defaultAgents, defaultLimits, defaultRates } from "../../src/platform/config.ts";
import { NodeHistory } from "../../src/scheduling/node-history.ts";
import { createCyclePlacer, runPlacementCycle } from "../../src/scheduling/placement-cycle.ts";
import type { CycleState } from "../../src/scheduling/placement-cycle.ts";
import { gateReadyUnits } from "../../src/scheduling/stage-gating.ts";
import type { Database } from "../../src/store/database.ts";
import { openMigratedPGlite } from "../support/database-template.ts";
import { findJobView, listUnitsOfJob } from "../../src/store/jobs.ts";
import type { WaitingUnitNeedsRow } from "../../src/store/jobs.ts";
import { insertCustomerWithInputs } from "../support/billing-rows.ts";
import { insertNodes } from "../support/rows.ts";

describe("stage gating in the placement cycle", function () {
  this.timeout(60_000);
  let db: Database;
  const clock = new FakeClock();
  /** The nodes whose agent is connected now. */
  let live: Set<string>;
  let state: CycleState;

  beforeEach(async () => {
    db = await openMigratedPGlite();
    await db.query(`INSERT INTO scheduler_leases (name, term, holder, updated_at) VALUES ('placement', 1, 'this replica', now())`);
    live = new Set();
    state = { liveness: { isLive: (id) => live.has(id) }, history: new NodeHistory(clock), placer: createCyclePlacer() };
  });
  afterEach(async () => {
    await db.close();
  });

  const deps = () => ({ db, clock, config: { placerWeights: undefined } }) as unknown as ControlPlaneDeps;

  /** A node with one GPU of `vramMb`, online and connected, or enrolled but offline. */
  async function node(vramMb: number, online: boolean): Promise<string> {
    const [id] = (await insertNodes(db, 1)) as [string];
    const capabilities = { cpuCores: 16, memoryMb: 65536, diskFreeMb: 500_000, gpus: [{ index: 0, name: `GPU ${vramMb}`, vramMb }] };
    await db.query(`UPDATE nodes SET capabilities = $2, state = $3 WHERE id = $1`, [id, JSON.stringify(capabilities), online ? "online" : "unreachable"]);
    if (online) live.add(id);
    return id;
  }

  /** A job of the default plan (prepare cpu → train gpu → evaluate cpu) whose train asks `vramMb`. */
  async function job(vramMb: number): Promise<{ customerId: string; jobId: string }> {
    const c = await insertCustomerWithInputs(db, 10_000);
    const createDeps = { db, clock, config: { limits: defaultLimits, rates: defaultRates, agents: defaultAgents }, wakePlacer: () => {} };
    const created = await createJob(createDeps, c.customerId, {
      name: "gated",
      datasetId: c.datasetId,
      trainingPackageId: c.packageId,
      requiredVramMb: vramMb,
      requiredDiskMb: 1024,
      maxRuntimeSeconds: 600,
      sensitivity: "public",
      idempotencyKey: null,
    });
    return { customerId: c.customerId, jobId: created.job.id };
  }

  const unitsOf = async (jobId: string) => (await listUnitsOfJob(db, jobId)).map((u) => ({ name: u.name, status: u.status, node: u.node_id, why: u.unschedulable_reason }));
  const debits = async () => (await db.query<{ n: number }>(`SELECT count(*)::int AS n FROM ledger_entries WHERE kind = 'debit'`))[0]!.n;

  it("holds prepare while the only 80 GB node is offline, charges nothing and says why; places it once that node is online", async () => {
    const small = await node(24576, true);
    const big = await node(81920, false);
    const { customerId, jobId } = await job(80000);

    const held = await runPlacementCycle(deps(), 1, state);
    assert.deepEqual(held.placed, []);
    const [prepare] = await unitsOf(jobId);
    assert.equal(prepare?.status, "ready");
    assert.match(prepare!.why, /held until a node that can run stage "train" of this job is online/);
    assert.equal(await debits(), 0);
    const waiting = (await findJobView(db, customerId, jobId))!;
    assert.equal(waiting.status, "queued");
    assert.equal(
      waiting.pending_reason,
      `stage "train" waits for a capable node to come online (no online node can run it: it needs 1 GPU with 80000 MB VRAM; the largest on any node is 24576 MB (node ${small.slice(0, 8)}…, GPU 24576))`,
    );

    await db.query(`UPDATE nodes SET state = 'online' WHERE id = $1`, [big]);
    live.add(big);
    const placed = await runPlacementCycle(deps(), 1, state);
    assert.equal(placed.placed.length, 1);
    assert.equal((await unitsOf(jobId))[0]?.status, "assigned");
    assert.equal((await findJobView(db, customerId, jobId))!.pending_reason, "", "the reason clears once nothing waits for a node");
  });

  it("gates each job on its own stages: another job whose stages all have a node online is placed in the same cycle", async () => {
    await node(24576, true);
    await node(81920, false);
    const gated = await job(80000);
    const free = await job(16000);
    const result = await runPlacementCycle(deps(), 1, state);
    assert.equal(result.placed.length, 1);
    assert.equal((await unitsOf(free.jobId))[0]?.status, "assigned");
    assert.equal((await unitsOf(gated.jobId))[0]?.status, "ready");
  });

  it("says no node is online when none is", async () => {
    await node(81920, false);
    const { customerId, jobId } = await job(8000);
    await runPlacementCycle(deps(), 1, state);
    assert.equal((await findJobView(db, customerId, jobId))!.pending_reason, 'stage "prepare" waits for a capable node to come online (no node is online)');
  });
});

describe("gateReadyUnits", () => {
  const needs = (job: string, name: string, kind: "cpu" | "gpu", vram: number): WaitingUnitNeedsRow => ({
    job_id: job,
    name,
    kind,
    required_vram_mb: vram,
    required_disk_mb: 1024,
    required_cpu_cores: 1,
    required_memory_mb: 512,
    required_gpu_count: kind === "gpu" ? 1 : 0,
    gpu_models: [],
    min_compute_capability: "",
    min_cuda_version: "",
    sensitivity: "public",
  });
  const online = [{ id: "n1", trustLevel: "controlled" as const, isolation: "sandboxed" as const, cpuCores: 8, memoryMb: 16384, diskMb: 100_000, gpus: [{ name: "RTX", vramMb: 24576 }] }];

  it("offers the blocked stage itself to the placer (which then says why in its own words) and holds the job's other ready units", () => {
    const ready = [
      { id: "u-prep", job_id: "j", name: "prep" },
      { id: "u-train", job_id: "j", name: "train" },
    ];
    const decision = gateReadyUnits(ready, [needs("j", "prep", "cpu", 0), needs("j", "train", "gpu", 80000)], online);
    assert.deepEqual([...decision.heldUnits.keys()], ["u-prep"]);
    assert.match(decision.jobReasons.get("j")!, /^stage "train" waits for a capable node to come online/);
  });

  it("holds nothing when every waiting stage has a capable node online", () => {
    const decision = gateReadyUnits([{ id: "u", job_id: "j", name: "prep" }], [needs("j", "prep", "cpu", 0), needs("j", "train", "gpu", 16000)], online);
    assert.deepEqual([decision.heldUnits.size, decision.jobReasons.size], [0, 0]);
  });
});
