/**
 * The leader's background work: placement cycles (on a timer and whenever
 * something wakes them), and the sweeper (jobs past their runtime or queue
 * timeout, silent nodes, assignments never accepted). It runs only while this replica leads, under
 * the term it was given, and stops when its signal aborts.
 */
import type { Logger } from "pino";
import { sendCancel } from "../agent-streams/assignments.ts";
import type { ClusterStreams } from "../ha/cluster-sessions.ts";
import { NodeLiveness } from "../ha/liveness.ts";
import { expireOverdueJobs, expireQueuedJobs, requeueUnitsOfNode, takeBackSilentNode } from "../jobs/lifecycle.ts";
import type { ControlPlaneMetrics } from "../observability/metrics.ts";
import { monotonicMs } from "../platform/clock.ts";
import { findSilentNodes } from "../store/nodes.ts";
import { findNodesWithAssignmentsBefore } from "../store/units-on-nodes.ts";
import { FleetCache } from "./fleet-cache.ts";
import { NodeHistory } from "./node-history.ts";
import { NodeSnapshotMemo } from "./node-snapshots.ts";
import { createCyclePlacer, runPlacementCycle } from "./placement-cycle.ts";
import { OnlineCapacities } from "./stage-gating.ts";
import type { PlacementCycleDeps } from "./placement-cycle.ts";

/** Observable state of the loop. */
export interface LeaderLoopStatus {
  cycles: number;
  placements: number;
  lastCycleMs: number;
}

/** The leader loop: `run` until aborted; `wake` to place soon. */
export interface LeaderLoop {
  run(term: number, signal: AbortSignal): Promise<void>;
  wake(): void;
  readonly status: LeaderLoopStatus;
}

const sweepEveryMs = 2000;

/** What the loop needs of the replica's streams (ha/cluster-sessions.ts). */
export type LeaderStreams = Pick<ClusterStreams, "sessions" | "dispatchNode">;

/** What the leader loop needs (a subset of ControlPlaneDeps): the placement cycle's and a logger. */
export interface LeaderLoopDeps extends PlacementCycleDeps {
  readonly logger: Logger;
}

