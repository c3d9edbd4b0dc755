import assert from "node:assert/strict";
import { create } from "@bufbuild/protobuf";
import { GpuSchema } from "../../src/gen/gpuagent/agent/v1/agent_pb.ts";
import {
  GPU_QUERY_FIELDS_OLD_DRIVER,
  detectCapabilities,
  detectGpus,
  parseCudaVersion,
  parseDevGpu,
  parseNvidiaSmiGpus,
  parseNvidiaSmiUsage,
  resolveGpus,
} from "../../src/node-agent/capabilities.ts";
import type { DeclaredGpu } from "../../src/node-agent/capabilities.ts";
import type { CommandRunner } from "../../src/node-agent/capabilities.ts";
import type { AgentLogger } from "../../src/node-agent/logger.ts";
import { buildUnitEnv, isSafeName, parsePasswdUser, unitPath, SYSTEM_PATH } from "../../src/node-agent/sandbox.ts";

function recordingLogger(): AgentLogger & { warnings: string[] } {
  const warnings: string[] = [];
  return {
    warnings,
    debug: () => {},
    info: () => {},
    warn: (_obj, msg) => warnings.push(msg ?? ""),
    error: () => {},
  };
}

describe("nvidia-smi parsing", () => {
  const cases: { name: string; input: string; want: { index: number; name: string; vramMb: number; uuid: string }[] }[] = [
    {
      name: "parses one GPU per row",
      input: "0, NVIDIA GeForce RTX 4090, 24564, GPU-aaaa\n1, NVIDIA A100-SXM4-80GB, 81920, GPU-bbbb\n",
      want: [
        { index: 0, name: "NVIDIA GeForce RTX 4090", vramMb: 24564, uuid: "GPU-aaaa" },
        { index: 1, name: "NVIDIA A100-SXM4-80GB", vramMb: 81920, uuid: "GPU-bbbb" },
      ],
    },
    {
      name: "keeps a name that contains a comma whole",
      input: "0, Weird, Inc. GPU, 8192, GPU-cccc",
      want: [{ index: 0, name: "Weird, Inc. GPU", vramMb: 8192, uuid: "GPU-cccc" }],
    },
    {
      name: "reads unknown memory as zero",
      input: "2, Some GPU, [N/A], GPU-dddd",
      want: [{ index: 2, name: "Some GPU", vramMb: 0, uuid: "GPU-dddd" }],
    },
    {
      name: "skips blank, short and error rows",
      input: "\nNVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver\n0, x\n\r\n",
      want: [],
    },
    {
      name: "tolerates Windows line endings",
      input: "0, GPU A, 4096, GPU-1\r\n1, GPU B, 2048, GPU-2\r\n",
      want: [
        { index: 0, name: "GPU A", vramMb: 4096, uuid: "GPU-1" },
        { index: 1, name: "GPU B", vramMb: 2048, uuid: "GPU-2" },
      ],
    },
  ];
  for (const tc of cases) {
    it(tc.name, () => {
      const got = parseNvidiaSmiGpus(tc.input, ["index", "name", "memory.total", "uuid"]).map((g) => ({ index: g.index, name: g.name, vramMb: g.vramMb, uuid: g.uuid }));
      assert.deepEqual(got, tc.want);
      assert.ok(parseNvidiaSmiGpus(tc.input, ["index", "name", "memory.total", "uuid"]).every((g) => !g.declared));
    });
  }

  // Recorded from real machines: `nvidia-smi --query-gpu=index,uuid,name,memory.total,compute_cap,driver_version --format=csv,noheader,nounits`.
  const recorded: { name: string; output: string; fields?: readonly ("index" | "uuid" | "name" | "memory.total" | "compute_cap" | "driver_version")[]; header: string; want: unknown[] }[] = [
    {
      name: "an H100 on driver 580 (CUDA 13.0)",
      output: "0, GPU-5b3c0a5e-1f0e-9f43-2a0f-3c7d0b1e8a11, NVIDIA H100 80GB HBM3, 81559, 9.0, 580.159.04\n",
      header: "| NVIDIA-SMI 580.159.04             Driver Version: 580.159.04     CUDA Version: 13.0     |\n",
      want: [{ index: 0, uuid: "GPU-5b3c0a5e-1f0e-9f43-2a0f-3c7d0b1e8a11", name: "NVIDIA H100 80GB HBM3", vramMb: 81559, computeCapability: "9.0", driverVersion: "580.159.04", cudaVersion: "13.0" }],
    },
    {
      name: "two consumer GPUs of different generations on driver 550",
      output: "0, GPU-aaaa, NVIDIA GeForce RTX 4090, 24564, 8.9, 550.54.15\n1, GPU-bbbb, NVIDIA GeForce RTX 3060, 12288, 8.6, 550.54.15\n",
      header: "| NVIDIA-SMI 550.54.15              Driver Version: 550.54.15      CUDA Version: 12.4     |\n",
      want: [
        { index: 0, uuid: "GPU-aaaa", name: "NVIDIA GeForce RTX 4090", vramMb: 24564, computeCapability: "8.9", driverVersion: "550.54.15", cudaVersion: "12.4" },
        { index: 1, uuid: "GPU-bbbb", name: "NVIDIA GeForce RTX 3060", vramMb: 12288, computeCapability: "8.6", driverVersion: "550.54.15", cudaVersion: "12.4" },
      ],
    },
    {
      name: "an old driver (470) asked without compute_cap, and a name with a comma",
      output: "0, GPU-cccc, Tesla K80, Rev. 2, 11441, 470.256.02\n",
      fields: GPU_QUERY_FIELDS_OLD_DRIVER,
      header: "| NVIDIA-SMI 470.256.02   Driver Version: 470.256.02   CUDA Version: 11.4     |\n",
      want: [{ index: 0, uuid: "GPU-cccc", name: "Tesla K80, Rev. 2", vramMb: 11441, computeCapability: "", driverVersion: "470.256.02", cudaVersion: "11.4" }],
    },
    {
      name: "fields the driver does not know read as unknown",
      output: "0, [N/A], NVIDIA A100-SXM4-40GB, [N/A], [N/A], 535.104.05\n",
      header: "no header at all\n",
      want: [{ index: 0, uuid: "", name: "NVIDIA A100-SXM4-40GB", vramMb: 0, computeCapability: "", driverVersion: "535.104.05", cudaVersion: "" }],
    },
  ];
  for (const r of recorded) {
    it(`reads every GPU detail: ${r.name}`, () => {
      const gpus = parseNvidiaSmiGpus(r.output, r.fields, parseCudaVersion(r.header));
      assert.deepEqual(
        gpus.map((g) => ({ index: g.index, uuid: g.uuid, name: g.name, vramMb: g.vramMb, computeCapability: g.computeCapability, driverVersion: g.driverVersion, cudaVersion: g.cudaVersion })),
        r.want,
      );
    });
  }

  it("reads the CUDA version from `nvidia-smi --version` too", () => {
    assert.equal(parseCudaVersion("NVIDIA-SMI version  : 580.159.04\nNVML version        : 580.159\nDRIVER version      : 580.159.04\nCUDA Version        : 13.0\n"), "13.0");
  });

  it("asks a driver that refuses compute_cap again without it", async () => {
    const asked: string[][] = [];
    const oldDriver: CommandRunner = async (file, args) => {
      asked.push([...args]);
      if (args[0]?.includes("compute_cap")) return undefined; // 'Field "compute_cap" is not a valid field to query.'
      if (args[0]?.startsWith("--query-gpu=")) return "0, GPU-k80, Tesla K80, 11441, 470.256.02\n";
      return file === "nvidia-smi" ? "| NVIDIA-SMI 470.256.02   Driver Version: 470.256.02   CUDA Version: 11.4     |\n" : undefined;
    };
    const gpus = await detectGpus(oldDriver);
    assert.deepEqual(asked, [
      ["--query-gpu=index,uuid,name,memory.total,compute_cap,driver_version", "--format=csv,noheader,nounits"],
      ["--query-gpu=index,uuid,name,memory.total,driver_version", "--format=csv,noheader,nounits"],
      [],
    ]);
    assert.deepEqual(gpus.map((g) => [g.name, g.vramMb, g.computeCapability, g.driverVersion, g.cudaVersion]), [["Tesla K80", 11441, "", "470.256.02", "11.4"]]);
  });

  it("parses usage rows with utilization as a fraction", () => {
    const got = parseNvidiaSmiUsage("0, 1024, 37\n1, [N/A], [N/A]\n");
    assert.deepEqual(
      got.map((u) => [u.index, u.vramUsedMb, u.utilization]),
      [
        [0, 1024, 0.37],
        [1, 0, 0],
      ],
    );
  });
});

