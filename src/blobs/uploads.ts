/**
 * The life cycle of a customer's dataset or training package, whichever protocol asked: created
 * with its declared size and sha256 (reserved against the storage quota from then on), its bytes
 * received once through a signed URL, finalized when they match (packages also inspected), deleted
 * with its bytes. Quota decisions are taken in one transaction under the customer's storage lock
 * (src/store/storage.ts), so they are exact across replicas; a refusal stores nothing.
 */
import { createHash } from "node:crypto";
import type { Readable } from "node:stream";
import type { Logger } from "pino";
import { planJob } from "../planner/plan.ts";
import type { Clock } from "../platform/clock.ts";
import type { LimitsConfig } from "../platform/config.ts";
import { ApiError, validationError } from "../platform/errors.ts";
import type { ErrorCode } from "../platform/errors.ts";
import { packageArchiveLimits } from "../platform/package-archive.ts";
import { requireId, requireName } from "../platform/fields.ts";
import { newId } from "../platform/ids.ts";
import type { Database } from "../store/database.ts";
import { lockCustomerStorage, requestBlobDeletion } from "../store/storage.ts";
import type { UploadRow, UploadTable } from "../store/uploads.ts";
import {
  activeJobsUsing,
  claimUpload,
  findUpload,
  findUploadByBlobKey,
  insertUpload,
  markUploadDeleted,
  markUploadReady,
  readyUsage,
  releaseUpload,
  resetUpload,
  uploadUsage,
} from "../store/uploads.ts";
import type { BlobStore, StoredBlob } from "./blob-store.ts";
import { BlobTooLargeError } from "./blob-store.ts";
import { inspectPackage } from "./package-inspect.ts";
import { quotaRefusal } from "./quotas.ts";
import { removeUnneededBlob } from "./storage-sweeper.ts";

const sha256Pattern = /^[0-9a-f]{64}$/;

/** What the upload life cycle needs (a subset of ControlPlaneDeps). */
export interface UploadDeps {
  readonly db: Database;
  readonly clock: Clock;
  readonly blobs: BlobStore;
  readonly logger: Logger;
  readonly config: {
    readonly limits: Pick<LimitsConfig, "datasetMaxBytes" | "packageMaxBytes" | "packageMaxEntries" | "uploadUrlTtlSeconds" | "storage">;
  };
}

/** A dataset or package as the customer declares it, decoded from the protocol but not yet checked. */
export interface UploadRequest {
  name: string;
  sizeBytes: number;
  sha256: string;
  /** The dataset's format or the package's entrypoint, already checked by the caller. */
  extra: string;
}

/** The not-found code and the word for one kind of upload, as customers read them. */
function uploadWords(table: UploadTable): { code: ErrorCode; what: string } {
  return table === "datasets" ? { code: "DATASET_NOT_FOUND", what: "dataset" } : { code: "TRAINING_PACKAGE_NOT_FOUND", what: "training package" };
}

/** The upload's blob key prefix (datasets/…, packages/…): also how the signed-URL route tells the table. */
function blobKeyKind(table: UploadTable): string {
  return table === "datasets" ? "datasets" : "packages";
}

/** The table a blob key of an upload belongs to, or undefined when it names none. */
function uploadTableOfKey(key: string): UploadTable | undefined {
  if (key.startsWith("datasets/")) return "datasets";
  if (key.startsWith("packages/")) return "training_packages";
  return undefined;
}

