/**
 * `gpuctl jobs logs`: every unit's log in DAG order, one unit with --unit, and -f: as a real
 * process against a real control plane it follows the job's live events (a line shows though the
 * poll interval is ten minutes) until the job ends; against a server without them (the fake here)
 * it follows the API's cursor (`after` = the previous answer's `next_after`) until every unit has
 * ended.
 */
import assert from "node:assert/strict";
import { dagOrder } from "../../src/cli/logs.ts";
import { runCli } from "../../src/cli/program.ts";
import { applyAccepted, applyFinished } from "../../src/jobs/lifecycle.ts";
import type { UnitAttempt } from "../../src/jobs/lifecycle.ts";
import { assignUnit, eventsPlane, seedJob } from "../support/job-events.ts";
import type { FakeUnit } from "./fake-api.ts";
import { callsOf, captureIo, depsFor, instantClock, startFakeApi, type FakeApi } from "./fake-api.ts";
import { runGpuctl } from "./gpuctl-process.ts";

/** A unit whose log is scripted per read. */
const unit = (id: string, name: string, dependsOn: string[], logs: FakeUnit["logs"]): FakeUnit => ({ id, name, dependsOn, logs, reads: 0 });

describe("gpuctl jobs logs", () => {
  let api: FakeApi;
  beforeEach(async () => {
    api = await startFakeApi();
    api.jobs.set("job_l", { id: "job_l", body: {}, script: api.nextJobScript, gets: 0 });
  });
  afterEach(async () => {
    await api.close();
  });

  const run = async (args: string[], clock = instantClock()) => {
    const cap = captureIo();
    const code = await runCli(args, depsFor(api, cap, clock));
    return { code, out: cap.out(), err: cap.err(), sleeps: clock.sleeps };
  };

  describe("DAG order", () => {
    const u = (name: string, dependsOn: string[] = []) => ({ name, dependsOn });
    const cases: { name: string; listed: { name: string; dependsOn: string[] }[]; order: string[] }[] = [
      { name: "a chain listed backwards", listed: [u("evaluate", ["train"]), u("train", ["prepare"]), u("prepare")], order: ["prepare", "train", "evaluate"] },
      { name: "a fan-out keeps the listed order among siblings", listed: [u("b", ["a"]), u("c", ["a"]), u("a")], order: ["a", "b", "c"] },
      { name: "a dependency outside the list holds nothing back", listed: [u("train", ["gone"]), u("eval", ["train"])], order: ["train", "eval"] },
      { name: "a cycle keeps the rest as listed", listed: [u("x", ["y"]), u("y", ["x"]), u("z")], order: ["z", "x", "y"] },
    ];
    for (const tc of cases) {
      it(tc.name, () => assert.deepEqual(dagOrder(tc.listed).map((x) => x.name), tc.order));
    }
  });

  it("prints every unit's log in DAG order, each line prefixed with its unit", async () => {
    api.units.set("job_l", [
      unit("cu_e", "evaluate", ["train"], [{ status: "completed", lines: ["acc=0.9"] }]),
      unit("cu_t", "train", ["prepare"], [{ status: "completed", lines: ["epoch 1", "epoch 2"], trimmed: 3 }]),
      unit("cu_p", "prepare", [], [{ status: "completed", lines: ["split"] }]),
    ]);
    const r = await run(["jobs", "logs", "job_l"]);
    assert.equal(r.code, 0, r.err);
    assert.equal(r.out, "prepare  | split\ntrain    | epoch 1\ntrain    | epoch 2\nevaluate | acc=0.9\n");
    assert.match(r.err, /^train: 3 earlier lines are no longer kept here/m);
  });

  it("prints one unit's lines alone with --unit, by name or id", async () => {
    api.units.set("job_l", [unit("cu_p", "prepare", [], [{ status: "completed", lines: ["split"] }]), unit("cu_t", "train", ["prepare"], [{ status: "running", lines: ["epoch 1"] }])]);
    for (const which of ["train", "cu_t"]) {
      const r = await run(["jobs", "logs", "job_l", "--unit", which]);
      assert.equal(r.code, 0, r.err);
      assert.equal(r.out, "epoch 1\n");
    }
  });

  it("names the units there are when --unit names none of them", async () => {
    const r = await run(["jobs", "logs", "job_l", "--unit", "nope"]);
    assert.equal(r.code, 2);
    assert.match(r.err, /--unit nope: job job_l has no such unit \(its units: train\) \(code UNIT_NOT_FOUND\)/);
  });

  it("prints the answers as JSON, in DAG order, with each unit's name", async () => {
    api.units.set("job_l", [unit("cu_t", "train", ["prepare"], [{ status: "running", lines: ["epoch 1"] }]), unit("cu_p", "prepare", [], [{ status: "completed", lines: [] }])]);
    const r = await run(["jobs", "logs", "job_l", "--json"]);
    assert.equal(r.code, 0, r.err);
    const doc = JSON.parse(r.out) as { data: { unit_name: string; unit_id: string; lines: { seq: string; text: string }[]; next_after: string }[] };
    assert.deepEqual(doc.data.map((d) => d.unit_name), ["prepare", "train"]);
    assert.deepEqual(doc.data[1]?.lines.map((l) => [l.seq, l.text]), [["1", "epoch 1"]]);
    assert.equal(doc.data[1]?.next_after, "1");
  });

  it("follows with the cursor, on a server without live events, until every unit has ended, reading a retried unit's new attempt from its start", async () => {
    api.units.set("job_l", [
      unit("cu_p", "prepare", [], [
        { status: "running", lines: ["p1"] },
        { status: "completed", lines: ["p1", "p2"] },
      ]),
      unit("cu_t", "train", ["prepare"], [
        { status: "running", lines: ["t1"] },
        { status: "running", attempt: 2, lines: ["u1"] },
        { status: "running", attempt: 2, lines: ["u1"] },
        { status: "completed", attempt: 2, lines: ["u1", "u2"], dropped: 4 },
      ]),
      unit("cu_e", "evaluate", ["train"], [{ status: "completed", lines: ["e1"] }]),
    ]);
    const r = await run(["jobs", "logs", "job_l", "-f", "--interval-ms", "250"]);
    assert.equal(r.code, 0, r.err);
    assert.equal(r.out, ["prepare  | p1", "prepare  | p2", "train    | t1", "train    | u1", "train    | u2", "evaluate | e1", ""].join("\n"));
    assert.match(r.err, /^train: attempt 2 \(the unit was retried\)$/m);
    assert.match(r.err, /^train: 4 lines were lost on the way/m);
    const reads = callsOf(api, "GetComputeUnitLogs").map((c) => [c.body["unit_id"], c.body["after"] ?? "0"]);
    assert.deepEqual(reads, [
      ["cu_p", "0"],
      ["cu_p", "1"],
      // train is asked only once prepare has ended, then with its cursor.
      ["cu_t", "0"],
      ["cu_t", "1"],
      ["cu_t", "0"],
      ["cu_t", "1"],
      ["cu_e", "0"],
    ]);
    assert.deepEqual(r.sleeps, [250, 250, 250]);
  });

  it("follows as JSON lines, one object per log line", async () => {
    api.units.set("job_l", [unit("cu_t", "train", [], [{ status: "running", lines: ["a"] }, { status: "failed", lines: ["a", "b"] }])]);
    const r = await run(["jobs", "logs", "job_l", "-f", "--json"]);
    assert.equal(r.code, 0, r.err);
    const lines = r.out.trim().split("\n").map((l) => JSON.parse(l) as Record<string, unknown>);
    assert.deepEqual(lines.map((l) => [l["unit_name"], l["seq"], l["text"], l["stream"]]), [["train", "1", "a", "stdout"], ["train", "2", "b", "stdout"]]);
  });

  it("rides out a transient server failure while following", async () => {
    api.units.set("job_l", [unit("cu_t", "train", [], [{ status: "running", lines: ["a"] }, { status: "completed", lines: ["a", "b"] }])]);
    const cap = captureIo();
    const clock = instantClock();
    // The read after the first wait fails, as a restarting server would answer.
    const sleep = clock.sleep;
    clock.sleep = async (ms) => {
      if (clock.sleeps.length === 0) api.failNext = { code: "INTERNAL_ERROR", message: "restarting" };
      await sleep(ms);
    };
    const code = await runCli(["jobs", "logs", "job_l", "-f"], depsFor(api, cap, clock));
    assert.equal(code, 0, cap.err());
    assert.equal(cap.out(), "a\nb\n");
    assert.equal(callsOf(api, "GetComputeUnitLogs").length, 3);
    assert.equal(clock.sleeps.length, 2);
  });
});

