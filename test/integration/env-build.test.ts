/**
 * Build time apart from run time, end to end: a real agent (its sandbox, its pip, a local wheelhouse)
 * builds a package's requirements.txt for the first job and takes it from its cache for the second; the
 * customer's compute unit says so, and the customer is billed for the run only.
 */
import assert from "node:assert/strict";
import { chmod, mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { zipOf } from "../node-agent/helpers.ts";
import { writeWheelhouse } from "../node-agent/wheels.ts";
import type { TestAgent, TestControlPlane } from "../support/control-plane.ts";
import { createCustomer, request, startTestAgent, startTestControlPlane, uploadResource, waitFor } from "../support/control-plane.ts";

type Json = Record<string, unknown>;

describe("the Python environment's build time, through a real agent", function () {
  this.timeout(120_000);
  let cp: TestControlPlane;
  let agent: TestAgent;
  let wheelhouse: string;

  before(async () => {
    wheelhouse = await mkdtemp(join(tmpdir(), "gpu-agent-wheels-"));
    // The build runs under a user of its own: the wheelhouse must be readable by anyone.
    await chmod(wheelhouse, 0o755);
    await writeWheelhouse(wheelhouse, [{ name: "alpha_util", version: "1.0.0" }]);
    cp = await startTestControlPlane();
    agent = await startTestAgent(cp, { trustLevel: "controlled", runArgs: ["--find-links", wheelhouse] });
  });
  after(async () => {
    await agent?.stop();
    await cp?.stop();
    if (wheelhouse !== undefined) await rm(wheelhouse, { recursive: true, force: true });
  });

  /** Runs a one-stage job of a package that needs alpha_util; returns its only compute unit once the job completed. */
  async function runJob(apiKey: string, name: string): Promise<Json> {
    const auth = { "x-api-key": apiKey };
    const pkg = await zipOf({
      "train.py": "import alpha_util\nprint('alpha_util', alpha_util.VERSION, flush=True)\n",
      "requirements.txt": "alpha_util==1.0.0\n",
      "gpu-agent.json": JSON.stringify({ stages: [{ name: "train", kind: "cpu" }] }),
    });
    const dataset = await uploadResource(cp, apiKey, "datasets", `${name}-data`, Buffer.from("x,y\n1,2\n"), { format: "csv" });
    const uploaded = await uploadResource(cp, apiKey, "training-packages", `${name}-pkg`, pkg, { entrypoint: "train.py" });
    const created = await request(cp, "POST", "/api/v1/customer/training-jobs", {
      headers: auth,
      body: { name, dataset_id: dataset["id"], training_package_id: uploaded["id"], required_vram_mb: 0, required_disk_mb: 256, max_runtime_seconds: 120 },
    });
    assert.equal(created.status, 201, JSON.stringify(created.body));
    const jobId = created.body["id"] as string;
    const job = await waitFor(
      `job ${name} to end`,
      async () => {
        const body = (await request(cp, "GET", `/api/v1/customer/training-jobs/${jobId}`, { headers: auth })).body;
        return ["completed", "failed", "cancelled", "expired"].includes(body["status"] as string) ? body : undefined;
      },
      90_000,
      () => agent.output().split("\n").slice(-40).join("\n"),
    );
    assert.equal(job["status"], "completed", JSON.stringify(job));
    const units = (await request(cp, "GET", `/api/v1/customer/training-jobs/${jobId}/compute-units`, { headers: auth })).body["data"] as Json[];
    assert.equal(units.length, 1);
    return units[0]!;
  }

  it("shows the first job's build apart from its run, bills the run only, and shows no build for the second (cached)", async () => {
    const { apiKey } = await createCustomer(cp, 10_000);
    const first = await runJob(apiKey, "builds");
    assert.equal(first["env_built"], true);
    const buildSeconds = first["env_build_seconds"] as number;
    assert.ok(buildSeconds > 0, `env_build_seconds ${buildSeconds}`);
    // What was billed is the run the agent timed apart: a print, far shorter than a pip install.
    const [usage] = await cp.plane.deps.db.query<{ run_seconds: number; credits: number }>(`SELECT run_seconds, credits FROM usage_records WHERE compute_unit_id = $1`, [first["id"]]);
    assert.ok(usage !== undefined && usage.run_seconds < buildSeconds, `run ${usage?.run_seconds} s, build ${buildSeconds} s`);
    assert.equal(first["credits_debited"], String(usage.credits));

    const second = await runJob(apiKey, "cached");
    assert.deepEqual([second["env_built"], second["env_build_seconds"]], [false, 0]);
  });
});
