/**
 * The live event stream of a real job: a real control plane places the tiny-mlp example's three
 * stages on a real agent, and a client watching over Server-Sent Events from the job's creation
 * sees every event with consecutive ids — each stage placed, running, reporting progress, writing
 * log lines and completing, in its DAG order — then the job completed, and the end of the stream.
 */
import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { examplePackageZip } from "../limits/plane.ts";
import type { TestAgent, TestControlPlane } from "../support/control-plane.ts";
import { createCustomer, request, startTestAgent, startTestControlPlane, uploadResource } from "../support/control-plane.ts";
import { openEventStream } from "../support/sse.ts";

const example = join(import.meta.dirname, "..", "..", "examples", "tiny-mlp");

describe("live events of the example job run by a real agent", function () {
  this.timeout(180_000);
  let cp: TestControlPlane;
  let agent: TestAgent;

  before(async () => {
    cp = await startTestControlPlane();
    agent = await startTestAgent(cp, { trustLevel: "controlled", devGpuMib: 24576 });
  });
  after(async () => {
    await agent?.stop();
    await cp?.stop();
  });

  it("streams every change of the job, in order and with consecutive ids, until it completed", async () => {
    const { apiKey } = await createCustomer(cp);
    const auth = { "x-api-key": apiKey };
    const dataset = await uploadResource(cp, apiKey, "datasets", "d", await readFile(join(example, "dataset.csv")), { format: "csv" });
    const pkg = await uploadResource(cp, apiKey, "training-packages", "p", await examplePackageZip(), { entrypoint: "train.py" });
    const created = await request(cp, "POST", "/api/v1/customer/training-jobs", {
      headers: auth,
      body: { name: "watched", dataset_id: dataset["id"], training_package_id: pkg["id"], required_vram_mb: 8000, max_runtime_seconds: 600, sensitivity: "low_sensitive" },
    });
    assert.equal(created.status, 201, JSON.stringify(created.body));
    const stream = await openEventStream(`${cp.url}/api/v1/customer/training-jobs/${created.body["id"] as string}/events`, auth);

    const events: { id: number; event: string; data: Record<string, unknown> }[] = [];
    for (;;) {
      const e = await stream.nextEvent(60_000);
      if (e === undefined) break;
      events.push({ id: Number(e.id), event: e.event ?? "", data: e.data });
    }
    const [snapshot, ...changes] = events;
    assert.equal(snapshot?.event, "snapshot", agent.output().slice(-2000));
    assert.deepEqual(
      changes.map((e) => e.id),
      changes.map((_, i) => (snapshot?.id ?? 0) + i + 1),
      "ids follow the snapshot's without a gap",
    );

    const unitsInOrder = (name: string) =>
      changes
        .filter((e) => e.event === "unit" && (e.data["unit"] as { name: string }).name === name)
        .map((e) => (e.data["unit"] as { status: string }).status)
        .filter((s, i, all) => s !== all[i - 1]);
    for (const stage of ["prepare", "train", "evaluate"]) assert.deepEqual(unitsInOrder(stage).slice(-3), ["assigned", "running", "completed"], stage);
    const completedAt = (name: string) => changes.findIndex((e) => e.event === "unit" && (e.data["unit"] as { name: string; status: string }).name === name && (e.data["unit"] as { status: string }).status === "completed");
    assert.ok(completedAt("prepare") < completedAt("train") && completedAt("train") < completedAt("evaluate"), "stages end in DAG order");

    const logText = changes.filter((e) => e.event === "log").flatMap((e) => (e.data["log"] as { lines: { text: string }[] }).lines.map((l) => l.text));
    assert.ok(logText.some((t) => /^epoch 20\/20 loss=/.test(t)), "the train stage's last epoch line came as a log event");
    assert.ok(changes.some((e) => e.event === "unit" && ((e.data["unit"] as { progress: number }).progress ?? 0) > 0 && (e.data["unit"] as { status: string }).status === "running"), "progress while running");
    const last = changes.at(-1);
    assert.deepEqual([last?.event, (last?.data["job"] as { status: string } | undefined)?.status], ["job", "completed"]);
  });
});
