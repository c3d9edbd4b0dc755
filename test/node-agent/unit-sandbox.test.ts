/**
 * The sandbox around every unit (src/node-agent/unit-sandbox.ts, unit-limits.ts): first its command
 * line, table-driven, without starting anything; then its walls, tried from inside real sandboxes
 * started by the real runner (bubblewrap, as the agent runs in CI: root).
 */
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { randomUUID } from "node:crypto";
import { existsSync, statSync } from "node:fs";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import net from "node:net";
import type { AddressInfo } from "node:net";
import os from "node:os";
import path from "node:path";
import { create } from "@bufbuild/protobuf";
import type { MessageInitShape } from "@bufbuild/protobuf";
import { AssignSchema, CancelSchema, InputFileSchema, Outcome, UnitRefSchema } from "../../src/gen/gpuagent/agent/v1/agent_pb.ts";
import type { Finished } from "../../src/gen/gpuagent/agent/v1/agent_pb.ts";
import { prepareIsolation } from "../../src/node-agent/capabilities.ts";
import { silentLogger } from "../../src/node-agent/logger.ts";
import { createUnitRunner } from "../../src/node-agent/runner.ts";
import type { UnitRunner, UnitRunnerOptions } from "../../src/node-agent/runner.ts";
import type { AgentMessageBody } from "../../src/node-agent/session.ts";
import { CpuAllocator, allowedCpus, detectDelegatedCgroup, parseCpuList } from "../../src/node-agent/unit-limits.ts";
import { seccompFilter } from "../../src/node-agent/seccomp-filter.ts";
import {
  SANDBOX_OPTIONS_FD,
  SANDBOX_SECCOMP_FD,
  UnitUidAllocator,
  bubblewrapArgs,
  bubblewrapLaunch,
  cpuListText,
  nvidiaControlDevices,
  nvidiaGpuNodes,
  parseNvidiaGpuInformation,
  prepareSandboxHost,
  probeSandbox,
} from "../../src/node-agent/unit-sandbox.ts";
import type { BubblewrapLaunch, SandboxHost, UnitIsolation, UnitSandboxSpec } from "../../src/node-agent/unit-sandbox.ts";
import { systemClock } from "../../src/platform/clock.ts";
import { processesOfUid, sha256, startBlobServer, waitFor, zipOf } from "./helpers.ts";
import type { BlobServer } from "./helpers.ts";

const MIB = 1024 * 1024;

const rootHost: SandboxHost = {
  asRoot: true,
  tools: { bwrap: "/usr/bin/bwrap", setpriv: "/usr/bin/setpriv", prlimit: "/usr/bin/prlimit", taskset: "/usr/bin/taskset", env: "/usr/bin/env", sh: "/usr/bin/dash" },
  system: [
    { kind: "ro-bind", source: "/usr", dest: "/usr" },
    { kind: "symlink", target: "usr/lib", dest: "/lib" },
    { kind: "ro-bind", source: "/opt/venv", dest: "/opt/venv" },
  ],
  python: "/opt/venv/bin/python3",
  path: "/opt/venv/bin:/usr/bin:/bin",
  nvidiaControlDevices: ["/dev/nvidiactl", "/dev/nvidia-uvm"],
  setsHostname: true,
};
const userHost: SandboxHost = { ...rootHost, asRoot: false };

const spec = (extra: Partial<UnitSandboxSpec> = {}): UnitSandboxSpec => ({
  workDir: "/var/lib/gpu-agent/work/u-1",
  etcDir: "/var/lib/gpu-agent/work/u-1.etc",
  uid: 2130706433,
  command: "/opt/venv/bin/python3",
  args: ["/unit/package/train.py", "--epochs", "3"],
  env: { PATH: "/opt/venv/bin:/usr/bin", HOME: "/unit", LD_PRELOAD: "/unit/package/evil.so" },
  gpuDevices: [],
  memoryMb: 0,
  diskMb: 0,
  maxProcesses: 4096,
  ...extra,
});

/** The `n` arguments after each occurrence of `flag` (before the command). */
function occurrences(args: readonly string[], flag: string, n: number): string[][] {
  const end = args.indexOf("--");
  const found: string[][] = [];
  args.slice(0, end).forEach((a, i) => {
    if (a === flag) found.push(args.slice(i + 1, i + 1 + n) as string[]);
  });
  return found;
}

/** The command chain bwrap runs (after its own options). */
const chain = (args: readonly string[]) => args.slice(args.indexOf("--") + 1);

