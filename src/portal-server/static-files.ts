/**
 * Serves the built web portal (portal/ → portal/dist, `npm run build:portal`)
 * at /portal/ on the control plane's own port, same origin as the API.
 *
 *   /portal                    308 → /portal/
 *   /portal/assets/<hashed>    the file, `Cache-Control: public, max-age=31536000, immutable`
 *   /portal/<other file>       the file, `no-cache` (revalidated by ETag)
 *   /portal/<deep/link>        index.html (`no-cache`): the app routes on the client
 *   /portal/<missing>.<ext>    404 (a missing script must not come back as HTML)
 *   undecodable, `.`/`..` or encoded `/` `\` NUL segments → 400 VALIDATION_FAILED (the API's error envelope)
 *
 * Files are read into memory once (with gzip and brotli variants of the text
 * ones) and looked up by their relative path in a map, so no request path ever
 * reaches the file system: traversal has nothing to traverse. The bundle is
 * re-read when index.html changes on disk (a rebuild while the server runs).
 * Every answer carries a strict Content-Security-Policy (scripts, styles and
 * fetches from this origin only, plus the signed-URL origin when it differs;
 * no inline code, no framing), nosniff, and no referrer.
 */
import { createHash } from "node:crypto";
import { readdir, readFile, stat } from "node:fs/promises";
import { join, relative, sep } from "node:path";
import { brotliCompressSync, constants as zlibConstants, gzipSync } from "node:zlib";
import { monotonicMs } from "../platform/clock.ts";
import { validationError } from "../platform/errors.ts";
import { writeApiError } from "../api/rest/transcoder.ts";
import type { HttpRoute, RestRequest, RestResponse } from "../platform/http-types.ts";

/** Where the portal is mounted. */
export const portalBasePath = "/portal/";

/** Options of {@link createPortalStaticRoutes}. */
export interface PortalStaticOptions {
  /** The built files (portal/dist). */
  readonly dir: string;
  /** Origins besides 'self' the page may fetch from (where signed upload/download URLs point). */
  readonly connectSources?: () => readonly string[];
  /** Milliseconds between checks of index.html for a rebuild; default 1000. */
  readonly recheckMs?: number;
}

interface StaticFile {
  readonly body: Buffer;
  readonly gzip: Buffer | undefined;
  readonly br: Buffer | undefined;
  readonly type: string;
  readonly etag: string;
  readonly immutable: boolean;
}

interface Bundle {
  readonly files: ReadonlyMap<string, StaticFile>;
  readonly indexMtimeMs: number;
}

const contentTypes: Readonly<Record<string, string>> = {
  html: "text/html; charset=utf-8",
  js: "text/javascript; charset=utf-8",
  mjs: "text/javascript; charset=utf-8",
  css: "text/css; charset=utf-8",
  json: "application/json; charset=utf-8",
  map: "application/json; charset=utf-8",
  webmanifest: "application/manifest+json; charset=utf-8",
  txt: "text/plain; charset=utf-8",
  svg: "image/svg+xml",
  png: "image/png",
  jpg: "image/jpeg",
  jpeg: "image/jpeg",
  webp: "image/webp",
  ico: "image/x-icon",
  woff2: "font/woff2",
  woff: "font/woff",
};
const compressible = /^(text\/|application\/(json|manifest\+json)|image\/svg\+xml)/;

/** The content type served for a file name (by extension; unknown ones are opaque bytes). */
export function contentTypeOf(name: string): string {
  const dot = name.lastIndexOf(".");
  return (dot < 0 ? undefined : contentTypes[name.slice(dot + 1).toLowerCase()]) ?? "application/octet-stream";
}

/** The portal's Content-Security-Policy; `connectSources` are extra origins for fetch/XHR. */
export function contentSecurityPolicy(connectSources: readonly string[] = []): string {
  const connect = ["'self'", ...connectSources].join(" ");
  return [
    "default-src 'none'",
    "script-src 'self'",
    "style-src 'self'",
    "img-src 'self'",
    "font-src 'self'",
    `connect-src ${connect}`,
    "manifest-src 'self'",
    "base-uri 'none'",
    "form-action 'self'",
    "frame-ancestors 'none'",
    "object-src 'none'",
  ].join("; ");
}

