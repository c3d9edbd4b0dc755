/**
 * Resume from checkpoints (issue 15 point 5) with real agent processes, real Python and a real control plane:
 * the tiny-mlp example checkpoints every epoch; the agent running `train` is killed with SIGKILL once the
 * control plane holds its epoch-3 checkpoint; the unit completes on the other node, starting after the
 * checkpoint's epoch, billed once, for the completing attempt only, and its view shows both attempts and
 * what the second resumed from. Agent timings are short (1 s heartbeats, 3 s to unreachable), so node loss
 * is detected within seconds.
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
const epochs = 10;
const epochSeconds = 0.5;

/** The example's prepare and train stages; train runs `epochs` epochs of at least `epochSeconds` each. */
function examplePackage(): Promise<Buffer> {
  return zipOf({
    "train.py": readFileSync(join(example, "package", "train.py")),
    "mlp.py": readFileSync(join(example, "package", "mlp.py")),
    "gpu-agent.json": JSON.stringify({
      stages: [
        { name: "prepare", kind: "cpu" },
        { name: "train", kind: "gpu", depends_on: ["prepare"], args: ["--stage", "train", "--epochs", String(epochs), "--min-epoch-seconds", String(epochSeconds)] },
      ],
    }),
  });
}

/** True while a process with this pid runs (a zombie counts as gone). */
function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return !/^State:\s+Z/m.test(readFileSync(`/proc/${pid}/status`, "utf8"));
  } catch {
    return false;
  }
}

/** The pid the agent logged for a unit's process. */
function unitPid(agent: TestAgent, unitId: string): number | undefined {
  for (const line of agent.output().split("\n")) {
    if (line.includes("unit process started") && line.includes(unitId)) return (JSON.parse(line) as { pid: number }).pid;
  }
  return undefined;
}