describe("unit sandbox: the bubblewrap command line", () => {
  for (const [name, host] of [
    ["root", rootHost],
    ["an unprivileged user", userHost],
  ] as const) {
    it(`gives the unit its own PID, network, IPC, UTS namespaces, /proc and /dev, ending with the agent (agent run by ${name})`, () => {
      const args = bubblewrapArgs(host, spec());
      for (const flag of ["--unshare-pid", "--unshare-net", "--unshare-ipc", "--unshare-uts", "--die-with-parent", "--new-session", "--clearenv"]) {
        assert.ok(args.slice(0, args.indexOf("--")).includes(flag), flag);
      }
      assert.deepEqual(occurrences(args, "--hostname", 1), [["gpu-agent-unit"]]);
      assert.deepEqual(occurrences(args, "--proc", 1), [["/proc"]]);
      assert.deepEqual(occurrences(args, "--dev", 1), [["/dev"]]);
    });
  }

  it("as root: no user namespace; setpriv drops to the unit's uid with no capabilities before the unit's code runs", () => {
    const args = bubblewrapArgs(rootHost, spec());
    assert.ok(!args.includes("--unshare-user"));
    const steps = chain(args);
    const setpriv = steps.indexOf("/usr/bin/setpriv");
    assert.deepEqual(steps.slice(setpriv, setpriv + 10), [
      "/usr/bin/setpriv",
      "--reuid",
      "2130706433",
      "--regid",
      "2130706433",
      "--clear-groups",
      "--inh-caps=-all",
      "--bounding-set=-all",
      "--no-new-privs",
      "--",
    ]);
  });

  it("as another user: a user namespace maps the unit's own uid, nested namespaces off", () => {
    const args = bubblewrapArgs(userHost, spec());
    assert.deepEqual(args.slice(0, 6), ["--unshare-user", "--uid", "2130706433", "--gid", "2130706433", "--disable-userns"]);
    const steps = chain(args);
    assert.ok(!steps.includes("--reuid"));
    assert.deepEqual(steps.slice(steps.indexOf("/usr/bin/setpriv"), steps.indexOf("/usr/bin/setpriv") + 3), ["/usr/bin/setpriv", "--no-new-privs", "--"]);
  });

  it("hands the unit's environment over only in the last step, after the uid drop, so LD_PRELOAD never reaches a privileged program", () => {
    const steps = chain(bubblewrapArgs(rootHost, spec()));
    const env = steps.indexOf("/usr/bin/env");
    assert.ok(env > steps.indexOf("/usr/bin/setpriv") && env > steps.indexOf("/usr/bin/prlimit"));
    assert.deepEqual(steps.slice(env), [
      "/usr/bin/env",
      "-i",
      "PATH=/opt/venv/bin:/usr/bin",
      "HOME=/unit",
      "LD_PRELOAD=/unit/package/evil.so",
      "/opt/venv/bin/python3",
      "/unit/package/train.py",
      "--epochs",
      "3",
    ]);
    assert.equal(occurrences(bubblewrapArgs(rootHost, spec()), "--setenv", 2).length, 0);
  });

  const mounts: { dest: string; flag: "--bind" | "--ro-bind"; source: string }[] = [
    { dest: "/unit", flag: "--bind", source: "/var/lib/gpu-agent/work/u-1" },
    { dest: "/unit/package", flag: "--ro-bind", source: "/var/lib/gpu-agent/work/u-1/package" },
    { dest: "/unit/dataset", flag: "--ro-bind", source: "/var/lib/gpu-agent/work/u-1/dataset" },
    { dest: "/unit/inputs", flag: "--ro-bind", source: "/var/lib/gpu-agent/work/u-1/inputs" },
    { dest: "/unit/output", flag: "--bind", source: "/var/lib/gpu-agent/work/u-1/output" },
    { dest: "/etc/passwd", flag: "--ro-bind", source: "/var/lib/gpu-agent/work/u-1.etc/passwd" },
    { dest: "/usr", flag: "--ro-bind", source: "/usr" },
    { dest: "/opt/venv", flag: "--ro-bind", source: "/opt/venv" },
  ];
  for (const m of mounts) {
    it(`mounts ${m.source} at ${m.dest} ${m.flag === "--bind" ? "writable" : "read-only"}`, () => {
      const args = bubblewrapArgs(rootHost, spec());
      const at = [...occurrences(args, "--bind", 2), ...occurrences(args, "--ro-bind", 2)].filter(([, dest]) => dest === m.dest);
      assert.deepEqual(at, [[m.source, m.dest]]);
      assert.ok(occurrences(args, m.flag, 2).some(([s, d]) => s === m.source && d === m.dest));
    });
  }

  const checkpointMounts: { name: string; checkpointDirs: boolean | undefined; expected: string[][] }[] = [
    {
      name: "a unit's run gets its checkpoint directory writable and the checkpoint it resumes from read-only",
      checkpointDirs: true,
      expected: [
        ["--bind", "/var/lib/gpu-agent/work/u-1/checkpoints", "/unit/checkpoints"],
        ["--ro-bind", "/var/lib/gpu-agent/work/u-1/resume", "/unit/resume"],
      ],
    },
    { name: "a build step gets neither checkpoint directory", checkpointDirs: undefined, expected: [] },
  ];
  for (const c of checkpointMounts) {
    it(c.name, () => {
      const args = bubblewrapArgs(rootHost, spec(c.checkpointDirs === undefined ? {} : { checkpointDirs: c.checkpointDirs }));
      const mounted = (["--bind", "--ro-bind"] as const).flatMap((flag) => occurrences(args, flag, 2).map(([source, dest]) => [flag, source!, dest!]));
      assert.deepEqual(
        mounted.filter(([, , dest]) => dest === "/unit/checkpoints" || dest === "/unit/resume"),
        c.expected,
      );
    });
  }

  it("mounts nothing else of the data directory than the unit's own work and etc directories", () => {
    const args = bubblewrapArgs(rootHost, spec());
    const fromDataDir = args.filter((a) => a.startsWith("/var/lib/gpu-agent"));
    assert.ok(fromDataDir.every((a) => a.startsWith("/var/lib/gpu-agent/work/u-1/") || a === "/var/lib/gpu-agent/work/u-1" || a.startsWith("/var/lib/gpu-agent/work/u-1.etc/")));
  });

  const devices: { name: string; host: SandboxHost; gpuDevices: string[]; bound: string[][]; sys: string[][] }[] = [
    {
      name: "a CPU unit gets no GPU device, no NVIDIA control device and only the CPU topology of /sys",
      host: rootHost,
      gpuDevices: [],
      bound: [],
      sys: [
        ["/sys/devices/system/cpu", "/sys/devices/system/cpu"],
        ["/sys/devices/system/node", "/sys/devices/system/node"],
      ],
    },
    {
      name: "a GPU unit gets its GPU's device and the NVIDIA control devices, nothing of the other GPUs",
      host: rootHost,
      gpuDevices: ["/dev/nvidia1"],
      bound: [
        ["/dev/nvidia1", "/dev/nvidia1"],
        ["/dev/nvidiactl", "/dev/nvidiactl"],
        ["/dev/nvidia-uvm", "/dev/nvidia-uvm"],
      ],
      sys: [["/sys", "/sys"]],
    },
    {
      name: "a unit on two GPUs gets both devices, the control devices and the capability devices, from the host's device directory",
      host: { ...rootHost, devRoot: "/srv/fake-dev", nvidiaControlDevices: ["/dev/nvidiactl", "/dev/nvidia-uvm", "/dev/nvidia-caps/nvidia-cap1"] },
      gpuDevices: ["/dev/nvidia0", "/dev/nvidia3"],
      bound: [
        ["/srv/fake-dev/nvidia0", "/dev/nvidia0"],
        ["/srv/fake-dev/nvidia3", "/dev/nvidia3"],
        ["/srv/fake-dev/nvidiactl", "/dev/nvidiactl"],
        ["/srv/fake-dev/nvidia-uvm", "/dev/nvidia-uvm"],
        ["/srv/fake-dev/nvidia-caps/nvidia-cap1", "/dev/nvidia-caps/nvidia-cap1"],
      ],
      sys: [["/sys", "/sys"]],
    },
  ];
  for (const d of devices) {
    it(d.name, () => {
      const args = bubblewrapArgs(d.host, spec({ gpuDevices: d.gpuDevices }));
      assert.deepEqual(occurrences(args, "--dev-bind", 2), d.bound);
      const sys = [...occurrences(args, "--ro-bind", 2), ...occurrences(args, "--ro-bind-try", 2)].filter(([, dest]) => dest?.startsWith("/sys"));
      assert.deepEqual(sys, d.sys);
    });
  }

  it("finds the NVIDIA control and capability devices that exist in the host's device directory", async () => {
    const devRoot = await mkdtemp(path.join(os.tmpdir(), "fake-dev-"));
    try {
      for (const name of ["nvidiactl", "nvidia-uvm", "nvidia0", "nvidia1", "null"]) await writeFile(path.join(devRoot, name), "");
      await mkdir(path.join(devRoot, "nvidia-caps"));
      for (const name of ["nvidia-cap2", "nvidia-cap1"]) await writeFile(path.join(devRoot, "nvidia-caps", name), "");
      assert.deepEqual(await nvidiaControlDevices(devRoot), ["/dev/nvidiactl", "/dev/nvidia-uvm", "/dev/nvidia-caps/nvidia-cap1", "/dev/nvidia-caps/nvidia-cap2"]);
      assert.deepEqual(await nvidiaControlDevices(path.join(devRoot, "none")), []);
    } finally {
      await rm(devRoot, { recursive: true, force: true });
    }
  });

  const limits: { name: string; extra: Partial<UnitSandboxSpec>; tmpfsBytes: number; prlimit: string[] }[] = [
    { name: "no declared memory, disk or cores", extra: {}, tmpfsBytes: 1024 * MIB, prlimit: ["--nproc=4096"] },
    { name: "memory_mb sizes /tmp and /dev/shm", extra: { memoryMb: 2048 }, tmpfsBytes: 2048 * MIB, prlimit: ["--nproc=4096"] },
    { name: "disk_mb bounds every file", extra: { diskMb: 100 }, tmpfsBytes: 1024 * MIB, prlimit: ["--nproc=4096", `--fsize=${100 * MIB}`] },
    { name: "the process bound", extra: { maxProcesses: 64 }, tmpfsBytes: 1024 * MIB, prlimit: ["--nproc=64"] },
  ];
  for (const l of limits) {
    it(`sets the limits: ${l.name}`, () => {
      const args = bubblewrapArgs(rootHost, spec(l.extra));
      const tmpfs = occurrences(args, "--size", 3).map(([size, , dest]) => [size, dest]);
      assert.deepEqual(tmpfs, [
        [String(l.tmpfsBytes), "/tmp"],
        [String(l.tmpfsBytes), "/dev/shm"],
      ]);
      const steps = chain(args);
      assert.deepEqual(steps.slice(1, steps.indexOf("--")), l.prlimit);
      assert.equal(steps[0], "/usr/bin/prlimit");
      assert.ok(!steps.includes("/usr/bin/taskset"), "the filter inside would refuse taskset; the pin is set outside");
    });
  }

  it("makes the directories on the way to a mount 0755, so a private parent on the host does not lock the unit out", () => {
    const args = bubblewrapArgs(rootHost, spec({ readOnly: [{ source: "/root/envs/abc", dest: "/root/envs/abc" }] }));
    assert.deepEqual(occurrences(args, "--dir", 1).flat(), ["/opt", "/root", "/root/envs"]);
    assert.ok(occurrences(args, "--perms", 2).some(([mode, flag]) => mode === "0755" && flag === "--dir"));
  });

  const hostNames: { name: string; host: SandboxHost; hostname: string[][] }[] = [
    { name: "names the sandbox gpu-agent-unit, in a UTS namespace of its own", host: rootHost, hostname: [["gpu-agent-unit"]] },
    { name: "names nothing where the probe found sethostname refused (a container's seccomp), the UTS namespace still its own", host: { ...rootHost, setsHostname: false }, hostname: [] },
    { name: "names nothing where sethostname is refused, as an unprivileged user too", host: { ...userHost, setsHostname: false }, hostname: [] },
  ];
  for (const h of hostNames) {
    it(h.name, () => {
      const args = bubblewrapArgs(h.host, spec());
      assert.deepEqual(occurrences(args, "--hostname", 1), h.hostname);
      // The namespaces do not depend on the name.
      for (const flag of ["--unshare-pid", "--unshare-net", "--unshare-ipc", "--unshare-uts"]) assert.ok(args.slice(0, args.indexOf("--")).includes(flag), flag);
    });
  }

  it("asks bwrap for its JSON status on the given descriptor", () => {
    assert.deepEqual(bubblewrapArgs(rootHost, spec({ statusFd: 3 })).slice(0, 2), ["--json-status-fd", "3"]);
    assert.ok(!bubblewrapArgs(rootHost, spec()).includes("--json-status-fd"));
  });
});

