/**
 * Job and compute-unit state machines, and every transition caused by an agent
 * event, a customer or the leader's sweeper. Each function is one database
 * transaction; each is idempotent by (unit_id, attempt), because agent events
 * arrive at least once and possibly late.
 *
 * Compute unit:
 *   pending   → ready      (all dependencies completed)         | cancelled
 *   ready     → assigned   (leader's placement, fenced by term)  | cancelled
 *   assigned  → running    (agent Accepted)                      | ready (Rejected, node lost, ack timeout) | cancelled
 *   running   → completed  (Finished SUCCEEDED: debit once)      | ready (retry: attempt + 1) | failed | cancelled
 *   completed, failed, cancelled: terminal.
 *
 * Every new attempt increments `attempt` (the idempotency key of one run), but
 * only failures of the customer's code (Finished FAILED: the script exited
 * non-zero) count against `max_attempts`, in `code_failures`. Attempts lost to
 * a node — it went silent, its agent restarted, it answered NODE_ERROR, it was
 * revoked, it never accepted — count in `node_failures` against a separate
 * budget ({@link maxNodeFailures}), so the customer does not pay for flaky
 * homes, yet a unit that takes down every node it touches still ends.
 *
 * Training job:
 *   queued  → running   (first unit accepted)                  | cancelled | failed | expired
 *   running → completed (every unit completed, progress 1)     | failed (a unit failed past its attempts) | cancelled | expired
 *   completed, failed, cancelled, expired: terminal (counted as no longer active by the limits).
 *
 * Every transaction runs through `jobTransaction` and every job it locks is
 * marked changed (src/jobs/job-changes.ts), so cached job views are forgotten
 * as soon as it ends.
 */
import type { WorkloadRates } from "../planner/plan.ts";
import { unitCost } from "../planner/plan.ts";
import { newId } from "../platform/ids.ts";
import { insertDebitOnce } from "../store/customers.ts";
import { recordNodeAttempt, recordNodeDataset } from "../store/nodes.ts";
import type { Database, Sql } from "../store/database.ts";
import type { JobRow, UnitRow } from "../store/jobs.ts";
import { findUnit, insertArtifactOnce, insertUsageOnce, listUnitsOfJob, lockJob as lockJobRow } from "../store/jobs.ts";
import { enqueueWebhookEvent } from "../webhooks/outbox.ts";
import type { ApiError } from "../platform/errors.ts";
import type { StorageQuotas } from "../platform/config.ts";
import { quotaRefusal } from "../storage/quotas.ts";
import { artifactRecorded, artifactUsage, lockCustomerStorage } from "../store/storage.ts";
import { jobTransaction, markJobChanged } from "./job-changes.ts";

/** A unit attempt named by an agent event. */
export interface UnitAttempt {
  unitId: string;
  attempt: number;
}

/** What the caller must tell nodes after a transition. */
export interface Effects {
  /** Units to cancel on the node that runs them. */
  cancel: { nodeId: string; unitId: string; attempt: number }[];
  /** Whether units became ready (the placer should run soon). */
  unitsReady: boolean;
}

const noEffects = (): Effects => ({ cancel: [], unitsReady: false });

/**
 * Attempts a unit may lose to nodes before it fails. Generous because a lost
 * node is usually not the unit's fault; finite because a unit that crashes or
 * exhausts every node it lands on must end with a reason instead of touring
 * the fleet forever.
 */
export const maxNodeFailures = 5;

/** The failure counters of a unit (columns of compute_units not in UnitRow). */
type Counted = UnitRow & { code_failures?: number; node_failures?: number };
const codeFailuresOf = (u: UnitRow): number => (u as Counted).code_failures ?? 0;
const nodeFailuresOf = (u: UnitRow): number => (u as Counted).node_failures ?? 0;

/** Outcome of a finished attempt, as the agent reports it. */
export type FinishOutcome = "succeeded" | "failed" | "timed_out" | "cancelled" | "node_error";

const activeUnitStatuses = new Set<UnitRow["status"]>(["assigned", "running"]);
const terminalUnitStatuses = new Set<UnitRow["status"]>(["completed", "failed", "cancelled"]);

