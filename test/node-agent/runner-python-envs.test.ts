/**
 * A unit whose package carries requirements.txt, through the real runner: the environment is built (in the
 * unit's kind of sandbox) before the run, the unit runs with it, the build time is reported apart from the
 * run time, and a build that fails is the customer's failure with pip's words, before anything ran.
 */
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { chmod, mkdir, mkdtemp, readdir, rm, stat } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { create } from "@bufbuild/protobuf";
import { AssignSchema, InputFileSchema, Outcome, UnitRefSchema } from "../../src/gen/gpuagent/agent/v1/agent_pb.ts";
import type { Finished } from "../../src/gen/gpuagent/agent/v1/agent_pb.ts";
import { silentLogger } from "../../src/node-agent/logger.ts";
import type { PackageSources } from "../../src/node-agent/python-envs.ts";
import { createUnitRunner } from "../../src/node-agent/runner.ts";
import type { AgentMessageBody } from "../../src/node-agent/session.ts";
import type { UnitIsolation } from "../../src/node-agent/unit-sandbox.ts";
import { systemClock } from "../../src/platform/clock.ts";
import { probedSandbox, sha256, startBlobServer, zipOf } from "./helpers.ts";
import type { BlobServer } from "./helpers.ts";
import { startWheelIndex, writeWheelhouse } from "./wheels.ts";
import type { WheelIndex, WheelSpec } from "./wheels.ts";

const WHEELS: WheelSpec[] = [
  { name: "alpha_util", version: "1.0.0" },
  { name: "beta_tools", version: "2.1.0", requires: ["alpha_util>=1"] },
];

/** Writes which versions it imported, and from where, into its output. */
const TRAIN_PY = `
import json, os, sys
import alpha_util, beta_tools
with open(os.path.join(os.environ["GPU_AGENT_OUTPUT_DIR"], "seen.json"), "w") as f:
    json.dump({"beta": beta_tools.VERSION, "alpha": alpha_util.VERSION, "prefix": sys.prefix, "venv": os.environ.get("VIRTUAL_ENV")}, f)
`;