describe("unit sandbox: how bwrap is started, showing its init's command line to no one", () => {
  const inputOf = (launch: BubblewrapLaunch, fd: number) => launch.inputs.find((i) => i.fd === fd)?.data.toString("utf8");

  for (const [name, host] of [
    ["root", rootHost],
    ["an unprivileged user", userHost],
  ] as const) {
    it(`puts neither a host path nor the unit's environment on bwrap's command line, the same for every unit (agent run by ${name})`, () => {
      const launch = bubblewrapLaunch(host, spec({ statusFd: 3 }));
      assert.deepEqual(launch.args, ["--args", String(SANDBOX_OPTIONS_FD), "--", "/usr/bin/dash", "-s"]);
      assert.deepEqual(bubblewrapLaunch(host, spec({ uid: 2130706434, workDir: "/elsewhere/u-2", env: { OTHER: "1" } })).args, launch.args);
    });

    it(`hands bwrap its options, NUL-separated, on descriptor ${SANDBOX_OPTIONS_FD} (agent run by ${name})`, () => {
      const args = bubblewrapArgs(host, spec({ statusFd: 3 }));
      const options = inputOf(bubblewrapLaunch(host, spec({ statusFd: 3 })), SANDBOX_OPTIONS_FD);
      assert.deepEqual(options?.split("\0"), [...args.slice(0, args.indexOf("--")), ""]);
    });
  }

  it("hands the chain to a shell on stdin, each word quoted, stdin then /dev/null and the status descriptor closed", () => {
    const launch = bubblewrapLaunch(rootHost, spec({ statusFd: 3, args: ["it's", "$(id)"], env: { NOTE: "a 'quoted'\nline" } }));
    const script = inputOf(launch, 0) ?? "";
    assert.ok(script.startsWith("exec '/usr/bin/prlimit' '--nproc=4096' '--' "), script);
    assert.ok(script.endsWith(` '/usr/bin/env' '-i' 'NOTE=a '\\''quoted'\\''\nline' '/opt/venv/bin/python3' 'it'\\''s' '$(id)' </dev/null 3>&-\n`), script);
    assert.ok(!(inputOf(bubblewrapLaunch(rootHost, spec()), 0) ?? "").includes(">&-"), "no status descriptor, none to close");
  });

  const pins: { name: string; cpus: number[] | undefined; command: string; prefix: string[] }[] = [
    { name: "starts bwrap itself for a unit on all CPUs", cpus: undefined, command: "/usr/bin/bwrap", prefix: [] },
    { name: "starts bwrap itself when no CPU is named", cpus: [], command: "/usr/bin/bwrap", prefix: [] },
    { name: "pins a unit to its CPUs from outside: taskset sets the affinity and execs bwrap", cpus: [0, 1, 3], command: "/usr/bin/taskset", prefix: ["--cpu-list", "0-1,3", "/usr/bin/bwrap"] },
  ];
  for (const p of pins) {
    it(p.name, () => {
      const launch = bubblewrapLaunch(rootHost, spec(p.cpus === undefined ? {} : { cpus: p.cpus }));
      assert.equal(launch.command, p.command);
      assert.deepEqual(launch.args, [...p.prefix, "--args", String(SANDBOX_OPTIONS_FD), "--", "/usr/bin/dash", "-s"]);
    });
  }

  const filters: { name: string; host: SandboxHost; cpus?: number[]; filter: Buffer | undefined }[] = [
    { name: "no filter where the host has no seccomp table", host: rootHost, filter: undefined },
    { name: "the filter of the host's architecture, affinity changes allowed for a unit on all CPUs", host: { ...rootHost, seccompArch: "x64" }, filter: seccompFilter({ arch: "x64", denyAffinityChange: false }) },
    { name: "the filter refusing affinity changes for a pinned unit", host: { ...rootHost, seccompArch: "arm64" }, cpus: [1], filter: seccompFilter({ arch: "arm64", denyAffinityChange: true }) },
    { name: "the filter for an unprivileged agent's units too", host: { ...userHost, seccompArch: "x64" }, cpus: [0], filter: seccompFilter({ arch: "x64", denyAffinityChange: true }) },
  ];
  for (const f of filters) {
    it(`hands bwrap ${f.name}, on descriptor ${SANDBOX_SECCOMP_FD}`, () => {
      const launch = bubblewrapLaunch(f.host, spec(f.cpus === undefined ? {} : { cpus: f.cpus }));
      assert.deepEqual(launch.inputs.find((i) => i.fd === SANDBOX_SECCOMP_FD)?.data, f.filter);
      const options = inputOf(launch, SANDBOX_OPTIONS_FD)?.split("\0") ?? [];
      const at = options.indexOf("--seccomp");
      assert.deepEqual(at < 0 ? undefined : options[at + 1], f.filter === undefined ? undefined : String(SANDBOX_SECCOMP_FD));
    });
  }

  it("refuses an argument with a NUL, which would split into two", () => {
    assert.throws(() => bubblewrapLaunch(rootHost, spec({ args: ["a\0--bind"] })), /NUL/);
  });
});

