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
import { artifactBlobKey, authenticateNode } from "../agents/agent-service.ts";
import { ApiError } from "../api/errors.ts";
import type { RestRequest, RestResponse } from "../api/rest/transcoder.ts";
import { writeApiError } from "../api/rest/transcoder.ts";
import type { ControlPlaneDeps } from "../deps.ts";
import type { HttpRoute } from "../server/http-server.ts";
import { findUnit } from "../store/jobs.ts";
import type { UploadTable } from "../store/uploads.ts";
import { claimUpload, findUploadByBlobKey, releaseUpload } from "../store/uploads.ts";
import { BlobTooLargeError } from "./blob-store.ts";

/** Largest artifact an agent may upload. */
const artifactMaxBytes = 2 * 1024 ** 3;
const artifactNamePattern = /^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$/;

function tableOfKey(key: string): UploadTable | undefined {
  if (key.startsWith("datasets/")) return "datasets";
  if (key.startsWith("packages/")) return "training_packages";
  return undefined;
}

function requestUrl(req: RestRequest): URL {
  return new URL(req.url ?? "/", "http://localhost");
}

function writeJson(res: RestResponse, status: number, body: unknown, requestId: string): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { "content-type": "application/json", "content-length": Buffer.byteLength(text), "x-request-id": requestId });
  res.end(text);
}

/** Builds the routes. */
export function createBlobRoutes(deps: ControlPlaneDeps): HttpRoute[] {
  const { signer, blobs, db, clock } = deps;

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
          throw new ApiError("SIGNED_URL_FAILED", "the blob is not available in storage", { cause: error });
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
        const node = await authenticateNode(deps, typeof authorization === "string" ? authorization : null);
        const unitId = match[1]!;
        const attempt = Number(match[2]);
        const name = decodeURIComponent(match[3]!);
        if (!artifactNamePattern.test(name)) throw new ApiError("VALIDATION_FAILED", `artifact name ${JSON.stringify(name)} is not allowed`);
        const unit = await findUnit(db, unitId);
        if (unit === undefined || unit.node_id !== node.id || unit.attempt !== attempt || !["assigned", "running"].includes(unit.status)) {
          throw new ApiError("RESOURCE_NOT_FOUND", "no such running unit attempt on this node");
        }
        try {
          const stored = await blobs.put(artifactBlobKey(unitId, attempt, name), req as Readable, { maxBytes: artifactMaxBytes });
          writeJson(res, 201, { size_bytes: String(stored.size), sha256: stored.sha256 }, requestId);
        } catch (error) {
          if (error instanceof BlobTooLargeError) throw new ApiError("PAYLOAD_TOO_LARGE", `artifacts are limited to ${artifactMaxBytes} bytes`);
          throw error;
        }
      } catch (error) {
        writeApiError(res, error, requestId);
      }
    },
  };

  return [upload, download, artifactUpload];
}
