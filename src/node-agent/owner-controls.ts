/**
 * What the machine's owner decided about it: paused or not (`gpu-agent pause`/`resume`, kept across
 * restarts in `<data-dir>/owner.json`), when it is available (`--available`, local time) and how much
 * VRAM per GPU they keep for themself (`--reserve-vram-mb`).
 *
 * The agent reports it as OwnerPolicy in Hello and every Heartbeat, refuses new units while paused or
 * outside the window (Rejected with the reason; the control plane takes it as "busy", not "broken"),
 * and sends a heartbeat at once when it changes: on pause and resume, and at each edge of the window
 * (`watchWindow` sleeps on the injected clock until the next one). Running units are not touched by a
 * window edge or a plain pause; `pause --now` hands them back (createOwnerCommandHandler, runner.handBack).
 */
import { readFile, rename, writeFile } from "node:fs/promises";
import path from "node:path";
import { create } from "@bufbuild/protobuf";
import { OwnerPolicySchema } from "../gen/gpuagent/agent/v1/agent_pb.ts";
import type { Isolation, OwnerPolicy, UnitRef } from "../gen/gpuagent/agent/v1/agent_pb.ts";
import type { Clock } from "../platform/clock.ts";
import { hostUtcOffsetMinutes } from "../platform/host.ts";
import { isWithinWindow, localWeekdayTime, nextWindowEdge, parseAvailabilityWindow } from "./availability-window.ts";
import type { AvailabilityWindow, UtcOffset } from "./availability-window.ts";
import type { AgentStatus, ControlHandler, ControlUnit } from "./control-socket.ts";
import type { AgentLogger } from "./logger.ts";
import type { UnitRunner } from "./runner.ts";

/** Name of the pause state's file inside the data directory. */
export const OWNER_FILE = "owner.json";

/**
 * Longest the window watcher sleeps before looking again, even when the next edge is further away:
 * a suspended machine or a stepped wall clock must not leave it waiting on a stale timer for days.
 */
const MAX_WINDOW_SLEEP_MS = 10 * 60_000;

/** Options of openOwnerControls. */
export interface OwnerControlsOptions {
  dataDir: string;
  /** The availability window as the owner wrote it (`--available`); absent: always available. */
  available?: string;
  /** VRAM per GPU the owner keeps (`--reserve-vram-mb`, default 0). */
  reservedVramMb?: number;
  clock: Clock;
  /** The local time zone (default: the host's, src/platform/host.ts). */
  utcOffset?: UtcOffset;
  logger: AgentLogger;
}

/** The owner's controls as the agent uses them. */
export interface OwnerControls {
  /** OwnerPolicy as it stands now, for Hello and every Heartbeat. */
  policy(): OwnerPolicy;
  /** Why a new unit is refused now (paused, outside the window), or undefined when it may run. */
  refusal(): string | undefined;
  /** Paused by `gpu-agent pause` (kept across restarts). */
  readonly paused: boolean;
  /** When the window next opens or closes (ms since the epoch); undefined without a window or when it never changes. */
  nextWindowChange(): number | undefined;
  /** The local time zone the window is read in. */
  readonly utcOffset: UtcOffset;
  /** Pauses or resumes and stores the choice; returns whether it changed anything (listeners hear only of changes). */
  setPaused(paused: boolean): Promise<boolean>;
  /** Registers a listener for every change of the policy: pause, resume, a window edge (while watchWindow runs). */
  onChange(listener: () => void): void;
  /** Tells the listeners at each window edge until `signal` aborts; returns at once without a window. */
  watchWindow(signal: AbortSignal): Promise<void>;
}

/** The file's shape: only what the owner decided with a command; the flags come with each start. */
interface OwnerFile {
  paused: boolean;
}

async function readPaused(file: string): Promise<boolean> {
  let raw: string;
  try {
    raw = await readFile(file, "utf8");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return false;
    throw err;
  }
  let value: unknown;
  try {
    value = JSON.parse(raw);
  } catch {
    value = undefined;
  }
  // A pause the agent cannot read must not turn silently into "available": the owner fixes or deletes the file.
  if (typeof value !== "object" || value === null || typeof (value as Partial<OwnerFile>).paused !== "boolean") {
    throw new Error(`${file} is not {"paused": true|false}: fix it, or delete it to resume`);
  }
  return (value as OwnerFile).paused;
}

