/**
 * The raw HTTP routes behind signed URLs (customer uploads and downloads) and
 * the agents' artifact uploads. Bodies stream straight to the blob store with
 * a byte limit; nothing is buffered in memory.
 *
 *   PUT /blobs/<key>?op=put&exp&sig   dataset/package bytes (single use, ≤ declared size)
 *   GET /blobs/<key>?op=get&exp&sig   package, dataset or artifact bytes
 *   PUT /agent/v1/units/<unit>/attempts/<n>/artifacts/<name>   (node credential)
 */
import type { Readable } from "node:stream";
import { authenticateNode } from "../auth/authenticate.ts";
import { ApiError } from "../platform/errors.ts";
import { writeApiError } from "./rest/transcoder.ts";
import type { Clock } from "../platform/clock.ts";
import type { SchedulerConfig } from "../platform/config.ts";
import type { HttpRoute, RestRequest, RestResponse } from "../platform/http-types.ts";
import { findUnit } from "../store/jobs.ts";
import type { UploadTable } from "../store/uploads.ts";
import { claimUpload, findUploadByBlobKey, releaseUpload } from "../store/uploads.ts";
import { artifactExpiredAt, artifactUsage, releaseUnitArtifactBytes, reserveUnitArtifactBytes } from "../store/storage.ts";
import { artifactBlobKey, artifactNamePattern } from "../blobs/artifact-keys.ts";
import type { BlobStore } from "../blobs/blob-store.ts";
import { BlobTooLargeError } from "../blobs/blob-store.ts";
import type { UrlSigner } from "../blobs/signed-url.ts";
import type { Database } from "../store/database.ts";
import { quotaRefusal } from "../blobs/quotas.ts";

function tableOfKey(key: string): UploadTable | undefined {
  if (key.startsWith("datasets/")) return "datasets";
  if (key.startsWith("packages/")) return "training_packages";
  return undefined;
}

/**
 * Upload bodies are stored byte for byte and bounded as they arrive; nothing is decoded. A body in a
 * content coding would be stored still encoded (and hash to something else): refused up front.
 */
function refuseContentCoding(req: RestRequest): void {
  const coding = String(req.headers["content-encoding"] ?? "identity").trim().toLowerCase();
  if (coding !== "identity" && coding !== "") {
    throw new ApiError("UNSUPPORTED_MEDIA_TYPE", `content encoding "${coding}" is not accepted here: upload the bytes as they are to be stored`);
  }
}

function requestUrl(req: RestRequest): URL {
  return new URL(req.url ?? "/", "http://localhost");
}

function writeJson(res: RestResponse, status: number, body: unknown, requestId: string): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { "content-type": "application/json", "content-length": Buffer.byteLength(text), "x-request-id": requestId });
  res.end(text);
}

/** What the blob routes need (a subset of ControlPlaneDeps). */
export interface BlobRouteDeps {
  readonly config: SchedulerConfig;
  readonly db: Database;
  readonly blobs: BlobStore;
  readonly signer: UrlSigner;
  readonly clock: Clock;
}