describe("checkpoints and resume with real agents", function () {
  this.timeout(120_000);
  let cp: TestControlPlane;
  const agents: TestAgent[] = [];

  before(async () => {
    cp = await startTestControlPlane({ agents: { heartbeatIntervalSeconds: 1, unreachableAfterSeconds: 3, assignAckTimeoutSeconds: 5 } });
  });
  after(async () => {
    await Promise.all(agents.map((a) => a.stop()));
    await cp?.stop();
  });

  const logs = () => agents.map((a) => `--- agent ${a.nodeId}\n${a.output().split("\n").slice(-40).join("\n")}`).join("\n");

  it("kill -9 of the agent running train after its epoch-3 checkpoint: the unit resumes on the other node from epoch ≥ 3, one debit, for the completing attempt", async () => {
    agents.push(...(await Promise.all([0, 1].map(() => startTestAgent(cp, { trustLevel: "controlled", devGpuMib: 8192 })))));
    await waitFor(
      "two agents online",
      async () => (((await adminRequest(cp, "GET", "/api/v1/admin/nodes"))["data"] as Json[]).filter((n) => n["state"] === "online").length >= 2 ? true : undefined),
      20_000,
    );
    const { apiKey } = await createCustomer(cp, 100_000);
    const auth = { "x-api-key": apiKey };
    const dataset = await uploadResource(cp, apiKey, "datasets", "moons", await readFile(join(example, "dataset.csv")), { format: "csv" });
    const pkg = await uploadResource(cp, apiKey, "training-packages", "tiny-mlp", await examplePackage(), { entrypoint: "train.py" });
    const created = await request(cp, "POST", "/api/v1/customer/training-jobs", {
      headers: auth,
      body: { name: "resumed", dataset_id: dataset["id"], training_package_id: pkg["id"], required_vram_mb: 1000, required_disk_mb: 256, max_runtime_seconds: 600 },
    });
    assert.equal(created.status, 201, JSON.stringify(created.body));
    const jobId = created.body["id"] as string;
    const unitsOf = async () => (await request(cp, "GET", `/api/v1/customer/training-jobs/${jobId}/compute-units`, { headers: auth })).body["data"] as Json[];

    const checkpointed = await waitFor(
      "train's epoch-3 checkpoint to be stored",
      async () => {
        const train = (await unitsOf()).find((u) => u["name"] === "train");
        const latest = train?.["latest_checkpoint"] as Json | undefined;
        return train?.["status"] === "running" && Number((latest?.["metrics"] as Json | undefined)?.["epoch"] ?? 0) >= 3 ? train : undefined;
      },
      40_000,
      logs,
    );
    const victim = agents.find((a) => a.nodeId === checkpointed["node_id"])!;
    const pid = unitPid(victim, checkpointed["id"] as string);
    await victim.kill9();
    // A dead machine takes its processes with it; the agent's SIGKILL does not, so end the orphan too.
    if (pid !== undefined && alive(pid)) process.kill(-pid, "SIGKILL");

    const job = await waitFor(
      "the job to end",
      async () => {
        const body = (await request(cp, "GET", `/api/v1/customer/training-jobs/${jobId}`, { headers: auth })).body;
        return ["completed", "failed", "cancelled", "expired"].includes(body["status"] as string) ? body : undefined;
      },
      60_000,
      logs,
    );
    assert.equal(job["status"], "completed", `${String(job["error"])}\n${logs()}`);

    const train = (await unitsOf()).find((u) => u["name"] === "train")!;
    const attempts = train["attempts"] as Json[];
    assert.deepEqual(
      attempts.map((a) => [a["attempt"], a["status"], a["node_id"] === victim.nodeId]),
      [
        [1, "lost", true],
        [2, "completed", false],
      ],
      JSON.stringify(attempts),
    );
    const resumed = attempts[1]!;
    assert.equal(resumed["resumed_from_attempt"], 1);
    const resumedEpoch = Number((resumed["resumed_from_metrics"] as Json)["epoch"]);
    assert.ok(resumedEpoch >= 3, `resumed from epoch ${resumedEpoch}`);
    assert.equal(resumed["resumed_from_checkpoint"], `epoch-${resumedEpoch}.ckpt`);
    // The unit's latest checkpoint is now the second attempt's last.
    assert.deepEqual([(train["latest_checkpoint"] as Json)["attempt"], ((train["latest_checkpoint"] as Json)["metrics"] as Json)["epoch"]], [2, epochs]);

    // The second attempt's own log says where it started.
    const log = (await request(cp, "GET", `/api/v1/customer/training-jobs/${jobId}/compute-units/${train["id"] as string}/logs?attempt=2`, { headers: auth })).body;
    const lines = (log["lines"] as Json[]).map((l) => String(l["text"]));
    assert.equal(lines[0], `resuming from epoch ${resumedEpoch}`, lines.join("\n"));
    const epochLines = lines.filter((l) => l.startsWith("epoch "));
    assert.ok(epochLines[0]?.startsWith(`epoch ${resumedEpoch + 1}/${epochs} `), lines.join("\n"));
    assert.equal(epochLines.length, epochs - resumedEpoch, "no epoch ran twice on the second node");

    // One debit per unit; train's is the completing attempt's run time alone.
    const debits = ((await request(cp, "GET", "/api/v1/customer/credits/ledger", { headers: auth })).body["data"] as Json[]).filter((e) => e["kind"] === "debit");
    assert.equal(debits.length, 2, JSON.stringify(debits));
    const trainDebit = debits.find((d) => d["compute_unit_id"] === train["id"])!;
    assert.match(String(trainDebit["description"]), new RegExp(`, ${Math.ceil(resumed["run_seconds"] as number)} s\\)$`));
    assert.ok((resumed["run_seconds"] as number) < (epochs - 3) * epochSeconds + 3, `the second attempt ran ${String(resumed["run_seconds"])} s, not the whole training`);
    assert.equal(attempts[0]!["run_seconds"], 0, "the lost attempt is not billed");
  });
});
