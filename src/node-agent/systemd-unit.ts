/**
 * `gpu-agent install`: the systemd service that runs the agent on an owner's machine, and the few steps
 * around it (a dedicated system user, a private data directory). `renderSystemdUnit` is pure; the unit
 * file it writes carries its own comments, so an owner reading it learns why each line is there.
 *
 * Hardening and bubblewrap. Units run inside bubblewrap, which (not setuid) needs unprivileged user
 * namespaces and must mount a fresh /proc inside them. The kernel lets a user namespace mount proc only
 * when the proc it can already see is "fully visible": no locked mount over any of its files. So these
 * systemd options stay out, each for the reason given in the rendered file: RestrictNamespaces (bwrap
 * creates namespaces), ProtectKernelTunables and ProtectKernelLogs (they mount over /proc/sys and
 * /proc/kmsg; bwrap then fails "Can't mount proc on /newroot/proc: Operation not permitted", reproduced
 * with the same mounts and `setpriv` on Debian 12), ProcSubset=pid and ProtectProc (a proc that shows
 * less), ProtectControlGroups (a read-only cgroupfs defeats Delegate=), PrivateDevices and ProtectClock
 * (the GPUs' /dev/nvidia* would be hidden or denied), SystemCallFilter=@system-service (bwrap needs the
 * @mount calls), MemoryDenyWriteExecute (Node's JIT writes code) and PrivateUsers (bwrap makes each
 * unit's user namespace itself). What stays in was checked the same way: NoNewPrivileges (an
 * unprivileged bwrap sets it on itself anyway; it only rules out a setuid bwrap, which then falls back
 * to user namespaces), an empty capability bounding set (a new user namespace starts with a full set of
 * its own), ProtectSystem=strict, ProtectHome, PrivateTmp, ProtectKernelModules and ProtectHostname.
 */
import { execFile } from "node:child_process";
import { chown, mkdir, chmod, writeFile } from "node:fs/promises";
import path from "node:path";

/** What the service runs and as whom. */
export interface AgentServiceSpec {
  /** The dedicated system user (default `gpu-agent`). */
  user: string;
  /** Absolute data directory (default /var/lib/gpu-agent). */
  dataDir: string;
  /** The agent's command: the absolute path of Node, then of cmd/agent.ts. */
  agentCommand: readonly string[];
  /** More `gpu-agent run` flags (e.g. `--available`, `--reserve-vram-mb`), as separate arguments. */
  runArgs?: readonly string[];
  /** The agent's `--grace-seconds` (default 30): systemd waits for it, and then some, on stop. */
  graceSeconds?: number;
}

/** Defaults of `gpu-agent install`. */
export const INSTALL_DEFAULTS = {
  user: "gpu-agent",
  dataDir: "/var/lib/gpu-agent",
  unitPath: "/etc/systemd/system/gpu-agent.service",
} as const;

/** How long the agent may take on shutdown after its units' grace: the last messages' flush (10 s), a kill's 5 s, margin. */
const STOP_MARGIN_SECONDS = 30;

/**
 * One argument as systemd reads it on an Exec line: double-quoted when it holds spaces or quotes,
 * with `\` and `"` escaped, and `%` (specifiers) and `$` (variables) doubled so they stay literal.
 */
export function systemdQuote(arg: string): string {
  const literal = arg.replace(/%/g, "%%").replace(/\$/g, "$$$$");
  if (/^[A-Za-z0-9_@%+=:,./-]+$/.test(literal)) return literal;
  return `"${literal.replace(/\\/g, "\\\\").replace(/"/g, '\\"')}"`;
}

/** The state directory systemd creates for a data directory under /var/lib, else undefined. */
function stateDirectory(dataDir: string): string | undefined {
  const rel = path.relative("/var/lib", dataDir);
  return rel !== "" && !rel.startsWith("..") && !path.isAbsolute(rel) ? rel : undefined;
}