describe("unit sandbox: GPU device numbers from the NVIDIA driver", () => {
  const cases: { name: string; text: string; expected: { uuid: string; minor: number } | undefined }[] = [
    {
      name: "an H100's information file",
      text: "Model: \t\t NVIDIA H100 80GB HBM3\nIRQ:   \t\t 0\nGPU UUID: \t GPU-5d3a6e1c-1111-2222-3333-444455556666\nVideo BIOS: \t 96.00.99.00.01\nBus Type: \t PCIe\nDMA Size: \t 52 bits\nDevice Minor: \t 3\nGPU Excluded:\t No\n",
      expected: { uuid: "GPU-5d3a6e1c-1111-2222-3333-444455556666", minor: 3 },
    },
    { name: "no minor number", text: "GPU UUID: \t GPU-1\n", expected: undefined },
    { name: "no UUID", text: "Device Minor: \t 0\n", expected: undefined },
    { name: "a minor that is not a number", text: "GPU UUID: \t GPU-1\nDevice Minor: \t ?\n", expected: undefined },
  ];
  for (const c of cases) {
    it(`reads ${c.name}`, () => assert.deepEqual(parseNvidiaGpuInformation(c.text), c.expected));
  }

  it("reads every GPU of the driver's directory, skipping what it cannot read", async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), "gpu-agent-nvidia-"));
    try {
      for (const [bus, text] of [
        ["0000:17:00.0", "GPU UUID: GPU-a\nDevice Minor: 0\n"],
        ["0000:65:00.0", "GPU UUID: GPU-b\nDevice Minor: 1\n"],
        ["0000:ca:00.0", "garbage\n"],
      ] as const) {
        await mkdir(path.join(dir, bus));
        await writeFile(path.join(dir, bus, "information"), text);
      }
      const nodes = await nvidiaGpuNodes(dir);
      assert.deepEqual(
        nodes.sort((a, b) => a.minor - b.minor),
        [
          { uuid: "GPU-a", minor: 0 },
          { uuid: "GPU-b", minor: 1 },
        ],
      );
      assert.deepEqual(await nvidiaGpuNodes(path.join(dir, "absent")), []);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe("unit limits: CPUs, user ids and cgroups", () => {
  const lists: [string, number[]][] = [
    ["0", [0]],
    ["0-3", [0, 1, 2, 3]],
    ["0-1,4,6-7", [0, 1, 4, 6, 7]],
    ["", []],
  ];
  for (const [text, cpus] of lists) {
    it(`reads and writes the CPU list "${text}"`, () => {
      assert.deepEqual(parseCpuList(text), cpus);
      assert.equal(cpuListText(cpus), text);
    });
  }

  it("gives concurrent units different CPUs while there are enough, and none to a unit asking for all or none", () => {
    const cpus = new CpuAllocator([0, 1, 2, 3]);
    const first = cpus.take(2);
    const second = cpus.take(2);
    assert.deepEqual(first, [0, 1]);
    assert.deepEqual(second, [2, 3]);
    assert.equal(cpus.take(4), undefined);
    assert.equal(cpus.take(0), undefined);
    cpus.release(first);
    assert.deepEqual(cpus.take(1), [0]);
  });

  it("never gives two running units the same uid, and does not reuse one right after its unit ended", () => {
    const uids = new UnitUidAllocator(5000, 4);
    const a = uids.take();
    const b = uids.take();
    assert.notEqual(a, b);
    uids.release(a);
    assert.deepEqual([uids.take(), uids.take()], [5002, 5003]);
    assert.equal(uids.take(), a);
    assert.throws(() => uids.take(), /all 4 unit user ids are in use/);
  });

  /** A cgroup file system laid out in a temporary directory. */
  async function fakeCgroupFs(files: Record<string, string>): Promise<string> {
    const dir = await mkdtemp(path.join(os.tmpdir(), "gpu-agent-cgroup-"));
    for (const [name, text] of Object.entries(files)) {
      await mkdir(path.dirname(path.join(dir, name)), { recursive: true });
      await writeFile(path.join(dir, name), text);
    }
    return dir;
  }
  const cgroupCases: { name: string; files: Record<string, string>; self: string; expected: RegExp | "delegated" }[] = [
    { name: "cgroup v1 (this machine's kind)", files: { "memory/tasks": "" }, self: "4:memory:/x\n0::/\n", expected: /no cgroup v2 hierarchy/ },
    {
      name: "a delegated service cgroup",
      files: {
        "cgroup.controllers": "cpuset cpu io memory pids",
        "system.slice/gpu-agent.service/cgroup.controllers": "cpu memory pids",
        "system.slice/gpu-agent.service/cgroup.procs": "",
        "system.slice/gpu-agent.service/cgroup.subtree_control": "",
      },
      self: "0::/system.slice/gpu-agent.service\n",
      expected: "delegated",
    },
    {
      name: "a cgroup without the memory controller",
      files: { "cgroup.controllers": "cpu memory pids", "user.slice/cgroup.controllers": "cpu pids" },
      self: "0::/user.slice\n",
      expected: /offers no memory controller .*Delegate=yes/,
    },
  ];
  for (const c of cgroupCases) {
    it(`detects ${c.name}`, async () => {
      const root = await fakeCgroupFs(c.files);
      try {
        await writeFile(path.join(root, "self"), c.self);
        const found = await detectDelegatedCgroup(root, path.join(root, "self"));
        if (c.expected === "delegated") assert.deepEqual(found, { kind: "delegated", dir: path.join(root, "system.slice/gpu-agent.service") });
        else assert.match(found.kind === "none" ? found.reason : "delegated", c.expected);
      } finally {
        await rm(root, { recursive: true, force: true });
      }
    });
  }
});

/** A unit script that reports what it can reach, as JSON on one line. */
const WALLS_PY = `
import json, os, socket
def attempt(fn):
    try:
        fn()
        return "ok"
    except OSError as e:
        return type(e).__name__ + ":" + str(e.errno)
def write(p):
    with open(p, "w") as f:
        f.write("x")
def connect(port):
    socket.create_connection(("127.0.0.1", port), timeout=3).close()
data_dir = os.environ["PROBE_DATA_DIR"]
report = {
    "uid": os.getuid(),
    "pid": os.getpid(),
    "proc": sorted(int(p) for p in os.listdir("/proc") if p.isdigit()),
    "write_package": attempt(lambda: write("/unit/package/new.txt")),
    "write_dataset": attempt(lambda: write("/unit/dataset/d.csv")),
    "write_output": attempt(lambda: write("/unit/output/made.txt")),
    "write_home": attempt(lambda: write("/unit/made.txt")),
    "write_tmp": attempt(lambda: write("/tmp/made.txt")),
    "write_usr": attempt(lambda: write("/usr/made.txt")),
    "connect_host_listener": attempt(lambda: connect(int(os.environ["PROBE_PORT"]))),
    "connect_outside": attempt(lambda: socket.create_connection(("192.0.2.1", 80), timeout=3).close()),
    "data_dir_visible": os.path.exists(data_dir),
    "node_json_visible": os.path.exists(os.path.join(data_dir, "node.json")),
    "home_dirs": sorted(os.listdir("/home")) if os.path.isdir("/home") else None,
    "root_dir": sorted(os.listdir("/root")) if os.path.isdir("/root") else None,
    "hostname": socket.gethostname(),
    "devices": sorted(os.listdir("/dev")),
}
print("walls " + json.dumps(report), flush=True)
`;

/** Double-forks a setsid sleeper that would outlive its unit, reports its uid, then ends or waits forever. */
const SURVIVOR_PY = `
import os, sys, time
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        time.sleep(120)
        os._exit(0)
    os._exit(0)
print(f"uid {os.getuid()}", flush=True)
if sys.argv[1:] == ["wait"]:
    time.sleep(120)
`;

/** Writes every command line and environment it can read in /proc, with its own arguments and NOTE, into its output. */
const COMMAND_LINES_PY = `
import json, os, sys
def read(path):
    try:
        with open(path, "rb") as f:
            return f.read().decode("utf-8", "replace")
    except OSError as e:
        return type(e).__name__
processes = {p: {"cmdline": read("/proc/%s/cmdline" % p), "environ": read("/proc/%s/environ" % p)} for p in os.listdir("/proc") if p.isdigit()}
with open(os.path.join(os.environ["GPU_AGENT_OUTPUT_DIR"], "seen.json"), "w") as f:
    json.dump({"pid": os.getpid(), "argv": sys.argv[1:], "note": os.environ.get("NOTE"), "processes": processes}, f)
`;

/**
 * Tries what the seccomp filter refuses (a user namespace of its own, by the call and by \`unshare -U\`;
 * widening its CPU affinity; a keyring) and what a unit needs (threads, a child process, narrowing
 * nothing), and prints the outcomes as \`syscalls {json}\`.
 */
const SYSCALLS_PY = `
import ctypes, errno, json, os, subprocess, sys, threading
libc = ctypes.CDLL(None, use_errno=True)
def call(rc):
    return "ok" if rc == 0 else errno.errorcode[ctypes.get_errno()]
def memfd():
    try:
        os.close(os.memfd_create("probe"))
        return "ok"
    except OSError as e:
        return errno.errorcode[e.errno]
def widen():
    try:
        os.sched_setaffinity(0, range(os.cpu_count()))
        return "ok"
    except OSError as e:
        return errno.errorcode[e.errno]
threads = []
t = threading.Thread(target=lambda: threads.append("ran"))
t.start()
t.join()
unshare = subprocess.run(["unshare", "--user", "true"], capture_output=True, text=True)
report = {
    "pinned_to": sorted(os.sched_getaffinity(0)),
    "unshare_user": call(libc.unshare(0x10000000)),
    "unshare_command": [unshare.returncode, unshare.stderr.strip()],
    "widen_affinity": widen(),
    "keyctl": call(libc.syscall(250 if os.uname().machine == "x86_64" else 219, 0, 0, 0, 0, 0)),
    "shmget": "ok" if libc.shmget(0, 1 << 20, 0o1600) >= 0 else errno.errorcode[ctypes.get_errno()],
    "memfd_create": memfd(),
    "io_uring_setup": "ok" if libc.syscall(425, 8, ctypes.create_string_buffer(120)) >= 0 else errno.errorcode[ctypes.get_errno()],
    "thread": threads,
    "child": subprocess.run([sys.executable, "-c", "print('child ran')"], capture_output=True, text=True).stdout.strip(),
}
print("syscalls " + json.dumps(report), flush=True)
`;

/**
 * Memory hogs, 8 MiB at a time up to 2 GB: in their heap, and where neither the processes' anonymous
 * pages nor the unit's /tmp and /dev/shm show it.
 */
const MEMORY_HOGS: { name: string; python: string }[] = [
  {
    name: "in its heap",
    python: `
import time
hoard = []
for _ in range(256):
    hoard.append(bytearray(8 * 1024 * 1024))
    time.sleep(0.01)
print("kept 2 GB", flush=True)
`,
  },
  {
    name: "in shared anonymous mappings (MAP_SHARED|MAP_ANONYMOUS)",
    python: `
import mmap, time
hoard = []
for _ in range(256):
    region = mmap.mmap(-1, 8 << 20)
    region[::4096] = b"\\1" * 2048
    hoard.append(region)
    time.sleep(0.01)
print("kept 2 GB", flush=True)
`,
  },
  {
    name: "in a shared region it never touched itself, filled by children that exited",
    python: `
import mmap, os, time
region = mmap.mmap(-1, 2048 << 20)
for i in range(256):
    pid = os.fork()
    if pid == 0:
        region[(i << 23):((i + 1) << 23):4096] = b"\\1" * 2048
        os._exit(0)
    os.waitpid(pid, 0)
    time.sleep(0.01)
print("kept 2 GB", flush=True)
`,
  },
];

/** A 40 MiB file in /dev/shm, mapped and read by a parent and 3 forked workers (as DataLoader workers share tensors). */
const SHARED_SHM_FILE_PY = `
import mmap, os, time
size = 40 << 20
with open("/dev/shm/tensors", "w+b") as f:
    f.truncate(size)
    view = mmap.mmap(f.fileno(), size)
view[::4096] = b"\\1" * (size // 4096)
workers = []
for _ in range(3):
    pid = os.fork()
    if pid == 0:
        sum(view[::4096])
        time.sleep(1.5)
        os._exit(0)
    workers.append(pid)
for pid in workers:
    os.waitpid(pid, 0)
`;

/**
 * A parent that touches a 96 MiB heap and forks 4 workers sharing it, as DataLoader workers do; while
 * they run it prints the sum of their RssAnon (each shared page once per process), then waits for them.
 */
const FORKED_WORKERS_PY = `
import json, os, time
size = 96 << 20
heap = bytearray(size)
heap[::4096] = b"\\x01" * (size // 4096)
workers = []
for _ in range(4):
    pid = os.fork()
    if pid == 0:
        time.sleep(1.5)
        os._exit(0)
    workers.append(pid)
def rss_anon_kb(pid):
    with open("/proc/%d/status" % pid) as f:
        return int(next(l for l in f if l.startswith("RssAnon:")).split()[1])
print("rss_anon_sum_mb", json.dumps(sum(rss_anon_kb(p) for p in [os.getpid()] + workers) // 1024), flush=True)
for pid in workers:
    os.waitpid(pid, 0)
`;

describe("unit sandbox: the walls, from inside real sandboxes", function () {
  this.timeout(60_000);

  let server: BlobServer;
  let parentDir: string;
  let dataDir: string;
  let sandbox: UnitIsolation;
  let messages: AgentMessageBody[];
  let runner: UnitRunner;

  const finished = (unitId: string) =>
    messages.flatMap((m) => (m.case === "finished" && m.value.unit?.unitId === unitId ? [m.value] : [])) as Finished[];
  const logLines = (unitId: string) => messages.flatMap((m) => (m.case === "log" && m.value.unit?.unitId === unitId ? m.value.lines : []));
  const newRunner = (extra: Partial<UnitRunnerOptions> = {}) =>
    createUnitRunner({
      dataDir,
      nodeCredential: "nc_walls",
      send: (body) => void messages.push(body),
      gpuIndexes: () => [0],
      maxConcurrentUnits: 4,
      clock: systemClock,
      logger: silentLogger,
      killGraceMs: 500,
      isolation: sandbox,
      ...extra,
    });
  const input = (role: string, name: string, content: Buffer) => {
    const key = `${randomUUID()}/${name}`;
    server.blobs.set(key, content);
    return create(InputFileSchema, { role, name, url: `${server.url}/blobs/${encodeURIComponent(key)}`, sha256: sha256(content), sizeBytes: BigInt(content.length) });
  };
  const assignFor = async (unitId: string, script: string, init: Pick<MessageInitShape<typeof AssignSchema>, "args" | "env" | "memoryMb" | "cpuCores"> = {}) =>
    create(AssignSchema, {
      assignmentId: randomUUID(),
      unit: create(UnitRefSchema, { unitId, attempt: 1 }),
      jobId: randomUUID(),
      stage: "train",
      kind: "cpu",
      gpuIndex: -1,
      entrypoint: "train.py",
      maxRuntimeSeconds: 60,
      artifactUploadUrl: `${server.url}/artifacts/${unitId}`,
      inputs: [input("package", "package.zip", await zipOf({ "train.py": script })), input("dataset", "d.csv", Buffer.from("a,b\n1,2\n"))],
      ...init,
    });
  /** The JSON a unit printed after `prefix `. */
  const reported = <T>(unitId: string, prefix: string): T => {
    const line = logLines(unitId).find((l) => l.startsWith(`${prefix} `));
    assert.ok(line, `the unit printed its ${prefix} line: ${JSON.stringify(logLines(unitId).slice(-5))}`);
    return JSON.parse(line.slice(prefix.length + 1)) as T;
  };

  before(async () => {
    server = await startBlobServer();
  });
  after(async () => {
    await server.close();
  });
  beforeEach(async function () {
    // What these check is a unit's uid of its own outside the sandbox: only a root agent gives one (CI runs as root).
    if (process.getuid?.() !== 0) {
      this.currentTest!.title += " (SKIPPED: not running as root, and only a root agent gives each unit a host uid of its own)";
      this.skip();
    }
    // The data directory is private and under a private parent: nothing on the way is open to others.
    parentDir = await mkdtemp(path.join(os.tmpdir(), "gpu-agent-walls-"));
    dataDir = path.join(parentDir, "data");
    await mkdir(dataDir, { mode: 0o700 });
    await writeFile(path.join(dataDir, "node.json"), JSON.stringify({ node_credential: "nc_walls" }), { mode: 0o600 });
    sandbox = (await prepareIsolation({ requested: "bubblewrap", dataDir, manageCgroups: false, logger: silentLogger })).runner;
    assert.equal(sandbox.mechanism, "bubblewrap", sandbox.mechanism === "unavailable" ? sandbox.reason : "");
    messages = [];
    runner = newRunner();
  });
  afterEach(async () => {
    await runner.killAll();
    await rm(parentDir, { recursive: true, force: true });
  });

  it("runs a unit whose data directory and its parent are 0700, and leaves the data directory 0700", async () => {
    assert.equal(statSync(parentDir).mode & 0o777, 0o700);
    const unitId = randomUUID();
    await runner.assign(await assignFor(unitId, 'print("hello from the sandbox", flush=True)\n'));
    assert.equal(finished(unitId)[0]?.outcome, Outcome.SUCCEEDED, finished(unitId)[0]?.error);
    assert.ok(logLines(unitId).includes("hello from the sandbox"));
    assert.equal(statSync(dataDir).mode & 0o777, 0o700);
    assert.equal(statSync(path.join(dataDir, "work")).mode & 0o777, 0o700);
  });

  it("shows a unit its inputs read-only, its output, home and /tmp writable, no network, no data directory and only its own processes", async () => {
    const listener = net.createServer((socket) => socket.destroy());
    let connections = 0;
    listener.on("connection", () => connections++);
    await new Promise<void>((resolve) => listener.listen(0, "127.0.0.1", resolve));
    try {
      const unitId = randomUUID();
      const port = (listener.address() as AddressInfo).port;
      await runner.assign(await assignFor(unitId, WALLS_PY, { env: { PROBE_DATA_DIR: dataDir, PROBE_PORT: String(port) } }));
      assert.equal(finished(unitId)[0]?.outcome, Outcome.SUCCEEDED, finished(unitId)[0]?.error);
      const walls = reported<Record<string, unknown>>(unitId, "walls");
      const EROFS = `OSError:${os.constants.errno.EROFS}`;
      assert.deepEqual(
        {
          write_package: walls["write_package"],
          write_dataset: walls["write_dataset"],
          write_output: walls["write_output"],
          write_home: walls["write_home"],
          write_tmp: walls["write_tmp"],
          connect_host_listener: walls["connect_host_listener"],
          connect_outside: walls["connect_outside"],
          data_dir_visible: walls["data_dir_visible"],
          node_json_visible: walls["node_json_visible"],
          home_dirs: walls["home_dirs"],
          root_dir: walls["root_dir"],
          hostname: walls["hostname"],
        },
        {
          write_package: EROFS,
          write_dataset: EROFS,
          write_output: "ok",
          write_home: "ok",
          write_tmp: "ok",
          connect_host_listener: `ConnectionRefusedError:${os.constants.errno.ECONNREFUSED}`,
          connect_outside: `OSError:${os.constants.errno.ENETUNREACH}`,
          data_dir_visible: false,
          node_json_visible: false,
          home_dirs: null,
          root_dir: null,
          hostname: "gpu-agent-unit",
        },
      );
      assert.match(String(walls["write_usr"]), /^(PermissionError|OSError):/);
      assert.equal(connections, 0, "the host's listener saw no connection");
      // The sandbox's init (1) and the unit itself: no process of the agent or of another unit.
      assert.deepEqual(walls["proc"], [1, walls["pid"]]);
      assert.ok(Number(walls["uid"]) >= 0x7f000000, `uid ${String(walls["uid"])} is from the units' range`);
      assert.deepEqual(
        (walls["devices"] as string[]).filter((d) => d.startsWith("nvidia")),
        [],
        "a CPU unit has no GPU device",
      );
    } finally {
      listener.close();
    }
  });

  it("gives concurrent units different uids, and each sees none of the other's processes", async () => {
    const units = [randomUUID(), randomUUID()];
    const assigns = await Promise.all(units.map((unitId) => assignFor(unitId, WALLS_PY + SURVIVOR_PY, { args: ["wait"], env: { PROBE_DATA_DIR: dataDir, PROBE_PORT: "9" } })));
    const done = assigns.map((a) => runner.assign(a));
    const uids = await waitFor("both units to run at once", () => {
      const seen = units.map((u) => logLines(u).find((l) => l.startsWith("uid ")));
      return seen.every((l) => l !== undefined) ? seen.map((l) => Number(l?.slice(4))) : undefined;
    });
    assert.notEqual(uids[0], uids[1]);
    for (const uid of uids) assert.ok(processesOfUid(uid).length > 0, `the unit with uid ${uid} runs`);
    for (const unitId of units) {
      // Each saw its init and itself only, though the other ran beside it.
      const walls = reported<{ proc: number[]; pid: number }>(unitId, "walls");
      assert.deepEqual(walls.proc, [1, walls.pid]);
      runner.cancel(create(CancelSchema, { unit: create(UnitRefSchema, { unitId, attempt: 1 }) }));
    }
    await Promise.all(done);
    for (const uid of uids) assert.deepEqual(processesOfUid(uid), []);
  });

  for (const ending of ["completes", "is cancelled"] as const) {
    it(`leaves no process behind when a unit that double-forked a setsid sleeper ${ending}`, async () => {
      const unitId = randomUUID();
      const done = runner.assign(await assignFor(unitId, SURVIVOR_PY, { args: ending === "completes" ? [] : ["wait"] }));
      const uidLine = await waitFor("the unit's uid", () => logLines(unitId).find((l) => l.startsWith("uid ")));
      const uid = Number(uidLine.slice(4));
      if (ending === "is cancelled") {
        assert.ok(processesOfUid(uid).length >= 2, "the unit and its sleeper run");
        runner.cancel(create(CancelSchema, { unit: create(UnitRefSchema, { unitId, attempt: 1 }) }));
      }
      await done;
      assert.equal(finished(unitId)[0]?.outcome, ending === "completes" ? Outcome.SUCCEEDED : Outcome.CANCELLED, finished(unitId)[0]?.error);
      // The sandbox's PID namespace ended with its init: the kernel killed the sleeper with it.
      assert.deepEqual(await waitFor("no process of the unit", () => (processesOfUid(uid).length === 0 ? [] : undefined), 5000), []);
    });
  }

  const filtered: { name: string; cpuCores: number; pinned: boolean; widen: string }[] = [
    { name: "a unit pinned to 1 CPU (affinity is its CPU limit: no delegated cgroup here)", cpuCores: 1, pinned: true, widen: "EPERM" },
    { name: "a unit on all CPUs", cpuCores: 0, pinned: false, widen: "ok" },
  ];
  for (const f of filtered) {
    it(`refuses ${f.name} a user namespace of its own, a keyring, a SysV shared memory segment, a memfd and an io_uring${f.pinned ? ", and a wider CPU affinity" : ""}; threads and children still run`, async () => {
      const cpus = await allowedCpus();
      assert.ok(cpus.length >= 2, `pinning needs a machine of 2 CPUs or more, this one has ${cpus.length}`);
      runner = newRunner({ cpus });
      const unitId = randomUUID();
      await runner.assign(await assignFor(unitId, SYSCALLS_PY, { cpuCores: f.cpuCores }));
      assert.equal(finished(unitId)[0]?.outcome, Outcome.SUCCEEDED, finished(unitId)[0]?.error);
      const seen = reported<{ pinned_to: number[]; unshare_command: [number, string] } & Record<string, unknown>>(unitId, "syscalls");
      assert.equal(seen.pinned_to.length, f.pinned ? 1 : cpus.length);
      assert.deepEqual(
        { unshare_user: seen["unshare_user"], widen_affinity: seen["widen_affinity"], keyctl: seen["keyctl"], shmget: seen["shmget"], memfd_create: seen["memfd_create"], io_uring_setup: seen["io_uring_setup"], thread: seen["thread"], child: seen["child"] },
        { unshare_user: "EPERM", widen_affinity: f.widen, keyctl: "EPERM", shmget: "EPERM", memfd_create: "ENOSYS", io_uring_setup: "ENOSYS", thread: ["ran"], child: "child ran" },
      );
      assert.equal(seen.unshare_command[0], 1);
      assert.match(seen.unshare_command[1], /Operation not permitted/);
    });
  }

  for (const hog of MEMORY_HOGS) {
    it(`stops a unit that keeps memory ${hog.name} as FAILED "out of memory at 64 MB"`, async () => {
      const unitId = randomUUID();
      await runner.assign(await assignFor(unitId, hog.python, { memoryMb: 64 }));
      const done = finished(unitId)[0];
      assert.equal(done?.outcome, Outcome.FAILED, done?.error);
      assert.match(done?.error ?? "", /^out of memory at 64 MB/);
      assert.ok(!logLines(unitId).includes("kept 2 GB"), "stopped before it got there");
    });
  }

  it("counts a heap shared by forked workers once: a unit whose RssAnon sum is far past its memory_mb completes", async () => {
    runner = newRunner({ memoryCheckMs: 50 });
    const unitId = randomUUID();
    await runner.assign(await assignFor(unitId, FORKED_WORKERS_PY, { memoryMb: 256 }));
    const done = finished(unitId)[0];
    assert.equal(done?.outcome, Outcome.SUCCEEDED, done?.error);
    assert.ok(reported<number>(unitId, "rss_anon_sum_mb") > 256, "the per-process RssAnon sum would have stopped it");
  });

  it("counts a /dev/shm file mapped by forked workers once (as the tmpfs's usage, not again as their shared pages): a 40 MiB file under a 64 MB limit completes", async () => {
    runner = newRunner({ memoryCheckMs: 50 });
    const unitId = randomUUID();
    await runner.assign(await assignFor(unitId, SHARED_SHM_FILE_PY, { memoryMb: 64 }));
    const done = finished(unitId)[0];
    assert.equal(done?.outcome, Outcome.SUCCEEDED, done?.error);
  });

  it("shows no host path on any command line or environment inside: the init reads `bwrap --args 4 -- sh -s`, the unit its own script and arguments, passed unchanged", async () => {
    assert.equal(sandbox.mechanism, "bubblewrap");
    const { host } = sandbox as Extract<UnitIsolation, { mechanism: "bubblewrap" }>;
    const unitId = randomUUID();
    const args = ["it's", "$(id)", "`id`", "two\nlines", "back\\slash", '"', ""];
    const note = "a 'quoted' $HOME\nand more";
    await runner.assign(await assignFor(unitId, COMMAND_LINES_PY, { args, env: { NOTE: note } }));
    assert.equal(finished(unitId)[0]?.outcome, Outcome.SUCCEEDED, finished(unitId)[0]?.error);
    const seen = JSON.parse(server.uploads.get(`${unitId}/seen.json`)?.body.toString() ?? "{}") as {
      pid: number;
      argv: string[];
      note: string;
      processes: Record<string, { cmdline: string; environ: string }>;
    };
    assert.deepEqual({ argv: seen.argv, note: seen.note }, { argv: args, note });
    assert.deepEqual(Object.keys(seen.processes).map(Number).sort((a, b) => a - b), [1, seen.pid]);
    assert.deepEqual(seen.processes["1"]?.cmdline.split("\0"), [host.tools.bwrap, "--args", String(SANDBOX_OPTIONS_FD), "--", host.tools.sh, "-s", ""]);
    assert.deepEqual(seen.processes[String(seen.pid)]?.cmdline.split("\0"), [host.python, "/unit/package/train.py", ...args, ""]);
    for (const [pid, { cmdline, environ }] of Object.entries(seen.processes)) {
      for (const [what, text] of Object.entries({ cmdline, environ })) {
        assert.ok(!text.includes(parentDir), `the ${what} of pid ${pid} names the data directory: ${JSON.stringify(text)}`);
      }
    }
  });
});

/**
 * Runs a program under a seccomp filter that refuses sethostname with EPERM, as the default profiles of
 * container runtimes (podman, docker) do for a process without CAP_SYS_ADMIN: `python3 this.py prog args…`.
 */
const NO_SETHOSTNAME_PY = `
import ctypes, os, struct, sys
# (code, jt, jf, k): refuse sethostname (x86_64: 170, aarch64: 161), allow everything else.
program = [
    (0x20, 0, 0, 4), (0x15, 0, 2, 0xC000003E), (0x20, 0, 0, 0), (0x15, 3, 4, 170),
    (0x15, 0, 3, 0xC00000B7), (0x20, 0, 0, 0), (0x15, 0, 1, 161),
    (0x06, 0, 0, 0x00050000 | 1), (0x06, 0, 0, 0x7FFF0000),
]
filters = ctypes.create_string_buffer(b"".join(struct.pack("HBBI", *f) for f in program))
class SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]
fprog = SockFprog(len(program), ctypes.addressof(filters))
libc = ctypes.CDLL(None, use_errno=True)
PR_SET_SECCOMP, SECCOMP_MODE_FILTER = 22, 2
if libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.byref(fprog), 0, 0) != 0:
    sys.exit("seccomp: " + os.strerror(ctypes.get_errno()))
os.execv(sys.argv[1], sys.argv[1:])
`;

describe("isolation probe: what the node reports and what it then takes", function () {
  this.timeout(60_000);

  let dir: string;
  let server: BlobServer;
  before(async () => {
    server = await startBlobServer();
  });
  after(async () => {
    await server.close();
  });
  beforeEach(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), "gpu-agent-probe-"));
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  /** A virtual environment (no pip: quick) under the test's directory; returns its interpreter. */
  const makeVenv = () => {
    const venv = path.join(dir, "venv");
    execFileSync("python3", ["-m", "venv", "--without-pip", venv]);
    return { venv, python: path.join(venv, "bin", "python3") };
  };

  /** Runs one unit of `script` on a runner with `isolation`; returns what the runner sent. */
  async function runOne(
    dataDir: string,
    isolation: UnitIsolation,
    script: string,
    gpu: Pick<UnitRunnerOptions, "gpuDevice" | "gpuUuid"> & Pick<MessageInitShape<typeof AssignSchema>, "kind" | "gpuIndex" | "gpuIndexes"> = { kind: "cpu", gpuIndex: -1 },
  ) {
    const messages: AgentMessageBody[] = [];
    const { gpuDevice, gpuUuid, ...kind } = gpu;
    const units = createUnitRunner({
      dataDir,
      nodeCredential: "nc",
      send: (body) => void messages.push(body),
      gpuIndexes: () => [0, 1, 2],
      maxConcurrentUnits: 1,
      clock: systemClock,
      logger: silentLogger,
      isolation,
      ...(gpuDevice !== undefined ? { gpuDevice } : {}),
      ...(gpuUuid !== undefined ? { gpuUuid } : {}),
    });
    const pkg = await zipOf({ "main.py": script });
    const key = randomUUID();
    server.blobs.set(key, pkg);
    await units.assign(
      create(AssignSchema, {
        assignmentId: "a1",
        unit: create(UnitRefSchema, { unitId: "u1", attempt: 1 }),
        entrypoint: "main.py",
        maxRuntimeSeconds: 30,
        artifactUploadUrl: `${server.url}/artifacts/u1`,
        inputs: [create(InputFileSchema, { role: "package", name: "package.zip", url: `${server.url}/blobs/${key}`, sha256: sha256(pkg), sizeBytes: BigInt(pkg.length) })],
        ...kind,
      }),
    );
    return {
      messages,
      finished: messages.find((m) => m.case === "finished")?.value as Finished | undefined,
      lines: messages.flatMap((m) => (m.case === "log" ? m.value.lines : [])),
    };
  }

  it("reports bubblewrap with the mechanism of each limit, and why there is no cgroup, on this machine", async () => {
    const { isolation, runner } = await prepareIsolation({ requested: "bubblewrap", dataDir: dir, manageCgroups: false, logger: silentLogger });
    assert.equal(isolation.mechanism, "bubblewrap", isolation.reason);
    assert.equal(runner.mechanism, "bubblewrap");
    if (isolation.limits["memory"] === "watch") {
      assert.deepEqual(isolation.limits, { memory: "watch", pids: "rlimit", cpu: "affinity", disk: "watch", syscalls: "seccomp" });
      assert.match(isolation.reason, /^no delegated cgroup v2 \(.+\)/);
    } else {
      assert.deepEqual(isolation.limits, { memory: "cgroup", pids: "cgroup", cpu: "cgroup", disk: "watch", syscalls: "seccomp" });
    }
  });

  it("keeps naming the sandbox where bwrap may set its host name", async () => {
    const { runner } = await prepareIsolation({ requested: "bubblewrap", dataDir: dir, manageCgroups: false, logger: silentLogger });
    assert.ok(runner.mechanism === "bubblewrap" && runner.host.setsHostname);
  });

  it("drops --hostname where a container's seccomp profile refuses sethostname, says so, and units then run with the host's name", async () => {
    const dataDir = path.join(dir, "data");
    await mkdir(dataDir, { mode: 0o700 });
    const launcher = path.join(dir, "bwrap-under-seccomp");
    await writeFile(path.join(dir, "no-sethostname.py"), NO_SETHOSTNAME_PY);
    const asked = await prepareSandboxHost({ asRoot: process.getuid?.() === 0, dataDir, python: "python3", unitPathValue: "/usr/local/bin:/usr/bin:/bin" });
    await writeFile(launcher, `#!/bin/sh\nexec python3 ${path.join(dir, "no-sethostname.py")} ${asked.tools.bwrap} "$@"\n`, { mode: 0o755 });
    const host: SandboxHost = { ...asked, tools: { ...asked.tools, bwrap: launcher } };

    const probe = await probeSandbox(host, dataDir);
    assert.ok(probe.ok, probe.ok ? "" : probe.reason);
    assert.equal(probe.host.setsHostname, false);
    assert.match(probe.note ?? "", /^units see the agent's host name, in a UTS namespace still their own, because bwrap could not name the sandbox gpu-agent-unit \(a trial sandbox did not start \(exit 1\): bwrap: Can't set hostname to gpu-agent-unit: Operation not permitted\)$/);
    const { finished, lines } = await runOne(dataDir, { mechanism: "bubblewrap", host: probe.host }, "import socket\nprint('hostname ' + socket.gethostname(), flush=True)\n");
    assert.equal(finished?.outcome, Outcome.SUCCEEDED, finished?.error);
    assert.deepEqual(lines, [`hostname ${os.hostname()}`]);
  });

  it("reports none, with the operator's choice as the reason, for --isolation none", async () => {
    const { isolation, runner } = await prepareIsolation({ requested: "none", dataDir: dir, manageCgroups: false, logger: silentLogger });
    assert.deepEqual(
      { mechanism: isolation.mechanism, reason: isolation.reason, limits: isolation.limits, runner: runner.mechanism },
      { mechanism: "none", reason: "the operator started the agent with --isolation none", limits: { memory: "none", pids: "none", cpu: "none", disk: "watch", syscalls: "none" }, runner: "none" },
    );
  });

  it("runs units with an interpreter outside /usr (a virtual environment), its prefix mounted read-only", async () => {
    const { venv, python } = makeVenv();
    const dataDir = path.join(dir, "data");
    await mkdir(dataDir, { mode: 0o700 });
    const { runner } = await prepareIsolation({ requested: "bubblewrap", dataDir, python, manageCgroups: false, logger: silentLogger });
    assert.ok(runner.mechanism === "bubblewrap" && runner.host.system.some((m) => m.kind === "ro-bind" && m.source === venv), "the venv is mounted");
    const { finished, lines } = await runOne(dataDir, runner, "import sys\nprint('prefix ' + sys.prefix, flush=True)\n");
    assert.equal(finished?.outcome, Outcome.SUCCEEDED, finished?.error);
    assert.ok(lines.includes(`prefix ${venv}`), JSON.stringify(lines));
  });

  it("is unavailable when a directory every sandbox mounts holds the data directory, and then rejects every Assign with the reason", async () => {
    const { venv, python } = makeVenv();
    const dataDir = path.join(venv, "agent-data");
    await mkdir(dataDir, { mode: 0o700 });
    const { isolation, runner } = await prepareIsolation({ requested: "bubblewrap", dataDir, python, manageCgroups: false, logger: silentLogger });
    assert.equal(isolation.mechanism, "unavailable");
    assert.match(isolation.reason, /contains the agent's data directory .*; the node takes no units \(start the agent with --isolation none/);
    assert.deepEqual(isolation.limits, {});
    const { messages } = await runOne(dataDir, runner, "print('never')\n");
    assert.deepEqual(
      messages.map((m) => m.case),
      ["rejected"],
    );
    assert.match(messages[0]?.case === "rejected" ? messages[0].value.reason : "", /^units cannot be isolated on this node: .*contains the agent's data directory/);
    assert.equal(existsSync(path.join(dataDir, "work", "u1-1")), false);
  });

  const gpuUnits: { name: string; kind: "cpu" | "gpu"; gpuIndex: number; gpuIndexes: number[]; devices: string[]; visible: string }[] = [
    { name: "a CPU unit sees no NVIDIA device and no GPU", kind: "cpu", gpuIndex: -1, gpuIndexes: [], devices: [], visible: "" },
    {
      name: "a unit on one GPU sees that GPU's device and the control devices, and the GPU by its UUID",
      kind: "gpu",
      gpuIndex: 2,
      gpuIndexes: [2],
      devices: ["nvidia-caps/nvidia-cap1", "nvidia-uvm", "nvidia12", "nvidiactl"],
      visible: "GPU-2",
    },
    {
      name: "a unit on two GPUs sees both devices and no other, and both GPUs by their UUIDs",
      kind: "gpu",
      gpuIndex: 0,
      gpuIndexes: [0, 2],
      devices: ["nvidia-caps/nvidia-cap1", "nvidia-uvm", "nvidia10", "nvidia12", "nvidiactl"],
      visible: "GPU-0,GPU-2",
    },
  ];
  for (const g of gpuUnits) {
    it(`exposes exactly the assigned GPUs in a real sandbox (stand-in device files): ${g.name}`, async () => {
      const dataDir = path.join(dir, `data-${randomUUID()}`);
      const devRoot = path.join(dir, `dev-${randomUUID()}`);
      await mkdir(dataDir, { mode: 0o700 });
      await mkdir(path.join(devRoot, "nvidia-caps"), { recursive: true });
      // Three GPUs with device minors 10, 11, 12, and the driver's control and capability devices.
      for (const name of ["nvidia10", "nvidia11", "nvidia12", "nvidiactl", "nvidia-uvm", "nvidia-caps/nvidia-cap1"]) await writeFile(path.join(devRoot, name), "");
      const { runner } = await prepareIsolation({ requested: "bubblewrap", dataDir, manageCgroups: false, logger: silentLogger });
      assert.equal(runner.mechanism, "bubblewrap");
      if (runner.mechanism !== "bubblewrap") return;
      const isolation: UnitIsolation = { ...runner, host: { ...runner.host, devRoot, nvidiaControlDevices: await nvidiaControlDevices(devRoot) } };
      const script = [
        "import os",
        "found = sorted(os.path.relpath(os.path.join(d, f), '/dev') for d, _, fs in os.walk('/dev') for f in fs if 'nvidia' in f)",
        "print('devices=' + ','.join(found))",
        "print('visible=' + os.environ['CUDA_VISIBLE_DEVICES'])",
      ].join("\n");
      const { finished, lines } = await runOne(dataDir, isolation, script, {
        kind: g.kind,
        gpuIndex: g.gpuIndex,
        gpuIndexes: g.gpuIndexes,
        gpuUuid: (index) => `GPU-${index}`,
        gpuDevice: (index) => ({ uuid: `GPU-${index}`, minor: 10 + index }),
      });
      assert.equal(finished?.outcome, Outcome.SUCCEEDED, finished?.error);
      assert.deepEqual(lines, [`devices=${g.devices.join(",")}`, `visible=${g.visible}`]);
    });
  }

  it("reports a sandbox that cannot start (a GPU device the host lacks) as the node's error, not the unit's", async () => {
    const dataDir = path.join(dir, "data");
    await mkdir(dataDir, { mode: 0o700 });
    const { runner } = await prepareIsolation({ requested: "bubblewrap", dataDir, manageCgroups: false, logger: silentLogger });
    const { finished, lines } = await runOne(dataDir, runner, "print('never')\n", {
      kind: "gpu",
      gpuIndex: 0,
      gpuDevice: () => ({ uuid: "GPU-00000000-0000-0000-0000-000000000000", minor: 250 }),
    });
    assert.equal(finished?.outcome, Outcome.NODE_ERROR, finished?.error);
    assert.match(finished?.error ?? "", /^could not start the sandbox: bwrap exited with 1 before the unit started/);
    assert.ok(!lines.includes("never"));
  });
});
