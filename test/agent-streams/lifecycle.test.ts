/**
 * The unit state machine against a real (in-memory PGlite) database: a late
 * Finished of an old attempt changes nothing, only the customer's code uses
 * up its attempts, attempts lost to nodes are re-placed at no cost within
 * their own budget, and each unit is debited once.
 */
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import type { FinishOutcome } from "../../src/jobs/lifecycle.ts";
import { applyAccepted, applyFinished, applyRejected, maxNodeFailures, requeueUnitsOfNode, takeBackSilentNode } from "../../src/jobs/lifecycle.ts";
import { defaultRates } from "../../src/platform/config.ts";
import type { Database } from "../../src/store/database.ts";
import { openMigratedPGlite } from "../support/database-template.ts";
import { insertJob, insertNodes } from "../support/rows.ts";
import { readNodeAttemptCounts, readNodesHoldingDatasets } from "../../src/store/nodes.ts";
import { NodeHistory, nodeReliability } from "../../src/scheduling/node-history.ts";
import { readSnapshot } from "../../src/scheduling/placement-cycle.ts";

const now = new Date("2030-01-01T00:00:00Z");

interface Fixture {
  customerId: string;
  jobId: string;
  unitId: string;
  nodes: string[];
}

async function seed(db: Database): Promise<Fixture> {
  const { customerId, jobId } = await insertJob(db);
  const unitId = randomUUID();
  await db.query(
    `INSERT INTO compute_units (id, job_id, customer_id, name, kind, status, entrypoint, attempt, max_attempts, required_gpu_count) VALUES ($1, $2, $3, 'train', 'cpu', 'ready', 'train.py', 1, 3, 0)`,
    [unitId, jobId, customerId],
  );
  return { customerId, jobId, unitId, nodes: await insertNodes(db, 8, now) };
}

/** What the placer commits: the fixture's ready unit on `nodeId`, then the agent's Accepted. Returns the attempt. */
async function placeAndAcceptUnit(db: Database, f: Fixture, nodeId: string): Promise<number> {
  const [row] = await db.query<{ attempt: number }>(
    `UPDATE compute_units SET status = 'assigned', node_id = $2, assignment_id = $3, assigned_at = $4 WHERE id = $1 AND status = 'ready' RETURNING attempt`,
    [f.unitId, nodeId, randomUUID(), now],
  );
  assert.ok(row, "the unit was ready to place");
  await applyAccepted(db, nodeId, { unitId: f.unitId, attempt: row.attempt }, now);
  return row.attempt;
}

/** The agent on `nodeId` reports the fixture's unit attempt finished. */
const finishUnit = (db: Database, f: Fixture, nodeId: string, attempt: number, outcome: FinishOutcome, exitCode = 0, error = "") =>
  applyFinished(db, nodeId, { unitId: f.unitId, attempt }, { outcome, exitCode, error, runSeconds: 5 }, defaultRates, now);

interface UnitState {
  status: string;
  attempt: number;
  code_failures: number;
  node_failures: number;
  exit_code: number | null;
  error: string;
  excluded_node_ids: string[];
}

