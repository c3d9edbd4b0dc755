/**
 * The hostile-package suite (issue 14, point 5): packages written as a hostile customer would write them,
 * uploaded through the real API of a real control plane (on PostgreSQL), placed on a real agent process
 * (`gpu-agent run`, sandbox on) that runs them on this machine. Each package tries to get out of its sandbox
 * and writes what it reached into its output; the test reads that back as an artifact through the API, and
 * checks from the host what no unit can hide: files it wrote, connections it made, processes it left.
 *
 * The walls hold when the unit reached nothing, and the customer sees an ordinary outcome: the prober's job
 * completes, a memory hog fails as its own code's failure, a cancelled job is cancelled.
 *
 * CI runs as root, so the agent runs as root and each unit has a host uid of its own. Run as another user,
 * the agent's sandbox makes a user namespace instead and every unit shares the agent's uid outside it: the
 * cases whose titles say so then find a unit's processes by their command line only.
 *
 * One control plane and one agent serve every case (sharing them weakens nothing: the cases are different
 * customers, as on a real node), and the cases run at the same time; only the fork bomb runs alone, after
 * them, so that its churn cannot slow another case's kill past its bound.
 */
import assert from "node:assert/strict";
import { createHash, randomUUID } from "node:crypto";
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import { readFile } from "node:fs/promises";
import net from "node:net";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { processesOfUid, zipOf } from "../node-agent/helpers.ts";
import { createMigratedTestDatabaseUrl } from "../support/postgres.ts";
import type { TestAgent, TestControlPlane } from "../support/control-plane.ts";
import { adminRequest, createCustomer, request, startTestAgent, startTestControlPlane, uploadResource, waitFor } from "../support/control-plane.ts";

type Json = Record<string, unknown>;
type Auth = Record<string, string>;

const asRoot = process.getuid?.() === 0;
/** Said in the titles of the cases that find a unit's processes on the host. */
const processesFoundBy = asRoot
  ? "by its uid and its command line"
  : "by its command line only (agent not root: units share its uid outside their sandbox)";
const TERMINAL = ["completed", "failed", "cancelled", "expired"];

// ------------------------------------------------------------------ the packages

/**
 * Another customer's unit with secrets in its environment, its dataset, its home and its /tmp; it reports
 * progress once they are in place and then sleeps until its job is cancelled.
 */
const VICTIM_PY = `
import json, os, sys, time
secrets = json.load(open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "secrets.json")))
if os.environ.get("VICTIM_SECRET") != secrets["env"]:
    os.execve(sys.executable, [sys.executable] + sys.argv, dict(os.environ, VICTIM_SECRET=secrets["env"]))
with open(os.path.join(os.environ["HOME"], "victim-home.txt"), "w") as f:
    f.write(secrets["home"])
with open("/tmp/victim-tmp.txt", "w") as f:
    f.write(secrets["tmp"])
print("@@gpu-agent " + json.dumps({"progress": 0.5}), flush=True)
while True:
    time.sleep(60)
`;

/**
 * Tries every way out it is told of (targets.json, written by the test: the victim's host pids and
 * paths, the agent's and the control plane's data directories, the host's listeners) and a few it finds
 * by itself (every process and file it can see), and writes what each attempt gave into its output.
 */
