/**
 * How the memory watch measures a sandboxed unit without a cgroup (unitMemoryBytes in
 * src/node-agent/unit-limits.ts): real forked processes that share their parent's heap, then the
 * fallbacks on a directory laid out like /proc.
 */
import assert from "node:assert/strict";
import { execFile, spawn } from "node:child_process";
import type { ChildProcessByStdio } from "node:child_process";
import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { createInterface } from "node:readline";
import type { Readable, Writable } from "node:stream";
import { pathToFileURL } from "node:url";
import { promisify } from "node:util";
import { processTree, unitMemoryBytes } from "../../src/node-agent/unit-limits.ts";
import type { ProcessTree } from "../../src/node-agent/unit-limits.ts";

const MIB = 1024 * 1024;
const HEAP_MIB = 200;
const WORKERS = 4;
/** What one idle Python interpreter adds on top of the heap it was given, at most. */
const INTERPRETER_MIB = 30;

/**
 * A parent that touches every page of a 200 MiB heap, then forks 4 workers that share it and idle,
 * as DataLoader workers do. The first worker writes its whole copy of the heap when it reads a line.
 */
const FORKED_WORKERS_PY = `
import os, signal, sys
size = ${HEAP_MIB} << 20
heap = bytearray(size)
heap[::4096] = b"\\x01" * (size // 4096)
workers = []
for i in range(${WORKERS}):
    pid = os.fork()
    if pid == 0:
        if i == 0:
            sys.stdin.readline()
            heap[::4096] = b"\\x02" * (size // 4096)
            print("written", flush=True)
        while True:
            signal.pause()
    workers.append(pid)
print(" ".join(map(str, workers)), flush=True)
while True:
    signal.pause()
`;

/** The same processes as the watch would see them on a kernel without smaps_rollup: only their status files. */
async function statusOnlyCopy(tree: ProcessTree): Promise<string> {
  const procDir = await mkdtemp(path.join(os.tmpdir(), "gpu-agent-proc-"));
  for (const pid of tree.pids) {
    await mkdir(path.join(procDir, String(pid)));
    await writeFile(path.join(procDir, String(pid), "status"), await readFile(`/proc/${pid}/status`, "utf8"));
  }
  return procDir;
}

describe("unit memory: pages shared after fork count once", function () {
  let python: ChildProcessByStdio<Writable, Readable, null>;
  let lines: AsyncIterator<string>;
  let tree: ProcessTree;

  before(async () => {
    python = spawn("python3", ["-c", FORKED_WORKERS_PY], { stdio: ["pipe", "pipe", "inherit"], detached: true });
    lines = createInterface({ input: python.stdout })[Symbol.asyncIterator]();
    const workers = (await lines.next()).value as string;
    const found = await processTree(python.pid as number);
    assert.deepEqual([...found.pids].sort(), [python.pid, ...workers.split(" ").map(Number)].sort());
    // Outside a sandbox a process's root is the host's: its /tmp is not the unit's tmpfs, so no init is named.
    tree = { pids: found.pids, inner: [] };
  });

  after(() => {
    process.kill(-(python.pid as number), "SIGKILL");
  });

  it(`measures a ${HEAP_MIB} MiB heap shared by a parent and ${WORKERS} forked workers as about ${HEAP_MIB} MiB, where the per-process RssAnon sum says about ${(WORKERS + 1) * HEAP_MIB} MiB`, async () => {
    const proportional = await unitMemoryBytes(tree);
    const procDir = await statusOnlyCopy(tree);
    try {
      const perProcess = await unitMemoryBytes(tree, { procDir });
      assert.ok(proportional >= HEAP_MIB * MIB && proportional <= (HEAP_MIB + INTERPRETER_MIB) * MIB, `proportional: ${proportional / MIB} MiB`);
      const processes = WORKERS + 1;
      assert.ok(perProcess >= processes * HEAP_MIB * MIB && perProcess <= processes * (HEAP_MIB + INTERPRETER_MIB) * MIB, `RssAnon sum: ${perProcess / MIB} MiB`);
    } finally {
      await rm(procDir, { recursive: true, force: true });
    }
  });

  it("falls back to the RssAnon sum for a reader that may not read smaps_rollup (another uid: EACCES)", async () => {
    const moduleUrl = pathToFileURL(path.join(import.meta.dirname, "../../src/node-agent/unit-limits.ts")).href;
    const script = `const { unitMemoryBytes } = await import(${JSON.stringify(moduleUrl)}); console.log(await unitMemoryBytes(${JSON.stringify(tree)}));`;
    const asNobody = ["--reuid=65534", "--regid=65534", "--clear-groups", "--", process.execPath, "--input-type=module", "-e", script];
    const measured = Number((await promisify(execFile)("setpriv", asNobody)).stdout);
    const processes = WORKERS + 1;
    assert.ok(measured >= processes * HEAP_MIB * MIB && measured <= processes * (HEAP_MIB + INTERPRETER_MIB) * MIB, `measured as nobody: ${measured / MIB} MiB`);
  });

  it(`grows by about ${HEAP_MIB} MiB when a worker writes its copy of the heap`, async () => {
    const before = await unitMemoryBytes(tree);
    python.stdin.write("write\n");
    assert.equal((await lines.next()).value, "written");
    const grown = (await unitMemoryBytes(tree)) - before;
    assert.ok(Math.abs(grown - HEAP_MIB * MIB) <= 10 * MIB, `grew by ${grown / MIB} MiB`);
  });
});

