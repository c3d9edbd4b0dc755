/**
 * Storage quotas per customer over the REST API of a real control plane, on both backends: what
 * GET /customer/config tells, refusals at creation (declared size) and at finalize (actual size)
 * with STORAGE_QUOTA_EXCEEDED and nothing stored changed, and exactness under parallel requests.
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { existsSync } from "node:fs";
import { join } from "node:path";
import type { StorageQuotas } from "../../src/platform/config.ts";
import { defaultLimits } from "../../src/platform/config.ts";
import { zipOf } from "../node-agent/helpers.ts";
import type { TestControlPlane } from "../support/control-plane.ts";
import { createCustomer, request, startTestControlPlane, uploadResource } from "../support/control-plane.ts";
import { createDbChecksum } from "../support/db-checksum.ts";
import type { DbChecksum } from "../support/db-checksum.ts";
import { createMigratedTestDatabaseUrl } from "../support/postgres.ts";

const GiB = 1024 ** 3;
const sha = (bytes: Buffer) => createHash("sha256").update(bytes).digest("hex");

const backends: { name: string; databaseUrl: () => Promise<string | undefined> }[] = [
  { name: "the embedded database (PGlite)", databaseUrl: async () => undefined },
  { name: "PostgreSQL", databaseUrl: () => createMigratedTestDatabaseUrl() },
];

for (const backend of backends) {
  describe(`storage quotas on ${backend.name}`, function () {
    this.timeout(120_000);
    // Datasets keep the production defaults (100 and 100 GiB); packages get small bounds the tests can reach.
    const quotas: StorageQuotas = { ...defaultLimits.storage, packagesMaxCount: 2, packagesMaxBytes: 1024 * 1024 };
    let cp: TestControlPlane;
    let checksum: DbChecksum;

    before(async () => {
      const databaseUrl = await backend.databaseUrl();
      cp = await startTestControlPlane({ ...(databaseUrl === undefined ? {} : { databaseUrl }), limits: { storage: quotas } });
      checksum = await createDbChecksum(cp.plane.deps.db);
    });
    after(async () => {
      await cp?.stop();
    });

    const create = (apiKey: string, kind: "datasets" | "training-packages", name: string, sizeBytes: number) =>
      request(cp, "POST", `/api/v1/customer/${kind}`, { body: { name, size_bytes: sizeBytes, sha256: "a".repeat(64) }, headers: { "x-api-key": apiKey } });

    /** The request `act` answers STORAGE_QUOTA_EXCEEDED (409) and the database is as it was. */
    async function assertRefusedUnchanged(act: () => Promise<{ status: number; body: Record<string, unknown> }>, details: Record<string, unknown>) {
      const before = await checksum.snapshot();
      const res = await act();
      assert.equal(res.status, 409, JSON.stringify(res.body));
      const error = res.body["error"] as { code: string; message: string; details: Record<string, unknown> };
      assert.equal(error.code, "STORAGE_QUOTA_EXCEEDED");
      assert.match(error.message, /storage quota reached/);
      for (const [k, v] of Object.entries(details)) assert.equal(error.details[k], v, `details.${k}`);
      assert.deepEqual(checksum.diff(before, await checksum.snapshot()), []);
    }

    it("GET /customer/config tells the quotas, the per-unit artifact bound and the retention", async () => {
      const res = await request(cp, "GET", "/api/v1/customer/config");
      assert.equal(res.status, 200);
      assert.deepEqual(res.body["storage_quotas"], {
        datasets_max_count: 100,
        datasets_max_bytes: String(100 * GiB),
        training_packages_max_count: 2,
        training_packages_max_bytes: String(1024 * 1024),
        artifacts_max_count: 10_000,
        artifacts_max_bytes: String(100 * GiB),
        unit_artifacts_max_bytes: String(2 * GiB),
        artifact_retention_days: 30,
      });
    });

    it("counts a dataset's declared size from its creation: ten of 10 GiB fill the 100 GiB, the eleventh is refused", async () => {
      const { apiKey } = await createCustomer(cp);
      for (let i = 0; i < 10; i++) assert.equal((await create(apiKey, "datasets", `big-${i}`, 10 * GiB)).status, 201);
      await assertRefusedUnchanged(() => create(apiKey, "datasets", "big-10", 10 * GiB), {
        resource: "datasets",
        quota: "bytes",
        limit: 100 * GiB,
        used: 100 * GiB,
        requested: 10 * GiB,
      });
      // Full to the byte: one more byte is refused too.
      await assertRefusedUnchanged(() => create(apiKey, "datasets", "one-byte", 1), { quota: "bytes" });
    });

    it("refuses a package past the count quota, whatever its size", async () => {
      const { apiKey } = await createCustomer(cp);
      assert.equal((await create(apiKey, "training-packages", "p1", 10)).status, 201);
      assert.equal((await create(apiKey, "training-packages", "p2", 10)).status, 201);
      await assertRefusedUnchanged(() => create(apiKey, "training-packages", "p3", 10), {
        resource: "training_packages",
        quota: "count",
        limit: 2,
        used: 2,
        requested: 1,
      });
    });

    it("one customer's usage is not another's", async () => {
      const a = await createCustomer(cp);
      const b = await createCustomer(cp);
      assert.equal((await create(a.apiKey, "training-packages", "p1", 1024 * 1024)).status, 201);
      assert.equal((await create(b.apiKey, "training-packages", "p1", 1024 * 1024)).status, 201);
    });

    it("admits exactly the quota when creations race", async () => {
      const { apiKey } = await createCustomer(cp);
      const answers = await Promise.all(Array.from({ length: 8 }, (_, i) => create(apiKey, "training-packages", `race-${i}`, 100)));
      assert.deepEqual(
        answers.map((a) => a.status).sort(),
        [201, 201, 409, 409, 409, 409, 409, 409],
      );
      const listed = await request(cp, "GET", "/api/v1/customer/training-packages", { headers: { "x-api-key": apiKey } });
      assert.equal((listed.body["data"] as unknown[]).length, 2);
    });

    it("checks again at finalize: over a quota lowered since creation it refuses, keeps the upload, and finalizes once there is room", async () => {
      const { apiKey } = await createCustomer(cp);
      const first = await zipOf({ "train.py": "print('first')\n" });
      const second = await zipOf({ "train.py": "print('second, a little longer')\n" });
      const kept = await uploadResource(cp, apiKey, "training-packages", "kept", first, { entrypoint: "train.py" });
      const created = await request(cp, "POST", "/api/v1/customer/training-packages", {
        body: { name: "pending", size_bytes: second.length, sha256: sha(second), entrypoint: "train.py" },
        headers: { "x-api-key": apiKey },
      });
      assert.equal(created.status, 201);
      const put = await fetch(created.body["upload_url"] as string, { method: "PUT", body: second });
      assert.equal(put.status, 200);
      const id = created.body["id"] as string;
      // As after a restart with a lower GPU_AGENT_QUOTA_PACKAGE_BYTES: what is ready plus this upload no longer fits.
      const original = quotas.packagesMaxBytes;
      quotas.packagesMaxBytes = first.length + second.length - 1;
      try {
        await assertRefusedUnchanged(() => request(cp, "POST", `/api/v1/customer/training-packages/${id}/finalize`, { body: {}, headers: { "x-api-key": apiKey } }), {
          resource: "training_packages",
          quota: "bytes",
          used: first.length,
          requested: second.length,
        });
        const pending = await request(cp, "GET", `/api/v1/customer/training-packages/${id}`, { headers: { "x-api-key": apiKey } });
        assert.equal(pending.body["status"], "awaiting_upload");
        const customerId = (await cp.plane.deps.db.query<{ customer_id: string }>(`SELECT customer_id FROM training_packages WHERE id = $1`, [id]))[0]!.customer_id;
        assert.ok(existsSync(join(cp.dataDir, "blobs", "packages", customerId, id)), "the uploaded bytes are kept for a later finalize");

        const deleted = await request(cp, "DELETE", `/api/v1/customer/training-packages/${kept["id"] as string}`, { headers: { "x-api-key": apiKey } });
        assert.equal(deleted.status, 200);
        const finalized = await request(cp, "POST", `/api/v1/customer/training-packages/${id}/finalize`, { body: {}, headers: { "x-api-key": apiKey } });
        assert.equal(finalized.status, 200, JSON.stringify(finalized.body));
        assert.equal(finalized.body["status"], "ready");
      } finally {
        quotas.packagesMaxBytes = original;
      }
    });
  });
}
