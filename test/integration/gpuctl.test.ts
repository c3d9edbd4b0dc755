/**
 * The customer's path on the command line, against a real control plane and a
 * real agent: the commands the README prints, run as real `gpuctl` processes.
 */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { createHash } from "node:crypto";
import { mkdtemp, readFile, readdir, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { TestAgent, TestControlPlane } from "../support/control-plane.ts";
import { startTestAgent, startTestControlPlane } from "../support/control-plane.ts";

const repoRoot = join(import.meta.dirname, "..", "..");
const example = join(repoRoot, "examples", "tiny-mlp");

interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

function gpuctl(env: Record<string, string>, ...args: string[]): Promise<CliResult> {
  const child = spawn(process.execPath, [join(repoRoot, "cmd", "gpuctl.ts"), ...args], {
    env: { ...process.env, ...env },
    cwd: repoRoot,
  });
  let stdout = "";
  let stderr = "";
  child.stdout.on("data", (c: Buffer) => (stdout += c.toString()));
  child.stderr.on("data", (c: Buffer) => (stderr += c.toString()));
  return new Promise((resolve) => child.on("exit", (code) => resolve({ code, stdout, stderr })));
}

function json(result: CliResult): Record<string, unknown> {
  assert.equal(result.code, 0, `gpuctl failed: ${result.stderr}`);
  return JSON.parse(result.stdout) as Record<string, unknown>;
}

describe("gpuctl runs the example job end to end against a real control plane", function () {
  this.timeout(180_000);
  let cp: TestControlPlane;
  let agent: TestAgent;
  let outDir: string;

  before(async () => {
    cp = await startTestControlPlane();
    agent = await startTestAgent(cp, { trustLevel: "controlled", devGpuMib: 24576 });
    outDir = await mkdtemp(join(tmpdir(), "gpuctl-out-"));
  });

  after(async () => {
    await agent?.stop();
    await cp?.stop();
    await rm(outDir, { recursive: true, force: true });
  });

  it("creates a customer, uploads, runs, watches and downloads with gpuctl alone", async () => {
    const admin = { GPU_AGENT_URL: cp.url, GPU_AGENT_ADMIN_TOKEN: cp.adminToken };
    const customer = json(await gpuctl(admin, "admin", "create-customer", "--email", "cli@example.com", "--password", "change-me-please", "--credits", "1000"));
    assert.deepEqual(Object.keys(customer).sort(), ["api_key", "customer_id"]);
    const env = { GPU_AGENT_URL: cp.url, GPU_AGENT_API_KEY: customer["api_key"] as string };

    const dataset = json(await gpuctl(env, "datasets", "upload", join(example, "dataset.csv"), "--json"));
    assert.equal(dataset["status"], "ready");
    const pkg = json(await gpuctl(env, "packages", "upload", join(example, "package"), "--json"));
    assert.equal(pkg["status"], "ready");

    const job = json(
      await gpuctl(
        env,
        "jobs", "create",
        "--dataset", dataset["id"] as string,
        "--package", pkg["id"] as string,
        "--vram-mb", "8000",
        "--sensitivity", "low_sensitive",
        "--watch", "--interval-ms", "300", "--json",
      ),
    );
    assert.equal(job["status"], "completed", JSON.stringify(job));
    assert.equal(job["progress"], 1);

    const downloaded = await gpuctl(env, "artifacts", "download", job["id"] as string, "--out", outDir, "--json");
    assert.equal(downloaded.code, 0, downloaded.stderr);
    const files = await readdir(outDir);
    assert.ok(files.includes("model.ckpt"), `downloaded ${files.join(", ")}`);
    const weights = JSON.parse(await readFile(join(outDir, "model.ckpt"), "utf8")) as unknown;
    assert.ok(typeof weights === "object" && weights !== null);
    const listed = json(await gpuctl(env, "artifacts", "list", job["id"] as string, "--json"));
    const data = (listed["data"] ?? listed["artifacts"] ?? listed) as { name: string; sha256: string }[];
    const ckpt = Array.isArray(data) ? data.find((a) => a.name === "model.ckpt") : undefined;
    if (ckpt !== undefined) {
      assert.equal(createHash("sha256").update(await readFile(join(outDir, "model.ckpt"))).digest("hex"), ckpt.sha256);
    }
  });

  it("reports a seed error code and exits 1 for a job that does not exist", async () => {
    const admin = { GPU_AGENT_URL: cp.url, GPU_AGENT_ADMIN_TOKEN: cp.adminToken };
    const customer = json(await gpuctl(admin, "admin", "create-customer", "--email", "cli2@example.com", "--password", "change-me-please", "--credits", "10"));
    const result = await gpuctl({ GPU_AGENT_URL: cp.url, GPU_AGENT_API_KEY: customer["api_key"] as string }, "jobs", "get", "00000000-0000-4000-8000-000000000000");
    assert.equal(result.code, 1);
    assert.match(result.stderr, /JOB_NOT_FOUND/);
  });
});
