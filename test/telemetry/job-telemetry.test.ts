/**
 * A customer's reads of their job's telemetry (src/telemetry/job-telemetry.ts), called directly, on
 * both backends, over what the real recorder wrote: a unit's log tail and each unit's history;
 * another customer's job and a unit of another job are not found; the attempt and cursor are
 * checked against the unit.
 */
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { pino } from "pino";
import { FakeClock } from "../../src/platform/clock.ts";
import { jobMetricHistories, unitLogTail } from "../../src/telemetry/job-telemetry.ts";
import { createTelemetryRecorder } from "../../src/telemetry/recorder.ts";
import { describeOnEachBackend } from "../support/billing-rows.ts";
import { refusedWith } from "../support/refusals.ts";
import { seedRunningUnit } from "./support.ts";

const bounds = { lines: 1000, bytes: 1 << 20 };

describeOnEachBackend("a customer's job telemetry", (on) => {
  const clock = new FakeClock();

  /** A running unit that logged three lines and reported progress once. */
  async function unitThatReported() {
    const seeded = await seedRunningUnit(on.db);
    const recorder = createTelemetryRecorder({ db: on.db, clock, logger: pino({ level: "silent" }) });
    const ref = { unitId: seeded.unitId, attempt: 1 };
    recorder.addLog(seeded.nodes[0], ref, { stream: "stdout", lines: ["one", "two", "three"], firstLine: 0 });
    recorder.addProgress(seeded.nodes[0], ref, { progress: 0.5, metrics: { loss: 1.25 }, sample: 0 });
    await recorder.flush();
    return seeded;
  }

  it("reads a unit's log tail after a cursor, with the unit it belongs to", async () => {
    const { customerId, jobId, unitId } = await unitThatReported();
    const whole = await unitLogTail(on.db, bounds, customerId, jobId.toUpperCase(), unitId, { attempt: 0, after: 0n });
    assert.equal(whole.unit.id, unitId);
    assert.equal(whole.tail.attempt, 1);
    assert.deepEqual(
      whole.tail.lines.map((l) => l.text),
      ["one", "two", "three"],
    );
    const rest = await unitLogTail(on.db, bounds, customerId, jobId, unitId, { attempt: 1, after: BigInt(whole.tail.lines[0]!.seq) });
    assert.deepEqual(
      rest.tail.lines.map((l) => l.text),
      ["two", "three"],
    );
  });

  it("reads each unit's progress history in plan order", async () => {
    const { customerId, jobId, unitId } = await unitThatReported();
    const units = await jobMetricHistories(on.db, customerId, jobId);
    assert.deepEqual(
      units.map((u) => [u.unit.id, u.history?.reports, u.history?.points.map((p) => p.metrics)]),
      [[unitId, 1, [{ loss: 1.25 }]]],
    );
  });

  const badQueries: { name: string; attempt: number; after: bigint; field: string }[] = [
    { name: "a negative attempt", attempt: -1, after: 0n, field: "attempt" },
    { name: "an attempt the unit has not reached", attempt: 2, after: 0n, field: "attempt" },
    { name: "a negative cursor", attempt: 0, after: -1n, field: "after" },
    { name: "a cursor past the safe integers", attempt: 0, after: BigInt(Number.MAX_SAFE_INTEGER) + 1n, field: "after" },
  ];
  for (const b of badQueries) {
    it(`refuses ${b.name} (VALIDATION_FAILED on ${b.field})`, async () => {
      const { customerId, jobId, unitId } = await seedRunningUnit(on.db);
      const error = await refusedWith(unitLogTail(on.db, bounds, customerId, jobId, unitId, { attempt: b.attempt, after: b.after }), "VALIDATION_FAILED");
      assert.equal(error.details["field"], b.field);
    });
  }

  it("answers another customer's, an unknown and a malformed job alike (JOB_NOT_FOUND), before looking at the unit", async () => {
    const { jobId } = await seedRunningUnit(on.db);
    const stranger = await seedRunningUnit(on.db);
    for (const id of [jobId, randomUUID(), "job-1"]) {
      const error = await refusedWith(unitLogTail(on.db, bounds, stranger.customerId, id, "unit-1", { attempt: -1, after: 0n }), "JOB_NOT_FOUND");
      assert.equal(error.message, `training job ${JSON.stringify(id)} not found`);
      await refusedWith(jobMetricHistories(on.db, stranger.customerId, id), "JOB_NOT_FOUND");
    }
  });

  it("answers a unit of another job, an unknown and a malformed unit alike (RESOURCE_NOT_FOUND)", async () => {
    const { customerId, jobId } = await seedRunningUnit(on.db);
    const other = await seedRunningUnit(on.db, { customerId });
    for (const id of [other.unitId, randomUUID(), "unit-1"]) {
      const error = await refusedWith(unitLogTail(on.db, bounds, customerId, jobId, id, { attempt: 0, after: 0n }), "RESOURCE_NOT_FOUND");
      assert.equal(error.message, `compute unit ${JSON.stringify(id)} not found in training job ${jobId}`);
    }
  });
});
