/**
 * The limits on a sandboxed unit (memory, processes, CPU) and what enforces them: a cgroup v2 the
 * agent was delegated (systemd `Delegate=yes`) when it has one, otherwise rlimits set in the sandbox,
 * CPU affinity and a watcher that sums the proportional memory of the unit's processes (`unitMemoryBytes`).
 *
 * Every process of a sandbox descends from its bwrap: orphans are re-parented to the sandbox's own
 * init (PID 1 of its namespace), never to the host's, so the process tree under bwrap is the unit.
 */
import { constants as fsConstants } from "node:fs";
import { access, appendFile, mkdir, readdir, readFile, rmdir, stat, statfs, writeFile } from "node:fs/promises";
import path from "node:path";

/**
 * Which mechanism enforces each limit, as reported in Capabilities.isolation.limits; `syscalls` is the
 * filter on what a unit may ask of the kernel (`seccomp`: seccomp-filter.ts, or `none`).
 */
export type LimitMechanisms = Record<"memory" | "pids" | "cpu" | "disk" | "syscalls", string>;

/** Host pids of `root` and every process below it; `inner` are root's own children (the sandbox's init). */
export interface ProcessTree {
  pids: number[];
  inner: number[];
}

function numbers(text: string): number[] {
  return text
    .split(/\s+/)
    .filter((t) => /^\d+$/.test(t))
    .map(Number);
}

/** Children of `pid`, from the kernel's per-thread children lists (undefined when the kernel has none). */
async function childrenOf(pid: number, procDir: string): Promise<number[] | undefined> {
  const tasks = await readdir(path.join(procDir, String(pid), "task")).catch(() => undefined);
  if (tasks === undefined) return [];
  const out: number[] = [];
  for (const tid of tasks) {
    const text = await readFile(path.join(procDir, String(pid), "task", tid, "children"), "utf8").catch((err: NodeJS.ErrnoException) =>
      err.code === "ENOENT" && tid === String(pid) ? undefined : "",
    );
    if (text === undefined) return undefined;
    out.push(...numbers(text));
  }
  return out;
}

/** The parent of every process, from /proc/<pid>/stat (the slow way, for kernels without children lists). */
async function parentsOfAll(procDir: string): Promise<Map<number, number[]>> {
  const byParent = new Map<number, number[]>();
  for (const name of await readdir(procDir)) {
    if (!/^\d+$/.test(name)) continue;
    const stat = await readFile(path.join(procDir, name, "stat"), "utf8").catch(() => "");
    // The command name may hold spaces and parentheses: the fields after it start past the last ')'.
    const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
    if (!Number.isInteger(ppid)) continue;
    const list = byParent.get(ppid) ?? [];
    list.push(Number(name));
    byParent.set(ppid, list);
  }
  return byParent;
}

/** `root` and its descendants. */
export async function processTree(root: number, procDir = "/proc"): Promise<ProcessTree> {
  const pids = [root];
  let byParent: Map<number, number[]> | undefined;
  let inner: number[] = [];
  for (let i = 0; i < pids.length; i++) {
    const pid = pids[i] as number;
    let kids = byParent === undefined ? await childrenOf(pid, procDir) : undefined;
    if (kids === undefined) {
      byParent ??= await parentsOfAll(procDir);
      kids = byParent.get(pid) ?? [];
    }
    if (i === 0) inner = kids;
    for (const k of kids) if (!pids.includes(k)) pids.push(k);
  }
  return { pids, inner };
}

/** kB of one `Name:   123 kB` line of /proc/<pid>/status or smaps_rollup; undefined when it has none. */
function fieldKb(text: string, name: string): number | undefined {
  const m = text.match(new RegExp(`^${name}:\\s+(\\d+)\\s+kB`, "m"));
  return m ? Number(m[1]) : undefined;
}

/** Where `unitMemoryBytes` reads, and when it may settle for the quick upper bound. */
export interface UnitMemoryOptions {
  /** Default /proc; tests lay out a directory like it. */
  procDir?: string;
  /**
   * Bytes at or under which the quick upper bound (each process's RssAnon) is answer enough, as the
   * proportional sum can only be lower: a watcher passes its limit, so the costly page-table walk
   * runs only for a unit that may be over it. Default 0: always proportional.
   */
  quickUpToBytes?: number;
}

