/**
 * `gpuctl jobs watch` as a real process against a real control plane: it follows the job's live
 * events, so with a poll interval of ten minutes it still prints every step as the store commits it
 * and exits 0 as soon as the job completes (1 when it is cancelled).
 */
import assert from "node:assert/strict";
import { applyAccepted, applyFinished, applyProgress, cancelJob } from "../../src/jobs/lifecycle.ts";
import type { Database } from "../../src/store/database.ts";
import { assignUnit, eventsPlane, seedJob } from "../support/job-events.ts";
import { runGpuctl } from "./gpuctl-process.ts";

/** Runs `gpuctl jobs watch` (it would poll only every ten minutes) and hands each line of its standard output to `onLine` as it comes. */
const watchProcess = (env: Record<string, string>, jobId: string, onLine: (line: string) => void) =>
  runGpuctl(["jobs", "watch", jobId, "--interval-ms", "600000"], env, onLine);

describe("gpuctl jobs watch follows the live events of a real control plane", function () {
  this.timeout(60_000);
  const plane = eventsPlane();
  let db: Database;
  let customerId: string;
  let env: Record<string, string>;

  before(() => {
    ({ db, customerId } = plane);
    env = { GPU_AGENT_URL: plane.cp.url, GPU_AGENT_API_KEY: plane.apiKey };
  });

  it("prints each step as it is committed and exits 0 when the job completes, though it would poll only every ten minutes", async () => {
    const job = await seedJob(db, customerId, ["train"]);
    const unit = job.units[0]!;
    const lines: string[] = [];
    let node: string | undefined;
    const done = watchProcess(env, job.jobId, (line) => {
      lines.push(line);
      // Each step is committed once the previous one was printed: the process saw it live.
      // A seeded job has no capable node: once a placement cycle has seen it, the line says why it waits.
      if (line.startsWith("queued 0%")) {
        void (async () => {
          node = await assignUnit(db, unit);
          await applyAccepted(db, node, { unitId: unit, attempt: 1 }, new Date());
        })();
      }
      if (line === "running 0%" && node !== undefined) void applyProgress(db, node, { unitId: unit, attempt: 1 }, 0.5, { epoch: 3 });
      if (line === "running 50% epoch=3" && node !== undefined) {
        void applyFinished(db, node, { unitId: unit, attempt: 1 }, { outcome: "succeeded", exitCode: 0, error: "", runSeconds: 2 }, { cpuCreditsPerMinute: 1, gpuCreditsPerMinute: 10 }, new Date());
      }
    });
    const result = await done;
    assert.equal(result.code, 0, result.stderr);
    assert.match(lines[0] ?? "", /^queued 0%( \(waiting: .+\))?$/);
    assert.deepEqual(lines.slice(1, 4), ["running 0%", "running 50% epoch=3", "completed 100% epoch=3"]);
    assert.match(result.stdout, /^status\s+completed$/m);
  });

  it("exits 1 when the watched job is cancelled", async () => {
    const job = await seedJob(db, customerId, ["train"]);
    const result = await watchProcess(env, job.jobId, (line) => {
      if (line.startsWith("queued 0%")) void cancelJob(db, job.jobId, new Date());
    });
    assert.equal(result.code, 1);
    assert.match(result.stderr, /cancelled/);
  });
});
