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
    { name: "adds what the process swapped out (SwapPss)", files: { status: STATUS, smaps_rollup: `${ROLLUP}Swap:     900 kB\nSwapPss:     300 kB\n` }, kb: 700 },
    { name: "adds VmSwap to RssAnon without smaps_rollup", files: { status: `${STATUS}VmSwap:\t     900 kB\n` }, kb: 1900 },
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

  const quickCases: { name: string; status?: string; quickUpToKb: number; kb: number }[] = [
    { name: "settles for the RssAnon sum while it is within quickUpToBytes", quickUpToKb: 1000, kb: 1000 },
    { name: "walks the page tables once the RssAnon sum is past quickUpToBytes", quickUpToKb: 999, kb: 400 },
    { name: "counts VmSwap in the quick sum: past quickUpToBytes with it, the page tables are walked", status: `${STATUS}VmSwap:\t       1 kB\n`, quickUpToKb: 1000, kb: 400 },
  ];
  for (const c of quickCases) {
    it(c.name, async () => {
      const procDir = await mkdtemp(path.join(os.tmpdir(), "gpu-agent-proc-"));
      try {
        await mkdir(path.join(procDir, "7"));
        await writeFile(path.join(procDir, "7", "status"), c.status ?? STATUS);
        await writeFile(path.join(procDir, "7", "smaps_rollup"), ROLLUP);
        assert.equal(await unitMemoryBytes({ pids: [7], inner: [] }, { procDir, quickUpToBytes: c.quickUpToKb * 1024 }), c.kb * 1024);
      } finally {
        await rm(procDir, { recursive: true, force: true });
      }
    });
  }
});

/**
 * Shared memory that is no process's anonymous memory and no file of the unit's /tmp or /dev/shm:
 * shared anonymous mappings and memfds (which the sandbox refuses, but a mapped one is found the same
 * way), held by real Python processes, each counted once and whole.
 */
describe("unit memory: memfds and shared anonymous mappings", function () {
  const HOARD_MIB = 100;
  const holders: { name: string; python: string; processes: number }[] = [
    {
      name: "a memfd whose descriptor was closed after 4 kB of it were mapped",
      processes: 1,
      python: `fd = os.memfd_create("hoard"); os.write(fd, b"\\1" * size); keep = mmap.mmap(fd, 4096); os.close(fd)`,
    },
    {
      name: "a shared anonymous mapping, touched, shared by 3 forked workers",
      processes: 4,
      python: `keep = mmap.mmap(-1, size); keep[::4096] = b"\\1" * (size // 4096)\nfor _ in range(3):\n    if os.fork() == 0:\n        signal.pause()`,
    },
    {
      name: "a shared anonymous mapping its process never touched, filled by a child that exited",
      processes: 1,
      python: `keep = mmap.mmap(-1, size)\nif os.fork() == 0:\n    keep[::4096] = b"\\1" * (size // 4096)\n    os._exit(0)\nos.wait()`,
    },
  ];
  for (const holder of holders) {
    it(`counts ${HOARD_MIB} MiB in ${holder.name} as ${HOARD_MIB} MiB, proportional and quick`, async () => {
      const script = `import mmap, os, signal\nsize = ${HOARD_MIB} << 20\n${holder.python}\nprint("ready", flush=True)\nsignal.pause()\n`;
      const python = spawn("python3", ["-c", script], { stdio: ["ignore", "pipe", "inherit"], detached: true });
      try {
        const lines = createInterface({ input: python.stdout })[Symbol.asyncIterator]();
        assert.equal((await lines.next()).value, "ready");
        // The parent prints once its fork() calls returned: the workers exist.
        const tree = { pids: (await processTree(python.pid as number)).pids, inner: [] };
        assert.equal(tree.pids.length, holder.processes);
        for (const [how, options] of [["proportional", {}], ["quick", { quickUpToBytes: 2 ** 40 }]] as const) {
          const measured = await unitMemoryBytes(tree, options);
          assert.ok(measured >= HOARD_MIB * MIB && measured <= (HOARD_MIB + INTERPRETER_MIB) * MIB, `${how}: ${measured / MIB} MiB`);
        }
      } finally {
        process.kill(-(python.pid as number), "SIGKILL");
      }
    });
  }

  it("counts what a process maps of a memfd whose size it may not read (no map_files: a reader without CAP_SYS_ADMIN)", async () => {
    const procDir = await mkdtemp(path.join(os.tmpdir(), "gpu-agent-proc-"));
    try {
      await mkdir(path.join(procDir, "7"));
      const header = "7f0000000000-7f0006400000 rw-s 00000000 00:01 4242                       /memfd:hoard (deleted)";
      const files = {
        status: "Name:\tpython3\nRssAnon:\t    1000 kB\nRssShmem:\t  102400 kB\n",
        smaps_rollup: "00400000-7fff0000 ---p 00000000 00:00 0 [rollup]\nPss_Anon:     400 kB\nPss_Shmem:  51200 kB\n",
        maps: `00400000-00401000 r-xp 00000000 08:01 17 /usr/bin/python3.11\n${header}\n`,
        smaps: `00400000-00401000 r-xp 00000000 08:01 17 /usr/bin/python3.11\nRss:     4 kB\nPss:     4 kB\n${header}\nRss:  102400 kB\nPss:   51200 kB\n`,
      };
      for (const [name, text] of Object.entries(files)) await writeFile(path.join(procDir, "7", name), text);
      const tree = { pids: [7], inner: [] };
      assert.equal(await unitMemoryBytes(tree, { procDir }), (400 + 51200) * 1024, "proportional: Pss_Anon and the mapping's Pss");
      assert.equal(await unitMemoryBytes(tree, { procDir, quickUpToBytes: 2 ** 40 }), (1000 + 102400) * 1024, "quick: RssAnon and RssShmem");
    } finally {
      await rm(procDir, { recursive: true, force: true });
    }
  });
});