/** Sum of `fields` over the /proc/<pid>/status of each pid, in kB (0 for a process that ended). */
async function statusSumKb(pids: readonly number[], procDir: string, ...fields: string[]): Promise<number> {
  let kb = 0;
  for (const pid of pids) {
    const status = await readFile(path.join(procDir, String(pid), "status"), "utf8").catch(() => "");
    for (const field of fields) kb += fieldKb(status, field) ?? 0;
  }
  return kb;
}

/**
 * A process's private anonymous memory in status terms: resident (RssAnon) and swapped out (VmSwap).
 * Swap counts because a unit may page its own memory out (madvise MADV_PAGEOUT) on a node with swap,
 * where a delegated cgroup would allow it none.
 */
const ANON_STATUS_FIELDS = ["RssAnon", "VmSwap"];

/**
 * The proportional anonymous memory of `pid`, in kB: each anonymous page divided by the number of
 * processes mapping it, so that summed over processes sharing pages after a fork, each page counts
 * once, resident (Pss_Anon) or swapped out (SwapPss). Falls back to the process's RssAnon and VmSwap
 * (each shared page in full) where smaps_rollup cannot say: absent (kernels before 4.14), without a
 * Pss_Anon line (before 5.9), or unreadable (EACCES: reading it needs ptrace-read access, which
 * /proc/<pid>/status does not; ESRCH: the process is ending).
 */
async function proportionalAnonKb(pid: number, procDir: string): Promise<number> {
  const rollup = await readFile(path.join(procDir, String(pid), "smaps_rollup"), "utf8").catch(() => "");
  const resident = fieldKb(rollup, "Pss_Anon");
  if (resident === undefined) return statusSumKb([pid], procDir, ...ANON_STATUS_FIELDS);
  return resident + (fieldKb(rollup, "SwapPss") ?? 0);
}

/**
 * Where a unit can keep memory that is neither its processes' anonymous pages nor a file in its own
 * /tmp or /dev/shm: a shared anonymous mapping (MAP_SHARED|MAP_ANONYMOUS, or /dev/zero mapped shared:
 * `/dev/zero (deleted)` in /proc/<pid>/maps), a memfd (`/memfd:NAME (deleted)`), a SysV segment
 * (`/SYSV…`) and, on kernels that name them, `[anon_shmem:…]`. They are files of the kernel's internal
 * tmpfs, which no statfs of the unit's mounts sees. The sandbox's seccomp filter refuses memfd_create
 * and shmget (seccomp-filter.ts), so what a unit holds of them it holds by a mapping, which is where
 * this looks: a memfd held only by a descriptor would need a walk over every descriptor of every
 * process (a readlink each) at every measurement.
 */
const SHMEM_PATH = String.raw`(\/dev\/zero|\/memfd:|\/SYSV[0-9a-f]{8}|\[anon_shmem)`;
/** A mapping's path that names a shmem object. */
const SHMEM_OBJECT = new RegExp(`^${SHMEM_PATH}`);
/** Some mapping in a maps text names one (paths follow a space). */
const SHMEM_OBJECT_ANYWHERE = new RegExp(` ${SHMEM_PATH}`);

/** A shmem object mapped by a process whose size could not be read (map_files needs CAP_SYS_ADMIN). */
interface UnsizedMapping {
  pid: number;
  range: string;
}

/** The unit's shmem objects, each counted once at its whole size, and the mappings of unknown size. */
interface ShmemObjects {
  bytes: number;
  unsized: UnsizedMapping[];
}

/**
 * Bytes of every shmem object (SHMEM_OBJECT) the processes map, each object once (by inode) and whole:
 * its allocated blocks, not the pages one process touched, because the pages of a shared region stay
 * when the child that touched them exits, and a mapping of 4 kB keeps a whole object alive. Sized by
 * stat through /proc/<pid>/map_files, which only a reader with CAP_SYS_ADMIN may open: where it
 * cannot, the mapping is `unsized`, and the caller counts what the process maps of it instead.
 * Reads /proc/<pid>/maps, which, unlike smaps, walks no page table (about 1 ms for a process that
 * imported PyTorch, 300 mappings, on the test machine).
 */