/** Builds the leader loop. */
export function createLeaderLoop(deps: LeaderLoopDeps, streams: LeaderStreams, metrics?: ControlPlaneMetrics): LeaderLoop {
  const sessions = streams.sessions;
  const { clock, config, logger, db } = deps;
  let wakeUp: (() => void) | undefined;
  let pendingWake = false;
  const status: LeaderLoopStatus = { cycles: 0, placements: 0, lastCycleMs: 0 };
  // Reliability and dataset holders for the placer's scores, cached across cycles.
  const nodeHistory = new NodeHistory(clock);
  // The online nodes' rows, re-read at most once a second rather than every cycle (fleet-cache.ts says why that is safe).
  const fleet = new FleetCache(clock);
  const snapshots = new NodeSnapshotMemo();
  // A node is live for placement while some replica holds its stream and hears from it: here, by the
  // local session; elsewhere, by the heartbeat that replica persists (ha/liveness.ts). Assignments reach
  // other replicas' streams through the cluster bus (LISTEN/NOTIFY).
  const liveness = new NodeLiveness(clock, { silenceMs: config.agents.unreachableAfterSeconds * 1000, local: (nodeId) => sessions.getLocal(nodeId) });
  sessions.watch((nodeId) => liveness.localChanged(nodeId));
  // One placer for this control plane's cycles, across its terms (placement-cycle.ts says why it lives on).
  const cycleState = { liveness, history: nodeHistory, fleet, snapshots, capacities: new OnlineCapacities(), placer: createCyclePlacer() };

  async function sweep(): Promise<void> {
    await liveness.refresh(db);
    const now = new Date(clock.now());
    const expired = await expireOverdueJobs(db, now);
    // Relayed to whichever replica holds each stream.
    for (const c of expired.cancel) sendCancel(sessions, c.nodeId, c.unitId, c.attempt, "max_runtime_seconds exceeded");
    const timedOut = await expireQueuedJobs(db, now);
    for (const c of timedOut.cancel) sendCancel(sessions, c.nodeId, c.unitId, c.attempt, "the job waited past its queue_timeout_seconds");
    // Silent streams are closed by each replica's own re-scan (ha/cluster-sessions.ts), not here: the
    // leader sees only its own.
    const silentSince = liveness.silentBefore();
    for (const node of await findSilentNodes(db, silentSince)) {
      if (liveness.isLocallyLive(node.id)) continue; // its stream is alive here; the heartbeat write is just throttled
      const taken = await takeBackSilentNode(db, node.id, silentSince, new Date(clock.now()));
      if (taken.length > 0) logger.warn({ nodeId: node.id, requeued: taken.length }, "node unreachable; its units were re-queued");
    }
    // Assignments that were never accepted (the agent went away before Accepted) go back to the queue.
    const cutoff = new Date(clock.now() - config.agents.assignAckTimeoutSeconds * 1000);
    for (const nodeId of await findNodesWithAssignmentsBefore(db, cutoff)) {
      if (liveness.isLive(nodeId)) continue;
      await requeueUnitsOfNode(db, nodeId, "the node never accepted the assignment", { statuses: ["assigned"], assignedBefore: cutoff, now: new Date(clock.now()) });
    }
  }

  return {
    status,
    wake() {
      pendingWake = true;
      wakeUp?.();
    },
    async run(term, leading) {
      logger.info({ term }, "leading: placement loop started");
      // The sweep runs beside the placement loop, not inside it: a job's wake never waits for a sweep.
      const stop = new AbortController();
      const signal = AbortSignal.any([leading, stop.signal]);
      const sweeping = sweepEvery(sweepEveryMs, signal);
      try {
        await placeUntil(term, signal);
      } finally {
        stop.abort();
        await sweeping;
      }
      logger.info({ term }, "placement loop stopped");
    },
  };

  async function sweepEvery(intervalMs: number, signal: AbortSignal): Promise<void> {
    while (!signal.aborted) {
      const started = monotonicMs();
      try {
        await sweep();
        metrics?.schedulerPhase.observe({ phase: "sweep" }, (monotonicMs() - started) / 1000);
      } catch (error) {
        if (signal.aborted) return;
        logger.error({ err: error }, "sweep failed; retrying");
      }
      await clock.sleep(intervalMs, signal).catch(() => undefined);
    }
  }

  async function placeUntil(term: number, signal: AbortSignal): Promise<void> {
    while (!signal.aborted) {
      pendingWake = false;
      const started = clock.now();
      try {
        const result = await runPlacementCycle(deps, term, cycleState);
        for (const [name, ms] of Object.entries(result.phasesMs)) metrics?.schedulerPhase.observe({ phase: name }, ms / 1000);
        status.cycles += 1;
        status.placements += result.placed.length;
        metrics?.placementDuration.observe({ result: result.committed ? "committed" : "fenced" }, (clock.now() - started) / 1000);
        metrics?.placements.inc({ result: "placed" }, result.placed.length);
        metrics?.placements.inc({ result: "unplaced" }, result.unplaced);
        for (const p of result.placed) metrics?.placementLatency.observe(p.waitedMs / 1000);
        if (!result.committed) {
          // Fenced: another replica leads now. Return; the leadership loop steps down and campaigns again.
          logger.error({ term }, "placement term is no longer current; stepping down");
          return;
        }
        if (result.placed.length > 0) {
          const dispatching = monotonicMs();
          for (const nodeId of new Set(result.placed.map((p) => p.nodeId))) await streams.dispatchNode(nodeId);
          metrics?.schedulerPhase.observe({ phase: "dispatch" }, (monotonicMs() - dispatching) / 1000);
        }
        metrics?.schedulerCycle.observe((clock.now() - started) / 1000);
      } catch (error) {
        if (signal.aborted) break;
        logger.error({ err: error }, "placement cycle failed; retrying");
      }
      status.lastCycleMs = clock.now() - started;
      if (pendingWake) continue;
      await new Promise<void>((resolve) => {
        const controller = new AbortController();
        const done = () => {
          wakeUp = undefined;
          controller.abort();
          signal.removeEventListener("abort", done);
          resolve();
        };
        wakeUp = done;
        signal.addEventListener("abort", done, { once: true });
        clock.sleep(config.placementIntervalMs, controller.signal).then(done, () => undefined);
      });
    }
  }
}