const PROBER_PY = `
import ctypes, errno, json, os, socket, subprocess

targets = json.load(open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "targets.json")))

def outcome(attempt):
    try:
        value = attempt()
    except OSError as e:
        return type(e).__name__ + ":" + errno.errorcode.get(e.errno, str(e.errno))
    return "ok" if value is None else "ok:" + str(value)[:4096]

def read(p):
    with open(p, "rb") as f:
        return f.read(65536).decode("utf-8", "replace")

def write(p):
    with open(p, "w") as f:
        f.write("written by a hostile unit")

def write_making_dirs(p):
    os.makedirs(os.path.dirname(p), exist_ok=True)
    write(p)

def connect(port, host="127.0.0.1"):
    socket.create_connection((host, port), timeout=3).close()

def open_device(p):
    os.close(os.open(p, os.O_RDWR))

def process(pid):
    base = "/proc/%d/" % pid
    return {
        "environ": outcome(lambda: read(base + "environ")),
        "cmdline": outcome(lambda: read(base + "cmdline")),
        "cwd": outcome(lambda: os.readlink(base + "cwd")),
        "root": outcome(lambda: sorted(os.listdir(base + "root"))),
        "dataset": outcome(lambda: sorted(os.listdir(base + "root/unit/dataset"))),
        "signal": outcome(lambda: os.kill(pid, 0)),
    }

def own_user_namespace():
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(0x10000000) != 0:
        raise OSError(ctypes.get_errno(), "unshare(CLONE_NEWUSER)")

def unshare_command():
    done = subprocess.run(["unshare", "--user", "--map-root-user", "id", "-u"], capture_output=True, text=True)
    return [done.returncode, (done.stdout + done.stderr).strip()]

def readable_files():
    found = {}
    for top, dirs, files in os.walk("/"):
        if top == "/":
            dirs[:] = [d for d in dirs if d not in ("proc", "sys", "usr", "dev")]
        for name in files:
            p = os.path.join(top, name)
            if not os.path.islink(p):
                found[p] = outcome(lambda: read(p))
    return found

visible = sorted(int(p) for p in os.listdir("/proc") if p.isdigit())
report = {
    "uid": os.getuid(),
    "pid": os.getpid(),
    "visible_pids": visible,
    "visible_processes": {str(pid): process(pid) for pid in visible if pid != os.getpid()},
    "own_process": {"cmdline": outcome(lambda: read("/proc/self/cmdline")), "environ": outcome(lambda: read("/proc/self/environ"))},
    "victim_processes": {str(pid): process(pid) for pid in targets["victim_pids"]},
    "agent_process": outcome(lambda: os.kill(targets["agent_pid"], 0)),
    "read": {name: outcome(lambda p=p: read(p)) for name, p in targets["read"].items()},
    "list": {name: outcome(lambda p=p: sorted(os.listdir(p))) for name, p in targets["list"].items()},
    "interfaces": sorted(name for _, name in socket.if_nameindex()),
    "connect": {name: outcome(lambda port=port: connect(port)) for name, port in targets["ports"].items()},
    "connect_outside": outcome(lambda: connect(80, "192.0.2.1")),
    "devices": sorted(os.listdir("/dev")),
    "cpus": {"count": os.cpu_count(), "pinned_to": sorted(os.sched_getaffinity(0))},
    "kernel": {
        "own_user_namespace": outcome(own_user_namespace),
        "unshare_command": unshare_command(),
        "widen_affinity": outcome(lambda: os.sched_setaffinity(0, range(os.cpu_count()))),
        "pinned_after": sorted(os.sched_getaffinity(0)),
    },
    "open_devices": {p: outcome(lambda p=p: open_device(p)) for p in targets["devices"]},
    "files": readable_files(),
}
# Writes come last, so the file list above holds nothing the unit made itself.
report["write"] = {
    "package": outcome(lambda: write("/unit/package/evil.py")),
    "dataset": outcome(lambda: write("/unit/dataset/evil.csv")),
    **{name: outcome(lambda p=p: write_making_dirs(p)) for name, p in targets["write"].items()},
}
with open(os.path.join(os.environ["GPU_AGENT_OUTPUT_DIR"], "probe-report.json"), "w") as f:
    json.dump(report, f)
print("probed", flush=True)
`;

/**
 * Double-forks a child that leaves the unit's session (setsid), ignores SIGTERM and SIGHUP, and would
 * write a marker into the unit's output and home a second after the unit's entry point is gone; writes
 * both processes into its output, logs them, and then ends (argv "completes") or waits to be cancelled. Every process carries the
 * token in its command line (the survivor also "late-writer"), so the host can find them.
 */
const SURVIVOR_PY = `
import json, os, sys, time
mode, token = sys.argv[1], sys.argv[2]
output = os.environ["GPU_AGENT_OUTPUT_DIR"]
LATER = r'''
import os, signal, sys, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
signal.signal(signal.SIGHUP, signal.SIG_IGN)
main, ready = int(sys.argv[1]), int(sys.argv[2])
os.write(ready, ("%d %d" % (os.getpid(), os.getsid(0))).encode())
os.close(ready)
while os.path.exists("/proc/%d" % main):
    time.sleep(0.05)
time.sleep(1)
for path in sys.argv[3:5]:
    with open(path, "w") as f:
        f.write("outlived its unit")
'''
read_end, write_end = os.pipe()
main = os.getpid()
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        os.set_inheritable(write_end, True)
        os.execv(sys.executable, [sys.executable, "-c", LATER, str(main), str(write_end),
                                  os.path.join(output, "late-marker"), "/unit/late-marker", "late-writer", token])
    os._exit(0)
os.close(write_end)
survivor_pid, survivor_sid = map(int, os.read(read_end, 100).split())
os.wait()
report = {"uid": os.getuid(), "main_pid": main, "main_sid": os.getsid(0), "survivor_pid": survivor_pid, "survivor_sid": survivor_sid}
with open(os.path.join(output, "survivor-report.json"), "w") as f:
    json.dump(report, f)
print("survivor started " + json.dumps(report), flush=True)
if mode == "wait":
    while True:
        time.sleep(60)
`;

/** Holds as much memory as it can get, 8 MiB at a time (written, so resident), up to 1 GiB, then keeps it. */
const MEMORY_HOG_PY = `
import time
hoard = []
for i in range(128):
    hoard.append(bytearray(b"x" * (8 * 1024 * 1024)))
print("kept 1 GiB", flush=True)
while True:
    time.sleep(60)
`;

