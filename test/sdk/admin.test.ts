/**
 * The SDK's operator client against a real control plane: customers, credits, enrollment tokens,
 * nodes and the scheduler, with the same typed errors as the customer client.
 */
import assert from "node:assert/strict";
import { Code } from "@connectrpc/connect";
import type { GpuAgentAdminClient } from "../../src/sdk/index.ts";
import { createGpuAgentAdminClient, createGpuAgentClient, listAll } from "../../src/sdk/index.ts";
import type { TestAgent, TestControlPlane } from "../support/control-plane.ts";
import { startTestAgent, startTestControlPlane } from "../support/control-plane.ts";
import { rejection } from "./support.ts";

describe("SDK: the operator client against a real control plane", function () {
  this.timeout(120_000);
  let cp: TestControlPlane;
  let agent: TestAgent;
  let admin: GpuAgentAdminClient;

  before(async () => {
    cp = await startTestControlPlane();
    agent = await startTestAgent(cp, { trustLevel: "community", devGpuMib: 8192 });
    admin = createGpuAgentAdminClient({ baseUrl: cp.url, adminToken: cp.adminToken });
  });
  after(async () => {
    await agent?.stop();
    await cp?.stop();
  });

  it("creates a customer whose key works, lists it and grants it credits", async () => {
    const created = await admin.customers.create({ email: "sdk-admin@example.com", password: "correct horse battery", credits: 500n });
    assert.notEqual(created.customerId, "");
    const customer = createGpuAgentClient({ baseUrl: cp.url, apiKey: created.apiKey });
    assert.equal((await customer.usage.summary()).creditsBalance, 500n);

    const all = await listAll((p) => admin.customers.list(p));
    assert.equal(all.find((c) => c.id === created.customerId)?.email, "sdk-admin@example.com");

    const granted = await admin.customers.grantCredits(created.customerId, { amount: 250n, reason: "pilot" });
    assert.equal(granted.creditsBalance, 750n);
    assert.notEqual(granted.ledgerEntryId, "");
    assert.equal((await customer.usage.summary()).creditsBalance, 750n);
  });

  it("mints enrollment tokens and manages nodes", async () => {
    const token = await admin.enrollmentTokens.create({ trustLevel: "verified", ttlSeconds: 600 });
    assert.notEqual(token.token, "");
    assert.equal(token.trustLevel, "verified");
    assert.ok(token.expiresAt !== undefined);

    const nodes = await listAll((p) => admin.nodes.list(p));
    const node = nodes.find((n) => n.trustLevel === "community");
    assert.ok(node !== undefined, `the test agent is enrolled: ${JSON.stringify(nodes.map((n) => n.id))}`);
    assert.equal((await admin.nodes.cordon(node.id)).state, "cordoned");
    assert.equal((await admin.nodes.uncordon(node.id)).state, "online");
    assert.equal((await admin.nodes.setTrustLevel(node.id, "verified")).trustLevel, "verified");

    const status = await admin.schedulerStatus();
    assert.equal(status.isLeader, true);
    assert.equal(status.replicaId, "test-replica");
  });

  it("throws the same typed errors: RESOURCE_NOT_FOUND, VALIDATION_FAILED, ADMIN_AUTH_REQUIRED", async () => {
    const missing = await rejection(admin.nodes.cordon("00000000-0000-4000-8000-000000000000"));
    assert.equal(missing.code, "RESOURCE_NOT_FOUND");
    assert.equal(missing.httpStatus, 404);
    assert.notEqual(missing.requestId, "");

    const invalid = await rejection(admin.enrollmentTokens.create({ trustLevel: "root" }));
    assert.equal(invalid.code, "VALIDATION_FAILED");
    assert.equal(invalid.connectCode, Code.InvalidArgument);

    const wrong = createGpuAgentAdminClient({ baseUrl: cp.url, adminToken: "not-the-token" });
    const refused = await rejection(wrong.schedulerStatus());
    assert.equal(refused.code, "ADMIN_AUTH_REQUIRED");
    assert.equal(refused.httpStatus, 401);
  });
});
