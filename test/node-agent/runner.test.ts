/**
 * Runs real Python through the real runner, in the real sandbox (bubblewrap) unless a test says
 * otherwise: the tiny-mlp example end to end, plus the walls (checksums, unsafe zips, deadlines,
 * cancel, environment). Inputs are served and artifacts received by a local HTTP server on port 0.
 * The sandbox's own walls are test/node-agent/unit-sandbox.test.ts.
 */
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { existsSync, readFileSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { create } from "@bufbuild/protobuf";
import type { MessageInitShape } from "@bufbuild/protobuf";
import { timestampFromMs, timestampMs } from "@bufbuild/protobuf/wkt";
import {
  AssignSchema,
  CancelSchema,
  InputFileSchema,
  Outcome,
  UnitRefSchema,
} from "../../src/gen/gpuagent/agent/v1/agent_pb.ts";
import type { ArtifactReady, Finished, Progress } from "../../src/gen/gpuagent/agent/v1/agent_pb.ts";
import { silentLogger } from "../../src/node-agent/logger.ts";
import { InputCache } from "../../src/node-agent/input-cache.ts";
import { createUnitRunner } from "../../src/node-agent/runner.ts";
import type { UnitRunner, UnitRunnerOptions } from "../../src/node-agent/runner.ts";
import type { AgentMessageBody } from "../../src/node-agent/session.ts";
import type { UnitIsolation } from "../../src/node-agent/unit-sandbox.ts";
import { systemClock } from "../../src/platform/clock.ts";
import { probedSandbox, processesOfUid, sha256, startBlobServer, waitFor, zipOf } from "./helpers.ts";
import type { BlobServer } from "./helpers.ts";

/** The Assign fields these tests vary. */
type AssignInit = Pick<MessageInitShape<typeof AssignSchema>, "kind" | "gpuIndex" | "args" | "inputs" | "maxRuntimeSeconds" | "deadline" | "env" | "diskMb">;

const exampleDir = path.resolve(import.meta.dirname, "../../examples/tiny-mlp");
const CREDENTIAL = "nc_test_credential";

/** Collects what the runner sends and finds messages by unit. */
function recorder() {
  const messages: AgentMessageBody[] = [];
  const of = <C extends AgentMessageBody["case"]>(kind: C, unitId: string) =>
    messages
      .filter((m): m is Extract<AgentMessageBody, { case: C }> => m.case === kind)
      .map((m) => m.value)
      .filter((v) => ("unit" in v ? v.unit?.unitId === unitId : false));
  return {
    messages,
    send: (body: AgentMessageBody) => void messages.push(body),
    finished: (unitId: string) => of("finished", unitId) as Finished[],
    progress: (unitId: string) => of("progress", unitId) as Progress[],
    artifacts: (unitId: string) => of("artifactReady", unitId) as ArtifactReady[],
    logLines: (unitId: string) =>
      messages.flatMap((m) => (m.case === "log" && m.value.unit?.unitId === unitId ? m.value.lines : [])),
  };
}

/** True once `pid` no longer runs (gone, or a zombie nobody reaped yet). */
function processGone(pid: number): boolean {
  try {
    const status = readFileSync(`/proc/${pid}/status`, "utf8");
    return /^State:\s+Z/m.test(status);
  } catch {
    return true;
  }
}

/** A script that starts a grandchild, reports its uid and both pids, ignores SIGTERM and sleeps forever. */
const FOREVER_PY = `
import os, signal, subprocess, sys, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(1000)"])
print(f"pids {os.getuid()} {os.getpid()} {child.pid}", flush=True)
while True:
    time.sleep(1)
`;

/**
 * True once no process of the unit that printed `pidLine` ("pids UID PID PID") runs: in the sandbox its
 * pids are its namespace's own, so its unique uid is looked for; without it, its host pids.
 */
function unitProcessesGone(pidLine: string, sandboxed: boolean): boolean {
  const [uid, ...pids] = pidLine.split(" ").slice(1).map(Number);
  if (sandboxed) return processesOfUid(uid as number).length === 0;
  return pids.every(processGone);
}

const ENV_PY = `
import json, os
with open(os.path.join(os.environ["GPU_AGENT_OUTPUT_DIR"], "env.json"), "w") as f:
    json.dump({"env": dict(os.environ), "uid": os.getuid(), "cwd": os.getcwd()}, f)
`;

describe("unit runner", function () {
  this.timeout(30_000);

  let server: BlobServer;
  let dataDir: string;
  let packageZip: Buffer;
  let rec: ReturnType<typeof recorder>;
  let runner: UnitRunner;
  let jobId: string;
  let sandbox: UnitIsolation;

  const newRunner = (extra: Partial<UnitRunnerOptions> = {}) =>
    createUnitRunner({
      dataDir,
      nodeCredential: CREDENTIAL,
      send: rec.send,
      gpuIndexes: () => [0],
      maxConcurrentUnits: 4,
      clock: systemClock,
      logger: silentLogger,
      killGraceMs: 500,
      isolation: sandbox,
      ...extra,
    });

  /** Puts `content` on the blob server and describes it as an input. */
  const input = (role: string, name: string, content: Buffer, override: { sha256?: string } = {}) => {
    const key = `${randomUUID()}/${name}`;
    server.blobs.set(key, content);
    return create(InputFileSchema, {
      role,
      name,
      url: `${server.url}/blobs/${encodeURIComponent(key)}`,
      sha256: override.sha256 ?? sha256(content),
      sizeBytes: BigInt(content.length),
    });
  };

  const assignFor = ({ unitId, ...init }: AssignInit & { unitId: string; stage: string }) =>
    create(AssignSchema, {
      assignmentId: randomUUID(),
      unit: create(UnitRefSchema, { unitId, attempt: 1 }),
      jobId,
      kind: "cpu",
      gpuIndex: -1,
      entrypoint: "train.py",
      maxRuntimeSeconds: 60,
      artifactUploadUrl: `${server.url}/artifacts/${unitId}`,
      ...init,
    });

  before(async () => {
    sandbox = await probedSandbox();
    server = await startBlobServer();
    packageZip = await zipOf({
      "train.py": readFileSync(path.join(exampleDir, "package/train.py")),
      "mlp.py": readFileSync(path.join(exampleDir, "package/mlp.py")),
    });
  });
  after(async () => {
    await server.close();
  });
  beforeEach(async () => {
    dataDir = await mkdtemp(path.join(os.tmpdir(), "gpu-agent-runner-"));
    rec = recorder();
    runner = newRunner();
    jobId = randomUUID();
  });
  afterEach(async () => {
    await runner.killAll();
    await rm(dataDir, { recursive: true, force: true });
  });

  it("runs the tiny-mlp example through prepare, train and evaluate", async () => {
    const dataset = readFileSync(path.join(exampleDir, "dataset.csv"));

    // prepare (cpu)
    const prepare = randomUUID();
    await runner.assign(
      assignFor({
        unitId: prepare,
        stage: "prepare",
        args: ["--stage", "prepare"],
        inputs: [input("package", "package.zip", packageZip), input("dataset", "dataset.csv", dataset)],
      }),
    );
    assert.equal(rec.messages[0]?.case, "accepted");
    const prepDone = rec.finished(prepare);
    assert.equal(prepDone.length, 1);
    assert.equal(prepDone[0]?.outcome, Outcome.SUCCEEDED, prepDone[0]?.error);
    const prepArtifacts = new Map(rec.artifacts(prepare).map((a) => [a.name, a]));
    assert.deepEqual([...prepArtifacts.keys()].sort(), ["dataset-stats.json", "prepare.log", "prepared.csv"]);
    assert.equal(prepArtifacts.get("prepare.log")?.kind, "logs");
    assert.equal(prepArtifacts.get("prepared.csv")?.kind, "other");
    for (const art of prepArtifacts.values()) {
      const upload = server.uploads.get(`${prepare}/${art.name}`);
      assert.ok(upload, `uploaded ${art.name}`);
      assert.equal(sha256(upload.body), art.sha256);
      assert.equal(BigInt(upload.body.length), art.sizeBytes);
      assert.equal(upload.headers.authorization, `Bearer ${CREDENTIAL}`);
      assert.equal(upload.headers["content-type"], "application/octet-stream");
    }
    assert.ok(server.uploads.get(`${prepare}/prepare.log`)?.body.toString().includes("prepared 400 rows"));
    assert.ok(rec.logLines(prepare).some((l) => l.includes("prepared 400 rows")));
    assert.equal(existsSync(path.join(dataDir, "work", `${prepare}-1`)), false, "work dir removed");
    const prepared = server.uploads.get(`${prepare}/prepared.csv`)?.body;
    assert.ok(prepared);

    // train (gpu 0)
    const train = randomUUID();
    await runner.assign(
      assignFor({
        unitId: train,
        stage: "train",
        kind: "gpu",
        gpuIndex: 0,
        args: ["--stage", "train", "--epochs", "6", "--min-epoch-seconds", "0.3"],
        inputs: [input("package", "package.zip", packageZip), input("artifact", "prepared.csv", prepared)],
      }),
    );
    const trainDone = rec.finished(train)[0];
    assert.equal(trainDone?.outcome, Outcome.SUCCEEDED, trainDone?.error);
    assert.equal(trainDone?.exitCode, 0);
    assert.ok((trainDone?.runSeconds ?? 0) >= 1.5, `ran ${trainDone?.runSeconds}s`);
    const progress = rec.progress(train);
    assert.ok(progress.length >= 3, `got ${progress.length} progress messages`);
    assert.ok(progress.every((p) => typeof p.metrics["epoch"] === "number" && typeof p.metrics["loss"] === "number"));
    assert.equal(progress.at(-1)?.progress, 1);
    assert.equal(progress.at(-1)?.metrics["epoch"], 6);
    // Reports and lines are numbered per attempt, so the control plane stores a resent one once.
    assert.deepEqual(
      progress.map((p) => p.sample),
      progress.map((_, i) => BigInt(i)),
    );
    assert.ok(progress.every((p) => p.at !== undefined && timestampMs(p.at) <= Date.now()));
    const batches = rec.messages.flatMap((m) => (m.case === "log" && m.value.unit?.unitId === train && m.value.stream === "stdout" ? [m.value] : []));
    assert.ok(batches.length >= 1);
    let expected = 0n;
    for (const b of batches) {
      assert.equal(b.firstLine, expected, "each batch starts where the previous one ended");
      expected += BigInt(b.lines.length);
    }
    const trainArtifacts = new Map(rec.artifacts(train).map((a) => [a.name, a]));
    assert.equal(trainArtifacts.get("model.ckpt")?.kind, "checkpoint");
    assert.equal(trainArtifacts.get("metrics.json")?.kind, "metrics");
    const model = server.uploads.get(`${train}/model.ckpt`)?.body;
    assert.ok(model);
    assert.equal(sha256(model), trainArtifacts.get("model.ckpt")?.sha256);

    // evaluate (cpu)
    const evaluate = randomUUID();
    await runner.assign(
      assignFor({
        unitId: evaluate,
        stage: "evaluate",
        args: ["--stage", "evaluate"],
        inputs: [
          input("package", "package.zip", packageZip),
          input("artifact", "model.ckpt", model),
          input("artifact", "prepared.csv", prepared),
        ],
      }),
    );
    const evalDone = rec.finished(evaluate)[0];
    assert.equal(evalDone?.outcome, Outcome.SUCCEEDED, evalDone?.error);
    assert.equal(rec.progress(evaluate).at(-1)?.progress, 1);
    const evalMetrics = JSON.parse(server.uploads.get(`${evaluate}/eval-metrics.json`)?.body.toString() ?? "{}") as {
      accuracy: number;
    };
    assert.ok(evalMetrics.accuracy >= 0.8, `accuracy ${evalMetrics.accuracy}`);
    assert.equal(rec.artifacts(evaluate).find((a) => a.name === "eval-metrics.json")?.kind, "metrics");
  });

  it("takes a dataset and package it already fetched from its cache instead of downloading them again", async () => {
    runner = newRunner({ inputCache: new InputCache(path.join(dataDir, "cache"), 1 << 30, silentLogger) });
    const dataset = readFileSync(path.join(exampleDir, "dataset.csv"));
    const first = randomUUID();
    await runner.assign(
      assignFor({
        unitId: first,
        stage: "prepare",
        args: ["--stage", "prepare"],
        inputs: [input("package", "package.zip", packageZip), input("dataset", "dataset.csv", dataset)],
      }),
    );
    assert.equal(rec.finished(first)[0]?.outcome, Outcome.SUCCEEDED, rec.finished(first)[0]?.error);
    // The same bytes behind URLs that answer 404: only the cache can supply them.
    const gone = (role: string, name: string, content: Buffer) =>
      create(InputFileSchema, { role, name, url: `${server.url}/blobs/${randomUUID()}`, sha256: sha256(content), sizeBytes: BigInt(content.length) });
    const second = randomUUID();
    await runner.assign(
      assignFor({
        unitId: second,
        stage: "prepare",
        args: ["--stage", "prepare"],
        inputs: [gone("package", "package.zip", packageZip), gone("dataset", "dataset.csv", dataset)],
      }),
    );
    assert.equal(rec.finished(second)[0]?.outcome, Outcome.SUCCEEDED, rec.finished(second)[0]?.error);
    assert.equal(server.uploads.get(`${second}/prepared.csv`)?.body.toString(), server.uploads.get(`${first}/prepared.csv`)?.body.toString());
  });

  it("reports NODE_ERROR when an input's sha256 does not match", async () => {
    const unitId = randomUUID();
    await runner.assign(
      assignFor({
        unitId,
        stage: "prepare",
        args: ["--stage", "prepare"],
        inputs: [
          input("package", "package.zip", packageZip),
          input("dataset", "dataset.csv", Buffer.from("x1,x2,label\n"), { sha256: "0".repeat(64) }),
        ],
      }),
    );
    const done = rec.finished(unitId)[0];
    assert.equal(done?.outcome, Outcome.NODE_ERROR);
    assert.match(done?.error ?? "", /sha256 mismatch/);
    assert.equal(rec.artifacts(unitId).length, 0);
  });

  it("refuses a package with a ../ entry and writes nothing outside it", async () => {
    runner = newRunner({ keepWork: true });
    // yazl refuses to write "../evil", so write "xx/evil" and patch the name in place.
    const honest = await zipOf({ "train.py": "print('hi')\n", "xx/evil": "pwned\n" });
    const evil = Buffer.from(honest.toString("latin1").replaceAll("xx/evil", "../evil"), "latin1");
    const unitId = randomUUID();
    await runner.assign(
      assignFor({ unitId, stage: "train", inputs: [input("package", "package.zip", evil)] }),
    );
    const done = rec.finished(unitId)[0];
    assert.equal(done?.outcome, Outcome.FAILED);
    assert.equal(done?.error, 'package refused: entry "../evil" has a ".." segment, which would climb out of the package');
    const workDir = path.join(dataDir, "work", `${unitId}-1`);
    assert.equal(existsSync(path.join(workDir, "evil")), false);
  });

  for (const mode of ["bubblewrap", "none"] as const) {
    const useMode = () => {
      if (mode === "none") runner = newRunner({ isolation: { mechanism: "none" } });
    };

    it(`kills a script at its deadline, with its child processes, as TIMED_OUT (isolation ${mode})`, async () => {
      useMode();
      const unitId = randomUUID();
      const started = Date.now();
      const pkg = await zipOf({ "train.py": FOREVER_PY });
      await runner.assign(
        assignFor({
          unitId,
          stage: "train",
          maxRuntimeSeconds: 60,
          deadline: timestampFromMs(Date.now() + 1500),
          inputs: [input("package", "package.zip", pkg)],
        }),
      );
      const elapsed = Date.now() - started;
      const done = rec.finished(unitId)[0];
      assert.equal(done?.outcome, Outcome.TIMED_OUT, done?.error);
      assert.ok(elapsed < 6000, `took ${elapsed} ms`);
      const pidLine = rec.logLines(unitId).find((l) => l.startsWith("pids "));
      assert.ok(pidLine, "script reported its pids");
      assert.equal(pidLine.split(" ").length, 4);
      assert.ok(unitProcessesGone(pidLine, mode === "bubblewrap"), `processes of ${pidLine} are gone`);
    });

    it(`kills a script on Cancel as CANCELLED (isolation ${mode})`, async () => {
      useMode();
      const unitId = randomUUID();
      const pkg = await zipOf({ "train.py": FOREVER_PY });
      const done = runner.assign(assignFor({ unitId, stage: "train", inputs: [input("package", "package.zip", pkg)] }));
      const pidLine = await waitFor("pids", () => rec.logLines(unitId).find((l) => l.startsWith("pids ")));
      assert.deepEqual(runner.running().map((u) => u.unitId), [unitId]);
      runner.cancel(create(CancelSchema, { unit: create(UnitRefSchema, { unitId, attempt: 1 }), reason: "user" }));
      // A Cancel for a unit this node never saw changes nothing.
      runner.cancel(create(CancelSchema, { unit: create(UnitRefSchema, { unitId: randomUUID(), attempt: 1 }) }));
      await done;
      assert.equal(rec.finished(unitId)[0]?.outcome, Outcome.CANCELLED);
      assert.ok(unitProcessesGone(pidLine, mode === "bubblewrap"), `processes of ${pidLine} are gone`);
      assert.deepEqual(runner.running(), []);
    });
  }

  it("gives the child none of the agent's environment, only its own variables", async () => {
    process.env["SECRET_TOKEN"] = "do-not-leak";
    try {
      const unitId = randomUUID();
      const pkg = await zipOf({ "train.py": ENV_PY });
      const a = assignFor({
        unitId,
        stage: "train",
        kind: "gpu",
        gpuIndex: 0,
        env: { LEARNING_RATE: "0.01", GPU_AGENT_OUTPUT_DIR: "/etc" },
        inputs: [input("package", "package.zip", pkg), input("dataset", "data.csv", Buffer.from("a,b\n"))],
      });
      // Delivered twice (at-least-once): accepted twice, run once.
      await Promise.all([runner.assign(a), runner.assign(a)]);
      assert.equal(rec.messages.filter((m) => m.case === "accepted").length, 2);
      assert.equal(rec.finished(unitId).length, 1);
      assert.equal(rec.finished(unitId)[0]?.outcome, Outcome.SUCCEEDED, rec.finished(unitId)[0]?.error);
      const report = JSON.parse(server.uploads.get(`${unitId}/env.json`)?.body.toString() ?? "{}") as {
        env: Record<string, string>;
        uid: number;
        cwd: string;
      };
      // In the sandbox the unit's directories sit at the same short paths on every node.
      assert.equal(report.env["SECRET_TOKEN"], undefined);
      assert.equal(report.env["LEARNING_RATE"], "0.01");
      assert.equal(report.env["CUDA_VISIBLE_DEVICES"], "0");
      assert.equal(report.env["GPU_AGENT_OUTPUT_DIR"], "/unit/output");
      assert.equal(report.env["GPU_AGENT_DATASET"], "/unit/dataset/data.csv");
      assert.equal(report.env["GPU_AGENT_PACKAGE_DIR"], "/unit/package");
      assert.equal(report.env["GPU_AGENT_INPUT_DIR"], "/unit/inputs");
      assert.equal(report.env["GPU_AGENT_STAGE"], "train");
      assert.equal(report.env["GPU_AGENT_JOB_ID"], jobId);
      assert.equal(report.env["HOME"], "/unit");
      assert.equal(report.env["GPU_AGENT_CHECKPOINT_DIR"], "/unit/checkpoints");
      assert.equal(report.env["GPU_AGENT_RESUME_DIR"], "/unit/resume");
      assert.equal(report.cwd, "/unit/package");
      const allowed = new Set([
        "PATH", "LANG", "HOME", "PYTHONUNBUFFERED", "PYTHONDONTWRITEBYTECODE", "CUDA_VISIBLE_DEVICES",
        "GPU_AGENT_STAGE", "GPU_AGENT_UNIT_ID", "GPU_AGENT_ATTEMPT", "GPU_AGENT_JOB_ID", "GPU_AGENT_DATASET",
        "GPU_AGENT_PACKAGE_DIR", "GPU_AGENT_INPUT_DIR", "GPU_AGENT_OUTPUT_DIR", "GPU_AGENT_CHECKPOINT_DIR",
        "GPU_AGENT_RESUME_DIR", "LEARNING_RATE",
        // python itself may add this one on some builds
        "LC_CTYPE",
      ]);
      assert.deepEqual(Object.keys(report.env).filter((k) => !allowed.has(k)), []);
      if (process.getuid?.() === 0) assert.notEqual(report.uid, 0, "a root agent runs units unprivileged");
    } finally {
      delete process.env["SECRET_TOKEN"];
    }
  });

  it("passes the agent's PATH it is given on to a unit that runs as the agent's own user (isolation none)", async () => {
    const agentPath = `/opt/gpu-agent-probe/bin:${process.env["PATH"] ?? ""}`;
    runner = newRunner({ unitUser: undefined, agentPath, isolation: { mechanism: "none" } });
    const unitId = randomUUID();
    const pkg = await zipOf({ "train.py": ENV_PY });
    await runner.assign(assignFor({ unitId, stage: "train", inputs: [input("package", "package.zip", pkg)] }));
    assert.equal(rec.finished(unitId)[0]?.outcome, Outcome.SUCCEEDED, rec.finished(unitId)[0]?.error);
    const report = JSON.parse(server.uploads.get(`${unitId}/env.json`)?.body.toString() ?? "{}") as { env: Record<string, string> };
    // A pyenv shim may put its own directories first; the agent's PATH follows them whole.
    assert.ok(report.env["PATH"]?.endsWith(agentPath), report.env["PATH"]);
  });

  it("rejects units it cannot take", async () => {
    const pkg = input("package", "package.zip", packageZip);
    await runner.assign(assignFor({ unitId: randomUUID(), stage: "train", kind: "gpu", gpuIndex: 3, inputs: [pkg] }));
    runner.drain();
    await runner.assign(assignFor({ unitId: randomUUID(), stage: "train", inputs: [pkg] }));
    const rejected = rec.messages.flatMap((m) => (m.case === "rejected" ? [m.value] : []));
    assert.equal(rejected.length, 2);
    assert.match(rejected[0]?.reason ?? "", /no GPU with index 3/);
    assert.match(rejected[1]?.reason ?? "", /draining/);
    // Neither is a node that is only full: the control plane keeps these units away from it.
    assert.deepEqual(rejected.map((r) => r.busy), [false, false]);
    assert.equal(rec.messages.filter((m) => m.case === "finished").length, 0);
  });

  it("answers busy at its unit limit, and takes the same unit once the running one has finished", async () => {
    runner = newRunner({ maxConcurrentUnits: 1 });
    const first = randomUUID();
    const second = randomUUID();
    const sleeper = input("package", "package.zip", await zipOf({ "train.py": "import time\nprint('started', flush=True)\ntime.sleep(60)\n" }));
    const running = runner.assign(assignFor({ unitId: first, stage: "train", inputs: [sleeper] }));
    await waitFor("the first unit to start", () => rec.logLines(first).find((l) => l === "started"));
    const pkg = input("package", "package.zip", await zipOf({ "train.py": "print('second')\n" }));
    await runner.assign(assignFor({ unitId: second, stage: "train", inputs: [pkg] }));
    const rejected = rec.messages.flatMap((m) => (m.case === "rejected" ? [m.value] : []));
    assert.deepEqual(
      rejected.map((r) => [r.unit?.unitId, r.reason, r.busy]),
      [[second, "node is at its limit of 1 concurrent units", true]],
    );
    runner.cancel(create(CancelSchema, { unit: create(UnitRefSchema, { unitId: first, attempt: 1 }), reason: "user" }));
    await running;
    await runner.assign(assignFor({ unitId: second, stage: "train", inputs: [pkg] }));
    assert.equal(rec.finished(second)[0]?.outcome, Outcome.SUCCEEDED, rec.finished(second)[0]?.error);
  });

  it("reports a failing script as FAILED with its stderr", async () => {
    const unitId = randomUUID();
    await runner.assign(
      assignFor({
        unitId,
        stage: "prepare",
        args: ["--stage", "prepare"],
        inputs: [input("package", "package.zip", packageZip), input("dataset", "dataset.csv", Buffer.from("a,b\n1,2\n"))],
      }),
    );
    const done = rec.finished(unitId)[0];
    assert.equal(done?.outcome, Outcome.FAILED);
    assert.equal(done?.exitCode, 2);
    assert.match(done?.error ?? "", /header must be x1,x2,label/);
    // The log still comes back: it is what the customer needs to debug.
    assert.ok(rec.artifacts(unitId).some((a) => a.name === "prepare.log"));
  });

  it("stops a unit whose work directory outgrows its disk_mb as FAILED \"disk limit exceeded\", uploading nothing", async () => {
    runner = newRunner({ diskCheckMs: 100 });
    const unitId = randomUUID();
    const writer = `
import os, time
out = os.path.join(os.environ["GPU_AGENT_OUTPUT_DIR"], "huge.bin")
with open(out, "wb") as f:
    for _ in range(400):
        f.write(os.urandom(64 * 1024))
        f.flush()
        os.fsync(f.fileno())
        time.sleep(0.01)
print("wrote everything", flush=True)
`;
    await runner.assign(
      assignFor({
        unitId,
        stage: "train",
        args: [],
        diskMb: 2,
        inputs: [input("package", "package.zip", await zipOf({ "train.py": writer })), input("dataset", "d.csv", Buffer.from("x"))],
      }),
    );
    const done = rec.finished(unitId)[0];
    assert.equal(done?.outcome, Outcome.FAILED, done?.error);
    assert.match(done?.error ?? "", /disk limit exceeded/);
    assert.ok(!rec.logLines(unitId).includes("wrote everything"), "killed before it finished writing");
    assert.equal(rec.artifacts(unitId).length, 0);
  });
});
