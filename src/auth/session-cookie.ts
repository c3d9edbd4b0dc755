/**
 * Portal sessions in a cookie, and the CSRF token that guards them.
 *
 * The portal (served at /portal/, same origin as the API) never sees its
 * session token: `POST /portal/session` puts it in an HttpOnly cookie
 * (SameSite=Strict, Secure and `__Host-` prefixed under TLS, Path=/ so the
 * API paths receive it). authenticate.ts reads that cookie only when a
 * request carries neither `X-API-Key` nor `Authorization: Bearer` — an API
 * key call is never cookie-authenticated, whatever cookies the client holds.
 *
 * CSRF: a cookie-authenticated request that is not GET/HEAD/OPTIONS must carry
 * `X-CSRF-Token` equal to {@link csrfTokenFor} of the cookie's session token.
 * The token is derived from the session token (a one-way hash with its own
 * domain string), so it is bound to the session, needs no storage and is the
 * same on every replica; a page learns it from the JSON of `POST|GET
 * /portal/session`, which only a same-origin script can read. Unlike a plain
 * double-submit cookie, a cookie planted by a sibling subdomain cannot forge
 * it. SameSite=Strict already keeps the cookie off cross-site requests; the
 * token is the second lock. Refusals are 403 `CSRF_TOKEN_INVALID`.
 */
import { createHash } from "node:crypto";
import { ApiError } from "../platform/errors.ts";
import { safeEqual } from "../platform/ids.ts";

/** Cookie name over cleartext HTTP (development, tests on loopback). */
export const sessionCookieName = "gpu_agent_session";
/** Cookie name under TLS: the `__Host-` prefix makes browsers insist on Secure, Path=/ and no Domain. */
export const secureSessionCookieName = "__Host-gpu_agent_session";
/** Request header carrying the CSRF token. */
export const csrfHeader = "x-csrf-token";

const safeMethods = new Set(["GET", "HEAD", "OPTIONS"]);
// Session tokens are `st_` + base64url; anything else in the cookie is ignored, never looked up.
const tokenPattern = /^[A-Za-z0-9_-]{16,256}$/;

/** The value of cookie `name` in a Cookie header, if present. */
export function readCookie(cookieHeader: string | null, name: string): string | undefined {
  if (cookieHeader === null) return undefined;
  // HTTP/2 may deliver cookies as several headers, which Headers joins with ", ".
  for (const part of cookieHeader.split(/[;,]/)) {
    const eq = part.indexOf("=");
    if (eq < 0) continue;
    if (part.slice(0, eq).trim() === name) return part.slice(eq + 1).trim();
  }
  return undefined;
}

/**
 * The session token of the portal cookie when the request would be
 * authenticated by it: no `X-API-Key`, no `Authorization: Bearer`, and a
 * well-formed cookie. The `__Host-` cookie wins over the plain one.
 */
export function cookieSessionToken(headers: Headers): string | undefined {
  const apiKey = headers.get("x-api-key");
  if (apiKey !== null && apiKey !== "") return undefined;
  if (/^Bearer\s+\S+$/i.test(headers.get("authorization") ?? "")) return undefined;
  const cookies = headers.get("cookie");
  const token = readCookie(cookies, secureSessionCookieName) ?? readCookie(cookies, sessionCookieName);
  return token !== undefined && tokenPattern.test(token) ? token : undefined;
}

/** The CSRF token bound to a session token (base64url sha256 under a domain string). */
export function csrfTokenFor(sessionToken: string): string {
  return createHash("sha256").update("gpu-agent portal csrf v1\u0000").update(sessionToken).digest("base64url");
}

/**
 * Throws 403 CSRF_TOKEN_INVALID when the request is cookie-authenticated,
 * changes state (not GET/HEAD/OPTIONS) and lacks the session's CSRF token.
 * Requests with an API key or a bearer token pass untouched.
 */
export function requireCsrfForCookieSession(headers: Headers, method: string): void {
  if (safeMethods.has(method.toUpperCase())) return;
  const token = cookieSessionToken(headers);
  if (token === undefined) return;
  const sent = headers.get(csrfHeader);
  if (sent === null || sent === "") {
    throw new ApiError("CSRF_TOKEN_INVALID", `a signed-in portal request that changes something must send the ${csrfHeader} header; reload the page`);
  }
  if (!safeEqual(sent, csrfTokenFor(token))) {
    throw new ApiError("CSRF_TOKEN_INVALID", `the ${csrfHeader} header does not belong to this session; reload the page`);
  }
}

/** `Set-Cookie` value that stores a session for `maxAgeSeconds`. */
export function sessionSetCookie(token: string, options: { secure: boolean; maxAgeSeconds: number }): string {
  const name = options.secure ? secureSessionCookieName : sessionCookieName;
  return `${name}=${token}; Path=/; Max-Age=${Math.max(0, Math.floor(options.maxAgeSeconds))}; HttpOnly; SameSite=Strict${options.secure ? "; Secure" : ""}`;
}

/** `Set-Cookie` values that remove the session cookie (both names, so a switch to TLS leaves none behind). */
export function clearSessionCookies(options: { secure: boolean }): string[] {
  const expired = "Path=/; Max-Age=0; HttpOnly; SameSite=Strict";
  const out = [`${sessionCookieName}=; ${expired}${options.secure ? "; Secure" : ""}`];
  if (options.secure) out.push(`${secureSessionCookieName}=; ${expired}; Secure`);
  return out;
}
