/**
 * A compute unit's artifacts on their way in and out of the blob store: a node uploads the files
 * one attempt produced, within the per-attempt bound and the customer's artifact quota; the customer
 * gets a signed download URL for one, until retention removes it; a signed URL is opened for
 * download, or told why its blob is gone.
 */
import type { Readable } from "node:stream";
import type { Clock } from "../platform/clock.ts";
import type { LimitsConfig, StorageQuotas } from "../platform/config.ts";
import { ApiError } from "../platform/errors.ts";
import { requireId } from "../platform/fields.ts";
import type { Database } from "../store/database.ts";
import { findArtifact, findJob } from "../store/jobs.ts";
import { artifactExpiredAt, artifactUsage, attemptTakingArtifacts, releaseUnitArtifactBytes, reserveUnitArtifactBytes } from "../store/storage.ts";
import { artifactBlobKey, artifactNamePattern } from "./artifact-keys.ts";
import type { BlobStore, StoredBlob } from "./blob-store.ts";
import { BlobTooLargeError } from "./blob-store.ts";
import { quotaRefusal } from "./quotas.ts";
import type { UrlSigner } from "./signed-url.ts";

/** What receiving a node's artifact needs (a subset of ControlPlaneDeps). */
export interface ArtifactReceiptDeps {
  readonly db: Database;
  readonly clock: Clock;
  readonly blobs: BlobStore;
  readonly config: { readonly limits: { readonly storage: StorageQuotas } };
}

/**
 * How long after an attempt ended cancelled or failed its node may still start uploading its artifacts.
 * A cancelled unit's end is the customer's cancel; the agent then stops its processes (SIGTERM, SIGKILL
 * 5 s later) and uploads its outputs one after another, each retried for a few seconds. 30 minutes lets
 * the last of them start after the per-attempt bound (2 GiB by default) went up a home uplink of
 * 10 Mbit/s, and keeps a node from adding to a job long after it ended.
 */
export const ENDED_ATTEMPT_UPLOAD_WINDOW_SECONDS = 30 * 60;

/** An artifact upload as the node sent it: the path's unit, attempt and name, and the Content-Length (NaN when absent). */
export interface ArtifactUpload {
  unitId: string;
  attempt: number;
  name: string;
  contentLength: number;
}

/**
 * Stores one artifact file of a unit attempt that runs on `nodeId`, or that ended there cancelled or
 * failed within {@link ENDED_ATTEMPT_UPLOAD_WINDOW_SECONDS} while its job's artifacts are kept (the
 * outputs of a killed run; nothing is debited for them). Refused before any byte is stored: any other
 * attempt (another node's, a completed one, one that ended longer ago), a missing length, a file past
 * the per-attempt bound, a customer at the artifact quota (an early answer: recording the artifact
 * decides exactly, applyArtifactReady). Every stored upload counts against the attempt's bound, one that replaces
 * an earlier upload of the same name too: giving the replaced bytes back would let parallel uploads
 * of one name count less than they store.
 */
export async function receiveArtifact(deps: ArtifactReceiptDeps, nodeId: string, upload: ArtifactUpload, body: Readable): Promise<StoredBlob> {
  const { db, blobs } = deps;
  const { unitId, attempt, name, contentLength: length } = upload;
  if (!artifactNamePattern.test(name)) throw new ApiError("VALIDATION_FAILED", `artifact name ${JSON.stringify(name)} is not allowed`);
  const endedSince = new Date(deps.clock.now() - ENDED_ATTEMPT_UPLOAD_WINDOW_SECONDS * 1000);
  const unit = await attemptTakingArtifacts(db, { unitId, attempt, nodeId }, endedSince);
  if (unit === undefined) {
    throw new ApiError(
      "RESOURCE_NOT_FOUND",
      `no such unit attempt on this node: running, or ended cancelled or failed in the last ${ENDED_ATTEMPT_UPLOAD_WINDOW_SECONDS / 60} minutes with its job's artifacts kept`,
    );
  }
  if (!Number.isSafeInteger(length) || length < 0) throw new ApiError("VALIDATION_FAILED", "artifact uploads need a Content-Length header");
  const storage = deps.config.limits.storage;
  const unitBound = storage.unitArtifactsMaxBytes;
  if (length > unitBound) {
    throw new ApiError("PAYLOAD_TOO_LARGE", `the artifacts of one compute unit are limited to ${unitBound} bytes in all; this one alone is ${length}`);
  }
  const refusal = quotaRefusal(storage, "artifacts", await artifactUsage(db, unit.customerId), length);
  if (refusal !== undefined) throw refusal;
  const key = artifactBlobKey(unitId, attempt, name);
  if (!(await reserveUnitArtifactBytes(db, unitId, attempt, length, unitBound))) {
    throw new ApiError("PAYLOAD_TOO_LARGE", `the artifacts of one compute unit are limited to ${unitBound} bytes in all; this attempt's uploads would pass that`);
  }
  let stored: StoredBlob;
  try {
    stored = await blobs.put(key, body, { maxBytes: length });
  } catch (error) {
    await releaseUnitArtifactBytes(db, unitId, attempt, length);
    if (error instanceof BlobTooLargeError) throw new ApiError("PAYLOAD_TOO_LARGE", `the body is longer than its Content-Length of ${length} bytes`);
    throw error;
  }
  // HTTP/2 does not hold a body to its Content-Length: what was not sent is not counted.
  await releaseUnitArtifactBytes(db, unitId, attempt, length - stored.size);
  return stored;
}