/**
 * Locks the unit's job, then the unit, and returns the unit when this event is
 * about its current attempt on this node. Every transaction here locks in that
 * order (job, then its units by id), so concurrent transitions — an agent's
 * progress and a customer's cancel, say — queue instead of deadlocking.
 */
async function currentAttempt(tx: Sql, nodeId: string, ref: UnitAttempt): Promise<UnitRow | undefined> {
  const peek = await findUnit(tx, ref.unitId);
  if (peek === undefined || peek.attempt !== ref.attempt || peek.node_id !== nodeId) return undefined;
  await lockJob(tx, peek.job_id);
  const unit = await findUnit(tx, ref.unitId, true);
  if (unit === undefined || unit.attempt !== ref.attempt || unit.node_id !== nodeId) return undefined;
  return unit;
}

/** Locks a job row for a transition and marks the job changed (its cached views are forgotten after the transaction). */
async function lockJob(tx: Sql, id: string): Promise<JobRow | undefined> {
  markJobChanged(tx, id);
  return lockJobRow(tx, id);
}

/** Locks the jobs of `jobIds` in id order (the global lock order: jobs before units, both by id). */
async function lockJobs(tx: Sql, jobIds: Iterable<string>): Promise<void> {
  for (const id of [...new Set(jobIds)].sort()) await lockJob(tx, id);
}

/** The agent accepted an assignment: the unit runs, and its job with it. */
export async function applyAccepted(db: Database, nodeId: string, ref: UnitAttempt, now: Date): Promise<void> {
  await jobTransaction(db, async (tx) => {
    const unit = await currentAttempt(tx, nodeId, ref);
    if (unit === undefined || unit.status !== "assigned") return;
    await tx.query(`UPDATE compute_units SET status = 'running', started_at = COALESCE(started_at, $2) WHERE id = $1`, [unit.id, now]);
    await tx.query(`UPDATE training_jobs SET status = 'running', started_at = COALESCE(started_at, $2) WHERE id = $1 AND status = 'queued'`, [
      unit.job_id,
      now,
    ]);
  });
}

/** The agent refused an assignment: back to ready, avoiding that node. */
export async function applyRejected(db: Database, nodeId: string, ref: UnitAttempt, reason: string): Promise<Effects> {
  return jobTransaction(db, async (tx) => {
    const unit = await currentAttempt(tx, nodeId, ref);
    if (unit === undefined || !activeUnitStatuses.has(unit.status)) return noEffects();
    await requeue(tx, unit, nodeId, `rejected by node: ${reason}`, false);
    return { cancel: [], unitsReady: true };
  });
}

/** Progress of a running attempt; job progress is the mean over its units. */
export async function applyProgress(
  db: Database,
  nodeId: string,
  ref: UnitAttempt,
  progress: number,
  metrics: Record<string, number>,
): Promise<void> {
  await jobTransaction(db, async (tx) => {
    const unit = await currentAttempt(tx, nodeId, ref);
    if (unit === undefined || !activeUnitStatuses.has(unit.status)) return;
    const clamped = Math.min(1, Math.max(0, Number.isFinite(progress) ? progress : 0));
    await tx.query(
      `UPDATE compute_units SET progress = $2, metrics = metrics || $3::jsonb,
         status = CASE WHEN status = 'assigned' THEN 'running' ELSE status END WHERE id = $1`,
      [unit.id, clamped, JSON.stringify(metrics)],
    );
    await refreshJobProgress(tx, unit.job_id, unit.kind === "gpu" ? metrics : undefined);
  });
}

async function refreshJobProgress(tx: Sql, jobId: string, metrics: Record<string, number> | undefined): Promise<void> {
  await tx.query(
    `UPDATE training_jobs j SET progress = LEAST(1, GREATEST(j.progress, sub.p)),
       metrics = CASE WHEN $2::jsonb IS NULL THEN j.metrics ELSE j.metrics || $2::jsonb END
     FROM (SELECT avg(CASE WHEN status = 'completed' THEN 1 ELSE progress END) AS p FROM compute_units WHERE job_id = $1) sub
     WHERE j.id = $1 AND j.status IN ('queued', 'running')`,
    [jobId, metrics === undefined || Object.keys(metrics).length === 0 ? null : JSON.stringify(metrics)],
  );
}