/** Checks a spec's names and paths; throws with what to change. */
export function checkServiceSpec(spec: AgentServiceSpec): void {
  if (!/^[a-z_][a-z0-9_-]{0,31}$/.test(spec.user)) {
    throw new Error(`--user ${JSON.stringify(spec.user)} is not a system user name: lower-case letters, digits, "_" and "-", at most 32`);
  }
  if (!path.isAbsolute(spec.dataDir)) throw new Error(`--data-dir must be an absolute path, got ${spec.dataDir}`);
  if (/[\s"'\\%$]/.test(spec.dataDir)) throw new Error(`--data-dir must not hold spaces, quotes, "\\", "%" or "$": ${spec.dataDir}`);
  for (const file of spec.agentCommand) {
    if (!path.isAbsolute(file)) throw new Error(`the agent's command must be absolute paths, got ${file}`);
  }
}

/** The unit file for `spec` (see the module comment for what is left out and why). */
export function renderSystemdUnit(spec: AgentServiceSpec): string {
  checkServiceSpec(spec);
  const exec = [...spec.agentCommand, "run", "--data-dir", spec.dataDir, ...(spec.runArgs ?? [])].map(systemdQuote).join(" ");
  const graceSeconds = spec.graceSeconds ?? 30;
  const state = stateDirectory(spec.dataDir);
  const dataDirLines =
    state !== undefined
      ? [
          "# The data directory (node credential, cache, work directories): created by systemd, owned by User=, 0700.",
          `StateDirectory=${state}`,
          "StateDirectoryMode=0700",
        ]
      : [
          "# The data directory (node credential, cache, work directories), made 0700 and owned by User= by gpu-agent install;",
          "# the only place the agent writes besides its private /tmp.",
          `ReadWritePaths=${spec.dataDir}`,
        ];
  return [
    "# Written by gpu-agent install. Change it with `systemctl edit` (a drop-in, which survives a reinstall).",
    "[Unit]",
    "Description=GPU-Agent node agent (runs training units for the control plane)",
    "After=network-online.target",
    "Wants=network-online.target",
    "# Not enrolled yet: nothing to start (run gpu-agent enroll first, as the printed steps say).",
    `ConditionPathExists=${spec.dataDir}/node.json`,
    "",
    "[Service]",
    "Type=simple",
    `User=${spec.user}`,
    `ExecStart=${exec}`,
    "Restart=on-failure",
    "RestartSec=10s",
    "# SIGTERM to the agent alone: it stops taking units and gives running ones their grace period (--grace-seconds);",
    "# whatever is left in the service's cgroup afterwards (a unit's escaped child) is SIGKILLed. KillMode=control-group",
    "# would SIGTERM every unit at once, with no grace.",
    "KillMode=mixed",
    `TimeoutStopSec=${graceSeconds + STOP_MARGIN_SECONDS}`,
    "# A cgroup subtree of its own, so the agent can give each unit memory, CPU and process limits (cgroup v2).",
    "Delegate=yes",
    "UMask=0077",
    ...dataDirLines,
    "",
    "# Hardening that bubblewrap (the units' sandbox) works under.",
    "NoNewPrivileges=yes",
    "CapabilityBoundingSet=",
    "ProtectSystem=strict",
    "ProtectHome=yes",
    "PrivateTmp=yes",
    "ProtectKernelModules=yes",
    "ProtectHostname=yes",
    "RestrictSUIDSGID=yes",
    "RestrictRealtime=yes",
    "LockPersonality=yes",
    "# AF_NETLINK: bubblewrap brings up each unit's loopback through it.",
    "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6 AF_NETLINK",
    "# Left out on purpose, because each breaks the sandbox or the GPUs:",
    "#   RestrictNamespaces=            bubblewrap creates user, mount, PID, network, IPC and UTS namespaces",
    "#   ProtectKernelTunables=yes      mounts over /proc/sys: a user namespace may then not mount a new /proc",
    "#   ProtectKernelLogs=yes          mounts over /proc/kmsg: same",
    "#   ProcSubset=pid, ProtectProc=   a /proc that shows less: same",
    "#   ProtectControlGroups=yes       a read-only cgroupfs: no per-unit limits in the delegated cgroup",
    "#   PrivateDevices=yes, ProtectClock=yes   hide or deny /dev/nvidia*",
    "#   SystemCallFilter=@system-service        bubblewrap needs mount, umount2 and pivot_root",
    "#   MemoryDenyWriteExecute=yes     Node's JIT compiler writes executable code",
    "#   PrivateUsers=yes               bubblewrap gives each unit its own user namespace",
    "",
    "[Install]",
    "WantedBy=multi-user.target",
    "",
  ].join("\n");
}

/** What `gpu-agent install` needs besides the spec. */
export interface InstallOptions {
  spec: AgentServiceSpec;
  /** Where the unit file goes (default /etc/systemd/system/gpu-agent.service). */
  unitPath: string;
  /** The control plane's URL, for the printed enroll step. */
  url?: string;
  /** Print, write nothing. */
  dryRun: boolean;
}

/** What install did (or, dry, would do), for the command to print. */
export interface InstallResult {
  unit: string;
  /** The steps the owner takes next, as lines to print. */
  nextSteps: string[];
  /** Things the owner should know (e.g. files a hardening option hides). */
  warnings: string[];
}

function run(file: string, args: readonly string[]): Promise<{ ok: boolean; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(file, [...args], { timeout: 30_000 }, (err, stdout, stderr) => resolve({ ok: err === null, stdout, stderr }));
  });
}