/**
 * A shell that forks as fast as it can, every child holding on (reading a pipe that never closes: small,
 * so that the process limit, not the memory limit, is what stops it) until its fork is refused; then the
 * entry point forks too until it is refused, writes what it saw and ends. The token (argv) is in every
 * child's command line, so the host can find them.
 */
const FORK_BOMB_PY = `
import errno, json, os, subprocess, sys, time
started = time.monotonic()
hold, keep_open = os.pipe()
# Its children inherit its stderr: a file, since a pipe would not end while they live.
with open("/tmp/bomb-stderr", "w+b") as stderr:
    subprocess.run(["/bin/sh", "-c", "exec 3<&0; while :; do (read line <&3) & done", sys.argv[1]], stdin=hold, stderr=stderr, timeout=90)
    stderr.seek(0)
    bomb_error = stderr.read()
refused = None
for _ in range(16):
    try:
        child = os.fork()
    except OSError as e:
        refused = type(e).__name__ + ":" + errno.errorcode.get(e.errno, str(e.errno))
        break
    if child == 0:
        os.read(hold, 1)
        os._exit(0)
report = {"uid": os.getuid(), "bomb_error": bomb_error.decode(errors="replace").strip()[-200:], "fork_refused": refused,
          "visible_processes": sum(1 for p in os.listdir("/proc") if p.isdigit()), "seconds": time.monotonic() - started}
with open(os.environ["GPU_AGENT_OUTPUT_DIR"] + "/bomb-report.json", "w") as f:
    json.dump(report, f)
print("bomb done", flush=True)
`;

// ------------------------------------------------------------------ the host's view

/** Host pids of the live processes whose command line contains every one of `words`. */
function processesWith(...words: string[]): number[] {
  const pids: number[] = [];
  for (const name of readdirSync("/proc")) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const cmdline = readFileSync(`/proc/${name}/cmdline`, "utf8").split("\0").join(" ");
      if (!words.every((w) => cmdline.includes(w))) continue;
      if (/^State:\s+Z/m.test(readFileSync(`/proc/${name}/status`, "utf8"))) continue;
      pids.push(Number(name));
    } catch {
      // It ended while we looked.
    }
  }
  return pids;
}

/** True when none of the unit's processes is left: none with its token, and as root none of its uid. */
function unitGone(token: string, uid: number | undefined): boolean {
  return processesWith(token).length === 0 && (!asRoot || uid === undefined || processesOfUid(uid).length === 0);
}

