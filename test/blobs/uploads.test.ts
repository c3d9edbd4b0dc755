/**
 * The upload life cycle as a domain service (src/blobs/uploads.ts), called directly, without HTTP,
 * on both backends and a real blob store on disk: created under the quota, bytes received once
 * through the signed URL, finalized when they match, deleted with their bytes; every refusal
 * stores nothing.
 */
import assert from "node:assert/strict";
import { createHash, randomUUID } from "node:crypto";
import { existsSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Readable } from "node:stream";
import { pino } from "pino";
import type { BlobStore } from "../../src/blobs/blob-store.ts";
import { createLocalBlobStore } from "../../src/blobs/blob-store.ts";
import type { UploadDeps, UploadRequest } from "../../src/blobs/uploads.ts";
import { createUpload, deleteUpload, finalizeUpload, findCustomerUpload, receiveUploadBytes } from "../../src/blobs/uploads.ts";
import { FakeClock } from "../../src/platform/clock.ts";
import type { LimitsConfig } from "../../src/platform/config.ts";
import { defaultLimits } from "../../src/platform/config.ts";
import type { ApiError } from "../../src/platform/errors.ts";
import { insertCustomer } from "../../src/store/customers.ts";
import type { Sql } from "../../src/store/database.ts";
import type { UploadTable } from "../../src/store/uploads.ts";
import { insertJob } from "../../src/store/jobs.ts";
import { zipOf } from "../node-agent/helpers.ts";
import { describeOnEachBackend } from "../support/billing-rows.ts";
import { refusedWith } from "../support/refusals.ts";

const datasetBytes = Buffer.from("x1,x2,label\n0,1,1\n1,0,1\n");
const sha256Of = (bytes: Buffer) => createHash("sha256").update(bytes).digest("hex");

/** The customer's rows of `table` by status. */
async function uploadStatuses(sql: Sql, table: UploadTable, customerId: string): Promise<string[]> {
  const rows = await sql.query<{ status: string }>(`SELECT status FROM ${table} WHERE customer_id = $1 ORDER BY created_at, id`, [customerId]);
  return rows.map((r) => r.status);
}