/** What became of an ArtifactReady: recorded (or recorded before), not about this node's current attempt, or over the customer's quota. */
export type ArtifactOutcome = "recorded" | "stale" | { refused: ApiError };

/**
 * Records an artifact the agent uploaded for an attempt (the blob is already stored and verified),
 * within the customer's artifact quota: decided here, under the customer's storage lock, so
 * uploads racing from several units cannot pass it together. A refused artifact is not recorded
 * (the caller removes its blob).
 */
export async function applyArtifactReady(
  db: Database,
  nodeId: string,
  ref: UnitAttempt,
  artifact: { name: string; kind: "checkpoint" | "metrics" | "logs" | "other"; sizeBytes: number; sha256: string; blobKey: string },
  now: Date,
  quotas: StorageQuotas,
): Promise<ArtifactOutcome> {
  return jobTransaction(db, async (tx) => {
    const unit = await findUnit(tx, ref.unitId);
    if (unit === undefined || unit.node_id !== nodeId || unit.attempt !== ref.attempt) return "stale";
    markJobChanged(tx, unit.job_id);
    await lockCustomerStorage(tx, unit.customer_id);
    if (await artifactRecorded(tx, unit.id, ref.attempt, artifact.name)) return "recorded";
    const refusal = quotaRefusal(quotas, "artifacts", await artifactUsage(tx, unit.customer_id), artifact.sizeBytes);
    if (refusal !== undefined) return { refused: refusal };
    const artifactId = newId();
    const inserted = await insertArtifactOnce(
      tx,
      {
        id: artifactId,
        job_id: unit.job_id,
        compute_unit_id: unit.id,
        customer_id: unit.customer_id,
        attempt: ref.attempt,
        kind: artifact.kind,
        name: artifact.name,
        size_bytes: artifact.sizeBytes,
        sha256: artifact.sha256,
        blob_key: artifact.blobKey,
      },
      now,
    );
    if (inserted) {
      await enqueueWebhookEvent(
        tx,
        unit.customer_id,
        "artifact.ready",
        { job_id: unit.job_id, compute_unit_id: unit.id, artifact_id: artifactId, name: artifact.name, kind: artifact.kind, size_bytes: artifact.sizeBytes, sha256: artifact.sha256 },
        now,
      );
    }
    return "recorded";
  });
}

/**
 * A finished attempt. Success completes the unit, debits it exactly once,
 * readies its dependents and may complete the job. A failure retries while
 * attempts remain, else fails the job and cancels its other units. Node errors
 * re-place the unit elsewhere. Events for an old attempt change nothing.
 */
export async function applyFinished(
  db: Database,
  nodeId: string,
  ref: UnitAttempt,
  result: { outcome: FinishOutcome; exitCode: number; error: string; runSeconds: number },
  rates: WorkloadRates,
  now: Date,
): Promise<Effects> {
  return jobTransaction(db, async (tx) => {
    const unit = await currentAttempt(tx, nodeId, ref);
    if (unit === undefined || !activeUnitStatuses.has(unit.status)) return noEffects();
    const job = await lockJob(tx, unit.job_id);
    if (job === undefined) return noEffects();
    // The node reports the run time; never bill more than the attempt could have run.
    const reported = Number.isFinite(result.runSeconds) ? Math.max(0, result.runSeconds) : 0;
    const elapsed = unit.started_at === null ? reported : (now.getTime() - unit.started_at.getTime()) / 1000 + 1;
    const runSeconds = Math.min(reported, Math.max(0, elapsed), job.max_runtime_seconds);
    switch (result.outcome) {
      case "succeeded":
        return completeUnit(tx, job, unit, runSeconds, rates, now);
      case "node_error":
        // Not the customer's code: re-placed elsewhere without using up its attempts.
        return nodeFailure(tx, job, unit, nodeId, `node error: ${result.error}`, result.exitCode, now);
      case "failed":
        // The customer's code failed: this uses up one of its attempts.
        if (codeFailuresOf(unit) + 1 < unit.max_attempts) {
          await requeue(tx, unit, undefined, `attempt ${unit.attempt} failed: ${result.error}`.slice(0, 2000), true, "code");
          await tx.query(`UPDATE compute_units SET exit_code = $2 WHERE id = $1`, [unit.id, result.exitCode]);
          return { cancel: [], unitsReady: true };
        }
        await tx.query(`UPDATE compute_units SET code_failures = code_failures + 1 WHERE id = $1`, [unit.id]);
        return failUnit(tx, job, unit, result, now, `its code failed ${codeFailuresOf(unit) + 1} time(s) (max_attempts ${unit.max_attempts})`);
      case "timed_out":
        return failUnit(tx, job, unit, { ...result, error: result.error || "killed at its deadline (max_runtime_seconds)" }, now);
      case "cancelled":
        await tx.query(
          `UPDATE compute_units SET status = 'cancelled', finished_at = $2, exit_code = $3, run_seconds = $4 WHERE id = $1`,
          [unit.id, now, result.exitCode, runSeconds],
        );
        return noEffects();
      default: {
        const never: never = result.outcome;
        throw new Error(`unknown outcome ${String(never)}`);
      }
    }
  });
}

