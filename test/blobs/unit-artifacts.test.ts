/**
 * A unit's artifacts in and out of the blob store (src/blobs/unit-artifacts.ts), called directly,
 * on both backends and a real blob store on disk: a node's upload within the per-attempt bound and
 * the artifact quota (refusals keep no bytes and no reservation), the uploads of an attempt that
 * ended cancelled or failed (for a while, never another node's, never past retention), the
 * customer's signed download URL, and the opening of a signed download that says why an expired
 * artifact is gone.
 */
import assert from "node:assert/strict";
import { createHash, randomUUID } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Readable } from "node:stream";
import type { BlobStore } from "../../src/blobs/blob-store.ts";
import { createLocalBlobStore } from "../../src/blobs/blob-store.ts";
import { createUrlSigner } from "../../src/blobs/signed-url.ts";
import type { ArtifactDownloadDeps, ArtifactReceiptDeps, ArtifactUpload } from "../../src/blobs/unit-artifacts.ts";
import { ENDED_ATTEMPT_UPLOAD_WINDOW_SECONDS, artifactDownloadUrl, openDownload, receiveArtifact } from "../../src/blobs/unit-artifacts.ts";
import { jobArtifactsPage } from "../../src/jobs/job-reads.ts";
import { applyArtifactReady, applyFinished, cancelJob } from "../../src/jobs/lifecycle.ts";
import { FakeClock } from "../../src/platform/clock.ts";
import type { StorageQuotas } from "../../src/platform/config.ts";
import { defaultLimits } from "../../src/platform/config.ts";
import type { ApiError } from "../../src/platform/errors.ts";
import { insertCustomer } from "../../src/store/customers.ts";
import { expireArtifactsOfEndedJobs } from "../../src/store/storage.ts";
import { describeOnEachBackend } from "../support/billing-rows.ts";
import { refusedWith } from "../support/refusals.ts";
import { seedArtifact, seedJob, seedNode } from "./support.ts";

const unitBound = 1000;

