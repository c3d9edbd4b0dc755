/**
 * Admission at job creation (src/jobs/admission.ts): a job one of whose stages no enrolled,
 * non-revoked node could ever run is refused with NO_CAPABLE_NODE (422), naming the stage and the
 * closest node's figures, and nothing is stored or charged; a job whose only capable node is offline
 * is accepted. Each test sets its own fleet: every node enrolled before it is revoked first.
 */
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { Code } from "@connectrpc/connect";
import { connectCodeOf, httpStatusOf } from "../../src/api/errors.ts";
import type { CreateJobDeps, JobRequest } from "../../src/jobs/create-job.ts";
import { createJob } from "../../src/jobs/create-job.ts";
import { FakeClock } from "../../src/platform/clock.ts";
import { defaultAgents, defaultLimits, defaultRates } from "../../src/platform/config.ts";
import { ApiError } from "../../src/platform/errors.ts";
import type { Sql } from "../../src/store/database.ts";
import { creditBalance } from "../../src/store/customers.ts";
import type { StoredCapabilities, StoredGpu, TrustLevel } from "../../src/store/nodes.ts";
import { insertNode, setNodeState } from "../../src/store/nodes.ts";
import { refusedWith } from "../support/refusals.ts";
import { creationRowCounts, describeOnEachBackend, insertCustomerWithInputs } from "../support/billing-rows.ts";

const rtx4090 = { index: 0, name: "NVIDIA GeForce RTX 4090", vramMb: 24576, computeCapability: "8.9", cudaVersion: "12.4" };
const a100 = { index: 0, name: "NVIDIA A100-SXM4-80GB", vramMb: 81920, computeCapability: "8.0", cudaVersion: "12.2" };

/** Enrolls a node (unreachable until an agent connects, like every new node) with these GPUs; returns its id. */
async function enroll(sql: Sql, gpus: StoredGpu[], trust: TrustLevel = "controlled"): Promise<string> {
  const id = randomUUID();
  const capabilities: StoredCapabilities = { cpuCores: 16, memoryMb: 65536, diskFreeMb: 500_000, gpus };
  await insertNode(sql, { id, hostname: "n", trustLevel: trust, credentialHash: `h-${id}`, capabilities }, new Date(0));
  await sql.query(`UPDATE nodes SET isolation = 'bubblewrap' WHERE id = $1`, [id]);
  return id;
}