async function shmemObjects(pids: readonly number[], procDir: string): Promise<ShmemObjects> {
  const seen = new Set<number>();
  let bytes = 0;
  const unsized: UnsizedMapping[] = [];
  for (const pid of pids) {
    const maps = await readFile(path.join(procDir, String(pid), "maps"), "utf8").catch(() => "");
    // Most processes map no shmem object: one search of the text instead of a match per mapping.
    if (!SHMEM_OBJECT_ANYWHERE.test(maps)) continue;
    for (const line of maps.split("\n")) {
      // start-end perms offset dev inode path (the path may hold spaces)
      const m = line.match(/^([0-9a-f]+-[0-9a-f]+) \S+ \S+ \S+ \d+\s+(.*)$/);
      if (!m || !SHMEM_OBJECT.test(m[2] as string)) continue;
      const range = m[1] as string;
      const object = await stat(path.join(procDir, String(pid), "map_files", range)).catch(() => undefined);
      if (object === undefined) unsized.push({ pid, range });
      else if (!seen.has(object.ino)) {
        seen.add(object.ino);
        bytes += object.blocks * 512;
      }
    }
  }
  return { bytes, unsized };
}

/** kB a process maps of the given mappings (their Pss, from /proc/<pid>/smaps; it walks their page tables). */
async function mappedPssKb(pid: number, ranges: ReadonlySet<string>, procDir: string): Promise<number> {
  const smaps = await readFile(path.join(procDir, String(pid), "smaps"), "utf8").catch(() => "");
  let kb = 0;
  let counting = false;
  for (const line of smaps.split("\n")) {
    const header = line.match(/^([0-9a-f]+-[0-9a-f]+) /);
    if (header) counting = ranges.has(header[1] as string);
    else if (counting && line.startsWith("Pss:")) kb += fieldKb(line, "Pss") ?? 0;
  }
  return kb;
}

/**
 * Memory a sandboxed unit holds, in bytes: the proportional anonymous memory of its processes (Pss_Anon
 * of /proc/<pid>/smaps_rollup; what a cgroup would charge them, each page shared after a fork once,
 * shared libraries being file pages that count nothing), plus what it keeps in its private /tmp and
 * /dev/shm (tmpfs is memory, measured with statfs), plus its other shared memory: shared anonymous
 * mappings, memfds (`shmemObjects`). Pss_Anon leaves out shared memory, whose pages smaps_rollup
 * reports apart as Pss_Shmem (checked on Linux 6.18: mapping and touching 100 MB of a /dev/shm file,
 * or of a MAP_SHARED|MAP_ANONYMOUS region, raised Pss_Shmem by 100 MB and Pss_Anon by nothing), so
 * nothing is counted twice: a /dev/shm file by statfs, a shared region or memfd by its inode.
 *
 * Cost: smaps_rollup walks the process's page tables. On this project's 2-core test machine
 * (Linux 6.18, firecracker VM) one read of a process holding 1 GB of touched 4 kB pages took
 * about 25 ms (2–3 ms with transparent huge pages), against 0.03 ms for /proc/<pid>/status; a unit
 * of a 1 GB parent and 8 forked workers thus costs about 9 × 25 ms per measurement. Hence
 * `quickUpToBytes`: while the RssAnon sum, which is not lower (but for the kernel's per-CPU counter
 * slack, a few pages per CPU), stays within the limit, no page table is walked. The shmem objects
 * are counted the same way in both (maps and stat walk no page table); where a mapping's object
 * cannot be sized, the quick sum takes the process's RssShmem, which is not lower than the Pss of
 * that mapping, and the proportional sum that Pss.
 */