/** Reads the stored pause state, checks the flags, and returns the controls. */
export async function openOwnerControls(opts: OwnerControlsOptions): Promise<OwnerControls> {
  const { clock, logger } = opts;
  const utcOffset = opts.utcOffset ?? hostUtcOffsetMinutes;
  const file = path.join(opts.dataDir, OWNER_FILE);
  const window: AvailabilityWindow | undefined =
    opts.available === undefined || opts.available.trim() === "" ? undefined : parseAvailabilityWindow(opts.available);
  const reservedVramMb = opts.reservedVramMb ?? 0;
  if (!Number.isInteger(reservedVramMb) || reservedVramMb < 0) {
    throw new Error(`the VRAM reserve must be a whole number of MB, 0 or more; got ${reservedVramMb}`);
  }
  let paused = await readPaused(file);
  const listeners: (() => void)[] = [];
  const changed = () => {
    for (const listener of listeners) {
      try {
        listener();
      } catch (err) {
        logger.warn({ err: err instanceof Error ? err.message : String(err) }, "owner policy listener failed");
      }
    }
  };
  const withinWindow = () => window === undefined || isWithinWindow(window, clock.now(), utcOffset);
  // Pause and resume may race (two owner commands at once): one write at a time, in order.
  let writes: Promise<unknown> = Promise.resolve();

  const controls: OwnerControls = {
    policy: () =>
      create(OwnerPolicySchema, { paused, available: window?.text ?? "", withinWindow: withinWindow(), reservedVramMb }),
    refusal() {
      if (paused) return "node is paused by its owner (gpu-agent pause)";
      if (!withinWindow()) return `node is outside its owner's availability window (${window?.text})`;
      return undefined;
    },
    get paused() {
      return paused;
    },
    nextWindowChange: () => (window === undefined ? undefined : nextWindowEdge(window, clock.now(), utcOffset)),
    utcOffset,
    setPaused(next) {
      const write = writes.then(async () => {
        if (paused === next) return false;
        // In memory first, so an Assign that arrives while the file is written is already refused.
        paused = next;
        try {
          const tmp = `${file}.${process.pid}.tmp`;
          await writeFile(tmp, `${JSON.stringify({ paused: next } satisfies OwnerFile)}\n`, { mode: 0o600 });
          await rename(tmp, file);
        } catch (err) {
          paused = !next;
          throw new Error(`could not store the pause in ${file}: ${err instanceof Error ? err.message : String(err)}`);
        }
        logger.info({ paused }, paused ? "paused by the owner: no new units" : "resumed by the owner");
        changed();
        return true;
      });
      writes = write.catch(() => {});
      return write;
    },
    onChange(listener) {
      listeners.push(listener);
    },
    async watchWindow(signal) {
      if (window === undefined) return;
      let inside = withinWindow();
      while (!signal.aborted) {
        const edge = nextWindowEdge(window, clock.now(), utcOffset);
        if (edge === undefined) return;
        try {
          await clock.sleep(Math.min(Math.max(0, edge - clock.now()), MAX_WINDOW_SLEEP_MS), signal);
        } catch {
          return;
        }
        // A timer may fire a little early, or after a daylight-saving step land on no edge at all: only a change counts.
        const now = withinWindow();
        if (now === inside) continue;
        inside = now;
        logger.info({ window: window.text, within_window: inside }, inside ? "availability window opened" : "availability window closed: no new units");
        changed();
      }
    },
  };
  return controls;
}

/** What the owner commands need of the rest of the agent. */
export interface OwnerCommandDeps {
  controls: OwnerControls;
  runner: Pick<UnitRunner, "running" | "handBack" | "draining">;
  nodeId: string;
  /** How units are contained (Capabilities.isolation), when the agent reports it. */
  isolation(): Isolation | undefined;
  clock: Clock;
}

/** `gpu-agent status` as the agent sees itself now. */
export function agentStatus(deps: OwnerCommandDeps): AgentStatus {
  const policy = deps.controls.policy();
  const edge = deps.controls.nextWindowChange();
  const isolation = deps.isolation();
  return {
    node_id: deps.nodeId,
    paused: policy.paused,
    available: policy.available,
    within_window: policy.withinWindow,
    next_window_change: edge === undefined ? null : { at: new Date(edge).toISOString(), local: localWeekdayTime(edge, deps.controls.utcOffset) },
    reserved_vram_mb: policy.reservedVramMb,
    draining: deps.runner.draining,
    running: deps.runner.running().map(controlUnit),
    isolation: { mechanism: isolation?.mechanism ?? "", reason: isolation?.reason ?? "" },
  };
}

function controlUnit(ref: UnitRef): ControlUnit {
  return { unit_id: ref.unitId, attempt: ref.attempt };
}

/**
 * Answers the control socket's commands. `pause` stops new units and lets running ones finish;
 * `pause --now` also hands the running ones back (killed, reported NODE_ERROR: the control plane runs
 * them elsewhere, unbilled and not counted against the customer's attempts) and answers once they are
 * gone. `resume` takes units again.
 */
export function createOwnerCommandHandler(deps: OwnerCommandDeps): ControlHandler {
  return async (request) => {
    switch (request.command) {
      case "pause": {
        await deps.controls.setPaused(true);
        if (!request.now) return { ok: true, status: agentStatus(deps) };
        const handedBack = await deps.runner.handBack();
        return { ok: true, status: agentStatus(deps), handed_back: handedBack.map(controlUnit) };
      }
      case "resume":
        await deps.controls.setPaused(false);
        return { ok: true, status: agentStatus(deps) };
      case "status":
        return { ok: true, status: agentStatus(deps) };
    }
  };
}