describe("units with a Python environment", function () {
  // Each case builds a real environment with pip (a few seconds on a busy machine).
  this.timeout(60_000);

  let server: BlobServer;
  let index: WheelIndex;
  let sandbox: UnitIsolation;
  let root: string;
  let wheelhouse: string;
  let messages: AgentMessageBody[];

  const finishedOf = (unitId: string) =>
    messages.flatMap((m) => (m.case === "finished" && m.value.unit?.unitId === unitId ? [m.value] : [])) as Finished[];

  const newRunner = (isolation: UnitIsolation, sources: PackageSources) =>
    createUnitRunner({
      dataDir: path.join(root, "data"),
      nodeCredential: "nc_test",
      send: (body) => void messages.push(body),
      gpuIndexes: () => [],
      maxConcurrentUnits: 4,
      clock: systemClock,
      logger: silentLogger,
      killGraceMs: 500,
      isolation,
      pythonEnvs: { sources },
    });

  /** Runs one cpu unit of a package made of `files`; returns its Finished and what it uploaded. */
  async function runUnit(runner: ReturnType<typeof createUnitRunner>, files: Record<string, string>) {
    const unitId = randomUUID();
    const zip = await zipOf(files);
    const key = `${unitId}/package.zip`;
    server.blobs.set(key, zip);
    await runner.assign(
      create(AssignSchema, {
        assignmentId: randomUUID(),
        unit: create(UnitRefSchema, { unitId, attempt: 1 }),
        jobId: randomUUID(),
        kind: "cpu",
        gpuIndex: -1,
        entrypoint: "train.py",
        maxRuntimeSeconds: 50,
        artifactUploadUrl: `${server.url}/artifacts/${unitId}`,
        inputs: [create(InputFileSchema, { role: "package", name: "package.zip", url: `${server.url}/blobs/${encodeURIComponent(key)}`, sha256: sha256(zip), sizeBytes: BigInt(zip.length) })],
      }),
    );
    const finished = finishedOf(unitId);
    assert.equal(finished.length, 1);
    const uploads = [...server.uploads.keys()].filter((k) => k.startsWith(`${unitId}/`)).map((k) => k.slice(unitId.length + 1));
    const seen = server.uploads.get(`${unitId}/seen.json`)?.body.toString();
    return { finished: finished[0] as Finished, uploads, seen: seen === undefined ? undefined : (JSON.parse(seen) as Record<string, string>) };
  }

  before(async () => {
    sandbox = await probedSandbox();
    server = await startBlobServer();
    index = await startWheelIndex(WHEELS);
  });
  after(async () => {
    await index.close();
    await server.close();
  });
  beforeEach(async () => {
    root = await mkdtemp(path.join(os.tmpdir(), "runner-envs-"));
    // Without the sandbox a root agent's units run as nobody, who must pass through to the data directory.
    await chmod(root, 0o755);
    wheelhouse = path.join(root, "wheelhouse");
    await mkdir(wheelhouse);
    await writeWheelhouse(wheelhouse, WHEELS);
    messages = [];
  });
  afterEach(async () => {
    await rm(root, { recursive: true, force: true });
  });

  for (const mode of ["bubblewrap", "none"] as const) {
    it(`runs the unit with its requirements, built once, the build reported apart from the run (isolation ${mode})`, async () => {
      const runner = newRunner(mode === "none" ? { mechanism: "none" } : sandbox, { findLinks: [wheelhouse] });
      const pkg = { "train.py": TRAIN_PY, "requirements.txt": "beta_tools==2.1.0\n" };
      const first = await runUnit(runner, pkg);
      assert.equal(first.finished.outcome, Outcome.SUCCEEDED, first.finished.error);
      assert.equal(first.finished.envBuilt, true);
      assert.ok(first.finished.envBuildSeconds > 0);
      assert.ok(first.finished.runSeconds > 0);
      assert.deepEqual({ beta: first.seen?.["beta"], alpha: first.seen?.["alpha"] }, { beta: "2.1.0", alpha: "1.0.0" });
      assert.equal(first.seen?.["prefix"], first.seen?.["venv"], "the unit's interpreter is the environment's");

      const second = await runUnit(runner, pkg);
      assert.equal(second.finished.outcome, Outcome.SUCCEEDED, second.finished.error);
      assert.equal(second.finished.envBuilt, false);
      assert.equal(second.finished.envBuildSeconds, 0);
      assert.equal(second.seen?.["prefix"], first.seen?.["prefix"]);
    });
  }

  it("fails a unit whose requirements cannot be met with pip's message: FAILED, nothing ran, nothing uploaded", async () => {
    const runner = newRunner(sandbox, { findLinks: [wheelhouse] });
    const { finished, uploads } = await runUnit(runner, { "train.py": TRAIN_PY, "requirements.txt": "beta_tools==9.0\n" });
    assert.equal(finished.outcome, Outcome.FAILED);
    assert.match(finished.error, /No matching distribution found for beta_tools==9\.0/);
    assert.ok(!finished.error.includes(root), finished.error);
    assert.equal(finished.runSeconds, 0);
    assert.equal(finished.envBuilt, false);
    assert.ok(finished.envBuildSeconds > 0);
    assert.deepEqual(uploads, []);
  });

  it("fails a unit whose package needs another Python version before anything is built", async () => {
    const runner = newRunner(sandbox, { findLinks: [wheelhouse] });
    const { finished } = await runUnit(runner, { "train.py": TRAIN_PY, "gpu-agent.json": JSON.stringify({ python: "3.0" }) });
    assert.equal(finished.outcome, Outcome.FAILED);
    assert.match(finished.error, /needs Python 3\.0/);
    assert.equal(finished.runSeconds, 0);
  });

  it("builds from the owner's package index, which the build sandbox reaches through the agent's proxy only", async () => {
    const runner = newRunner(sandbox, { indexUrl: index.url, findLinks: [] });
    const { finished, seen } = await runUnit(runner, { "train.py": TRAIN_PY, "requirements.txt": "beta_tools\n" });
    assert.equal(finished.outcome, Outcome.SUCCEEDED, finished.error);
    assert.equal(seen?.["beta"], "2.1.0");
    // The index listens on the host's 127.0.0.1, which is not the sandbox's loopback: only the proxy reached it.
    assert.ok(index.requests.includes("/simple/beta-tools/"), index.requests.join(" "));
    assert.deepEqual(await readdir(path.join(root, "data", "envs")).then((names) => names.filter((n) => n.startsWith("."))), [], "the proxy's directory is gone with its build");
  });

  it("fails a build whose index sends pip to another host: the proxy refuses it (403), and the customer reads which", async () => {
    const elsewhere = await startWheelIndex(WHEELS);
    const redirecting = await startWheelIndex(WHEELS, { filesAt: elsewhere.origin });
    try {
      const runner = newRunner(sandbox, { indexUrl: redirecting.url, findLinks: [] });
      const { finished, uploads } = await runUnit(runner, { "train.py": TRAIN_PY, "requirements.txt": "alpha_util\n" });
      assert.equal(finished.outcome, Outcome.FAILED);
      const refused = elsewhere.origin.replace("http://", "");
      assert.match(finished.error, /HTTP error 403/);
      assert.ok(finished.error.endsWith(`(the build may reach only this node's package sources; refused: ${refused})`), finished.error);
      assert.ok(redirecting.requests.includes("/simple/alpha-util/"), redirecting.requests.join(" "));
      assert.deepEqual(elsewhere.requests, [], "nothing reached the other host");
      assert.equal(finished.runSeconds, 0);
      assert.deepEqual(uploads, []);
    } finally {
      await redirecting.close();
      await elsewhere.close();
    }
  });

  it("builds from an index that serves its files from another host once the owner allows that host (--pip-allow-host)", async () => {
    const files = await startWheelIndex(WHEELS);
    const redirecting = await startWheelIndex(WHEELS, { filesAt: files.origin });
    try {
      const runner = newRunner(sandbox, { indexUrl: redirecting.url, findLinks: [], allowedHosts: [files.origin.replace("http://", "")] });
      const { finished, seen } = await runUnit(runner, { "train.py": TRAIN_PY, "requirements.txt": "beta_tools\n" });
      assert.equal(finished.outcome, Outcome.SUCCEEDED, finished.error);
      assert.deepEqual({ beta: seen?.["beta"], alpha: seen?.["alpha"] }, { beta: "2.1.0", alpha: "1.0.0" });
      assert.ok(redirecting.requests.includes("/simple/beta-tools/"), redirecting.requests.join(" "));
      assert.ok(files.requests.some((r) => r.startsWith("/files/beta_tools-")), files.requests.join(" "));
    } finally {
      await redirecting.close();
      await files.close();
    }
  });

  it("keeps the environment inside the agent's private data directory, where a sandboxed unit still runs with it, seeing it at /unit-env", async () => {
    const runner = newRunner(sandbox, { findLinks: [wheelhouse] });
    const { finished, seen } = await runUnit(runner, { "train.py": TRAIN_PY, "requirements.txt": "alpha_util\nbeta_tools\n" });
    assert.equal(finished.outcome, Outcome.SUCCEEDED, finished.error);
    const dataDir = path.join(root, "data");
    assert.equal((await readdir(path.join(dataDir, "envs"))).filter((name) => !name.startsWith(".")).length, 1, "the environment is in the data directory");
    // Not at its host path, which would show the data directory in the unit's interpreter path and environment.
    assert.deepEqual({ prefix: seen?.["prefix"], venv: seen?.["venv"] }, { prefix: "/unit-env", venv: "/unit-env" });
    assert.equal((await stat(dataDir)).mode & 0o077, 0, "no other user may enter the data directory");
  });
});
