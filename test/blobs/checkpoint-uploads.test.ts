/**
 * The agents' checkpoint upload route (`PUT /agent/v1/units/<unit>/attempts/<n>/checkpoints/<name>`,
 * src/blobs/unit-checkpoints.ts) against a node that does not play by the rules: the per-file bound, the
 * files on their way, the customer's artifact quota, only the running attempt's own node, only plain names;
 * and the announcement (CheckpointReady) records only a file stored with the bytes it names.
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { existsSync, readdirSync } from "node:fs";
import http from "node:http";
import { join } from "node:path";
import { applyCheckpointReady } from "../../src/jobs/lifecycle.ts";
import type { StorageQuotas } from "../../src/platform/config.ts";
import { defaultLimits } from "../../src/platform/config.ts";
import { findLatestCheckpoint } from "../../src/store/checkpoints.ts";
import { artifactUsage } from "../../src/store/storage.ts";
import type { TestControlPlane } from "../support/control-plane.ts";
import type { UploadSender } from "./support.ts";
import { seedFinishedJobArtifacts, seedNode, unitRunningOnNode, uploadRouteBackends } from "./support.ts";

type ErrorBody = { error: { code: string; message: string; details?: Record<string, unknown> } };
const sha256 = (bytes: Buffer) => createHash("sha256").update(bytes).digest("hex");

for (const backend of uploadRouteBackends) {
  describe(`checkpoint uploads within their bounds on ${backend.name}`, function () {
    this.timeout(60_000);
    const quotas: StorageQuotas = { ...defaultLimits.storage, unitArtifactsMaxBytes: 100_000, artifactsMaxCount: 3 };
    let cp: TestControlPlane;

    before(async () => {
      cp = await backend.start(quotas);
    });
    after(async () => {
      await cp?.stop();
    });

    /** A unit running on a node whose credential the test holds, the node's checkpoint upload, and the files stored. */
    async function runningUnit() {
      const u = await unitRunningOnNode(cp);
      const put = (name: string, body: Buffer, as?: UploadSender) => u.put("checkpoints", name, body, as);
      /** The checkpoint files stored for the unit, whatever their attempt. */
      const storedFiles = () => {
        const dir = join(cp.dataDir, "blobs", "artifacts", u.unitId, "checkpoints");
        return existsSync(dir) ? readdirSync(dir, { recursive: true, withFileTypes: true }).filter((e) => e.isFile()).map((e) => e.name) : [];
      };
      return { ...u, put, storedFiles };
    }

    it("stores a checkpoint and answers with the sha256 of the bytes that arrived", async () => {
      const u = await runningUnit();
      const bytes = Buffer.from("epoch 1 weights");
      const res = await u.put("epoch-1.ckpt", bytes);
      assert.equal(res.status, 201);
      assert.deepEqual(await res.json(), { size_bytes: String(bytes.length), sha256: sha256(bytes) });
      assert.equal(u.storedFiles().length, 1);
    });

    it("refuses a checkpoint over the per-unit artifact bound with 413, storing none of it", async () => {
      const u = await runningUnit();
      const res = await u.put("huge.ckpt", Buffer.alloc(100_001));
      assert.equal(res.status, 413);
      const body = (await res.json()) as ErrorBody;
      assert.equal(body.error.code, "PAYLOAD_TOO_LARGE");
      assert.match(body.error.message, /a checkpoint is limited to 100000 bytes/);
      assert.deepEqual(u.storedFiles(), []);
      assert.equal((await u.put("fits.ckpt", Buffer.alloc(100_000))).status, 201, "exactly the bound fits");
    });

    it("answers RATE_LIMITED (429) while two checkpoints of the attempt are stored but not announced, and takes more once one is announced", async () => {
      const u = await runningUnit();
      const first = Buffer.from("epoch 1");
      const second = Buffer.from("epoch 2");
      assert.equal((await u.put("epoch-1.ckpt", first)).status, 201);
      assert.equal((await u.put("epoch-2.ckpt", second)).status, 201);
      const refused = await u.put("epoch-3.ckpt", Buffer.from("epoch 3"));
      assert.equal(refused.status, 429);
      assert.equal(((await refused.json()) as ErrorBody).error.code, "RATE_LIMITED");
      assert.equal(u.storedFiles().length, 2);

      // The newer announced becomes the latest and the older is deleted: nothing is on its way any more.
      const ref = { unitId: u.unitId, attempt: 1 };
      assert.equal(await applyCheckpointReady(cp.plane.deps.db, u.nodeId, ref, { name: "epoch-2.ckpt", sha256: sha256(second), metrics: { epoch: 2 } }, new Date()), "recorded");
      assert.equal((await u.put("epoch-3.ckpt", Buffer.from("epoch 3"))).status, 201);
    });

    it("never keeps more than two unannounced checkpoints of an attempt when a node sends many at once", async () => {
      const u = await runningUnit();
      const answers = await Promise.all(Array.from({ length: 6 }, (_, i) => u.put(`part-${i}.ckpt`, Buffer.alloc(1000, i))));
      assert.deepEqual(
        answers.map((a) => a.status).sort(),
        [201, 201, 429, 429, 429, 429],
      );
      assert.equal(u.storedFiles().length, 2);
    });

    it("answers STORAGE_QUOTA_EXCEEDED (409) before storing when the customer's artifacts are at their quota", async () => {
      const u = await runningUnit();
      const { db, blobs } = cp.plane.deps;
      await seedFinishedJobArtifacts(db, blobs, u.customerId, ["a.pt", "b.pt", "c.pt"]);
      const res = await u.put("epoch-1.ckpt", Buffer.from("x"));
      assert.equal(res.status, 409);
      const body = (await res.json()) as ErrorBody;
      assert.equal(body.error.code, "STORAGE_QUOTA_EXCEEDED");
      assert.deepEqual(body.error.details, { resource: "artifacts", quota: "count", limit: 3, used: 3, requested: 1 });
      assert.deepEqual(u.storedFiles(), []);
    });

    it("counts stored checkpoints against the customer's artifact quota", async () => {
      const u = await runningUnit();
      const { db, blobs } = cp.plane.deps;
      await seedFinishedJobArtifacts(db, blobs, u.customerId, ["a.pt", "b.pt"]);
      assert.equal((await u.put("epoch-1.ckpt", Buffer.from("weights"))).status, 201);
      assert.deepEqual(await artifactUsage(db, u.customerId), { count: 3, bytes: 4 + 4 + 7 });
      const res = await u.put("epoch-2.ckpt", Buffer.from("weights"));
      assert.equal(res.status, 409);
      assert.equal(((await res.json()) as ErrorBody).error.code, "STORAGE_QUOTA_EXCEEDED");
    });

    const notTheAttempt: { name: string; as: (u: Awaited<ReturnType<typeof runningUnit>>, other: { credential: string }) => UploadSender }[] = [
      { name: "another attempt of the unit (a stale or future one)", as: (u) => ({ credential: u.credential, attempt: 2 }) },
      { name: "another node than the one running the attempt", as: (_u, other) => ({ credential: other.credential, attempt: 1 }) },
    ];
    for (const c of notTheAttempt) {
      it(`refuses a checkpoint from ${c.name} with 404, storing none of it`, async () => {
        const u = await runningUnit();
        const other = await seedNode(cp.plane.deps.db, new Date());
        const res = await u.put("epoch-1.ckpt", Buffer.from("weights"), c.as(u, other));
        assert.equal(res.status, 404);
        assert.equal(((await res.json()) as ErrorBody).error.code, "RESOURCE_NOT_FOUND");
        assert.deepEqual(u.storedFiles(), []);
      });
    }

    it("refuses a checkpoint of an attempt that has ended, with 404", async () => {
      const u = await runningUnit();
      await cp.plane.deps.db.query(`UPDATE compute_units SET status = 'failed' WHERE id = $1`, [u.unitId]);
      const res = await u.put("epoch-1.ckpt", Buffer.from("weights"));
      assert.equal(res.status, 404);
      assert.deepEqual(u.storedFiles(), []);
    });

    /** A PUT whose path goes out as written: fetch would resolve a `..` segment away before sending it. */
    function putRawPath(path: string, credential: string, body: Buffer): Promise<{ status: number; body: string }> {
      return new Promise((resolve, reject) => {
        const req = http.request(`${cp.url}${path}`, { method: "PUT", path, headers: { authorization: `Bearer ${credential}`, "content-length": String(body.length) } }, (res) => {
          const chunks: Buffer[] = [];
          res.on("data", (c: Buffer) => chunks.push(c));
          res.on("end", () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString() }));
        });
        req.on("error", reject);
        req.end(body);
      });
    }

    // The server resolves a `..` segment as a URL does, so such a path reaches no upload route at all.
    const badNames: { name: string; path: string; status: number; code: string }[] = [
      { name: "a slash (percent-encoded)", path: encodeURIComponent("../other-unit/x.ckpt"), status: 400, code: "VALIDATION_FAILED" },
      { name: "a slash inside (percent-encoded)", path: encodeURIComponent("dir/x.ckpt"), status: 400, code: "VALIDATION_FAILED" },
      { name: "a leading dot", path: ".hidden", status: 400, code: "VALIDATION_FAILED" },
      { name: 'a leading ".."', path: "..x.ckpt", status: 400, code: "VALIDATION_FAILED" },
      { name: '"..", sent as is', path: "..", status: 404, code: "ROUTE_NOT_FOUND" },
      { name: '"..", percent-encoded', path: "%2E%2E", status: 404, code: "ROUTE_NOT_FOUND" },
    ];
    for (const b of badNames) {
      it(`refuses a checkpoint name with ${b.name} with ${b.status} ${b.code}, storing nothing`, async () => {
        const u = await runningUnit();
        const res = await putRawPath(`/agent/v1/units/${u.unitId}/attempts/1/checkpoints/${b.path}`, u.credential, Buffer.from("weights"));
        assert.equal(res.status, b.status);
        assert.equal((JSON.parse(res.body) as ErrorBody).error.code, b.code);
        assert.deepEqual(u.storedFiles(), []);
      });
    }

    it("records a CheckpointReady only when a stored file of the attempt has the sha256 it names", async () => {
      const u = await runningUnit();
      const { db } = cp.plane.deps;
      const bytes = Buffer.from("epoch 1 weights");
      assert.equal((await u.put("epoch-1.ckpt", bytes)).status, 201);
      const ref = { unitId: u.unitId, attempt: 1 };
      const announced = (name: string, sha: string) => applyCheckpointReady(db, u.nodeId, ref, { name, sha256: sha, metrics: { epoch: 1 } }, new Date());

      assert.equal(await announced("epoch-1.ckpt", sha256(Buffer.from("other bytes"))), "not_stored");
      assert.equal(await announced("epoch-2.ckpt", sha256(bytes)), "not_stored", "the same bytes under another name");
      assert.equal(await findLatestCheckpoint(db, u.unitId), undefined);

      assert.equal(await announced("epoch-1.ckpt", sha256(bytes)), "recorded");
      assert.deepEqual(
        await findLatestCheckpoint(db, u.unitId).then((c) => c && { name: c.name, sha256: c.sha256, size: Number(c.size_bytes) }),
        { name: "epoch-1.ckpt", sha256: sha256(bytes), size: bytes.length },
      );
    });
  });
}
