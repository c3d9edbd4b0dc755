/**
 * What a node may say about itself (Enroll and Hello), checked before anything
 * is stored: the placer trusts these numbers, operators read these strings, and
 * PostgreSQL refuses some text (NUL, unpaired surrogates) with an error that
 * would otherwise reach the node as INTERNAL. Also the text rules for what
 * agents report later in a session (src/agent-streams/agent-service.ts).
 *
 * Pure functions; the bounds are documented in docs/limits.md ("Agent streams").
 */
import type { Capabilities, Isolation, OwnerPolicy } from "../gen/gpuagent/agent/v1/agent_pb.ts";
import type { IsolationMechanism, StoredIsolation, StoredOwnerPolicy } from "../store/nodes.ts";
import { isolationMechanisms } from "../store/nodes.ts";

/** Bounds of a node's self-description. Fixed: a real node is far inside each of them. */
export const nodeCapabilityBounds = {
  maxCpuCores: 4096,
  /** 64 TiB. */
  maxMemoryMb: 64 * 1024 * 1024,
  /** 1 PiB. */
  maxDiskFreeMb: 1024 * 1024 * 1024,
  maxGpus: 16,
  /** GPU indexes run from 0 to this (they become CUDA_VISIBLE_DEVICES). */
  maxGpuIndex: 255,
  /** 1 TiB of memory on one GPU. */
  maxVramMb: 1024 * 1024,
  /** A DNS name's longest form. */
  maxHostnameChars: 253,
  /** GPU name and uuid. */
  maxGpuTextChars: 128,
  /** os, arch. */
  maxPlatformChars: 32,
  /** python_version, agent_version. */
  maxVersionChars: 64,
  /** isolation.reason: a sentence for operators. */
  maxIsolationReasonChars: 500,
  /** isolation.limits: one entry per limit ("memory", "cpu", "pids", "disk"), with room to grow. */
  maxIsolationLimits: 8,
  /** A key or value of isolation.limits ("memory", "cgroup"). */
  maxIsolationLimitChars: 32,
  /** owner.available: a window such as "Mon-Fri 18:00-08:00" (a few of them, comma-separated). */
  maxAvailableChars: 128,
  /** Hello.running: units a node says it still runs; also the most `max_units` a node may report. */
  maxRunningUnits: 1024,
  maxUnitIdChars: 64,
} as const;

/** One broken rule: the field (as the node spells it, snake_case) and what the rule is. */
export interface CapabilityProblem {
  readonly field: string;
  readonly rule: string;
}

const controlOrFormat = /[\p{Cc}\p{Cf}]/u;
const loneSurrogate = /\p{Cs}/u;
const loneSurrogates = /\p{Cs}/gu;
/** Unpaired surrogates, and control characters but tab, newline and carriage return. */
const unstorable = /[\p{Cs}\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f-\u009f]/u;
const unstorableAll = new RegExp(unstorable.source, "gu");

/** Characters (code points) of `value`. */
function characters(value: string): number {
  let n = 0;
  for (let i = 0; i < value.length; i++) {
    const unit = value.charCodeAt(i);
    // A high surrogate followed by a low one is one character.
    if (unit >= 0xd800 && unit <= 0xdbff && i + 1 < value.length) {
      const next = value.charCodeAt(i + 1);
      if (next >= 0xdc00 && next <= 0xdfff) i++;
    }
    n++;
  }
  return n;
}

/** The text rule every string field follows, or undefined when `value` keeps it. */
export function textProblem(value: string, maxChars: number): string | undefined {
  if (value.length > maxChars) {
    const n = characters(value);
    if (n > maxChars) return `must be at most ${maxChars} characters (got ${n})`;
  }
  const control = controlOrFormat.exec(value);
  if (control !== null) {
    return `must not contain control characters (found U+${control[0].codePointAt(0)!.toString(16).toUpperCase().padStart(4, "0")} at ${control.index})`;
  }
  // Protobuf decoding turns invalid UTF-8 into U+FFFD; JSON can carry unpaired surrogates.
  if (value.includes("\uFFFD") || loneSurrogate.test(value)) return "must be valid UTF-8";
  return undefined;
}

