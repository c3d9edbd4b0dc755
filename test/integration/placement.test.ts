/**
 * Placement constraints with real agents: a unit is never placed on a node
 * whose GPU is too small or whose trust level is below the job's tier; it
 * waits and says why.
 */
import assert from "node:assert/strict";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { zipDirectory } from "../../src/cli/files.ts";
import type { TestAgent, TestControlPlane } from "../support/control-plane.ts";
import { adminRequest, createCustomer, request, startTestAgent, startTestControlPlane, uploadResource, waitFor } from "../support/control-plane.ts";

const example = join(import.meta.dirname, "..", "..", "examples", "tiny-mlp");

describe("placement with real agents", function () {
  this.timeout(120_000);
  let cp: TestControlPlane;
  let smallControlled: TestAgent;
  let bigCommunity: TestAgent;
  let apiKey: string;
  let datasetId: string;
  let packageId: string;

  before(async () => {
    cp = await startTestControlPlane();
    // A 12 GB GPU at the highest trust, and a 24 GB GPU at the lowest.
    smallControlled = await startTestAgent(cp, { trustLevel: "controlled", devGpuMib: 12288 });
    bigCommunity = await startTestAgent(cp, { trustLevel: "community", devGpuMib: 24576 });
    // Both streams must be up before jobs arrive, or the first reasons name one node only.
    await waitFor(
      "both agents online",
      async () => {
        const nodes = await adminRequest(cp, "GET", "/api/v1/admin/nodes");
        return (nodes["data"] as { state: string }[]).filter((n) => n.state === "online").length === 2 ? true : undefined;
      },
      30_000,
    );
    ({ apiKey } = await createCustomer(cp, 100_000));
    const dir = await mkdtemp(join(tmpdir(), "pkg-"));
    await zipDirectory(join(example, "package"), join(dir, "p.zip"));
    const zip = await readFile(join(dir, "p.zip"));
    await rm(dir, { recursive: true, force: true });
    datasetId = (await uploadResource(cp, apiKey, "datasets", "d", await readFile(join(example, "dataset.csv"))))["id"] as string;
    packageId = (await uploadResource(cp, apiKey, "training-packages", "p", zip))["id"] as string;
  });

  after(async () => {
    await smallControlled?.stop();
    await bigCommunity?.stop();
    await cp?.stop();
  });

  async function unitsOf(jobId: string): Promise<Record<string, unknown>[]> {
    const res = await request(cp, "GET", `/api/v1/customer/training-jobs/${jobId}/compute-units`, { headers: { "x-api-key": apiKey } });
    return res.body["data"] as Record<string, unknown>[];
  }

  it("never places a 24 GB low_sensitive train unit on a 12 GB GPU or on a community node, and says why it waits", async () => {
    const created = await request(cp, "POST", "/api/v1/customer/training-jobs", {
      headers: { "x-api-key": apiKey },
      body: { name: "big", dataset_id: datasetId, training_package_id: packageId, required_vram_mb: 24000, max_runtime_seconds: 600, sensitivity: "low_sensitive" },
    });
    assert.equal(created.status, 201, JSON.stringify(created.body));
    const jobId = created.body["id"] as string;
    // prepare (cpu) may run on the controlled node; train must then wait with a reason.
    const train = await waitFor(
      "the train unit to report why it waits",
      async () => {
        const units = await unitsOf(jobId);
        const prepare = units.find((u) => u["name"] === "prepare");
        const t = units.find((u) => u["name"] === "train");
        return prepare?.["status"] === "completed" && t?.["status"] === "ready" && t["unschedulable_reason"] !== "" ? t : undefined;
      },
      60_000,
    );
    assert.equal(train["node_id"], "");
    assert.match(train["unschedulable_reason"] as string, /insufficient_vram/);
    assert.match(train["unschedulable_reason"] as string, /trust_below_tier/);
    const prepare = (await unitsOf(jobId)).find((u) => u["name"] === "prepare")!;
    assert.equal(prepare["node_id"], smallControlled.nodeId, "the cpu stage of a low_sensitive job ran on the controlled node, not the community one");
    // Cancel frees the customer's active-job slot and debits nothing for the waiting units.
    const cancelled = await request(cp, "POST", `/api/v1/customer/training-jobs/${jobId}/cancel`, { headers: { "x-api-key": apiKey }, body: {} });
    assert.equal(cancelled.body["status"], "cancelled");
    const units = await unitsOf(jobId);
    assert.deepEqual(units.map((u) => [u["name"], u["status"]]), [
      ["prepare", "completed"],
      ["train", "cancelled"],
      ["evaluate", "cancelled"],
    ]);
    assert.deepEqual(units.map((u) => u["credits_debited"]), [units[0]!["credits_debited"], "0", "0"]);
  });

  it("places a public job's GPU unit on the only GPU large enough, even at community trust", async () => {
    const created = await request(cp, "POST", "/api/v1/customer/training-jobs", {
      headers: { "x-api-key": apiKey },
      body: { name: "public", dataset_id: datasetId, training_package_id: packageId, required_vram_mb: 16000, max_runtime_seconds: 600, sensitivity: "public" },
    });
    const jobId = created.body["id"] as string;
    const job = await waitFor(
      "the public job to complete",
      async () => {
        const res = await request(cp, "GET", `/api/v1/customer/training-jobs/${jobId}`, { headers: { "x-api-key": apiKey } });
        return ["completed", "failed"].includes(res.body["status"] as string) ? res.body : undefined;
      },
      90_000,
    );
    assert.equal(job["status"], "completed", String(job["error"]));
    const train = (await unitsOf(jobId)).find((u) => u["name"] === "train")!;
    assert.equal(train["node_id"], bigCommunity.nodeId);
  });
});
