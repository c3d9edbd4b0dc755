/**
 * `gpu-agent install`: the unit file passes `systemd-analyze verify` without a single warning, carries
 * the hardening that bubblewrap works under and none that breaks it, and the command writes what it says.
 * The root service's capability bounding set is checked against the code that needs it: the agent's unit
 * path runs under exactly that set, and under that set less each capability (sandbox-under-caps.ts).
 */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdir, mkdtemp, readFile, rm, stat, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { AGENT_CAPABILITIES, installAgentService, renderSystemdUnit, systemdQuote } from "../../src/node-agent/systemd-unit.ts";
import type { AgentServiceSpec } from "../../src/node-agent/systemd-unit.ts";
import { DEFAULT_UNIT_UID_BASE } from "../../src/node-agent/unit-sandbox.ts";
import type { SandboxUnderCaps } from "./sandbox-under-caps.ts";

const agentScript = path.resolve(import.meta.dirname, "../../cmd/agent.ts");
/** What the service runs: this Node and the real command, which exist, so verify checks ExecStart for real. */
const agentCommand = [process.execPath, agentScript];

function run(file: string, args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(file, args, (err, stdout, stderr) => resolve({ code: err === null ? 0 : Number(err.code), stdout, stderr }));
  });
}

/** The directives of a unit file, comments left out. */
const directives = (unit: string) => unit.split("\n").filter((l) => /^[A-Za-z]+=/.test(l));

/** The capabilities a unit file keeps: its CapabilityBoundingSet= lines, which systemd ORs together. */
const boundingSet = (unit: string) =>
  directives(unit)
    .filter((l) => l.startsWith("CapabilityBoundingSet="))
    .flatMap((l) => l.slice("CapabilityBoundingSet=".length).split(/\s+/).filter((c) => c !== ""));

const rootService: AgentServiceSpec = { dataDir: "/var/lib/gpu-agent", agentCommand };
const userService: AgentServiceSpec = { user: "gpu-agent", dataDir: "/var/lib/gpu-agent", agentCommand };

