/**
 * WatchTrainingJob across two replicas sharing one PostgreSQL: a watch open on replica B hears what
 * replica A commits (A holds the node's stream: its transitions and its log flushes) through the
 * cluster bus, well before a heartbeat's re-read could find it; and a client that lost its stream
 * on one replica resumes on the other after its last id, missing nothing and repeating nothing.
 */
import assert from "node:assert/strict";
import { applyAccepted, applyFinished, applyProgress } from "../../src/jobs/lifecycle.ts";
import type { TestControlPlane } from "../support/control-plane.ts";
import { createCustomer, startTestControlPlane } from "../support/control-plane.ts";
import { assignUnit, seedJob, startQuietControlPlane } from "../support/job-events.ts";
import { createMigratedTestDatabaseUrl } from "../support/postgres.ts";
import type { SseStream } from "../support/sse.ts";
import { openEventStream } from "../support/sse.ts";

/** Far longer than any wait below: an event that arrives was carried by the bus, not found by a heartbeat's re-read. */
const heartbeatMs = 60_000;

describe("WatchTrainingJob across two replicas (PostgreSQL, LISTEN/NOTIFY)", function () {
  this.timeout(90_000);
  let a: TestControlPlane;
  let b: TestControlPlane;
  let customerId: string;
  let auth: Record<string, string>;
  const streams: SseStream[] = [];

  const watchOn = async (cp: TestControlPlane, jobId: string, headers: Record<string, string> = {}) => {
    const stream = await openEventStream(`${cp.url}/api/v1/customer/training-jobs/${jobId}/events`, { ...auth, ...headers });
    streams.push(stream);
    return stream;
  };

  before(async () => {
    const databaseUrl = await createMigratedTestDatabaseUrl();
    // A leads and, like B, runs no placement cycle after its first: the tests drive every transition.
    a = await startQuietControlPlane({ databaseUrl, replicaId: "replica-a", events: { heartbeatMs } });
    b = await startTestControlPlane({ databaseUrl, replicaId: "replica-b", events: { heartbeatMs }, placementIntervalMs: 3_600_000 });
    const customer = await createCustomer(a);
    customerId = customer.customerId;
    auth = { "x-api-key": customer.apiKey };
  });
  afterEach(() => {
    for (const s of streams.splice(0)) s.close();
  });
  after(async () => {
    await b?.stop();
    await a?.stop();
  });

  it("a watch on B receives the transitions and the log lines committed on A, in order, within a second", async () => {
    const db = a.plane.deps.db;
    const job = await seedJob(db, customerId, ["train"]);
    const unit = job.units[0]!;
    const stream = await watchOn(b, job.jobId);
    assert.equal((await stream.nextEvent())?.event, "snapshot");

    const node = await assignUnit(db, unit);
    const committed = Date.now();
    await applyAccepted(db, node, { unitId: unit, attempt: 1 }, new Date());
    const first = await stream.nextEvent(5000);
    const tookMs = Date.now() - committed;
    assert.deepEqual([first?.id, first?.event, (first?.data["unit"] as { status: string }).status], ["1", "unit", "running"]);
    assert.ok(tookMs < 1000, `the event took ${tookMs} ms`);
    assert.equal((await stream.nextEvent(5000))?.id, "2");

    // A holds the node's stream: its recorder stores the lines, B's watch sends them.
    a.plane.deps.telemetry.addLog(node, { unitId: unit, attempt: 1 }, { stream: "stderr", lines: ["warming up"], firstLine: 0 });
    await a.plane.deps.telemetry.flushAttempt({ unitId: unit, attempt: 1 });
    const log = await stream.nextEvent(5000);
    assert.equal(log?.event, "log");
    assert.deepEqual((log?.data["log"] as { lines: { text: string; stream: string }[] }).lines.map((l) => [l.stream, l.text]), [["stderr", "warming up"]]);
  });

  it("a client cut off on A resumes on B after its last id: nothing missed, nothing twice", async () => {
    const db = a.plane.deps.db;
    const job = await seedJob(db, customerId, ["train"]);
    const unit = job.units[0]!;
    const onA = await watchOn(a, job.jobId);
    await onA.nextEvent();
    const node = await assignUnit(db, unit);
    await applyAccepted(db, node, { unitId: unit, attempt: 1 }, new Date());
    await applyProgress(db, node, { unitId: unit, attempt: 1 }, 0.5, { loss: 0.7 });
    const seen: string[] = [];
    for (let i = 0; i < 3; i++) seen.push((await onA.nextEvent())?.id ?? "?");
    onA.close();

    await applyFinished(db, node, { unitId: unit, attempt: 1 }, { outcome: "succeeded", exitCode: 0, error: "", runSeconds: 2 }, { cpuCreditsPerMinute: 1, gpuCreditsPerMinute: 10 }, new Date());
    const onB = await watchOn(b, job.jobId, { "last-event-id": seen.at(-1)! });
    for (;;) {
      const e = await onB.nextEvent(5000);
      if (e === undefined) break;
      seen.push(e.id ?? "?");
    }
    const stored = await db.query<{ id: number }>(`SELECT id FROM job_events WHERE job_id = $1 ORDER BY id`, [job.jobId]);
    assert.deepEqual(seen, stored.map((r) => String(r.id)));
  });
});
