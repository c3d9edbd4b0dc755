/**
 * Acceptance of the agent stream with real agent processes and real Python:
 * a node killed in the middle of a unit, a node that pauses for less than the
 * grace period, a cancel during `train`, and a unit whose code always crashes.
 * Agent timings are short (1 s heartbeats, 5 s to unreachable) so the whole
 * file stays near a minute.
 */
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { zipOf } from "../node-agent/helpers.ts";
import type { TestAgent, TestControlPlane } from "../support/control-plane.ts";
import { adminRequest, createCustomer, request, startTestAgent, startTestControlPlane, uploadResource, waitFor } from "../support/control-plane.ts";

const example = join(import.meta.dirname, "..", "..", "examples", "tiny-mlp");
type Json = Record<string, unknown>;

/** The example's prepare and train stages; train runs 20 epochs of at least `epochSeconds` each. */
async function examplePackage(epochSeconds: number): Promise<Buffer> {
  return zipOf({
    "train.py": readFileSync(join(example, "package", "train.py")),
    "mlp.py": readFileSync(join(example, "package", "mlp.py")),
    "gpu-agent.json": JSON.stringify({
      stages: [
        { name: "prepare", kind: "cpu" },
        { name: "train", kind: "gpu", depends_on: ["prepare"], args: ["--stage", "train", "--epochs", "20", "--min-epoch-seconds", String(epochSeconds)] },
      ],
    }),
  });
}

/** A package whose only stage always exits 3 with a message on stderr. */
function crashingPackage(): Promise<Buffer> {
  return zipOf({
    "train.py": `import sys\nprint("loading config", flush=True)\nprint("fatal: config.yaml is missing the learning_rate", file=sys.stderr, flush=True)\nsys.exit(3)\n`,
    "gpu-agent.json": JSON.stringify({ stages: [{ name: "train", kind: "cpu" }] }),
  });
}

/** True while a process with this pid runs (a zombie counts as gone). */
function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  try {
    return !/^State:\s+Z/m.test(readFileSync(`/proc/${pid}/status`, "utf8"));
  } catch {
    return false;
  }
}

/** The pid the agent logged for a unit's Python process. */
function unitPid(agent: TestAgent, unitId: string): number | undefined {
  for (const line of agent.output().split("\n")) {
    if (!line.includes("unit process started") || !line.includes(unitId)) continue;
    return (JSON.parse(line) as { pid: number }).pid;
  }
  return undefined;
}