function integerProblem(value: number, min: number, max: number): string | undefined {
  if (!Number.isInteger(value) || value < min || value > max) return `must be an integer from ${min} to ${max} (got ${value})`;
  return undefined;
}

/** A "major.minor" version (compute capability, CUDA) the placer compares numerically, or "" (unknown). */
function versionProblem(value: string): string | undefined {
  if (value === "" || /^\d{1,3}\.\d{1,3}$/.test(value)) return undefined;
  return `must be "major.minor" or empty (got "${storableText(value, 16)}")`;
}

/**
 * Every rule `capabilities` breaks, in field order (empty: valid). Absent
 * numbers and strings read as 0 and "" (unknown), which are allowed.
 */
export function validateNodeCapabilities(capabilities: Capabilities | undefined): CapabilityProblem[] {
  const b = nodeCapabilityBounds;
  const problems: CapabilityProblem[] = [];
  const check = (field: string, rule: string | undefined) => {
    if (rule !== undefined) problems.push({ field, rule });
  };
  if (capabilities === undefined) return problems;
  const c = capabilities;
  check("capabilities.cpu_cores", integerProblem(c.cpuCores, 0, b.maxCpuCores));
  check("capabilities.memory_mb", integerProblem(c.memoryMb, 0, b.maxMemoryMb));
  check("capabilities.disk_free_mb", integerProblem(c.diskFreeMb, 0, b.maxDiskFreeMb));
  if (c.gpus.length > b.maxGpus) {
    problems.push({ field: "capabilities.gpus", rule: `must list at most ${b.maxGpus} GPUs (got ${c.gpus.length})` });
  } else {
    const seen = new Set<number>();
    c.gpus.forEach((g, i) => {
      const at = `capabilities.gpus[${i}]`;
      const indexRule = integerProblem(g.index, 0, b.maxGpuIndex);
      check(`${at}.index`, indexRule);
      if (indexRule === undefined) {
        if (seen.has(g.index)) check(`${at}.index`, `must be unique among the node's GPUs (${g.index} is listed twice)`);
        seen.add(g.index);
      }
      check(`${at}.vram_mb`, integerProblem(g.vramMb, 0, b.maxVramMb));
      check(`${at}.name`, textProblem(g.name, b.maxGpuTextChars));
      check(`${at}.uuid`, textProblem(g.uuid, b.maxGpuTextChars));
      check(`${at}.compute_capability`, versionProblem(g.computeCapability));
      check(`${at}.driver_version`, textProblem(g.driverVersion, b.maxVersionChars));
      check(`${at}.cuda_version`, versionProblem(g.cudaVersion));
    });
  }
  check("capabilities.max_units", integerProblem(c.maxUnits, 0, b.maxRunningUnits));
  check("capabilities.os", textProblem(c.os, b.maxPlatformChars));
  check("capabilities.arch", textProblem(c.arch, b.maxPlatformChars));
  check("capabilities.python_version", textProblem(c.pythonVersion, b.maxVersionChars));
  check("capabilities.hostname", textProblem(c.hostname, b.maxHostnameChars));
  check("capabilities.agent_version", textProblem(c.agentVersion, b.maxVersionChars));
  if (c.isolation !== undefined) {
    const i = c.isolation;
    if (i.mechanism !== "" && !(isolationMechanisms as readonly string[]).includes(i.mechanism)) {
      check("capabilities.isolation.mechanism", `must be one of ${isolationMechanisms.map((m) => `"${m}"`).join(", ")} (got "${storableText(i.mechanism, 32)}")`);
    }
    check("capabilities.isolation.reason", textProblem(i.reason, b.maxIsolationReasonChars));
    const limits = Object.entries(i.limits);
    if (limits.length > b.maxIsolationLimits) {
      problems.push({ field: "capabilities.isolation.limits", rule: `must name at most ${b.maxIsolationLimits} limits (got ${limits.length})` });
    } else {
      for (const [key, value] of limits) {
        check("capabilities.isolation.limits", textProblem(key, b.maxIsolationLimitChars));
        check(`capabilities.isolation.limits[${storableText(key, b.maxIsolationLimitChars)}]`, textProblem(value, b.maxIsolationLimitChars));
      }
    }
  }
  if (c.owner !== undefined) {
    check("capabilities.owner.available", textProblem(c.owner.available, b.maxAvailableChars));
    check("capabilities.owner.reserved_vram_mb", integerProblem(c.owner.reservedVramMb, 0, b.maxVramMb));
  }
  return problems;
}

