/**
 * `gpu-agent install`: the unit file passes `systemd-analyze verify` without a single warning, carries
 * the hardening that bubblewrap works under and none that breaks it, and the command writes what it says.
 */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdtemp, readFile, rm, stat, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { installAgentService, renderSystemdUnit, systemdQuote } from "../../src/node-agent/systemd-unit.ts";
import type { AgentServiceSpec } from "../../src/node-agent/systemd-unit.ts";

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
      { name: "the defaults: a state directory under /var/lib", spec: { user: "gpu-agent", dataDir: "/var/lib/gpu-agent", agentCommand } },
      { name: "a data directory elsewhere, written through ReadWritePaths", spec: { user: "gpu-agent", dataDir: "/srv/gpu-agent", agentCommand } },
      {
        name: "run flags with spaces, quotes and specifier characters",
        spec: { user: "gpu-agent", dataDir: "/var/lib/gpu-agent", agentCommand, runArgs: ["--available", 'Mon-Fri 18:00-08:00; Sat,Sun 00:00-24:00 "100%" $HOME'], graceSeconds: 90 },
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

  it("runs the agent as its own user with a private data directory, restarts it, and stops it gently", () => {
    const lines = directives(renderSystemdUnit({ user: "gpu-agent", dataDir: "/var/lib/gpu-agent", agentCommand }));
    for (const expected of [
      "User=gpu-agent",
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

  it("has the hardening bubblewrap works under, and none of the options that break it or hide the GPUs", () => {
    const lines = directives(renderSystemdUnit({ user: "gpu-agent", dataDir: "/var/lib/gpu-agent", agentCommand }));
    for (const present of ["NoNewPrivileges=yes", "CapabilityBoundingSet=", "ProtectSystem=strict", "ProtectHome=yes", "PrivateTmp=yes", "ProtectKernelModules=yes"]) {
      assert.ok(lines.includes(present), `${present} is missing`);
    }
    for (const absent of ["RestrictNamespaces", "ProtectKernelTunables", "ProtectKernelLogs", "ProcSubset", "ProtectProc", "ProtectControlGroups", "PrivateDevices", "ProtectClock", "SystemCallFilter", "MemoryDenyWriteExecute", "PrivateUsers"]) {
      assert.ok(!lines.some((l) => l.startsWith(`${absent}=`)), `${absent} would break the sandbox or the GPUs`);
    }
  });

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
      { name: "a relative data directory", spec: { user: "gpu-agent", dataDir: "data", agentCommand }, error: /--data-dir must be an absolute path/ },
      { name: "a data directory with a space", spec: { user: "gpu-agent", dataDir: "/srv/gpu agent", agentCommand }, error: /must not hold spaces/ },
      { name: "a relative agent command", spec: { user: "gpu-agent", dataDir: "/var/lib/gpu-agent", agentCommand: ["node", "cmd/agent.ts"] }, error: /must be absolute paths/ },
    ];
    for (const tc of cases) it(tc.name, () => assert.throws(() => renderSystemdUnit(tc.spec), tc.error));
  });

  it("will not install an agent that lives under /home, which ProtectHome hides from the service", async () => {
    await assert.rejects(
      installAgentService({ spec: { user: "gpu-agent", dataDir: "/var/lib/gpu-agent", agentCommand: ["/home/owner/node", "/home/owner/agent.ts"] }, unitPath: path.join(dir, "x.service"), dryRun: false }),
      /ProtectHome= hides from the service: install the agent under \/opt/,
    );
  });

  it("prints the unit and how to enroll and start it on --dry-run, writing nothing", async () => {
    const unitPath = path.join(dir, "gpu-agent.service");
    const cli = await run(process.execPath, [agentScript, "install", "--dry-run", "--url", "https://cp.example:8443", "--unit-path", unitPath, "--available", "Mon-Fri 18:00-08:00"]);
    assert.equal(cli.code, 0, cli.stderr);
    assert.match(cli.stdout, /^ExecStart=.* run --data-dir \/var\/lib\/gpu-agent --available "Mon-Fri 18:00-08:00"$/m);
    assert.match(cli.stdout, /^ +sudo -u gpu-agent .*agent\.ts enroll --url https:\/\/cp\.example:8443 --token <TOKEN> --data-dir \/var\/lib\/gpu-agent$/m);
    assert.match(cli.stdout, /^ +sudo systemctl enable --now gpu-agent$/m);
    await assert.rejects(stat(unitPath), { code: "ENOENT" });
  });

  it("refuses a window it cannot read before writing anything", async () => {
    const cli = await run(process.execPath, [agentScript, "install", "--dry-run", "--available", "Mon-Fri 18:00-25:00"]);
    assert.notEqual(cli.code, 0);
    assert.match(cli.stderr, /bad time \\?"25:00\\?"/);
  });

  const root = process.getuid?.() === 0;
  it(root ? "as root, writes the unit (0644) and the user's private data directory (0700)" : "as another user, refuses to install and says to use root", async () => {
    const unitPath = path.join(dir, "systemd", "gpu-agent.service");
    const dataDir = path.join(dir, "data");
    // `nobody` exists everywhere, so the test creates no user on the machine it runs on.
    const install = installAgentService({ spec: { user: "nobody", dataDir, agentCommand }, unitPath, dryRun: false });
    if (!root) {
      await assert.rejects(install, /run it as root \(sudo\), or with --dry-run/);
      return;
    }
    const result = await install;
    assert.equal(await readFile(unitPath, "utf8"), result.unit);
    assert.equal((await stat(unitPath)).mode & 0o777, 0o644);
    const data = await stat(dataDir);
    assert.equal(data.mode & 0o777, 0o700);
    const nobody = await run("id", ["-u", "nobody"]);
    assert.equal(data.uid, Number(nobody.stdout.trim()));
    assert.ok(directives(result.unit).includes(`ReadWritePaths=${dataDir}`));
    assert.equal(result.nextSteps[0], `Wrote ${unitPath}; user nobody, data directory ${dataDir} (0700).`);
  });
});