async function completeUnit(tx: Sql, job: JobRow, unit: UnitRow, runSeconds: number, rates: WorkloadRates, now: Date): Promise<Effects> {
  if (unit.node_id !== null) {
    // The node's record for the placer: one more attempt done, and it now holds the job's dataset.
    await recordNodeAttempt(tx, { unitId: unit.id, attempt: unit.attempt, nodeId: unit.node_id, outcome: "completed", at: now });
    await recordNodeDataset(tx, unit.node_id, job.dataset_id, now);
  }
  await tx.query(
    `UPDATE compute_units SET status = 'completed', progress = 1, finished_at = $2, exit_code = 0, run_seconds = $3,
       unschedulable_reason = '' WHERE id = $1`,
    [unit.id, now, runSeconds],
  );
  const credits = unitCost(unit.kind, runSeconds, rates);
  await insertDebitOnce(tx, {
    id: newId(),
    customerId: unit.customer_id,
    amount: credits,
    jobId: unit.job_id,
    computeUnitId: unit.id,
    description: `${job.name}: ${unit.name} (${unit.kind}, ${Math.ceil(runSeconds)} s)`,
  });
  await insertUsageOnce(
    tx,
    { id: newId(), customerId: unit.customer_id, jobId: unit.job_id, unitId: unit.id, kind: unit.kind, runSeconds, credits },
    now,
  );
  const units = await listUnitsOfJob(tx, unit.job_id);
  const completed = new Set(units.filter((u) => u.status === "completed").map((u) => u.name));
  let unitsReady = false;
  for (const candidate of units) {
    if (candidate.status === "pending" && candidate.depends_on.every((d) => completed.has(d))) {
      await tx.query(`UPDATE compute_units SET status = 'ready', ready_at = $2 WHERE id = $1 AND status = 'pending'`, [candidate.id, now]);
      unitsReady = true;
    }
  }
  if (units.every((u) => u.status === "completed")) {
    const done = await tx.query(
      `UPDATE training_jobs SET status = 'completed', progress = 1, finished_at = $2 WHERE id = $1 AND status IN ('queued', 'running') RETURNING id`,
      [unit.job_id, now],
    );
    if (done.length === 1) await enqueueWebhookEvent(tx, job.customer_id, "job.completed", { job_id: job.id, name: job.name, status: "completed" }, now);
  } else {
    await refreshJobProgress(tx, unit.job_id, undefined);
  }
  return { cancel: [], unitsReady };
}

async function failUnit(
  tx: Sql,
  job: JobRow,
  unit: UnitRow,
  result: { exitCode: number; error: string; runSeconds: number },
  now: Date,
  why = `attempt ${unit.attempt}`,
): Promise<Effects> {
  await tx.query(
    `UPDATE compute_units SET status = 'failed', finished_at = $2, exit_code = $3, error = $4, run_seconds = $5 WHERE id = $1`,
    [unit.id, now, result.exitCode, result.error.slice(0, 2000), result.runSeconds],
  );
  const reason = `compute unit "${unit.name}" failed: ${why}: ${result.error}`.slice(0, 2000);
  return finishJob(tx, job, "failed", reason, now);
}

/**
 * An attempt lost to its node: back to the queue avoiding that node, at no
 * cost to the customer's attempts, unless the unit has now lost
 * {@link maxNodeFailures} attempts to nodes — then it fails, with that reason.
 * The caller holds the job's lock.
 */