/** The user's uid and primary gid, or undefined when there is no such user. */
async function userIds(user: string): Promise<{ uid: number; gid: number } | undefined> {
  const uid = await run("id", ["-u", user]);
  const gid = await run("id", ["-g", user]);
  if (!uid.ok || !gid.ok) return undefined;
  return { uid: Number(uid.stdout.trim()), gid: Number(gid.stdout.trim()) };
}

/**
 * Writes the unit: creates the system user when it is missing (useradd, no login, no home of its own),
 * the data directory (0700, the user's: enroll writes node.json there before the first start), then the
 * unit file. Needs root unless `dryRun`.
 */
export async function installAgentService(opts: InstallOptions): Promise<InstallResult> {
  const { spec } = opts;
  const unit = renderSystemdUnit(spec);
  const warnings: string[] = [];
  // ProtectHome=yes hides these from the service: an agent installed there would not start.
  const hidden = spec.agentCommand.filter((f) => /^\/(home|root|run\/user)(\/|$)/.test(f));
  if (hidden.length > 0) {
    const message = `${hidden.join(" and ")} lie under /home, /root or /run/user, which ProtectHome= hides from the service: install the agent under /opt (docs/run-a-node.md)`;
    if (!opts.dryRun) throw new Error(message);
    warnings.push(message);
  }
  if (!opts.dryRun) {
    if (process.getuid?.() !== 0) throw new Error("gpu-agent install writes a system service and creates a user: run it as root (sudo), or with --dry-run");
    let ids = await userIds(spec.user);
    if (ids === undefined) {
      const made = await run("useradd", ["--system", "--user-group", "--no-create-home", "--home-dir", spec.dataDir, "--shell", "/usr/sbin/nologin", spec.user]);
      if (!made.ok) throw new Error(`could not create the user ${spec.user}: ${made.stderr.trim()}`);
      ids = await userIds(spec.user);
      if (ids === undefined) throw new Error(`useradd reported success but ${spec.user} does not exist`);
    }
    await mkdir(spec.dataDir, { recursive: true, mode: 0o700 });
    await chown(spec.dataDir, ids.uid, ids.gid);
    await chmod(spec.dataDir, 0o700);
    await mkdir(path.dirname(opts.unitPath), { recursive: true });
    await writeFile(opts.unitPath, unit, { mode: 0o644 });
  }
  const service = path.basename(opts.unitPath, ".service");
  const agent = spec.agentCommand.map(systemdQuote).join(" ");
  const url = opts.url ?? "<control plane URL>";
  return {
    unit,
    warnings,
    nextSteps: [
      opts.dryRun ? `Would write ${opts.unitPath} (dry run: nothing written).` : `Wrote ${opts.unitPath}; user ${spec.user}, data directory ${spec.dataDir} (0700).`,
      "Next:",
      "  1. Enroll once, as the agent's user, with the one-time token from the operator:",
      `       sudo -u ${spec.user} ${agent} enroll --url ${url} --token <TOKEN> --data-dir ${spec.dataDir}`,
      "  2. Start it now and at every boot:",
      "       sudo systemctl daemon-reload",
      `       sudo systemctl enable --now ${service}`,
      "  3. Check on it:",
      `       sudo ${agent} status --data-dir ${spec.dataDir}`,
      `       journalctl -u ${service} -f`,
    ],
  };
}
