/**
 * The agents' artifact upload route against a node that does not play by the rules: the per-unit
 * artifact bound holds exactly (parallel uploads of one attempt included), the customer's artifact
 * quota is answered before any byte is stored, and recording decides the quota exactly.
 */
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import http from "node:http";
import { join } from "node:path";
import { applyArtifactReady } from "../../src/jobs/lifecycle.ts";
import type { StorageQuotas } from "../../src/platform/config.ts";
import { defaultLimits } from "../../src/platform/config.ts";
import { artifactUsage } from "../../src/store/storage.ts";
import type { TestControlPlane } from "../support/control-plane.ts";
import { createCustomer, waitFor } from "../support/control-plane.ts";
import { seedFinishedJobArtifacts, seedJob, seedNode, unitRunningOnNode, uploadRouteBackends } from "./support.ts";

for (const backend of uploadRouteBackends) {
  describe(`artifact uploads within their bounds on ${backend.name}`, function () {
    this.timeout(60_000);
    const quotas: StorageQuotas = { ...defaultLimits.storage, unitArtifactsMaxBytes: 100_000, artifactsMaxCount: 3 };
    let cp: TestControlPlane;

    before(async () => {
      cp = await backend.start(quotas);
    });
    after(async () => {
      await cp?.stop();
    });

    /** A customer with a unit running on a node whose credential the test holds. */
    async function runningUnit() {
      const u = await unitRunningOnNode(cp);
      const put = (name: string, body: Buffer) => u.put("artifacts", name, body);
      return { ...u, put, file: (name: string) => join(cp.dataDir, "blobs", "artifacts", u.unitId, "1", name) };
    }

    it("refuses a body over the per-unit bound with 413, storing none of it", async () => {
      const u = await runningUnit();
      const res = await u.put("huge.bin", Buffer.alloc(100_001));
      assert.equal(res.status, 413);
      const body = (await res.json()) as { error: { code: string; message: string } };
      assert.equal(body.error.code, "PAYLOAD_TOO_LARGE");
      assert.match(body.error.message, /artifacts of one compute unit are limited to 100000 bytes/);
      assert.ok(!existsSync(u.file("huge.bin")));
    });

    it("never lets parallel uploads of one attempt pass the bound together", async () => {
      const u = await runningUnit();
      const answers = await Promise.all(Array.from({ length: 6 }, (_, i) => u.put(`part-${i}.bin`, Buffer.alloc(40_000, i))));
      assert.deepEqual(answers.map((a) => a.status).sort(), [201, 201, 413, 413, 413, 413]);
      const stored = Array.from({ length: 6 }, (_, i) => u.file(`part-${i}.bin`)).filter((f) => existsSync(f));
      assert.equal(stored.length, 2);
    });

    it("gives back what an interrupted upload reserved, so its retry fits", async () => {
      const u = await runningUnit();
      // 60,000 bytes announced, half of them sent, then the connection drops.
      const interrupted = http.request(`${cp.url}/agent/v1/units/${u.unitId}/attempts/1/artifacts/model.pt`, {
        method: "PUT",
        headers: { authorization: `Bearer ${u.credential}`, "content-length": "60000" },
      });
      interrupted.on("error", () => {});
      interrupted.write(Buffer.alloc(30_000));
      const reserved = () => cp.plane.deps.db.query<{ bytes: number }>(`SELECT bytes FROM unit_artifact_bytes WHERE compute_unit_id = $1`, [u.unitId]);
      await waitFor("the upload's reservation", async () => ((await reserved())[0]?.bytes === 60_000 ? true : undefined), 10_000);
      interrupted.destroy();
      await waitFor("the reservation given back", async () => ((await reserved())[0]?.bytes === 0 ? true : undefined), 10_000);
      assert.ok(!existsSync(u.file("model.pt")), "nothing of it is kept");

      assert.equal((await u.put("model.pt", Buffer.alloc(60_000, 1))).status, 201);
      assert.equal((await u.put("extra.bin", Buffer.alloc(40_001))).status, 413, "60,000 + 40,001 pass the bound");
      assert.equal((await u.put("extra.bin", Buffer.alloc(40_000))).status, 201, "60,000 + 40,000 fit it exactly");
    });

    it("answers STORAGE_QUOTA_EXCEEDED (409) before storing when the customer's artifacts are at their quota", async () => {
      const u = await runningUnit();
      const { db, blobs } = cp.plane.deps;
      await seedFinishedJobArtifacts(db, blobs, u.customerId, ["a.pt", "b.pt", "c.pt"]);
      const res = await u.put("one-more.pt", Buffer.from("x"));
      assert.equal(res.status, 409);
      const body = (await res.json()) as { error: { code: string; message: string; details: Record<string, unknown> } };
      assert.equal(body.error.code, "STORAGE_QUOTA_EXCEEDED");
      assert.deepEqual(body.error.details, { resource: "artifacts", quota: "count", limit: 3, used: 3, requested: 1 });
      assert.ok(!existsSync(u.file("one-more.pt")));
    });

    it("records at most the quota when artifacts of several units are announced at once", async () => {
      const { customerId } = await createCustomer(cp);
      const { db, blobs } = cp.plane.deps;
      const node = await seedNode(db, new Date());
      await seedFinishedJobArtifacts(db, blobs, customerId, ["a.pt", "b.pt"]);
      const units = await Promise.all([1, 2, 3].map(() => seedJob(db, customerId, { nodeId: node.nodeId })));
      const outcomes = await Promise.all(
        units.map((u) =>
          applyArtifactReady(
            db,
            node.nodeId,
            { unitId: u.unitId, attempt: 1 },
            { name: "model.pt", kind: "checkpoint", sizeBytes: 10, sha256: "c".repeat(64), blobKey: `artifacts/${u.unitId}/1/model.pt` },
            new Date(),
            quotas,
          ),
        ),
      );
      assert.equal(outcomes.filter((o) => o === "recorded").length, 1);
      const refused = outcomes.filter((o) => typeof o === "object");
      assert.equal(refused.length, 2);
      for (const o of refused) assert.equal((o as { refused: { code: string } }).refused.code, "STORAGE_QUOTA_EXCEEDED");
      assert.deepEqual(await artifactUsage(db, customerId), { count: 3, bytes: 4 + 4 + 10 });
    });
  });
}