/** Creates an upload awaiting its bytes, its declared size reserved against the quota. */
export async function createUpload(deps: UploadDeps, table: UploadTable, customerId: string, request: UploadRequest): Promise<UploadRow> {
  const { limits } = deps.config;
  const name = requireName(request.name, "name");
  const maxBytes = table === "datasets" ? limits.datasetMaxBytes : limits.packageMaxBytes;
  const size = request.sizeBytes;
  if (!Number.isSafeInteger(size) || size <= 0) throw validationError("size_bytes must be a positive integer", { field: "size_bytes" });
  if (size > maxBytes) throw new ApiError("PAYLOAD_TOO_LARGE", `size_bytes ${size} exceeds the limit of ${maxBytes} bytes`);
  const sha256 = request.sha256.trim().toLowerCase();
  if (!sha256Pattern.test(sha256)) throw validationError("sha256 must be 64 lower-case hex characters", { field: "sha256" });
  const id = newId();
  // The declared size is reserved against the quota from now on, decided under the customer's storage lock.
  return deps.db.transaction(async (tx) => {
    await lockCustomerStorage(tx, customerId);
    const at = new Date(deps.clock.now());
    const refusal = quotaRefusal(limits.storage, table, await uploadUsage(tx, table, customerId, at), size);
    if (refusal !== undefined) throw refusal;
    return insertUpload(tx, table, {
      id,
      customerId,
      name,
      sizeBytes: size,
      sha256,
      blobKey: `${blobKeyKind(table)}/${customerId}/${id}`,
      uploadExpiresAt: new Date(at.getTime() + limits.uploadUrlTtlSeconds * 1000),
      extra: request.extra,
    }, at);
  });
}

/** The customer's upload (not deleted), or its kind's not-found error (malformed ids and other customers' alike). */
export async function findCustomerUpload(db: Database, table: UploadTable, customerId: string, id: string): Promise<UploadRow> {
  const { code, what } = uploadWords(table);
  const row = await findUpload(db, table, customerId, requireId(id, code, what));
  if (row === undefined || row.status === "deleted") throw new ApiError(code, `${what} ${id} not found`);
  return row;
}

/**
 * Stores the bytes PUT to an upload's signed URL (`declaredLength`: the request's Content-Length,
 * NaN when absent). The URL is single use: the upload is claimed before the bytes are stored and
 * given back when the transfer fails, so the customer can retry with the same URL.
 */
export async function receiveUploadBytes(
  deps: Pick<UploadDeps, "db" | "clock" | "blobs">,
  key: string,
  declaredLength: number,
  body: Readable,
): Promise<StoredBlob> {
  const { db, blobs } = deps;
  const table = uploadTableOfKey(key);
  const row = table === undefined ? undefined : await findUploadByBlobKey(db, table, key);
  if (table === undefined || row === undefined) throw new ApiError("SIGNED_URL_INVALID", "this signed URL does not name an upload");
  if (Number.isFinite(declaredLength) && declaredLength > row.size_bytes) {
    throw new ApiError("PAYLOAD_TOO_LARGE", `the body is ${declaredLength} bytes but size_bytes declared ${row.size_bytes}`);
  }
  if (!(await claimUpload(db, table, row.id, new Date(deps.clock.now())))) {
    throw new ApiError("STATE_CONFLICT", "this upload URL was already used or has expired; create a new upload");
  }
  try {
    const stored = await blobs.put(key, body, { maxBytes: row.size_bytes });
    // Deleted while the bytes arrived: the delete's removal may have run before they landed.
    if ((await findUploadByBlobKey(db, table, key))?.status === "deleted") {
      await blobs.delete(key);
      throw new ApiError(uploadWords(table).code, "this upload was deleted while its bytes arrived; nothing is kept");
    }
    return stored;
  } catch (error) {
    await releaseUpload(db, table, row.id);
    if (error instanceof BlobTooLargeError) {
      throw new ApiError("PAYLOAD_TOO_LARGE", `the body exceeds the declared size_bytes of ${row.size_bytes}`);
    }
    throw error;
  }
}

/**
 * Verifies the uploaded bytes against the declared size and sha256 (and, for packages, the zip and
 * its manifest), then marks the upload ready under the quota. Idempotent: a ready upload is answered as it is.
 */