/** What handing out artifacts needs (a subset of ControlPlaneDeps). */
export interface ArtifactDownloadDeps {
  readonly db: Database;
  readonly clock: Clock;
  readonly blobs: BlobStore;
  readonly signer: UrlSigner;
  readonly config: { readonly limits: Pick<LimitsConfig, "downloadUrlTtlSeconds" | "storage"> };
}

/** A signed GET URL for one artifact, and when it stops working. */
export interface ArtifactDownloadUrl {
  url: string;
  expiresAtMs: number;
  ttlSeconds: number;
}

/**
 * A download URL for an artifact of one of the customer's jobs. Unknown, malformed and other
 * customers' ids are not found; an artifact removed by retention is ARTIFACT_EXPIRED with its date;
 * one whose bytes are missing from storage is SIGNED_URL_FAILED.
 */
export async function artifactDownloadUrl(deps: ArtifactDownloadDeps, customerId: string, jobId: string, artifactId: string): Promise<ArtifactDownloadUrl> {
  const { db, config } = deps;
  const job = requireId(jobId, "JOB_NOT_FOUND", "training job");
  if ((await findJob(db, customerId, job)) === undefined) throw new ApiError("JOB_NOT_FOUND", `training job ${jobId} not found`);
  const artifact = await findArtifact(db, customerId, job, requireId(artifactId, "ARTIFACT_NOT_FOUND", "artifact"));
  if (artifact === undefined) throw new ApiError("ARTIFACT_NOT_FOUND", `artifact ${artifactId} not found`);
  if (artifact.expired_at !== null) {
    throw new ApiError(
      "ARTIFACT_EXPIRED",
      `artifact ${artifact.id} was removed on ${artifact.expired_at.toISOString()}: artifacts are kept ${config.limits.storage.artifactRetentionDays} days after their job ends`,
      { details: { expired_at: artifact.expired_at.toISOString() } },
    );
  }
  if (!(await deps.blobs.exists(artifact.blob_key))) throw new ApiError("SIGNED_URL_FAILED", "the artifact's bytes are not available in storage; try again later");
  const ttlSeconds = config.limits.downloadUrlTtlSeconds;
  const expiresAtMs = deps.clock.now() + ttlSeconds * 1000;
  return { url: deps.signer.sign("get", artifact.blob_key, expiresAtMs), expiresAtMs, ttlSeconds };
}

/**
 * Opens the blob a verified download URL names. When it is gone, says why: an artifact removed by
 * retention (a URL minted before, used after) is ARTIFACT_EXPIRED, anything else SIGNED_URL_FAILED.
 */
export async function openDownload(
  deps: { readonly db: Database; readonly blobs: BlobStore; readonly config: { readonly limits: { readonly storage: StorageQuotas } } },
  key: string,
): Promise<{ stream: Readable; size: number }> {
  try {
    return await deps.blobs.open(key);
  } catch (error) {
    throw (await expiredArtifactReason(deps, key)) ?? new ApiError("SIGNED_URL_FAILED", "the blob is not available in storage", { cause: error });
  }
}

async function expiredArtifactReason(
  deps: { readonly db: Database; readonly config: { readonly limits: { readonly storage: StorageQuotas } } },
  key: string,
): Promise<ApiError | undefined> {
  const parts = /^artifacts\/([0-9a-f-]{36})\/(\d{1,6})\/([^/]+)$/.exec(key);
  if (parts === null) return undefined;
  const expiredAt = await artifactExpiredAt(deps.db, parts[1]!, Number(parts[2]), parts[3]!);
  if (expiredAt === undefined) return undefined;
  return new ApiError(
    "ARTIFACT_EXPIRED",
    `this artifact was removed on ${expiredAt.toISOString()}: artifacts are kept ${deps.config.limits.storage.artifactRetentionDays} days after their job ends`,
  );
}
