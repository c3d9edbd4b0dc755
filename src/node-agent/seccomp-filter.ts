/**
 * The seccomp filter every sandboxed unit runs under (bwrap `--seccomp FD`, unit-sandbox.ts): a classic-BPF
 * program, as the kernel's `struct sock_filter[]`, that the kernel runs on every system call of the unit.
 *
 * Why a filter on top of bubblewrap's namespaces, no_new_privs and an empty capability set:
 * - as root the agent starts bwrap without a user namespace, so bwrap's `--disable-userns` is not
 *   available, and a unit could make a user namespace of its own and be "root" in it: the kernel's
 *   attack surface of namespaced capabilities (netfilter, mounts, …) opens up. Creating one is refused.
 * - without a delegated cgroup, CPU affinity is the unit's CPU limit, and any process may widen its own
 *   affinity again: sched_setaffinity is refused to a pinned unit (the pin is set outside the sandbox).
 * - a short list of calls no training job needs and that are the kernel's favourite attack surface
 *   (keyrings, eBPF, perf, userfaultfd) or that only an administrator uses (modules, kexec, mounts),
 *   and SysV shared memory and memfds, which the memory watch cannot see (unit-limits.ts).
 *   Most need a capability the unit lacks anyway; refusing them costs nothing and holds if one slips.
 * ptrace stays allowed: a unit sees only its own processes (PID namespace, its own uid), and debuggers
 * and profilers (py-spy, gdb) need it.
 *
 * Everything else is allowed: a deny list, not Docker's allow list, because a unit runs arbitrary
 * scientific code (CUDA drivers, MPI, …) and an allow list would break it in ways no test here shows.
 * No npm package compiles seccomp BPF without a native build step, hence this small assembler (pure:
 * the same options give the same bytes; test/node-agent/seccomp-filter.test.ts runs the program).
 */

/** The architectures the filter knows system call numbers for (Node's `process.arch`). */
export type SeccompArch = "x64" | "arm64";

/** What the filter refuses beyond its fixed list. */
export interface SeccompOptions {
  arch: SeccompArch;
  /** Refuse sched_setaffinity: the unit is pinned to its CPUs and the pin is its CPU limit. */
  denyAffinityChange: boolean;
}

/** `AUDIT_ARCH_*` of <linux/audit.h>: the value of seccomp_data.arch for each architecture's native calls. */
const AUDIT_ARCH: Record<SeccompArch, number> = { x64: 0xc000003e, arm64: 0xc00000b7 };

/** x32 calls on x86_64 carry this bit in their number; the filter below is written for the 64-bit table. */
const X32_SYSCALL_BIT = 0x40000000;

/** The calls the filter treats specially, by architecture (x86_64's unistd_64.h, the generic table for arm64). */
const SYSCALLS = {
  x64: {
    clone: 56, clone3: 435, unshare: 272, setns: 308, sched_setaffinity: 203,
    keyctl: 250, add_key: 248, request_key: 249, bpf: 321, perf_event_open: 298, userfaultfd: 323,
    kexec_load: 246, kexec_file_load: 320, init_module: 175, finit_module: 313, delete_module: 176,
    mount: 165, umount2: 166, pivot_root: 155, open_tree: 428, move_mount: 429, fsopen: 430, fsconfig: 431, fsmount: 432, fspick: 433, mount_setattr: 442,
    shmget: 29, memfd_create: 319, io_uring_setup: 425,
  },
  arm64: {
    clone: 220, clone3: 435, unshare: 97, setns: 268, sched_setaffinity: 122,
    keyctl: 219, add_key: 217, request_key: 218, bpf: 280, perf_event_open: 241, userfaultfd: 282,
    kexec_load: 104, kexec_file_load: 294, init_module: 105, finit_module: 273, delete_module: 106,
    mount: 40, umount2: 39, pivot_root: 41, open_tree: 428, move_mount: 429, fsopen: 430, fsconfig: 431, fsmount: 432, fspick: 433, mount_setattr: 442,
    shmget: 194, memfd_create: 279, io_uring_setup: 425,
  },
} as const satisfies Record<SeccompArch, Record<string, number>>;

type SyscallName = keyof (typeof SYSCALLS)["x64"];

/** Refused with EPERM whatever their arguments. */
export const DENIED_SYSCALLS: readonly SyscallName[] = [
  "setns",
  "keyctl",
  "add_key",
  "request_key",
  "bpf",
  "perf_event_open",
  "userfaultfd",
  "kexec_load",
  "kexec_file_load",
  "init_module",
  "finit_module",
  "delete_module",
  "mount",
  "umount2",
  "pivot_root",
  "open_tree",
  "move_mount",
  "fsopen",
  "fsconfig",
  "fsmount",
  "fspick",
  "mount_setattr",
  // A SysV segment outlives the processes that attached it: detached, its pages are in no process's
  // map, and without a delegated cgroup the memory watch could not see them. POSIX shared memory
  // (files in /dev/shm, shared mappings) is what training code uses, and the watch counts it.
  "shmget",
];

/**
 * Answered ENOSYS, as by a kernel that predates them, so that libraries take the path they keep for
 * such kernels:
 * - clone3: its flags are in memory, which a filter cannot read; libc falls back to clone, whose
 *   flags are in a register;
 * - memfd_create: a memfd held only by its descriptor is memory the memory watch could find only by
 *   a readlink of every descriptor of every process at every measurement (unit-limits.ts); callers
 *   (asmjit in PyTorch, glib, Mesa) fall back to a file in /dev/shm, which the watch counts;
 * - io_uring_setup: io_uring has been one of the kernel's most exploited interfaces (container
 *   runtimes' default profiles refuse it too); liburing users fall back to ordinary reads and writes.
 */