/** Builds the routes. */
export function createBlobRoutes(deps: BlobRouteDeps): HttpRoute[] {
  const { signer, blobs, db, clock, config } = deps;

  const verify = (req: RestRequest, op: "put" | "get") => {
    const result = signer.verify(requestUrl(req), clock.now());
    if (!result.ok) {
      throw result.reason === "expired"
        ? new ApiError(
            "SIGNED_URL_EXPIRED",
            op === "get" ? "this download URL has expired; mint a new one with POST …/download-url" : "this upload URL has expired; create the upload again",
          )
        : new ApiError("SIGNED_URL_INVALID", "this signed URL is not valid (altered or not issued here)");
    }
    if (result.request.op !== op) throw new ApiError("SIGNED_URL_INVALID", `this signed URL does not allow ${op.toUpperCase()}`);
    return result.request;
  };

  /** Why a blob a signed URL names is gone, when retention removed it (a URL minted before, used after). */
  const goneReason = async (key: string): Promise<ApiError | undefined> => {
    const parts = /^artifacts\/([0-9a-f-]{36})\/(\d{1,6})\/([^/]+)$/.exec(key);
    if (parts === null) return undefined;
    const expiredAt = await artifactExpiredAt(db, parts[1]!, Number(parts[2]), parts[3]!);
    if (expiredAt === undefined) return undefined;
    return new ApiError("ARTIFACT_EXPIRED", `this artifact was removed on ${expiredAt.toISOString()}: artifacts are kept ${config.limits.storage.artifactRetentionDays} days after their job ends`);
  };

  const upload: HttpRoute = {
    method: "PUT",
    pattern: /^\/blobs\/(.+)$/,
    async handle(req, res, _match, requestId) {
      try {
        const { key } = verify(req, "put");
        refuseContentCoding(req);
        const table = tableOfKey(key);
        const row = table === undefined ? undefined : await findUploadByBlobKey(db, table, key);
        if (table === undefined || row === undefined) throw new ApiError("SIGNED_URL_INVALID", "this signed URL does not name an upload");
        const declared = Number(req.headers["content-length"] ?? NaN);
        if (Number.isFinite(declared) && declared > row.size_bytes) {
          throw new ApiError("PAYLOAD_TOO_LARGE", `the body is ${declared} bytes but size_bytes declared ${row.size_bytes}`);
        }
        if (!(await claimUpload(db, table, row.id, new Date(clock.now())))) {
          throw new ApiError("STATE_CONFLICT", "this upload URL was already used or has expired; create a new upload");
        }
        try {
          const stored = await blobs.put(key, req as Readable, { maxBytes: row.size_bytes });
          // Deleted while the bytes arrived: the delete's removal may have run before they landed.
          if ((await findUploadByBlobKey(db, table, key))?.status === "deleted") {
            await blobs.delete(key);
            throw new ApiError(table === "datasets" ? "DATASET_NOT_FOUND" : "TRAINING_PACKAGE_NOT_FOUND", "this upload was deleted while its bytes arrived; nothing is kept");
          }
          writeJson(res, 200, { size_bytes: String(stored.size), sha256: stored.sha256 }, requestId);
        } catch (error) {
          await releaseUpload(db, table, row.id);
          if (error instanceof BlobTooLargeError) {
            throw new ApiError("PAYLOAD_TOO_LARGE", `the body exceeds the declared size_bytes of ${row.size_bytes}`);
          }
          throw error;
        }
      } catch (error) {
        writeApiError(res, error, requestId);
      }
    },
  };

  const download: HttpRoute = {
    method: "GET",
    pattern: /^\/blobs\/(.+)$/,
    async handle(req, res, _match, requestId) {
      try {
        const { key } = verify(req, "get");
        let opened: Awaited<ReturnType<typeof blobs.open>>;
        try {
          opened = await blobs.open(key);
        } catch (error) {
          throw (await goneReason(key)) ?? new ApiError("SIGNED_URL_FAILED", "the blob is not available in storage", { cause: error });
        }
        const fileName = key.split("/").at(-1) ?? "blob";
        res.writeHead(200, {
          "content-type": "application/octet-stream",
          "content-length": opened.size,
          "content-disposition": `attachment; filename="${fileName.replace(/[^A-Za-z0-9._-]/g, "_")}"`,
          "x-request-id": requestId,
        });
        opened.stream.pipe(res as NodeJS.WritableStream);
        await new Promise<void>((resolve) => {
          opened.stream.on("close", resolve);
          opened.stream.on("error", () => {
            res.destroy();
            resolve();
          });
        });
      } catch (error) {
        writeApiError(res, error, requestId);
      }
    },
  };

  const artifactUpload: HttpRoute = {
    method: "PUT",
    pattern: /^\/agent\/v1\/units\/([0-9a-f-]{36})\/attempts\/(\d{1,6})\/artifacts\/([^/]+)$/,
    async handle(req, res, match, requestId) {
      try {
        const authorization = req.headers["authorization"];
        const node = await authenticateNode(deps.db, typeof authorization === "string" ? authorization : null);
        refuseContentCoding(req);
        const unitId = match[1]!;
        const attempt = Number(match[2]);
        let name: string;
        try {
          name = decodeURIComponent(match[3]!);
        } catch {
          throw new ApiError("VALIDATION_FAILED", "the artifact name in the path is not valid percent-encoding; encode it with encodeURIComponent");
        }
        if (!artifactNamePattern.test(name)) throw new ApiError("VALIDATION_FAILED", `artifact name ${JSON.stringify(name)} is not allowed`);
        const unit = await findUnit(db, unitId);
        if (unit === undefined || unit.node_id !== node.id || unit.attempt !== attempt || !["assigned", "running"].includes(unit.status)) {
          throw new ApiError("RESOURCE_NOT_FOUND", "no such running unit attempt on this node");
        }
        const length = Number(req.headers["content-length"] ?? NaN);
        if (!Number.isSafeInteger(length) || length < 0) throw new ApiError("VALIDATION_FAILED", "artifact uploads need a Content-Length header");
        const storage = config.limits.storage;
        const unitBound = storage.unitArtifactsMaxBytes;
        if (length > unitBound) {
          throw new ApiError("PAYLOAD_TOO_LARGE", `the artifacts of one compute unit are limited to ${unitBound} bytes in all; this one alone is ${length}`);
        }
        // An early answer, before any byte is stored; recording the artifact decides exactly (applyArtifactReady).
        const refusal = quotaRefusal(storage, "artifacts", await artifactUsage(db, unit.customer_id), length);
        if (refusal !== undefined) throw refusal;
        const key = artifactBlobKey(unitId, attempt, name);
        // Every stored upload counts, one that replaces an earlier upload of the same name too: giving the
        // replaced bytes back would let parallel uploads of one name count less than they store.
        if (!(await reserveUnitArtifactBytes(db, unitId, attempt, length, unitBound))) {
          throw new ApiError("PAYLOAD_TOO_LARGE", `the artifacts of one compute unit are limited to ${unitBound} bytes in all; this attempt's uploads would pass that`);
        }
        let stored: Awaited<ReturnType<typeof blobs.put>>;
        try {
          stored = await blobs.put(key, req as Readable, { maxBytes: length });
        } catch (error) {
          await releaseUnitArtifactBytes(db, unitId, attempt, length);
          if (error instanceof BlobTooLargeError) throw new ApiError("PAYLOAD_TOO_LARGE", `the body is longer than its Content-Length of ${length} bytes`);
          throw error;
        }
        // HTTP/2 does not hold a body to its Content-Length: what was not sent is not counted.
        await releaseUnitArtifactBytes(db, unitId, attempt, length - stored.size);
        writeJson(res, 201, { size_bytes: String(stored.size), sha256: stored.sha256 }, requestId);
      } catch (error) {
        writeApiError(res, error, requestId);
      }
    },
  };

  return [upload, download, artifactUpload];
}
