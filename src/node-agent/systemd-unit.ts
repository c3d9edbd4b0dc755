/**
 * `gpu-agent install`: the systemd service that runs the agent on an owner's machine, and the few steps
 * around it (a private data directory; a system user when the owner asks for one). `renderSystemdUnit`
 * is pure; the unit file it writes carries its own comments, so an owner reading it learns why each line
 * is there.
 *
 * Root by default. Only an agent that is root gives each unit a host user id no other running unit
 * shares (unit-sandbox.ts: bwrap as root without a user namespace, then setpriv drops to the unit's uid);
 * an agent run as a user of its own (`--user NAME`) has bwrap make a user namespace per unit, and outside
 * them every unit has that user's uid. So the service runs as root, but keeps of root's capabilities only
 * AGENT_CAPABILITIES, as its bounding set: neither the agent nor anything it starts can ever hold another.
 * The list was found by running the real sandbox path under `setpriv --bounding-set` with one capability
 * less at a time (and a trace of the kernel's capability checks for candidates);
 * test/node-agent/systemd-unit.test.ts runs it under exactly the rendered list, and without each one.
 *
 * Hardening and bubblewrap. A `--user` agent's bwrap (not setuid) needs unprivileged user namespaces and
 * must mount a fresh /proc inside them. The kernel lets a user namespace mount proc only when the proc it
 * can already see is "fully visible": no locked mount over any of its files. So these systemd options
 * stay out, each for the reason given in the rendered file: RestrictNamespaces (bwrap creates
 * namespaces), ProtectKernelTunables and ProtectKernelLogs (they mount over /proc/sys and /proc/kmsg;
 * bwrap then fails "Can't mount proc on /newroot/proc: Operation not permitted", reproduced with the same
 * mounts and `setpriv` on Debian 12), ProcSubset=pid and ProtectProc (a proc that shows less),
 * ProtectControlGroups (a read-only cgroupfs defeats Delegate=), PrivateDevices and ProtectClock (the
 * GPUs' /dev/nvidia* would be hidden or denied), SystemCallFilter=@system-service (bwrap needs the
 * @mount calls), MemoryDenyWriteExecute (Node's JIT writes code), PrivateUsers (bwrap makes each unit's
 * user namespace itself) and ProtectHostname (its seccomp rule makes sethostname fail with EPERM even in
 * a new UTS namespace, and bwrap --hostname then fails "Can't set hostname"; reproduced with that rule
 * alone). What stays in: NoNewPrivileges (an unprivileged bwrap sets it on itself anyway; it only rules
 * out a setuid bwrap, which then falls back to user namespaces), the capability bounding set (root:
 * AGENT_CAPABILITIES; a user: empty, since a new user namespace starts with a full set of its own),
 * ProtectSystem=strict, ProtectHome, PrivateTmp and ProtectKernelModules.
 */
import { execFile } from "node:child_process";
import { chown, mkdir, chmod, writeFile } from "node:fs/promises";
import path from "node:path";

/** What the service runs and as whom. */
export interface AgentServiceSpec {
  /**
   * A system user to run the agent as (`--user`), instead of root with AGENT_CAPABILITIES; its units then
   * share that user's uid outside their namespaces.
   */
  user?: string;
  /** Absolute data directory (default /var/lib/gpu-agent). */
  dataDir: string;
  /** The agent's command: the absolute path of Node, then of cmd/agent.ts. */
  agentCommand: readonly string[];
  /** More `gpu-agent run` flags (e.g. `--available`, `--reserve-vram-mb`), as separate arguments. */
  runArgs?: readonly string[];
  /** The agent's `--grace-seconds` (default 30): systemd waits for it, and then some, on stop. */
  graceSeconds?: number;
}

/**
 * The capabilities a root agent keeps (the service's CapabilityBoundingSet), each with the reason the
 * unit file gives. Tried and not needed: CAP_DAC_READ_SEARCH (it reads outputs, but only DAC_OVERRIDE
 * removes a work directory the unit locked), CAP_FOWNER, CAP_SYS_CHROOT (bwrap pivots the root instead),
 * CAP_SYS_PTRACE (the memory watcher's /proc/<init>/root/tmp belongs to a root process with no
 * capabilities), CAP_SYS_RESOURCE (prlimit only lowers limits) and CAP_IPC_LOCK (Node asks, and does
 * without).
 */
export const AGENT_CAPABILITIES: readonly { name: string; why: string }[] = [
  { name: "CAP_SYS_ADMIN", why: "bubblewrap creates each unit's namespaces and mounts its file system" },
  { name: "CAP_NET_ADMIN", why: "bubblewrap brings up the loopback of each unit's network namespace" },
  { name: "CAP_SETUID", why: "setpriv switches each unit to a user id of its own" },
  { name: "CAP_SETGID", why: "setpriv switches each unit to a group id of its own, with no other groups" },
  { name: "CAP_SETPCAP", why: "setpriv empties each unit's capability bounding set (without it, silently not)" },
  { name: "CAP_CHOWN", why: "each unit's work directory is given to its user id" },
  { name: "CAP_DAC_OVERRIDE", why: "the agent reads a unit's outputs and removes its work directory, whatever modes the unit set" },
  { name: "CAP_KILL", why: "a stopped unit's processes (its uid) get SIGTERM, to save their work, before the sandbox is killed" },
];

