/** Signing and verifying webhook deliveries. */
import assert from "node:assert/strict";
import { createHmac } from "node:crypto";
import { signPayload, verifyWebhookSignature } from "../../src/webhooks/signature.ts";

describe("webhook signatures", () => {
  const body = JSON.stringify({ id: "e1", type: "job.completed", data: { job_id: "j1" } });
  const now = 1_767_225_600;

  it("signs t.body with HMAC-SHA256 in the documented header format", () => {
    const header = signPayload(body, ["whsec_a"], now);
    const expected = createHmac("sha256", "whsec_a").update(`${now}.${body}`).digest("hex");
    assert.equal(header, `t=${now},v1=${expected}`);
  });

  it("verifies a signature made with the same secret", () => {
    assert.equal(verifyWebhookSignature(body, signPayload(body, ["whsec_a"], now), ["whsec_a"], 300, now + 10), true);
  });

  it("verifies raw body bytes as well as strings", () => {
    assert.equal(verifyWebhookSignature(Buffer.from(body), signPayload(body, ["whsec_a"], now), ["whsec_a"], 300, now), true);
  });

  const refusals: [string, () => boolean][] = [
    ["a wrong secret", () => verifyWebhookSignature(body, signPayload(body, ["whsec_a"], now), ["whsec_b"], 300, now)],
    ["a changed body", () => verifyWebhookSignature(body + " ", signPayload(body, ["whsec_a"], now), ["whsec_a"], 300, now)],
    ["a stale timestamp", () => verifyWebhookSignature(body, signPayload(body, ["whsec_a"], now), ["whsec_a"], 300, now + 301)],
    ["a timestamp from the future", () => verifyWebhookSignature(body, signPayload(body, ["whsec_a"], now + 600), ["whsec_a"], 300, now)],
    ["a missing header", () => verifyWebhookSignature(body, undefined, ["whsec_a"], 300, now)],
    ["a header without v1", () => verifyWebhookSignature(body, `t=${now}`, ["whsec_a"], 300, now)],
    ["a header without t", () => verifyWebhookSignature(body, signPayload(body, ["whsec_a"], now).replace(/^t=\d+,/, ""), ["whsec_a"], 300, now)],
    ["a garbage header", () => verifyWebhookSignature(body, "nonsense", ["whsec_a"], 300, now)],
    [
      "a timestamp swapped after signing",
      () => verifyWebhookSignature(body, signPayload(body, ["whsec_a"], now).replace(`t=${now}`, `t=${now + 1}`), ["whsec_a"], 300, now),
    ],
  ];
  for (const [what, check] of refusals) {
    it(`refuses ${what}`, () => {
      assert.equal(check(), false);
    });
  }

  it("carries two v1 values during a rotation, each verifiable with its own secret", () => {
    const header = signPayload(body, ["whsec_new", "whsec_old"], now);
    assert.equal(header.split(",").filter((p) => p.startsWith("v1=")).length, 2);
    assert.equal(verifyWebhookSignature(body, header, ["whsec_new"], 300, now), true);
    assert.equal(verifyWebhookSignature(body, header, ["whsec_old"], 300, now), true);
    assert.equal(verifyWebhookSignature(body, header, ["whsec_other"], 300, now), false);
  });
});
