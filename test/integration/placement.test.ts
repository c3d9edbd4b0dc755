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

  it("starts nothing of a 24 GB low_sensitive job while only a 12 GB GPU and a community node are online, and says why it waits", async () => {
    // Admitted: the test fleet's reference node (enrolled, never online) could run it.
    const created = await request(cp, "POST", "/api/v1/customer/training-jobs", {
      headers: { "x-api-key": apiKey },
      body: { name: "big", dataset_id: datasetId, training_package_id: packageId, required_vram_mb: 24000, max_runtime_seconds: 600, sensitivity: "low_sensitive" },
    });
    assert.equal(created.status, 201, JSON.stringify(created.body));
    const jobId = created.body["id"] as string;
    // No online node can run train (too small, or not trusted enough): prepare is held, not run and charged.
    const job = await waitFor(
      "the job to say why it waits",
      async () => {
        const res = await request(cp, "GET", `/api/v1/customer/training-jobs/${jobId}`, { headers: { "x-api-key": apiKey } });
        return res.body["pending_reason"] !== "" ? res.body : undefined;
      },
      60_000,
    );
    assert.equal(job["status"], "queued");
    assert.match(job["pending_reason"] as string, /^stage "train" waits for a capable node to come online \(no online node can run it: it needs 1 GPU with 24000 MB VRAM; /);
    const prepare = (await unitsOf(jobId)).find((u) => u["name"] === "prepare")!;
    assert.equal(prepare["status"], "ready");
    assert.equal(prepare["node_id"], "");
    assert.match(prepare["unschedulable_reason"] as string, /held until a node that can run stage "train" of this job is online/);
    // Cancel frees the customer's active-job slot and debits nothing.
    const cancelled = await request(cp, "POST", `/api/v1/customer/training-jobs/${jobId}/cancel`, { headers: { "x-api-key": apiKey }, body: {} });
    assert.equal(cancelled.body["status"], "cancelled");
    const units = await unitsOf(jobId);
    assert.deepEqual(units.map((u) => [u["name"], u["status"], u["credits_debited"]]), [
      ["prepare", "cancelled", "0"],
      ["train", "cancelled", "0"],
      ["evaluate", "cancelled", "0"],
    ]);
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