async function nodeFailure(tx: Sql, job: JobRow, unit: UnitRow, nodeId: string, reason: string, exitCode: number, now: Date): Promise<Effects> {
  // Counts against the node's reliability, not the customer.
  await recordNodeAttempt(tx, { unitId: unit.id, attempt: unit.attempt, nodeId, outcome: "lost", at: now });
  const failures = nodeFailuresOf(unit) + 1;
  if (failures < maxNodeFailures) {
    await requeue(tx, unit, nodeId, reason.slice(0, 2000), true, "node");
    return { cancel: [], unitsReady: true };
  }
  await tx.query(`UPDATE compute_units SET node_failures = node_failures + 1 WHERE id = $1`, [unit.id]);
  const why = `${failures} attempts were lost to nodes (the limit is ${maxNodeFailures}); the unit may be crashing or exhausting the nodes it runs on; the last one`;
  return failUnit(tx, job, unit, { exitCode, error: reason, runSeconds: 0 }, now, why);
}

/**
 * Ends a job that is not yet terminal: the status, and every unit not yet
 * terminal cancelled. Returns the running units whose nodes must be told.
 */
export async function finishJob(
  tx: Sql,
  job: JobRow,
  status: "failed" | "cancelled" | "expired",
  reason: string,
  now: Date,
): Promise<Effects> {
  markJobChanged(tx, job.id);
  const updated = await tx.query(
    `UPDATE training_jobs SET status = $2, error = $3, finished_at = $4 WHERE id = $1 AND status IN ('queued', 'running') RETURNING id`,
    [job.id, status, reason, now],
  );
  if (updated.length === 0) return noEffects();
  await enqueueWebhookEvent(tx, job.customer_id, `job.${status}`, { job_id: job.id, name: job.name, status, error: reason }, now);
  const units = (await listUnitsOfJob(tx, job.id)).sort((a, b) => (a.id < b.id ? -1 : 1));
  const effects = noEffects();
  for (const u of units) {
    if (terminalUnitStatuses.has(u.status)) continue;
    if (activeUnitStatuses.has(u.status) && u.node_id !== null) effects.cancel.push({ nodeId: u.node_id, unitId: u.id, attempt: u.attempt });
    await tx.query(`UPDATE compute_units SET status = 'cancelled', finished_at = $2, error = $3 WHERE id = $1`, [u.id, now, reason]);
  }
  return effects;
}

/**
 * Puts a unit back in the queue, optionally excluding the node it was on.
 * `failure` says whose fault the attempt's end was: "code" and "node" start a
 * new attempt and count it; undefined (a Rejected assignment, which never ran)
 * keeps the attempt.
 */
async function requeue(tx: Sql, unit: UnitRow, excludeNode: string | undefined, reason: string, newAttempt: boolean, failure?: "code" | "node"): Promise<void> {
  await tx.query(
    `UPDATE compute_units SET status = 'ready', node_id = NULL, gpu_index = -1, assignment_id = NULL, progress = 0,
       attempt = attempt + $2, error = $3, ready_at = now(),
       code_failures = code_failures + $5, node_failures = node_failures + $6,
       excluded_node_ids = CASE WHEN $4::uuid IS NULL OR $4::uuid = ANY(excluded_node_ids) THEN excluded_node_ids
                                ELSE array_append(excluded_node_ids, $4::uuid) END
     WHERE id = $1`,
    [unit.id, newAttempt ? 1 : 0, reason, excludeNode ?? null, failure === "code" ? 1 : 0, failure === "node" ? 1 : 0],
  );
}

/** A customer cancels a job: nothing more starts; running units are killed; nothing is debited for them. */
export async function cancelJob(db: Database, jobId: string, now: Date): Promise<Effects> {
  return jobTransaction(db, async (tx) => {
    const job = await lockJob(tx, jobId);
    if (job === undefined) return noEffects();
    return finishJob(tx, job, "cancelled", "cancelled by the customer", now);
  });
}