describe("systemd unit", function () {
  this.timeout(30_000);
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), "gpu-agent-unit-"));
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  describe("passes systemd-analyze verify with no warnings", () => {
    const cases: { name: string; spec: AgentServiceSpec }[] = [
      { name: "the defaults: root, a state directory under /var/lib", spec: rootService },
      { name: "root, a data directory elsewhere, written through ReadWritePaths", spec: { dataDir: "/srv/gpu-agent", agentCommand } },
      { name: "a user of its own (--user), a state directory under /var/lib", spec: userService },
      { name: "a user of its own, a data directory elsewhere", spec: { user: "gpu-agent", dataDir: "/srv/gpu-agent", agentCommand } },
      {
        name: "run flags with spaces, quotes and specifier characters",
        spec: { dataDir: "/var/lib/gpu-agent", agentCommand, runArgs: ["--available", 'Mon-Fri 18:00-08:00; Sat,Sun 00:00-24:00 "100%" $HOME'], graceSeconds: 90 },
      },
    ];
    for (const tc of cases) {
      it(tc.name, async () => {
        const file = path.join(dir, "gpu-agent.service");
        await writeFile(file, renderSystemdUnit(tc.spec));
        const verify = await run("/usr/bin/systemd-analyze", ["verify", file]);
        assert.equal(verify.code, 0, verify.stderr);
        assert.equal(verify.stderr.trim(), "", "systemd-analyze had something to say");
      });
    }
  });

  describe("is read by systemd with the capabilities the unit names, and no other (systemd-analyze security --offline)", () => {
    const cases: { name: string; spec: AgentServiceSpec; kept: readonly string[] }[] = [
      { name: "root keeps exactly the agent's capabilities", spec: rootService, kept: AGENT_CAPABILITIES.map((c) => c.name) },
      { name: "a user of its own keeps none", spec: userService, kept: [] },
    ];
    for (const tc of cases) {
      it(tc.name, async () => {
        const file = path.join(dir, "gpu-agent.service");
        await writeFile(file, renderSystemdUnit(tc.spec));
        const security = await run("/usr/bin/systemd-analyze", ["security", "--offline=true", file]);
        assert.equal(security.code, 0, security.stderr);
        // One row per capability group, e.g. "✗ CapabilityBoundingSet=~CAP_SET(UID|GID|PCAP)": ✗ while the service keeps one of them.
        const rows = [...security.stdout.matchAll(/^(✓|✗) CapabilityBoundingSet=~(CAP_\S+)/gm)];
        assert.ok(rows.length > 20, security.stdout);
        for (const [, mark, group] of rows) {
          const pattern = new RegExp(`^${(group as string).replace(/\*/g, ".*")}$`);
          assert.equal(mark, tc.kept.some((c) => pattern.test(c)) ? "✗" : "✓", `${group}`);
        }
      });
    }
  });

  it("runs the agent as root by default, with a private data directory, restarts it, and stops it gently", () => {
    const lines = directives(renderSystemdUnit(rootService));
    assert.ok(!lines.some((l) => l.startsWith("User=")), "no User=: root");
    for (const expected of [
      `ExecStart=${process.execPath} ${agentScript} run --data-dir /var/lib/gpu-agent`,
      "StateDirectory=gpu-agent",
      "StateDirectoryMode=0700",
      "UMask=0077",
      "Restart=on-failure",
      "KillMode=mixed",
      "TimeoutStopSec=60",
      "Delegate=yes",
      "ConditionPathExists=/var/lib/gpu-agent/node.json",
    ]) {
      assert.ok(lines.includes(expected), `${expected} is missing`);
    }
  });

  it("keeps as root only the agent's capabilities, each with its reason in a comment", () => {
    const unit = renderSystemdUnit(rootService);
    assert.deepEqual(boundingSet(unit), AGENT_CAPABILITIES.map((c) => c.name));
    for (const c of AGENT_CAPABILITIES) assert.ok(unit.includes(`# ${c.name}: ${c.why}.\nCapabilityBoundingSet=${c.name}\n`), c.name);
  });

  it("runs the agent as the --user it names with no capabilities at all", () => {
    const lines = directives(renderSystemdUnit(userService));
    assert.ok(lines.includes("User=gpu-agent"));
    assert.deepEqual(lines.filter((l) => l.startsWith("CapabilityBoundingSet=")), ["CapabilityBoundingSet="]);
  });

  for (const [who, spec] of [["root", rootService], ["a user of its own", userService]] as const) {
    it(`has, run as ${who}, the hardening bubblewrap works under, and none of the options that break it or hide the GPUs`, () => {
      const lines = directives(renderSystemdUnit(spec));
      for (const present of ["NoNewPrivileges=yes", "ProtectSystem=strict", "ProtectHome=yes", "PrivateTmp=yes", "ProtectKernelModules=yes", "UMask=0077"]) {
        assert.ok(lines.includes(present), `${present} is missing`);
      }
      // ProtectHostname's seccomp rule denies sethostname in the new UTS namespace too: bwrap --hostname fails.
      for (const absent of ["RestrictNamespaces", "ProtectKernelTunables", "ProtectKernelLogs", "ProcSubset", "ProtectProc", "ProtectControlGroups", "PrivateDevices", "ProtectClock", "SystemCallFilter", "MemoryDenyWriteExecute", "PrivateUsers", "ProtectHostname"]) {
        assert.ok(!lines.some((l) => l.startsWith(`${absent}=`)), `${absent} would break the sandbox or the GPUs`);
      }
    });
  }

  describe("quotes an Exec argument as systemd reads it", () => {
    const cases: [string, string][] = [
      ["/usr/bin/node", "/usr/bin/node"],
      ["--reserve-vram-mb", "--reserve-vram-mb"],
      ["Mon-Fri 18:00-08:00", '"Mon-Fri 18:00-08:00"'],
      ['say "hi"', '"say \\"hi\\""'],
      ["back\\slash", '"back\\\\slash"'],
      ["100%", "100%%"],
      ["$HOME", '"$$HOME"'],
    ];
    for (const [arg, quoted] of cases) it(`${JSON.stringify(arg)} as ${quoted}`, () => assert.equal(systemdQuote(arg), quoted));
  });

  describe("refuses", () => {
    const cases: { name: string; spec: AgentServiceSpec; error: RegExp }[] = [
      { name: "a user name systemd and useradd would not take", spec: { user: "Gpu Agent", dataDir: "/var/lib/gpu-agent", agentCommand }, error: /is not a system user name/ },
      { name: "a relative data directory", spec: { dataDir: "data", agentCommand }, error: /--data-dir must be an absolute path/ },
      { name: "a data directory with a space", spec: { dataDir: "/srv/gpu agent", agentCommand }, error: /must not hold spaces/ },
      { name: "a relative agent command", spec: { dataDir: "/var/lib/gpu-agent", agentCommand: ["node", "cmd/agent.ts"] }, error: /must be absolute paths/ },
    ];
    for (const tc of cases) it(tc.name, () => assert.throws(() => renderSystemdUnit(tc.spec), tc.error));
  });

  it("will not install an agent that lives under /home, which ProtectHome hides from the service", async () => {
    await assert.rejects(
      installAgentService({ spec: { dataDir: "/var/lib/gpu-agent", agentCommand: ["/home/owner/node", "/home/owner/agent.ts"] }, unitPath: path.join(dir, "x.service"), dryRun: false }),
      /ProtectHome= hides from the service: install the agent under \/opt/,
    );
  });

  it("prints the unit and how to enroll and start it on --dry-run, writing nothing", async () => {
    const unitPath = path.join(dir, "gpu-agent.service");
    const cli = await run(process.execPath, [agentScript, "install", "--dry-run", "--url", "https://cp.example:8443", "--unit-path", unitPath, "--available", "Mon-Fri 18:00-08:00"]);
    assert.equal(cli.code, 0, cli.stderr);
    assert.match(cli.stdout, /^ExecStart=.* run --data-dir \/var\/lib\/gpu-agent --available "Mon-Fri 18:00-08:00"$/m);
    assert.ok(!/^User=/m.test(cli.stdout), "runs as root");
    // Enrolled as root, whose data directory it is: no sudo -u.
    assert.match(cli.stdout, /^ +sudo \/\S+ \S+agent\.ts enroll --url https:\/\/cp\.example:8443 --token <TOKEN> --data-dir \/var\/lib\/gpu-agent$/m);
    assert.match(cli.stdout, /^ +sudo systemctl enable --now gpu-agent$/m);
    await assert.rejects(stat(unitPath), { code: "ENOENT" });
  });

  it("with --user, runs the agent as that user and enrolls it as that user", async () => {
    const cli = await run(process.execPath, [agentScript, "install", "--dry-run", "--user", "gpu-agent", "--url", "https://cp.example:8443"]);
    assert.equal(cli.code, 0, cli.stderr);
    assert.match(cli.stdout, /^User=gpu-agent$/m);
    assert.match(cli.stdout, /^ +sudo -u gpu-agent \S+ \S+agent\.ts enroll --url https:\/\/cp\.example:8443 --token <TOKEN> --data-dir \/var\/lib\/gpu-agent$/m);
  });

  it("passes the package sources and the environments' bound on to gpu-agent run", async () => {
    const [wheels, more] = [path.join(dir, "wheels"), path.join(dir, "more wheels")];
    for (const d of [wheels, more]) await mkdir(d);
    const cli = await run(process.execPath, [
      agentScript, "install", "--dry-run",
      "--pip-index-url", "http://pypi.lan/simple", "--pip-allow-host", "Files.Lan", "--pip-allow-host", "10.0.0.5:8080",
      "--find-links", wheels, "--find-links", more, "--env-cache-mb", "2048",
    ]);
    assert.equal(cli.code, 0, cli.stderr);
    const execStart = cli.stdout.split("\n").find((l) => l.startsWith("ExecStart="));
    assert.match(execStart ?? "", / run --data-dir \/var\/lib\/gpu-agent --pip-index-url http:\/\/pypi\.lan\/simple --pip-allow-host files\.lan:443 --pip-allow-host 10\.0\.0\.5:8080 /);
    assert.ok(execStart?.endsWith(` --find-links ${wheels} --find-links "${more}" --env-cache-mb 2048`), execStart);
  });

  const refusedSources: { name: string; args: string[]; error: RegExp }[] = [
    { name: "an index that is not an http(s) URL", args: ["--pip-index-url", "file:///srv/wheels"], error: /--pip-index-url .*must be an http\(s\) URL/ },
    { name: "a wheelhouse that is not a directory", args: ["--find-links", "/nonexistent/wheels"], error: /\/nonexistent\/wheels is not a directory/ },
    { name: "an allowed host given as a URL", args: ["--pip-index-url", "http://pypi.lan/simple", "--pip-allow-host", "https://files.lan"], error: /https:\/\/files\.lan is not a host or host:port/ },
    { name: "an allowed host without an index", args: ["--pip-allow-host", "files.lan"], error: /--pip-allow-host .*goes with --pip-index-url/ },
  ];
  for (const tc of refusedSources) {
    it(`refuses ${tc.name} before writing anything`, async () => {
      const cli = await run(process.execPath, [agentScript, "install", "--dry-run", ...tc.args]);
      assert.notEqual(cli.code, 0);
      assert.match(cli.stderr, tc.error);
    });
  }

  it("refuses a window it cannot read before writing anything", async () => {
    const cli = await run(process.execPath, [agentScript, "install", "--dry-run", "--available", "Mon-Fri 18:00-25:00"]);
    assert.notEqual(cli.code, 0);
    assert.match(cli.stderr, /bad time \\?"25:00\\?"/);
  });

  const root = process.getuid?.() === 0;
  if (!root) {
    it("as another user, refuses to install and says to use root", async () => {
      const install = installAgentService({ spec: { dataDir: path.join(dir, "data"), agentCommand }, unitPath: path.join(dir, "gpu-agent.service"), dryRun: false });
      await assert.rejects(install, /run it as root \(sudo\), or with --dry-run/);
    });
  }
  // `nobody` exists everywhere, so the test creates no user on the machine it runs on.
  const installs: { name: string; user?: string; owner: string; runsAs: string }[] = [
    { name: "root (the default)", owner: "root", runsAs: "root (with only the capabilities the unit names)" },
    { name: "--user nobody", user: "nobody", owner: "nobody", runsAs: "nobody" },
  ];
  for (const tc of root ? installs : []) {
    it(`as root, writes the unit (0644) and the private data directory (0700) of an agent run as ${tc.name}`, async () => {
      const unitPath = path.join(dir, "systemd", "gpu-agent.service");
      const dataDir = path.join(dir, "data");
      const result = await installAgentService({ spec: { ...(tc.user !== undefined ? { user: tc.user } : {}), dataDir, agentCommand }, unitPath, dryRun: false });
      assert.equal(await readFile(unitPath, "utf8"), result.unit);
      assert.equal((await stat(unitPath)).mode & 0o777, 0o644);
      const data = await stat(dataDir);
      assert.equal(data.mode & 0o777, 0o700);
      const owner = await run("id", ["-u", tc.owner]);
      assert.equal(data.uid, Number(owner.stdout.trim()));
      assert.ok(directives(result.unit).includes(`ReadWritePaths=${dataDir}`));
      assert.equal(directives(result.unit).find((l) => l.startsWith("User=")), tc.user !== undefined ? `User=${tc.user}` : undefined);
      assert.equal(result.nextSteps[0], `Wrote ${unitPath}; runs as ${tc.runsAs}, data directory ${dataDir} (0700).`);
    });
  }
});

