/**
 * The job and unit state machines as a table (src/store/state-machines.ts),
 * checked pair by pair against the machines as documented: the legal moves are
 * spelled out here, not read from the table under test.
 */
import assert from "node:assert/strict";
import type { JobStatus, UnitStatus } from "../../src/store/state-machines.ts";
import {
  IllegalTransitionError,
  activeJobStatusSql,
  assertJobTransition,
  assertUnitMove,
  assertUnitTransition,
  canMoveJob,
  canMoveUnit,
  isJobActive,
  isUnitOnNode,
  isUnitTerminal,
  jobStatuses,
  jobStatusesInto,
  unitMove,
  unitStatuses,
  unitStatusesInto,
} from "../../src/store/state-machines.ts";

const allUnitStatuses: UnitStatus[] = ["pending", "ready", "assigned", "running", "completed", "failed", "cancelled"];
const allJobStatuses: JobStatus[] = ["queued", "running", "completed", "failed", "cancelled", "expired"];

const legalUnitMoves = new Set([
  "pending → ready",
  "pending → cancelled",
  "ready → assigned",
  "ready → cancelled",
  "assigned → running",
  "assigned → ready",
  "assigned → completed",
  "assigned → failed",
  "assigned → cancelled",
  "running → completed",
  "running → ready",
  "running → failed",
  "running → cancelled",
]);

const legalJobMoves = new Set([
  "queued → running",
  "queued → completed",
  "queued → failed",
  "queued → cancelled",
  "queued → expired",
  "running → completed",
  "running → failed",
  "running → cancelled",
  "running → expired",
]);

const isIllegal = (machine: "job" | "unit", from: string, to: string) => (e: unknown) =>
  e instanceof IllegalTransitionError && e.machine === machine && e.from === from && e.to === to;

interface Machine {
  title: string;
  machine: "job" | "unit";
  statuses: readonly string[];
  legal: ReadonlySet<string>;
  canMove(from: string, to: string): boolean;
  assertMove(from: string, to: string): void;
}

const machines: Machine[] = [
  {
    title: "compute unit",
    machine: "unit",
    statuses: allUnitStatuses,
    legal: legalUnitMoves,
    canMove: (from, to) => canMoveUnit(from as UnitStatus, to as UnitStatus),
    assertMove: (from, to) => assertUnitTransition(from as UnitStatus, to as UnitStatus),
  },
  {
    title: "training job",
    machine: "job",
    statuses: allJobStatuses,
    legal: legalJobMoves,
    canMove: (from, to) => canMoveJob(from as JobStatus, to as JobStatus),
    assertMove: (from, to) => assertJobTransition(from as JobStatus, to as JobStatus),
  },
];

describe("state machines as a table", () => {
  it("know every status of the schema, and no other", () => {
    assert.deepEqual([...unitStatuses].sort(), [...allUnitStatuses].sort());
    assert.deepEqual([...jobStatuses].sort(), [...allJobStatuses].sort());
  });

  for (const m of machines) {
    describe(`${m.title}: every (from, to) pair`, () => {
      for (const from of m.statuses) {
        for (const to of m.statuses) {
          const legal = m.legal.has(`${from} → ${to}`);
          it(`${from} → ${to} is ${legal ? "allowed" : "refused"}`, () => {
            assert.equal(m.canMove(from, to), legal);
            if (legal) m.assertMove(from, to);
            else assert.throws(() => m.assertMove(from, to), isIllegal(m.machine, from, to));
          });
        }
      }
    });
  }

  it("names, for each status, the statuses a move into it starts from (the WHERE of its UPDATE)", () => {
    const unitInto: Record<UnitStatus, UnitStatus[]> = {
      pending: [],
      ready: ["pending", "assigned", "running"],
      assigned: ["ready"],
      running: ["assigned"],
      completed: ["assigned", "running"],
      failed: ["assigned", "running"],
      cancelled: ["pending", "ready", "assigned", "running"],
    };
    for (const to of allUnitStatuses) assert.deepEqual(unitStatusesInto(to), unitInto[to], `into ${to}`);
    const jobInto: Record<JobStatus, JobStatus[]> = {
      queued: [],
      running: ["queued"],
      completed: ["queued", "running"],
      failed: ["queued", "running"],
      cancelled: ["queued", "running"],
      expired: ["queued", "running"],
    };
    for (const to of allJobStatuses) assert.deepEqual(jobStatusesInto(to), jobInto[to], `into ${to}`);
  });

  it("classifies statuses: active jobs, units on a node, terminal units", () => {
    assert.deepEqual(allJobStatuses.filter(isJobActive), ["queued", "running"]);
    assert.deepEqual(allUnitStatuses.filter(isUnitOnNode), ["assigned", "running"]);
    assert.deepEqual(allUnitStatuses.filter(isUnitTerminal), ["completed", "failed", "cancelled"]);
    assert.equal(activeJobStatusSql, "('queued', 'running')");
  });

  it("builds an operation's move only from statuses the table allows, and refuses the others it was not built for", () => {
    assert.throws(() => unitMove("ready", ["pending", "completed"]), isIllegal("unit", "completed", "ready"));
    const requeue = unitMove("ready", ["assigned", "running"]);
    assert.equal(requeue.fromSql, "('assigned', 'running')");
    assertUnitMove(requeue, "running");
    // The table allows pending → ready, but not through this operation.
    assert.throws(() => assertUnitMove(requeue, "pending"), isIllegal("unit", "pending", "ready"));
    assert.deepEqual(unitMove("cancelled").from, ["pending", "ready", "assigned", "running"]);
  });
});