export async function unitMemoryBytes(tree: ProcessTree, options: UnitMemoryOptions = {}): Promise<number> {
  const procDir = options.procDir ?? "/proc";
  let tmpfsBytes = 0;
  const init = tree.inner[0];
  if (init !== undefined) {
    for (const dir of ["tmp", "dev/shm"]) {
      const s = await statfs(path.join(procDir, String(init), "root", dir)).catch(() => undefined);
      if (s !== undefined) tmpfsBytes += (s.blocks - s.bfree) * s.bsize;
    }
  }
  const shmem = await shmemObjects(tree.pids, procDir);
  const unsizedPids = [...new Set(shmem.unsized.map((u) => u.pid))];
  const quickUpTo = options.quickUpToBytes ?? 0;
  if (quickUpTo > 0) {
    const anonKb = await statusSumKb(tree.pids, procDir, ...ANON_STATUS_FIELDS);
    const unsizedKb = await statusSumKb(unsizedPids, procDir, "RssShmem");
    const quick = (anonKb + unsizedKb) * 1024 + tmpfsBytes + shmem.bytes;
    if (quick <= quickUpTo) return quick;
  }
  let kb = 0;
  for (const pid of tree.pids) kb += await proportionalAnonKb(pid, procDir);
  for (const pid of unsizedPids) kb += await mappedPssKb(pid, new Set(shmem.unsized.filter((u) => u.pid === pid).map((u) => u.range)), procDir);
  return kb * 1024 + tmpfsBytes + shmem.bytes;
}

/** Sends `signal` to each pid; those already gone are skipped. */
export function signalEach(pids: readonly number[], signal: NodeJS.Signals): void {
  for (const pid of pids) {
    try {
      process.kill(pid, signal);
    } catch {
      // ESRCH: it ended meanwhile.
    }
  }
}

/** [0, 1, 2, 3, 5] from the kernel's list syntax `0-3,5` (/proc/self/status Cpus_allowed_list). */
export function parseCpuList(text: string): number[] {
  const cpus: number[] = [];
  for (const part of text.trim().split(",")) {
    const m = part.match(/^(\d+)(?:-(\d+))?$/);
    if (!m) continue;
    const from = Number(m[1]);
    const to = m[2] === undefined ? from : Number(m[2]);
    for (let c = from; c <= to; c++) cpus.push(c);
  }
  return cpus;
}

/** The CPUs this process may run on. */
export async function allowedCpus(statusFile = "/proc/self/status"): Promise<number[]> {
  const status = await readFile(statusFile, "utf8").catch(() => "");
  return parseCpuList(status.match(/^Cpus_allowed_list:\s*(\S+)/m)?.[1] ?? "");
}

/**
 * Gives each unit as many CPUs as its stage asked for, the least used ones first, so concurrent units
 * land on different cores while there are enough; a unit asking for all of them (or for none) gets no
 * pinning.
 */
export class CpuAllocator {
  private readonly load: Map<number, number>;

  constructor(cpus: readonly number[]) {
    this.load = new Map(cpus.map((c) => [c, 0]));
  }

  /** CPUs for a unit of `cores` cores; undefined: run on all. */
  take(cores: number): number[] | undefined {
    if (cores <= 0 || cores >= this.load.size) return undefined;
    const chosen = [...this.load.entries()]
      .sort((a, b) => a[1] - b[1] || a[0] - b[0])
      .slice(0, cores)
      .map(([c]) => c)
      .sort((a, b) => a - b);
    for (const c of chosen) this.load.set(c, (this.load.get(c) ?? 0) + 1);
    return chosen;
  }

  release(cpus: readonly number[] | undefined): void {
    for (const c of cpus ?? []) if (this.load.has(c)) this.load.set(c, Math.max(0, (this.load.get(c) ?? 0) - 1));
  }
}

/** A cgroup v2 sub-tree the agent may manage, or why there is none. */
export type CgroupSupport = { kind: "delegated"; dir: string } | { kind: "none"; reason: string };

const NEEDED_CONTROLLERS = ["memory", "pids", "cpu"];

/**
 * Whether this process sits in a cgroup v2 it may divide among units: the unified hierarchy mounted
 * at `fsRoot`, its own cgroup offering the memory, pids and cpu controllers and writable by it.
 */