describe("development GPU", () => {
  const realGpu = create(GpuSchema, { index: 0, name: "RTX", vramMb: 12288, uuid: "GPU-x" });
  const dev16g: DeclaredGpu[] = [{ name: "dev-gpu", vramMb: 16384, computeCapability: "", cudaVersion: "" }];

  const specs: { spec: string; want: DeclaredGpu | string }[] = [
    { spec: "16384", want: { name: "dev-gpu", vramMb: 16384, computeCapability: "", cudaVersion: "" } },
    { spec: "RTX 4090:24564", want: { name: "RTX 4090", vramMb: 24564, computeCapability: "", cudaVersion: "" } },
    { spec: "RTX 4090:24564:8.9", want: { name: "RTX 4090", vramMb: 24564, computeCapability: "8.9", cudaVersion: "" } },
    { spec: "NVIDIA A100:81920:8.0:12.4", want: { name: "NVIDIA A100", vramMb: 81920, computeCapability: "8.0", cudaVersion: "12.4" } },
    { spec: "0", want: "the VRAM must be a positive integer of MiB" },
    { spec: "RTX:lots", want: "the VRAM must be a positive integer of MiB" },
    { spec: ":8192", want: "the name is empty" },
    { spec: "RTX:8192:sm86", want: 'the compute capability must be "major.minor"' },
    { spec: "RTX:8192:8.6:12", want: 'the CUDA version must be "major.minor"' },
    { spec: "RTX:8192:8.6:12.4:x", want: "too many parts" },
  ];
  for (const s of specs) {
    it(`${typeof s.want === "string" ? "refuses" : "reads"} --dev-gpu ${JSON.stringify(s.spec)}`, () => {
      if (typeof s.want === "string") assert.throws(() => parseDevGpu(s.spec), (err: Error) => err.message.includes(s.want as string));
      else assert.deepEqual(parseDevGpu(s.spec), s.want);
    });
  }

  it("declares several GPUs with indexes in order and the details given", () => {
    const gpus = resolveGpus([], [parseDevGpu("RTX 4090:24564:8.9:12.4"), parseDevGpu("8192")], recordingLogger());
    assert.deepEqual(
      gpus.map((g) => [g.index, g.name, g.vramMb, g.computeCapability, g.cudaVersion, g.uuid, g.declared]),
      [
        [0, "RTX 4090", 24564, "8.9", "12.4", "", true],
        [1, "dev-gpu", 8192, "", "", "", true],
      ],
    );
  });

  it("is declared when no GPU is detected, with a loud warning", () => {
    const logger = recordingLogger();
    const gpus = resolveGpus([], dev16g, logger);
    assert.equal(gpus.length, 1);
    assert.equal(gpus[0]?.index, 0);
    assert.equal(gpus[0]?.name, "dev-gpu");
    assert.equal(gpus[0]?.vramMb, 16384);
    assert.equal(gpus[0]?.declared, true);
    assert.ok(logger.warnings.some((w) => w.includes("DEVELOPMENT GPU DECLARED") && w.includes("not for production")));
  });

  it("is ignored when a real GPU is detected", () => {
    const logger = recordingLogger();
    const gpus = resolveGpus([realGpu], dev16g, logger);
    assert.deepEqual(gpus, [realGpu]);
    assert.equal(logger.warnings.length, 1);
  });

  it("is absent without the flag", () => {
    assert.deepEqual(resolveGpus([], [], recordingLogger()), []);
  });

  it("reports the agent's unit limit as max_units, and 0 where none is told (enrollment)", async () => {
    const noSmi: CommandRunner = async (file) => (file === "python3" ? "Python 3.12.1\n" : undefined);
    assert.equal((await detectCapabilities({ dataDir: ".", maxUnits: 3, logger: recordingLogger(), run: noSmi })).maxUnits, 3);
    assert.equal((await detectCapabilities({ dataDir: ".", logger: recordingLogger(), run: noSmi })).maxUnits, 0);
  });

  it("appears in detected capabilities only when nvidia-smi finds nothing", async () => {
    const noSmi: CommandRunner = async (file) => (file === "python3" ? "Python 3.12.1\n" : undefined);
    const caps = await detectCapabilities({ dataDir: ".", devGpuMib: 8000, logger: recordingLogger(), run: noSmi });
    assert.equal(caps.gpus.length, 1);
    assert.equal(caps.gpus[0]?.declared, true);
    assert.equal(caps.pythonVersion, "3.12.1");
    assert.ok(caps.cpuCores >= 1);
    assert.ok(caps.memoryMb > 0);
    assert.ok(caps.diskFreeMb > 0);
    assert.equal(caps.os, process.platform);

    const withSmi: CommandRunner = async (file) =>
      file === "nvidia-smi" ? "0, GPU-l4, NVIDIA L4, 23034, 8.9, 550.54.15\n" : "Python 3.12.1\n";
    const real = await detectCapabilities({ dataDir: ".", devGpuMib: 8000, logger: recordingLogger(), run: withSmi });
    assert.deepEqual(
      real.gpus.map((g) => [g.name, g.vramMb, g.declared]),
      [["NVIDIA L4", 23034, false]],
    );
  });

  it("reports the version of the interpreter units run with when the operator names one", async () => {
    const asked: string[] = [];
    const run: CommandRunner = async (file) => {
      asked.push(file);
      return file === "/opt/torch/.venv/bin/python3" ? "Python 3.12.3\n" : file === "python3" ? "Python 3.9.0\n" : undefined;
    };
    const caps = await detectCapabilities({ dataDir: ".", logger: recordingLogger(), run, python: "/opt/torch/.venv/bin/python3" });
    assert.equal(caps.pythonVersion, "3.12.3");
    assert.ok(!asked.includes("python3"));
  });
});

