/**
 * Sign-in throttling over the real control plane (src/auth/login-throttle.ts): failures count per
 * (client address, e-mail) pair and per address, a known and an unknown e-mail get the same answers,
 * and no one can lock a customer out from another address.
 *
 * Each test signs in from its own loopback addresses (127.0.0.x, bound with `localAddress`; Linux
 * routes all of 127/8 to lo), so the server sees a different TCP peer per "client". The control
 * plane runs on a FakeClock, so locks and the address budget are crossed without waiting.
 */
import assert from "node:assert/strict";
import http from "node:http";
import type http2 from "node:http2";
import type { TcpNetConnectOpts } from "node:net";
import { create } from "@bufbuild/protobuf";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { clientAddressKey, loginEmailKey, loginForgetAfterSeconds } from "../../src/auth/login-throttle.ts";
import { CustomerService, LoginRequestSchema } from "../../src/gen/gpuagent/customer/v1/customer_pb.ts";
import { defaultLimits } from "../../src/platform/config.ts";
import { FakeClock } from "../../src/platform/clock.ts";
import { admitPairAttempt, purgeLoginAttempts, recordLoginSuccess } from "../../src/store/login-attempts.ts";
import type { TestControlPlane } from "../support/control-plane.ts";
import { adminRequest, startTestControlPlane } from "../support/control-plane.ts";
import { createMigratedTestDatabaseUrl } from "../support/postgres.ts";

const password = "correct horse battery";

interface Answer {
  status: number;
  headers: Record<string, string>;
  body: Record<string, unknown>;
}

/** What must not differ between two answers: all of it but the request id and the date. */
function comparable(answer: Answer): unknown {
  const { date: _date, "x-request-id": _id, ...headers } = answer.headers;
  const { request_id: _rid, ...error } = (answer.body["error"] ?? {}) as Record<string, unknown>;
  return { status: answer.status, headers, error };
}

function errorCode(answer: Answer): string {
  return ((answer.body["error"] ?? {}) as Record<string, unknown>)["code"] as string;
}

/** POSTs JSON over HTTP/1.1 to the control plane on `port`, from the local address `from`. */
function postFrom(port: number, from: string, path: string, body: unknown, headers: Record<string, string> = {}): Promise<Answer> {
  const text = JSON.stringify(body);
  return new Promise((resolve, reject) => {
    const req = http.request(
      { host: "127.0.0.1", port, path, method: "POST", localAddress: from, agent: false, headers: { "content-type": "application/json", "content-length": Buffer.byteLength(text), ...headers } },
      (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (c: Buffer) => chunks.push(c));
        res.on("end", () => {
          const raw = Buffer.concat(chunks).toString("utf8");
          const flat: Record<string, string> = {};
          for (const [k, v] of Object.entries(res.headers)) if (v !== undefined) flat[k] = Array.isArray(v) ? v.join(", ") : v;
          resolve({ status: res.statusCode ?? 0, headers: flat, body: raw === "" ? {} : (JSON.parse(raw) as Record<string, unknown>) });
        });
        res.on("error", reject);
      },
    );
    req.on("error", reject);
    req.end(text);
  });
}