/** The leader's sweep: jobs running past max_runtime_seconds expire and their units are killed. */
export async function expireOverdueJobs(db: Database, now: Date): Promise<Effects> {
  return jobTransaction(db, async (tx) => {
    const overdue = await tx.query<JobRow>(
      `SELECT * FROM training_jobs WHERE status = 'running' AND started_at + make_interval(secs => max_runtime_seconds) < $1
       ORDER BY id FOR UPDATE`,
      [now],
    );
    const effects = noEffects();
    for (const job of overdue) {
      const e = await finishJob(tx, job, "expired", `exceeded max_runtime_seconds (${job.max_runtime_seconds} s)`, now);
      effects.cancel.push(...e.cancel);
    }
    return effects;
  });
}

/** Which of a node's units to take back. */
export interface RequeueSelection {
  /** Only these units (e.g. the ones a reconnecting agent no longer has). */
  unitIds?: readonly string[];
  /** Only units in these statuses (default assigned and running). */
  statuses?: readonly ("assigned" | "running")[];
  /** Only units assigned before this time (assignments never accepted). */
  assignedBefore?: Date;
  /** The caller's clock, for a unit that fails here; default the database's `now()`. */
  now?: Date;
}

/**
 * Units lost with a node go back to the queue, avoiding that node, with
 * attempt + 1 (a late Finished of the old attempt then changes nothing).
 * Returns the attempts taken back, so the caller can cancel them on the node
 * should it come back.
 */
export async function requeueUnitsOfNode(
  db: Database,
  nodeId: string,
  reason: string,
  selection: RequeueSelection = {},
): Promise<{ unitId: string; attempt: number }[]> {
  return requeueUnitsOfNodeIn(db, nodeId, reason, selection);
}

async function requeueUnitsOfNodeIn(
  db: Database,
  nodeId: string,
  reason: string,
  selection: RequeueSelection,
  guard?: (tx: Sql) => Promise<boolean>,
): Promise<{ unitId: string; attempt: number }[]> {
  return jobTransaction(db, async (tx) => {
    if (guard !== undefined && !(await guard(tx))) return [];
    const params: unknown[] = [nodeId, selection.statuses ?? ["assigned", "running"]];
    let where = `node_id = $1 AND status = ANY($2::text[])`;
    if (selection.unitIds !== undefined) {
      params.push(selection.unitIds);
      where += ` AND id = ANY($${params.length}::uuid[])`;
    }
    if (selection.assignedBefore !== undefined) {
      params.push(selection.assignedBefore);
      where += ` AND assigned_at < $${params.length}`;
    }
    const candidates = await tx.query<UnitRow>(`SELECT * FROM compute_units WHERE ${where}`, params);
    if (candidates.length === 0) return [];
    await lockJobs(tx, candidates.map((u) => u.job_id));
    const now = selection.now ?? (await tx.query<{ now: Date }>(`SELECT now() AS now`))[0]!.now;
    const taken: { unitId: string; attempt: number }[] = [];
    for (const candidate of candidates.sort((a, b) => (a.id < b.id ? -1 : 1))) {
      const unit = await findUnit(tx, candidate.id, true);
      if (unit === undefined || unit.node_id !== nodeId || unit.attempt !== candidate.attempt || !activeUnitStatuses.has(unit.status)) continue;
      const job = await lockJob(tx, unit.job_id);
      if (job === undefined) continue;
      // Lost with its node: counts against the node-failure budget, not the customer's attempts.
      await nodeFailure(tx, job, unit, nodeId, reason, -1, now);
      taken.push({ unitId: unit.id, attempt: unit.attempt });
    }
    return taken;
  });
}

/**
 * The leader's verdict on a silent node, in one transaction: it becomes
 * unreachable (unless an operator state says otherwise) and its units go back
 * to the queue — but only if it is still silent, so a node that reconnected a
 * moment ago keeps its units.
 */
export async function takeBackSilentNode(db: Database, nodeId: string, silentSince: Date, now?: Date): Promise<{ unitId: string; attempt: number }[]> {
  return requeueUnitsOfNodeIn(db, nodeId, "the node stopped sending heartbeats", now === undefined ? {} : { now }, async (tx) => {
    const still = await tx.query(
      `UPDATE nodes SET state = CASE WHEN state = 'online' THEN 'unreachable' ELSE state END
       WHERE id = $1 AND (last_heartbeat_at IS NULL OR last_heartbeat_at < $2) RETURNING id`,
      [nodeId, silentSince],
    );
    return still.length === 1;
  });
}
