/**
 * The agent's side of the artifact bounds, with real Python through the real runner: outputs over
 * the Assign's artifacts_max_bytes fail the unit before any byte is uploaded, and an upload the
 * control plane refuses (its real upload route, a customer at the artifact quota) fails the unit
 * with the control plane's reason instead of blaming the node.
 */
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { create } from "@bufbuild/protobuf";
import { silentLogger } from "../../src/node-agent/logger.ts";
import { createUnitRunner } from "../../src/node-agent/runner.ts";
import type { AgentMessageBody } from "../../src/node-agent/session.ts";
import { AssignSchema, InputFileSchema, Outcome, UnitRefSchema } from "../../src/gen/gpuagent/agent/v1/agent_pb.ts";
import type { ArtifactReady, Finished } from "../../src/gen/gpuagent/agent/v1/agent_pb.ts";
import { systemClock } from "../../src/platform/clock.ts";
import { defaultLimits } from "../../src/platform/config.ts";
import { sha256, startBlobServer, zipOf } from "../node-agent/helpers.ts";
import type { BlobServer } from "../node-agent/helpers.ts";
import type { TestControlPlane } from "../support/control-plane.ts";
import { createCustomer, startTestControlPlane } from "../support/control-plane.ts";
import { seedArtifact, seedJob, seedNode } from "./support.ts";

/** Writes `sizes` (name → bytes) into the unit's output directory. */
const writerPy = (sizes: Record<string, number>) => `
import os
out = os.environ["GPU_AGENT_OUTPUT_DIR"]
for name, size in ${JSON.stringify(sizes)}.items():
    with open(os.path.join(out, name), "wb") as f:
        f.write(b"x" * size)
print("wrote", flush=True)
`;