describe("the root service's capability bounding set", () => {
  const kept = boundingSet(renderSystemdUnit(rootService));
  const NO_CAPABILITIES = "0000000000000000";
  /** What goes wrong without each capability: every one the unit keeps is needed. */
  const withoutEach: { capability: string; breaks: string; check: (seen: SandboxUnderCaps) => void }[] = [
    { capability: "CAP_SYS_ADMIN", breaks: "bubblewrap makes no namespace", check: (seen) => assert.match(seen.isolation, /^unavailable: .*bwrap: Creating new namespace failed: Operation not permitted/) },
    { capability: "CAP_NET_ADMIN", breaks: "bubblewrap cannot bring up the unit's loopback", check: (seen) => assert.match(seen.isolation, /^unavailable: .*bwrap: loopback: Failed RTM_NEWADDR/) },
    { capability: "CAP_SETUID", breaks: "setpriv cannot switch to the unit's uid", check: (seen) => assert.match(seen.isolation, /^unavailable: .*setpriv: setresuid failed: Operation not permitted/) },
    { capability: "CAP_SETGID", breaks: "setpriv cannot switch to the unit's gid", check: (seen) => assert.match(seen.isolation, /^unavailable: .*setpriv: setresgid failed: Operation not permitted/) },
    { capability: "CAP_CHOWN", breaks: "the work directory cannot be given to the unit", check: (seen) => assert.match(seen.isolation, /^unavailable: .*EPERM: operation not permitted, lchown/) },
    {
      capability: "CAP_SETPCAP",
      breaks: "the unit keeps the agent's bounding set",
      check: (seen) => {
        assert.equal(seen.isolation, "bubblewrap");
        assert.notEqual(seen.unitCaps?.["CapBnd"], NO_CAPABILITIES);
      },
    },
    {
      capability: "CAP_DAC_OVERRIDE",
      breaks: "a unit's private output is not uploaded and its work directory stays behind",
      check: (seen) => {
        assert.equal(seen.isolation, "bubblewrap");
        assert.ok(!seen.artifacts?.includes("result.txt"), JSON.stringify(seen.artifacts));
        assert.notDeepEqual(seen.workLeft, []);
      },
    },
    {
      capability: "CAP_KILL",
      breaks: "a cancelled unit gets no SIGTERM to save its work",
      check: (seen) => {
        assert.equal(seen.isolation, "bubblewrap");
        assert.equal(seen.sigterm, false);
      },
    },
  ];

  it("has a case below for every capability it keeps", () => {
    assert.deepEqual(withoutEach.map((c) => c.capability).sort(), [...kept].sort());
  });

  describe("tried on the agent's own unit path (sandbox-under-caps.ts, as root under setpriv)", function () {
    this.timeout(60_000);
    const probeScript = path.resolve(import.meta.dirname, "sandbox-under-caps.ts");
    let dir: string;
    beforeEach(async function () {
      if (process.getuid?.() !== 0) {
        this.currentTest!.title += " (SKIPPED: not running as root, and these capabilities are a root agent's)";
        this.skip();
      }
      dir = await mkdtemp(path.join(os.tmpdir(), "gpu-agent-caps-"));
    });
    afterEach(async () => {
      if (dir !== undefined) await rm(dir, { recursive: true, force: true });
    });

    /** The agent's unit path run as root holding only `capabilities`, with no_new_privs as under NoNewPrivileges=yes. */
    async function runHolding(capabilities: readonly string[]): Promise<SandboxUnderCaps> {
      const bounding = ["-all", ...capabilities.map((c) => `+${c.replace(/^CAP_/, "").toLowerCase()}`)].join(",");
      const child = await run("setpriv", ["--no-new-privs", "--inh-caps=-all", `--bounding-set=${bounding}`, "--", process.execPath, probeScript, dir]);
      assert.equal(child.code, 0, child.stderr);
      return JSON.parse(child.stdout) as SandboxUnderCaps;
    }

    it("runs a unit under exactly the set the unit file names: its own uid, no capabilities, its outputs read, its work directory removed, SIGTERM on cancel", async () => {
      const seen = await runHolding(kept);
      assert.ok((seen.unitUid ?? 0) >= DEFAULT_UNIT_UID_BASE, `uid ${seen.unitUid} is from the units' range`);
      assert.deepEqual(
        { ...seen, unitUid: undefined },
        {
          isolation: "bubblewrap",
          unitUid: undefined,
          unitCaps: { CapInh: NO_CAPABILITIES, CapPrm: NO_CAPABILITIES, CapEff: NO_CAPABILITIES, CapBnd: NO_CAPABILITIES, CapAmb: NO_CAPABILITIES },
          artifacts: ["result.txt", "train.log"],
          workLeft: [],
          sigterm: true,
        },
      );
    });

    for (const tc of withoutEach) {
      it(`needs ${tc.capability}: without it, ${tc.breaks}`, async () => {
        tc.check(await runHolding(kept.filter((c) => c !== tc.capability)));
      });
    }
  });
});