export async function finalizeUpload(deps: UploadDeps, table: UploadTable, customerId: string, id: string): Promise<UploadRow> {
  const { db, blobs } = deps;
  const { limits } = deps.config;
  const row = await findCustomerUpload(db, table, customerId, id);
  if (row.status === "ready") return row;
  if (row.uploaded_at === null || !(await blobs.exists(row.blob_key))) {
    throw new ApiError("UPLOAD_INVALID", "no bytes were uploaded yet; PUT the file to upload_url first");
  }
  const { stream, size } = await blobs.open(row.blob_key);
  const hash = createHash("sha256");
  for await (const chunk of stream) hash.update(chunk as Buffer);
  const actual = hash.digest("hex");
  if (size !== row.size_bytes || actual !== row.sha256) {
    // The bad upload is discarded; the declared values stay, so the customer can PUT again.
    await blobs.delete(row.blob_key);
    await resetUpload(db, table, row.id);
    throw new ApiError(
      "UPLOAD_INVALID",
      size !== row.size_bytes
        ? `uploaded ${size} bytes but size_bytes declared ${row.size_bytes}; upload again`
        : `sha256 of the uploaded bytes is ${actual}, not the declared ${row.sha256}; upload again`,
      { details: { expected_sha256: row.sha256, actual_sha256: actual, expected_size: row.size_bytes, actual_size: size } },
    );
  }
  let facts: { entryCount: number; manifest: unknown } | undefined;
  if (table === "training_packages") {
    const inspected = await inspectPackage(blobs.localPath(row.blob_key), {
      entrypoint: row.entrypoint ?? "train.py",
      // The configured bounds may only tighten what every agent unpacks, never widen it.
      maxEntries: Math.min(limits.packageMaxEntries, packageArchiveLimits.maxEntries),
      maxUncompressedBytes: Math.min(limits.packageMaxBytes * 4, packageArchiveLimits.maxUncompressedBytes),
    });
    // An invalid manifest is refused now, with its reason, not at job creation.
    planJob({ requiredVramMb: 1 << 30, requiredDiskMb: 1 << 30, maxRuntimeSeconds: 60, requiredGpuCount: 8, entrypoint: row.entrypoint ?? "train.py", manifest: inspected.manifest });
    facts = { entryCount: inspected.entryCount, manifest: inspected.manifest ?? null };
  }
  // The quota again, on what is ready: a lower quota set since creation holds too. Refused: nothing changes.
  const ready = await db.transaction(async (tx) => {
    await lockCustomerStorage(tx, customerId);
    const current = await findUpload(tx, table, customerId, row.id, true);
    if (current === undefined || current.status === "deleted") {
      const { code, what } = uploadWords(table);
      throw new ApiError(code, `${what} ${id} not found`);
    }
    if (current.status === "ready") return current;
    const refusal = quotaRefusal(limits.storage, table, await readyUsage(tx, table, customerId, row.id), size);
    if (refusal !== undefined) throw refusal;
    return markUploadReady(tx, table, row.id, new Date(deps.clock.now()), facts);
  });
  return ready ?? (await findCustomerUpload(db, table, customerId, id));
}

/**
 * Deletes a dataset or package and removes its bytes. The row and the queued removal commit
 * together; the bytes go right after, or with the storage sweep if that fails. One that a queued
 * or running job still needs is refused: its units fetch it when they are placed.
 */
export async function deleteUpload(
  deps: Pick<UploadDeps, "db" | "clock" | "blobs" | "logger">,
  table: UploadTable,
  customerId: string,
  id: string,
): Promise<{ id: string; deleted: boolean }> {
  const { code, what } = uploadWords(table);
  const rowId = requireId(id, code, what);
  const deleted = await deps.db.transaction(async (tx) => {
    // Excludes job creation's lock on the customer too, so no job can start using it while it goes.
    await lockCustomerStorage(tx, customerId);
    const row = await findUpload(tx, table, customerId, rowId, true);
    if (row === undefined || row.status === "deleted") throw new ApiError(code, `${what} ${id} not found`);
    const jobs = await activeJobsUsing(tx, table, customerId, row.id);
    if (jobs.length > 0) {
      throw new ApiError("STATE_CONFLICT", `${what} ${row.id} is used by active training job ${jobs.join(", ")}; cancel it or wait until it ends, then delete the ${what}`, {
        details: { job_ids: jobs },
      });
    }
    const at = new Date(deps.clock.now());
    await markUploadDeleted(tx, table, customerId, row.id, at);
    await requestBlobDeletion(tx, row.blob_key, at);
    return row;
  });
  await removeUnneededBlob(deps, deleted.blob_key);
  return { id: deleted.id, deleted: true };
}
