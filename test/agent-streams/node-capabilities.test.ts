/**
 * The rules a node's self-description must keep (src/agent-streams/node-capabilities.ts), as a table:
 * each broken rule is named by its field, several at once are all named, and what a real node
 * reports passes. Also the cleaning of text reported later in a session.
 */
import assert from "node:assert/strict";
import { create } from "@bufbuild/protobuf";
import type { MessageInitShape } from "@bufbuild/protobuf";
import { CapabilitiesSchema, IsolationSchema, OwnerPolicySchema } from "../../src/gen/gpuagent/agent/v1/agent_pb.ts";
import {
  describeProblems,
  nodeCapabilityBounds,
  storableText,
  storedIsolation,
  storedOwnerPolicy,
  validateNodeCapabilities,
  validateRunningUnits,
} from "../../src/agent-streams/node-capabilities.ts";
import type { StoredIsolation, StoredOwnerPolicy } from "../../src/store/nodes.ts";

type Init = MessageInitShape<typeof CapabilitiesSchema>;

const realNode: Init = {
  cpuCores: 32,
  memoryMb: 256 * 1024,
  diskFreeMb: 2_000_000,
  gpus: [
    { index: 0, name: "NVIDIA H100 80GB HBM3", vramMb: 81_559, uuid: "GPU-5a1b2c3d-0000-1111-2222-333344445555" },
    { index: 1, name: "NVIDIA H100 80GB HBM3", vramMb: 81_559, uuid: "GPU-5a1b2c3d-0000-1111-2222-333344445556" },
  ],
  os: "linux",
  arch: "x64",
  pythonVersion: "3.11.7",
  hostname: "gpu-node-17.example.com",
  agentVersion: "0.1.0",
};

const gpu = (index: number, vramMb = 24_576) => ({ index, name: "GPU", vramMb, uuid: "" });

