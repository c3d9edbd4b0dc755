/**
 * WatchTrainingJob through a real control plane: over REST as Server-Sent Events, and over Connect
 * and gRPC with the generated clients. The store drives the transitions (the same lifecycle calls an
 * agent's messages make), so each test says exactly which events must arrive: in commit order, ids
 * 1, 2, 3 … per job, a resume with Last-Event-ID that neither misses nor repeats one, heartbeats
 * while nothing happens, and the per-customer bound on open watches. Across replicas:
 * test/api/job-events-replicas.test.ts.
 */
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { createClient } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport } from "@connectrpc/connect-node";
import { CustomerService } from "../../src/gen/gpuagent/customer/v1/customer_pb.ts";
import { applyAccepted, applyFinished, applyProgress, cancelJob } from "../../src/jobs/lifecycle.ts";
import { appendJobEvents, jobEventsKept, transactionWithJobEvents } from "../../src/store/job-events.ts";
import { setPendingReasons } from "../../src/store/jobs.ts";
import type { Database } from "../../src/store/database.ts";
import type { TestControlPlane } from "../support/control-plane.ts";
import { createCustomer, waitFor } from "../support/control-plane.ts";
import { assignUnit, eventsPlane, seedJob } from "../support/job-events.ts";
import type { SseStream } from "../support/sse.ts";
import { openEventStream } from "../support/sse.ts";

const rates = { cpuCreditsPerMinute: 1, gpuCreditsPerMinute: 10 };
const succeeded = { outcome: "succeeded" as const, exitCode: 0, error: "", runSeconds: 3 };

