// npm run gpu-check — the agent on a real GPU machine, end to end.
//
// Starts a control plane (embedded database) and a real agent process with no
// declared GPU, so its GPUs come from nvidia-smi; runs examples/torch-sweep
// (prepare on the CPU, two PyTorch training replicas on the GPU, a CPU reduce)
// with the unit interpreter GPU_CHECK_PYTHON (default: python3 on PATH,
// resolved to an absolute path and passed to the agent as --python); then
// asks for more VRAM than any detected GPU has and reads why the unit waits;
// then cancels a job while its replica trains on the GPU and times how long
// until nvidia-smi shows no CUDA process left.
// Prints one JSON line and writes it to $OUT/gpu-check.json when OUT is set.
// Exits non-zero when a check fails. Not part of `npm test`: CI has no GPU.
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import { cp, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { zipDirectory } from "../src/cli/files.ts";
import type { TestAgent, TestControlPlane } from "../test/support/control-plane.ts";
import { adminRequest, createCustomer, request, startTestAgent, startTestControlPlane, uploadResource, waitFor } from "../test/support/control-plane.ts";

type Json = Record<string, unknown>;
const root = join(import.meta.dirname, "..");
const example = join(root, "examples", "torch-sweep");

function interpreter(): string {
  const named = process.env["GPU_CHECK_PYTHON"];
  if (named !== undefined && named !== "") return named;
  return execFileSync("sh", ["-c", "command -v python3"], { encoding: "utf8" }).trim();
}

/** The example package, optionally with another gpu-agent.json. */
async function packageZip(manifest?: unknown): Promise<Buffer> {
  const dir = await mkdtemp(join(tmpdir(), "torch-sweep-"));
  try {
    await cp(join(example, "package"), join(dir, "package"), { recursive: true });
    if (manifest !== undefined) await writeFile(join(dir, "package", "gpu-agent.json"), JSON.stringify(manifest));
    await zipDirectory(join(dir, "package"), join(dir, "package.zip"));
    return await readFile(join(dir, "package.zip"));
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** Pids of processes holding a CUDA context, per nvidia-smi. */
function gpuProcessPids(): number[] {
  const out = execFileSync("nvidia-smi", ["--query-compute-apps=pid", "--format=csv,noheader"], { encoding: "utf8" });
  return out.split("\n").map((l) => Number(l.trim())).filter((n) => Number.isInteger(n) && n > 0);
}

async function downloadArtifact(plane: TestControlPlane, auth: Record<string, string>, jobId: string, artifact: Json): Promise<Buffer> {
  const url = await request(plane, "POST", `/api/v1/customer/training-jobs/${jobId}/artifacts/${artifact["id"] as string}/download-url`, { body: {}, headers: auth });
  assert.ok(url.status === 200 || url.status === 201, JSON.stringify(url.body));
  const res = await fetch(url.body["download_url"] as string);
  assert.equal(res.status, 200);
  const bytes = Buffer.from(await res.arrayBuffer());
  assert.equal(createHash("sha256").update(bytes).digest("hex"), artifact["sha256"], `sha256 of ${artifact["name"] as string}`);
  return bytes;
}

/** The GPUs nvidia-smi lists; exits with a sentence, not a stack, where there is no nvidia-smi. */
function listGpus(): string {
  try {
    return execFileSync("nvidia-smi", ["--query-gpu=index,name,memory.total,driver_version", "--format=csv,noheader"], { encoding: "utf8" }).trim();
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw err;
    console.error("gpu-check: nvidia-smi is not on PATH; this check needs a machine with an NVIDIA GPU and its driver");
    process.exit(2);
  }
}

async function main(): Promise<void> {
  const smi = listGpus();
  const python = interpreter();
  const torchVersion = execFileSync(python, ["-c", "import torch; print(torch.__version__, torch.cuda.is_available())"], { encoding: "utf8" }).trim();
  const started = Date.now();
  const plane = await startTestControlPlane({});
  let agent: TestAgent | undefined;
  try {
    agent = await startTestAgent(plane, { trustLevel: "controlled", env: { GPU_AGENT_PYTHON: python } });
    const nodeId = agent.nodeId;
    const node = await waitFor(
      "the agent to come online",
      async () => {
        const nodes = (await adminRequest(plane, "GET", "/api/v1/admin/nodes"))["data"] as Json[];
        return nodes.find((n) => n["id"] === nodeId && n["state"] === "online");
      },
      60_000,
      () => agent?.output() ?? "",
    );
    const gpus = node["gpus"] as Json[];
    assert.ok(gpus.length > 0, "the agent detected no GPU through nvidia-smi");
    assert.ok(gpus.every((g) => g["declared"] !== true), "a GPU was declared, not detected");

    const { apiKey } = await createCustomer(plane, 100_000);
    const auth = { "x-api-key": apiKey };
    const dataset = await uploadResource(plane, apiKey, "datasets", "moons", await readFile(join(root, "examples", "tiny-mlp", "dataset.csv")), { format: "csv" });
    const pkg = await uploadResource(plane, apiKey, "training-packages", "torch-sweep", await packageZip(), { entrypoint: "train.py" });
    const body = { dataset_id: dataset["id"], training_package_id: pkg["id"], required_disk_mb: 1024, max_runtime_seconds: 900, sensitivity: "low_sensitive" };

    const created = await request(plane, "POST", "/api/v1/customer/training-jobs", { headers: auth, body: { ...body, name: "torch-sweep", required_vram_mb: 8000 } });
    assert.equal(created.status, 201, JSON.stringify(created.body));
    const jobId = created.body["id"] as string;
    const job = await waitFor(
      "the sweep to finish",
      async () => {
        const got = await request(plane, "GET", `/api/v1/customer/training-jobs/${jobId}`, { headers: auth });
        return ["completed", "failed", "cancelled", "expired"].includes(got.body["status"] as string) ? got.body : undefined;
      },
      600_000,
      () => agent?.output() ?? "",
    );
    const units = ((await request(plane, "GET", `/api/v1/customer/training-jobs/${jobId}/compute-units`, { headers: auth })).body["data"] as Json[]).map((u) => ({
      name: u["name"],
      kind: u["kind"],
      status: u["status"],
      exit_code: u["exit_code"],
      error: u["error"],
      node_id: u["node_id"],
    }));
    assert.equal(job["status"], "completed", JSON.stringify({ job, units }) + "\n" + (agent.output().slice(-4000)));

    const artifacts = (await request(plane, "GET", `/api/v1/customer/training-jobs/${jobId}/artifacts`, { headers: auth })).body["data"] as Json[];
    const results: Json[] = [];
    for (const artifact of artifacts.filter((a) => /^result-\d+\.json$/.test(a["name"] as string))) {
      results.push(JSON.parse((await downloadArtifact(plane, auth, jobId, artifact)).toString("utf8")) as Json);
    }
    assert.equal(results.length, 2, `two training replicas reported (artifacts: ${artifacts.map((a) => a["name"] as string).join(", ")})`);
    for (const r of results) {
      assert.notEqual(r["device"], "cpu", "a GPU replica trained on the CPU");
      assert.equal(r["cuda_device_count"], 1, "CUDA_VISIBLE_DEVICES exposes exactly the assigned GPU");
      // In the agent's sandbox the GPU is named by its UUID (the one device the unit can open); without it by index.
      const visible = String(r["cuda_visible_devices"]);
      assert.ok(/^GPU-[0-9a-f-]+$/i.test(visible) || gpus.some((g) => String(g["index"]) === visible), `CUDA_VISIBLE_DEVICES=${visible} names a detected GPU`);
    }
    const bestArtifact = artifacts.find((a) => a["name"] === "best.json");
    assert.ok(bestArtifact, "the select stage wrote best.json");
    const best = (JSON.parse((await downloadArtifact(plane, auth, jobId, bestArtifact)).toString("utf8")) as { best: Json })["best"];

    // More VRAM than any one GPU has: the unit must wait and say why.
    const largest = Math.max(...gpus.map((g) => g["vram_mb"] as number));
    const tooBig = await request(plane, "POST", "/api/v1/customer/training-jobs", {
      headers: auth,
      body: { ...body, name: "too-big", required_vram_mb: largest + 1024 },
    });
    let reason = "";
    if (tooBig.status === 201) {
      const tooBigId = tooBig.body["id"] as string;
      reason = await waitFor(
        "an unschedulable reason",
        async () => {
          const list = (await request(plane, "GET", `/api/v1/customer/training-jobs/${tooBigId}/compute-units`, { headers: auth })).body["data"] as Json[];
          const why = list.map((u) => u["unschedulable_reason"] as string).find((r) => r !== "" && r !== undefined);
          return why;
        },
        30_000,
      );
      await request(plane, "POST", `/api/v1/customer/training-jobs/${tooBigId}/cancel`, { headers: auth, body: {} });
    } else {
      reason = `refused at creation: ${tooBig.status} ${JSON.stringify(tooBig.body)}`;
    }

    // Cancel while a replica trains on the GPU: its CUDA process must be gone within seconds.
    const longPkg = await uploadResource(plane, apiKey, "training-packages", "torch-long", await packageZip({
      stages: [
        { name: "prepare", kind: "cpu" },
        { name: "train", kind: "gpu", depends_on: ["prepare"], args: ["--stage", "train", "--epochs", "100000000"] },
      ],
    }), { entrypoint: "train.py" });
    const long = await request(plane, "POST", "/api/v1/customer/training-jobs", {
      headers: auth,
      body: { ...body, training_package_id: longPkg["id"], name: "cancel-me", required_vram_mb: 8000 },
    });
    assert.equal(long.status, 201, JSON.stringify(long.body));
    const longId = long.body["id"] as string;
    const trainingPids = await waitFor(
      "the long replica to train on the GPU",
      async () => {
        const list = (await request(plane, "GET", `/api/v1/customer/training-jobs/${longId}/compute-units`, { headers: auth })).body["data"] as Json[];
        const train = list.find((u) => u["name"] === "train");
        const pids = gpuProcessPids();
        return train?.["status"] === "running" && (train["progress"] as number) > 0 && pids.length > 0 ? pids : undefined;
      },
      120_000,
      () => agent?.output().slice(-4000) ?? "",
    );
    const cancelAt = Date.now();
    const cancelled = await request(plane, "POST", `/api/v1/customer/training-jobs/${longId}/cancel`, { headers: auth, body: {} });
    assert.equal(cancelled.status, 200, JSON.stringify(cancelled.body));
    await waitFor("the GPU process to exit", async () => (gpuProcessPids().length === 0 ? true : undefined), 30_000);
    const gpuFreedS = (Date.now() - cancelAt) / 1000;
    const longJob = await waitFor(
      "the job to read cancelled",
      async () => {
        const got = await request(plane, "GET", `/api/v1/customer/training-jobs/${longId}`, { headers: auth });
        return got.body["status"] === "cancelled" ? got.body : undefined;
      },
      30_000,
    );
    const longUnits = (await request(plane, "GET", `/api/v1/customer/training-jobs/${longId}/compute-units`, { headers: auth })).body["data"] as Json[];
    const trainUnit = longUnits.find((u) => u["name"] === "train");
    assert.equal(String(trainUnit?.["credits_debited"] ?? "0"), "0", "the cancelled GPU unit is not billed");

    const summary = {
      ok: true,
      nvidia_smi: smi,
      python,
      torch: torchVersion,
      detected_gpus: gpus,
      job_status: job["status"],
      job_seconds: (Date.parse(job["finished_at"] as string) - Date.parse(job["created_at"] as string)) / 1000,
      credits_debited: job["credits_debited"],
      units,
      replicas: results.map((r) => ({
        replica: r["replica"],
        device: r["device"],
        cuda_visible_devices: r["cuda_visible_devices"],
        cuda_device_count: r["cuda_device_count"],
        torch: r["torch"],
        cuda: r["cuda"],
        learning_rate: r["learning_rate"],
        final_loss: r["final_loss"],
        accuracy: r["accuracy"],
        train_seconds: r["train_seconds"],
      })),
      best_learning_rate: best["learning_rate"],
      too_big_vram_mb: largest + 1024,
      too_big_reason: reason,
      cancel: {
        gpu_pids_before: trainingPids,
        gpu_process_gone_s: gpuFreedS,
        job_status: longJob["status"],
        credits_debited: longJob["credits_debited"],
        train_unit: { status: trainUnit?.["status"], progress: trainUnit?.["progress"], credits_debited: trainUnit?.["credits_debited"] },
      },
      wall_s: (Date.now() - started) / 1000,
    };
    const line = JSON.stringify(summary);
    console.log(line);
    const out = process.env["OUT"];
    if (out !== undefined && out !== "") await writeFile(join(out, "gpu-check.json"), line + "\n");
  } finally {
    await agent?.stop();
    await plane.stop();
  }
}

main().catch((err: unknown) => {
  console.error(err instanceof Error ? (err.stack ?? err.message) : String(err));
  process.exitCode = 1;
});
