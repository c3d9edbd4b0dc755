/**
 * The portal's sign-in and sign-out, which turn a session into an HttpOnly
 * cookie (src/auth/session-cookie.ts). They are the portal's, not the API's:
 * programs keep `POST /api/v1/customer/auth/login` and a bearer token.
 *
 *   POST   /portal/session  {email, password}  → 200 {customer, expires_at, csrf_token} + Set-Cookie
 *   GET    /portal/session                     → 200 {customer, scopes, csrf_token} for the cookie's session, else 401
 *   DELETE /portal/session  (X-CSRF-Token)     → 204, the session revoked and the cookie cleared
 *
 * Sign-in runs the very `Login` handler of CustomerService (same throttling,
 * lockout and per-address limit) and answers with its errors; the session
 * token goes only into the cookie, never into the JSON. It accepts only a JSON
 * body from this origin (`Origin`/`Sec-Fetch-Site`), so another site cannot
 * sign a visitor in to an account of its choosing. GET /portal/session hands
 * the page its CSRF token after a reload.
 */
import { create, toJson } from "@bufbuild/protobuf";
import { timestampDate } from "@bufbuild/protobuf/wkt";
import { createHandlerContext } from "@connectrpc/connect";
import type { HandlerContext, ServiceImpl } from "@connectrpc/connect";
import { ApiError, validationError } from "../platform/errors.ts";
import { writeApiError } from "../api/rest/transcoder.ts";
import { clearSessionCookies, cookieSessionToken, csrfTokenFor, requireCsrfForCookieSession, sessionSetCookie } from "../auth/session-cookie.ts";
import type { Customer } from "../gen/gpuagent/customer/v1/customer_pb.ts";
import { CustomerSchema, CustomerService, GetMeRequestSchema, GetMeResponseSchema, LoginRequestSchema, LoginResponseSchema } from "../gen/gpuagent/customer/v1/customer_pb.ts";
import type { Clock } from "../platform/clock.ts";
import type { SchedulerConfig } from "../platform/config.ts";
import { hashSecret } from "../platform/ids.ts";
import type { HttpRoute, RestRequest, RestResponse } from "../platform/http-types.ts";
import { revokeSessionByHash } from "../store/customers.ts";
import type { Database } from "../store/database.ts";

/** The CustomerService handlers sign-in needs (the same objects the API serves). */
export type PortalSessionHandlers = Pick<ServiceImpl<typeof CustomerService>, "login" | "getMe">;

/** What the session routes need (a subset of ControlPlaneDeps). */
export interface PortalSessionDeps {
  readonly config: SchedulerConfig;
  readonly db: Database;
  readonly clock: Clock;
}

/** Options of {@link createPortalSessionRoutes}. */
export interface PortalSessionOptions {
  readonly deps: PortalSessionDeps;
  readonly handlers: PortalSessionHandlers;
  /** Mark the cookie Secure (and `__Host-`): the port speaks TLS or the public URL is https. */
  readonly secure: () => boolean;
}

const path = /^\/portal\/session$/;
const maxBodyBytes = 16 * 1024;
const credentialHeaders = new Set(["x-api-key", "authorization"]);

/** The request's headers for a handler; credentials other than the cookie are dropped when `cookieOnly`. */
function handlerHeaders(req: RestRequest, requestId: string, cookieOnly: boolean): Headers {
  const out = new Headers();
  for (const [name, value] of Object.entries(req.headers)) {
    const key = name.toLowerCase();
    if (value === undefined || key.startsWith(":") || (cookieOnly && credentialHeaders.has(key))) continue;
    try {
      for (const v of Array.isArray(value) ? value : [value]) out.append(key, v);
    } catch {
      // A value Headers rejects cannot matter here.
    }
  }
  out.set("x-request-id", requestId);
  return out;
}

function context(req: RestRequest, method: "login" | "getMe", httpMethod: string, header: Headers): HandlerContext {
  return createHandlerContext({
    service: CustomerService,
    method: CustomerService.method[method],
    protocolName: "portal",
    requestMethod: httpMethod,
    url: new URL(req.url ?? "/", "http://localhost").toString(),
    requestSignal: new AbortController().signal,
    requestHeader: header,
  });
}

function copyHeaders(from: Headers, res: RestResponse): void {
  for (const [key, value] of from) res.setHeader(key, value);
}

function writeJson(res: RestResponse, status: number, body: unknown, requestId: string): void {
  const text = JSON.stringify(body);
  res.statusCode = status;
  res.setHeader("content-type", "application/json; charset=utf-8");
  res.setHeader("cache-control", "no-store");
  res.setHeader("x-content-type-options", "nosniff");
  res.setHeader("content-length", String(Buffer.byteLength(text)));
  res.setHeader("x-request-id", requestId);
  res.end(text);
}

/** Answers 200 with the session as the page sees it: the customer, its CSRF token, and `extra` fields. */
function writeSession(res: RestResponse, ctx: HandlerContext, customer: Customer | undefined, token: string, extra: Record<string, unknown>, requestId: string): void {
  copyHeaders(ctx.responseHeader, res);
  const json = toJson(CustomerSchema, create(CustomerSchema, customer), { useProtoFieldName: true, alwaysEmitImplicit: true });
  writeJson(res, 200, { customer: json, ...extra, csrf_token: csrfTokenFor(token) }, requestId);
}