describe("WatchTrainingJob over REST (Server-Sent Events)", function () {
  this.timeout(60_000);
  const plane = eventsPlane({ events: { heartbeatMs: 300, watchesPerCustomer: 3 } });
  let cp: TestControlPlane;
  let db: Database;
  let customerId: string;
  let auth: Record<string, string>;
  const streams: SseStream[] = [];

  const eventsUrl = (jobId: string) => `${cp.url}/api/v1/customer/training-jobs/${jobId}/events`;
  const watch = async (jobId: string, headers: Record<string, string> = {}) => {
    const stream = await openEventStream(eventsUrl(jobId), { ...auth, ...headers });
    streams.push(stream);
    return stream;
  };

  before(() => {
    ({ cp, db, customerId } = plane);
    auth = { "x-api-key": plane.apiKey };
  });
  afterEach(() => {
    for (const s of streams.splice(0)) s.close();
  });

  it("starts with a snapshot, then sends each transition in commit order with ids 1, 2, 3 …, and ends after the job's end", async () => {
    const job = await seedJob(db, customerId, ["prepare", "train"]);
    const stream = await watch(job.jobId);
    assert.equal(stream.status, 200);
    assert.match(stream.headers.get("content-type") ?? "", /^text\/event-stream/);
    const snapshot = await stream.nextEvent();
    assert.equal(snapshot?.event, "snapshot");
    assert.equal(snapshot?.id, "0");
    const snap = snapshot?.data["snapshot"] as { training_job: { status: string }; compute_units: { name: string; status: string }[]; gap: boolean };
    assert.equal(snap.training_job.status, "queued");
    assert.deepEqual(snap.compute_units.map((u) => [u.name, u.status]), [["prepare", "ready"], ["train", "pending"]]);
    assert.equal(snap.gap, false);

    const [prepare, train] = job.units as [string, string];
    const node = await assignUnit(db, prepare);
    await applyAccepted(db, node, { unitId: prepare, attempt: 1 }, new Date());
    await applyProgress(db, node, { unitId: prepare, attempt: 1 }, 0.5, { loss: 1.5 });
    await applyFinished(db, node, { unitId: prepare, attempt: 1 }, succeeded, rates, new Date());
    await cancelJob(db, job.jobId, new Date());

    const seen: [string | undefined, string | undefined, string, string][] = [];
    for (;;) {
      const e = await stream.nextEvent();
      if (e === undefined) break;
      const body = (e.data["job"] ?? e.data["unit"]) as { status: string; name?: string };
      seen.push([e.id, e.event, body.name ?? "job", body.status]);
    }
    assert.deepEqual(seen, [
      ["1", "unit", "prepare", "running"],
      ["2", "job", "job", "running"],
      ["3", "unit", "prepare", "running"], // progress 0.5
      ["4", "job", "job", "running"], // the job's progress
      ["5", "unit", "prepare", "completed"],
      ["6", "unit", "train", "ready"],
      ["7", "job", "job", "running"], // progress after the completion
      ["8", "job", "job", "cancelled"],
      ["9", "unit", "train", "cancelled"],
    ]);
    assert.ok(train);
  });

  it("carries progress and metrics on unit and job events", async () => {
    const job = await seedJob(db, customerId, ["train"]);
    const unit = job.units[0]!;
    const stream = await watch(job.jobId);
    await stream.nextEvent();
    const node = await assignUnit(db, unit);
    await applyProgress(db, node, { unitId: unit, attempt: 1 }, 0.25, { epoch: 7, loss: 0.5 });
    const unitEvent = await stream.nextEvent();
    assert.deepEqual(unitEvent?.data["unit"], {
      id: unit,
      name: "train",
      status: "running",
      attempt: 1,
      progress: 0.25,
      metrics: { epoch: 7, loss: 0.5 },
      node_id: node,
      exit_code: 0,
      error: "",
    });
    const jobEvent = (await stream.nextEvent())?.data["job"] as Record<string, unknown>;
    assert.equal(jobEvent["progress"], 0.25);
    assert.deepEqual(jobEvent["metrics"], { epoch: 7, loss: 0.5 });
  });

  it("sends a job event when a queued job's pending reason changes, none when it stays the same, and an empty reason once the job runs", async () => {
    const job = await seedJob(db, customerId, ["train"]);
    const unit = job.units[0]!;
    const stream = await watch(job.jobId);
    const snapshot = (await stream.nextEvent())?.data["snapshot"] as { training_job: { pending_reason: string } };
    assert.equal(snapshot.training_job.pending_reason, "");
    // What the placement cycle writes each cycle: the reason it found, unchanged or not.
    const offline = 'stage "train": the 1 capable node is offline';
    const busy = 'stage "train": the 1 capable node is busy';
    for (const reason of [offline, offline, busy]) await transactionWithJobEvents(db, (tx) => setPendingReasons(tx, new Map([[job.jobId, reason]])));
    const node = await assignUnit(db, unit);
    await applyAccepted(db, node, { unitId: unit, attempt: 1 }, new Date());

    const seen: [string | undefined, string | undefined, string, string][] = [];
    while (seen.length < 4) {
      const e = await stream.nextEvent();
      const body = (e?.data["job"] ?? e?.data["unit"]) as { status: string; pending_reason?: string };
      seen.push([e?.id, e?.event, body.status, body.pending_reason ?? "(unit)"]);
    }
    assert.deepEqual(seen, [
      ["1", "job", "queued", offline],
      ["2", "job", "queued", busy],
      ["3", "unit", "running", "(unit)"],
      ["4", "job", "running", ""],
    ]);
  });

  it("resumes after Last-Event-ID with exactly the events after it: none missed, none twice", async () => {
    const job = await seedJob(db, customerId, ["train"]);
    const unit = job.units[0]!;
    const first = await watch(job.jobId);
    await first.nextEvent();
    const node = await assignUnit(db, unit);
    await applyAccepted(db, node, { unitId: unit, attempt: 1 }, new Date());
    const received = [(await first.nextEvent())?.id, (await first.nextEvent())?.id];
    assert.deepEqual(received, ["1", "2"]);
    first.close();

    // Committed while no one watches.
    for (const p of [0.2, 0.4, 0.6]) await applyProgress(db, node, { unitId: unit, attempt: 1 }, p, { loss: 1 - p });
    const resumed = await watch(job.jobId, { "last-event-id": "2" });
    assert.equal(resumed.status, 200);
    await applyFinished(db, node, { unitId: unit, attempt: 1 }, succeeded, rates, new Date());
    const ids: string[] = [];
    for (;;) {
      const e = await resumed.nextEvent();
      if (e === undefined) break;
      ids.push(e.id ?? "?");
    }
    const stored = await db.query<{ id: number }>(`SELECT id FROM job_events WHERE job_id = $1 AND id > 2 ORDER BY id`, [job.jobId]);
    assert.deepEqual(ids, stored.map((r) => String(r.id)));
    // Three reports (unit and job each), then the unit's and the job's completion.
    assert.deepEqual(ids, ["3", "4", "5", "6", "7", "8", "9", "10"]);
  });

  it("answers a resume at the end of an ended job with 204, so EventSource stops reconnecting", async () => {
    const job = await seedJob(db, customerId, ["train"]);
    await cancelJob(db, job.jobId, new Date());
    const [{ last_id: lastId }] = (await db.query<{ last_id: number }>(`SELECT last_id FROM job_event_counters WHERE job_id = $1`, [job.jobId])) as [{ last_id: number }];
    const atEnd = await watch(job.jobId, { "last-event-id": String(lastId) });
    assert.equal(atEnd.status, 204);
    // From the start: the snapshot of the ended job, then the end.
    const fresh = await watch(job.jobId);
    assert.equal((await fresh.nextEvent())?.event, "snapshot");
    assert.equal(await fresh.nextEvent(), undefined);
  });

  it("sends a fresh snapshot marked gap when the resume point is older than the events still kept", async () => {
    const job = await seedJob(db, customerId, ["train"]);
    // Log events (each its own, unlike a job's changes in one transaction), more than the log keeps.
    const unitId = job.units[0]!;
    await appendJobEvents(db, Array.from({ length: jobEventsKept + 5 }, (_, i) => ({ type: "log" as const, unitId, attempt: 1, firstSeq: i + 1, lineCount: 1 })));
    // The window is cut as events are appended: this one drops ids 1 to 6.
    await appendJobEvents(db, [{ type: "job", jobId: job.jobId }]);
    const stream = await watch(job.jobId, { "last-event-id": "3" });
    const e = await stream.nextEvent();
    assert.equal(e?.event, "snapshot");
    assert.equal(e?.id, String(jobEventsKept + 6));
    assert.equal((e?.data["snapshot"] as { gap: boolean }).gap, true);
  });

  it("sends a heartbeat comment while nothing happens", async () => {
    const job = await seedJob(db, customerId, ["train"]);
    const stream = await watch(job.jobId);
    assert.equal((await stream.next())?.kind, "event");
    assert.deepEqual(await stream.next(5000), { kind: "comment", text: "heartbeat" });
  });

  it("opens a resumed watch at once with a heartbeat when nothing is new", async () => {
    const job = await seedJob(db, customerId, ["train"]);
    const node = await assignUnit(db, job.units[0]!);
    await applyAccepted(db, node, { unitId: job.units[0]!, attempt: 1 }, new Date());
    const stream = await watch(job.jobId, { "last-event-id": "2" });
    assert.deepEqual(await stream.next(1000), { kind: "comment", text: "heartbeat" });
  });

  it("refuses a watch over the customer's bound with 429 RATE_LIMITED and Retry-After, and frees the slot when one closes", async () => {
    const other = await createCustomer(cp);
    const job = await seedJob(db, other.customerId, ["train"]);
    const watchAsOther = async () => {
      const stream = await openEventStream(eventsUrl(job.jobId), { "x-api-key": other.apiKey });
      streams.push(stream);
      return stream;
    };
    const open = [];
    for (let i = 0; i < 3; i++) {
      const s = await watchAsOther();
      assert.equal(s.status, 200);
      await s.nextEvent();
      open.push(s);
    }
    const refused = await watchAsOther();
    assert.equal(refused.status, 429);
    assert.equal(refused.headers.get("retry-after"), "5");
    assert.equal(((await refused.json())["error"] as Record<string, unknown>)["code"], "RATE_LIMITED");
    open[0]!.close();
    await waitFor("the closed watch's slot", async () => (cp.plane.deps.jobEvents.openWatches(other.customerId) < 3 ? true : undefined), 5000);
    assert.equal((await watchAsOther()).status, 200);
  });

  it("answers another customer's job and a malformed Last-Event-ID like any other request", async () => {
    const job = await seedJob(db, customerId, ["train"]);
    const stranger = await createCustomer(cp);
    const foreign = await openEventStream(eventsUrl(job.jobId), { "x-api-key": stranger.apiKey });
    assert.equal(foreign.status, 404);
    assert.equal(((await foreign.json())["error"] as Record<string, unknown>)["code"], "JOB_NOT_FOUND");
    const bad = await watch(job.jobId, { "last-event-id": "seven" });
    assert.equal(bad.status, 400);
    assert.deepEqual(((await bad.json())["error"] as Record<string, unknown>)["details"], { field: "Last-Event-ID" });
  });

  it("sends the lines a unit's log flush stored as one log event", async () => {
    const job = await seedJob(db, customerId, ["train"]);
    const unit = job.units[0]!;
    const stream = await watch(job.jobId);
    await stream.nextEvent();
    const node = await assignUnit(db, unit);
    const telemetry = cp.plane.deps.telemetry;
    telemetry.addLog(node, { unitId: unit, attempt: 1 }, { stream: "stdout", lines: ["epoch 1", "epoch 2"], firstLine: 0 });
    await telemetry.flushAttempt({ unitId: unit, attempt: 1 });
    const e = await stream.nextEvent();
    assert.equal(e?.event, "log");
    const log = e?.data["log"] as { compute_unit_id: string; attempt: number; lines: { seq: string; stream: string; text: string }[]; missing_lines: string };
    assert.equal(log.compute_unit_id, unit);
    assert.deepEqual(log.lines.map((l) => [l.seq, l.stream, l.text]), [["1", "stdout", "epoch 1"], ["2", "stdout", "epoch 2"]]);
    assert.equal(log.missing_lines, "0");
  });
});

