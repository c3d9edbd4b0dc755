/**
 * The rates a customer reads before creating a job (GET /customer/config, over REST and through the
 * SDK's Connect client) are the rates the debit applies: the cpu rate per unit, the gpu rate per GPU of
 * the unit (`per_gpu`).
 */
import assert from "node:assert/strict";
import { unitCost } from "../../src/billing/rates.ts";
import { defaultRates } from "../../src/platform/config.ts";
import { createGpuAgentClient } from "../../src/sdk/index.ts";
import type { TestControlPlane } from "../support/control-plane.ts";
import { request, startTestControlPlane } from "../support/control-plane.ts";

describe("GET /customer/config: workload rates", function () {
  this.timeout(60_000);
  let cp: TestControlPlane;
  before(async () => {
    cp = await startTestControlPlane();
  });
  after(async () => {
    await cp?.stop();
  });

  it("tells the cpu rate per unit and the gpu rate per GPU over REST", async () => {
    const res = await request(cp, "GET", "/api/v1/customer/config");
    assert.equal(res.status, 200);
    assert.deepEqual(res.body["workload_rates"], [
      { kind: "cpu", credits_per_minute: String(defaultRates.cpuCreditsPerMinute), per_gpu: false },
      { kind: "gpu", credits_per_minute: String(defaultRates.gpuCreditsPerMinute), per_gpu: true },
    ]);
  });

  it("tells the same over Connect, and a per-GPU rate is what a unit of N GPUs pays per GPU", async () => {
    const { workloadRates } = await createGpuAgentClient({ baseUrl: cp.url }).config();
    const gpu = workloadRates.find((r) => r.kind === "gpu");
    assert.ok(gpu !== undefined);
    assert.equal(gpu.perGpu, true);
    assert.equal(workloadRates.find((r) => r.kind === "cpu")?.perGpu, false);
    for (const gpus of [1, 2, 8]) {
      assert.equal(unitCost({ kind: "gpu", gpuCount: gpus }, 60, defaultRates), gpus * Number(gpu.creditsPerMinute), `${gpus} GPUs, one minute`);
    }
  });
});