/**
 * Refuses a sign-in that a page of another origin sent: `Sec-Fetch-Site`
 * (modern browsers) must say same-origin, and `Origin`, when sent, must name
 * this server, by the request's Host or by the public URL (a proxy in front
 * may rewrite Host).
 */
function requireSameOrigin(req: RestRequest, publicUrl: string): void {
  const site = req.headers["sec-fetch-site"];
  if (typeof site === "string" && site !== "same-origin" && site !== "none") {
    throw new ApiError("CSRF_TOKEN_INVALID", "sign in from the portal's own page");
  }
  const origin = req.headers["origin"];
  if (typeof origin === "string" && origin !== "null") {
    const host = req.headers["host"] ?? req.headers[":authority"];
    let originHost: string | undefined;
    try {
      originHost = new URL(origin).host;
    } catch {
      originHost = undefined;
    }
    let publicHost: string | undefined;
    try {
      publicHost = new URL(publicUrl).host;
    } catch {
      publicHost = undefined;
    }
    if (originHost === undefined || (originHost !== host && originHost !== publicHost)) throw new ApiError("CSRF_TOKEN_INVALID", "sign in from the portal's own page");
  } else if (origin === "null") {
    throw new ApiError("CSRF_TOKEN_INVALID", "sign in from the portal's own page");
  }
}

async function readJsonBody(req: RestRequest): Promise<Record<string, unknown>> {
  const type = req.headers["content-type"];
  if (typeof type !== "string" || !/^application\/json\s*(;|$)/i.test(type)) {
    throw new ApiError("UNSUPPORTED_MEDIA_TYPE", "send the sign-in as application/json");
  }
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > maxBodyBytes) throw new ApiError("PAYLOAD_TOO_LARGE", `the sign-in body is over ${maxBodyBytes} bytes`);
    chunks.push(chunk);
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(Buffer.concat(chunks).toString("utf8"));
  } catch {
    throw validationError("the body is not valid JSON");
  }
  if (parsed === null || typeof parsed !== "object" || Array.isArray(parsed)) throw validationError("the body must be a JSON object");
  return parsed as Record<string, unknown>;
}

function stringField(body: Record<string, unknown>, field: string): string {
  const value = body[field];
  if (value === undefined) return "";
  if (typeof value !== "string") throw validationError(`${field} must be a string`, { field });
  return value;
}

/** The three routes of /portal/session. */
export function createPortalSessionRoutes(options: PortalSessionOptions): HttpRoute[] {
  const { deps, handlers } = options;
  const now = () => new Date(deps.clock.now());

  const signIn: HttpRoute = {
    method: "POST",
    pattern: path,
    async handle(req, res, _match, requestId) {
      const header = handlerHeaders(req, requestId, true);
      const ctx = context(req, "login", "POST", header);
      try {
        requireSameOrigin(req, deps.config.publicUrl);
        const body = await readJsonBody(req);
        const out = create(
          LoginResponseSchema,
          await handlers.login(create(LoginRequestSchema, { email: stringField(body, "email"), password: stringField(body, "password") }), ctx),
        );
        const token = out.sessionToken;
        const expiresAt = out.expiresAt === undefined ? now() : timestampDate(out.expiresAt);
        // A previous session of this browser ends with the new sign-in.
        const previous = cookieSessionToken(header);
        if (previous !== undefined && previous !== token) await revokeSessionByHash(deps.db, hashSecret(previous), now());
        res.setHeader("set-cookie", sessionSetCookie(token, { secure: options.secure(), maxAgeSeconds: (expiresAt.getTime() - now().getTime()) / 1000 }));
        writeSession(res, ctx, out.customer, token, { expires_at: expiresAt.toISOString() }, requestId);
      } catch (error) {
        copyHeaders(ctx.responseHeader, res);
        writeApiError(res, error, requestId);
      }
    },
  };

  const current: HttpRoute = {
    method: "GET",
    pattern: path,
    async handle(req, res, _match, requestId) {
      const header = handlerHeaders(req, requestId, true);
      const ctx = context(req, "getMe", "GET", header);
      const token = cookieSessionToken(header);
      try {
        if (token === undefined) throw new ApiError("CUSTOMER_AUTH_REQUIRED", "not signed in");
        const out = create(GetMeResponseSchema, await handlers.getMe(create(GetMeRequestSchema), ctx));
        writeSession(res, ctx, out.customer, token, { scopes: out.scopes }, requestId);
      } catch (error) {
        copyHeaders(ctx.responseHeader, res);
        // A cookie that no longer names a live session is removed.
        if (token !== undefined && error instanceof ApiError && error.code === "CUSTOMER_AUTH_REQUIRED") {
          res.setHeader("set-cookie", clearSessionCookies({ secure: options.secure() }));
        }
        writeApiError(res, error, requestId);
      }
    },
  };

  const signOut: HttpRoute = {
    method: "DELETE",
    pattern: path,
    async handle(req, res, _match, requestId) {
      try {
        const header = handlerHeaders(req, requestId, true);
        const token = cookieSessionToken(header);
        if (token !== undefined) {
          requireCsrfForCookieSession(header, "DELETE");
          await revokeSessionByHash(deps.db, hashSecret(token), now());
        }
        res.statusCode = 204;
        res.setHeader("set-cookie", clearSessionCookies({ secure: options.secure() }));
        res.setHeader("cache-control", "no-store");
        res.setHeader("x-request-id", requestId);
        res.end();
      } catch (error) {
        writeApiError(res, error, requestId);
      }
    },
  };

  return [signIn, current, signOut];
}