describe("unit lifecycle: attempts, failures and late events", () => {
  let db: Database;
  let f: Fixture;

  beforeEach(async () => {
    db = await openMigratedPGlite();
    f = await seed(db);
  });
  afterEach(async () => {
    await db.close();
  });

  const unit = async (): Promise<UnitState> =>
    (await db.query<UnitState>(`SELECT status, attempt, code_failures, node_failures, exit_code, error, excluded_node_ids FROM compute_units WHERE id = $1`, [f.unitId]))[0]!;
  const job = async () => (await db.query<{ status: string; error: string }>(`SELECT status, error FROM training_jobs WHERE id = $1`, [f.jobId]))[0]!;
  const debits = async () => (await db.query<{ n: number }>(`SELECT count(*)::int AS n FROM ledger_entries WHERE compute_unit_id = $1 AND kind = 'debit'`, [f.unitId]))[0]!.n;

  const placeAndAccept = (nodeId: string) => placeAndAcceptUnit(db, f, nodeId);
  const finish = (nodeId: string, attempt: number, outcome: FinishOutcome, exitCode = 0, error = "") => finishUnit(db, f, nodeId, attempt, outcome, exitCode, error);

  it("ignores a late Finished of an attempt taken back from a lost node, and debits the unit once", async () => {
    const [a, b] = [f.nodes[0]!, f.nodes[1]!];
    const first = await placeAndAccept(a);
    // Node a goes silent: the sweeper takes its unit back (attempt + 1, avoiding a).
    const taken = await takeBackSilentNode(db, a, new Date(now.getTime() + 1000), now);
    assert.deepEqual(taken, [{ unitId: f.unitId, attempt: first }]);
    let u = await unit();
    assert.deepEqual([u.status, u.attempt, u.node_failures, u.code_failures], ["ready", 2, 1, 0]);
    assert.deepEqual(u.excluded_node_ids, [a]);
    const second = await placeAndAccept(b);
    // Node a comes back and reports the old attempt: nothing changes, nothing is debited.
    await finish(a, first, "succeeded");
    await finish(a, first, "failed", 1, "boom");
    u = await unit();
    assert.deepEqual([u.status, u.attempt, u.code_failures], ["running", 2, 0]);
    assert.equal(await debits(), 0);
    // The current attempt completes, and a resent Finished changes nothing twice.
    await finish(b, second, "succeeded");
    await finish(b, second, "succeeded");
    assert.equal((await unit()).status, "completed");
    assert.equal((await job()).status, "completed");
    assert.equal(await debits(), 1);
  });

  it("makes a unit a busy node turned down ready again for that same node, and runs it there once the node has room", async () => {
    const a = f.nodes[0]!;
    await db.query(`UPDATE nodes SET max_units = 1 WHERE id = $1`, [a]);
    // The node's one slot is taken by another unit of the job; the fixture's unit was sent there too.
    const other = randomUUID();
    await db.query(
      `INSERT INTO compute_units (id, job_id, customer_id, name, kind, status, entrypoint, attempt, max_attempts, node_id, assignment_id, assigned_at, required_gpu_count)
       VALUES ($1, $2, $3, 'other', 'cpu', 'running', 'train.py', 1, 3, $4, $5, $6, 0)`,
      [other, f.jobId, f.customerId, a, randomUUID(), now],
    );
    const [placed] = await db.query<{ attempt: number }>(
      `UPDATE compute_units SET status = 'assigned', node_id = $2, assignment_id = $3, assigned_at = $4 WHERE id = $1 RETURNING attempt`,
      [f.unitId, a, randomUUID(), now],
    );
    await applyRejected(db, a, { unitId: f.unitId, attempt: placed!.attempt }, "node is at its limit of 1 concurrent units", now, { busy: true, holdUntil: now });
    let u = await unit();
    assert.deepEqual([u.status, u.attempt, u.node_failures, u.excluded_node_ids], ["ready", 1, 0, []]);
    assert.equal(u.error, "node busy: node is at its limit of 1 concurrent units");
    const sources = { liveness: { isLive: () => true }, history: new NodeHistory({ now: () => now.getTime(), sleep: async () => {} }) };
    const slotsOfA = async () => (await readSnapshot(db, sources)).snapshot.nodes.find((n) => n.id === a)?.freeUnitSlots;
    assert.equal(await slotsOfA(), 0, "full: the placer sends it nothing until a unit ends");
    await applyFinished(db, a, { unitId: other, attempt: 1 }, { outcome: "succeeded", exitCode: 0, error: "", runSeconds: 5 }, defaultRates, now);
    assert.equal(await slotsOfA(), 1);
    const { units } = await readSnapshot(db, sources);
    assert.deepEqual(units.find((r) => r.id === f.unitId)?.excludedNodeIds, []);
    const attempt = await placeAndAccept(a);
    await finish(a, attempt, "succeeded");
    u = await unit();
    assert.deepEqual([u.status, u.attempt], ["completed", 1]);
    assert.equal(await debits(), 1);
  });

  it("keeps a unit away from a node that cannot run it (a rejection that is not busy)", async () => {
    const a = f.nodes[0]!;
    const [placed] = await db.query<{ attempt: number }>(
      `UPDATE compute_units SET status = 'assigned', node_id = $2, assignment_id = $3, assigned_at = $4 WHERE id = $1 RETURNING attempt`,
      [f.unitId, a, randomUUID(), now],
    );
    await applyRejected(db, a, { unitId: f.unitId, attempt: placed!.attempt }, "no GPU with index 3 on this node", now);
    const u = await unit();
    assert.deepEqual([u.status, u.attempt, u.excluded_node_ids, u.error], ["ready", 1, [a], "rejected by node: no GPU with index 3 on this node"]);
  });

  it("fails the unit and the job after max_attempts failures of the customer's code, with the exit code and stderr", async () => {
    for (let i = 0; i < 3; i++) {
      const attempt = await placeAndAccept(f.nodes[i]!);
      await finish(f.nodes[i]!, attempt, "failed", 3, "exit code 3\nTraceback: ValueError: bad config");
    }
    const u = await unit();
    assert.deepEqual([u.status, u.attempt, u.code_failures, u.exit_code], ["failed", 3, 3, 3]);
    assert.match(u.error, /ValueError: bad config/);
    const j = await job();
    assert.equal(j.status, "failed");
    assert.match(j.error, /compute unit "train" failed: its code failed 3 time\(s\) \(max_attempts 3\)/);
    assert.match(j.error, /ValueError: bad config/);
    assert.equal(await debits(), 0);
  });

  it("re-places attempts lost to nodes without using up the customer's attempts", async () => {
    let n = 0;
    // Two code failures, interleaved with node errors and a lost node.
    let attempt = await placeAndAccept(f.nodes[n]!);
    await finish(f.nodes[n++]!, attempt, "failed", 1, "exit code 1");
    attempt = await placeAndAccept(f.nodes[n]!);
    await finish(f.nodes[n++]!, attempt, "node_error", 0, "download failed");
    attempt = await placeAndAccept(f.nodes[n]!);
    await requeueUnitsOfNode(db, f.nodes[n++]!, "the node restarted and lost the unit", { now });
    attempt = await placeAndAccept(f.nodes[n]!);
    await finish(f.nodes[n++]!, attempt, "failed", 1, "exit code 1");
    let u = await unit();
    assert.deepEqual([u.status, u.attempt, u.code_failures, u.node_failures], ["ready", 5, 2, 2]);
    // The third try of the code succeeds: the customer is charged once.
    attempt = await placeAndAccept(f.nodes[n]!);
    await finish(f.nodes[n]!, attempt, "succeeded");
    u = await unit();
    assert.equal(u.status, "completed");
    assert.equal((await job()).status, "completed");
    assert.equal(await debits(), 1);
  });

  it(`fails a unit that loses ${maxNodeFailures} attempts to nodes, saying so`, async () => {
    for (let i = 0; i < maxNodeFailures; i++) {
      const attempt = await placeAndAccept(f.nodes[i]!);
      await finish(f.nodes[i]!, attempt, "node_error", 137, "agent shut down before the unit finished");
    }
    const u = await unit();
    assert.deepEqual([u.status, u.code_failures, u.node_failures], ["failed", 0, maxNodeFailures]);
    const j = await job();
    assert.equal(j.status, "failed");
    assert.match(j.error, new RegExp(`${maxNodeFailures} attempts were lost to nodes`));
  });
});