describe("agents: node loss, pauses, cancel and crashing code with real agents", function () {
  this.timeout(120_000);
  let cp: TestControlPlane;
  const agents: TestAgent[] = [];
  let datasetCsv: Buffer;

  const startAgent = async () => {
    const agent = await startTestAgent(cp, { trustLevel: "controlled", devGpuMib: 8192 });
    agents.push(agent);
    return agent;
  };

  const onlineNodes = async () =>
    ((await adminRequest(cp, "GET", "/api/v1/admin/nodes"))["data"] as Json[]).filter((n) => n["state"] === "online").map((n) => n["id"] as string);

  before(async () => {
    cp = await startTestControlPlane({ agents: { heartbeatIntervalSeconds: 1, unreachableAfterSeconds: 5, assignAckTimeoutSeconds: 5 } });
    datasetCsv = await readFile(join(example, "dataset.csv"));
  });
  after(async () => {
    await Promise.all(agents.map((a) => a.stop()));
    await cp?.stop();
  });

  /** A customer with the dataset and `pkg` uploaded, and a job created from them. */
  async function submit(pkg: Buffer, name: string): Promise<{ jobId: string; auth: Record<string, string> }> {
    const { apiKey } = await createCustomer(cp, 100_000);
    const auth = { "x-api-key": apiKey };
    const dataset = await uploadResource(cp, apiKey, "datasets", `${name}-data`, datasetCsv, { format: "csv" });
    const uploaded = await uploadResource(cp, apiKey, "training-packages", `${name}-pkg`, pkg, { entrypoint: "train.py" });
    const created = await request(cp, "POST", "/api/v1/customer/training-jobs", {
      headers: auth,
      body: { name, dataset_id: dataset["id"], training_package_id: uploaded["id"], required_vram_mb: 1000, required_disk_mb: 256, max_runtime_seconds: 600 },
    });
    assert.equal(created.status, 201, JSON.stringify(created.body));
    return { jobId: created.body["id"] as string, auth };
  }

  const unitsOf = async (jobId: string, auth: Record<string, string>) =>
    (await request(cp, "GET", `/api/v1/customer/training-jobs/${jobId}/compute-units`, { headers: auth })).body["data"] as Json[];
  const jobOf = async (jobId: string, auth: Record<string, string>) => (await request(cp, "GET", `/api/v1/customer/training-jobs/${jobId}`, { headers: auth })).body;
  const debitsOf = async (auth: Record<string, string>) =>
    ((await request(cp, "GET", "/api/v1/customer/credits/ledger", { headers: auth })).body["data"] as Json[]).filter((e) => e["kind"] === "debit");
  const logs = () => agents.map((a) => `--- agent ${a.nodeId}\n${a.output().split("\n").slice(-40).join("\n")}`).join("\n");

  const terminal = (jobId: string, auth: Record<string, string>, timeoutMs: number) =>
    waitFor(
      "the job to end",
      async () => {
        const job = await jobOf(jobId, auth);
        return ["completed", "failed", "cancelled", "expired"].includes(job["status"] as string) ? job : undefined;
      },
      timeoutMs,
      logs,
    );

  /** Waits until `stage` runs with some progress; returns the unit. */
  const runningWithProgress = (jobId: string, auth: Record<string, string>, stage: string) =>
    waitFor(
      `${stage} to run with progress`,
      async () => (await unitsOf(jobId, auth)).find((u) => u["name"] === stage && u["status"] === "running" && (u["progress"] as number) > 0.05),
      40_000,
      logs,
    );

  it("kill -9 of the agent running train: the unit completes on another agent (attempt 2), the job completes, one debit per unit", async () => {
    await Promise.all([startAgent(), startAgent()]);
    await waitFor("two agents online", async () => ((await onlineNodes()).length >= 2 ? true : undefined), 20_000);
    const { jobId, auth } = await submit(await examplePackage(0.25), "killed-node");
    const train = await runningWithProgress(jobId, auth, "train");
    const victim = agents.find((a) => a.nodeId === train["node_id"])!;
    assert.equal(train["attempt"], 1);
    const pid = unitPid(victim, train["id"] as string);
    await victim.kill9();
    // A dead machine takes its processes with it; the agent's SIGKILL does not, so end the orphan too.
    if (pid !== undefined && alive(pid)) process.kill(-pid, "SIGKILL");

    const job = await terminal(jobId, auth, 60_000);
    assert.equal(job["status"], "completed", `${String(job["error"])}\n${logs()}`);
    const units = await unitsOf(jobId, auth);
    const retried = units.find((u) => u["name"] === "train")!;
    assert.equal(retried["status"], "completed");
    assert.notEqual(retried["node_id"], victim.nodeId, "placed elsewhere");
    assert.equal(retried["attempt"], 2, "one new attempt");
    const debits = await debitsOf(auth);
    assert.equal(debits.length, 2, "one debit per unit");
    assert.deepEqual(units.map((u) => Number(u["credits_debited"]) > 0), [true, true]);
    const nodes = (await adminRequest(cp, "GET", "/api/v1/admin/nodes"))["data"] as Json[];
    const lost = nodes.find((n) => n["id"] === victim.nodeId)!;
    assert.equal(lost["state"], "unreachable");
    // The lost attempt counts against the node that lost it, and the survivor's record shows the work it did.
    assert.equal(lost["units_lost_30d"], 1);
    const survivor = nodes.find((n) => n["id"] === retried["node_id"])!;
    assert.ok((survivor["units_completed_30d"] as number) >= 1);
    assert.ok((lost["reliability"] as number) < (survivor["reliability"] as number), "the lossy node scores lower");
  });

  it("an agent paused for less than the grace period keeps its unit: no re-placement, completes once on attempt 1", async () => {
    const { jobId, auth } = await submit(await examplePackage(0.2), "paused-node");
    const train = await runningWithProgress(jobId, auth, "train");
    const agent = agents.find((a) => a.nodeId === train["node_id"])!;
    agent.signal("SIGSTOP");
    await new Promise((r) => setTimeout(r, 2500));
    agent.signal("SIGCONT");
    const job = await terminal(jobId, auth, 60_000);
    assert.equal(job["status"], "completed", `${String(job["error"])}\n${logs()}`);
    const after = (await unitsOf(jobId, auth)).find((u) => u["name"] === "train")!;
    assert.equal(after["attempt"], 1);
    assert.equal(after["node_id"], agent.nodeId);
    assert.equal((await debitsOf(auth)).length, 2);
  });

  it("cancel during train kills the Python process within 5 s; the job is cancelled and the unfinished unit is not debited", async () => {
    const { jobId, auth } = await submit(await examplePackage(1), "cancelled");
    const train = await runningWithProgress(jobId, auth, "train");
    const agent = agents.find((a) => a.nodeId === train["node_id"])!;
    const pid = await waitFor("the agent to log the unit's pid", async () => unitPid(agent, train["id"] as string), 5000, logs);
    assert.ok(alive(pid));
    const cancelledAt = Date.now();
    const res = await request(cp, "POST", `/api/v1/customer/training-jobs/${jobId}/cancel`, { headers: auth, body: {} });
    assert.equal(res.body["status"], "cancelled");
    await waitFor("the Python process to be gone", async () => (alive(pid) ? undefined : true), 5000, logs);
    assert.ok(Date.now() - cancelledAt < 5000);
    const units = await unitsOf(jobId, auth);
    assert.deepEqual(units.map((u) => [u["name"], u["status"]]), [["prepare", "completed"], ["train", "cancelled"]]);
    // Give a late Finished(CANCELLED) time to arrive: it must debit nothing.
    await new Promise((r) => setTimeout(r, 1500));
    const debits = await debitsOf(auth);
    assert.equal(debits.length, 1, "only the completed prepare unit is debited");
    assert.equal(debits[0]?.["compute_unit_id"] ?? units[0]!["id"], units[0]!["id"]);
    assert.equal((await jobOf(jobId, auth))["status"], "cancelled");
  });

  it("a unit whose code always exits 3 fails after max_attempts with its exit code and stderr tail visible to the customer", async () => {
    const { jobId, auth } = await submit(await crashingPackage(), "crashing");
    const job = await terminal(jobId, auth, 40_000);
    assert.equal(job["status"], "failed");
    assert.match(job["error"] as string, /compute unit "train" failed: its code failed 3 time\(s\)/);
    const [unit] = await unitsOf(jobId, auth);
    assert.equal(unit?.["status"], "failed");
    assert.equal(unit?.["attempt"], 3);
    assert.equal(unit?.["exit_code"], 3);
    assert.match(unit?.["error"] as string, /exit code 3/);
    assert.match(unit?.["error"] as string, /fatal: config.yaml is missing the learning_rate/);
    assert.equal((await debitsOf(auth)).length, 0);
  });
});