describeOnEachBackend("a unit's artifacts", (on) => {
  const clock = new FakeClock();
  const signer = createUrlSigner("http://127.0.0.1:1", "test-secret");
  let root: string;
  let blobs: BlobStore;

  before(async () => {
    root = await mkdtemp(join(tmpdir(), "unit-artifacts-test-"));
    blobs = createLocalBlobStore(root);
  });
  after(async () => {
    await rm(root, { recursive: true, force: true });
  });

  const quotas = (overrides: Partial<StorageQuotas> = {}): StorageQuotas => ({ ...defaultLimits.storage, unitArtifactsMaxBytes: unitBound, ...overrides });
  const receiptDeps = (overrides: Partial<StorageQuotas> = {}): ArtifactReceiptDeps => ({ db: on.db, clock, blobs, config: { limits: { storage: quotas(overrides) } } });
  const downloadDeps = (): ArtifactDownloadDeps => ({ db: on.db, clock, blobs, signer, config: { limits: { ...defaultLimits, storage: quotas() } } });

  /** A customer's job with one unit running (attempt 1) on a node of its own. */
  async function runningUnit() {
    const customer = await insertCustomer(on.db, { id: randomUUID(), email: `${randomUUID()}@example.com`, passwordHash: "x" }, new Date(clock.now()));
    const { nodeId } = await seedNode(on.db, new Date(clock.now()));
    const { jobId, unitId } = await seedJob(on.db, customer.id, { nodeId });
    return { customerId: customer.id, nodeId, jobId, unitId };
  }

  const upload = (unitId: string, bytes: Buffer, overrides: Partial<ArtifactUpload> = {}): ArtifactUpload => ({
    unitId,
    attempt: 1,
    name: "model.pt",
    contentLength: bytes.length,
    ...overrides,
  });

  it("stores a running attempt's artifact under its key and answers its size and sha256", async () => {
    const { nodeId, unitId } = await runningUnit();
    const bytes = Buffer.from("weights");
    const stored = await receiveArtifact(receiptDeps(), nodeId, upload(unitId, bytes), Readable.from([bytes]));
    assert.deepEqual(stored, { size: bytes.length, sha256: createHash("sha256").update(bytes).digest("hex") });
    assert.ok(await blobs.exists(`artifacts/${unitId}/1/model.pt`));
  });

  const refusals: {
    name: string;
    upload?: Partial<ArtifactUpload>;
    otherNode?: boolean;
    quotas?: Partial<StorageQuotas>;
    code: ApiError["code"];
  }[] = [
    { name: "a name outside the allowed characters", upload: { name: "../model.pt" }, code: "VALIDATION_FAILED" },
    { name: "a unit running on another node", otherNode: true, code: "RESOURCE_NOT_FOUND" },
    { name: "another attempt of the unit", upload: { attempt: 2 }, code: "RESOURCE_NOT_FOUND" },
    { name: "an unknown unit", upload: { unitId: randomUUID() }, code: "RESOURCE_NOT_FOUND" },
    { name: "no Content-Length", upload: { contentLength: Number.NaN }, code: "VALIDATION_FAILED" },
    { name: "a file past the per-attempt bound", upload: { contentLength: unitBound + 1 }, code: "PAYLOAD_TOO_LARGE" },
    { name: "a customer at the artifact count quota", quotas: { artifactsMaxCount: 0 }, code: "STORAGE_QUOTA_EXCEEDED" },
  ];
  for (const r of refusals) {
    it(`refuses ${r.name} (${r.code}) before storing any byte`, async () => {
      const { nodeId, unitId } = await runningUnit();
      const bytes = Buffer.from("weights");
      const uploader = r.otherNode === true ? (await seedNode(on.db, new Date(clock.now()))).nodeId : nodeId;
      await refusedWith(receiveArtifact(receiptDeps(r.quotas), uploader, upload(unitId, bytes, r.upload), Readable.from([bytes])), r.code);
      assert.equal(await blobs.exists(`artifacts/${unitId}/1/model.pt`), false);
      // Nothing was reserved: the whole bound is still there.
      await receiveArtifact(receiptDeps(), nodeId, upload(unitId, Buffer.alloc(unitBound)), Readable.from([Buffer.alloc(unitBound)]));
    });
  }

  it("counts every upload of an attempt against its bound, a replaced name too", async () => {
    const { nodeId, unitId } = await runningUnit();
    const half = Buffer.alloc(unitBound / 2);
    await receiveArtifact(receiptDeps(), nodeId, upload(unitId, half), Readable.from([half]));
    await receiveArtifact(receiptDeps(), nodeId, upload(unitId, half), Readable.from([half]));
    await refusedWith(receiveArtifact(receiptDeps(), nodeId, upload(unitId, Buffer.alloc(1), { name: "more.bin" }), Readable.from([Buffer.alloc(1)])), "PAYLOAD_TOO_LARGE");
  });

  it("refuses a body longer than its Content-Length and gives its reservation back", async () => {
    const { nodeId, unitId } = await runningUnit();
    const bytes = Buffer.alloc(10);
    await refusedWith(receiveArtifact(receiptDeps(), nodeId, upload(unitId, bytes, { contentLength: 9 }), Readable.from([bytes])), "PAYLOAD_TOO_LARGE");
    await receiveArtifact(receiptDeps(), nodeId, upload(unitId, Buffer.alloc(unitBound)), Readable.from([Buffer.alloc(unitBound)]));
  });

  it("counts only what a short body sent", async () => {
    const { nodeId, unitId } = await runningUnit();
    const bytes = Buffer.alloc(10);
    const stored = await receiveArtifact(receiptDeps(), nodeId, upload(unitId, bytes, { contentLength: unitBound }), Readable.from([bytes]));
    assert.equal(stored.size, 10);
    await receiveArtifact(receiptDeps(), nodeId, upload(unitId, Buffer.alloc(unitBound - 10), { name: "rest.bin" }), Readable.from([Buffer.alloc(unitBound - 10)]));
  });

  describe("an attempt that ended cancelled or failed: its outputs are still worth keeping", () => {
    const windowMs = ENDED_ATTEMPT_UPLOAD_WINDOW_SECONDS * 1000;
    const now = () => new Date(clock.now());
    const rates = { cpuCreditsPerMinute: 1, gpuCreditsPerMinute: 10 };
    const endings: { name: string; end: (unit: { nodeId: string; jobId: string; unitId: string }) => Promise<unknown>; status: string }[] = [
      { name: "cancelled with its job by the customer", end: ({ jobId }) => cancelJob(on.db, jobId, now()), status: "cancelled" },
      {
        name: "failed at its deadline",
        end: ({ nodeId, unitId }) => applyFinished(on.db, nodeId, { unitId, attempt: 1 }, { outcome: "timed_out", exitCode: 137, error: "", runSeconds: 60 }, rates, now()),
        status: "failed",
      },
    ];

    /** Stores and records an artifact as the agent does: the PUT, then ArtifactReady on its stream. */
    async function uploadAndAnnounce(nodeId: string, unitId: string, name: string, bytes: Buffer) {
      const stored = await receiveArtifact(receiptDeps(), nodeId, upload(unitId, bytes, { name }), Readable.from([bytes]));
      const blobKey = `artifacts/${unitId}/1/${name}`;
      return applyArtifactReady(on.db, nodeId, { unitId, attempt: 1 }, { name, kind: "other", sizeBytes: stored.size, sha256: stored.sha256, blobKey }, now(), quotas());
    }

    for (const ending of endings) {
      it(`takes the uploads of an attempt ${ending.name} for ${ENDED_ATTEMPT_UPLOAD_WINDOW_SECONDS / 60} minutes, lists them with the unit, and debits nothing`, async () => {
        const unit = await runningUnit();
        await ending.end(unit);
        const [row] = await on.db.query<{ status: string }>(`SELECT status FROM compute_units WHERE id = $1`, [unit.unitId]);
        assert.equal(row?.status, ending.status);
        clock.advance(windowMs - 1000);
        assert.equal(await uploadAndAnnounce(unit.nodeId, unit.unitId, "report.json", Buffer.from("{}")), "recorded");
        const { rows } = await jobArtifactsPage(on.db, unit.customerId, unit.jobId, { limit: 10, cursor: "" });
        assert.deepEqual(
          rows.map((a) => ({ unit: a.compute_unit_id, attempt: a.attempt, name: a.name })),
          [{ unit: unit.unitId, attempt: 1, name: "report.json" }],
        );
        const debits = await on.db.query(`SELECT id FROM ledger_entries WHERE customer_id = $1 AND kind = 'debit'`, [unit.customerId]);
        assert.deepEqual(debits, []);
      });
    }

    const refusals: { name: string; setUp: (unit: { nodeId: string; jobId: string; unitId: string }) => Promise<unknown>; fromOtherNode?: boolean }[] = [
      { name: "one that ended longer ago than that", setUp: async ({ jobId }) => (await cancelJob(on.db, jobId, now()), clock.advance(windowMs + 1000)) },
      { name: "another node's", setUp: ({ jobId }) => cancelJob(on.db, jobId, now()), fromOtherNode: true },
      {
        name: "one whose job's artifacts retention removed",
        setUp: async ({ jobId }) => (await cancelJob(on.db, jobId, now()), await expireArtifactsOfEndedJobs(on.db, now(), now(), 10)),
      },
      {
        name: "a completed one (its dependents took its artifacts as they were)",
        setUp: ({ nodeId, unitId }) => applyFinished(on.db, nodeId, { unitId, attempt: 1 }, { outcome: "succeeded", exitCode: 0, error: "", runSeconds: 60 }, rates, now()),
      },
    ];
    for (const r of refusals) {
      it(`refuses the uploads of an ended attempt: ${r.name} (RESOURCE_NOT_FOUND), storing nothing`, async () => {
        const unit = await runningUnit();
        await r.setUp(unit);
        const uploader = r.fromOtherNode === true ? (await seedNode(on.db, now())).nodeId : unit.nodeId;
        const bytes = Buffer.from("{}");
        await refusedWith(receiveArtifact(receiptDeps(), uploader, upload(unit.unitId, bytes), Readable.from([bytes])), "RESOURCE_NOT_FOUND");
        assert.equal(await blobs.exists(`artifacts/${unit.unitId}/1/model.pt`), false);
      });
    }

    it("does not record an ended attempt's artifact once retention removed its job's artifacts, though its upload came before (ARTIFACT_EXPIRED)", async () => {
      const unit = await runningUnit();
      await cancelJob(on.db, unit.jobId, now());
      const bytes = Buffer.from("{}");
      const stored = await receiveArtifact(receiptDeps(), unit.nodeId, upload(unit.unitId, bytes), Readable.from([bytes]));
      await expireArtifactsOfEndedJobs(on.db, now(), now(), 10);
      const outcome = await applyArtifactReady(
        on.db,
        unit.nodeId,
        { unitId: unit.unitId, attempt: 1 },
        { name: "model.pt", kind: "checkpoint", sizeBytes: stored.size, sha256: stored.sha256, blobKey: `artifacts/${unit.unitId}/1/model.pt` },
        now(),
        quotas(),
      );
      assert.ok(typeof outcome === "object", String(outcome));
      assert.equal(outcome.refused.code, "ARTIFACT_EXPIRED");
      assert.deepEqual((await jobArtifactsPage(on.db, unit.customerId, unit.jobId, { limit: 10, cursor: "" })).rows, []);
    });
  });

  it("signs a download URL for the customer's artifact that the signer accepts until it expires", async () => {
    const { customerId, jobId, unitId } = await runningUnit();
    const { artifactId, blobKey } = await seedArtifact(on.db, blobs, { customerId, jobId, unitId }, "model.pt", Buffer.from("weights"));
    const link = await artifactDownloadUrl(downloadDeps(), customerId, jobId.toUpperCase(), artifactId);
    assert.equal(link.ttlSeconds, defaultLimits.downloadUrlTtlSeconds);
    assert.equal(link.expiresAtMs, clock.now() + defaultLimits.downloadUrlTtlSeconds * 1000);
    const verified = signer.verify(new URL(link.url), clock.now());
    assert.ok(verified.ok);
    assert.equal(verified.request.key, blobKey);
    assert.equal(signer.verify(new URL(link.url), link.expiresAtMs + 1).ok, false);
  });

  it("says when an artifact was removed by retention (ARTIFACT_EXPIRED), for a new URL and an old one alike", async () => {
    const { customerId, jobId, unitId } = await runningUnit();
    const { artifactId, blobKey } = await seedArtifact(on.db, blobs, { customerId, jobId, unitId }, "model.pt", Buffer.from("weights"));
    const expiredAt = new Date(Date.UTC(2026, 1, 1));
    await on.db.query(`UPDATE artifacts SET expired_at = $2 WHERE id = $1`, [artifactId, expiredAt]);
    await blobs.delete(blobKey);
    const refused = await refusedWith(artifactDownloadUrl(downloadDeps(), customerId, jobId, artifactId), "ARTIFACT_EXPIRED");
    assert.equal(refused.details["expired_at"], expiredAt.toISOString());
    const gone = await refusedWith(openDownload(downloadDeps(), blobKey), "ARTIFACT_EXPIRED");
    assert.match(gone.message, new RegExp(expiredAt.toISOString()));
  });

  it("answers bytes missing from storage with SIGNED_URL_FAILED", async () => {
    const { customerId, jobId, unitId } = await runningUnit();
    const { artifactId, blobKey } = await seedArtifact(on.db, blobs, { customerId, jobId, unitId }, "model.pt", Buffer.from("weights"));
    await blobs.delete(blobKey);
    await refusedWith(artifactDownloadUrl(downloadDeps(), customerId, jobId, artifactId), "SIGNED_URL_FAILED");
    await refusedWith(openDownload(downloadDeps(), blobKey), "SIGNED_URL_FAILED");
    await refusedWith(openDownload(downloadDeps(), `datasets/${customerId}/${randomUUID()}`), "SIGNED_URL_FAILED");
  });

  it("opens a blob for download with its size", async () => {
    const { customerId, jobId, unitId } = await runningUnit();
    const { blobKey } = await seedArtifact(on.db, blobs, { customerId, jobId, unitId }, "model.pt", Buffer.from("weights"));
    const opened = await openDownload(downloadDeps(), blobKey);
    const chunks: Buffer[] = [];
    for await (const chunk of opened.stream) chunks.push(chunk as Buffer);
    assert.equal(opened.size, 7);
    assert.equal(Buffer.concat(chunks).toString(), "weights");
  });

  it("answers another customer's job and artifact as not found", async () => {
    const { customerId, jobId, unitId } = await runningUnit();
    const { artifactId } = await seedArtifact(on.db, blobs, { customerId, jobId, unitId }, "model.pt", Buffer.from("weights"));
    const stranger = await runningUnit();
    await refusedWith(artifactDownloadUrl(downloadDeps(), stranger.customerId, jobId, artifactId), "JOB_NOT_FOUND");
    await refusedWith(artifactDownloadUrl(downloadDeps(), stranger.customerId, "job-1", artifactId), "JOB_NOT_FOUND");
    await refusedWith(artifactDownloadUrl(downloadDeps(), stranger.customerId, stranger.jobId, artifactId), "ARTIFACT_NOT_FOUND");
    await refusedWith(artifactDownloadUrl(downloadDeps(), customerId, jobId, "artifact-1"), "ARTIFACT_NOT_FOUND");
  });
});