export const UNIMPLEMENTED_SYSCALLS: readonly SyscallName[] = ["clone3", "memfd_create", "io_uring_setup"];

/** <linux/sched.h>: the flag of clone and unshare that makes a user namespace. */
export const CLONE_NEWUSER = 0x10000000;

/** <linux/seccomp.h> return values. */
export const SECCOMP_RET = { killProcess: 0x80000000, errno: 0x00050000, allow: 0x7fff0000 } as const;
export const EPERM = 1;
export const ENOSYS = 38;

/** Offsets in `struct seccomp_data { int nr; u32 arch; u64 instruction_pointer; u64 args[6]; }`. */
const DATA = { nr: 0, arch: 4, arg0Low: 16 } as const;

/** Classic-BPF opcodes (<linux/filter.h>) the filter uses. */
const BPF = {
  ldAbsWord: 0x20, // BPF_LD | BPF_W | BPF_ABS: A = data[k]
  jeq: 0x15, // BPF_JMP | BPF_JEQ | BPF_K
  jge: 0x35, // BPF_JMP | BPF_JGE | BPF_K
  jset: 0x45, // BPF_JMP | BPF_JSET | BPF_K: A & k
  ret: 0x06, // BPF_RET | BPF_K
} as const;

/** One instruction before assembly: a jump names its targets by label; undefined falls through. */
interface Step {
  code: number;
  k: number;
  jt?: string;
  jf?: string;
  label?: string;
}

/** The size of one `struct sock_filter { u16 code; u8 jt; u8 jf; u32 k; }`. */
export const SOCK_FILTER_BYTES = 8;

/** Resolves labels into the relative offsets classic BPF jumps by (forward only, at most 255). */
function assemble(steps: readonly Step[]): Buffer {
  const at = new Map<string, number>();
  steps.forEach((s, i) => s.label !== undefined && at.set(s.label, i));
  const out = Buffer.alloc(steps.length * SOCK_FILTER_BYTES);
  const offset = (from: number, label: string | undefined): number => {
    if (label === undefined) return 0;
    const to = at.get(label);
    if (to === undefined || to <= from || to - from - 1 > 255) throw new Error(`seccomp filter: bad jump to ${label}`);
    return to - from - 1;
  };
  steps.forEach((s, i) => {
    const o = i * SOCK_FILTER_BYTES;
    // The kernel reads the program in the machine's byte order; x86_64 and arm64 Linux are little-endian.
    out.writeUInt16LE(s.code, o);
    out.writeUInt8(offset(i, s.jt), o + 2);
    out.writeUInt8(offset(i, s.jf), o + 3);
    out.writeUInt32LE(s.k >>> 0, o + 4);
  });
  return out;
}

/** The seccomp architecture for Node's `process.arch`, or undefined where the filter has no table. */
export function seccompArchOf(arch: string): SeccompArch | undefined {
  return arch === "x64" || arch === "arm64" ? arch : undefined;
}

/**
 * The compiled filter for bwrap's `--seccomp`:
 * 1. a call of another architecture (i386 `int 0x80` on x86_64, arm32 on arm64) kills the process: its
 *    numbers mean other calls, so nothing below would hold for it;
 * 2. x32 calls are refused (EPERM), for the same reason;
 * 3. clone3, memfd_create and io_uring_setup answer ENOSYS (UNIMPLEMENTED_SYSCALLS);
 * 4. clone and unshare with CLONE_NEWUSER, the fixed list, and (pinned units) sched_setaffinity: EPERM.
 */
export function seccompFilter(opts: SeccompOptions): Buffer {
  const nr = SYSCALLS[opts.arch];
  const steps: Step[] = [
    { code: BPF.ldAbsWord, k: DATA.arch },
    { code: BPF.jeq, k: AUDIT_ARCH[opts.arch], jt: "native", jf: "kill" },
    { code: BPF.ldAbsWord, k: DATA.nr, label: "native" },
  ];
  if (opts.arch === "x64") steps.push({ code: BPF.jge, k: X32_SYSCALL_BIT, jt: "deny" });
  for (const name of UNIMPLEMENTED_SYSCALLS) steps.push({ code: BPF.jeq, k: nr[name], jt: "nosys" });
  for (const name of ["clone", "unshare"] as const) steps.push({ code: BPF.jeq, k: nr[name], jt: "flags" });
  const denied = [...DENIED_SYSCALLS, ...(opts.denyAffinityChange ? (["sched_setaffinity"] as const) : [])];
  for (const name of denied) steps.push({ code: BPF.jeq, k: nr[name], jt: "deny" });
  steps.push(
    { code: BPF.ret, k: SECCOMP_RET.allow },
    // The flags are the first argument of both clone and unshare on x86_64 and arm64; CLONE_NEWUSER is in its low word.
    { code: BPF.ldAbsWord, k: DATA.arg0Low, label: "flags" },
    { code: BPF.jset, k: CLONE_NEWUSER, jt: "deny" },
    { code: BPF.ret, k: SECCOMP_RET.allow },
    { code: BPF.ret, k: SECCOMP_RET.errno | EPERM, label: "deny" },
    { code: BPF.ret, k: SECCOMP_RET.errno | ENOSYS, label: "nosys" },
    { code: BPF.ret, k: SECCOMP_RET.killProcess, label: "kill" },
  );
  return assemble(steps);
}

/** The number of `name` on `arch` (for tests and messages). */
export function syscallNumber(arch: SeccompArch, name: SyscallName): number {
  return SYSCALLS[arch][name];
}