describeOnEachBackend("the upload life cycle", (on) => {
  let root: string;
  let blobs: BlobStore;
  const clock = new FakeClock();

  before(async () => {
    root = await mkdtemp(join(tmpdir(), "uploads-test-"));
    blobs = createLocalBlobStore(root);
  });
  after(async () => {
    await rm(root, { recursive: true, force: true });
  });

  function deps(limits: Partial<LimitsConfig> = {}): UploadDeps {
    return { db: on.db, clock, blobs, logger: pino({ level: "silent" }), config: { limits: { ...defaultLimits, ...limits } } };
  }

  async function newCustomer(): Promise<string> {
    const customer = await insertCustomer(on.db, { id: randomUUID(), email: `${randomUUID()}@example.com`, passwordHash: "x" }, new Date(clock.now()));
    return customer.id;
  }

  const datasetRequest = (overrides: Partial<UploadRequest> = {}): UploadRequest => ({
    name: "mnist",
    sizeBytes: datasetBytes.length,
    sha256: sha256Of(datasetBytes),
    extra: "csv",
    ...overrides,
  });

  /** A dataset created and its bytes received, awaiting finalize. */
  async function uploadedDataset(customerId: string, bytes = datasetBytes, declared: Partial<UploadRequest> = {}) {
    const row = await createUpload(deps(), "datasets", customerId, datasetRequest(declared));
    await receiveUploadBytes(deps(), row.blob_key, bytes.length, Readable.from([bytes]));
    return row;
  }

  it("creates a dataset awaiting its bytes under the customer's key, its URL valid for the configured time", async () => {
    const customerId = await newCustomer();
    const row = await createUpload(deps(), "datasets", customerId, datasetRequest({ name: "  mnist  ", sha256: sha256Of(datasetBytes).toUpperCase() }));
    assert.equal(row.status, "awaiting_upload");
    assert.equal(row.name, "mnist");
    assert.equal(row.sha256, sha256Of(datasetBytes));
    assert.equal(row.format, "csv");
    assert.equal(row.blob_key, `datasets/${customerId}/${row.id}`);
    assert.equal(row.upload_expires_at.getTime(), clock.now() + defaultLimits.uploadUrlTtlSeconds * 1000);
    assert.deepEqual(await uploadStatuses(on.db, "datasets", customerId), ["awaiting_upload"]);
  });

  it("keeps a package's blob under packages/ with its entrypoint", async () => {
    const customerId = await newCustomer();
    const row = await createUpload(deps(), "training_packages", customerId, datasetRequest({ extra: "src/train.py" }));
    assert.equal(row.blob_key, `packages/${customerId}/${row.id}`);
    assert.equal(row.entrypoint, "src/train.py");
  });

  const refusals: { name: string; request: Partial<UploadRequest>; limits?: Partial<LimitsConfig>; code: ApiError["code"]; field?: string }[] = [
    { name: "an empty name", request: { name: " " }, code: "VALIDATION_FAILED", field: "name" },
    { name: "a name with NUL", request: { name: "a\u0000b" }, code: "VALIDATION_FAILED", field: "name" },
    { name: "a size of 0", request: { sizeBytes: 0 }, code: "VALIDATION_FAILED", field: "size_bytes" },
    { name: "a size past the safe integers", request: { sizeBytes: 2 ** 60 }, code: "VALIDATION_FAILED", field: "size_bytes" },
    { name: "a size over the dataset limit", request: { sizeBytes: 101 }, limits: { datasetMaxBytes: 100 }, code: "PAYLOAD_TOO_LARGE" },
    { name: "a sha256 that is not 64 hex characters", request: { sha256: "abc" }, code: "VALIDATION_FAILED", field: "sha256" },
    {
      name: "a size past the byte quota",
      request: { sizeBytes: 2000 },
      limits: { storage: { ...defaultLimits.storage, datasetsMaxBytes: 1000 } },
      code: "STORAGE_QUOTA_EXCEEDED",
    },
  ];
  for (const r of refusals) {
    it(`refuses ${r.name} (${r.code}) and stores nothing`, async () => {
      const customerId = await newCustomer();
      const error = await refusedWith(createUpload(deps(r.limits), "datasets", customerId, datasetRequest(r.request)), r.code);
      if (r.field !== undefined) assert.equal(error.details["field"], r.field);
      assert.deepEqual(await uploadStatuses(on.db, "datasets", customerId), []);
    });
  }

  it("counts a created upload against the count quota before its bytes arrive", async () => {
    const customerId = await newCustomer();
    const limits = { storage: { ...defaultLimits.storage, datasetsMaxCount: 1 } };
    await createUpload(deps(limits), "datasets", customerId, datasetRequest());
    await refusedWith(createUpload(deps(limits), "datasets", customerId, datasetRequest()), "STORAGE_QUOTA_EXCEEDED");
    assert.deepEqual(await uploadStatuses(on.db, "datasets", customerId), ["awaiting_upload"]);
  });

  it("receives the bytes once: the signed URL is single use", async () => {
    const customerId = await newCustomer();
    const row = await createUpload(deps(), "datasets", customerId, datasetRequest());
    const stored = await receiveUploadBytes(deps(), row.blob_key, datasetBytes.length, Readable.from([datasetBytes]));
    assert.deepEqual(stored, { size: datasetBytes.length, sha256: sha256Of(datasetBytes) });
    await refusedWith(receiveUploadBytes(deps(), row.blob_key, datasetBytes.length, Readable.from([datasetBytes])), "STATE_CONFLICT");
  });

  it("refuses a key that names no upload (SIGNED_URL_INVALID)", async () => {
    await refusedWith(receiveUploadBytes(deps(), `datasets/${randomUUID()}/${randomUUID()}`, 1, Readable.from([Buffer.from("x")])), "SIGNED_URL_INVALID");
    await refusedWith(receiveUploadBytes(deps(), `artifacts/${randomUUID()}/1/x`, 1, Readable.from([Buffer.from("x")])), "SIGNED_URL_INVALID");
  });

  it("refuses a declared length over the declared size before taking the URL, which stays usable", async () => {
    const customerId = await newCustomer();
    const row = await createUpload(deps(), "datasets", customerId, datasetRequest());
    await refusedWith(receiveUploadBytes(deps(), row.blob_key, datasetBytes.length + 1, Readable.from([datasetBytes])), "PAYLOAD_TOO_LARGE");
    await receiveUploadBytes(deps(), row.blob_key, Number.NaN, Readable.from([datasetBytes]));
  });

  it("gives the URL back when the body runs past the declared size, keeping no bytes", async () => {
    const customerId = await newCustomer();
    const row = await createUpload(deps(), "datasets", customerId, datasetRequest());
    await refusedWith(receiveUploadBytes(deps(), row.blob_key, Number.NaN, Readable.from([datasetBytes, Buffer.from("more")])), "PAYLOAD_TOO_LARGE");
    assert.equal(await blobs.exists(row.blob_key), false);
    await receiveUploadBytes(deps(), row.blob_key, datasetBytes.length, Readable.from([datasetBytes]));
  });

  it("finalizes bytes that match; finalizing again answers the same ready upload", async () => {
    const customerId = await newCustomer();
    const row = await uploadedDataset(customerId);
    const ready = await finalizeUpload(deps(), "datasets", customerId, row.id);
    assert.equal(ready.status, "ready");
    assert.equal(ready.finalized_at?.getTime(), clock.now());
    const again = await finalizeUpload(deps(), "datasets", customerId, row.id.toUpperCase());
    assert.equal(again.id, row.id);
    assert.equal(again.status, "ready");
  });

  it("finalizes a package, recording its entry count", async () => {
    const customerId = await newCustomer();
    const zip = await zipOf({ "train.py": "print('hello')\n", "lib/util.py": "" });
    const row = await createUpload(deps(), "training_packages", customerId, { name: "p", sizeBytes: zip.length, sha256: sha256Of(zip), extra: "train.py" });
    await receiveUploadBytes(deps(), row.blob_key, zip.length, Readable.from([zip]));
    const ready = await finalizeUpload(deps(), "training_packages", customerId, row.id);
    assert.equal(ready.status, "ready");
    assert.equal(ready.entry_count, 2);
  });

  it("refuses to finalize before any bytes arrived (UPLOAD_INVALID), changing nothing", async () => {
    const customerId = await newCustomer();
    const row = await createUpload(deps(), "datasets", customerId, datasetRequest());
    await refusedWith(finalizeUpload(deps(), "datasets", customerId, row.id), "UPLOAD_INVALID");
    assert.deepEqual(await uploadStatuses(on.db, "datasets", customerId), ["awaiting_upload"]);
  });

  it("refuses bytes that do not match the declared sha256, discards them, and takes a new PUT", async () => {
    const customerId = await newCustomer();
    const other = Buffer.from("x1,x2,label\n0,1,0\n1,0,0\n");
    const row = await uploadedDataset(customerId, other, { sizeBytes: other.length });
    const error = await refusedWith(finalizeUpload(deps(), "datasets", customerId, row.id), "UPLOAD_INVALID");
    assert.equal(error.details["actual_sha256"], sha256Of(other));
    assert.equal(await blobs.exists(row.blob_key), false);
    assert.deepEqual(await uploadStatuses(on.db, "datasets", customerId), ["awaiting_upload"]);
    await receiveUploadBytes(deps(), row.blob_key, datasetBytes.length, Readable.from([datasetBytes]));
    assert.equal((await finalizeUpload(deps(), "datasets", customerId, row.id)).status, "ready");
  });

  it("checks the quota again at finalize: over a lower quota it refuses and the upload stays as it was", async () => {
    const customerId = await newCustomer();
    const row = await uploadedDataset(customerId);
    const lower = { storage: { ...defaultLimits.storage, datasetsMaxBytes: datasetBytes.length - 1 } };
    await refusedWith(finalizeUpload(deps(lower), "datasets", customerId, row.id), "STORAGE_QUOTA_EXCEEDED");
    assert.deepEqual(await uploadStatuses(on.db, "datasets", customerId), ["awaiting_upload"]);
  });

  it("deletes an upload: the row is deleted, its bytes removed, and it is no longer found", async () => {
    const customerId = await newCustomer();
    const row = await uploadedDataset(customerId);
    await finalizeUpload(deps(), "datasets", customerId, row.id);
    assert.ok(existsSync(join(root, row.blob_key)));
    assert.deepEqual(await deleteUpload(deps(), "datasets", customerId, row.id), { id: row.id, deleted: true });
    assert.equal(existsSync(join(root, row.blob_key)), false);
    assert.deepEqual(await uploadStatuses(on.db, "datasets", customerId), ["deleted"]);
    await refusedWith(findCustomerUpload(on.db, "datasets", customerId, row.id), "DATASET_NOT_FOUND");
    await refusedWith(deleteUpload(deps(), "datasets", customerId, row.id), "DATASET_NOT_FOUND");
  });

  it("refuses to delete what an active job uses (STATE_CONFLICT, naming the job) and keeps it and its bytes", async () => {
    const customerId = await newCustomer();
    const dataset = await uploadedDataset(customerId);
    await finalizeUpload(deps(), "datasets", customerId, dataset.id);
    const pkg = await createUpload(deps(), "training_packages", customerId, datasetRequest({ extra: "train.py" }));
    const job = await insertJob(
      on.db,
      {
        id: randomUUID(),
        customer_id: customerId,
        name: "uses it",
        dataset_id: dataset.id,
        training_package_id: pkg.id,
        required_vram_mb: 0,
        required_disk_mb: 1024,
        max_runtime_seconds: 600,
        sensitivity: "public",
        projected_cost_credits: 0,
      },
      new Date(clock.now()),
    );
    const error = await refusedWith(deleteUpload(deps(), "datasets", customerId, dataset.id), "STATE_CONFLICT");
    assert.deepEqual(error.details["job_ids"], [job.id]);
    assert.deepEqual(await uploadStatuses(on.db, "datasets", customerId), ["ready"]);
    assert.ok(await blobs.exists(dataset.blob_key));
  });

  it("answers another customer's, an unknown and a malformed id alike: not found, of the upload's kind", async () => {
    const owner = await newCustomer();
    const stranger = await newCustomer();
    const dataset = await createUpload(deps(), "datasets", owner, datasetRequest());
    const pkg = await createUpload(deps(), "training_packages", owner, datasetRequest({ extra: "train.py" }));
    for (const id of [dataset.id, randomUUID(), "not-a-uuid"]) {
      await refusedWith(findCustomerUpload(on.db, "datasets", stranger, id), "DATASET_NOT_FOUND");
      await refusedWith(finalizeUpload(deps(), "datasets", stranger, id), "DATASET_NOT_FOUND");
      await refusedWith(deleteUpload(deps(), "datasets", stranger, id), "DATASET_NOT_FOUND");
    }
    await refusedWith(deleteUpload(deps(), "training_packages", stranger, pkg.id), "TRAINING_PACKAGE_NOT_FOUND");
    assert.deepEqual(await uploadStatuses(on.db, "datasets", owner), ["awaiting_upload"]);
  });
});
