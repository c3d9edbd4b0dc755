import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import path from "node:path";
import { fileURLToPath } from "node:url";

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "..");

describe("gpuctl as a process", () => {
  it("prints help and exits 0 for --help", () => {
    const r = spawnSync(process.execPath, [path.join(repoRoot, "cmd", "gpuctl.ts"), "--help"], { encoding: "utf8" });
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /Usage: gpuctl/);
    assert.match(r.stdout, /datasets/);
  });

  it("exits 2 for an unknown command", () => {
    const r = spawnSync(process.execPath, [path.join(repoRoot, "cmd", "gpuctl.ts"), "frobnicate"], { encoding: "utf8" });
    assert.equal(r.status, 2);
    assert.match(r.stderr, /unknown command/);
  });
});
