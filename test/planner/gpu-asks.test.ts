import assert from "node:assert/strict";
import { httpStatusOf } from "../../src/api/errors.ts";
import { ApiError } from "../../src/platform/errors.ts";
import { compareMajorMinor, gpuModelAllowed, isMajorMinor, meetsMinimum } from "../../src/planner/gpu-constraints.ts";
import { type JobSpec, planJob } from "../../src/planner/plan.ts";

function specWith(overrides: Partial<JobSpec> = {}): JobSpec {
  return { requiredVramMb: 24000, requiredDiskMb: 10000, maxRuntimeSeconds: 3600, entrypoint: "train.py", ...overrides };
}

/** A job constraining all four asks, for the narrowing cases. */
const constrainedJob: Partial<JobSpec> = { requiredGpuCount: 4, gpuModels: ["A100", "H100"], minComputeCapability: "8.0", minCudaVersion: "12.1" };

function gpuStage(extra: Record<string, unknown>): Record<string, unknown> {
  return { stages: [{ name: "prep", kind: "cpu" }, { name: "train", kind: "gpu", depends_on: ["prep"], ...extra }] };
}

describe("planJob: GPU count and constraints", () => {
  it("gives the default plan's gpu unit the job's asks and its cpu units none", () => {
    const units = planJob(specWith(constrainedJob));
    assert.deepEqual(
      units.map((u) => [u.name, u.gpuCount, u.gpuModels, u.minComputeCapability, u.minCudaVersion]),
      [
        ["prepare", 0, [], "", ""],
        ["train", 4, ["A100", "H100"], "8.0", "12.1"],
        ["evaluate", 0, [], "", ""],
      ],
    );
  });

  it("asks for one GPU of any model when the job says nothing", () => {
    const train = planJob(specWith()).find((u) => u.name === "train")!;
    assert.deepEqual([train.gpuCount, train.gpuModels, train.minComputeCapability, train.minCudaVersion], [1, [], "", ""]);
  });

  it("lets a stage narrow every ask: fewer GPUs, a model within the job's, higher minimums", () => {
    const manifest = gpuStage({ gpus: 2, gpu_models: ["NVIDIA H100 80GB"], min_compute_capability: "9.0", min_cuda_version: "12.4" });
    const train = planJob(specWith({ ...constrainedJob, manifest })).find((u) => u.name === "train")!;
    assert.deepEqual([train.gpuCount, train.gpuModels, train.minComputeCapability, train.minCudaVersion], [2, ["NVIDIA H100 80GB"], "9.0", "12.4"]);
  });

  it("lets a stage constrain what a job left open", () => {
    const train = planJob(specWith({ manifest: gpuStage({ gpu_models: ["RTX 4090"], min_cuda_version: "12.0" }) })).find((u) => u.name === "train")!;
    assert.deepEqual([train.gpuModels, train.minCudaVersion], [["RTX 4090"], "12.0"]);
  });

  it("gives every replica of a fanned-out stage the stage's asks", () => {
    const units = planJob(specWith({ requiredGpuCount: 8, manifest: gpuStage({ gpus: 8, replicas: 2 }) }));
    assert.deepEqual(units.filter((u) => u.kind === "gpu").map((u) => [u.name, u.gpuCount]), [
      ["train-0", 8],
      ["train-1", 8],
    ]);
  });

  const widening: { name: string; spec?: Partial<JobSpec>; stage: Record<string, unknown>; message: RegExp }[] = [
    { name: "more GPUs than the job's required_gpu_count", stage: { gpus: 2 }, message: /stage "train": "gpus" 2 exceeds the job's required_gpu_count 1/ },
    {
      name: "a model outside the job's gpu_models",
      spec: constrainedJob,
      stage: { gpu_models: ["RTX 4090"] },
      message: /stage "train": "gpu_models" entry "RTX 4090" is not within the job's gpu_models \(A100, H100\)/,
    },
    {
      name: "a compute capability below the job's",
      spec: constrainedJob,
      stage: { min_compute_capability: "7.5" },
      message: /stage "train": "min_compute_capability" 7.5 is below the job's min_compute_capability 8.0/,
    },
    {
      name: "a CUDA version below the job's",
      spec: constrainedJob,
      stage: { min_cuda_version: "11.8" },
      message: /stage "train": "min_cuda_version" 11.8 is below the job's min_cuda_version 12.1/,
    },
  ];
  for (const tc of widening) {
    it(`refuses a stage that widens its job: ${tc.name}`, () => {
      assert.throws(() => planJob(specWith({ ...tc.spec, manifest: gpuStage(tc.stage) })), (e: unknown) => {
        assert.ok(e instanceof ApiError);
        assert.equal(e.code, "PACKAGE_INVALID");
        assert.match(e.message, tc.message);
        return true;
      });
    });
  }

  const malformed: { name: string; manifest: unknown; message: RegExp }[] = [
    { name: "a cpu stage asking for GPUs", manifest: { stages: [{ name: "prep", kind: "cpu", gpus: 1 }] }, message: /stage "prep": a cpu stage cannot request "gpus"/ },
    { name: "a cpu stage with a model list", manifest: { stages: [{ name: "prep", kind: "cpu", gpu_models: ["A100"] }] }, message: /a cpu stage cannot request "gpu_models"/ },
    { name: "a cpu stage with a compute capability", manifest: { stages: [{ name: "prep", kind: "cpu", min_compute_capability: "8.0" }] }, message: /cannot request "min_compute_capability"/ },
    { name: "a cpu stage with a CUDA version", manifest: { stages: [{ name: "prep", kind: "cpu", min_cuda_version: "12.0" }] }, message: /cannot request "min_cuda_version"/ },
    { name: "zero GPUs", manifest: gpuStage({ gpus: 0 }), message: /stage "train": "gpus" must be an integer from 1 to 8/ },
    { name: "nine GPUs", manifest: gpuStage({ gpus: 9 }), message: /"gpus" must be an integer from 1 to 8/ },
    { name: "a model list that is not a list", manifest: gpuStage({ gpu_models: "A100" }), message: /"gpu_models" must be at most 16 GPU model names of 1 to 100 characters/ },
    { name: "a blank model name", manifest: gpuStage({ gpu_models: [" "] }), message: /"gpu_models" must be at most 16/ },
    { name: "seventeen model names", manifest: gpuStage({ gpu_models: Array.from({ length: 17 }, (_, i) => `m${i}`) }), message: /"gpu_models" must be at most 16/ },
    { name: "a compute capability that is not major.minor", manifest: gpuStage({ min_compute_capability: "8" }), message: /"min_compute_capability" must be a "major.minor" version/ },
    { name: "a CUDA version given as a number", manifest: gpuStage({ min_cuda_version: 12.1 }), message: /"min_cuda_version" must be a "major.minor" version/ },
  ];
  for (const tc of malformed) {
    it(`refuses ${tc.name} as PACKAGE_INVALID (400)`, () => {
      assert.throws(() => planJob(specWith({ requiredGpuCount: 8, manifest: tc.manifest })), (e: unknown) => {
        assert.ok(e instanceof ApiError);
        assert.equal(e.code, "PACKAGE_INVALID");
        assert.equal(httpStatusOf(e.code), 400);
        assert.match(e.message, tc.message);
        return true;
      });
    });
  }

  const badSpecs: { name: string; spec: Partial<JobSpec>; field: string }[] = [
    { name: "zero GPUs", spec: { requiredGpuCount: 0 }, field: "required_gpu_count" },
    { name: "nine GPUs", spec: { requiredGpuCount: 9 }, field: "required_gpu_count" },
    { name: "a model name of 101 characters", spec: { gpuModels: ["x".repeat(101)] }, field: "gpu_models" },
    { name: "a compute capability with a patch level", spec: { minComputeCapability: "8.0.1" }, field: "min_compute_capability" },
    { name: "a CUDA version with a letter", spec: { minCudaVersion: "v12.1" }, field: "min_cuda_version" },
  ];
  for (const tc of badSpecs) {
    it(`refuses a job spec with ${tc.name} as VALIDATION_FAILED naming ${tc.field}`, () => {
      assert.throws(() => planJob(specWith(tc.spec)), (e: unknown) => {
        assert.ok(e instanceof ApiError);
        assert.equal(e.code, "VALIDATION_FAILED");
        assert.equal(e.details["field"], tc.field);
        return true;
      });
    });
  }
});

describe("GPU constraint reading", () => {
  it("compares versions part by part as numbers", () => {
    assert.ok(compareMajorMinor("12.10", "12.9") > 0);
    assert.ok(compareMajorMinor("8.0", "7.5") > 0);
    assert.equal(compareMajorMinor("8.6", "8.6"), 0);
  });

  it("meets a minimum only with a known version at or above it", () => {
    assert.deepEqual(
      [meetsMinimum("8.6", "8.0"), meetsMinimum("7.5", "8.0"), meetsMinimum(undefined, "8.0"), meetsMinimum("garbage", "8.0"), meetsMinimum(undefined, "")],
      [true, false, false, false, true],
    );
  });

  it("reads only major.minor as a version", () => {
    assert.deepEqual(["8.0", "12.4", "8", "8.x", "v8.0", "8.0.1", ""].map(isMajorMinor), [true, true, false, false, false, false, false]);
  });

  it("matches a GPU model against an allow-list case-insensitively, as a substring", () => {
    const model = "NVIDIA GeForce RTX 4090";
    assert.deepEqual(
      [gpuModelAllowed(model, []), gpuModelAllowed(model, ["rtx 4090"]), gpuModelAllowed(model, ["A100", "4090"]), gpuModelAllowed(model, ["A100"])],
      [true, true, true, false],
    );
  });
});
