/** The dispatcher's environment settings (cmd/scheduler.ts): test-only switches guarded, bad values refused. */
import assert from "node:assert/strict";
import { requestLimitOptionsFromEnv } from "../../src/limits/request-limits.ts";
import { webhookDispatcherOptionsFromEnv } from "../../src/webhooks/env.ts";

describe("webhook and request-limit settings from the environment", () => {
  it("asks for nothing by default", () => {
    assert.deepEqual(webhookDispatcherOptionsFromEnv({}), {});
    assert.deepEqual(requestLimitOptionsFromEnv({}), {});
  });

  it("reads the test switches, the backoff base and the delivery switch", async () => {
    const options = webhookDispatcherOptionsFromEnv({
      GPU_AGENT_WEBHOOK_ALLOW_PRIVATE: "1",
      GPU_AGENT_WEBHOOK_RESOLVE: "hooks.example.com:127.0.0.1, v6.example.com:[::1]",
      GPU_AGENT_WEBHOOK_RETRY_BASE_MS: "250",
      GPU_AGENT_WEBHOOK_DELIVER: "0",
    });
    assert.equal(options.allowPrivateAddresses, true);
    assert.equal(options.retryBaseMs, 250);
    assert.equal(options.deliver, false);
    assert.deepEqual(await options.resolver!("HOOKS.example.com"), [{ address: "127.0.0.1", family: 4 }]);
    assert.deepEqual(await options.resolver!("v6.example.com"), [{ address: "::1", family: 6 }]);
    assert.deepEqual(requestLimitOptionsFromEnv({ GPU_AGENT_LIMIT_REQUESTS_PER_MINUTE: "0" }), { requestsPerMinute: 0 });
  });

  it("refuses a resolve override without the private-address switch, and malformed values", () => {
    assert.throws(() => webhookDispatcherOptionsFromEnv({ GPU_AGENT_WEBHOOK_RESOLVE: "hooks.example.com:127.0.0.1" }), /ALLOW_PRIVATE/);
    assert.throws(() => webhookDispatcherOptionsFromEnv({ GPU_AGENT_WEBHOOK_ALLOW_PRIVATE: "1", GPU_AGENT_WEBHOOK_RESOLVE: "hooks.example.com" }), /host:ip/);
    assert.throws(() => webhookDispatcherOptionsFromEnv({ GPU_AGENT_WEBHOOK_ALLOW_PRIVATE: "maybe" }), /1 or 0/);
    assert.throws(() => webhookDispatcherOptionsFromEnv({ GPU_AGENT_WEBHOOK_RETRY_BASE_MS: "-5" }), /positive integer/);
    assert.throws(() => webhookDispatcherOptionsFromEnv({ GPU_AGENT_WEBHOOK_CA_FILE: "/nonexistent/ca.pem" }), /ENOENT/);
    assert.throws(() => requestLimitOptionsFromEnv({ GPU_AGENT_LIMIT_REQUESTS_PER_MINUTE: "ten" }), /non-negative integer/);
  });
});