/** Defaults of `gpu-agent install`. */
export const INSTALL_DEFAULTS = {
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
  if (spec.user !== undefined && !/^[a-z_][a-z0-9_-]{0,31}$/.test(spec.user)) {
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
  const owner = spec.user ?? "root";
  const dataDirLines =
    state !== undefined
      ? [
          `# The data directory (node credential, cache, work directories): created by systemd, owned by ${owner}, 0700.`,
          `StateDirectory=${state}`,
          "StateDirectoryMode=0700",
        ]
      : [
          `# The data directory (node credential, cache, work directories), made 0700 and owned by ${owner} by gpu-agent install;`,
          "# the only place the agent writes besides its private /tmp.",
          `ReadWritePaths=${spec.dataDir}`,
        ];
  const userLines =
    spec.user === undefined
      ? [
          "# Root, because only a root agent gives each unit a user id no other running unit shares (a user of its own,",
          "# gpu-agent install --user, gives every unit that user's id outside its namespaces); but with only the",
          "# capabilities named below (CapabilityBoundingSet=).",
        ]
      : [
          "# A user of its own (gpu-agent install --user): its units share this user's id outside their namespaces.",
          `User=${spec.user}`,
        ];
  const capabilityLines =
    spec.user === undefined
      ? [
          "# All the agent keeps of root's capabilities, for itself and everything it starts, one a line:",
          ...AGENT_CAPABILITIES.flatMap((c) => [`# ${c.name}: ${c.why}.`, `CapabilityBoundingSet=${c.name}`]),
        ]
      : ["# No capabilities: bubblewrap gives each unit a user namespace, which has a full set of its own.", "CapabilityBoundingSet="];
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
    ...userLines,
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
    ...capabilityLines,
    "ProtectSystem=strict",
    "ProtectHome=yes",
    "PrivateTmp=yes",
    "ProtectKernelModules=yes",
    "RestrictSUIDSGID=yes",
    "RestrictRealtime=yes",
    "LockPersonality=yes",
    "# AF_NETLINK: bubblewrap brings up each unit's loopback through it.",
    "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6 AF_NETLINK",
    "# Left out on purpose, because each breaks the sandbox or the GPUs:",
    "#   RestrictNamespaces=            bubblewrap creates user, mount, PID, network, IPC and UTS namespaces",
    "#   ProtectKernelTunables=yes      mounts over /proc/sys: a user namespace (--user) may then not mount a new /proc",
    "#   ProtectKernelLogs=yes          mounts over /proc/kmsg: same",
    "#   ProcSubset=pid, ProtectProc=   a /proc that shows less: same",
    "#   ProtectControlGroups=yes       a read-only cgroupfs: no per-unit limits in the delegated cgroup",
    "#   PrivateDevices=yes, ProtectClock=yes   hide or deny /dev/nvidia*",
    "#   SystemCallFilter=@system-service        bubblewrap needs mount, umount2 and pivot_root",
    "#   MemoryDenyWriteExecute=yes     Node's JIT compiler writes executable code",
    "#   PrivateUsers=yes               bubblewrap gives each unit its own user namespace",
    "#   ProtectHostname=yes            its seccomp rule denies sethostname even in a new UTS namespace: bubblewrap",
    "#                                  cannot name the unit's (and fails)",
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

/** root's ids: the owner of the data directory of an agent run as root. */
const ROOT_IDS = { uid: 0, gid: 0 } as const;

/** The user's uid and primary gid, or undefined when there is no such user. */
async function userIds(user: string): Promise<{ uid: number; gid: number } | undefined> {
  const uid = await run("id", ["-u", user]);
  const gid = await run("id", ["-g", user]);
  if (!uid.ok || !gid.ok) return undefined;
  return { uid: Number(uid.stdout.trim()), gid: Number(gid.stdout.trim()) };
}

/** The ids of `--user`, made a system user (useradd: no login, no home of its own) when missing. */
async function ensureSystemUser(user: string, dataDir: string): Promise<{ uid: number; gid: number }> {
  const existing = await userIds(user);
  if (existing !== undefined) return existing;
  const made = await run("useradd", ["--system", "--user-group", "--no-create-home", "--home-dir", dataDir, "--shell", "/usr/sbin/nologin", user]);
  if (!made.ok) throw new Error(`could not create the user ${user}: ${made.stderr.trim()}`);
  const ids = await userIds(user);
  if (ids === undefined) throw new Error(`useradd reported success but ${user} does not exist`);
  return ids;
}

/**
 * Writes the unit: the data directory (0700, root's, or with `--user` that user's, created when missing:
 * enroll writes node.json there before the first start), then the unit file. Needs root unless `dryRun`.
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
    if (process.getuid?.() !== 0) throw new Error("gpu-agent install writes a system service: run it as root (sudo), or with --dry-run");
    const ids = spec.user === undefined ? ROOT_IDS : await ensureSystemUser(spec.user, spec.dataDir);
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
      opts.dryRun
        ? `Would write ${opts.unitPath} (dry run: nothing written).`
        : `Wrote ${opts.unitPath}; runs as ${spec.user ?? "root (with only the capabilities the unit names)"}, data directory ${spec.dataDir} (0700).`,
      "Next:",
      `  1. Enroll once, as ${spec.user ?? "root"} (the agent's user), with the one-time token from the operator:`,
      `       sudo ${spec.user !== undefined ? `-u ${spec.user} ` : ""}${agent} enroll --url ${url} --token <TOKEN> --data-dir ${spec.dataDir}`,
      "  2. Start it now and at every boot:",
      "       sudo systemctl daemon-reload",
      `       sudo systemctl enable --now ${service}`,
      "  3. Check on it:",
      `       sudo ${agent} status --data-dir ${spec.dataDir}`,
      `       journalctl -u ${service} -f`,
    ],
  };
}
