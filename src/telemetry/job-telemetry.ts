/**
 * A customer's reads of their job's telemetry, with the tenancy checks reads.ts leaves to its
 * callers: a unit's log tail (of one attempt, after a cursor) and every unit's progress history.
 * Another customer's job is not found, exactly like a job that does not exist.
 */
import { ApiError, validationError } from "../platform/errors.ts";
import { isUuid } from "../platform/ids.ts";
import type { Sql } from "../store/database.ts";
import type { UnitRow } from "../store/jobs.ts";
import { findJob, findUnit, listUnitsOfJob } from "../store/jobs.ts";
import type { TailBounds } from "./log-lines.ts";
import type { LogTailView, MetricHistoryView } from "./reads.ts";
import { readLogTail, readMetricHistories } from "./reads.ts";

/** The customer's job id, or JOB_NOT_FOUND (malformed ids and other customers' jobs alike). */
async function customerJobId(sql: Sql, customerId: string, id: string): Promise<string> {
  const jobId = isUuid(id) ? id.toLowerCase() : undefined;
  if (jobId === undefined || (await findJob(sql, customerId, jobId)) === undefined) throw new ApiError("JOB_NOT_FOUND", `training job ${JSON.stringify(id)} not found`);
  return jobId;
}

/** A unit of that job, or RESOURCE_NOT_FOUND. */
async function unitOfJob(sql: Sql, jobId: string, id: string): Promise<UnitRow> {
  const unit = isUuid(id) ? await findUnit(sql, id.toLowerCase()) : undefined;
  if (unit === undefined || unit.job_id !== jobId) throw new ApiError("RESOURCE_NOT_FOUND", `compute unit ${JSON.stringify(id)} not found in training job ${jobId}`);
  return unit;
}

/**
 * The log tail of a unit of the customer's job: of `attempt` (0: the latest attempt that logged),
 * the lines after the seq `after` (0: the whole tail), within the recorder's tail `bounds`.
 */
export async function unitLogTail(
  sql: Sql,
  bounds: TailBounds,
  customerId: string,
  jobId: string,
  unitId: string,
  query: { attempt: number; after: bigint },
): Promise<{ unit: UnitRow; tail: LogTailView }> {
  const unit = await unitOfJob(sql, await customerJobId(sql, customerId, jobId), unitId);
  const { attempt, after } = query;
  if (attempt < 0 || attempt > Math.max(1, unit.attempt)) {
    throw validationError(`attempt must be between 1 and ${Math.max(1, unit.attempt)} (0 or absent: the latest attempt that logged)`, { field: "attempt" });
  }
  if (after < 0n || after > BigInt(Number.MAX_SAFE_INTEGER)) throw validationError("after must be a line's seq (0 or more)", { field: "after" });
  return { unit, tail: await readLogTail(sql, { id: unit.id, attempt: unit.attempt }, attempt, Number(after), bounds) };
}

/** Each unit of the customer's job, in plan order, with its progress history. */
export async function jobMetricHistories(sql: Sql, customerId: string, jobId: string): Promise<{ unit: UnitRow; history: MetricHistoryView | undefined }[]> {
  const units = await listUnitsOfJob(sql, await customerJobId(sql, customerId, jobId));
  const histories = await readMetricHistories(sql, units);
  return units.map((unit, i) => ({ unit, history: histories[i] }));
}
