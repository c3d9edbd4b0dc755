/**
 * A customer cancels one of their jobs, whichever protocol asked: nothing more
 * of it starts, its running units are told to stop, and nothing is debited for
 * them. Cancelling a job that already ended changes nothing and answers the
 * job as it is, so a retried cancel is harmless.
 */
import type { Clock } from "../platform/clock.ts";
import { ApiError } from "../platform/errors.ts";
import type { Database } from "../store/database.ts";
import type { JobViewRow } from "../store/jobs.ts";
import { findJob, findJobView } from "../store/jobs.ts";
import { cancelJob } from "./lifecycle.ts";

/** The reason a node hears when a customer cancels. */
export const cancelledByCustomer = "cancelled by the customer";

/** Tells the node running a unit's attempt to stop it (the agents' stream; a node not connected here is reconciled later). */
export type CancelUnitOnNode = (nodeId: string, unitId: string, attempt: number, reason: string) => void;

/** What cancellation needs. */
export interface CancelJobDeps {
  readonly db: Database;
  readonly clock: Clock;
  readonly cancelUnitOnNode: CancelUnitOnNode;
}

/**
 * Cancels the customer's job `jobId` (already a well-formed id) and answers it as it is now.
 * @throws ApiError JOB_NOT_FOUND when it is not this customer's job (`shownId` names it as asked).
 */
export async function cancelCustomerJob(deps: CancelJobDeps, customerId: string, jobId: string, shownId = jobId): Promise<JobViewRow> {
  const { db } = deps;
  if ((await findJob(db, customerId, jobId)) === undefined) throw new ApiError("JOB_NOT_FOUND", `training job ${shownId} not found`);
  const effects = await cancelJob(db, jobId, new Date(deps.clock.now()));
  for (const c of effects.cancel) deps.cancelUnitOnNode(c.nodeId, c.unitId, c.attempt, cancelledByCustomer);
  const job = await findJobView(db, customerId, jobId);
  if (job === undefined) throw new Error(`training job ${jobId} vanished while it was cancelled`);
  return job;
}
