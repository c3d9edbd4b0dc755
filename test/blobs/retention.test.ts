/**
 * Artifact retention and expired uploads, on a FakeClock: the sweep removes the bytes of a job's
 * artifacts (and whatever else its units uploaded) once the retention after the job's end has
 * passed, marks the rows expired so downloads answer ARTIFACT_EXPIRED, and frees the quota.
 */
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { Readable } from "node:stream";
import { FakeClock } from "../../src/platform/clock.ts";
import { defaultLimits } from "../../src/platform/config.ts";
import { sweepStorage } from "../../src/blobs/storage-sweeper.ts";
import { artifactUsage } from "../../src/store/storage.ts";
import type { TestControlPlane } from "../support/control-plane.ts";
import { createCustomer, request, startTestControlPlane } from "../support/control-plane.ts";
import { seedArtifact, seedJob } from "./support.ts";

const minute = 60_000;
const day = 86_400_000;

describe("artifact retention", function () {
  this.timeout(60_000);
  const clock = new FakeClock(Date.now());
  let cp: TestControlPlane;

  before(async () => {
    cp = await startTestControlPlane({
      clock,
      // The background sweep runs once at start and then not within these tests: they sweep themselves.
      limits: { storage: { ...defaultLimits.storage, artifactRetentionDays: 30, sweepIntervalSeconds: 10 * 365 * 86_400, datasetsMaxCount: 1 } },
    });
  });
  after(async () => {
    await cp?.stop();
  });

  const blobFile = (key: string) => join(cp.dataDir, "blobs", key);

  it("removes a job's artifacts 30 days after it ended: bytes gone, rows expired, downloads answer ARTIFACT_EXPIRED, quota freed", async () => {
    const { customerId, apiKey } = await createCustomer(cp);
    const { db, blobs } = cp.plane.deps;
    const t0 = clock.now();
    const early = await seedJob(db, customerId, { finishedAt: new Date(t0 - day) });
    const late = await seedJob(db, customerId, { finishedAt: new Date(t0) });
    const running = await seedJob(db, customerId, { maxRuntimeSeconds: 400 * 86_400 });
    const model = await seedArtifact(db, blobs, { customerId, ...early }, "model.pt", Buffer.alloc(3000, 1));
    const metrics = await seedArtifact(db, blobs, { customerId, ...early }, "metrics.json", Buffer.from("{}"));
    const lateModel = await seedArtifact(db, blobs, { customerId, ...late }, "model.pt", Buffer.alloc(500, 2));
    const runningModel = await seedArtifact(db, blobs, { customerId, ...running }, "model.pt", Buffer.alloc(700, 3));
    // Bytes a node uploaded but never announced (and an earlier attempt's): no row, the same unit.
    const stray = `artifacts/${early.unitId}/1/stray.bin`;
    const earlierAttempt = `artifacts/${early.unitId}/2/other.bin`;
    for (const key of [stray, earlierAttempt]) await blobs.put(key, Readable.from([Buffer.from("stray")]), { maxBytes: 100 });
    const downloadUrl = (jobId: string, artifactId: string) =>
      request(cp, "POST", `/api/v1/customer/training-jobs/${jobId}/artifacts/${artifactId}/download-url`, { body: {}, headers: { "x-api-key": apiKey } });

    clock.advance(29 * day - minute);
    assert.equal((await sweepStorage(cp.plane.deps)).jobsExpired, 0, "a minute early: nothing expires");
    const minted = await downloadUrl(early.jobId, model.artifactId);
    assert.equal(minted.status, 201, JSON.stringify(minted.body));

    clock.advance(2 * minute);
    const swept = await sweepStorage(cp.plane.deps);
    assert.deepEqual(swept, { jobsExpired: 1, artifactsExpired: 2, jobEventLogsDeleted: 0, jobEventsDeleted: 0, blobsDeleted: 1, failures: 0 });
    for (const key of [model.blobKey, metrics.blobKey, stray, earlierAttempt]) assert.ok(!existsSync(blobFile(key)), `${key} removed`);
    assert.ok(!existsSync(blobFile(`artifacts/${early.unitId}`)), "the unit's whole prefix is gone");
    for (const key of [lateModel.blobKey, runningModel.blobKey]) assert.ok(existsSync(blobFile(key)), `${key} kept`);

    // A URL minted before the sweep, used after it.
    const fetched = await fetch(minted.body["download_url"] as string);
    assert.equal(fetched.status, 410);
    assert.equal(((await fetched.json()) as { error: { code: string } }).error.code, "ARTIFACT_EXPIRED");
    const refused = await downloadUrl(early.jobId, model.artifactId);
    assert.equal(refused.status, 410);
    const error = refused.body["error"] as { code: string; message: string };
    assert.equal(error.code, "ARTIFACT_EXPIRED");
    assert.match(error.message, /kept 30 days after their job ends/);
    assert.equal((await downloadUrl(late.jobId, lateModel.artifactId)).status, 201);

    const listed = await request(cp, "GET", `/api/v1/customer/training-jobs/${early.jobId}/artifacts`, { headers: { "x-api-key": apiKey } });
    const rows = listed.body["data"] as { name: string; expires_at: string; expired_at?: string }[];
    assert.equal(rows.length, 2, "the rows stay, marked");
    for (const row of rows) {
      assert.equal(Date.parse(row.expires_at), t0 - day + 30 * day);
      assert.equal(Date.parse(row.expired_at ?? ""), clock.now());
    }
    const runningRows = (await request(cp, "GET", `/api/v1/customer/training-jobs/${running.jobId}/artifacts`, { headers: { "x-api-key": apiKey } })).body["data"] as Record<string, unknown>[];
    assert.equal(runningRows[0]?.["expires_at"], undefined, "no expiry while the job runs");

    assert.deepEqual(await artifactUsage(db, customerId), { count: 2, bytes: 1200 }, "only the kept artifacts count");
    assert.deepEqual(await sweepStorage(cp.plane.deps), { jobsExpired: 0, artifactsExpired: 0, jobEventLogsDeleted: 0, jobEventsDeleted: 0, blobsDeleted: 0, failures: 0 }, "a second sweep finds nothing");

    clock.advance(day);
    assert.deepEqual(await sweepStorage(cp.plane.deps), { jobsExpired: 1, artifactsExpired: 1, jobEventLogsDeleted: 0, jobEventsDeleted: 0, blobsDeleted: 1, failures: 0 }, "the later job a day later");
    assert.ok(!existsSync(blobFile(lateModel.blobKey)));
  });

  it("an upload whose URL expired unused no longer counts against the quota", async () => {
    const { apiKey } = await createCustomer(cp);
    const create = (name: string) =>
      request(cp, "POST", "/api/v1/customer/datasets", { body: { name, size_bytes: 10, sha256: "b".repeat(64) }, headers: { "x-api-key": apiKey } });
    assert.equal((await create("first")).status, 201);
    assert.equal((await create("second")).status, 409, "a quota of one dataset, reserved by the pending upload");
    clock.advance(defaultLimits.uploadUrlTtlSeconds * 1000 + 1);
    assert.equal((await create("second")).status, 201);
  });
});
