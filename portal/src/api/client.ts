/**
 * The portal's one HTTP client: `fetch` over the REST JSON API, same origin,
 * authenticated by the HttpOnly session cookie. State-changing calls carry the
 * session's CSRF token (`X-CSRF-Token`), which the page learns from
 * /portal/session and keeps in memory only.
 *
 * Why REST and not @connectrpc/connect-web: REST JSON is the documented
 * customer contract (seed 001, docs/api.md) with its error envelope and seed
 * codes; CSV exports and signed-URL uploads are plain HTTP anyway; and the
 * bundle stays free of the generated descriptors (~100 kB) the Connect client
 * would pull in.
 */

/** An error answer of the API (or of the network), with the seed code to quote to support. */
export class PortalApiError extends Error {
  readonly code: string;
  readonly status: number;
  readonly requestId: string;
  readonly details: Readonly<Record<string, unknown>>;
  readonly retryAfterSeconds: number | undefined;

  constructor(code: string, message: string, options: { status?: number; requestId?: string; details?: Record<string, unknown>; retryAfterSeconds?: number } = {}) {
    super(message);
    this.name = "PortalApiError";
    this.code = code;
    this.status = options.status ?? 0;
    this.requestId = options.requestId ?? "";
    this.details = options.details ?? {};
    this.retryAfterSeconds = options.retryAfterSeconds;
  }
}

const safeMethods = new Set(["GET", "HEAD"]);
let csrfToken = "";
let onSignedOut: () => void = () => undefined;

/** Remembers the CSRF token of the current session ("" when signed out). */
export function setCsrfToken(token: string): void {
  csrfToken = token;
}

/** Called when any call finds the session gone (401), so the app can show the sign-in page. */
export function setSignedOutHandler(handler: () => void): void {
  onSignedOut = handler;
}

/** Builds the error of a non-2xx answer from the seed envelope `{"error":{code,message,request_id}}`. */
export async function errorFromResponse(res: Response): Promise<PortalApiError> {
  const retry = Number(res.headers.get("retry-after") ?? NaN);
  const retryAfterSeconds = Number.isFinite(retry) ? retry : undefined;
  let body: unknown;
  try {
    body = await res.json();
  } catch {
    body = undefined;
  }
  const error = (body as { error?: { code?: unknown; message?: unknown; request_id?: unknown; details?: unknown } } | undefined)?.error;
  if (error !== undefined && typeof error.code === "string") {
    return new PortalApiError(error.code, typeof error.message === "string" ? error.message : "", {
      status: res.status,
      requestId: typeof error.request_id === "string" ? error.request_id : (res.headers.get("x-request-id") ?? ""),
      ...(typeof error.details === "object" && error.details !== null ? { details: error.details as Record<string, unknown> } : {}),
      ...(retryAfterSeconds === undefined ? {} : { retryAfterSeconds }),
    });
  }
  return new PortalApiError("UNEXPECTED_RESPONSE", `the server answered HTTP ${res.status}`, {
    status: res.status,
    requestId: res.headers.get("x-request-id") ?? "",
  });
}

/** Options of {@link request}. */
export interface RequestOptions {
  body?: unknown;
  headers?: Record<string, string>;
  signal?: AbortSignal;
}

/** One API call; resolves to the parsed JSON (undefined for 204) or throws PortalApiError. */
export async function request(method: string, path: string, options: RequestOptions = {}): Promise<Response> {
  const headers: Record<string, string> = { accept: "application/json", ...options.headers };
  if (options.body !== undefined) headers["content-type"] = "application/json";
  if (!safeMethods.has(method) && csrfToken !== "") headers["x-csrf-token"] = csrfToken;
  let res: Response;
  try {
    res = await fetch(path, {
      method,
      headers,
      credentials: "same-origin",
      cache: "no-store",
      ...(options.body === undefined ? {} : { body: JSON.stringify(options.body) }),
      ...(options.signal === undefined ? {} : { signal: options.signal }),
    });
  } catch (error) {
    if ((error as { name?: string }).name === "AbortError") throw error;
    throw new PortalApiError("NETWORK_ERROR", "the server could not be reached");
  }
  if (!res.ok) {
    const error = await errorFromResponse(res);
    if (error.status === 401 && error.code === "CUSTOMER_AUTH_REQUIRED" && !path.startsWith("/portal/session")) onSignedOut();
    throw error;
  }
  return res;
}

/** A JSON API call. */
export async function api<T>(method: string, path: string, options: RequestOptions = {}): Promise<T> {
  const res = await request(method, path, options);
  if (res.status === 204) return undefined as T;
  return (await res.json()) as T;
}

/** Builds a query string from the defined, non-empty values. */
export function query(params: Record<string, string | number | undefined>): string {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== "") q.set(k, String(v));
  const s = q.toString();
  return s === "" ? "" : `?${s}`;
}

/**
 * A signed URL minted by this control plane, made relative to the page's
 * origin: every replica serves /blobs/, and a same-origin request needs no
 * CORS and keeps the Content-Security-Policy at connect-src 'self' even when
 * the server's public URL names another host than the one in the address bar.
 */
export function sameOrigin(signedUrl: string): string {
  const url = new URL(signedUrl, window.location.href);
  return url.pathname + url.search;
}

/** Random hex, without needing a secure context (crypto.randomUUID does). */
export function randomHex(bytes = 16): string {
  const buf = new Uint8Array(bytes);
  crypto.getRandomValues(buf);
  return Array.from(buf, (b) => b.toString(16).padStart(2, "0")).join("");
}

/** Saves a Blob as a file through a temporary link. */
export function saveBlob(blob: Blob, fileName: string): void {
  const href = URL.createObjectURL(blob);
  triggerDownload(href, fileName);
  setTimeout(() => URL.revokeObjectURL(href), 60_000);
}

/** Starts a browser download of `href`. */
export function triggerDownload(href: string, fileName: string): void {
  const a = document.createElement("a");
  a.href = href;
  a.download = fileName;
  a.rel = "noopener";
  document.body.append(a);
  a.click();
  a.remove();
}
