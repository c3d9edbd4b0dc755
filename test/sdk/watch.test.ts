/**
 * The SDK's live job stream against a real control plane: `for await (const event of
 * client.watchTrainingJob(id))` yields the snapshot and every event in order and ends with the job;
 * when the connection breaks (a TCP proxy in front of the server cuts it) it reconnects after the
 * last id and goes on without a gap or a repeat; `jobs.wait` follows the stream (no poll).
 */
import assert from "node:assert/strict";
import net from "node:net";
import type { AddressInfo } from "node:net";
import { applyAccepted, applyFinished, applyProgress } from "../../src/jobs/lifecycle.ts";
import type { JobEvent } from "../../src/sdk/index.ts";
import { createGpuAgentClient } from "../../src/sdk/index.ts";
import { transactionWithJobEvents } from "../../src/store/job-events.ts";
import { setPendingReasons } from "../../src/store/jobs.ts";
import { assignUnit, eventsPlane, seedJob } from "../support/job-events.ts";

const rates = { cpuCreditsPerMinute: 1, gpuCreditsPerMinute: 10 };
const succeeded = { outcome: "succeeded" as const, exitCode: 0, error: "", runSeconds: 2 };

/** A TCP proxy to `port` whose open connections can be cut, as a network failure would. */
async function startCuttableProxy(port: number): Promise<{ url: string; cut(): void; close(): Promise<void> }> {
  const open = new Set<net.Socket>();
  const server = net.createServer((client) => {
    const upstream = net.connect(port, "127.0.0.1");
    for (const s of [client, upstream]) {
      open.add(s);
      s.once("close", () => open.delete(s));
      s.on("error", () => undefined);
    }
    client.pipe(upstream).pipe(client);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    cut: () => {
      for (const s of open) s.destroy();
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of open) s.destroy();
        server.close(() => resolve());
      }),
  };
}