/**
 * The isolation a Hello reported, as stored. An agent older than the sandbox reports none (and an
 * empty mechanism says as much): its units run as plain processes, so it counts as "none".
 */
export function storedIsolation(isolation: Isolation | undefined): StoredIsolation {
  if (isolation === undefined || isolation.mechanism === "") {
    return { mechanism: "none", reason: "the agent reports no isolation (it predates the sandbox)", limits: {} };
  }
  return { mechanism: isolation.mechanism as IsolationMechanism, reason: isolation.reason, limits: { ...isolation.limits } };
}

/**
 * The owner's controls as stored, from Hello (already validated) or a heartbeat (made storable
 * instead: the window's text cleaned and cut, the reserve brought within bounds). Absent, or from an
 * agent without owner controls: available, nothing reserved. A node without a window is inside it,
 * whatever `within_window` says (proto3 sends an unset bool as false).
 */
export function storedOwnerPolicy(owner: OwnerPolicy | undefined): StoredOwnerPolicy {
  if (owner === undefined) return { paused: false, available: "", withinWindow: true, reservedVramMb: 0 };
  const available = storableText(owner.available, nodeCapabilityBounds.maxAvailableChars);
  const reserved = Number.isInteger(owner.reservedVramMb) ? Math.min(Math.max(owner.reservedVramMb, 0), nodeCapabilityBounds.maxVramMb) : 0;
  return { paused: owner.paused, available, withinWindow: available === "" || owner.withinWindow, reservedVramMb: reserved };
}

/** Whether two stored owner policies say the same (a heartbeat that repeats the last one writes nothing). */
export function sameOwnerPolicy(a: StoredOwnerPolicy, b: StoredOwnerPolicy): boolean {
  return a.paused === b.paused && a.available === b.available && a.withinWindow === b.withinWindow && a.reservedVramMb === b.reservedVramMb;
}

/** Every rule a Hello's `running` list breaks (empty: valid). */
export function validateRunningUnits(running: readonly { readonly unitId: string }[]): CapabilityProblem[] {
  const b = nodeCapabilityBounds;
  if (running.length > b.maxRunningUnits) return [{ field: "running", rule: `must list at most ${b.maxRunningUnits} units (got ${running.length})` }];
  const problems: CapabilityProblem[] = [];
  running.forEach((r, i) => {
    const rule = textProblem(r.unitId, b.maxUnitIdChars);
    if (rule !== undefined) problems.push({ field: `running[${i}].unit_id`, rule });
  });
  return problems;
}

/** One sentence naming each broken rule (at most the first five), for the node's log. */
export function describeProblems(problems: readonly CapabilityProblem[]): string {
  const shown = problems.slice(0, 5).map((p) => `${p.field} ${p.rule}`);
  const more = problems.length > 5 ? `; and ${problems.length - 5} more` : "";
  return `${shown.join("; ")}${more}`;
}

/**
 * Text an agent reports later in a session (a rejection reason, an error, a
 * metric name) made safe to store: unpaired surrogates and control characters
 * other than tab and newline become U+FFFD, and it is cut to `maxChars`.
 * Refusing instead would make the agent resend the same message forever.
 */
export function storableText(value: string, maxChars: number): string {
  let text = value.length > maxChars ? value.slice(0, maxChars) : value;
  // A cut inside a surrogate pair leaves a lone half, replaced with the rest below.
  if (unstorable.test(text)) text = text.replace(unstorableAll, "\uFFFD");
  return text;
}

/** `text` with each unpaired surrogate (only JSON can carry one; jsonb refuses it) replaced by U+FFFD. */
export function wellFormedText(text: string): string {
  return loneSurrogate.test(text) ? text.replace(loneSurrogates, "\uFFFD") : text;
}
