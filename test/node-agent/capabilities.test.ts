import assert from "node:assert/strict";
import { create } from "@bufbuild/protobuf";
import { GpuSchema } from "../../src/gen/gpuagent/agent/v1/agent_pb.ts";
import {
  detectCapabilities,
  parseNvidiaSmiGpus,
  parseNvidiaSmiUsage,
  resolveGpus,
} from "../../src/node-agent/capabilities.ts";
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
      const got = parseNvidiaSmiGpus(tc.input).map((g) => ({ index: g.index, name: g.name, vramMb: g.vramMb, uuid: g.uuid }));
      assert.deepEqual(got, tc.want);
      assert.ok(parseNvidiaSmiGpus(tc.input).every((g) => !g.declared));
    });
  }

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

  it("is declared when no GPU is detected, with a loud warning", () => {
    const logger = recordingLogger();
    const gpus = resolveGpus([], 16384, logger);
    assert.equal(gpus.length, 1);
    assert.equal(gpus[0]?.index, 0);
    assert.equal(gpus[0]?.name, "dev-gpu");
    assert.equal(gpus[0]?.vramMb, 16384);
    assert.equal(gpus[0]?.declared, true);
    assert.ok(logger.warnings.some((w) => w.includes("DEVELOPMENT GPU DECLARED") && w.includes("not for production")));
  });

  it("is ignored when a real GPU is detected", () => {
    const logger = recordingLogger();
    const gpus = resolveGpus([realGpu], 16384, logger);
    assert.deepEqual(gpus, [realGpu]);
    assert.equal(logger.warnings.length, 1);
  });

  it("is absent without the flag", () => {
    assert.deepEqual(resolveGpus([], undefined, recordingLogger()), []);
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
      file === "nvidia-smi" ? "0, NVIDIA L4, 23034, GPU-l4\n" : "Python 3.12.1\n";
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