describeOnEachBackend("job admission", (on) => {
  const deps = (): CreateJobDeps => ({
    db: on.db,
    clock: new FakeClock(),
    config: { limits: defaultLimits, rates: defaultRates, agents: defaultAgents },
    wakePlacer: () => {},
  });

  function jobRequest(inputs: { datasetId: string; packageId: string }, overrides: Partial<JobRequest> = {}): JobRequest {
    return {
      name: "big",
      datasetId: inputs.datasetId,
      trainingPackageId: inputs.packageId,
      requiredVramMb: 8000,
      requiredDiskMb: 1024,
      maxRuntimeSeconds: 600,
      sensitivity: "public",
      idempotencyKey: null,
      ...overrides,
    };
  }

  beforeEach(async () => {
    await on.db.query(`UPDATE nodes SET state = 'revoked', revoked_at = now() WHERE state <> 'revoked'`);
  });

  it("refuses a job whose train stage needs more VRAM than any node's GPU, naming the largest, and stores and charges nothing", async () => {
    const small = await enroll(on.db, [rtx4090]);
    const c = await insertCustomerWithInputs(on.db, 10_000);
    const before = await creditBalance(on.db, c.customerId);
    const error = await refusedWith(createJob(deps(), c.customerId, jobRequest(c, { requiredVramMb: 80000, idempotencyKey: "admission-key-1" })), "NO_CAPABLE_NODE");
    assert.equal(error.message, `stage "train" needs 1 GPU with 80000 MB VRAM; the largest on any node is 24576 MB (node ${small.slice(0, 8)}…, NVIDIA GeForce RTX 4090)`);
    assert.equal(error.details["stage"], "train");
    assert.deepEqual(await creationRowCounts(on.db, c.customerId), { jobs: 0, units: 0, idempotencyRecords: 0 });
    assert.equal(await creditBalance(on.db, c.customerId), before);
  });

  it("answers NO_CAPABLE_NODE with 422 on REST and failed_precondition on Connect", () => {
    assert.equal(httpStatusOf("NO_CAPABLE_NODE"), 422);
    assert.equal(connectCodeOf("NO_CAPABLE_NODE"), Code.FailedPrecondition);
  });

  it("refuses every job while no node is enrolled", async () => {
    const c = await insertCustomerWithInputs(on.db, 10_000);
    const error = await refusedWith(createJob(deps(), c.customerId, jobRequest(c)), "NO_CAPABLE_NODE");
    assert.equal(error.message, 'stage "prepare" cannot run: no node is enrolled yet');
  });

  it("accepts a job whose only capable node is enrolled but offline", async () => {
    await enroll(on.db, [rtx4090]);
    await enroll(on.db, [a100]);
    const c = await insertCustomerWithInputs(on.db, 10_000);
    const { job } = await createJob(deps(), c.customerId, jobRequest(c, { requiredVramMb: 80000 }));
    assert.equal(job.status, "queued");
    assert.equal(job.pending_reason, "");
  });

  it("does not count a revoked node", async () => {
    const revoked = await enroll(on.db, [a100]);
    await setNodeState(on.db, revoked, "revoked", new Date(0));
    await enroll(on.db, [rtx4090]);
    const c = await insertCustomerWithInputs(on.db, 10_000);
    await refusedWith(createJob(deps(), c.customerId, jobRequest(c, { requiredVramMb: 80000 })), "NO_CAPABLE_NODE");
  });

  const refusals: { name: string; request: Partial<JobRequest>; message: RegExp }[] = [
    { name: "more GPUs than any node has", request: { requiredGpuCount: 2 }, message: /^stage "train" needs 2 GPUs on one node; the most on any node is 1 \(node [0-9a-f]{8}…\)$/ },
    { name: "a GPU model no node has", request: { gpuModels: ["H100"] }, message: /^stage "train" needs 1 GPU of model H100; the nodes have NVIDIA GeForce RTX 4090$/ },
    { name: "a compute capability above every GPU's", request: { minComputeCapability: "9.0" }, message: /compute capability 9.0 or higher; the highest on any node is 8.9/ },
    { name: "a CUDA version newer than every driver's", request: { minCudaVersion: "12.8" }, message: /CUDA 12.8 or newer; the newest on any node is 12.4/ },
    { name: "more disk than any node has free", request: { requiredDiskMb: 600_000 }, message: /^stage "prepare" needs 600000 MB of disk; the most free on any node is 500000 MB/ },
  ];
  for (const tc of refusals) {
    it(`refuses a job asking for ${tc.name}`, async () => {
      await enroll(on.db, [rtx4090]);
      const c = await insertCustomerWithInputs(on.db, 10_000);
      const error = await refusedWith(createJob(deps(), c.customerId, jobRequest(c, tc.request)), "NO_CAPABLE_NODE");
      assert.match(error.message, tc.message);
    });
  }

  it("refuses a high_sensitive job when no node is trusted enough, naming the most trusted", async () => {
    const verified = await enroll(on.db, [rtx4090], "verified");
    const c = await insertCustomerWithInputs(on.db, 10_000);
    const error = await refusedWith(createJob(deps(), c.customerId, jobRequest(c, { sensitivity: "high_sensitive" })), "NO_CAPABLE_NODE");
    assert.equal(error.message, `stage "prepare" needs a node at trust controlled or higher for a high_sensitive job; the most trusted node is verified (node ${verified.slice(0, 8)}…)`);
  });

  it("leaves a refused request's Idempotency-Key unused: the same request creates the job once a capable node enrolls", async () => {
    await enroll(on.db, [rtx4090]);
    const c = await insertCustomerWithInputs(on.db, 10_000);
    const request = jobRequest(c, { requiredVramMb: 80000, idempotencyKey: "admission-retry-1" });
    await refusedWith(createJob(deps(), c.customerId, request), "NO_CAPABLE_NODE");
    await enroll(on.db, [a100]);
    const { job, replay } = await createJob(deps(), c.customerId, request);
    assert.equal(replay, false);
    assert.equal(job.status, "queued");
  });

  it("stores the GPU asks and queue timeout on the job and its gpu unit", async () => {
    await enroll(on.db, [a100, { ...a100, index: 1 }]);
    const c = await insertCustomerWithInputs(on.db, 10_000);
    const asks = { requiredGpuCount: 2, gpuModels: ["A100"], minComputeCapability: "8.0", minCudaVersion: "12.0", queueTimeoutSeconds: 600 };
    const { job } = await createJob(deps(), c.customerId, jobRequest(c, asks));
    assert.deepEqual(
      [job.required_gpu_count, job.gpu_models, job.min_compute_capability, job.min_cuda_version, job.queue_timeout_seconds],
      [2, ["A100"], "8.0", "12.0", 600],
    );
    const units = await on.db.query<{ name: string; required_gpu_count: number; gpu_models: string[]; min_compute_capability: string; min_cuda_version: string }>(
      `SELECT name, required_gpu_count, gpu_models, min_compute_capability, min_cuda_version FROM compute_units WHERE job_id = $1 ORDER BY plan_index`,
      [job.id],
    );
    assert.deepEqual(
      units.map((u) => [u.name, u.required_gpu_count, u.gpu_models, u.min_compute_capability, u.min_cuda_version]),
      [
        ["prepare", 0, [], "", ""],
        ["train", 2, ["A100"], "8.0", "12.0"],
        ["evaluate", 0, [], "", ""],
      ],
    );
  });

  const invalid: { name: string; request: Partial<JobRequest>; field: string }[] = [
    { name: "zero GPUs", request: { requiredGpuCount: 0 }, field: "required_gpu_count" },
    { name: "nine GPUs", request: { requiredGpuCount: 9 }, field: "required_gpu_count" },
    { name: "seventeen GPU models", request: { gpuModels: Array.from({ length: 17 }, (_, i) => `m${i}`) }, field: "gpu_models" },
    { name: "an empty GPU model name", request: { gpuModels: [""] }, field: "gpu_models" },
    { name: "a compute capability that is not major.minor", request: { minComputeCapability: "sm_80" }, field: "min_compute_capability" },
    { name: "a CUDA version with a patch level", request: { minCudaVersion: "12.1.0" }, field: "min_cuda_version" },
    { name: "a queue timeout under a minute", request: { queueTimeoutSeconds: 59 }, field: "queue_timeout_seconds" },
    { name: "a queue timeout over 30 days", request: { queueTimeoutSeconds: 2_592_001 }, field: "queue_timeout_seconds" },
  ];
  for (const tc of invalid) {
    it(`refuses ${tc.name} as VALIDATION_FAILED naming ${tc.field}, before reading anything`, async () => {
      const c = await insertCustomerWithInputs(on.db, 10_000);
      const error = await refusedWith(createJob(deps(), c.customerId, jobRequest(c, tc.request)), "VALIDATION_FAILED");
      assert.ok(error instanceof ApiError);
      assert.equal(error.details["field"], tc.field);
      assert.equal(httpStatusOf(error.code), 400);
    });
  }
});
