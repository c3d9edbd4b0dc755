/** Reads of the units handed to nodes (src/store/units-on-nodes.ts), as the agents' streams and the sweeper use them. */
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import type { Database } from "../../src/store/database.ts";
import { openMigratedPGlite } from "../support/database-template.ts";
import {
  findNodesWithAssignmentsBefore,
  findNodesWithAssignmentsWaiting,
  listAssignmentsOfNode,
  listAttemptsOnNode,
} from "../../src/store/units-on-nodes.ts";
import type { AttemptsOnNodeFilter } from "../../src/store/units-on-nodes.ts";
import { insertJob, insertNodes } from "../support/rows.ts";

describe("store/units-on-nodes", function () {
  this.timeout(60_000);
  let db: Database;
  let nodeA: string;
  let nodeB: string;
  const t0 = new Date("2030-01-01T00:00:00Z");
  const at = (s: number) => new Date(t0.getTime() + s * 1000);
  /** Unit ids by name. */
  const unit: Record<string, string> = {};

  before(async () => {
    db = await openMigratedPGlite();
    [nodeA, nodeB] = (await insertNodes(db, 2)) as [string, string];
    const { customerId, jobId } = await insertJob(db, { status: "running" });
    const rows: { name: string; status: string; node: string | null; assignment: boolean; assignedAt: Date | null; attempt: number }[] = [
      { name: "a-assigned-late", status: "assigned", node: nodeA, assignment: true, assignedAt: at(20), attempt: 1 },
      { name: "a-assigned-early", status: "assigned", node: nodeA, assignment: true, assignedAt: at(10), attempt: 2 },
      { name: "a-running", status: "running", node: nodeA, assignment: true, assignedAt: at(5), attempt: 1 },
      { name: "a-completed", status: "completed", node: nodeA, assignment: true, assignedAt: at(1), attempt: 1 },
      { name: "b-running", status: "running", node: nodeB, assignment: true, assignedAt: at(30), attempt: 3 },
      { name: "ready", status: "ready", node: null, assignment: false, assignedAt: null, attempt: 1 },
    ];
    for (const r of rows) {
      unit[r.name] = randomUUID();
      await db.query(
        `INSERT INTO compute_units (id, job_id, customer_id, name, kind, status, entrypoint, attempt, max_attempts, node_id, assignment_id, assigned_at)
         VALUES ($1, $2, $3, $4, 'cpu', $5, 'train.py', $6, 3, $7, $8, $9)`,
        [unit[r.name], jobId, customerId, r.name, r.status, r.attempt, r.node, r.assignment ? randomUUID() : null, r.assignedAt],
      );
    }
  });
  after(async () => {
    await db.close();
  });

  it("lists a node's assignments not yet accepted, oldest first", async () => {
    assert.deepEqual((await listAssignmentsOfNode(db, nodeA)).map((u) => u.name), ["a-assigned-early", "a-assigned-late"]);
    assert.deepEqual(await listAssignmentsOfNode(db, nodeB), []);
  });

  it("names, of the nodes asked about, those with assignments waiting", async () => {
    assert.deepEqual(await findNodesWithAssignmentsWaiting(db, [nodeA, nodeB]), [nodeA]);
    assert.deepEqual(await findNodesWithAssignmentsWaiting(db, [nodeB]), []);
  });

  it("names the nodes holding an assignment made before a time", async () => {
    assert.deepEqual(await findNodesWithAssignmentsBefore(db, at(10)), []);
    assert.deepEqual(await findNodesWithAssignmentsBefore(db, at(11)), [nodeA]);
  });

  it("lists the attempts a node should hold (assigned or running), with their status", async () => {
    const attempts = await listAttemptsOnNode(db, nodeA);
    assert.deepEqual(
      attempts.map((a) => [a.id, a.attempt, a.status]).sort(),
      [
        [unit["a-assigned-late"], 1, "assigned"],
        [unit["a-assigned-early"], 2, "assigned"],
        [unit["a-running"], 1, "running"],
      ].sort(),
    );
  });

  it("finds, of the units a node reports, those still current on that node", async () => {
    const reported = [unit["a-running"]!, unit["a-completed"]!, unit["b-running"]!, unit["ready"]!];
    const current = async (nodeId: string) => (await listAttemptsOnNode(db, nodeId, { unitIds: reported })).map(({ id, attempt }) => ({ id, attempt }));
    assert.deepEqual(await current(nodeA), [{ id: unit["a-running"], attempt: 1 }]);
    assert.deepEqual(await current(nodeB), [{ id: unit["b-running"], attempt: 3 }]);
  });

  const filterCases: { name: string; filter: AttemptsOnNodeFilter; names: string[] }[] = [
    { name: "only assigned", filter: { statuses: ["assigned"] }, names: ["a-assigned-early", "a-assigned-late"] },
    { name: "only running", filter: { statuses: ["running"] }, names: ["a-running"] },
    { name: "assigned before a time", filter: { assignedBefore: at(11) }, names: ["a-assigned-early", "a-running"] },
    { name: "running and assigned before a time", filter: { statuses: ["running"], assignedBefore: at(11) }, names: ["a-running"] },
    { name: "an empty list of units names none", filter: { unitIds: [] }, names: [] },
  ];
  for (const tc of filterCases) {
    it(`narrows a node's attempts: ${tc.name}`, async () => {
      const names = Object.fromEntries(Object.entries(unit).map(([name, id]) => [id, name]));
      const listed = (await listAttemptsOnNode(db, nodeA, tc.filter)).map((a) => names[a.id]).sort();
      assert.deepEqual(listed, tc.names);
    });
  }

  it("gives each attempt's job, so a caller taking them back can lock the jobs first", async () => {
    const [attempt] = await listAttemptsOnNode(db, nodeB);
    const [job] = await db.query<{ job_id: string }>(`SELECT job_id FROM compute_units WHERE id = $1`, [unit["b-running"]]);
    assert.equal(attempt?.job_id, job?.job_id);
  });
});