export async function detectDelegatedCgroup(fsRoot = "/sys/fs/cgroup", selfCgroupFile = "/proc/self/cgroup"): Promise<CgroupSupport> {
  const rootControllers = await readFile(path.join(fsRoot, "cgroup.controllers"), "utf8").catch(() => undefined);
  if (rootControllers === undefined) return { kind: "none", reason: `no cgroup v2 hierarchy at ${fsRoot} (cgroup v1 or hybrid)` };
  const own = (await readFile(selfCgroupFile, "utf8").catch(() => "")).match(/^0::(\/\S*)$/m)?.[1];
  if (own === undefined) return { kind: "none", reason: "this process is in no cgroup v2" };
  const dir = path.join(fsRoot, own);
  const controllers = (await readFile(path.join(dir, "cgroup.controllers"), "utf8").catch(() => "")).split(/\s+/);
  const missing = NEEDED_CONTROLLERS.filter((c) => !controllers.includes(c));
  if (missing.length > 0) return { kind: "none", reason: `cgroup ${own} offers no ${missing.join(", ")} controller (start the agent with systemd Delegate=yes)` };
  for (const file of ["cgroup.procs", "cgroup.subtree_control"]) {
    const writable = await access(path.join(dir, file), fsConstants.W_OK).then(() => true, () => false);
    if (!writable) return { kind: "none", reason: `cgroup ${own} is not delegated to the agent (${file} is not writable)` };
  }
  return { kind: "delegated", dir };
}

/** What a unit's cgroup is limited to. */
export interface CgroupLimits {
  memoryMb: number;
  maxProcesses: number;
  cpuCores: number;
}

/**
 * Units' cgroups under the agent's delegated one. cgroup v2 lets only leaves hold processes, so the
 * agent first moves itself into `<dir>/agent` and then enables the controllers for its children.
 */
export class UnitCgroups {
  readonly dir: string;

  private constructor(dir: string) {
    this.dir = dir;
  }

  /** Moves the agent into its leaf and enables the controllers; throws when the kernel refuses. */
  static async open(dir: string): Promise<UnitCgroups> {
    const leaf = path.join(dir, "agent");
    await mkdir(leaf, { recursive: true });
    const procs = numbers(await readFile(path.join(dir, "cgroup.procs"), "utf8"));
    for (const pid of procs) await writeFile(path.join(leaf, "cgroup.procs"), String(pid)).catch(() => {});
    await writeFile(path.join(dir, "cgroup.subtree_control"), NEEDED_CONTROLLERS.map((c) => `+${c}`).join(" "));
    return new UnitCgroups(dir);
  }

  /** Creates the cgroup of one unit with its limits; returns its directory. */
  async create(name: string, limits: CgroupLimits): Promise<string> {
    const dir = path.join(this.dir, name);
    await mkdir(dir, { recursive: true });
    if (limits.memoryMb > 0) {
      await writeFile(path.join(dir, "memory.max"), String(limits.memoryMb * 1024 * 1024));
      // Swap would let a unit run past its memory at the owner's expense.
      await writeFile(path.join(dir, "memory.swap.max"), "0").catch(() => {});
    }
    await writeFile(path.join(dir, "pids.max"), String(limits.maxProcesses));
    if (limits.cpuCores > 0) await writeFile(path.join(dir, "cpu.max"), `${limits.cpuCores * 100_000} 100000`);
    return dir;
  }

  /** True when the kernel killed a process of the unit for its memory limit. */
  async oomKilled(dir: string): Promise<boolean> {
    const events = await readFile(path.join(dir, "memory.events"), "utf8").catch(() => "");
    return Number(events.match(/^oom_kill\s+(\d+)/m)?.[1] ?? 0) > 0;
  }

  /**
   * Kills whatever is left in the unit's cgroup and removes it; the kernel empties it asynchronously,
   * so removal is retried (`pause` between tries) for up to about a second.
   */
  async remove(dir: string, pause: (ms: number) => Promise<void>): Promise<void> {
    await appendFile(path.join(dir, "cgroup.kill"), "1").catch(() => {});
    for (let tries = 0; tries < 50; tries++) {
      const removed = await rmdir(dir).then(() => true, (err: NodeJS.ErrnoException) => err.code === "ENOENT");
      if (removed) return;
      await pause(20);
    }
  }
}
