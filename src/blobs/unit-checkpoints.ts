/**
 * Checkpoints on their way in: a node stores the checkpoint file a running unit announced
 * (`PUT <Assign.checkpoint_upload_url>/<name>`), and the agent stream records it as the unit's latest once
 * the node announces it (CheckpointReady: src/jobs/lifecycle.ts applyCheckpointReady). A later attempt of the
 * unit, placed after its node failed it, downloads the latest by signed URL (src/agent-streams/assignments.ts).
 *
 * Bounds: one checkpoint file is at most the per-unit artifact bound (`unitArtifactsMaxBytes`, 2 GiB by
 * default), and checkpoint files count against the customer's artifact quota while they are kept. A unit keeps
 * one checkpoint (its latest), and a node may hold at most {@link MAX_UNRECORDED_CHECKPOINT_UPLOADS} more on
 * their way, so a unit stores at most three files of that bound at any time, whatever it writes.
 * Checkpoints are not counted against the attempt's artifact bound: that bounds what the attempt leaves, and
 * a unit that writes a checkpoint every epoch keeps only the last.
 */
import type { Readable } from "node:stream";
import type { Clock } from "../platform/clock.ts";
import type { StorageQuotas } from "../platform/config.ts";
import { ApiError } from "../platform/errors.ts";
import { newId } from "../platform/ids.ts";
import type { Database } from "../store/database.ts";
import { attemptTakingCheckpoints, countUnrecordedCheckpointUploads, insertCheckpointUpload } from "../store/checkpoints.ts";
import { artifactUsage, lockCustomerStorage } from "../store/storage.ts";
import { artifactNamePattern } from "./artifact-keys.ts";
import type { BlobStore, StoredBlob } from "./blob-store.ts";
import { BlobTooLargeError } from "./blob-store.ts";
import { quotaRefusal } from "./quotas.ts";

/** Checkpoint files of a unit stored but not (yet) its latest; the agent uploads one at a time. */
export const MAX_UNRECORDED_CHECKPOINT_UPLOADS = 2;

/**
 * Blob key of one stored checkpoint file: under the unit's artifact prefix (the retention sweep removes it
 * with them), and unique per upload, so the file a recorded checkpoint points at is never overwritten by a
 * unit that writes the same name again. `checkpoints` is never an attempt number, so artifact keys
 * (`artifacts/<unit>/<attempt>/<name>`) cannot meet these.
 */
export function checkpointBlobKey(unitId: string, attempt: number, uploadId: string, name: string): string {
  return `artifacts/${unitId}/checkpoints/${attempt}/${uploadId}-${name}`;
}

/** What receiving a node's checkpoint needs (a subset of ControlPlaneDeps). */
export interface CheckpointReceiptDeps {
  readonly db: Database;
  readonly clock: Clock;
  readonly blobs: BlobStore;
  readonly config: { readonly limits: { readonly storage: StorageQuotas } };
}

/** A checkpoint upload as the node sent it: the path's unit, attempt and name, and the Content-Length (NaN when absent). */
export interface CheckpointUpload {
  unitId: string;
  attempt: number;
  name: string;
  contentLength: number;
}

/**
 * Stores one checkpoint file of the unit attempt running on `nodeId`. Refused before any byte is stored:
 * another attempt (ended, re-placed, another node's), a bad name, a missing length, a file past the bound,
 * a unit with {@link MAX_UNRECORDED_CHECKPOINT_UPLOADS} files already on their way, a customer at the
 * artifact quota. The last two are decided again, exactly, once the bytes are stored (uploads sent at once
 * all pass the first look), and a refused file is deleted. The stored file is recorded with the sha256 of
 * the bytes that arrived, which is what a CheckpointReady must name.
 */
export async function receiveCheckpoint(deps: CheckpointReceiptDeps, nodeId: string, upload: CheckpointUpload, body: Readable): Promise<StoredBlob> {
  const { db, blobs } = deps;
  const { unitId, attempt, name, contentLength: length } = upload;
  if (!artifactNamePattern.test(name)) throw new ApiError("VALIDATION_FAILED", `checkpoint name ${JSON.stringify(name)} is not allowed`);
  const notTheAttempt = () => new ApiError("RESOURCE_NOT_FOUND", "no such unit attempt running on this node (checkpoints are taken from the current attempt only)");
  const owner = await attemptTakingCheckpoints(db, { unitId, attempt, nodeId });
  if (owner === undefined) throw notTheAttempt();
  if (!Number.isSafeInteger(length) || length < 0) throw new ApiError("VALIDATION_FAILED", "checkpoint uploads need a Content-Length header");
  const storage = deps.config.limits.storage;
  const bound = storage.unitArtifactsMaxBytes;
  if (length > bound) throw new ApiError("PAYLOAD_TOO_LARGE", `a checkpoint is limited to ${bound} bytes (the per-unit artifact bound); this one is ${length}`);
  const onTheirWay = () => new ApiError("RATE_LIMITED", `${MAX_UNRECORDED_CHECKPOINT_UPLOADS} checkpoints of this attempt are already on their way; announce them first`);
  if ((await countUnrecordedCheckpointUploads(db, unitId, attempt)) >= MAX_UNRECORDED_CHECKPOINT_UPLOADS) throw onTheirWay();
  const early = quotaRefusal(storage, "artifacts", await artifactUsage(db, owner.customerId), length);
  if (early !== undefined) throw early;
  const key = checkpointBlobKey(unitId, attempt, newId(), name);
  let stored: StoredBlob;
  try {
    stored = await blobs.put(key, body, { maxBytes: length });
  } catch (error) {
    if (error instanceof BlobTooLargeError) throw new ApiError("PAYLOAD_TOO_LARGE", `the body is longer than its Content-Length of ${length} bytes`);
    throw error;
  }
  // Decided under the customer's storage lock, so checkpoints and artifacts racing in cannot pass the quota
  // together, nor uploads of one attempt sent at once the number on their way.
  const refusal = await db.transaction(async (tx) => {
    await lockCustomerStorage(tx, owner.customerId);
    // An attempt that ended while its bytes arrived keeps none: no later attempt would resume from them.
    if ((await attemptTakingCheckpoints(tx, { unitId, attempt, nodeId })) === undefined) return notTheAttempt();
    if ((await countUnrecordedCheckpointUploads(tx, unitId, attempt)) >= MAX_UNRECORDED_CHECKPOINT_UPLOADS) return onTheirWay();
    const exact = quotaRefusal(storage, "artifacts", await artifactUsage(tx, owner.customerId), stored.size);
    if (exact !== undefined) return exact;
    await insertCheckpointUpload(tx, {
      blob_key: key,
      unit_id: unitId,
      job_id: owner.jobId,
      customer_id: owner.customerId,
      attempt,
      name,
      size_bytes: stored.size,
      sha256: stored.sha256,
      stored_at: new Date(deps.clock.now()),
    });
    return undefined;
  });
  if (refusal !== undefined) {
    await blobs.delete(key);
    throw refusal;
  }
  return stored;
}
