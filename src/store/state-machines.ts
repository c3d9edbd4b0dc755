/**
 * The training-job and compute-unit state machines, as data. The store's
 * transition functions (./transitions.ts) write `WHERE status IN (<the
 * statuses the table allows the move from>)`, so a replayed or late event
 * changes no row; given the status their caller read under the row's lock,
 * they assert the move first ({@link assertUnitMove} /
 * {@link assertJobTransition}), so a move the table does not allow is an
 * error, not a silent no-op.
 *
 * Compute unit:
 *   pending   → ready      (all dependencies completed)         | cancelled
 *   ready     → assigned   (leader's placement, fenced by term)  | cancelled
 *   assigned  → running    (agent Accepted or its first Progress) | ready (Rejected, node lost, ack timeout) | cancelled
 *               completed | failed (a Finished that overtook its Accepted)
 *   running   → completed  (Finished SUCCEEDED: debit once)      | ready (retry: attempt + 1) | failed | cancelled
 *   completed, failed, cancelled: terminal.
 *
 * Training job:
 *   queued  → running   (first unit accepted)                  | completed | failed | cancelled | expired
 *   running → completed (every unit completed, progress 1)     | failed (a unit failed past its attempts) | cancelled | expired
 *   completed, failed, cancelled, expired: terminal (counted as no longer active by the limits).
 *
 * Lives in store/ because the SQL needs the sets; the rules of when a move
 * happens are the domain's (src/jobs/lifecycle.ts).
 */

export const jobStatuses = ["queued", "running", "completed", "failed", "cancelled", "expired"] as const;
export type JobStatus = (typeof jobStatuses)[number];

export const unitStatuses = ["pending", "ready", "assigned", "running", "completed", "failed", "cancelled"] as const;
export type UnitStatus = (typeof unitStatuses)[number];

/** For each job status, the statuses it may move to. */
export const jobTransitions: Readonly<Record<JobStatus, readonly JobStatus[]>> = {
  queued: ["running", "completed", "failed", "cancelled", "expired"],
  running: ["completed", "failed", "cancelled", "expired"],
  completed: [],
  failed: [],
  cancelled: [],
  expired: [],
};

/** For each unit status, the statuses it may move to. */
export const unitTransitions: Readonly<Record<UnitStatus, readonly UnitStatus[]>> = {
  pending: ["ready", "cancelled"],
  ready: ["assigned", "cancelled"],
  assigned: ["running", "ready", "completed", "failed", "cancelled"],
  running: ["completed", "ready", "failed", "cancelled"],
  completed: [],
  failed: [],
  cancelled: [],
};

/** Jobs that hold one of the customer's active-job slots and may still change. */
export const activeJobStatuses = ["queued", "running"] as const satisfies readonly JobStatus[];
/** Jobs that will never change again. */
export const terminalJobStatuses = ["completed", "failed", "cancelled", "expired"] as const satisfies readonly JobStatus[];
/** Units handed to a node (its agent holds them, or should). */
export const unitsOnNodeStatuses = ["assigned", "running"] as const satisfies readonly UnitStatus[];
/** Units that will never change again. */
export const terminalUnitStatuses = ["completed", "failed", "cancelled"] as const satisfies readonly UnitStatus[];
/** Units not yet handed to a node. */
export const waitingUnitStatuses = ["pending", "ready"] as const satisfies readonly UnitStatus[];

/**
 * A status set as an SQL list literal, `('queued', 'running')`. Written into the
 * statement text rather than bound as a parameter so that PostgreSQL can match
 * partial indexes such as `training_jobs_active` (WHERE status IN ('queued',
 * 'running')), which a `= ANY($1)` never matches. Only these constants reach it.
 */
export function sqlStatusList(statuses: readonly (JobStatus | UnitStatus)[]): string {
  return `(${statuses.map((s) => `'${s}'`).join(", ")})`;
}

/** `('queued', 'running')`, the active-job condition, in one place. */
export const activeJobStatusSql = sqlStatusList(activeJobStatuses);

/** Whether a job still holds an active-job slot and may change. */
export function isJobActive(status: JobStatus): boolean {
  return (activeJobStatuses as readonly JobStatus[]).includes(status);
}

/** Whether a unit is handed to a node (assigned or running). */
export function isUnitOnNode(status: UnitStatus): boolean {
  return (unitsOnNodeStatuses as readonly UnitStatus[]).includes(status);
}

/** Whether a unit will never change again. */
export function isUnitTerminal(status: UnitStatus): boolean {
  return (terminalUnitStatuses as readonly UnitStatus[]).includes(status);
}

/** A move the state machine does not allow: a bug in the caller, never a customer's input. */
export class IllegalTransitionError extends Error {
  readonly machine: "job" | "unit";
  readonly from: string;
  readonly to: string;

  constructor(machine: "job" | "unit", from: string, to: string) {
    super(`illegal ${machine} transition ${from} → ${to}`);
    this.name = "IllegalTransitionError";
    this.machine = machine;
    this.from = from;
    this.to = to;
  }
}

export function canMoveJob(from: JobStatus, to: JobStatus): boolean {
  return jobTransitions[from].includes(to);
}

export function canMoveUnit(from: UnitStatus, to: UnitStatus): boolean {
  return unitTransitions[from].includes(to);
}

export function assertJobTransition(from: JobStatus, to: JobStatus): void {
  if (!canMoveJob(from, to)) throw new IllegalTransitionError("job", from, to);
}

export function assertUnitTransition(from: UnitStatus, to: UnitStatus): void {
  if (!canMoveUnit(from, to)) throw new IllegalTransitionError("unit", from, to);
}

/** The job statuses from which `to` may be reached: the WHERE of a transition's UPDATE. */
export function jobStatusesInto(to: JobStatus): JobStatus[] {
  return jobStatuses.filter((from) => canMoveJob(from, to));
}

/** The unit statuses from which `to` may be reached: the WHERE of a transition's UPDATE. */
export function unitStatusesInto(to: UnitStatus): UnitStatus[] {
  return unitStatuses.filter((from) => canMoveUnit(from, to));
}

/**
 * One store operation's move of a unit into `to`, made only from `from`: every
 * status the table allows, or some of them (a requeue takes units off nodes
 * into `ready`, never a `pending` one).
 */
export interface UnitMove {
  readonly to: UnitStatus;
  readonly from: readonly UnitStatus[];
  /** `from` as the SQL list for the WHERE of the move's UPDATE. */
  readonly fromSql: string;
}

/** Builds a {@link UnitMove}; throws (when the store module loads) if the table forbids any of `from`. */
export function unitMove(to: UnitStatus, from: readonly UnitStatus[] = unitStatusesInto(to)): UnitMove {
  for (const status of from) assertUnitTransition(status, to);
  return { to, from, fromSql: sqlStatusList(from) };
}

/** Throws {@link IllegalTransitionError} unless `move` is made from `status`. */
export function assertUnitMove(move: UnitMove, status: UnitStatus): void {
  if (!move.from.includes(status)) throw new IllegalTransitionError("unit", status, move.to);
}
