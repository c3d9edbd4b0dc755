import assert from "node:assert/strict";
import { runCli } from "../../src/cli/program.ts";
import { ADMIN_TOKEN, callsOf, captureIo, depsFor, startFakeApi, type FakeApi } from "./fake-api.ts";

describe("gpuctl admin", () => {
  let api: FakeApi;
  beforeEach(async () => {
    api = await startFakeApi();
  });
  afterEach(async () => {
    await api.close();
  });

  it("create-customer prints exactly customer_id and api_key as JSON, even without --json", async () => {
    const cap = captureIo();
    const code = await runCli(["admin", "create-customer", "--email", "a@b.c", "--password", "pw-123456", "--credits", "500"], depsFor(api, cap));
    assert.equal(code, 0, cap.err());
    const printed = JSON.parse(cap.out()) as Record<string, unknown>;
    assert.deepEqual(Object.keys(printed).sort(), ["api_key", "customer_id"]);
    assert.deepEqual(printed, { customer_id: "cus_1", api_key: "sk_test_new" });
    const [post] = callsOf(api, "CreateCustomer");
    assert.equal(post?.headers.get("authorization"), `Bearer ${ADMIN_TOKEN}`);
    assert.deepEqual(post?.body, { email: "a@b.c", password: "pw-123456", credits: "500" });
  });

  it("enrollment-token --json prints the token and its expiry", async () => {
    const cap = captureIo();
    const code = await runCli(["admin", "enrollment-token", "--trust-level", "verified", "--ttl", "600", "--json"], depsFor(api, cap));
    assert.equal(code, 0, cap.err());
    const printed = JSON.parse(cap.out()) as Record<string, unknown>;
    assert.equal(printed["token"], "enr_abc");
    assert.equal(printed["expires_at"], "2026-01-01T01:00:00Z");
    assert.deepEqual(callsOf(api, "CreateEnrollmentToken")[0]?.body, { trust_level: "verified", ttl_seconds: 600 });
  });

  it("grant-credits sends the customer, amount and reason", async () => {
    const cap = captureIo();
    const code = await runCli(["admin", "grant-credits", "--customer", "cus_7", "--amount", "250", "--reason", "promo"], depsFor(api, cap));
    assert.equal(code, 0, cap.err());
    assert.deepEqual(callsOf(api, "GrantCredits")[0]?.body, { customer_id: "cus_7", amount: "250", reason: "promo" });
    assert.match(cap.out(), /^credits_balance\s+1250$/m);
  });

  it("nodes and scheduler render for humans and as JSON", async () => {
    const cap = captureIo();
    assert.equal(await runCli(["admin", "nodes"], depsFor(api, cap)), 0, cap.err());
    assert.match(cap.out(), /node_1\s+box\s+verified\s+online\s+RTX 4090 24564MiB/);
    // How it contains units, and why the placer sends it nothing now.
    assert.match(cap.out(), /^ID\s.*\sISOLATION\s+NOT_PLACING$/m);
    assert.match(cap.out(), /\sbubblewrap\s+paused by its owner$/m);
    const cap2 = captureIo();
    assert.equal(await runCli(["admin", "scheduler", "--json"], depsFor(api, cap2)), 0, cap2.err());
    assert.equal((JSON.parse(cap2.out()) as { term: string }).term, "3");
  });

  it("lists customers, cordons a node and sets its trust level", async () => {
    const cap = captureIo();
    assert.equal(await runCli(["admin", "customers"], depsFor(api, cap)), 0, cap.err());
    assert.match(cap.out(), /^cus_1\s+a@b\.c\s+500\s+2026-01-01T00:00:00Z$/m);
    const cordon = captureIo();
    assert.equal(await runCli(["admin", "cordon", "node_1", "--json"], depsFor(api, cordon)), 0, cordon.err());
    assert.equal((JSON.parse(cordon.out()) as { state: string }).state, "cordoned");
    const trust = captureIo();
    assert.equal(await runCli(["admin", "set-trust-level", "node_1", "--trust-level", "controlled"], depsFor(api, trust)), 0, trust.err());
    assert.match(trust.out(), /node_1\s+box\s+controlled\s+online/);
    assert.deepEqual(callsOf(api, "SetNodeTrustLevel")[0]?.body, { id: "node_1", trust_level: "controlled" });
  });

  it("an unknown node is the server's RESOURCE_NOT_FOUND, exit 1", async () => {
    const cap = captureIo();
    assert.equal(await runCli(["admin", "cordon", "node_x"], depsFor(api, cap)), 1);
    assert.equal(cap.err(), "error: node node_x not found (code RESOURCE_NOT_FOUND, request req_resource_not_found)\n");
  });

  it("a missing admin token is a usage error without calling the API", async () => {
    const cap = captureIo();
    const deps = depsFor(api, cap);
    delete deps.env["GPU_AGENT_ADMIN_TOKEN"];
    assert.equal(await runCli(["admin", "nodes"], deps), 2);
    assert.match(cap.err(), /ADMIN_TOKEN_MISSING/);
    assert.equal(api.calls.length, 0);
  });

  it("a wrong admin token surfaces the server's code", async () => {
    const cap = captureIo();
    const deps = depsFor(api, cap);
    deps.env["GPU_AGENT_ADMIN_TOKEN"] = "nope";
    assert.equal(await runCli(["admin", "scheduler"], deps), 1);
    assert.match(cap.err(), /ADMIN_AUTH_REQUIRED/);
  });

  it("an unknown trust level is a usage error", async () => {
    const cap = captureIo();
    assert.equal(await runCli(["admin", "enrollment-token", "--trust-level", "root"], depsFor(api, cap)), 2);
    assert.equal(api.calls.length, 0);
  });
});
