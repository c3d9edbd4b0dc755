/**
 * Whether this replica places work, and under which term. With etcd
 * (ETCD_ENDPOINTS) an etcd election (ha/leader-elector.ts) whose term is
 * recorded in the database fence before anything is committed under it;
 * without, the database lease (leadership.ts; the embedded default is one
 * replica, so it takes the lease at once). Either way the term fences every
 * placement commit, and while leading the leader loop runs under it.
 */
import type { Etcd3 } from "etcd3";
import type { Logger } from "pino";
import type { LeaderTiming } from "../ha/leader-elector.ts";
import { LeaderElector } from "../ha/leader-elector.ts";
import type { ControlPlaneMetrics } from "../observability/metrics.ts";
import type { Clock } from "../platform/clock.ts";
import type { Database } from "../store/database.ts";
import { claimFencingTerm } from "../store/leases.ts";
import type { LeaderLoop } from "./leader-loop.ts";
import { runLeadership } from "./leadership.ts";

/** What the campaign needs (a subset of ControlPlaneDeps). */
export interface ReplicaLeadershipDeps {
  readonly db: Database;
  readonly clock: Clock;
  readonly logger: Logger;
  readonly config: { readonly replicaId: string; readonly databaseUrl?: string | undefined };
}

/** Who leads, as this replica knows it. */
export interface LeadershipStatus {
  readonly isLeader: boolean;
  /** This replica while it leads; else the leader etcd last showed ("" when unknown, and always without etcd). */
  readonly leaderId: string;
  /** The fencing term while leading, 0 otherwise. */
  readonly term: number;
}

/** This replica's part in the election. */
export interface ReplicaLeadership {
  /** Campaigns, and leads when elected, until `signal` aborts; then resigns. Never rejects (a crash is logged). */
  run(signal: AbortSignal): Promise<void>;
  status(): LeadershipStatus;
}

/** Options of {@link createReplicaLeadership}. */
export interface ReplicaLeadershipOptions {
  /** The etcd client when ETCD_ENDPOINTS is set; undefined elects through the database lease. */
  readonly etcd: Etcd3 | undefined;
  readonly timing: LeaderTiming;
  /** Runs while leading. */
  readonly leaderLoop: Pick<LeaderLoop, "run">;
  readonly metrics: Pick<ControlPlaneMetrics, "isLeader" | "leaderTerm">;
}

/** Database lease TTL when there is no etcd. */
const leaseTtlMs = 15_000;

export function createReplicaLeadership(deps: ReplicaLeadershipDeps, options: ReplicaLeadershipOptions): ReplicaLeadership {
  const { db, clock, logger, config } = deps;
  const { etcd, leaderLoop, metrics } = options;
  let term = 0;

  const lead = async (leaderTerm: number, signal: AbortSignal): Promise<void> => {
    term = leaderTerm;
    metrics.isLeader.set(1);
    metrics.leaderTerm.set(leaderTerm);
    await leaderLoop.run(leaderTerm, signal);
  };
  const stoppedLeading = (): void => {
    term = 0;
    metrics.isLeader.set(0);
    metrics.leaderTerm.set(0);
  };

  const elector =
    etcd === undefined
      ? undefined
      : new LeaderElector({
          client: etcd,
          electionName: "gpu-agent-scheduler",
          identity: config.replicaId,
          ...options.timing,
          clock,
          logger,
          callbacks: {
            onStartedLeading: async (signal, revision) => {
              // The database fence must carry this term before anything is committed under it; a newer term
              // there means this campaign is already stale: return, and the elector resigns.
              if (!(await claimFencingTerm(db, revision, config.replicaId))) {
                logger.error({ term: revision }, "a newer leader term is already recorded; stepping down");
                return;
              }
              await lead(revision, signal);
            },
            onStoppedLeading: stoppedLeading,
            onNewLeader: (identity) => logger.info({ leader: identity ?? null }, "leader changed"),
          },
        });

  return {
    run(signal) {
      if (elector !== undefined) return elector.run(signal).catch((error: unknown) => logger.error({ err: error }, "leader election crashed"));
      return runLeadership(
        deps,
        { replicaId: config.replicaId, ttlMs: leaseTtlMs, force: config.databaseUrl === undefined },
        { onStartedLeading: lead, onStoppedLeading: stoppedLeading },
        signal,
      ).catch((error: unknown) => logger.error({ err: error }, "leadership loop crashed"));
    },
    status() {
      return { isLeader: term > 0, leaderId: term > 0 ? config.replicaId : (elector?.leader ?? ""), term };
    },
  };
}