describe("node history: what the placer learns from finished attempts", () => {
  let db: Database;
  let f: Fixture;

  beforeEach(async () => {
    db = await openMigratedPGlite();
    f = await seed(db);
  });
  afterEach(async () => {
    await db.close();
  });

  const placeAndAccept = (nodeId: string) => placeAndAcceptUnit(db, f, nodeId);
  const finish = (nodeId: string, attempt: number, outcome: FinishOutcome, exitCode = 0) => finishUnit(db, f, nodeId, attempt, outcome, exitCode);
  const since = new Date(now.getTime() - 86_400_000);

  it("counts an attempt lost to a node against that node, once, and a completed one for the node that ran it", async () => {
    const [a, b] = [f.nodes[0]!, f.nodes[1]!];
    const first = await placeAndAccept(a);
    await finish(a, first, "node_error", -1);
    await finish(a, first, "node_error", -1); // replayed after a reconnect
    const second = await placeAndAccept(b);
    await finish(b, second, "succeeded");
    await finish(b, second, "succeeded");
    const counts = await readNodeAttemptCounts(db, since);
    assert.deepEqual(counts.get(a), { completed: 0, lost: 1 });
    assert.deepEqual(counts.get(b), { completed: 1, lost: 0 });
  });

  it("does not hold the customer's failing code against the node", async () => {
    const a = f.nodes[0]!;
    const attempt = await placeAndAccept(a);
    await finish(a, attempt, "failed", 1);
    assert.equal((await readNodeAttemptCounts(db, since)).get(a), undefined);
  });

  it("counts units taken back from a silent node as lost to it", async () => {
    const a = f.nodes[0]!;
    await placeAndAccept(a);
    await takeBackSilentNode(db, a, new Date(now.getTime() + 1000), now);
    assert.deepEqual((await readNodeAttemptCounts(db, since)).get(a), { completed: 0, lost: 1 });
  });

  it("remembers that the node which completed a unit holds the job's dataset", async () => {
    const [a, b] = [f.nodes[0]!, f.nodes[1]!];
    await finish(b, await placeAndAccept(b), "succeeded");
    const [{ dataset_id: datasetId }] = (await db.query<{ dataset_id: string }>(`SELECT dataset_id FROM training_jobs WHERE id = $1`, [f.jobId])) as [
      { dataset_id: string },
    ];
    const holders = await readNodesHoldingDatasets(db, [datasetId], since);
    assert.deepEqual([...(holders.get(datasetId) ?? [])], [b]);
    assert.ok(![...(holders.get(datasetId) ?? [])].includes(a));
    // A hint older than the window is not offered.
    assert.equal((await readNodesHoldingDatasets(db, [datasetId], new Date(now.getTime() + 1))).size, 0);
  });

  it("feeds reliability and held datasets into the placement snapshot", async () => {
    const [a, b] = [f.nodes[0]!, f.nodes[1]!];
    await db.query(`UPDATE nodes SET capabilities = $1`, [JSON.stringify({ cpuCores: 8, memoryMb: 16384, diskFreeMb: 100000, gpus: [] })]);
    await finish(a, await placeAndAccept(a), "node_error", -1);
    await finish(b, await placeAndAccept(b), "succeeded");
    // A second unit of the same job waits: the snapshot says who is reliable and who holds the dataset.
    const [{ dataset_id: datasetId }] = (await db.query<{ dataset_id: string }>(`SELECT dataset_id FROM training_jobs WHERE id = $1`, [f.jobId])) as [
      { dataset_id: string },
    ];
    await db.query(
      `INSERT INTO compute_units (id, job_id, customer_id, name, kind, status, entrypoint, attempt, max_attempts, ready_at, required_gpu_count) VALUES ($1, $2, $3, 'evaluate', 'cpu', 'ready', 'train.py', 1, 3, $4, 0)`,
      [randomUUID(), f.jobId, f.customerId, now],
    );
    await db.query(`UPDATE training_jobs SET status = 'running' WHERE id = $1`, [f.jobId]);
    const clock = { now: () => now.getTime(), sleep: async () => {} };
    const { snapshot } = await readSnapshot(db, { liveness: { isLive: () => true }, history: new NodeHistory(clock) });
    const node = (id: string) => snapshot.nodes.find((n) => n.id === id)!;
    assert.ok(node(a).reliability < nodeReliability(0, 0), "a node that lost an attempt scores below a new one");
    assert.ok(node(b).reliability > nodeReliability(0, 0), "a node that completed one scores above a new one");
    assert.deepEqual([...node(b).cachedDatasetIds], [datasetId]);
    assert.deepEqual([...node(a).cachedDatasetIds], []);
  });
});

describe("nodeReliability", () => {
  const cases: { completed: number; lost: number; expected: number }[] = [
    { completed: 0, lost: 0, expected: 0.9 },
    { completed: 90, lost: 0, expected: 0.99 },
    { completed: 0, lost: 10, expected: 0.45 },
    { completed: 290, lost: 9, expected: 299 / 309 },
    { completed: -5, lost: -5, expected: 0.9 },
  ];
  for (const c of cases) {
    it(`${c.completed} completed, ${c.lost} lost → ${c.expected.toFixed(3)}`, () => {
      assert.ok(Math.abs(nodeReliability(c.completed, c.lost) - c.expected) < 1e-9);
    });
  }
});
