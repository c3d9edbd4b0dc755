import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { API_KEY, NO_HOME, startFakeApi } from "./fake-api.ts";

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "..");
const gpuctl = path.join(repoRoot, "cmd", "gpuctl.ts");

describe("gpuctl as a process", () => {
  it("prints help and exits 0 for --help", () => {
    const r = spawnSync(process.execPath, [gpuctl, "--help"], { encoding: "utf8" });
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /Usage: gpuctl/);
    assert.match(r.stdout, /datasets/);
  });

  it("exits 2 for an unknown command", () => {
    const r = spawnSync(process.execPath, [gpuctl, "frobnicate"], { encoding: "utf8" });
    assert.equal(r.status, 2);
    assert.match(r.stderr, /unknown command/);
  });

  it("prints the version of package.json", () => {
    const { version } = JSON.parse(readFileSync(path.join(repoRoot, "package.json"), "utf8")) as { version: string };
    const r = spawnSync(process.execPath, [gpuctl, "--version"], { encoding: "utf8" });
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.stdout, `${version}\n`);
  });

  it("stops quietly, exit 0, when the reader of its output goes away (| head)", async () => {
    const api = await startFakeApi();
    try {
      // More than a pipe holds, so gpuctl is still writing when the reader closes.
      const lines = Array.from({ length: 20_000 }, (_, i) => `line ${i} ${"x".repeat(40)}`);
      api.jobs.set("job_p", { id: "job_p", body: {}, script: api.nextJobScript, gets: 0 });
      api.units.set("job_p", [{ id: "cu_1", name: "train", dependsOn: [], logs: [{ status: "completed", lines }], reads: 0 }]);
      const child = spawn(process.execPath, [gpuctl, "jobs", "logs", "job_p"], {
        env: { ...process.env, GPU_AGENT_URL: api.url, GPU_AGENT_API_KEY: API_KEY, HOME: NO_HOME, XDG_CONFIG_HOME: "" },
      });
      let stderr = "";
      child.stderr.on("data", (c: Buffer) => (stderr += c.toString()));
      child.stdout.once("data", () => child.stdout.destroy());
      const code = await new Promise<number | null>((resolve) => child.on("exit", resolve));
      assert.equal(code, 0, stderr);
      assert.equal(stderr, "");
    } finally {
      await api.close();
    }
  });
});