describe("node capabilities: the rules checked at Enroll and Hello", () => {
  const valid: { name: string; capabilities: Init | undefined }[] = [
    { name: "a real GPU node", capabilities: realNode },
    { name: "nothing reported (unknown values are 0 and empty)", capabilities: {} },
    { name: "no capabilities message at all", capabilities: undefined },
    { name: "the largest of everything", capabilities: { cpuCores: 4096, memoryMb: 64 * 1024 * 1024, diskFreeMb: 1024 ** 3, gpus: Array.from({ length: 16 }, (_, i) => gpu(i, 1024 * 1024)) } },
    { name: "a 253-character hostname of two-unit characters", capabilities: { hostname: "😀".repeat(253) } },
    { name: "non-ASCII text", capabilities: { hostname: "rechner-müller", gpus: [{ index: 0, name: "GPU ünïcödé" }] } },
    {
      name: "a sandboxed home node its owner controls",
      capabilities: {
        isolation: { mechanism: "bubblewrap", reason: "no delegated cgroup: rlimits in force", limits: { memory: "rlimit", cpu: "affinity", pids: "rlimit", disk: "watch" } },
        owner: { paused: true, available: "Mon-Fri 18:00-08:00", withinWindow: false, reservedVramMb: 4096 },
      },
    },
    { name: "an agent that predates the sandbox (an empty mechanism)", capabilities: { isolation: { mechanism: "" } } },
    { name: "a node whose sandbox is unavailable", capabilities: { isolation: { mechanism: "unavailable", reason: "user namespaces are disabled" } } },
  ];
  for (const c of valid) {
    it(`accepts ${c.name}`, () => {
      assert.deepEqual(validateNodeCapabilities(c.capabilities === undefined ? undefined : create(CapabilitiesSchema, c.capabilities)), []);
    });
  }

  const invalid: { name: string; capabilities: Init; field: string; rule: RegExp }[] = [
    { name: "negative cores", capabilities: { cpuCores: -4 }, field: "capabilities.cpu_cores", rule: /from 0 to 4096 \(got -4\)/ },
    { name: "more cores than any machine", capabilities: { cpuCores: 4097 }, field: "capabilities.cpu_cores", rule: /from 0 to 4096/ },
    { name: "negative memory", capabilities: { memoryMb: -1 }, field: "capabilities.memory_mb", rule: /from 0 to/ },
    { name: "negative disk", capabilities: { diskFreeMb: -100 }, field: "capabilities.disk_free_mb", rule: /from 0 to .* \(got -100\)/ },
    { name: "2^31 - 1 MiB of VRAM", capabilities: { gpus: [gpu(0, 2 ** 31 - 1)] }, field: "capabilities.gpus[0].vram_mb", rule: /from 0 to 1048576/ },
    { name: "negative VRAM", capabilities: { gpus: [gpu(0, -1)] }, field: "capabilities.gpus[0].vram_mb", rule: /from 0 to/ },
    { name: "302 GPUs", capabilities: { gpus: Array.from({ length: 302 }, (_, i) => gpu(i)) }, field: "capabilities.gpus", rule: /at most 16 GPUs \(got 302\)/ },
    { name: "a duplicate GPU index", capabilities: { gpus: [gpu(0), gpu(1), gpu(0)] }, field: "capabilities.gpus[2].index", rule: /unique.*0 is listed twice/ },
    { name: "a negative GPU index", capabilities: { gpus: [gpu(-1)] }, field: "capabilities.gpus[0].index", rule: /from 0 to 255/ },
    { name: "a GPU index past 255", capabilities: { gpus: [gpu(256)] }, field: "capabilities.gpus[0].index", rule: /from 0 to 255/ },
    { name: "a 100 KB hostname", capabilities: { hostname: "h".repeat(100_000) }, field: "capabilities.hostname", rule: /at most 253 characters \(got 100000\)/ },
    { name: "a NUL byte in os", capabilities: { os: "linux\u0000" }, field: "capabilities.os", rule: /control characters \(found U\+0000 at 5\)/ },
    { name: "a newline in the hostname", capabilities: { hostname: "a\nb" }, field: "capabilities.hostname", rule: /control characters \(found U\+000A/ },
    { name: "a right-to-left override in a GPU name", capabilities: { gpus: [{ index: 0, name: "A100\u202Egpj.exe" }] }, field: "capabilities.gpus[0].name", rule: /control characters \(found U\+202E/ },
    { name: "bytes that were not UTF-8 (decoded as U+FFFD)", capabilities: { arch: "x\uFFFD64" }, field: "capabilities.arch", rule: /valid UTF-8/ },
    { name: "an unpaired surrogate (JSON can carry one)", capabilities: { pythonVersion: "3.\uD800" }, field: "capabilities.python_version", rule: /valid UTF-8/ },
    { name: "a long GPU uuid", capabilities: { gpus: [{ index: 0, uuid: "u".repeat(129) }] }, field: "capabilities.gpus[0].uuid", rule: /at most 128/ },
    { name: "a long agent version", capabilities: { agentVersion: "1".repeat(65) }, field: "capabilities.agent_version", rule: /at most 64/ },
    {
      name: "an isolation mechanism the control plane does not know",
      capabilities: { isolation: { mechanism: "chroot" } },
      field: "capabilities.isolation.mechanism",
      rule: /must be one of "bubblewrap", "none", "unavailable" \(got "chroot"\)/,
    },
    { name: "a NUL in the isolation reason", capabilities: { isolation: { mechanism: "none", reason: "no\u0000" } }, field: "capabilities.isolation.reason", rule: /control characters/ },
    {
      name: "a hundred isolation limits",
      capabilities: { isolation: { mechanism: "bubblewrap", limits: Object.fromEntries(Array.from({ length: 100 }, (_, i) => [`l${i}`, "rlimit"])) } },
      field: "capabilities.isolation.limits",
      rule: /at most 8 limits \(got 100\)/,
    },
    {
      name: "a long isolation limit value",
      capabilities: { isolation: { mechanism: "bubblewrap", limits: { memory: "c".repeat(33) } } },
      field: "capabilities.isolation.limits[memory]",
      rule: /at most 32/,
    },
    { name: "a newline in the availability window", capabilities: { owner: { available: "Mon\nTue" } }, field: "capabilities.owner.available", rule: /control characters/ },
    { name: "a negative VRAM reserve", capabilities: { owner: { reservedVramMb: -1 } }, field: "capabilities.owner.reserved_vram_mb", rule: /from 0 to 1048576 \(got -1\)/ },
  ];
  for (const c of invalid) {
    it(`refuses ${c.name}, naming ${c.field}`, () => {
      const problems = validateNodeCapabilities(create(CapabilitiesSchema, c.capabilities));
      assert.equal(problems.length, 1, JSON.stringify(problems));
      assert.equal(problems[0]?.field, c.field);
      assert.match(problems[0]?.rule ?? "", c.rule);
    });
  }

  it("names every broken rule at once, the first five in the message", () => {
    const problems = validateNodeCapabilities(
      create(CapabilitiesSchema, { cpuCores: -1, memoryMb: -1, diskFreeMb: -1, os: "\u0000", arch: "\u0000", hostname: "\u0000" }),
    );
    assert.deepEqual(
      problems.map((p) => p.field),
      ["capabilities.cpu_cores", "capabilities.memory_mb", "capabilities.disk_free_mb", "capabilities.os", "capabilities.arch", "capabilities.hostname"],
    );
    assert.match(describeProblems(problems), /^capabilities\.cpu_cores must be .*; capabilities\.arch must not .*; and 1 more$/);
  });

  it("bounds the running list of a Hello", () => {
    const many = Array.from({ length: nodeCapabilityBounds.maxRunningUnits + 1 }, () => ({ unitId: "u" }));
    assert.deepEqual(validateRunningUnits(many), [{ field: "running", rule: "must list at most 1024 units (got 1025)" }]);
    assert.deepEqual(validateRunningUnits(many.slice(1)), []);
    assert.deepEqual(
      validateRunningUnits([{ unitId: "x".repeat(65) }]).map((p) => p.field),
      ["running[0].unit_id"],
    );
  });

  it("makes later text storable instead of refusing it: control characters and unpaired surrogates replaced, cut to length", () => {
    const cases: { text: string; max: number; stored: string }[] = [
      { text: "plain", max: 10, stored: "plain" },
      { text: "tab\tnew\nline\r", max: 20, stored: "tab\tnew\nline\r" },
      { text: "nul\u0000bell\u0007del\u007f", max: 20, stored: "nul\uFFFDbell\uFFFDdel\uFFFD" },
      { text: "lone \uD800 half", max: 20, stored: "lone \uFFFD half" },
      { text: "abcdef", max: 3, stored: "abc" },
      { text: "ab😀", max: 3, stored: "ab\uFFFD" },
    ];
    for (const c of cases) assert.equal(storableText(c.text, c.max), c.stored, JSON.stringify(c.text));
  });
});

describe("node isolation and owner controls, as stored", () => {
  const isolations: { name: string; reported: MessageInitShape<typeof IsolationSchema> | undefined; stored: StoredIsolation }[] = [
    {
      name: "an agent that predates the sandbox counts as none",
      reported: undefined,
      stored: { mechanism: "none", reason: "the agent reports no isolation (it predates the sandbox)", limits: {} },
    },
    {
      name: "an empty mechanism counts as none",
      reported: { mechanism: "" },
      stored: { mechanism: "none", reason: "the agent reports no isolation (it predates the sandbox)", limits: {} },
    },
    { name: "an operator's --isolation none stays none", reported: { mechanism: "none", reason: "--isolation none" }, stored: { mechanism: "none", reason: "--isolation none", limits: {} } },
    {
      name: "the sandbox with the mechanism of each limit",
      reported: { mechanism: "bubblewrap", limits: { memory: "rlimit" } },
      stored: { mechanism: "bubblewrap", reason: "", limits: { memory: "rlimit" } },
    },
  ];
  for (const c of isolations) {
    it(`stores isolation: ${c.name}`, () => assert.deepEqual(storedIsolation(c.reported === undefined ? undefined : create(IsolationSchema, c.reported)), c.stored));
  }

  const owners: { name: string; reported: MessageInitShape<typeof OwnerPolicySchema> | undefined; stored: StoredOwnerPolicy }[] = [
    { name: "no owner controls: available, nothing reserved", reported: undefined, stored: { paused: false, available: "", withinWindow: true, reservedVramMb: 0 } },
    {
      name: "no window is inside it, whatever within_window says",
      reported: { paused: false, withinWindow: false },
      stored: { paused: false, available: "", withinWindow: true, reservedVramMb: 0 },
    },
    {
      name: "paused, outside its window, with a reserve",
      reported: { paused: true, available: "Mon-Fri 18:00-08:00", withinWindow: false, reservedVramMb: 4096 },
      stored: { paused: true, available: "Mon-Fri 18:00-08:00", withinWindow: false, reservedVramMb: 4096 },
    },
    {
      name: "a heartbeat's window text is cleaned and cut, its reserve brought within bounds",
      reported: { available: `Mon\u0000${"x".repeat(500)}`, withinWindow: true, reservedVramMb: 2 ** 31 - 1 },
      stored: { paused: false, available: `Mon\uFFFD${"x".repeat(124)}`, withinWindow: true, reservedVramMb: nodeCapabilityBounds.maxVramMb },
    },
    { name: "a negative reserve counts as none", reported: { reservedVramMb: -5 }, stored: { paused: false, available: "", withinWindow: true, reservedVramMb: 0 } },
  ];
  for (const c of owners) {
    it(`stores owner controls: ${c.name}`, () => assert.deepEqual(storedOwnerPolicy(c.reported === undefined ? undefined : create(OwnerPolicySchema, c.reported)), c.stored));
  }
});