describe("the agent and the per-unit artifact bound", function () {
  this.timeout(60_000);
  let server: BlobServer;
  let dataDir: string;
  let messages: AgentMessageBody[];

  before(async () => {
    server = await startBlobServer();
  });
  after(async () => {
    await server.close();
  });
  beforeEach(async () => {
    dataDir = await mkdtemp(path.join(os.tmpdir(), "gpu-agent-bound-"));
    messages = [];
  });
  afterEach(async () => {
    await rm(dataDir, { recursive: true, force: true });
  });

  const runner = (nodeCredential = "nc_test", logFileMaxBytes?: number) =>
    createUnitRunner({
      ...(logFileMaxBytes === undefined ? {} : { logFileMaxBytes }),
      dataDir,
      nodeCredential,
      send: (body) => void messages.push(body),
      gpuIndexes: () => [],
      maxConcurrentUnits: 1,
      clock: systemClock,
      logger: silentLogger,
      killGraceMs: 500,
    });

  const input = (role: string, name: string, content: Buffer) => {
    const key = `${randomUUID()}/${name}`;
    server.blobs.set(key, content);
    return create(InputFileSchema, { role, name, url: `${server.url}/blobs/${encodeURIComponent(key)}`, sha256: sha256(content), sizeBytes: BigInt(content.length) });
  };

  async function assign(unitId: string, script: string, extra: { artifactsMaxBytes?: bigint; artifactUploadUrl?: string }) {
    return create(AssignSchema, {
      assignmentId: randomUUID(),
      unit: create(UnitRefSchema, { unitId, attempt: 1 }),
      jobId: randomUUID(),
      stage: "train",
      kind: "cpu",
      gpuIndex: -1,
      entrypoint: "train.py",
      maxRuntimeSeconds: 60,
      artifactUploadUrl: extra.artifactUploadUrl ?? `${server.url}/artifacts/${unitId}`,
      artifactsMaxBytes: extra.artifactsMaxBytes ?? 0n,
      inputs: [input("package", "package.zip", await zipOf({ "train.py": script })), input("dataset", "d.csv", Buffer.from("x"))],
    });
  }

  const finished = (unitId: string) =>
    messages.filter((m) => m.case === "finished" && m.value.unit?.unitId === unitId).map((m) => m.value as Finished)[0];
  const announced = (unitId: string) =>
    messages.filter((m) => m.case === "artifactReady" && m.value.unit?.unitId === unitId).map((m) => (m.value as ArtifactReady).name);
  const uploadedFor = (unitId: string) => [...server.uploads.keys()].filter((k) => k.startsWith(`${unitId}/`));

  it("fails a unit whose outputs pass artifacts_max_bytes, naming the bound and the largest outputs, and uploads none of them", async () => {
    const unitId = randomUUID();
    await runner().assign(await assign(unitId, writerPy({ "model.pt": 150_000, "notes.txt": 10 }), { artifactsMaxBytes: 100_000n }));
    const done = finished(unitId);
    assert.equal(done?.outcome, Outcome.FAILED, done?.error);
    assert.match(done?.error ?? "", /artifacts over the limit: the outputs total \d+ bytes, more than the 100000 bytes one compute unit may upload; nothing was uploaded/);
    assert.match(done?.error ?? "", /largest: model\.pt 150000 bytes/);
    assert.deepEqual(uploadedFor(unitId), []);
    assert.deepEqual(announced(unitId), []);
  });

  it("uploads every output of a unit within the bound", async () => {
    const unitId = randomUUID();
    await runner().assign(await assign(unitId, writerPy({ "model.pt": 50_000 }), { artifactsMaxBytes: 100_000n }));
    assert.equal(finished(unitId)?.outcome, Outcome.SUCCEEDED, finished(unitId)?.error);
    assert.deepEqual(uploadedFor(unitId).sort(), [`${unitId}/model.pt`, `${unitId}/train.log`]);
    assert.deepEqual(announced(unitId).sort(), ["model.pt", "train.log"]);
  });

  it("cuts the log file it writes at its bound, with a note, while every line still streams", async () => {
    const unitId = randomUUID();
    const chatty = `
for i in range(5000):
    print(f"line {i:05d} " + "x" * 40, flush=False)
`;
    await runner("nc_test", 20_000).assign(await assign(unitId, chatty, { artifactsMaxBytes: 100_000n }));
    assert.equal(finished(unitId)?.outcome, Outcome.SUCCEEDED, finished(unitId)?.error);
    const log = server.uploads.get(`${unitId}/train.log`)?.body.toString("utf8") ?? "";
    const lines = log.trimEnd().split("\n");
    assert.ok(Buffer.byteLength(log) < 20_000 + 200, `the log file is ${Buffer.byteLength(log)} bytes`);
    assert.equal(lines[0], `line 00000 ${"x".repeat(40)}`);
    assert.match(lines.at(-1) ?? "", /^\[gpu-agent\] this log file stops here: it reached its bound of 20000 bytes/);
    const streamed = messages.flatMap((m) => (m.case === "log" && m.value.unit?.unitId === unitId ? m.value.lines : []));
    assert.equal(streamed.length, 5000, "the control plane still got every line");
  });

  describe("against the control plane's upload route", () => {
    let cp: TestControlPlane;
    before(async () => {
      cp = await startTestControlPlane({ limits: { storage: { ...defaultLimits.storage, artifactsMaxCount: 1 } } });
    });
    after(async () => {
      await cp?.stop();
    });

    it("fails the unit with the control plane's STORAGE_QUOTA_EXCEEDED reason, not as the node's error", async () => {
      const { customerId } = await createCustomer(cp);
      const { db, blobs } = cp.plane.deps;
      const node = await seedNode(db, new Date());
      const earlier = await seedJob(db, customerId, { finishedAt: new Date() });
      await seedArtifact(db, blobs, { customerId, ...earlier }, "old.pt", Buffer.from("old"));
      const { unitId } = await seedJob(db, customerId, { nodeId: node.nodeId });

      await runner(node.credential).assign(
        await assign(unitId, writerPy({ "model.pt": 1000 }), {
          artifactsMaxBytes: BigInt(defaultLimits.storage.unitArtifactsMaxBytes),
          artifactUploadUrl: `${cp.url}/agent/v1/units/${unitId}/attempts/1/artifacts`,
        }),
      );
      const done = finished(unitId);
      assert.equal(done?.outcome, Outcome.FAILED, done?.error);
      assert.match(done?.error ?? "", /PUT answered HTTP 409: STORAGE_QUOTA_EXCEEDED storage quota reached: a customer may hold at most 1 artifacts/);
      assert.deepEqual(announced(unitId), []);
    });
  });
});
