/**
 * Uploading a dataset or training package from the browser, the API's way:
 *   1. sha256 of the file, read in slices (no whole-file buffer; works on
 *      plain-HTTP origins, where crypto.subtle is missing),
 *   2. POST /api/v1/customer/{datasets|training-packages} {name, size_bytes, sha256, …},
 *   3. PUT the bytes to the signed upload_url with XMLHttpRequest (fetch has
 *      no upload progress),
 *   4. POST …/{id}/finalize (the server re-checks size and sha256).
 */
import { sha256 } from "@noble/hashes/sha2.js";
import { bytesToHex } from "@noble/hashes/utils.js";
import { api, errorFromResponse, PortalApiError, sameOrigin } from "./client.ts";
import type { Upload } from "./types.ts";

/** Which collection an upload goes to. */
export type UploadKind = "datasets" | "training-packages";

/** Where an upload stands, for the progress bar. */
export type UploadPhase = "hashing" | "creating" | "uploading" | "finalizing" | "done";

/** Progress callback: `fraction` 0..1 of the current phase. */
export type UploadProgress = (phase: UploadPhase, fraction: number, loadedBytes: number, totalBytes: number) => void;

const sliceBytes = 4 * 1024 * 1024;

/** Lower-case hex sha256 of a file, reading it slice by slice. */
export async function sha256Hex(file: Blob, onProgress: (fraction: number) => void, signal?: AbortSignal): Promise<string> {
  const hash = sha256.create();
  for (let offset = 0; offset < file.size; offset += sliceBytes) {
    signal?.throwIfAborted();
    const chunk = new Uint8Array(await file.slice(offset, offset + sliceBytes).arrayBuffer());
    hash.update(chunk);
    onProgress(Math.min(1, (offset + chunk.length) / file.size));
  }
  onProgress(1);
  return bytesToHex(hash.digest());
}

/** PUTs the bytes with upload progress. */
function putWithProgress(url: string, file: Blob, onProgress: (loaded: number) => void, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open("PUT", sameOrigin(url));
    xhr.setRequestHeader("content-type", "application/octet-stream");
    xhr.upload.onprogress = (e) => onProgress(e.loaded);
    xhr.onload = () => {
      if (xhr.status >= 200 && xhr.status < 300) {
        onProgress(file.size);
        resolve();
        return;
      }
      const res = new Response(xhr.responseText, { status: xhr.status, headers: { "content-type": "application/json", "x-request-id": xhr.getResponseHeader("x-request-id") ?? "" } });
      void errorFromResponse(res).then(reject, reject);
    };
    xhr.onerror = () => reject(new PortalApiError("NETWORK_ERROR", "the upload was interrupted"));
    xhr.onabort = () => reject(new DOMException("upload cancelled", "AbortError"));
    signal?.addEventListener("abort", () => xhr.abort(), { once: true });
    xhr.send(file);
  });
}

/** Creates, uploads and finalizes; resolves to the finalized dataset or package. */
export async function uploadFile(
  kind: UploadKind,
  file: File,
  fields: { name: string; format?: string; entrypoint?: string },
  onProgress: UploadProgress,
  signal?: AbortSignal,
): Promise<Upload> {
  const total = file.size;
  const digest = await sha256Hex(file, (f) => onProgress("hashing", f, 0, total), signal);
  onProgress("creating", 0, 0, total);
  const body: Record<string, unknown> = { name: fields.name, size_bytes: String(total), sha256: digest };
  if (kind === "datasets" && fields.format !== undefined && fields.format !== "") body["format"] = fields.format;
  if (kind === "training-packages" && fields.entrypoint !== undefined && fields.entrypoint !== "") body["entrypoint"] = fields.entrypoint;
  const created = await api<Upload>("POST", `/api/v1/customer/${kind}`, { body, ...(signal === undefined ? {} : { signal }) });
  await putWithProgress(created.upload_url, file, (loaded) => onProgress("uploading", total === 0 ? 1 : loaded / total, loaded, total), signal);
  return finalizeUpload(kind, created.id, onProgress, total);
}

/** Finalizes an uploaded dataset or package (also the retry for one left awaiting_upload). */
export async function finalizeUpload(kind: UploadKind, id: string, onProgress?: UploadProgress, total = 0): Promise<Upload> {
  onProgress?.("finalizing", 0, total, total);
  const done = await api<Upload>("POST", `/api/v1/customer/${kind}/${encodeURIComponent(id)}/finalize`, { body: {} });
  onProgress?.("done", 1, total, total);
  return done;
}
