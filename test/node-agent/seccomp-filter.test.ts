/**
 * The seccomp filter of every unit (src/node-agent/seccomp-filter.ts), run here by a classic-BPF
 * interpreter of the few instructions it may hold, as the kernel would run it on one system call.
 * That the kernel accepts it and units live with it: unit-sandbox.test.ts and hostile-package.test.ts.
 */
import assert from "node:assert/strict";
import {
  CLONE_NEWUSER,
  DENIED_SYSCALLS,
  ENOSYS,
  EPERM,
  SECCOMP_RET,
  SOCK_FILTER_BYTES,
  seccompArchOf,
  seccompFilter,
  syscallNumber,
} from "../../src/node-agent/seccomp-filter.ts";
import type { SeccompArch } from "../../src/node-agent/seccomp-filter.ts";

/** One system call as the kernel describes it to a filter (struct seccomp_data). */
interface Call {
  arch: number;
  nr: number;
  args?: readonly number[];
}

/** What the kernel does: "allow", "kill", or "errno N". */
type Verdict = "allow" | "kill" | `errno ${number}`;

const AUDIT = { x64: 0xc000003e, i386: 0x40000003, arm64: 0xc00000b7, arm: 0x40000028 } as const;

function seccompData(call: Call): Buffer {
  const data = Buffer.alloc(64);
  data.writeInt32LE(call.nr | 0, 0);
  data.writeUInt32LE(call.arch, 4);
  (call.args ?? []).forEach((a, i) => data.writeBigUInt64LE(BigInt(a), 16 + 8 * i));
  return data;
}

/** Runs `program` on `call`; throws on an instruction the filter should never contain or on running off its end. */
function run(program: Buffer, call: Call): Verdict {
  const data = seccompData(call);
  let a = 0;
  for (let pc = 0; pc * SOCK_FILTER_BYTES < program.length; pc++) {
    const o = pc * SOCK_FILTER_BYTES;
    const code = program.readUInt16LE(o);
    const jt = program.readUInt8(o + 2);
    const jf = program.readUInt8(o + 3);
    const k = program.readUInt32LE(o + 4);
    const jump = (taken: boolean) => (pc += taken ? jt : jf);
    switch (code) {
      case 0x20:
        assert.ok(k % 4 === 0 && k + 4 <= 64, `aligned load inside seccomp_data, at ${k}`);
        a = data.readUInt32LE(k);
        break;
      case 0x15:
        jump(a === k);
        break;
      case 0x35:
        jump(a >= k);
        break;
      case 0x45:
        jump((a & k) !== 0);
        break;
      case 0x06:
        if (k === SECCOMP_RET.allow) return "allow";
        if (k === SECCOMP_RET.killProcess) return "kill";
        assert.equal(k & 0xffff0000, SECCOMP_RET.errno, `a known return value, not ${k.toString(16)}`);
        return `errno ${k & 0xffff}`;
      default:
        assert.fail(`unexpected instruction ${code.toString(16)} at ${pc}`);
    }
  }
  return assert.fail("the program ran off its end");
}

const ARCHES: readonly SeccompArch[] = ["x64", "arm64"];
const pinned = (arch: SeccompArch) => seccompFilter({ arch, denyAffinityChange: true });
const unpinned = (arch: SeccompArch) => seccompFilter({ arch, denyAffinityChange: false });
const call = (arch: SeccompArch, name: Parameters<typeof syscallNumber>[1], args: readonly number[] = []): Call => ({ arch: AUDIT[arch], nr: syscallNumber(arch, name), args });
const CLONE_THREAD_FLAGS = 0x003d0f00; // what glibc's pthread_create passes: VM, FS, FILES, SIGHAND, THREAD, SYSVSEM, SETTLS, *_TID

describe("seccomp filter of every unit", () => {
  it("is whole sock_filter entries and at most BPF's 4096 instructions", () => {
    for (const arch of ARCHES) {
      const program = pinned(arch);
      assert.equal(program.length % SOCK_FILTER_BYTES, 0);
      assert.ok(program.length / SOCK_FILTER_BYTES <= 4096);
    }
  });

  it("is the same bytes for the same options", () => {
    assert.deepEqual(pinned("x64"), pinned("x64"));
    assert.notDeepEqual(pinned("x64"), unpinned("x64"));
  });

  it("knows x64 and arm64 only", () => {
    assert.deepEqual(["x64", "arm64", "ia32", "riscv64"].map(seccompArchOf), ["x64", "arm64", undefined, undefined]);
  });

  for (const arch of ARCHES) {
    describe(`on ${arch}`, () => {
      const cases: { name: string; call: Call; pinned: Verdict; unpinned: Verdict }[] = [
        { name: "an ordinary call (read, nr 0 on x64, 63 on arm64)", call: { arch: AUDIT[arch], nr: arch === "x64" ? 0 : 63 }, pinned: "allow", unpinned: "allow" },
        { name: "a thread (clone without CLONE_NEWUSER)", call: call(arch, "clone", [CLONE_THREAD_FLAGS]), pinned: "allow", unpinned: "allow" },
        { name: "a fork (clone with SIGCHLD only)", call: call(arch, "clone", [17]), pinned: "allow", unpinned: "allow" },
        { name: "clone with CLONE_NEWUSER", call: call(arch, "clone", [CLONE_NEWUSER | 17]), pinned: `errno ${EPERM}`, unpinned: `errno ${EPERM}` },
        { name: "unshare(CLONE_NEWUSER | CLONE_NEWNS)", call: call(arch, "unshare", [CLONE_NEWUSER | 0x00020000]), pinned: `errno ${EPERM}`, unpinned: `errno ${EPERM}` },
        { name: "unshare(CLONE_NEWNS) (refused later by the kernel: no capability)", call: call(arch, "unshare", [0x00020000]), pinned: "allow", unpinned: "allow" },
        { name: "clone3, whose flags are in memory: ENOSYS, so libc falls back to clone", call: call(arch, "clone3"), pinned: `errno ${ENOSYS}`, unpinned: `errno ${ENOSYS}` },
        { name: "memfd_create: ENOSYS, so callers fall back to a file in /dev/shm", call: call(arch, "memfd_create"), pinned: `errno ${ENOSYS}`, unpinned: `errno ${ENOSYS}` },
        { name: "io_uring_setup: ENOSYS, so callers fall back to plain reads and writes", call: call(arch, "io_uring_setup"), pinned: `errno ${ENOSYS}`, unpinned: `errno ${ENOSYS}` },
        { name: "sched_setaffinity", call: call(arch, "sched_setaffinity"), pinned: `errno ${EPERM}`, unpinned: "allow" },
        { name: "another architecture's call", call: { arch: arch === "x64" ? AUDIT.i386 : AUDIT.arm, nr: 1 }, pinned: "kill", unpinned: "kill" },
      ];
      if (arch === "x64") cases.push({ name: "an x32 call", call: { arch: AUDIT.x64, nr: 0x40000000 + 1 }, pinned: `errno ${EPERM}`, unpinned: `errno ${EPERM}` });
      for (const c of cases) {
        it(`${c.name}: ${c.pinned} when the unit is pinned, ${c.unpinned} when not`, () => {
          assert.equal(run(pinned(arch), c.call), c.pinned);
          assert.equal(run(unpinned(arch), c.call), c.unpinned);
        });
      }

      it("refuses every call of the fixed list with EPERM", () => {
        for (const name of DENIED_SYSCALLS) assert.equal(run(unpinned(arch), call(arch, name)), `errno ${EPERM}`, name);
      });
    });
  }
});