describe("sign-in throttling: per address and e-mail, the same for unknown e-mails", function () {
  this.timeout(60_000);
  const clock = new FakeClock(Date.UTC(2026, 5, 1, 12));
  let cp: TestControlPlane;
  let port: number;
  // Every test takes fresh addresses, so no test's counts reach another's.
  let nextHost = 2;
  const freshAddress = () => `127.0.0.${nextHost++}`;

  async function newCustomer(): Promise<string> {
    const email = `throttle-${Math.random().toString(36).slice(2)}@example.com`;
    await adminRequest(cp, "POST", "/api/v1/admin/customers", { email, password, credits: 10 });
    return email;
  }
  const unknownEmail = () => `nobody-${Math.random().toString(36).slice(2)}@example.com`;

  const post = (from: string, path: string, body: unknown, headers: Record<string, string> = {}) => postFrom(port, from, path, body, headers);
  const login = (from: string, email: string, pw: string, headers: Record<string, string> = {}) =>
    post(from, "/api/v1/customer/auth/login", { email, password: pw }, headers);

  before(async () => {
    cp = await startTestControlPlane({ clock });
    port = Number(new URL(cp.url).port);
  });

  after(async () => {
    await cp?.stop();
  });

  it("a known and an unknown e-mail get identical answers, status, code, message and headers, over 7 failed attempts", async () => {
    const known = await newCustomer();
    // Each from its own address, so the per-address request limit's headers start alike too.
    const [knownFrom, unknownFrom] = [freshAddress(), freshAddress()];
    const unknown = unknownEmail();
    const knownAnswers: Answer[] = [];
    const unknownAnswers: Answer[] = [];
    for (let i = 1; i <= 7; i++) {
      knownAnswers.push(await login(knownFrom, known, `wrong-${i}`));
      unknownAnswers.push(await login(unknownFrom, unknown, `wrong-${i}`));
    }
    assert.deepEqual(knownAnswers.map(comparable), unknownAnswers.map(comparable));
    assert.deepEqual(
      knownAnswers.map((a) => [a.status, errorCode(a), a.headers["retry-after"]]),
      [...Array(5).fill([401, "CUSTOMER_AUTH_REQUIRED", undefined]), [429, "RATE_LIMITED", "30"], [429, "RATE_LIMITED", "30"]],
    );
  });

  it("an e-mail without an account is locked after five failures, as one with an account is", async () => {
    // The same e-mail, unknown, from one address: the lock does not depend on an account existing.
    const from = freshAddress();
    const email = unknownEmail();
    for (let i = 1; i <= 5; i++) assert.equal((await login(from, email, "wrong")).status, 401, `failure ${i}`);
    assert.equal((await login(from, email, "wrong")).status, 429);
  });

  it("a locked pair refuses even the right password, and only until the lock ends", async () => {
    const email = await newCustomer();
    const from = freshAddress();
    for (let i = 1; i <= 5; i++) await login(from, email, "wrong");
    const locked = await login(from, email, password);
    assert.equal(locked.status, 429);
    assert.equal(locked.headers["retry-after"], "30");
    clock.advance(30_000);
    assert.equal((await login(from, email, password)).status, 200);
  });

  it("failures from one address do not lock the account for another address", async () => {
    const email = await newCustomer();
    const [attacker, customer] = [freshAddress(), freshAddress()];
    for (let i = 1; i <= 7; i++) await login(attacker, email, `guess-${i}`);
    assert.equal((await login(attacker, email, password)).status, 429);
    const own = await login(customer, email, password);
    assert.equal(own.status, 200, JSON.stringify(own.body));
    // And the customer's sign-in clears nothing for the attacker's address.
    assert.equal((await login(attacker, email, password)).status, 429);
  });

  it("a successful sign-in clears that pair's failures: the count starts over", async () => {
    const email = await newCustomer();
    const from = freshAddress();
    for (let i = 1; i <= 4; i++) assert.equal((await login(from, email, "wrong")).status, 401);
    assert.equal((await login(from, email, password)).status, 200);
    for (let i = 1; i <= 5; i++) assert.equal((await login(from, email, "wrong")).status, 401, `failure ${i} after the success`);
    assert.equal((await login(from, email, "wrong")).status, 429);
  });

  it("a client-chosen x-gpu-agent-peer-address header does not move an attempt to another address", async () => {
    const email = await newCustomer();
    const from = freshAddress();
    for (let i = 1; i <= 5; i++) await login(from, email, "wrong");
    const spoofed = await login(from, email, password, { "x-gpu-agent-peer-address": freshAddress() });
    assert.equal(spoofed.status, 429);
  });

  it("the lock holds on every protocol from that address (REST, Connect, gRPC) and on none from another", async () => {
    const email = await newCustomer();
    const [locked, other] = [freshAddress(), freshAddress()];
    for (let i = 1; i <= 5; i++) assert.equal((await login(locked, email, "wrong")).status, 401);

    const connect = await post(locked, "/gpuagent.customer.v1.CustomerService/Login", { email, password });
    assert.equal(connect.status, 429, JSON.stringify(connect.body));
    assert.equal(connect.body["code"], "resource_exhausted");

    const grpcFrom = (from: string) => {
      // http2.connect hands its options on to net.connect, so the session's socket binds `from`.
      const nodeOptions: http2.ClientSessionOptions & Pick<TcpNetConnectOpts, "localAddress"> = { localAddress: from };
      return createClient(CustomerService, createGrpcTransport({ baseUrl: cp.url, nodeOptions }));
    };
    const refused = await grpcFrom(locked)
      .login(create(LoginRequestSchema, { email, password }))
      .then(() => undefined, (e: unknown) => ConnectError.from(e));
    assert.equal(refused?.code, Code.ResourceExhausted);
    const signedIn = await grpcFrom(other).login(create(LoginRequestSchema, { email, password }));
    assert.notEqual(signedIn.sessionToken, "");
  });

  describe("the per-address budget", () => {
    const budget = defaultLimits.login.failuresPerAddress;

    it(`refuses attempts from an address past ${budget} failures over all e-mails, alike for known and unknown e-mails and the right password`, async () => {
      const known = await newCustomer();
      const [sprayer, elsewhere] = [freshAddress(), freshAddress()];
      for (let i = 1; i <= budget; i++) assert.equal((await login(sprayer, unknownEmail(), "guess")).status, 401, `failure ${i}`);
      const answers = [await login(sprayer, known, "guess"), await login(sprayer, unknownEmail(), "guess"), await login(sprayer, known, password)];
      // One address, so only the request limit's X-RateLimit-Remaining differs from one answer to the next.
      const refusal = (a: Answer) => ({ ...(comparable(a) as { headers: Record<string, string> }).headers, "x-ratelimit-remaining": "" });
      for (const answer of answers) {
        assert.equal(answer.status, 429);
        assert.equal(errorCode(answer), "RATE_LIMITED");
        assert.equal(answer.headers["retry-after"], "30");
        assert.deepEqual((comparable(answer) as { error: unknown }).error, (comparable(answers[0]!) as { error: unknown }).error);
        assert.deepEqual(refusal(answer), refusal(answers[0]!));
      }
      // Another address is not affected.
      assert.equal((await login(elsewhere, known, password)).status, 200);
      // The budget refills at its rate (20 per 10 minutes: one per 30 s).
      clock.advance(30_000);
      assert.equal((await login(sprayer, unknownEmail(), "guess")).status, 401);
      assert.equal((await login(sprayer, unknownEmail(), "guess")).status, 429);
    });

    it("still lets in a customer who signed in from that address before, and only with the right password", async () => {
      const customer = await newCustomer();
      const shared = freshAddress();
      assert.equal((await login(shared, customer, password)).status, 200);
      for (let i = 1; i <= budget; i++) await login(shared, unknownEmail(), "guess");
      assert.equal((await login(shared, unknownEmail(), "guess")).status, 429);
      const wrong = await login(shared, customer, "guess");
      assert.equal(wrong.status, 429, "a wrong password gets the address's refusal, as for any e-mail");
      assert.equal((await login(shared, customer, password)).status, 200);
    });

    it("successes do not spend it", async () => {
      const customer = await newCustomer();
      const from = freshAddress();
      for (let i = 1; i <= budget + 5; i++) assert.equal((await login(from, customer, password)).status, 200, `sign-in ${i}`);
      for (let i = 1; i <= budget; i++) assert.equal((await login(from, unknownEmail(), "guess")).status, 401, `failure ${i}`);
    });
  });

  describe("the tables stay bounded", () => {
    const policy = {
      failuresBeforeLock: 5,
      lockSeconds: 30,
      maxLockSeconds: 900,
      forgetAfterSeconds: loginForgetAfterSeconds,
      trustSeconds: 30 * 24 * 3600,
    };
    const rowsOf = async (address: string) =>
      (await cp.plane.deps.db.query<{ n: number }>(`SELECT count(*)::int AS n FROM login_attempts WHERE address = $1`, [address]))[0]!.n;

    it("an address keeps only its newest failing e-mails (and the one tried now); pairs that signed in are kept", async () => {
      const db = cp.plane.deps.db;
      const address = clientAddressKey(freshAddress());
      const now = new Date(clock.now());
      const trusted = { address, emailKey: loginEmailKey("trusted@example.com") };
      await recordLoginSuccess(db, trusted, now, policy.trustSeconds);
      for (let i = 0; i < 10; i++) {
        const key = { address, emailKey: loginEmailKey(`spray-${i}@example.com`) };
        const admitted = await admitPairAttempt(db, key, new Date(now.getTime() + i), policy);
        assert.equal(admitted.admitted && admitted.inserted, true);
        await purgeLoginAttempts(db, now, { current: key, maxFailingPairs: 3, batch: 100, budgetWindowSeconds: 600 });
      }
      const kept = await db.query<{ email_key: string }>(`SELECT email_key FROM login_attempts WHERE address = $1 ORDER BY email_key`, [address]);
      const expected = [trusted.emailKey, ...[7, 8, 9].map((i) => loginEmailKey(`spray-${i}@example.com`))].sort();
      assert.deepEqual(kept.map((r) => r.email_key), expected);
    });

    it("a pair's row is deleted once its failures are forgotten, and an address's budget once it has drained", async () => {
      const from = freshAddress();
      await login(from, unknownEmail(), "guess");
      const address = clientAddressKey(from);
      assert.equal(await rowsOf(address), 1);
      clock.advance(loginForgetAfterSeconds * 1000);
      // Any later attempt purges what has expired, here attempts from elsewhere. Each deletes up to
      // 100 expired rows per table; three cover what the earlier tests left.
      for (let i = 0; i < 3; i++) await login(freshAddress(), unknownEmail(), "guess");
      assert.equal(await rowsOf(address), 0);
      const budgets = await cp.plane.deps.db.query(`SELECT 1 FROM login_address_budgets WHERE address = $1`, [address]);
      assert.equal(budgets.length, 0);
    });
  });

  it("IPv6 clients count by their /64 and IPv4-mapped ones as IPv4", () => {
    const cases: [string, string][] = [
      ["127.0.0.5", "127.0.0.5"],
      ["::ffff:203.0.113.9", "203.0.113.9"],
      ["2001:db8:1:2:aaaa::1", "2001:db8:1:2::/64"],
      ["2001:db8:1:2:bbbb:cccc:dddd:eeee", "2001:db8:1:2::/64"],
      ["2001:db8::1", "2001:db8:0:0::/64"],
      ["fe80::1%eth0", "fe80:0:0:0::/64"],
      ["::1", "0:0:0:0::/64"],
      ["unknown", "unknown"],
    ];
    for (const [peer, key] of cases) assert.equal(clientAddressKey(peer), key, peer);
  });
});