describe("unit sandbox rules", () => {
  it("builds an environment from the fixed variables and Assign.env only", () => {
    const env = buildUnitEnv({
      path: "/usr/bin:/bin",
      workDir: "/w",
      cudaVisibleDevices: "",
      stage: "train",
      unitId: "u1",
      attempt: 2,
      jobId: "j1",
      datasetPath: "/w/dataset/d.csv",
      packageDir: "/w/package",
      inputDir: "/w/inputs",
      outputDir: "/w/output",
      extra: { LR: "0.1", GPU_AGENT_OUTPUT_DIR: "/etc", "bad name": "x", PATH: "/evil" },
    });
    assert.equal(env["LR"], "0.1");
    assert.equal(env["GPU_AGENT_OUTPUT_DIR"], "/w/output");
    assert.equal(env["PATH"], "/usr/bin:/bin");
    assert.equal(env["CUDA_VISIBLE_DEVICES"], "");
    assert.equal(env["GPU_AGENT_ATTEMPT"], "2");
    assert.equal(env["bad name"], undefined);
    assert.equal(env["HOME"], "/w");
  });

  it("gives root-run units the system PATH", () => {
    assert.equal(unitPath("/root/.pyenv/shims:/usr/bin", true), SYSTEM_PATH);
    assert.equal(unitPath("/home/me/bin:/usr/bin", false), "/home/me/bin:/usr/bin");
  });

  it("finds nobody in passwd text", () => {
    const passwd = "root:x:0:0:root:/root:/bin/bash\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n";
    assert.deepEqual(parsePasswdUser(passwd, "nobody"), { uid: 65534, gid: 65534 });
    assert.equal(parsePasswdUser(passwd, "ghost"), undefined);
  });

  const names: [string, boolean][] = [
    ["dataset.csv", true],
    ["my data.csv", true],
    ["..", false],
    [".hidden", false],
    ["a/b", false],
    ["a\\b", false],
    ["", false],
    ["x\u0000y", false],
  ];
  for (const [name, ok] of names) {
    it(`${ok ? "accepts" : "refuses"} the file name ${JSON.stringify(name)}`, () => {
      assert.equal(isSafeName(name), ok);
    });
  }
});