/** What a path under /portal/ asks for. */
export type PortalPath =
  | { readonly kind: "redirect"; readonly location: string }
  | { readonly kind: "file"; readonly rel: string }
  | { readonly kind: "bad" }
  | { readonly kind: "outside" };

/**
 * Classifies a request path (already normalised by the URL parser, query
 * removed). Segments are percent-decoded one by one; a decoded segment that is
 * empty (inside the path), `.`, `..`, or holds `/`, `\` or NUL is refused.
 */
export function classifyPortalPath(pathname: string): PortalPath {
  if (pathname === "/portal") return { kind: "redirect", location: portalBasePath };
  if (!pathname.startsWith(portalBasePath)) return { kind: "outside" };
  const raw = pathname.slice(portalBasePath.length).split("/");
  // A trailing slash (/portal/jobs/) is the same page as without it.
  if (raw.length > 1 && raw.at(-1) === "") raw.pop();
  const segments: string[] = [];
  for (const part of raw) {
    let decoded: string;
    try {
      decoded = decodeURIComponent(part);
    } catch {
      return { kind: "bad" };
    }
    if (decoded === "" && raw.length === 1) break;
    if (decoded === "" || decoded === "." || decoded === ".." || /[/\\\u0000]/.test(decoded)) return { kind: "bad" };
    segments.push(decoded);
  }
  return { kind: "file", rel: segments.join("/") };
}

async function listFiles(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const entry of await readdir(dir, { withFileTypes: true, recursive: true })) {
    if (entry.isFile()) out.push(join(entry.parentPath, entry.name));
  }
  return out;
}

async function loadBundle(dir: string): Promise<Bundle | undefined> {
  let indexMtimeMs: number;
  try {
    indexMtimeMs = (await stat(join(dir, "index.html"))).mtimeMs;
  } catch {
    return undefined;
  }
  const files = new Map<string, StaticFile>();
  for (const path of await listFiles(dir)) {
    const rel = relative(dir, path).split(sep).join("/");
    // Dotfiles (the build stamp) are not part of the site.
    if (rel.split("/").some((part) => part.startsWith("."))) continue;
    const body = await readFile(path);
    const type = contentTypeOf(rel);
    const squeeze = compressible.test(type) && body.length >= 1024;
    files.set(rel, {
      body,
      gzip: squeeze ? gzipSync(body, { level: 9 }) : undefined,
      br: squeeze ? brotliCompressSync(body, { params: { [zlibConstants.BROTLI_PARAM_QUALITY]: 9, [zlibConstants.BROTLI_PARAM_SIZE_HINT]: body.length } }) : undefined,
      type,
      etag: `"${createHash("sha256").update(body).digest("base64url").slice(0, 27)}"`,
      // Vite names everything under assets/ by content hash.
      immutable: rel.startsWith("assets/"),
    });
  }
  return { files, indexMtimeMs };
}

function acceptedEncoding(req: RestRequest, file: StaticFile): "br" | "gzip" | undefined {
  const accept = req.headers["accept-encoding"];
  const value = (Array.isArray(accept) ? accept.join(",") : (accept ?? "")).toLowerCase();
  const offers = (name: string) => value.split(",").some((part) => {
    const [token, ...params] = part.trim().split(";");
    return token?.trim() === name && !params.some((p) => /^\s*q=0(\.0*)?\s*$/.test(p));
  });
  if (file.br !== undefined && offers("br")) return "br";
  if (file.gzip !== undefined && offers("gzip")) return "gzip";
  return undefined;
}

