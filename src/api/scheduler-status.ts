/**
 * AdminService.GetSchedulerStatus: who leads, the queues by kind, and the agent
 * streams this replica holds. Apart from the rest of the AdminService because
 * it reads the replica's own leadership, which exists only once the composition
 * has built it.
 */
import type { ServiceImpl } from "@connectrpc/connect";
import { requireAdmin } from "../auth/authenticate.ts";
import type { AdminService } from "../gen/gpuagent/admin/v1/admin_pb.ts";
import type { LeadershipStatus } from "../scheduling/replica-leadership.ts";
import type { Database } from "../store/database.ts";
import { queueDepths } from "../store/fleet-metrics.ts";

/** What the handler reads (a subset of ControlPlaneDeps, and the replica's parts). */
export interface SchedulerStatusSources {
  readonly db: Database;
  readonly config: { readonly replicaId: string };
  readonly leadership: { status(): LeadershipStatus };
  /** This replica's agent streams. */
  readonly sessions: { readonly size: number };
}

export function createSchedulerStatusHandler(sources: SchedulerStatusSources, adminToken: string): Pick<ServiceImpl<typeof AdminService>, "getSchedulerStatus"> {
  return {
    async getSchedulerStatus(_req, ctx) {
      requireAdmin(ctx.requestHeader, adminToken);
      const queues = await queueDepths(sources.db);
      const { isLeader, leaderId, term } = sources.leadership.status();
      return { replicaId: sources.config.replicaId, isLeader, leaderId, term: BigInt(term), queues, nodesOnline: sources.sessions.size };
    },
  };
}
