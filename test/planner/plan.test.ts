import assert from "node:assert/strict";
import { httpStatusOf } from "../../src/api/errors.ts";
import { ApiError } from "../../src/platform/errors.ts";
import { type JobSpec, type PlannedUnit, parseManifest, planJob } from "../../src/planner/plan.ts";

function specWith(overrides: Partial<JobSpec> = {}): JobSpec {
  return { requiredVramMb: 24000, requiredDiskMb: 10000, maxRuntimeSeconds: 3600, entrypoint: "train.py", ...overrides };
}

/** What a cpu unit asks of GPUs: nothing. */
const noGpus = { gpuCount: 0, gpuModels: [], minComputeCapability: "", minCudaVersion: "" };
/** What a gpu unit of a job that constrains nothing asks of GPUs. */
const oneGpuAnyModel = { gpuCount: 1, gpuModels: [], minComputeCapability: "", minCudaVersion: "" };

function stage(name: string, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return { name, kind: "cpu", ...extra };
}

function names(units: PlannedUnit[]): string[] {
  return units.map((u) => u.name);
}

/** Every unit comes after all the units it depends on. */
function assertTopological(units: PlannedUnit[]): void {
  const seen = new Set<string>();
  for (const unit of units) {
    for (const dep of unit.dependsOn) assert.ok(seen.has(dep), `${unit.name} comes before its dependency ${dep}`);
    seen.add(unit.name);
  }
}

