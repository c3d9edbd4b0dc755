/**
 * `npm start` as a person runs it: a signal to npm (`kill <pid>`) or to its terminal's process
 * group (Ctrl-C) stops the control plane and the local agent, and npm exits once both have
 * stopped, leaving nothing serving. Real processes: npm, cmd/start.ts and cmd/agent.ts.
 */
import assert from "node:assert/strict";
import type { ChildProcess } from "node:child_process";
import { spawn } from "node:child_process";
import { readFileSync, readdirSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";

const repoRoot = path.join(import.meta.dirname, "..", "..");

/** Pids of the processes whose command line (or, with `inEnvironment`, environment) mentions `needle` (Linux /proc). */
function pidsWith(needle: string, inEnvironment = false): number[] {
  const pids: number[] = [];
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const words = [readFileSync(`/proc/${entry}/cmdline`, "utf8"), inEnvironment ? readFileSync(`/proc/${entry}/environ`, "utf8") : ""].join("\0").split("\0");
      if (words.some((word) => word.includes(needle))) pids.push(Number(entry));
    } catch {
      // Gone meanwhile, or not ours to read.
    }
  }
  return pids;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Resolves with what `text()` holds once it matches `pattern`; rejects when the process ends first. */
function waitFor(child: ChildProcess, text: () => string, pattern: RegExp): Promise<RegExpExecArray> {
  return new Promise((resolve, reject) => {
    const check = () => {
      const m = pattern.exec(text());
      if (m !== null) {
        child.stderr?.off("data", check);
        child.off("exit", ended);
        resolve(m);
      }
    };
    const ended = () => reject(new Error(`npm start ended before ${pattern}:\n${text()}`));
    child.stderr?.on("data", check);
    child.once("exit", ended);
    check();
  });
}

describe("npm start stops what it started on a signal", function () {
  this.timeout(120_000);
  let dir: string;
  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), "gpu-agent-npm-start-"));
  });
  after(async () => {
    // Should a case fail, nothing of it is left running.
    for (const pid of pidsWith(dir, true)) if (pid !== process.pid && alive(pid)) process.kill(pid, "SIGKILL");
    await rm(dir, { recursive: true, force: true });
  });

  // The second case starts on the first one's data directory: the agent is enrolled already.
  const cases: { name: string; signal: (npm: ChildProcess) => void }[] = [
    { name: "kill <pid of npm start> (SIGTERM to npm)", signal: (npm) => npm.kill("SIGTERM") },
    { name: "Ctrl-C (SIGINT to the terminal's process group)", signal: (npm) => process.kill(-(npm.pid ?? 0), "SIGINT") },
  ];
  for (const tc of cases) {
    it(tc.name, async () => {
      const dataDir = path.join(dir, "data");
      // detached: npm leads its own process group, as a shell's foreground job does.
      const npm = spawn("npm", ["start"], {
        cwd: repoRoot,
        detached: true,
        env: { ...process.env, PORT: "0", HOST: "127.0.0.1", GPU_AGENT_DATA_DIR: dataDir, LOG_LEVEL: "warn", GPU_AGENT_DEV_GPU_MIB: "8192" },
        stdio: ["ignore", "pipe", "pipe"],
      });
      let output = "";
      npm.stdout.on("data", (c: Buffer) => (output += c.toString()));
      npm.stderr.on("data", (c: Buffer) => (output += c.toString()));
      const exited = new Promise<number | null>((resolve) => npm.on("exit", (code) => resolve(code)));

      const url = (await waitFor(npm, () => output, /GPU-Agent is running at (http:\/\/\S+)/))[1] ?? "";
      // It says how the agent contains the units it runs (the example job's too): in CI, root, the sandbox.
      await waitFor(npm, () => output, /runs every unit, the example job's too, inside its sandbox \(isolation: bubblewrap\)/);
      assert.equal((await fetch(`${url}/healthz`)).status, 200);
      const agents = pidsWith(`${dataDir}-local-agent`);
      assert.equal(agents.length, 1, `one local agent runs:\n${output}`);
      const [agent] = agents as [number];
      const starter = Number(/^PPid:\s+(\d+)$/m.exec(readFileSync(`/proc/${agent}/status`, "utf8"))?.[1]);

      tc.signal(npm);
      const code = await exited;
      assert.equal(code, 0, output);
      assert.ok(!alive(agent), "the agent has stopped");
      assert.ok(!alive(starter), "cmd/start.ts has stopped");
      await assert.rejects(fetch(`${url}/healthz`), "the control plane no longer answers");
      assert.doesNotMatch(output, /second signal/, "one Ctrl-C is one request to stop, for the agent too");
    });
  }
});