/** The GET and HEAD routes of the portal's static files. */
export function createPortalStaticRoutes(options: PortalStaticOptions): HttpRoute[] {
  const recheckMs = options.recheckMs ?? 1000;
  let bundle: Promise<Bundle | undefined> | undefined;
  let checkedAt = 0;

  /** The loaded bundle, re-read when index.html changed (checked at most every recheckMs). */
  const current = async (): Promise<Bundle | undefined> => {
    const now = monotonicMs();
    if (bundle !== undefined && now - checkedAt < recheckMs) return bundle;
    checkedAt = now;
    const loaded = await bundle;
    let mtime: number | undefined;
    try {
      mtime = (await stat(join(options.dir, "index.html"))).mtimeMs;
    } catch {
      mtime = undefined;
    }
    if (bundle === undefined || loaded?.indexMtimeMs !== mtime) bundle = loadBundle(options.dir);
    return bundle;
  };

  const securityHeaders = (res: RestResponse): void => {
    res.setHeader("content-security-policy", contentSecurityPolicy(options.connectSources?.() ?? []));
    res.setHeader("x-content-type-options", "nosniff");
    res.setHeader("referrer-policy", "no-referrer");
    res.setHeader("x-frame-options", "DENY");
    res.setHeader("cross-origin-opener-policy", "same-origin");
    res.setHeader("cross-origin-resource-policy", "same-origin");
    res.setHeader("permissions-policy", "camera=(), microphone=(), geolocation=(), payment=()");
  };

  const text = (req: RestRequest, res: RestResponse, status: number, body: string): void => {
    securityHeaders(res);
    res.statusCode = status;
    res.setHeader("content-type", "text/plain; charset=utf-8");
    res.setHeader("cache-control", "no-store");
    res.setHeader("content-length", String(Buffer.byteLength(body)));
    if (req.method === "HEAD") res.end();
    else res.end(body);
  };

  const send = (req: RestRequest, res: RestResponse, file: StaticFile): void => {
    securityHeaders(res);
    res.setHeader("content-type", file.type);
    res.setHeader("cache-control", file.immutable ? "public, max-age=31536000, immutable" : "no-cache");
    res.setHeader("etag", file.etag);
    if (file.gzip !== undefined) res.setHeader("vary", "accept-encoding");
    const inm = req.headers["if-none-match"];
    if (typeof inm === "string" && inm.split(",").some((t) => t.trim().replace(/^W\//, "") === file.etag)) {
      res.statusCode = 304;
      res.end();
      return;
    }
    const encoding = acceptedEncoding(req, file);
    const body = encoding === "br" ? file.br! : encoding === "gzip" ? file.gzip! : file.body;
    if (encoding !== undefined) res.setHeader("content-encoding", encoding);
    res.statusCode = 200;
    res.setHeader("content-length", String(body.length));
    if (req.method === "HEAD") res.end();
    else res.end(body);
  };

  const badPath = (res: RestResponse, requestId: string, pathname: string): void => {
    securityHeaders(res);
    res.setHeader("cache-control", "no-store");
    writeApiError(
      res,
      validationError(`the portal path ${JSON.stringify(pathname.slice(0, 200))} is not valid: each segment must be UTF-8 percent-encoding, not "." or "..", without an encoded "/", "\\" or NUL`),
      requestId,
    );
  };

  const handle = async (req: RestRequest, res: RestResponse, requestId: string): Promise<void> => {
    let url: URL;
    try {
      url = new URL(req.url ?? "/", "http://localhost");
    } catch {
      return badPath(res, requestId, req.url ?? "");
    }
    const target = classifyPortalPath(url.pathname);
    switch (target.kind) {
      case "redirect":
        securityHeaders(res);
        res.statusCode = 308;
        res.setHeader("location", target.location + url.search);
        res.setHeader("content-length", "0");
        res.end();
        return;
      case "bad":
      case "outside":
        return badPath(res, requestId, url.pathname);
      case "file": {
        const loaded = await current();
        if (loaded === undefined) {
          return text(req, res, 503, "The portal is not built on this server: run `npm run build:portal` (npm start and npm test do it).\n");
        }
        const file = loaded.files.get(target.rel);
        if (file !== undefined && target.rel !== "") return send(req, res, file);
        // A missing file with an extension is a missing file; anything else is a page of the app.
        const last = target.rel.split("/").at(-1) ?? "";
        if (last.includes(".")) return text(req, res, 404, "Not found.\n");
        const index = loaded.files.get("index.html");
        if (index === undefined) return text(req, res, 503, "The portal build has no index.html.\n");
        return send(req, res, index);
      }
    }
  };

  const pattern = /^\/portal(\/.*)?$/;
  return [
    { method: "GET", pattern, handle: (req, res, _match, requestId) => handle(req, res, requestId) },
    { method: "HEAD", pattern, handle: (req, res, _match, requestId) => handle(req, res, requestId) },
  ];
}
