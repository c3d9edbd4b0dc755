/**
 * Jobs for the live-event tests, inserted directly (a customer's job with a chain of GPU units, the
 * first ready), the one step the lifecycle does not take for them (handing a ready unit to a node,
 * as the leader's placement would), and the control plane of a block of such tests.
 */
import { randomUUID } from "node:crypto";
import type { Database, Sql } from "../../src/store/database.ts";
import { insertUnit } from "../../src/store/jobs.ts";
import type { TestControlPlane, TestControlPlaneOptions } from "./control-plane.ts";
import { createCustomer, startTestControlPlane, waitFor } from "./control-plane.ts";
import { insertJob, insertNodes } from "./rows.ts";

/** A queued job of `customerId` whose units run one after another in the order named. */
export async function seedJob(sql: Sql, customerId: string, unitNames: readonly string[]): Promise<{ jobId: string; units: string[] }> {
  const { jobId } = await insertJob(sql, { customerId });
  const units: string[] = [];
  for (const [i, name] of unitNames.entries()) {
    const id = randomUUID();
    const previous = unitNames[i - 1];
    await insertUnit(
      sql,
      {
        id,
        jobId,
        customerId,
        name,
        planIndex: i,
        kind: "gpu",
        dependsOn: previous === undefined ? [] : [previous],
        entrypoint: "train.py",
        args: [],
        vramMb: 1024,
        diskMb: 1024,
        cpuCores: 1,
        memoryMb: 512,
        maxAttempts: 3,
      },
      new Date(),
    );
    units.push(id);
  }
  return { jobId, units };
}

/** Assigns a ready unit to a new online node (no event: the test watches what follows); returns the node. */
export async function assignUnit(sql: Sql, unitId: string): Promise<string> {
  const [nodeId] = (await insertNodes(sql, 1)) as [string];
  const moved = await sql.query(`UPDATE compute_units SET status = 'assigned', node_id = $2, assigned_at = now() WHERE id = $1 AND status = 'ready' RETURNING id`, [
    unitId,
    nodeId,
  ]);
  if (moved.length !== 1) throw new Error(`unit ${unitId} is not ready`);
  return nodeId;
}

/** A control plane of one describe block's tests and a customer of it (see {@link eventsPlane}). */
export interface EventsPlane {
  readonly cp: TestControlPlane;
  readonly db: Database;
  readonly customerId: string;
  readonly apiKey: string;
}

/**
 * A control plane whose leader runs one placement cycle at start and no more (returned once it has): for
 * tests that drive every transition themselves, where a cycle's own write (a queued job's new pending
 * reason is an event) would land among theirs at a moment of its own.
 */
export async function startQuietControlPlane(options: TestControlPlaneOptions = {}): Promise<TestControlPlane> {
  const cp = await startTestControlPlane({ placementIntervalMs: 3_600_000, ...options });
  await waitFor("the leader's first placement cycle", async () => ((await placementCycles(cp)) > 0 ? true : undefined), 30_000);
  return cp;
}

/** Starts a quiet control plane ({@link startQuietControlPlane}) and creates a customer before the block's tests (mocha hooks); stops it after them. */
export function eventsPlane(options: TestControlPlaneOptions = {}): EventsPlane {
  let started: EventsPlane | undefined;
  before(async () => {
    const cp = await startQuietControlPlane(options);
    started = { cp, db: cp.plane.deps.db, ...(await createCustomer(cp)) };
  });
  after(async () => {
    await started?.cp.stop();
  });
  const get = (): EventsPlane => {
    if (started === undefined) throw new Error("the control plane is started by the block's before hook");
    return started;
  };
  return {
    get cp() {
      return get().cp;
    },
    get db() {
      return get().db;
    },
    get customerId() {
      return get().customerId;
    },
    get apiKey() {
      return get().apiKey;
    },
  };
}

/** Placement cycles the control plane's leader has finished (its /metrics). */
async function placementCycles(cp: TestControlPlane): Promise<number> {
  const metrics = await (await fetch(`${cp.url}/metrics`)).text();
  return Number(/^gpuagent_scheduler_cycle_duration_seconds_count (\d+)$/m.exec(metrics)?.[1] ?? 0);
}