describe("sign-in throttling under concurrent attempts: exact counts on both backends", function () {
  this.timeout(60_000);
  for (const backend of ["pglite", "postgresql"] as const) {
    describe(backend, () => {
      let cp: TestControlPlane;
      let port: number;

      before(async () => {
        const databaseUrl = backend === "postgresql" ? await createMigratedTestDatabaseUrl() : undefined;
        cp = await startTestControlPlane({ clock: new FakeClock(Date.UTC(2026, 5, 1, 12)), ...(databaseUrl === undefined ? {} : { databaseUrl }) });
        port = Number(new URL(cp.url).port);
      });

      after(async () => {
        await cp?.stop();
      });

      const statuses = async (attempts: Promise<Answer>[]) => {
        const counts: Record<number, number> = {};
        for (const answer of await Promise.all(attempts)) counts[answer.status] = (counts[answer.status] ?? 0) + 1;
        return counts;
      };

      it("15 guesses at once at one e-mail from one address: exactly 5 are checked, the rest refused", async () => {
        const attempts = Array.from({ length: 15 }, (_, i) =>
          postFrom(port, "127.0.0.200", "/api/v1/customer/auth/login", { email: "target@example.com", password: `guess-${i}` }),
        );
        assert.deepEqual(await statuses(attempts), { 401: 5, 429: 10 });
      });

      it("30 guesses at once at different e-mails from one address: exactly the budget of 20 is checked", async () => {
        const attempts = Array.from({ length: 30 }, (_, i) =>
          postFrom(port, "127.0.0.201", "/api/v1/customer/auth/login", { email: `spray-${i}@example.com`, password: "guess" }),
        );
        assert.deepEqual(await statuses(attempts), { 401: 20, 429: 10 });
      });
    });
  }
});