describe("gpuctl jobs logs -f follows the live events of a real control plane", function () {
  this.timeout(60_000);
  const plane = eventsPlane();
  const rates = { cpuCreditsPerMinute: 1, gpuCreditsPerMinute: 10 };
  /** Follows with a poll interval of ten minutes: whatever shows sooner came on the event stream. */
  const follow = (jobId: string, more: string[], onLine: (line: string) => void) =>
    runGpuctl(["jobs", "logs", jobId, "-f", "--interval-ms", "600000", ...more], { GPU_AGENT_URL: plane.cp.url, GPU_AGENT_API_KEY: plane.apiKey }, onLine);

  /** Starts the unit on a new node, as its agent would. */
  const start = async (unitId: string): Promise<{ node: string; attempt: UnitAttempt }> => {
    const node = await assignUnit(plane.db, unitId);
    const attempt = { unitId, attempt: 1 };
    await applyAccepted(plane.db, node, attempt, new Date());
    return { node, attempt };
  };
  /** Stores lines the unit's node sent, as a flush of the telemetry recorder does. */
  const log = async (node: string, attempt: UnitAttempt, firstLine: number, lines: string[]) => {
    plane.cp.plane.deps.telemetry.addLog(node, attempt, { stream: "stdout", lines, firstLine });
    await plane.cp.plane.deps.telemetry.flushAttempt(attempt);
  };
  const succeed = (node: string, attempt: UnitAttempt) =>
    applyFinished(plane.db, node, attempt, { outcome: "succeeded", exitCode: 0, error: "", runSeconds: 1 }, rates, new Date());

  /** A job of two units, prepare then train: prepare wrote "split 80/20" and completed, train runs and wrote `trainLine`. */
  const trainingUnderway = async (trainLine: string) => {
    const job = await seedJob(plane.db, plane.customerId, ["prepare", "train"]);
    const [prepareId, trainId] = job.units as [string, string];
    const prepare = await start(prepareId);
    await log(prepare.node, prepare.attempt, 0, ["split 80/20"]);
    await succeed(prepare.node, prepare.attempt);
    const train = await start(trainId);
    await log(train.node, train.attempt, 0, [trainLine]);
    return { jobId: job.jobId, prepare, train };
  };

  it("prints what the units wrote so far in DAG order, then each new line as it is stored, and exits 0 when the job ends", async () => {
    const { jobId, train } = await trainingUnderway("epoch 1");
    const lines: string[] = [];
    const result = await follow(jobId, [], (line) => {
      lines.push(line);
      // Each step is taken once the previous line was printed: the process saw it live.
      if (line === "train   | epoch 1") void log(train.node, train.attempt, 1, ["epoch 2"]);
      if (line === "train   | epoch 2") void succeed(train.node, train.attempt);
    });
    assert.equal(result.code, 0, result.stderr);
    assert.deepEqual(lines, ["prepare | split 80/20", "train   | epoch 1", "train   | epoch 2"]);
    assert.equal(result.stderr, "");
  });

  it("prints only the unit --unit picks, from its tail and then live", async () => {
    const { jobId, prepare, train } = await trainingUnderway("step 1");
    const lines: string[] = [];
    const result = await follow(jobId, ["--unit", "train"], (line) => {
      lines.push(line);
      if (line === "step 1") {
        void (async () => {
          // A late line of the unit not picked is stored, then one of the picked unit.
          await log(prepare.node, prepare.attempt, 1, ["late prepare line"]);
          await log(train.node, train.attempt, 1, ["step 2"]);
        })();
      }
      if (line === "step 2") void succeed(train.node, train.attempt);
    });
    assert.equal(result.code, 0, result.stderr);
    assert.deepEqual(lines, ["step 1", "step 2"]);
  });
});
