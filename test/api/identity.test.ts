/**
 * Sessions and API keys over the real REST API: login (constant message,
 * lockout with exponential backoff), /auth/me, and the session-only key
 * life cycle (create, list with cursors, revoke, scopes enforced on use).
 * The control plane runs on a FakeClock so lock expiry is tested without waiting.
 */
import assert from "node:assert/strict";
import { FakeClock } from "../../src/platform/clock.ts";
import type { JsonResponse, TestControlPlane } from "../support/control-plane.ts";
import { adminRequest, request, startTestControlPlane } from "../support/control-plane.ts";

const password = "correct horse battery";
const allScopes = ["dataset:write", "training:write", "artifact:read", "usage:read", "webhook:write"];

function errorOf(res: JsonResponse): { code: string; message: string } {
  const error = res.body["error"] as { code?: string; message?: string } | undefined;
  return { code: error?.code ?? "", message: error?.message ?? "" };
}

type Json = Record<string, unknown>;

describe("identity: sessions and API keys", function () {
  this.timeout(60_000);
  const clock = new FakeClock(Date.UTC(2026, 2, 1, 12));
  let cp: TestControlPlane;

  /** A customer with a known e-mail and password (the shared helper hides the e-mail). */
  async function newCustomer(): Promise<{ id: string; email: string; apiKey: string }> {
    const email = `identity-${Math.random().toString(36).slice(2)}@example.com`;
    const body = await adminRequest(cp, "POST", "/api/v1/admin/customers", { email, password, credits: 1234 });
    return { id: body["customer_id"] as string, email, apiKey: body["api_key"] as string };
  }

  const login = (email: string, pw: string) => request(cp, "POST", "/api/v1/customer/auth/login", { body: { email, password: pw } });

  async function sessionOf(email: string): Promise<string> {
    const res = await login(email, password);
    assert.equal(res.status, 200, JSON.stringify(res.body));
    return res.body["session_token"] as string;
  }

  const bearer = (token: string) => ({ authorization: `Bearer ${token}` });

  async function createKey(session: string, body: Json): Promise<JsonResponse> {
    return request(cp, "POST", "/api/v1/customer/api-keys", { body, headers: bearer(session) });
  }

  before(async () => {
    cp = await startTestControlPlane({ clock });
  });

  after(async () => {
    await cp?.stop();
  });

  describe("login", () => {
    it("a correct login returns a 12 h session that /auth/me accepts as a bearer token", async () => {
      const customer = await newCustomer();
      const res = await login(customer.email.toUpperCase(), password);
      assert.equal(res.status, 200, JSON.stringify(res.body));
      const token = res.body["session_token"] as string;
      assert.match(token, /^st_[A-Za-z0-9_-]{43}$/);
      assert.equal(new Date(res.body["expires_at"] as string).getTime(), clock.now() + 12 * 3600 * 1000);
      const loggedIn = res.body["customer"] as Json;
      assert.equal(loggedIn["id"], customer.id);
      assert.equal(loggedIn["email"], customer.email);
      assert.equal(Number(loggedIn["credits_balance"]), 1234);
      assert.ok(!Number.isNaN(new Date(loggedIn["created_at"] as string).getTime()));

      const me = await request(cp, "GET", "/api/v1/customer/auth/me", { headers: bearer(token) });
      assert.equal(me.status, 200, JSON.stringify(me.body));
      assert.equal(me.body["auth_method"], "session");
      assert.deepEqual(me.body["scopes"], allScopes);
      assert.deepEqual(me.body["customer"], loggedIn);
    });

    it("/auth/me with an API key reports the key's method and scopes", async () => {
      const customer = await newCustomer();
      const me = await request(cp, "GET", "/api/v1/customer/auth/me", { headers: { "x-api-key": customer.apiKey } });
      assert.equal(me.status, 200, JSON.stringify(me.body));
      assert.equal(me.body["auth_method"], "api_key");
      assert.deepEqual(me.body["scopes"], allScopes);
      assert.equal((me.body["customer"] as Json)["id"], customer.id);
    });

    it("an expired or unknown session token is refused with CUSTOMER_AUTH_REQUIRED", async () => {
      const customer = await newCustomer();
      const token = await sessionOf(customer.email);
      const unknown = await request(cp, "GET", "/api/v1/customer/auth/me", { headers: bearer("st_not-a-real-token") });
      assert.equal(unknown.status, 401);
      assert.equal(errorOf(unknown).code, "CUSTOMER_AUTH_REQUIRED");
      clock.advance(12 * 3600 * 1000);
      const expired = await request(cp, "GET", "/api/v1/customer/auth/me", { headers: bearer(token) });
      assert.equal(expired.status, 401);
      assert.equal(errorOf(expired).code, "CUSTOMER_AUTH_REQUIRED");
    });

    it("a wrong password and an unknown e-mail get the same 401 and message", async () => {
      const customer = await newCustomer();
      const cases = [
        { name: "wrong password", email: customer.email, password: "not the password" },
        { name: "unknown e-mail", email: `nobody-${Math.random().toString(36).slice(2)}@example.com`, password },
      ];
      for (const c of cases) {
        const res = await login(c.email, c.password);
        assert.equal(res.status, 401, c.name);
        assert.deepEqual(errorOf(res), { code: "CUSTOMER_AUTH_REQUIRED", message: "e-mail or password is wrong" }, c.name);
        assert.equal(res.body["session_token"], undefined, c.name);
      }
    });

    it("an empty e-mail or password is a validation error, not a login attempt", async () => {
      for (const body of [{ email: "", password }, { email: "a@example.com", password: "" }]) {
        const res = await request(cp, "POST", "/api/v1/customer/auth/login", { body });
        assert.equal(res.status, 400, JSON.stringify(body));
        assert.equal(errorOf(res).code, "VALIDATION_FAILED");
      }
    });

    it("five failures lock the account: the right password then gets 429 with Retry-After until the lock ends", async () => {
      const customer = await newCustomer();
      for (let i = 1; i <= 5; i++) {
        const res = await login(customer.email, `wrong-${i}`);
        assert.equal(res.status, 401, `failure ${i}`);
      }
      const locked = await login(customer.email, password);
      assert.equal(locked.status, 429, JSON.stringify(locked.body));
      assert.equal(errorOf(locked).code, "RATE_LIMITED");
      assert.equal(locked.headers.get("retry-after"), "30");
      clock.advance(29_000);
      const stillLocked = await login(customer.email, password);
      assert.equal(stillLocked.status, 429);
      assert.equal(stillLocked.headers.get("retry-after"), "1");
      clock.advance(1_000);
      assert.equal((await login(customer.email, password)).status, 200);
    });

    it("each further failure doubles the lock, capped at 15 minutes", async () => {
      const customer = await newCustomer();
      for (let i = 1; i <= 4; i++) assert.equal((await login(customer.email, "wrong")).status, 401);
      const expected = [30, 60, 120, 240, 480, 900, 900];
      for (const seconds of expected) {
        assert.equal((await login(customer.email, "wrong")).status, 401, `failure locking for ${seconds} s`);
        const locked = await login(customer.email, password);
        assert.equal(locked.status, 429);
        assert.equal(locked.headers.get("retry-after"), String(seconds));
        clock.advance(seconds * 1000);
      }
      assert.equal((await login(customer.email, password)).status, 200);
    });

    it("a successful login resets the failure count", async () => {
      const customer = await newCustomer();
      for (let i = 1; i <= 4; i++) assert.equal((await login(customer.email, "wrong")).status, 401);
      assert.equal((await login(customer.email, password)).status, 200);
      // Four more failures are again below the threshold: the count started over.
      for (let i = 1; i <= 4; i++) assert.equal((await login(customer.email, "wrong")).status, 401);
      assert.equal((await login(customer.email, password)).status, 200);
    });

    it("a lock on one account does not affect another", async () => {
      const [a, b] = [await newCustomer(), await newCustomer()];
      for (let i = 1; i <= 5; i++) await login(a.email, "wrong");
      assert.equal((await login(a.email, password)).status, 429);
      assert.equal((await login(b.email, password)).status, 200);
    });
  });

  describe("API keys", () => {
    it("a session creates a key whose plaintext is shown once and which authenticates with X-API-Key", async () => {
      const customer = await newCustomer();
      const session = await sessionOf(customer.email);
      const created = await createKey(session, { name: "  ci key  ", scopes: ["usage:read", "artifact:read", "usage:read"] });
      assert.equal(created.status, 201, JSON.stringify(created.body));
      const key = created.body["key"] as string;
      const meta = created.body["api_key"] as Json;
      assert.match(key, /^sk_live_[A-Za-z0-9_-]{43}$/);
      assert.equal(meta["name"], "ci key");
      assert.equal(meta["prefix"], key.slice(0, "sk_live_".length + 4));
      assert.deepEqual(meta["scopes"], ["usage:read", "artifact:read"]);
      assert.equal(meta["revoked_at"], undefined);
      assert.equal(meta["key_hash"], undefined);

      const me = await request(cp, "GET", "/api/v1/customer/auth/me", { headers: { "x-api-key": key } });
      assert.equal(me.status, 200);
      assert.equal(me.body["auth_method"], "api_key");
      assert.deepEqual(me.body["scopes"], ["usage:read", "artifact:read"]);

      const list = await request(cp, "GET", "/api/v1/customer/api-keys?limit=50", { headers: bearer(session) });
      assert.equal(list.status, 200);
      const listed = (list.body["data"] as Json[]).find((k) => k["id"] === meta["id"]);
      assert.ok(listed !== undefined);
      // Neither the plaintext nor its hash is ever listed.
      const text = JSON.stringify(list.body);
      assert.ok(!text.includes(key));
      assert.ok(!text.includes("key_hash"));
      assert.equal(listed["prefix"], meta["prefix"]);
    });

    it("a key's scopes are enforced: usage:read alone cannot create a training job", async () => {
      const customer = await newCustomer();
      const session = await sessionOf(customer.email);
      const key = (await createKey(session, { name: "reader", scopes: ["usage:read"] })).body["key"] as string;
      const summary = await request(cp, "GET", "/api/v1/customer/usage/summary", { headers: { "x-api-key": key } });
      assert.equal(summary.status, 200, JSON.stringify(summary.body));
      const job = await request(cp, "POST", "/api/v1/customer/training-jobs", {
        body: { name: "j", dataset_id: "00000000-0000-4000-8000-000000000000", training_package_id: "00000000-0000-4000-8000-000000000000" },
        headers: { "x-api-key": key },
      });
      assert.equal(job.status, 403, JSON.stringify(job.body));
      assert.equal(errorOf(job).code, "API_KEY_SCOPE_DENIED");
    });

    it("an API key cannot create, list or revoke keys: they are managed from a session", async () => {
      const customer = await newCustomer();
      const headers = { "x-api-key": customer.apiKey };
      const cases: { name: string; method: string; path: string; body?: Json }[] = [
        { name: "create", method: "POST", path: "/api/v1/customer/api-keys", body: { name: "x", scopes: ["usage:read"] } },
        { name: "list", method: "GET", path: "/api/v1/customer/api-keys" },
        { name: "revoke", method: "DELETE", path: "/api/v1/customer/api-keys/00000000-0000-4000-8000-000000000000" },
      ];
      for (const c of cases) {
        const res = await request(cp, c.method, c.path, { headers, ...(c.body === undefined ? {} : { body: c.body }) });
        assert.equal(res.status, 403, c.name);
        assert.equal(errorOf(res).code, "API_KEY_SCOPE_DENIED", c.name);
        assert.match(errorOf(res).message, /signed-in (portal )?session/, c.name);
      }
    });

    it("key management without any credentials is 401", async () => {
      const res = await request(cp, "POST", "/api/v1/customer/api-keys", { body: { name: "x", scopes: ["usage:read"] } });
      assert.equal(res.status, 401);
      assert.equal(errorOf(res).code, "CUSTOMER_AUTH_REQUIRED");
    });

    it("bad names and scopes are refused with VALIDATION_FAILED", async () => {
      const customer = await newCustomer();
      const session = await sessionOf(customer.email);
      const cases: { name: string; body: Json; message: RegExp }[] = [
        { name: "empty name", body: { name: "   ", scopes: ["usage:read"] }, message: /name/ },
        { name: "name over 100 characters", body: { name: "n".repeat(101), scopes: ["usage:read"] }, message: /name/ },
        { name: "no scopes", body: { name: "k", scopes: [] }, message: /scopes/ },
        { name: "unknown scope", body: { name: "k", scopes: ["usage:read", "admin:everything"] }, message: /admin:everything/ },
      ];
      for (const c of cases) {
        const res = await createKey(session, c.body);
        assert.equal(res.status, 400, c.name);
        assert.equal(errorOf(res).code, "VALIDATION_FAILED", c.name);
        assert.match(errorOf(res).message, c.message, c.name);
      }
      assert.equal((await createKey(session, { name: "n".repeat(100), scopes: ["usage:read"] })).status, 201);
    });

    it("revoking is idempotent, the key then gets API_KEY_REVOKED, and the list shows revoked_at", async () => {
      const customer = await newCustomer();
      const session = await sessionOf(customer.email);
      const created = await createKey(session, { name: "short-lived", scopes: ["usage:read"] });
      const key = created.body["key"] as string;
      const id = (created.body["api_key"] as Json)["id"] as string;

      const first = await request(cp, "DELETE", `/api/v1/customer/api-keys/${id}`, { headers: bearer(session) });
      assert.equal(first.status, 200, JSON.stringify(first.body));
      const revokedAt = (first.body["api_key"] as Json)["revoked_at"];
      assert.equal(typeof revokedAt, "string");
      clock.advance(5_000);
      const again = await request(cp, "DELETE", `/api/v1/customer/api-keys/${id}`, { headers: bearer(session) });
      assert.equal(again.status, 200);
      assert.equal((again.body["api_key"] as Json)["revoked_at"], revokedAt);

      const use = await request(cp, "GET", "/api/v1/customer/usage/summary", { headers: { "x-api-key": key } });
      assert.equal(use.status, 401);
      assert.equal(errorOf(use).code, "API_KEY_REVOKED");

      const list = await request(cp, "GET", "/api/v1/customer/api-keys", { headers: bearer(session) });
      const listed = (list.body["data"] as Json[]).find((k) => k["id"] === id);
      assert.equal(listed?.["revoked_at"], revokedAt);
    });

    it("another customer's, an unknown and a malformed key id are all 404 RESOURCE_NOT_FOUND", async () => {
      const owner = await newCustomer();
      const other = await newCustomer();
      const ownerSession = await sessionOf(owner.email);
      const otherSession = await sessionOf(other.email);
      const created = await createKey(ownerSession, { name: "mine", scopes: ["usage:read"] });
      const id = (created.body["api_key"] as Json)["id"] as string;
      for (const target of [id, "00000000-0000-4000-8000-000000000000", "not-a-uuid"]) {
        const res = await request(cp, "DELETE", `/api/v1/customer/api-keys/${target}`, { headers: bearer(otherSession) });
        assert.equal(res.status, 404, target);
        assert.equal(errorOf(res).code, "RESOURCE_NOT_FOUND", target);
      }
      // The owner's key still works.
      const me = await request(cp, "GET", "/api/v1/customer/auth/me", { headers: { "x-api-key": created.body["key"] as string } });
      assert.equal(me.status, 200);
    });

    it("the key list pages forward with a cursor, newest first, without repeats", async () => {
      const customer = await newCustomer();
      const session = await sessionOf(customer.email);
      for (let i = 0; i < 5; i++) assert.equal((await createKey(session, { name: `k${i}`, scopes: ["usage:read"] })).status, 201);
      const seen: string[] = [];
      let cursor = "";
      let pages = 0;
      for (;;) {
        const res = await request(cp, "GET", `/api/v1/customer/api-keys?limit=2${cursor === "" ? "" : `&cursor=${encodeURIComponent(cursor)}`}`, { headers: bearer(session) });
        assert.equal(res.status, 200, JSON.stringify(res.body));
        const page = res.body["page"] as { limit: number; next_cursor: string; has_more: boolean };
        const data = res.body["data"] as Json[];
        assert.equal(page.limit, 2);
        seen.push(...data.map((k) => k["name"] as string));
        pages++;
        if (!page.has_more) {
          assert.equal(page.next_cursor, "");
          break;
        }
        cursor = page.next_cursor;
      }
      // Five created plus the "default" key from customer creation.
      assert.equal(pages, 3);
      assert.deepEqual(seen, ["k4", "k3", "k2", "k1", "k0", "default"]);

      const bad = await request(cp, "GET", "/api/v1/customer/api-keys?cursor=garbage", { headers: bearer(session) });
      assert.equal(bad.status, 400);
      assert.equal(errorOf(bad).code, "PAGINATION_INVALID_CURSOR");
    });

    it("a customer holds at most 50 active keys; revoking one frees a slot", async () => {
      const customer = await newCustomer();
      const session = await sessionOf(customer.email);
      // The customer starts with one key ("default"), so 49 more reach the cap.
      let lastId = "";
      for (let i = 0; i < 49; i++) {
        const res = await createKey(session, { name: `k${i}`, scopes: ["usage:read"] });
        assert.equal(res.status, 201, `key ${i}: ${JSON.stringify(res.body)}`);
        lastId = (res.body["api_key"] as Json)["id"] as string;
      }
      const over = await createKey(session, { name: "one too many", scopes: ["usage:read"] });
      assert.equal(over.status, 409);
      assert.equal(errorOf(over).code, "STATE_CONFLICT");
      assert.equal((await request(cp, "DELETE", `/api/v1/customer/api-keys/${lastId}`, { headers: bearer(session) })).status, 200);
      assert.equal((await createKey(session, { name: "replacement", scopes: ["usage:read"] })).status, 201);
    });
  });
});
