/**
 * Deleting a dataset or a training package removes its bytes from the blob store and frees the
 * quota; one an active job needs is refused; a removal lost to a crash after the commit is finished
 * by the storage sweep.
 */
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { sweepStorage } from "../../src/blobs/storage-sweeper.ts";
import { markUploadDeleted } from "../../src/store/uploads.ts";
import { pendingBlobDeletions, requestBlobDeletion } from "../../src/store/storage.ts";
import { defaultLimits } from "../../src/platform/config.ts";
import { zipOf } from "../node-agent/helpers.ts";
import type { TestControlPlane } from "../support/control-plane.ts";
import { createCustomer, request, startTestControlPlane, uploadResource } from "../support/control-plane.ts";

describe("deleting stored uploads", function () {
  this.timeout(60_000);
  let cp: TestControlPlane;
  let packageZip: Buffer;
  const datasetBytes = Buffer.from("x1,x2,label\n0,1,1\n1,0,1\n");

  before(async () => {
    cp = await startTestControlPlane({ limits: { storage: { ...defaultLimits.storage, datasetsMaxCount: 1 } } });
    packageZip = await zipOf({ "train.py": "print('hello')\n" });
  });
  after(async () => {
    await cp?.stop();
  });

  const blobPath = (kind: "datasets" | "packages", customerId: string, id: string) => join(cp.dataDir, "blobs", kind, customerId, id);

  for (const kind of ["datasets", "training-packages"] as const) {
    it(`DELETE /${kind}/{id} removes the bytes from the blob store and frees the quota`, async () => {
      const { customerId, apiKey } = await createCustomer(cp);
      const bytes = kind === "datasets" ? datasetBytes : packageZip;
      const resource = await uploadResource(cp, apiKey, kind, "to delete", bytes);
      const id = resource["id"] as string;
      const file = blobPath(kind === "datasets" ? "datasets" : "packages", customerId, id);
      assert.ok(existsSync(file), "stored before the delete");

      const deleted = await request(cp, "DELETE", `/api/v1/customer/${kind}/${id}`, { headers: { "x-api-key": apiKey } });
      assert.equal(deleted.status, 200);
      assert.deepEqual(deleted.body, { id, deleted: true });
      assert.ok(!existsSync(file), "the blob file is gone");
      assert.equal(await pendingBlobDeletions(cp.plane.deps.db), 0, "nothing left for the sweep");
      const again = await request(cp, "GET", `/api/v1/customer/${kind}/${id}`, { headers: { "x-api-key": apiKey } });
      assert.equal(again.status, 404);
      // The slot is free again (datasets: a quota of one here).
      await uploadResource(cp, apiKey, kind, "after the delete", bytes);
    });
  }

  it("refuses to delete a dataset a queued job still needs (STATE_CONFLICT), keeps its bytes, and deletes it once the job ended", async () => {
    const { customerId, apiKey } = await createCustomer(cp);
    const dataset = await uploadResource(cp, apiKey, "datasets", "in use", datasetBytes, { format: "csv" });
    const pkg = await uploadResource(cp, apiKey, "training-packages", "pkg", packageZip);
    // No agent runs here: the job stays queued.
    const job = await request(cp, "POST", "/api/v1/customer/training-jobs", {
      body: { name: "uses it", dataset_id: dataset["id"], training_package_id: pkg["id"], required_vram_mb: 0, max_runtime_seconds: 60 },
      headers: { "x-api-key": apiKey },
    });
    assert.equal(job.status, 201, JSON.stringify(job.body));
    const jobId = job.body["id"] as string;
    const file = blobPath("datasets", customerId, dataset["id"] as string);

    const refused = await request(cp, "DELETE", `/api/v1/customer/datasets/${dataset["id"] as string}`, { headers: { "x-api-key": apiKey } });
    assert.equal(refused.status, 409);
    const error = refused.body["error"] as { code: string; message: string };
    assert.equal(error.code, "STATE_CONFLICT");
    assert.match(error.message, new RegExp(`used by active training job ${jobId}`));
    assert.ok(existsSync(file));

    const cancelled = await request(cp, "POST", `/api/v1/customer/training-jobs/${jobId}/cancel`, { body: {}, headers: { "x-api-key": apiKey } });
    assert.equal(cancelled.status, 200);
    const deleted = await request(cp, "DELETE", `/api/v1/customer/datasets/${dataset["id"] as string}`, { headers: { "x-api-key": apiKey } });
    assert.equal(deleted.status, 200);
    assert.ok(!existsSync(file));
  });

  it("a removal lost to a crash after the commit is finished by the storage sweep", async () => {
    const { customerId, apiKey } = await createCustomer(cp);
    const pkg = await uploadResource(cp, apiKey, "training-packages", "crash", packageZip);
    const id = pkg["id"] as string;
    const file = blobPath("packages", customerId, id);
    const { db } = cp.plane.deps;
    // What the delete commits; the process dies before it removes the bytes.
    await db.transaction(async (tx) => {
      const row = await markUploadDeleted(tx, "training_packages", customerId, id, new Date());
      await requestBlobDeletion(tx, row!.blob_key, new Date());
    });
    assert.ok(existsSync(file));
    assert.equal(await pendingBlobDeletions(db), 1);

    const swept = await sweepStorage(cp.plane.deps);
    assert.equal(swept.blobsDeleted, 1);
    assert.equal(swept.failures, 0);
    assert.ok(!existsSync(file), "the sweep removed the bytes");
    assert.equal(await pendingBlobDeletions(db), 0);
  });
});
