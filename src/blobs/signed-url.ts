/**
 * Signed, expiring URLs for blob uploads and downloads. The signature is
 * HMAC-SHA256 over (operation, key, expiry) with a key only the control plane
 * holds, so a URL cannot be widened to another blob, operation or time.
 * Single use for uploads is enforced by the owner row in the database, not here.
 */
import { createHmac } from "node:crypto";
import { safeEqual } from "../platform/ids.ts";

/** What a signed URL allows. */
export type BlobOperation = "put" | "get";

/** A verified request for a blob. */
export interface SignedBlobRequest {
  op: BlobOperation;
  key: string;
  expiresAtMs: number;
}

/** Path prefix of every signed blob URL. */
export const blobPathPrefix = "/blobs/";

/** Mints and checks signed URLs. */
export interface UrlSigner {
  sign(op: BlobOperation, key: string, expiresAtMs: number): string;
  /** Returns the request when the URL's signature holds and it has not expired; otherwise a reason. */
  verify(url: URL, nowMs: number): { ok: true; request: SignedBlobRequest } | { ok: false; reason: "invalid" | "expired" };
}

/** A signer for URLs under `publicUrl` (a function when the URL is known only once the server listens). */
export function createUrlSigner(publicUrl: string | (() => string), secret: string): UrlSigner {
  const base = typeof publicUrl === "string" ? () => publicUrl : publicUrl;
  const mac = (op: string, key: string, exp: number) =>
    createHmac("sha256", secret).update(`${op}\n${key}\n${exp}`).digest("base64url");
  return {
    sign(op, key, expiresAtMs) {
      const exp = Math.floor(expiresAtMs / 1000);
      const url = new URL(blobPathPrefix + key, base());
      url.searchParams.set("op", op);
      url.searchParams.set("exp", String(exp));
      url.searchParams.set("sig", mac(op, key, exp));
      return url.toString();
    },
    verify(url, nowMs) {
      if (!url.pathname.startsWith(blobPathPrefix)) return { ok: false, reason: "invalid" };
      let key: string;
      try {
        key = decodeURIComponent(url.pathname.slice(blobPathPrefix.length));
      } catch {
        // Malformed percent-encoding: no URL this signer issued looks like that.
        return { ok: false, reason: "invalid" };
      }
      const op = url.searchParams.get("op");
      const exp = Number(url.searchParams.get("exp"));
      const sig = url.searchParams.get("sig") ?? "";
      if ((op !== "put" && op !== "get") || !Number.isInteger(exp)) return { ok: false, reason: "invalid" };
      if (!safeEqual(sig, mac(op, key, exp))) return { ok: false, reason: "invalid" };
      if (exp * 1000 <= nowMs) return { ok: false, reason: "expired" };
      return { ok: true, request: { op, key, expiresAtMs: exp * 1000 } };
    },
  };
}