describe("unit memory: where smaps_rollup cannot say, each process's RssAnon", () => {
  const STATUS = "Name:\tpython3\nVmRSS:\t    3000 kB\nRssAnon:\t    1000 kB\nRssFile:\t    2000 kB\nRssShmem:\t       0 kB\n";
  const ROLLUP = "00400000-7fff0000 ---p 00000000 00:00 0                          [rollup]\nRss:     3000 kB\nPss:     2000 kB\nPss_Anon:     400 kB\nPss_File:    1600 kB\nPss_Shmem:   0 kB\n";
  const ROLLUP_BEFORE_5_9 = "00400000-7fff0000 ---p 00000000 00:00 0                          [rollup]\nRss:     3000 kB\nPss:     2000 kB\n";
  const cases: { name: string; files: Record<string, string>; rollupIsDirectory?: boolean; kb: number }[] = [
    { name: "reads Pss_Anon from smaps_rollup", files: { status: STATUS, smaps_rollup: ROLLUP }, kb: 400 },
    { name: "takes RssAnon without smaps_rollup (kernels before 4.14)", files: { status: STATUS }, kb: 1000 },
    { name: "takes RssAnon where smaps_rollup has no Pss_Anon (kernels before 5.9)", files: { status: STATUS, smaps_rollup: ROLLUP_BEFORE_5_9 }, kb: 1000 },
    { name: "takes RssAnon where smaps_rollup cannot be read", files: { status: STATUS }, rollupIsDirectory: true, kb: 1000 },
    { name: "counts nothing for a process that ended", files: {}, kb: 0 },
  ];
  for (const c of cases) {
    it(c.name, async () => {
      const procDir = await mkdtemp(path.join(os.tmpdir(), "gpu-agent-proc-"));
      try {
        await mkdir(path.join(procDir, "7"));
        for (const [name, text] of Object.entries(c.files)) await writeFile(path.join(procDir, "7", name), text);
        if (c.rollupIsDirectory === true) await mkdir(path.join(procDir, "7", "smaps_rollup"));
        assert.equal(await unitMemoryBytes({ pids: [7], inner: [] }, { procDir }), c.kb * 1024);
      } finally {
        await rm(procDir, { recursive: true, force: true });
      }
    });
  }

  const quickCases: { name: string; quickUpToKb: number; kb: number }[] = [
    { name: "settles for the RssAnon sum while it is within quickUpToBytes", quickUpToKb: 1000, kb: 1000 },
    { name: "walks the page tables once the RssAnon sum is past quickUpToBytes", quickUpToKb: 999, kb: 400 },
  ];
  for (const c of quickCases) {
    it(c.name, async () => {
      const procDir = await mkdtemp(path.join(os.tmpdir(), "gpu-agent-proc-"));
      try {
        await mkdir(path.join(procDir, "7"));
        await writeFile(path.join(procDir, "7", "status"), STATUS);
        await writeFile(path.join(procDir, "7", "smaps_rollup"), ROLLUP);
        assert.equal(await unitMemoryBytes({ pids: [7], inner: [] }, { procDir, quickUpToBytes: c.quickUpToKb * 1024 }), c.kb * 1024);
      } finally {
        await rm(procDir, { recursive: true, force: true });
      }
    });
  }
});