describe("SDK: watchTrainingJob, the live job stream", function () {
  this.timeout(60_000);
  const plane = eventsPlane({ events: { heartbeatMs: 200 } });

  it("yields the snapshot and every event in order, and ends when the job has", async () => {
    const client = createGpuAgentClient({ baseUrl: plane.cp.url, apiKey: plane.apiKey });
    const job = await seedJob(plane.db, plane.customerId, ["train"]);
    const unit = job.units[0]!;
    const seen: string[] = [];
    for await (const event of client.watchTrainingJob(job.jobId)) {
      seen.push(`${event.id} ${event.type}`);
      if (event.type === "snapshot") {
        const node = await assignUnit(plane.db, unit);
        await applyAccepted(plane.db, node, { unitId: unit, attempt: 1 }, new Date());
        await applyFinished(plane.db, node, { unitId: unit, attempt: 1 }, succeeded, rates, new Date());
      }
    }
    assert.deepEqual(seen, ["0 snapshot", "1 unit", "2 job", "3 unit", "4 job"]);
  });

  it("reconnects after a broken connection and resumes after the last event: no gap, no repeat", async () => {
    const proxy = await startCuttableProxy(plane.cp.plane.port);
    try {
      const client = createGpuAgentClient({ baseUrl: proxy.url, apiKey: plane.apiKey });
      const job = await seedJob(plane.db, plane.customerId, ["train"]);
      const unit = job.units[0]!;
      const node = await assignUnit(plane.db, unit);
      const events: JobEvent[] = [];
      for await (const event of client.jobs.watch(job.jobId, { reconnectDelayMs: 20 })) {
        events.push(event);
        if (event.type === "snapshot") await applyAccepted(plane.db, node, { unitId: unit, attempt: 1 }, new Date());
        if (event.id === 2n) {
          proxy.cut();
          // Committed while the SDK has no connection.
          await applyProgress(plane.db, node, { unitId: unit, attempt: 1 }, 0.5, { loss: 0.2 });
          await applyFinished(plane.db, node, { unitId: unit, attempt: 1 }, succeeded, rates, new Date());
        }
      }
      assert.deepEqual(events.map((e) => e.id), [0n, 1n, 2n, 3n, 4n, 5n, 6n]);
      const last = events.at(-1);
      assert.equal(last?.payload.case === "job" ? last.payload.value.status : "", "completed");
    } finally {
      await proxy.close();
    }
  });

  it("jobs.wait follows the stream: the job's steps arrive with a poll interval of ten minutes", async () => {
    const client = createGpuAgentClient({ baseUrl: plane.cp.url, apiKey: plane.apiKey });
    const job = await seedJob(plane.db, plane.customerId, ["train"]);
    const unit = job.units[0]!;
    const statuses: string[] = [];
    const final = await client.jobs.wait(job.jobId, {
      intervalMs: 600_000,
      onProgress: (e) => {
        statuses.push(`${e.status} ${e.progress}`);
        if (statuses.length === 1) {
          void (async () => {
            const node = await assignUnit(plane.db, unit);
            await applyAccepted(plane.db, node, { unitId: unit, attempt: 1 }, new Date());
            await applyProgress(plane.db, node, { unitId: unit, attempt: 1 }, 0.5, {});
            await applyFinished(plane.db, node, { unitId: unit, attempt: 1 }, succeeded, rates, new Date());
          })();
        }
      },
    });
    assert.equal(final.status, "completed");
    assert.equal(final.creditsDebited > 0n, true, "the final job is read whole, debits included");
    assert.deepEqual(statuses, ["queued 0", "running 0", "running 0.5", "completed 1"]);
  });

  it("jobs.wait tells why a queued job waits, and drops the reason once the job runs", async () => {
    const client = createGpuAgentClient({ baseUrl: plane.cp.url, apiKey: plane.apiKey });
    const job = await seedJob(plane.db, plane.customerId, ["train"]);
    const unit = job.units[0]!;
    const reason = "stage train: the 1 capable node is offline";
    // As the placement cycle records it (the column of migration 0010).
    await plane.db.query(`UPDATE training_jobs SET pending_reason = $2 WHERE id = $1`, [job.jobId, reason]);
    const seen: string[] = [];
    await client.jobs.wait(job.jobId, {
      onProgress: (e) => {
        seen.push(`${e.status} ${e.pendingReason}`);
        if (seen.length === 1) {
          void (async () => {
            const node = await assignUnit(plane.db, unit);
            await applyAccepted(plane.db, node, { unitId: unit, attempt: 1 }, new Date());
            await applyFinished(plane.db, node, { unitId: unit, attempt: 1 }, succeeded, rates, new Date());
          })();
        }
      },
    });
    assert.deepEqual(seen, [`queued ${reason}`, "running ", "completed "]);
  });

  it("jobs.wait shows each new reason of a queued job as its job event brings it", async () => {
    const client = createGpuAgentClient({ baseUrl: plane.cp.url, apiKey: plane.apiKey });
    const job = await seedJob(plane.db, plane.customerId, ["train"]);
    const unit = job.units[0]!;
    const offline = "stage train: the 1 capable node is offline";
    const busy = "stage train: the 1 capable node is busy";
    // What the placement cycle writes as it learns why the job waits; then the job starts and ends.
    const steps = [
      () => transactionWithJobEvents(plane.db, (tx) => setPendingReasons(tx, new Map([[job.jobId, offline]]))),
      () => transactionWithJobEvents(plane.db, (tx) => setPendingReasons(tx, new Map([[job.jobId, busy]]))),
      async () => {
        const node = await assignUnit(plane.db, unit);
        await applyAccepted(plane.db, node, { unitId: unit, attempt: 1 }, new Date());
        await applyFinished(plane.db, node, { unitId: unit, attempt: 1 }, succeeded, rates, new Date());
      },
    ];
    const seen: string[] = [];
    await client.jobs.wait(job.jobId, {
      onProgress: (e) => {
        seen.push(`${e.status} ${e.pendingReason}`);
        void steps.shift()?.();
      },
    });
    assert.deepEqual(seen, ["queued ", `queued ${offline}`, `queued ${busy}`, "running ", "completed "]);
  });
});
