/**
 * Portal sessions in an HttpOnly cookie, and the CSRF token every
 * state-changing cookie request must carry: the cookie helpers alone, then
 * /portal/session and the API against a real control plane (REST and Connect).
 */
import assert from "node:assert/strict";
import http from "node:http";
import { httpStatusOf } from "../../src/api/errors.ts";
import type { ErrorCode } from "../../src/platform/errors.ts";
import {
  clearSessionCookies,
  cookieSessionToken,
  csrfTokenFor,
  readCookie,
  requireCsrfForCookieSession,
  sessionSetCookie,
} from "../../src/auth/session-cookie.ts";
import type { TestControlPlane } from "../support/control-plane.ts";
import { request, startTestControlPlane } from "../support/control-plane.ts";
import type { PortalCustomer } from "./helpers.ts";
import { createPortalCustomer } from "./helpers.ts";

const token = "st_0123456789abcdefghijklmnopqrstuvwxyz";

describe("portal session cookie", function () {
  this.timeout(60_000);

  describe("helpers", () => {
    it("reads a cookie among others, also when HTTP/2 joined several cookie headers", () => {
      assert.equal(readCookie("a=1; gpu_agent_session=x; b=2", "gpu_agent_session"), "x");
      assert.equal(readCookie("a=1, gpu_agent_session=y", "gpu_agent_session"), "y");
      assert.equal(readCookie(null, "gpu_agent_session"), undefined);
    });

    const cases: Array<{ name: string; headers: Record<string, string>; want: string | undefined }> = [
      { name: "a cookie alone authenticates", headers: { cookie: `gpu_agent_session=${token}` }, want: token },
      { name: "the __Host- cookie wins over the plain one", headers: { cookie: `gpu_agent_session=st_plainplainplainplain; __Host-gpu_agent_session=${token}` }, want: token },
      { name: "an X-API-Key call never uses the cookie", headers: { "x-api-key": "sk_live_x", cookie: `gpu_agent_session=${token}` }, want: undefined },
      { name: "a bearer token wins over the cookie", headers: { authorization: "Bearer st_other", cookie: `gpu_agent_session=${token}` }, want: undefined },
      { name: "a malformed cookie value is ignored", headers: { cookie: "gpu_agent_session=a b;c" }, want: undefined },
    ];
    for (const tc of cases) it(tc.name, () => assert.equal(cookieSessionToken(new Headers(tc.headers)), tc.want));

    const csrf: Array<{ name: string; method: string; headers: Record<string, string>; refused: boolean }> = [
      { name: "a cookie GET needs no token", method: "GET", headers: { cookie: `gpu_agent_session=${token}` }, refused: false },
      { name: "a cookie POST without the token is refused", method: "POST", headers: { cookie: `gpu_agent_session=${token}` }, refused: true },
      { name: "a cookie DELETE with another session's token is refused", method: "DELETE", headers: { cookie: `gpu_agent_session=${token}`, "x-csrf-token": csrfTokenFor("st_someoneelsesomeoneelse") }, refused: true },
      { name: "a cookie POST with its token passes", method: "POST", headers: { cookie: `gpu_agent_session=${token}`, "x-csrf-token": csrfTokenFor(token) }, refused: false },
      { name: "an API key POST needs no token, cookie or not", method: "POST", headers: { "x-api-key": "sk_live_x", cookie: `gpu_agent_session=${token}` }, refused: false },
      { name: "a bearer POST needs no token", method: "POST", headers: { authorization: `Bearer ${token}` }, refused: false },
    ];
    for (const tc of csrf) {
      it(tc.name, () => {
        const check = () => requireCsrfForCookieSession(new Headers(tc.headers), tc.method);
        if (tc.refused) assert.throws(check, (e: { code?: ErrorCode }) => e.code === "CSRF_TOKEN_INVALID" && httpStatusOf(e.code) === 403);
        else assert.doesNotThrow(check);
      });
    }

    it("sets HttpOnly, SameSite=Strict cookies, Secure and __Host- under TLS", () => {
      assert.equal(sessionSetCookie(token, { secure: false, maxAgeSeconds: 60 }), `gpu_agent_session=${token}; Path=/; Max-Age=60; HttpOnly; SameSite=Strict`);
      assert.equal(sessionSetCookie(token, { secure: true, maxAgeSeconds: 60.9 }), `__Host-gpu_agent_session=${token}; Path=/; Max-Age=60; HttpOnly; SameSite=Strict; Secure`);
      assert.deepEqual(clearSessionCookies({ secure: true }), [
        "gpu_agent_session=; Path=/; Max-Age=0; HttpOnly; SameSite=Strict; Secure",
        "__Host-gpu_agent_session=; Path=/; Max-Age=0; HttpOnly; SameSite=Strict; Secure",
      ]);
    });
  });

  describe("against the control plane", () => {
    let cp: TestControlPlane;
    let customer: PortalCustomer;
    let cookie = "";
    let csrf = "";

    before(async () => {
      cp = await startTestControlPlane();
      customer = await createPortalCustomer(cp);
    });
    after(async () => cp?.stop());

    const signIn = (body: unknown, headers: Record<string, string> = {}) =>
      request(cp, "POST", "/portal/session", { body, headers: { origin: cp.url, "sec-fetch-site": "same-origin", ...headers } });
    const code = (res: { body: Record<string, unknown> }) => (res.body["error"] as { code?: string } | undefined)?.code;

    it("refuses a wrong password without setting a cookie", async () => {
      const res = await signIn({ email: customer.email, password: "wrong" });
      assert.equal(res.status, 401);
      assert.equal(code(res), "CUSTOMER_AUTH_REQUIRED");
      assert.equal(res.headers.get("set-cookie"), null);
    });

    it("refuses a sign-in sent by another site or not as JSON", async () => {
      const good = { email: customer.email, password: customer.password };
      const foreign = await signIn(good, { origin: "https://evil.example" });
      assert.equal(foreign.status, 403);
      assert.equal(code(foreign), "CSRF_TOKEN_INVALID");
      const crossSite = await signIn(good, { "sec-fetch-site": "cross-site" });
      assert.equal(code(crossSite), "CSRF_TOKEN_INVALID");
      const form = await fetch(`${cp.url}/portal/session`, { method: "POST", headers: { "content-type": "text/plain" }, body: JSON.stringify(good) });
      assert.equal(form.status, 415);
    });

    it("accepts the public URL's origin when a proxy in front rewrote Host", async () => {
      const { hostname, port } = new URL(cp.url);
      const body = JSON.stringify({ email: customer.email, password: customer.password });
      const status = await new Promise<number>((resolve, reject) => {
        const req = http.request(
          { hostname, port, path: "/portal/session", method: "POST", headers: { host: "scheduler.internal:8080", origin: cp.url, "content-type": "application/json" } },
          (res) => {
            res.resume();
            resolve(res.statusCode ?? 0);
          },
        );
        req.on("error", reject);
        req.end(body);
      });
      assert.equal(status, 200);
    });

    it("signs in: an HttpOnly, SameSite=Strict cookie and the CSRF token, never the session token in the body", async () => {
      const res = await signIn({ email: customer.email, password: customer.password });
      assert.equal(res.status, 200, JSON.stringify(res.body));
      const setCookie = res.headers.get("set-cookie") ?? "";
      assert.match(setCookie, /^gpu_agent_session=st_[A-Za-z0-9_-]+; Path=\/; Max-Age=\d+; HttpOnly; SameSite=Strict$/);
      assert.doesNotMatch(setCookie, /Secure/, "cleartext HTTP: no Secure flag");
      cookie = setCookie.split(";")[0]!;
      csrf = res.body["csrf_token"] as string;
      assert.equal(csrf, csrfTokenFor(cookie.split("=")[1]!));
      assert.equal((res.body["customer"] as { email: string }).email, customer.email);
      assert.ok(!JSON.stringify(res.body).includes(cookie.split("=")[1]!), "the session token stays in the cookie");
      assert.equal(res.body["session_token"], undefined);
    });

    it("hands the page its CSRF token again after a reload", async () => {
      const res = await request(cp, "GET", "/portal/session", { headers: { cookie } });
      assert.equal(res.status, 200);
      assert.equal(res.body["csrf_token"], csrf);
      const none = await request(cp, "GET", "/portal/session");
      assert.equal(none.status, 401);
    });

    it("authenticates API reads by the cookie", async () => {
      const me = await request(cp, "GET", "/api/v1/customer/auth/me", { headers: { cookie } });
      assert.equal(me.status, 200);
      assert.equal(me.body["auth_method"], "session");
    });

    it("refuses a state-changing cookie request without the CSRF token, with a clear 403", async () => {
      const body = { name: "k", scopes: ["usage:read"] };
      const missing = await request(cp, "POST", "/api/v1/customer/api-keys", { body, headers: { cookie } });
      assert.equal(missing.status, 403);
      assert.equal(code(missing), "CSRF_TOKEN_INVALID");
      assert.match((missing.body["error"] as { message: string }).message, /x-csrf-token/);
      const wrong = await request(cp, "POST", "/api/v1/customer/api-keys", { body, headers: { cookie, "x-csrf-token": csrfTokenFor("st_notthissessionnotthissession") } });
      assert.equal(code(wrong), "CSRF_TOKEN_INVALID");
      const keys = await request(cp, "GET", "/api/v1/customer/api-keys", { headers: { cookie } });
      assert.equal((keys.body["data"] as unknown[]).length, 1, "nothing was created (only the admin's first key exists)");
      const ok = await request(cp, "POST", "/api/v1/customer/api-keys", { body, headers: { cookie, "x-csrf-token": csrf } });
      assert.equal(ok.status, 201, JSON.stringify(ok.body));
    });

    it("applies the same check to Connect calls (every Connect unary call is a POST)", async () => {
      const url = `${cp.url}/gpuagent.customer.v1.CustomerService/GetMe`;
      const refused = await fetch(url, { method: "POST", headers: { "content-type": "application/json", cookie }, body: "{}" });
      assert.equal(refused.status, 403);
      assert.match(await refused.text(), /CSRF_TOKEN_INVALID/);
      const ok = await fetch(url, { method: "POST", headers: { "content-type": "application/json", cookie, "x-csrf-token": csrf }, body: "{}" });
      assert.equal(ok.status, 200);
    });

    it("never lets the cookie stand in for, or add to, an API key", async () => {
      // A key without usage:read stays without it, whatever cookie comes along.
      const created = await request(cp, "POST", "/api/v1/customer/api-keys", { body: { name: "narrow", scopes: ["dataset:write"] }, headers: { cookie, "x-csrf-token": csrf } });
      const narrow = created.body["key"] as string;
      const usage = await request(cp, "GET", "/api/v1/customer/usage/summary", { headers: { "x-api-key": narrow, cookie } });
      assert.equal(code(usage), "API_KEY_SCOPE_DENIED");
      // Session-only rpcs stay closed to API keys.
      const mint = await request(cp, "POST", "/api/v1/customer/api-keys", { body: { name: "x", scopes: ["usage:read"] }, headers: { "x-api-key": narrow, cookie, "x-csrf-token": csrf } });
      assert.equal(code(mint), "API_KEY_SCOPE_DENIED");
      // A wrong key is a wrong key, cookie or not.
      const bad = await request(cp, "GET", "/api/v1/customer/datasets", { headers: { "x-api-key": "sk_live_nope", cookie } });
      assert.equal(code(bad), "API_KEY_INVALID");
      // And an API key call needs no CSRF token.
      const upload = await request(cp, "POST", "/api/v1/customer/datasets", { body: { name: "d", size_bytes: 1, sha256: "0".repeat(64) }, headers: { "x-api-key": narrow, cookie } });
      assert.equal(upload.status, 201, JSON.stringify(upload.body));
    });

    it("signs out: CSRF-checked, the session revoked, the cookie cleared", async () => {
      const refused = await request(cp, "DELETE", "/portal/session", { headers: { cookie } });
      assert.equal(refused.status, 403);
      assert.equal(code(refused), "CSRF_TOKEN_INVALID");
      const out = await fetch(`${cp.url}/portal/session`, { method: "DELETE", headers: { cookie, "x-csrf-token": csrf } });
      assert.equal(out.status, 204);
      assert.match(out.headers.get("set-cookie") ?? "", /^gpu_agent_session=; Path=\/; Max-Age=0; HttpOnly; SameSite=Strict$/);
      const after = await request(cp, "GET", "/api/v1/customer/auth/me", { headers: { cookie } });
      assert.equal(after.status, 401);
      assert.equal(code(after), "CUSTOMER_AUTH_REQUIRED");
      const stale = await request(cp, "GET", "/portal/session", { headers: { cookie } });
      assert.equal(stale.status, 401);
      assert.match(stale.headers.get("set-cookie") ?? "", /Max-Age=0/, "a dead cookie is removed");
    });
  });
});