describe("planJob", () => {
  it("plans prepare → train → evaluate when the package has no manifest", () => {
    const units = planJob(specWith());
    assert.deepEqual(units, [
      {
        name: "prepare",
        kind: "cpu",
        dependsOn: [],
        entrypoint: "train.py",
        args: ["--stage", "prepare"],
        vramMb: 0,
        diskMb: 10000,
        cpuCores: 1,
        memoryMb: 512,
        ...noGpus,
      },
      {
        name: "train",
        kind: "gpu",
        dependsOn: ["prepare"],
        entrypoint: "train.py",
        args: ["--stage", "train"],
        vramMb: 24000,
        diskMb: 10000,
        cpuCores: 2,
        memoryMb: 2048,
        ...oneGpuAnyModel,
      },
      {
        name: "evaluate",
        kind: "cpu",
        dependsOn: ["train"],
        entrypoint: "train.py",
        args: ["--stage", "evaluate"],
        vramMb: 0,
        diskMb: 10000,
        cpuCores: 1,
        memoryMb: 512,
        ...noGpus,
      },
    ]);
  });

  it("fans a stage out into numbered replicas and makes its dependants wait for all of them", () => {
    const units = planJob(
      specWith({
        manifest: {
          stages: [
            { name: "merge", kind: "cpu", depends_on: ["shard"], memory_mb: 8192 },
            { name: "shard", kind: "gpu", depends_on: ["prep"], replicas: 3, vram_mb: 12000, disk_mb: 4000 },
            { name: "prep", kind: "cpu", entry: "scripts/prep.py", args: ["--fast"] },
          ],
        },
      }),
    );
    assert.deepEqual(names(units), ["prep", "shard-0", "shard-1", "shard-2", "merge"]);
    assertTopological(units);
    const byName = new Map(units.map((u) => [u.name, u]));
    assert.deepEqual(byName.get("prep"), {
      name: "prep",
      kind: "cpu",
      dependsOn: [],
      entrypoint: "scripts/prep.py",
      args: ["--fast"],
      vramMb: 0,
      diskMb: 10000,
      cpuCores: 1,
      memoryMb: 512,
      ...noGpus,
    });
    assert.deepEqual(byName.get("shard-1"), {
      name: "shard-1",
      kind: "gpu",
      dependsOn: ["prep"],
      entrypoint: "train.py",
      args: ["--stage", "shard", "--replica", "1", "--replicas", "3"],
      vramMb: 12000,
      diskMb: 4000,
      cpuCores: 2,
      memoryMb: 2048,
      ...oneGpuAnyModel,
    });
    assert.deepEqual(byName.get("merge")?.dependsOn, ["shard-0", "shard-1", "shard-2"]);
    assert.equal(byName.get("merge")?.memoryMb, 8192);
  });

  it("keeps manifest order among stages that are ready at the same time", () => {
    const units = planJob(
      specWith({
        manifest: {
          stages: [
            { name: "report", kind: "cpu", depends_on: ["b", "a"] },
            { name: "b", kind: "cpu" },
            { name: "a", kind: "gpu" },
          ],
        },
      }),
    );
    assert.deepEqual(names(units), ["b", "a", "report"]);
    assert.deepEqual(units[2]?.dependsOn, ["b", "a"]);
  });

  it("keeps a stage's name when replicas is 1", () => {
    const units = planJob(specWith({ manifest: { stages: [{ name: "solo", kind: "gpu", replicas: 1 }] } }));
    assert.deepEqual(names(units), ["solo"]);
    assert.deepEqual(units[0]?.args, ["--stage", "solo"]);
  });

  it("accepts exactly 64 units after fan-out", () => {
    const stages = [stage("a", { replicas: 32 }), stage("b", { replicas: 32, depends_on: ["a"] })];
    const units = planJob(specWith({ manifest: { stages } }));
    assert.equal(units.length, 64);
    assert.equal(units[63]?.dependsOn.length, 32);
  });

  it("accepts an entry that starts with ./", () => {
    const units = planJob(specWith({ manifest: { stages: [stage("t", { entry: "./scripts/run.py" })] } }));
    assert.equal(units[0]?.entrypoint, "./scripts/run.py");
  });

  it("keeps the default plan when the manifest names only its Python version", () => {
    assert.deepEqual(planJob(specWith({ manifest: { python: "3.11" } })), planJob(specWith()));
    assert.deepEqual(parseManifest({ python: "3.11" }), { stages: [], python: "3.11" });
  });

  it("keeps the manifest's Python version beside its stages", () => {
    assert.equal(parseManifest({ python: "3.12", stages: [stage("a")] }).python, "3.12");
  });

  it("accepts overrides equal to the job's own limits", () => {
    const units = planJob(specWith({ manifest: { stages: [stage("t", { kind: "gpu", vram_mb: 24000, disk_mb: 10000 })] } }));
    assert.equal(units[0]?.vramMb, 24000);
    assert.equal(units[0]?.diskMb, 10000);
  });

  const invalid: { name: string; manifest: unknown; message: RegExp; spec?: Partial<JobSpec> }[] = [
    { name: "rejects a manifest that is not an object", manifest: [], message: /must be a JSON object/ },
    { name: "rejects a null manifest", manifest: null, message: /must be a JSON object/ },
    { name: "rejects a Python version that is not major.minor", manifest: { python: "3.11.4" }, message: /gpu-agent.json: "python" must be a Python 3 version as major.minor, like "3.11"/ },
    { name: "rejects a Python version given as a number", manifest: { python: 3.11, stages: [stage("a")] }, message: /"python" must be a Python 3 version/ },
    { name: "rejects a Python version with empty stages", manifest: { python: "3.11", stages: [] }, message: /"stages" must be a non-empty array/ },
    { name: "rejects a manifest without stages", manifest: {}, message: /"stages" must be a non-empty array/ },
    { name: "rejects an empty stage list", manifest: { stages: [] }, message: /non-empty array/ },
    { name: "rejects an unknown top-level field", manifest: { stages: [stage("a")], extra: 1 }, message: /unknown top-level field "extra"/ },
    { name: "rejects a stage that is not an object", manifest: { stages: ["a"] }, message: /stages\[0\] must be an object/ },
    { name: "rejects a stage without a name", manifest: { stages: [{ kind: "cpu" }] }, message: /stages\[0\]: "name"/ },
    { name: "rejects an upper-case stage name", manifest: { stages: [stage("Train")] }, message: /"name" must match/ },
    { name: "rejects a stage name longer than 40 characters", manifest: { stages: [stage("a".repeat(41))] }, message: /"name" must match/ },
    { name: "rejects a duplicate stage name", manifest: { stages: [stage("a"), stage("a")] }, message: /stage "a" is declared twice/ },
    { name: "rejects an unknown kind", manifest: { stages: [stage("a", { kind: "tpu" })] }, message: /stage "a": "kind" must be "cpu" or "gpu"/ },
    { name: "rejects an unknown stage field", manifest: { stages: [stage("a", { dependsOn: [] })] }, message: /stage "a": unknown field "dependsOn"/ },
    { name: "rejects a dependency on a stage that does not exist", manifest: { stages: [stage("a", { depends_on: ["b"] })] }, message: /stage "a" depends on unknown stage "b"/ },
    { name: "rejects depends_on that is not a list of names", manifest: { stages: [stage("a", { depends_on: "b" })] }, message: /stage "a": "depends_on"/ },
    { name: "rejects a stage that depends on itself", manifest: { stages: [stage("a", { depends_on: ["a"] })] }, message: /cycle: a → a/ },
    {
      name: "rejects a cycle and names it",
      manifest: { stages: [stage("x"), stage("a", { depends_on: ["c"] }), stage("b", { depends_on: ["a"] }), stage("c", { depends_on: ["b"] })] },
      message: /stages form a cycle: a → c → b → a/,
    },
    { name: "rejects zero replicas", manifest: { stages: [stage("a", { replicas: 0 })] }, message: /stage "a": "replicas" must be an integer from 1 to 32/ },
    { name: "rejects more than 32 replicas", manifest: { stages: [stage("a", { replicas: 33 })] }, message: /"replicas" must be an integer from 1 to 32/ },
    { name: "rejects fractional replicas", manifest: { stages: [stage("a", { replicas: 1.5 })] }, message: /"replicas"/ },
    {
      name: "rejects more than 64 units after fan-out",
      manifest: { stages: [stage("a", { replicas: 32 }), stage("b", { replicas: 32 }), stage("c")] },
      message: /fan out to 65 units; at most 64/,
    },
    {
      name: "rejects a stage name that collides with a replica name",
      manifest: { stages: [stage("a", { replicas: 2 }), stage("a-1")] },
      message: /stage "a-1" produces unit "a-1", which already exists/,
    },
    { name: "rejects a cpu stage that asks for VRAM", manifest: { stages: [stage("a", { vram_mb: 1000 })] }, message: /stage "a": a cpu stage cannot request "vram_mb"/ },
    {
      name: "rejects a VRAM override above the job's required_vram_mb",
      manifest: { stages: [stage("t", { kind: "gpu", vram_mb: 30000 })] },
      message: /stage "t": "vram_mb" 30000 exceeds the job's required_vram_mb 24000/,
    },
    {
      name: "rejects a disk override above the job's required_disk_mb",
      manifest: { stages: [stage("t", { disk_mb: 10001 })] },
      message: /stage "t": "disk_mb" 10001 exceeds the job's required_disk_mb 10000/,
    },
    { name: "rejects a negative VRAM override", manifest: { stages: [stage("t", { kind: "gpu", vram_mb: -1 })] }, message: /stage "t": "vram_mb"/ },
    { name: "rejects zero CPU cores", manifest: { stages: [stage("t", { cpu_cores: 0 })] }, message: /stage "t": "cpu_cores"/ },
    { name: "rejects a memory override given as a string", manifest: { stages: [stage("t", { memory_mb: "1024" })] }, message: /stage "t": "memory_mb"/ },
    { name: "rejects an entry that climbs out of the package", manifest: { stages: [stage("t", { entry: "../evil.py" })] }, message: /stage "t": "entry" must be a relative path/ },
    { name: "rejects an entry with a .. segment in the middle", manifest: { stages: [stage("t", { entry: "a/../../b.py" })] }, message: /"entry"/ },
    { name: "rejects an absolute entry", manifest: { stages: [stage("t", { entry: "/usr/bin/python" })] }, message: /"entry"/ },
    { name: "rejects a Windows-style entry", manifest: { stages: [stage("t", { entry: "C:\\x.py" })] }, message: /"entry"/ },
    { name: "rejects an entry naming a directory", manifest: { stages: [stage("t", { entry: "scripts/" })] }, message: /"entry"/ },
    { name: "rejects an empty entry", manifest: { stages: [stage("t", { entry: "" })] }, message: /"entry"/ },
    { name: "rejects args that are not strings", manifest: { stages: [stage("t", { args: ["--lr", 0.1] })] }, message: /stage "t": "args"/ },
  ];
  for (const tc of invalid) {
    it(tc.name, () => {
      assert.throws(
        () => planJob(specWith({ ...tc.spec, manifest: tc.manifest })),
        (e: unknown) => {
          assert.ok(e instanceof ApiError, `expected ApiError, got ${String(e)}`);
          assert.equal(e.code, "PACKAGE_INVALID");
          assert.equal(httpStatusOf(e.code), 400);
          assert.match(e.message, tc.message);
          return true;
        },
      );
    });
  }

  it("rejects a spec whose entrypoint leaves the package as VALIDATION_FAILED", () => {
    assert.throws(() => planJob(specWith({ entrypoint: "../x.py" })), { code: "VALIDATION_FAILED" });
  });
});

describe("parseManifest", () => {
  it("returns stages with defaults and without absent overrides", () => {
    assert.deepEqual(parseManifest({ stages: [{ name: "a", kind: "gpu", depends_on: [] }, { name: "b", kind: "cpu", depends_on: ["a", "a"] }] }), {
      stages: [
        { name: "a", kind: "gpu", dependsOn: [], replicas: 1 },
        { name: "b", kind: "cpu", dependsOn: ["a"], replicas: 1 },
      ],
    });
  });
});
