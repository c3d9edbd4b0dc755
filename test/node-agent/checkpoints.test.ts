import assert from "node:assert/strict";
import { mkdtemp, rm, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { create } from "@bufbuild/protobuf";
import { UnitRefSchema } from "../../src/gen/gpuagent/agent/v1/agent_pb.ts";
import type { AgentMessageBody } from "../../src/node-agent/session.ts";
import { createCheckpointUploader } from "../../src/node-agent/checkpoints.ts";
import { systemClock } from "../../src/platform/clock.ts";
import type { BlobServer } from "./helpers.ts";
import { sha256, startBlobServer } from "./helpers.ts";

const silent = { debug() {}, info() {}, warn() {}, error() {} };

describe("node agent: a unit's checkpoint uploads", () => {
  let server: BlobServer;
  let dir: string;
  let sent: AgentMessageBody[];
  const unit = create(UnitRefSchema, { unitId: "00000000-0000-4000-8000-000000000001", attempt: 2 });

  beforeEach(async () => {
    server = await startBlobServer();
    dir = await mkdtemp(join(tmpdir(), "checkpoints-"));
    sent = [];
  });
  afterEach(async () => {
    await server.close();
    await rm(dir, { recursive: true, force: true });
  });

  const uploader = (overrides: { maxBytes?: number; uploadUrl?: string } = {}) =>
    createCheckpointUploader({
      unit,
      checkpointDir: dir,
      stagingDir: join(dir, "..", `${dir.split("/").at(-1)!}.staging`),
      uploadUrl: overrides.uploadUrl ?? `${server.url}/artifacts/ckpt`,
      maxBytes: overrides.maxBytes ?? 1024,
      nodeCredential: "nc_test",
      tries: 2,
      untrustedOwner: true,
      clock: systemClock,
      logger: silent,
      send: (body) => sent.push(body),
    });
  const announced = () => sent.flatMap((m) => (m.case === "checkpointReady" ? [[m.value.name, m.value.sha256, Number(m.value.sizeBytes), m.value.metrics]] : []));

  it("uploads an announced checkpoint with the node credential, then announces it with the sha256 of the bytes sent and the metrics", async () => {
    const bytes = Buffer.from("weights of epoch 3");
    await writeFile(join(dir, "epoch-3.ckpt"), bytes);
    const checkpoints = uploader();
    checkpoints.announce("epoch-3.ckpt", { epoch: 3 });
    await checkpoints.settle();
    const upload = server.uploads.get("ckpt/epoch-3.ckpt");
    assert.deepEqual(upload?.body, bytes);
    assert.equal(upload?.headers.authorization, "Bearer nc_test");
    assert.deepEqual(announced(), [["epoch-3.ckpt", sha256(bytes), bytes.length, { epoch: 3 }]]);
  });

  it("while one upload is under way, only the newest of the checkpoints announced meanwhile follows it", async () => {
    for (const epoch of [1, 2, 3]) await writeFile(join(dir, `epoch-${epoch}.ckpt`), `epoch ${epoch}`);
    const checkpoints = uploader();
    for (const epoch of [1, 2, 3]) checkpoints.announce(`epoch-${epoch}.ckpt`, { epoch });
    await checkpoints.settle();
    assert.deepEqual(announced().map((a) => a[0]), ["epoch-1.ckpt", "epoch-3.ckpt"]);
  });

  const skipped: { name: string; prepare: () => Promise<string> }[] = [
    { name: "a symbolic link", prepare: async () => (await symlink("/etc/hostname", join(dir, "link.ckpt")), "link.ckpt") },
    { name: "a file over the bound", prepare: async () => (await writeFile(join(dir, "big.ckpt"), Buffer.alloc(2048)), "big.ckpt") },
    { name: "a missing file", prepare: async () => "missing.ckpt" },
    { name: "a name with a path in it", prepare: async () => "../node.json" },
  ];
  for (const tc of skipped) {
    it(`skips ${tc.name}: nothing is uploaded or announced`, async () => {
      const name = await tc.prepare();
      const checkpoints = uploader();
      checkpoints.announce(name, {});
      await checkpoints.settle();
      assert.equal(server.uploads.size, 0);
      assert.deepEqual(announced(), []);
    });
  }

  it("announces nothing when the control plane keeps no checkpoints (no upload URL)", async () => {
    await writeFile(join(dir, "epoch-1.ckpt"), "x");
    const checkpoints = uploader({ uploadUrl: "" });
    checkpoints.announce("epoch-1.ckpt", {});
    await checkpoints.settle();
    assert.deepEqual([server.uploads.size, sent.length], [0, 0]);
  });
});