describe("WatchTrainingJob over Connect and gRPC (generated clients)", function () {
  this.timeout(60_000);
  const plane = eventsPlane({ events: { heartbeatMs: 300 } });

  const transports = [
    { name: "Connect (HTTP/1.1)", make: () => createConnectTransport({ baseUrl: plane.cp.url, httpVersion: "1.1" }) },
    { name: "gRPC (HTTP/2)", make: () => createGrpcTransport({ baseUrl: plane.cp.url }) },
  ];
  for (const t of transports) {
    it(`${t.name}: a snapshot, the events in order, heartbeats with id 0, a resume with after_event_id`, async () => {
      const client = createClient(CustomerService, t.make());
      const job = await seedJob(plane.db, plane.customerId, ["train"]);
      const unit = job.units[0]!;
      const abort = new AbortController();
      const headers = { "x-api-key": plane.apiKey };
      const stream = client.watchTrainingJob({ id: job.jobId }, { headers, signal: abort.signal })[Symbol.asyncIterator]();
      const snapshot = (await stream.next()).value;
      assert.equal(snapshot?.type, "snapshot");
      assert.equal(snapshot?.payload.case, "snapshot");
      assert.equal(snapshot?.id, 0n);
      const heartbeat = (await stream.next()).value;
      assert.deepEqual([heartbeat?.type, heartbeat?.id, heartbeat?.payload.case], ["heartbeat", 0n, undefined]);
      const node = await assignUnit(plane.db, unit);
      await applyAccepted(plane.db, node, { unitId: unit, attempt: 1 }, new Date());
      const next = async () => {
        for (;;) {
          const m = (await stream.next()).value;
          if (m?.type !== "heartbeat") return m;
        }
      };
      const running = await next();
      assert.deepEqual([running?.id, running?.payload.case, running?.payload.case === "unit" ? running.payload.value.status : ""], [1n, "unit", "running"]);
      assert.equal((await next())?.id, 2n);
      abort.abort();

      await applyFinished(plane.db, node, { unitId: unit, attempt: 1 }, succeeded, rates, new Date());
      const rest: bigint[] = [];
      for await (const m of client.watchTrainingJob({ id: job.jobId, afterEventId: 2n }, { headers })) if (m.type !== "heartbeat") rest.push(m.id);
      assert.deepEqual(rest, [3n, 4n]);
    });
  }

  it("refuses a watch without a key as unauthenticated, and an unknown job as not found", async () => {
    const client = createClient(CustomerService, createConnectTransport({ baseUrl: plane.cp.url, httpVersion: "1.1" }));
    await assert.rejects(async () => {
      for await (const m of client.watchTrainingJob({ id: randomUUID() })) assert.fail(`unexpected ${m.type}`);
    }, /unauthenticated/i);
    await assert.rejects(async () => {
      for await (const m of client.watchTrainingJob({ id: randomUUID() }, { headers: { "x-api-key": plane.apiKey } })) assert.fail(`unexpected ${m.type}`);
    }, /not found/i);
  });
});
