/**
 * What a customer reads of one of their jobs beyond the job itself, page by page: its compute
 * units (with the credits each was debited) and its artifacts. Another customer's job is not found,
 * exactly like a job that does not exist; the job is checked before the page request, so an unknown
 * job is JOB_NOT_FOUND whatever the cursor.
 */
import { ApiError } from "../platform/errors.ts";
import { requireId } from "../platform/fields.ts";
import type { Sql } from "../store/database.ts";
import type { ArtifactRow, AttemptEnvBuild, JobRow, UnitRow } from "../store/jobs.ts";
import { creditsDebitedByUnit, findJob, latestEnvBuildsByUnit, listArtifactsOfJob, listUnitsOfJob } from "../store/jobs.ts";
import type { PageInfo } from "../store/pagination.ts";
import { pageRequest, toPage } from "../store/pagination.ts";
import type { AttemptRow, CheckpointRow } from "../store/checkpoints.ts";
import { listAttemptsOfJob, listLatestCheckpointsOfJob } from "../store/checkpoints.ts";
import type { AttemptView } from "./unit-attempts.ts";
import { unitAttempts } from "./unit-attempts.ts";

/** A page as the request asks for it: the limit (0: the default) and the cursor ("" for the first page). */
export interface PageQuery {
  limit: number;
  cursor: string;
}

/** The customer's job, or JOB_NOT_FOUND (malformed ids and other customers' jobs alike). */
async function customerJob(sql: Sql, customerId: string, id: string): Promise<JobRow> {
  const job = await findJob(sql, customerId, requireId(id, "JOB_NOT_FOUND", "training job"));
  if (job === undefined) throw new ApiError("JOB_NOT_FOUND", `training job ${id} not found`);
  return job;
}

/** A compute unit as the customer reads it: its row, what it was debited, and its latest finished attempt's environment build. */
export interface UnitView {
  unit: UnitRow;
  creditsDebited: number;
  envBuild: AttemptEnvBuild;
  /** Every attempt that reached a node, oldest first, with what each resumed from. */
  attempts: AttemptView[];
  /** The latest checkpoint the unit wrote; undefined when none is kept. */
  latestCheckpoint: CheckpointRow | undefined;
}

const noEnvBuild: AttemptEnvBuild = { seconds: 0, built: false };

/**
 * One page of a job's compute units in plan order, with the credits debited for each (0 when none) and the
 * environment build of its latest finished attempt (none when no attempt finished).
 */
export async function jobUnitsPage(sql: Sql, customerId: string, jobId: string, query: PageQuery): Promise<{ rows: UnitView[]; page: PageInfo }> {
  const job = await customerJob(sql, customerId, jobId);
  const page = pageRequest(query.limit, query.cursor);
  const all = await listUnitsOfJob(sql, job.id);
  const after = page.after;
  // Units of one job are few (≤ 64) and listed in plan order; the cursor names the last unit seen.
  const start = after === undefined ? 0 : all.findIndex((u) => u.id === after.id) + 1;
  if (after !== undefined && start === 0) throw new ApiError("PAGINATION_INVALID_CURSOR", "the cursor does not belong to this job's compute units");
  const debits = await creditsDebitedByUnit(sql, job.id);
  const builds = await latestEnvBuildsByUnit(sql, job.id);
  const cut = toPage(all.slice(start, start + page.limit + 1), page, (r) => ({ at: r.created_at, id: r.id }));
  const attempts = new Map<string, AttemptRow[]>();
  for (const a of await listAttemptsOfJob(sql, job.id)) attempts.set(a.unit_id, [...(attempts.get(a.unit_id) ?? []), a]);
  const checkpoints = new Map((await listLatestCheckpointsOfJob(sql, job.id)).map((c) => [c.unit_id, c]));
  const rows = cut.rows.map((unit) => ({
    unit,
    creditsDebited: debits.get(unit.id) ?? 0,
    envBuild: builds.get(unit.id) ?? noEnvBuild,
    attempts: unitAttempts(unit, attempts.get(unit.id) ?? []),
    latestCheckpoint: checkpoints.get(unit.id),
  }));
  return { rows, page: cut.page };
}

/** One page of a job's artifacts, oldest first, and when the job finished (their retention runs from then). */
export async function jobArtifactsPage(
  sql: Sql,
  customerId: string,
  jobId: string,
  query: PageQuery,
): Promise<{ rows: ArtifactRow[]; page: PageInfo; jobFinishedAt: Date | null }> {
  const job = await customerJob(sql, customerId, jobId);
  const page = pageRequest(query.limit, query.cursor);
  const rows = await listArtifactsOfJob(sql, job.id, page.limit + 1, page.after);
  const cut = toPage(rows, page, (r) => ({ at: r.created_at, id: r.id }));
  return { rows: cut.rows, page: cut.page, jobFinishedAt: job.finished_at };
}
