/**
 * The raw HTTP routes behind signed URLs (customer uploads and downloads) and
 * the agents' artifact uploads. Bodies stream straight to the blob store with
 * a byte limit; nothing is buffered in memory.
 *
 *   PUT /blobs/<key>?op=put&exp&sig   dataset/package bytes (single use, ≤ declared size)
 *   GET /blobs/<key>?op=get&exp&sig   package, dataset or artifact bytes
 *   PUT /agent/v1/units/<unit>/attempts/<n>/artifacts/<name>   (node credential)
 *   PUT /agent/v1/units/<unit>/attempts/<n>/checkpoints/<name> (node credential; src/blobs/unit-checkpoints.ts)
 */
import type { Readable } from "node:stream";
import { authenticateNode } from "../auth/authenticate.ts";
import { ApiError } from "../platform/errors.ts";
import { writeApiError } from "./rest/transcoder.ts";
import type { Clock } from "../platform/clock.ts";
import type { SchedulerConfig } from "../platform/config.ts";
import type { HttpRoute, RestRequest, RestResponse } from "../platform/http-types.ts";
import type { BlobStore } from "../blobs/blob-store.ts";
import type { UrlSigner } from "../blobs/signed-url.ts";
import { openDownload, receiveArtifact } from "../blobs/unit-artifacts.ts";
import { receiveCheckpoint } from "../blobs/unit-checkpoints.ts";
import { receiveUploadBytes } from "../blobs/uploads.ts";
import type { Database } from "../store/database.ts";

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
  const { signer, clock } = deps;

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

  const upload: HttpRoute = {
    method: "PUT",
    pattern: /^\/blobs\/(.+)$/,
    async handle(req, res, _match, requestId) {
      try {
        const { key } = verify(req, "put");
        refuseContentCoding(req);
        const stored = await receiveUploadBytes(deps, key, Number(req.headers["content-length"] ?? NaN), req as Readable);
        writeJson(res, 200, { size_bytes: String(stored.size), sha256: stored.sha256 }, requestId);
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
        const opened = await openDownload(deps, key);
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

  /** A node's upload of a unit attempt's file: artifacts and checkpoints alike, told apart by the path. */
  const nodeUpload = (what: "artifacts" | "checkpoints", receive: typeof receiveArtifact): HttpRoute => ({
    method: "PUT",
    pattern: new RegExp(`^/agent/v1/units/([0-9a-f-]{36})/attempts/(\\d{1,6})/${what}/([^/]+)$`),
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
          throw new ApiError("VALIDATION_FAILED", `the ${what === "artifacts" ? "artifact" : "checkpoint"} name in the path is not valid percent-encoding; encode it with encodeURIComponent`);
        }
        const upload = { unitId, attempt, name, contentLength: Number(req.headers["content-length"] ?? NaN) };
        const stored = await receive(deps, node.id, upload, req as Readable);
        writeJson(res, 201, { size_bytes: String(stored.size), sha256: stored.sha256 }, requestId);
      } catch (error) {
        writeApiError(res, error, requestId);
      }
    },
  });

  return [upload, download, nodeUpload("artifacts", receiveArtifact), nodeUpload("checkpoints", receiveCheckpoint)];
}