describe("hostile packages on a real agent: every unit stays in its sandbox", function () {
  this.timeout(180_000);
  let cp: TestControlPlane;
  let agent: TestAgent;
  let databasePort: number;
  /** A listener on the host's loopback that no unit may reach. */
  let listener: net.Server;
  let listenerConnections = 0;

  const jobOf = async (jobId: string, auth: Auth) => (await request(cp, "GET", `/api/v1/customer/training-jobs/${jobId}`, { headers: auth })).body;
  const unitsOf = async (jobId: string, auth: Auth) =>
    (await request(cp, "GET", `/api/v1/customer/training-jobs/${jobId}/compute-units`, { headers: auth })).body["data"] as Json[];
  const agentLog = () => agent.output().split("\n").slice(-60).join("\n");
  const ended = (jobId: string, auth: Auth) =>
    waitFor(
      `job ${jobId} to end`,
      async () => {
        const job = await jobOf(jobId, auth);
        return TERMINAL.includes(job["status"] as string) ? job : undefined;
      },
      90_000,
      agentLog,
    );
  const cancel = async (jobId: string, auth: Auth) => {
    const res = await request(cp, "POST", `/api/v1/customer/training-jobs/${jobId}/cancel`, { headers: auth, body: {} });
    assert.equal(res.status, 200, JSON.stringify(res.body));
  };

  /** A new customer's job of one cpu stage (`stage`: its args and limits) running `train.py` of `files`, on `dataset`. */
  async function submit(name: string, files: Record<string, string>, stage: Json, dataset = Buffer.from("x,y\n1,2\n")) {
    const { apiKey } = await createCustomer(cp, 100_000);
    const auth = { "x-api-key": apiKey };
    const uploadedDataset = await uploadResource(cp, apiKey, "datasets", `${name}-data`, dataset, { format: "csv" });
    const pkg = await zipOf({ ...files, "gpu-agent.json": JSON.stringify({ stages: [{ name: "work", kind: "cpu", ...stage }] }) });
    const uploaded = await uploadResource(cp, apiKey, "training-packages", `${name}-pkg`, pkg, { entrypoint: "train.py" });
    const created = await request(cp, "POST", "/api/v1/customer/training-jobs", {
      headers: auth,
      body: { name, dataset_id: uploadedDataset["id"], training_package_id: uploaded["id"], required_vram_mb: 0, required_disk_mb: 256, max_runtime_seconds: 120 },
    });
    assert.equal(created.status, 201, JSON.stringify(created.body));
    return { jobId: created.body["id"] as string, auth };
  }

  /** The job's only unit once the agent runs it. */
  const runningUnit = (jobId: string, auth: Auth) =>
    waitFor(
      "the unit to run",
      async () => {
        const [unit] = await unitsOf(jobId, auth);
        return unit?.["status"] === "running" ? unit : undefined;
      },
      60_000,
      agentLog,
    );

  const artifactsOf = async (jobId: string, auth: Auth) =>
    (await request(cp, "GET", `/api/v1/customer/training-jobs/${jobId}/artifacts`, { headers: auth })).body["data"] as Json[];
  const artifactNames = async (jobId: string, auth: Auth) => (await artifactsOf(jobId, auth)).map((a) => a["name"]);

  /** An artifact of the job, downloaded through a download URL as the customer would. */
  async function artifact(jobId: string, auth: Auth, name: string): Promise<Buffer> {
    const list = await artifactsOf(jobId, auth);
    const found = list.find((a) => a["name"] === name);
    assert.ok(found, `artifact ${name} is listed: ${JSON.stringify(list.map((a) => a["name"]))}`);
    const minted = await request(cp, "POST", `/api/v1/customer/training-jobs/${jobId}/artifacts/${found["id"] as string}/download-url`, { headers: auth, body: {} });
    const res = await fetch(minted.body["download_url"] as string);
    assert.equal(res.status, 200);
    return Buffer.from(await res.arrayBuffer());
  }

  // ---------------------------------------------------------------- the cases, started together

  interface ProbeOutcome {
    report: Json;
    reportText: string;
    log: string;
    job: Json;
    unit: Json;
    victimUnitWhileProbed: Json;
    victimJob: Json;
    victimUnit: Json;
    victimPids: number[];
    secrets: Record<string, string>;
    hostFiles: Record<string, string>;
  }

  /**
   * Another customer's victim runs and holds its secrets; then the prober, knowing the victim's host pids
   * and paths, tries them all while the victim still runs; then the victim is cancelled.
   */
  async function probeBesideVictim(): Promise<ProbeOutcome> {
    const victimToken = `victim-${randomUUID()}`;
    const secrets = { env: `env-secret-${randomUUID()}`, home: `home-secret-${randomUUID()}`, tmp: `tmp-secret-${randomUUID()}`, dataset: `dataset-secret-${randomUUID()}` };
    const victimDataset = Buffer.from(`secret\n${secrets.dataset}\n`);
    const victim = await submit("victim", { "train.py": VICTIM_PY, "secrets.json": JSON.stringify(secrets) }, { args: [victimToken] }, victimDataset);
    const victimUnit = await runningUnit(victim.jobId, victim.auth);
    const victimWorkDir = join(agent.dataDir, "work", `${victimUnit["id"] as string}-${victimUnit["attempt"] as number}`);
    // The secrets are really there: the host (root, or the agent's own user) reads them.
    const victimPids = await waitFor(
      "the victim to hold its secrets",
      async () => {
        const pids = processesWith(victimToken);
        const holding = pids.some((pid) => {
          try {
            return readFileSync(`/proc/${pid}/environ`, "utf8").includes(secrets.env);
          } catch {
            return false;
          }
        });
        return holding && existsSync(join(victimWorkDir, "victim-home.txt")) ? pids : undefined;
      },
      30_000,
      agentLog,
    );
    const datasetFile = readdirSync(join(victimWorkDir, "dataset"))[0] as string;
    const nodeFile = join(agent.dataDir, "node.json");
    // Where the prober will try to write on the host: its /tmp, the agent's data directory, / and /usr.
    const hostFiles = {
      host_tmp: join(tmpdir(), `gpu-agent-hostile-${randomUUID()}`),
      agent_data_dir: join(agent.dataDir, "work", `planted-${randomUUID()}`),
      host_root: `/gpu-agent-hostile-${randomUUID()}`,
      host_usr: `/usr/lib/gpu-agent-hostile-${randomUUID()}`,
    };
    const targets = {
      victim_pids: victimPids,
      agent_pid: agent.pid,
      read: {
        victim_dataset: join(victimWorkDir, "dataset", datasetFile),
        victim_home_file: join(victimWorkDir, "victim-home.txt"),
        victim_package: join(victimWorkDir, "package", "secrets.json"),
        node_credential: nodeFile,
        cached_dataset: join(agent.dataDir, "cache", createHash("sha256").update(victimDataset).digest("hex")),
      },
      list: {
        victim_work_dir: victimWorkDir,
        agent_data_dir: agent.dataDir,
        input_cache: join(agent.dataDir, "cache"),
        control_plane_data_dir: cp.dataDir,
        control_plane_blobs: join(cp.dataDir, "blobs"),
      },
      ports: {
        host_listener: (listener.address() as AddressInfo).port,
        control_plane: Number(new URL(cp.url).port),
        database: databasePort,
      },
      devices: ["/dev/nvidia0", "/dev/nvidiactl", "/dev/nvidia-uvm", "/dev/sda", "/dev/vda", "/dev/nvme0n1", "/dev/mem", "/dev/kmem", "/dev/port", "/dev/kmsg"],
      write: hostFiles,
    };
    const prober = await submit("prober", { "train.py": PROBER_PY, "targets.json": JSON.stringify(targets) }, {});
    const job = await ended(prober.jobId, prober.auth);
    const [unit] = await unitsOf(prober.jobId, prober.auth);
    const [victimUnitWhileProbed] = await unitsOf(victim.jobId, victim.auth);
    await cancel(victim.jobId, victim.auth);
    const reportText = (await artifact(prober.jobId, prober.auth, "probe-report.json")).toString("utf8");
    const log = (await artifact(prober.jobId, prober.auth, "work.log")).toString("utf8");
    const victimJob = await ended(victim.jobId, victim.auth);
    const [victimUnitAfter] = await unitsOf(victim.jobId, victim.auth);
    const node = JSON.parse(await readFile(nodeFile, "utf8")) as { node_credential: string };
    return {
      report: JSON.parse(reportText) as Json,
      reportText,
      log,
      job,
      unit: unit as Json,
      victimUnitWhileProbed: victimUnitWhileProbed as Json,
      victimJob,
      victimUnit: victimUnitAfter as Json,
      victimPids,
      secrets: { ...secrets, node_credential: node.node_credential, admin_token: cp.adminToken },
      hostFiles,
    };
  }

  interface SurvivorOutcome {
    job: Json;
    unit: Json;
    report: { uid: number; main_pid: number; main_sid: number; survivor_pid: number; survivor_sid: number };
    /** From the moment the customer saw the unit end (or asked to cancel) until none of its processes was left. */
    goneAfterMs: number;
    workDir: string;
    artifacts: unknown[];
  }

  /** The first line of the unit's log that starts with `prefix`, read through the customer's logs endpoint once it is there. */
  const logLine = (jobId: string, auth: Auth, unitId: string, prefix: string) =>
    waitFor(
      `the unit to log "${prefix}"`,
      async () => {
        const res = await request(cp, "GET", `/api/v1/customer/training-jobs/${jobId}/compute-units/${unitId}/logs`, { headers: auth });
        const text = ((res.body["lines"] ?? []) as Json[]).map((l) => l["text"] as string).find((t) => t.startsWith(prefix));
        return text?.slice(prefix.length);
      },
      30_000,
      agentLog,
    );

  /** A survivor's unit that completes, or that waits and whose job is cancelled once its survivor runs. */
  async function survivor(ending: "completes" | "is cancelled"): Promise<SurvivorOutcome> {
    const token = randomUUID();
    const { jobId, auth } = await submit(`survivor-${ending === "completes" ? "completes" : "cancelled"}`, { "train.py": SURVIVOR_PY }, {
      args: [ending === "completes" ? "completes" : "wait", token],
    });
    let endSeenAt: number;
    if (ending === "is cancelled") {
      const running = await runningUnit(jobId, auth);
      // Its log line says the survivor runs: the moment to cancel.
      await logLine(jobId, auth, running["id"] as string, "survivor started ");
      assert.equal(processesWith(token, "late-writer").length, 1, "the survivor runs on the host");
      endSeenAt = Date.now();
      await cancel(jobId, auth);
    } else {
      await ended(jobId, auth);
      endSeenAt = Date.now();
    }
    const [unit] = (await unitsOf(jobId, auth)) as [Json];
    const workDir = join(agent.dataDir, "work", `${unit["id"] as string}-${unit["attempt"] as number}`);
    // As root the kept work directory belongs to the unit's uid: a dying process no longer shows its command line.
    const uid = asRoot ? statSync(workDir).uid : undefined;
    await waitFor("the unit's processes to be gone", async () => (unitGone(token, uid) ? true : undefined), 10_000, agentLog);
    const goneAfterMs = Date.now() - endSeenAt;
    const job = await ended(jobId, auth);
    // Its outputs come back as artifacts, a cancelled unit's too; its stage's log, work.log, is uploaded last.
    const artifacts = await waitFor(
      "the unit's artifacts",
      async () => {
        const names = await artifactNames(jobId, auth);
        return names.includes("work.log") ? names : undefined;
      },
      30_000,
      agentLog,
    );
    const report = JSON.parse((await artifact(jobId, auth, "survivor-report.json")).toString("utf8")) as SurvivorOutcome["report"];
    if (asRoot) assert.equal(report.uid, uid, "the unit ran as the owner of its work directory");
    return { job, unit, report, goneAfterMs, workDir, artifacts };
  }

  interface HogOutcome {
    job: Json;
    unit: Json;
    debits: Json[];
  }

  async function memoryHog(): Promise<HogOutcome> {
    const { jobId, auth } = await submit("memory-hog", { "train.py": MEMORY_HOG_PY }, { memory_mb: 128 });
    const job = await ended(jobId, auth);
    const [unit] = await unitsOf(jobId, auth);
    const ledger = (await request(cp, "GET", "/api/v1/customer/credits/ledger", { headers: auth })).body["data"] as Json[];
    return { job, unit: unit as Json, debits: ledger.filter((e) => e["kind"] === "debit") };
  }

  /** A case started now and awaited by its tests later: its rejection is their failure, not an unhandled one. */
  const later = <T>(p: Promise<T>): Promise<T> => {
    p.catch(() => {});
    return p;
  };
  let probed: Promise<ProbeOutcome>;
  let hog: Promise<HogOutcome>;
  const survivors = {} as Record<"completes" | "is cancelled", Promise<SurvivorOutcome>>;

  before(async () => {
    const databaseUrl = await createMigratedTestDatabaseUrl();
    databasePort = Number(new URL(databaseUrl).port);
    cp = await startTestControlPlane({ databaseUrl });
    // GPU_AGENT_KEEP_WORK: a unit's work directory stays after it, where a late survivor's marker would show.
    agent = await startTestAgent(cp, { trustLevel: "controlled", maxUnits: 8, env: { GPU_AGENT_KEEP_WORK: "1" } });
    listener = net.createServer((socket) => {
      listenerConnections++;
      socket.destroy();
    });
    await new Promise<void>((resolve) => listener.listen(0, "127.0.0.1", resolve));
    const node = await waitFor(
      "the agent to be online",
      async () => ((await adminRequest(cp, "GET", "/api/v1/admin/nodes"))["data"] as Json[]).find((n) => n["id"] === agent.nodeId && n["state"] === "online"),
      30_000,
      agentLog,
    );
    assert.equal(node["isolation"], "bubblewrap", `the agent runs units in its sandbox: ${String(node["isolation_reason"])}`);
    probed = later(probeBesideVictim());
    hog = later(memoryHog());
    survivors["completes"] = later(survivor("completes"));
    survivors["is cancelled"] = later(survivor("is cancelled"));
  });

  after(async () => {
    await Promise.allSettled([probed, hog, ...Object.values(survivors)]);
    listener?.close();
    await agent?.stop();
    await cp?.stop();
  });

  describe("a prober running beside another customer's unit", () => {
    it("completes as an ordinary job while the victim runs, and its report comes back as an artifact", async () => {
      const { job, unit, victimUnitWhileProbed, report } = await probed;
      assert.equal(job["status"], "completed", String(job["error"]));
      assert.equal(unit["status"], "completed");
      assert.equal(unit["node_id"], agent.nodeId);
      assert.equal(victimUnitWhileProbed["status"], "running", "the victim ran on the same node all along");
      assert.equal(victimUnitWhileProbed["node_id"], agent.nodeId);
      assert.ok(typeof report["uid"] === "number");
    });

    it("sees only its sandbox's init and itself in /proc, not the victim's processes nor the agent's", async () => {
      const { report } = await probed;
      assert.deepEqual(report["visible_pids"], [1, report["pid"]]);
      for (const [pid, tried] of Object.entries(report["victim_processes"] as Record<string, Json>)) {
        assert.deepEqual(
          tried,
          { environ: "FileNotFoundError:ENOENT", cmdline: "FileNotFoundError:ENOENT", cwd: "FileNotFoundError:ENOENT", root: "FileNotFoundError:ENOENT", dataset: "FileNotFoundError:ENOENT", signal: "ProcessLookupError:ESRCH" },
          `victim pid ${pid}`,
        );
      }
      assert.equal(report["agent_process"], "ProcessLookupError:ESRCH");
    });

    it("reads no host path on any command line or environment it can see: its init shows `bwrap --args N -- sh -s`, itself its interpreter and script", async () => {
      const { report } = await probed;
      const seen: Record<string, Json> = { ...(report["visible_processes"] as Record<string, Json>), own: report["own_process"] as Json };
      assert.match(String(seen["1"]?.["cmdline"]), /^ok:[^\x00]*\/bwrap\x00--args\x00\d+\x00--\x00[^\x00]*\/(dash|sh)\x00-s\x00$/);
      assert.match(String(seen["own"]?.["cmdline"]), /^ok:[^\x00]*\/python[^\x00]*\x00\/unit\/package\/train\.py\x00--stage\x00work\x00$/);
      for (const [pid, tried] of Object.entries(seen)) {
        for (const what of ["cmdline", "environ"]) {
          for (const [name, dir] of Object.entries({ "agent's data directory": agent.dataDir, "control plane's data directory": cp.dataDir })) {
            assert.ok(!String(tried[what]).includes(dir), `the ${what} of ${pid} names the ${name}: ${JSON.stringify(tried[what])}`);
          }
        }
      }
    });

    it("reads neither the victim's environment, work directory and dataset, nor the agent's credential, cache or the control plane's data", async () => {
      const { report, reportText, log, secrets } = await probed;
      assert.deepEqual(report["read"], {
        victim_dataset: "FileNotFoundError:ENOENT",
        victim_home_file: "FileNotFoundError:ENOENT",
        victim_package: "FileNotFoundError:ENOENT",
        node_credential: "FileNotFoundError:ENOENT",
        cached_dataset: "FileNotFoundError:ENOENT",
      });
      assert.deepEqual(report["list"], {
        victim_work_dir: "FileNotFoundError:ENOENT",
        agent_data_dir: "FileNotFoundError:ENOENT",
        input_cache: "FileNotFoundError:ENOENT",
        control_plane_data_dir: "FileNotFoundError:ENOENT",
        control_plane_blobs: "FileNotFoundError:ENOENT",
      });
      // Nor anywhere else: every process and every file it could open is in its report, and none holds a secret.
      for (const [name, secret] of Object.entries(secrets)) {
        assert.ok(!reportText.includes(secret), `the report holds no ${name}`);
        assert.ok(!log.includes(secret), `the log holds no ${name}`);
      }
      const files = Object.keys(report["files"] as Json);
      assert.deepEqual(
        files.filter((f) => !f.startsWith("/unit/") && !f.startsWith("/etc/")),
        [],
        "outside its own /unit it opens only the few files of /etc it is given",
      );
      assert.ok(files.includes("/unit/package/train.py") && files.some((f) => f.startsWith("/unit/dataset/")), "the sweep did walk its own files");
    });

    it("reaches no listener of the host (not the test's, the control plane's nor the database's) and nothing outside", async () => {
      const { report } = await probed;
      assert.deepEqual(report["interfaces"], ["lo"]);
      assert.deepEqual(report["connect"], {
        host_listener: "ConnectionRefusedError:ECONNREFUSED",
        control_plane: "ConnectionRefusedError:ECONNREFUSED",
        database: "ConnectionRefusedError:ECONNREFUSED",
      });
      assert.equal(report["connect_outside"], "OSError:ENETUNREACH");
      assert.equal(listenerConnections, 0, "the host's listener saw no connection");
    });

    it("writes nothing outside its directories: its package and dataset are read-only, the host's /, /usr, /tmp and the agent's data directory untouched", async () => {
      const { report, hostFiles } = await probed;
      const written = report["write"] as Record<string, string>;
      assert.deepEqual({ package: written["package"], dataset: written["dataset"] }, { package: "OSError:EROFS", dataset: "OSError:EROFS" });
      assert.match(written["host_usr"] ?? "", /^(PermissionError|OSError):/);
      // What it managed to write at the others' paths went to its own /tmp or root, gone with its sandbox.
      for (const [name, file] of Object.entries(hostFiles)) {
        assert.equal(existsSync(file), false, `${file} on the host (the unit's attempt at ${name}: ${written[name]})`);
      }
    });

    it("has no device it was not given: no GPU, disk or memory device", async () => {
      const { report } = await probed;
      const devices = report["devices"] as string[];
      assert.deepEqual(
        devices.filter((d) => /^(nvidia|sd|vd|nvme|hd|xvd|mem$|kmem$|port$|kmsg$|dri$|loop)/.test(d)),
        [],
        `/dev holds ${devices.join(" ")}`,
      );
      for (const [device, opened] of Object.entries(report["open_devices"] as Record<string, string>)) {
        assert.equal(opened, "FileNotFoundError:ENOENT", device);
      }
    });

    it("can make no user namespace of its own (where it would be root) nor widen the CPU affinity it is pinned to", async () => {
      const { report } = await probed;
      const cpus = report["cpus"] as { count: number; pinned_to: number[] };
      assert.ok(cpus.pinned_to.length < cpus.count, `the agent pinned its 1-core unit (no delegated cgroup here): ${JSON.stringify(cpus)}`);
      const kernel = report["kernel"] as { own_user_namespace: string; unshare_command: [number, string]; widen_affinity: string; pinned_after: number[] };
      assert.deepEqual(
        { own_user_namespace: kernel.own_user_namespace, widen_affinity: kernel.widen_affinity, pinned_after: kernel.pinned_after },
        { own_user_namespace: "PermissionError:EPERM", widen_affinity: "PermissionError:EPERM", pinned_after: cpus.pinned_to },
      );
      assert.equal(kernel.unshare_command[0], 1, kernel.unshare_command[1]);
      assert.match(kernel.unshare_command[1], /^unshare: unshare failed: Operation not permitted$/);
    });

    it("leaves the victim running undisturbed until its customer cancels it, then it is cancelled and not debited", async () => {
      const { victimJob, victimUnit } = await probed;
      assert.equal(victimJob["status"], "cancelled");
      assert.equal(victimUnit["status"], "cancelled");
      assert.equal(victimUnit["attempt"], 1, "the victim never failed or moved");
      assert.equal(Number(victimUnit["credits_debited"] ?? 0), 0);
    });
  });

  describe("a memory hog", () => {
    it("fails with \"out of memory at 128 MB\", as its own code's failure (after max_attempts, never debited)", async () => {
      const { job, unit, debits } = await hog;
      assert.equal(job["status"], "failed");
      assert.match(job["error"] as string, /compute unit "work" failed: its code failed 3 time\(s\)/);
      assert.equal(unit["status"], "failed");
      assert.equal(unit["attempt"], 3);
      assert.match(unit["error"] as string, /^out of memory at 128 MB: /);
      assert.deepEqual(debits, []);
    });
  });

  for (const ending of ["completes", "is cancelled"] as const) {
    describe(`a setsid, double-forked survivor whose unit ${ending}`, () => {
      it(`is gone within 5 s, found ${processesFoundBy}`, async () => {
        const { report, goneAfterMs } = await survivors[ending];
        assert.notEqual(report.survivor_sid, report.main_sid, "the survivor left the unit's session");
        assert.ok(goneAfterMs <= 5000, `gone ${goneAfterMs} ms after the ${ending === "completes" ? "unit completed" : "cancel"}`);
      });

      it("never writes the marker it would write after its unit", async () => {
        const { workDir, artifacts } = await survivors[ending];
        assert.ok(existsSync(workDir), `the kept work directory ${workDir} is where the marker would be`);
        assert.equal(existsSync(join(workDir, "output", "late-marker")), false);
        assert.equal(existsSync(join(workDir, "late-marker")), false);
        assert.ok(!artifacts.includes("late-marker"));
      });

      it(`shows the customer a ${ending === "completes" ? "completed" : "cancelled"} job, with its unit's outputs as artifacts`, async () => {
        const { job, unit, artifacts } = await survivors[ending];
        const status = ending === "completes" ? "completed" : "cancelled";
        assert.equal(job["status"], status, String(job["error"]));
        assert.equal(unit["status"], status);
        assert.deepEqual(artifacts.filter((name) => name !== "late-marker").sort(), ["survivor-report.json", "work.log"]);
      });
    });
  }

  describe("a fork bomb, alone on the agent", () => {
    let bomb: { job: Json; unit: Json; report: { uid: number; bomb_error: string; fork_refused: string | null; visible_processes: number; seconds: number }; goneAfterMs: number };
    let next: { job: Json; unit: Json };

    before(async () => {
      await Promise.allSettled([probed, hog, ...Object.values(survivors)]);
      const token = `bomb-${randomUUID()}`;
      // Memory enough for 4096 small shells (about 100 kB each), so that the process limit is what stops it.
      const { jobId, auth } = await submit("fork-bomb", { "train.py": FORK_BOMB_PY }, { args: [token], memory_mb: 1024 });
      const job = await ended(jobId, auth);
      const endedAt = Date.now();
      const [unit] = (await unitsOf(jobId, auth)) as [Json];
      const uid = asRoot ? statSync(join(agent.dataDir, "work", `${unit["id"] as string}-${unit["attempt"] as number}`)).uid : undefined;
      await waitFor("the bomb's processes to be gone", async () => (unitGone(token, uid) ? true : undefined), 10_000, agentLog);
      const goneAfterMs = Date.now() - endedAt;
      const report = JSON.parse((await artifact(jobId, auth, "bomb-report.json")).toString()) as typeof bomb.report;
      bomb = { job, unit, report, goneAfterMs };
      const after = await submit("after-the-bomb", { "train.py": "print('still here', flush=True)\n" }, {});
      const afterJob = await ended(after.jobId, after.auth);
      const [afterUnit] = await unitsOf(after.jobId, after.auth);
      next = { job: afterJob, unit: afterUnit as Json };
    });

    it("is stopped by the unit's process limit: forks are refused (EAGAIN) once the unit holds 4096 processes", async () => {
      const { bomb_error, fork_refused, visible_processes } = bomb.report;
      assert.match(bomb_error, /Cannot fork/);
      assert.equal(fork_refused, "BlockingIOError:EAGAIN");
      // The unit's 4096 processes, and the sandbox's init (root's, when the agent is root).
      assert.ok(visible_processes >= 4000 && visible_processes <= 4097, `${visible_processes} processes in its namespace`);
    });

    it(`ends with its unit: every process gone within 5 s, found ${processesFoundBy}`, async () => {
      assert.equal(bomb.job["status"], "completed", String(bomb.job["error"]));
      assert.ok(bomb.goneAfterMs <= 5000, `gone ${bomb.goneAfterMs} ms after the unit ended`);
    });

    it("leaves the agent healthy: online, and the next unit runs and completes on it", async () => {
      assert.equal(next.job["status"], "completed", String(next.job["error"]));
      assert.equal(next.unit["node_id"], agent.nodeId);
      const node = ((await adminRequest(cp, "GET", "/api/v1/admin/nodes"))["data"] as Json[]).find((n) => n["id"] === agent.nodeId);
      assert.equal(node?.["state"], "online");
    });
  });
});
