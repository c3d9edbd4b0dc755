/**
 * Every transition of a training job or compute unit caused by an agent
 * event, a customer or the leader's sweeper. The state machines are the table
 * in src/store/state-machines.ts (a move it does not allow throws); the
 * UPDATEs that make the moves are in src/store/transitions.ts. Each function
 * here is one database transaction; each is idempotent by (unit_id, attempt),
 * because agent events arrive at least once and possibly late: an event that
 * is not about the unit's current attempt on that node, or finds the unit no
 * longer on it, is dropped before any move is asked for.
 *
 * Every new attempt increments `attempt` (the idempotency key of one run), but
 * only failures of the customer's code (Finished FAILED: the script exited
 * non-zero) count against `max_attempts`, in `code_failures`. Attempts lost to
 * a node — it went silent, its agent restarted, it answered NODE_ERROR, it was
 * revoked, it never accepted — count in `node_failures` against a separate
 * budget ({@link maxNodeFailures}), so the customer does not pay for flaky
 * homes, yet a unit that takes down every node it touches still ends.
 *
 * Every transaction runs through `jobTransaction` and every job it locks is
 * marked changed (src/jobs/job-changes.ts), so cached job views are forgotten
 * as soon as it ends.
 */
import { debitCompletedUnit } from "../billing/debit.ts";
import type { WorkloadRates } from "../billing/rates.ts";
import { newId } from "../platform/ids.ts";
import { holdNodeBusy, markNodeUnreachableIfSilent, recordNodeAttempt, recordNodeDataset } from "../store/nodes.ts";
import type { Database, Sql } from "../store/database.ts";
import type { JobRow, UnitRow } from "../store/jobs.ts";
import { findUnit, insertArtifactOnce, listUnitsOfJob, lockJob as lockJobRow, recordAttemptEnvBuild } from "../store/jobs.ts";
import { enqueueWebhookEvent } from "../webhooks/outbox.ts";
import type { AttemptEnd } from "../store/checkpoints.ts";
import { dropCheckpoints, findCheckpointUpload, planResume, recordAttemptEnded, recordAttemptStarted, recordLatestCheckpoint } from "../store/checkpoints.ts";
import { ApiError } from "../platform/errors.ts";
import type { StorageQuotas } from "../platform/config.ts";
import { quotaRefusal } from "../blobs/quotas.ts";
import { artifactRecorded, artifactUsage, lockCustomerStorage, lockJobArtifactsKept } from "../store/storage.ts";
import { isJobActive, isUnitOnNode, isUnitTerminal } from "../store/state-machines.ts";
import {
  cancelUnit,
  lockJobsPastQueueTimeout,
  lockOverdueJobs,
  markJobCompleted,
  markJobEnded,
  markJobRunning,
  markUnitCompleted,
  markUnitFailed,
  markUnitRunning,
  readyPendingUnit,
  recordUnitCancelled,
  recordUnitProgress,
  refreshJobProgress,
  requeueUnit,
} from "../store/transitions.ts";
import { listAttemptsOnNode } from "../store/units-on-nodes.ts";
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

/** Outcome of a finished attempt, as the agent reports it. */
export type FinishOutcome = "succeeded" | "failed" | "timed_out" | "cancelled" | "node_error";

/** A finished attempt as its node reported it. */
export interface FinishedReport {
  outcome: FinishOutcome;
  exitCode: number;
  error: string;
  /** Seconds the entry point ran: the billed time. */
  runSeconds: number;
  /** Seconds spent building the package's Python environment before the run (0: cached or none); never billed. */
  envBuildSeconds?: number;
  /** Whether this attempt built the environment. */
  envBuilt?: boolean;
}

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
    await markUnitRunning(tx, unit, now);
    await recordAttemptStarted(tx, { unitId: unit.id, attempt: unit.attempt, nodeId, assignedAt: unit.assigned_at, startedAt: now });
    await markJobRunning(tx, unit.job_id, now);
  });
}

/** How a node turned an assignment down: unable (never again there), or busy, held full until `holdUntil`. */
export type Rejection = { busy: false } | { busy: true; holdUntil: Date };

/** A busy rejection's effects, with what the unit asked of the node's GPUs (to see when they have room again). */
export interface RejectedEffects extends Effects {
  /** Set for a busy rejection of a unit that was still on the node. */
  busyFor?: { gpuIndexes: number[]; vramMb: number };
}

/**
 * The agent refused an assignment: back to ready. A node that cannot run the unit is avoided from then on;
 * one that was only `busy` (full, or its owner's now) is not: the unit keeps its place in the fair order
 * (its `ready_at`) and may go back to that node once it has room, and the node counts as full until
 * `holdUntil` (schema-0013.ts), in the same transaction, so no cycle sees the unit ready and the node free.
 */
export async function applyRejected(
  db: Database,
  nodeId: string,
  ref: UnitAttempt,
  reason: string,
  now: Date,
  how: Rejection = { busy: false },
): Promise<RejectedEffects> {
  return jobTransaction(db, async (tx) => {
    const unit = await currentAttempt(tx, nodeId, ref);
    if (unit === undefined || !isUnitOnNode(unit.status)) return noEffects();
    // Never ran: it keeps its attempt and counts against nobody.
    await requeueUnit(tx, unit, {
      excludeNode: how.busy ? undefined : nodeId,
      reason: how.busy ? `node busy: ${reason}` : `rejected by node: ${reason}`,
      newAttempt: false,
      failure: undefined,
      exitCode: undefined,
      now,
      keepReadySince: how.busy,
    });
    if (!how.busy) return { cancel: [], unitsReady: true };
    await holdNodeBusy(tx, nodeId, how.holdUntil);
    const gpuIndexes = unit.gpu_indexes.length > 0 ? unit.gpu_indexes : unit.gpu_index >= 0 ? [unit.gpu_index] : [];
    return { cancel: [], unitsReady: true, busyFor: { gpuIndexes, vramMb: unit.kind === "gpu" ? unit.required_vram_mb : 0 } };
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
    if (unit === undefined || !isUnitOnNode(unit.status)) return;
    const clamped = Math.min(1, Math.max(0, Number.isFinite(progress) ? progress : 0));
    await recordUnitProgress(tx, unit, clamped, metrics);
    await refreshJobProgress(tx, unit.job_id, unit.kind === "gpu" ? metrics : undefined);
  });
}

/**
 * What became of an ArtifactReady: recorded (or recorded before), not about this node's current attempt, or
 * refused: over the customer's quota, or its job's artifacts already removed by retention.
 */
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
    // An ended attempt's late upload (src/blobs/unit-artifacts.ts) may meet the retention sweep: the job held,
    // either the sweep removed its artifacts before (this one is refused too) or it skips the job until this one is in.
    if (!(await lockJobArtifactsKept(tx, unit.job_id))) {
      return { refused: new ApiError("ARTIFACT_EXPIRED", "the job's artifacts were removed by retention; this one is not kept either") };
    }
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

/** What became of a CheckpointReady: recorded (now or before), not about this node's running attempt, or naming no stored file. */
export type CheckpointOutcome = "recorded" | "stale" | "not_stored";

/**
 * The node stored a checkpoint of the unit's running attempt and announced it: it becomes the unit's latest
 * (the files it supersedes are deleted). Idempotent by (unit, attempt, name, sha256): the announcement names
 * the stored file by its bytes, so a replayed or out-of-date announcement, whose file was superseded and
 * deleted since, records nothing.
 */
export async function applyCheckpointReady(
  db: Database,
  nodeId: string,
  ref: UnitAttempt,
  checkpoint: { name: string; sha256: string; metrics: Record<string, number> },
  now: Date,
): Promise<CheckpointOutcome> {
  return jobTransaction(db, async (tx) => {
    const unit = await currentAttempt(tx, nodeId, ref);
    if (unit === undefined || !isUnitOnNode(unit.status)) return "stale";
    const upload = await findCheckpointUpload(tx, { unitId: unit.id, attempt: ref.attempt, name: checkpoint.name, sha256: checkpoint.sha256 });
    if (upload === undefined) return "not_stored";
    await recordLatestCheckpoint(tx, upload, checkpoint.metrics, now);
    return "recorded";
  });
}

/** Records how the unit's current attempt ended, for the customer's list of attempts. */
async function attemptEnded(tx: Sql, unit: UnitRow, status: AttemptEnd, error: string, runSeconds: number, now: Date): Promise<void> {
  await recordAttemptEnded(tx, { unitId: unit.id, attempt: unit.attempt, nodeId: unit.node_id, assignedAt: unit.assigned_at, status, error, runSeconds, finishedAt: now });
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
  result: FinishedReport,
  rates: WorkloadRates,
  now: Date,
): Promise<Effects> {
  return jobTransaction(db, async (tx) => {
    const unit = await currentAttempt(tx, nodeId, ref);
    if (unit === undefined || !isUnitOnNode(unit.status)) return noEffects();
    const job = await lockJob(tx, unit.job_id);
    if (job === undefined) return noEffects();
    // The node reports both times; neither can exceed what the attempt could have taken (the deadline covers both).
    const bounded = (seconds: number | undefined): number => {
      const reported = seconds !== undefined && Number.isFinite(seconds) ? Math.max(0, seconds) : 0;
      const elapsed = unit.started_at === null ? reported : (now.getTime() - unit.started_at.getTime()) / 1000 + 1;
      return Math.min(reported, Math.max(0, elapsed), job.max_runtime_seconds);
    };
    // Billed: the run only. The environment's build is shown to the customer, never billed.
    const runSeconds = bounded(result.runSeconds);
    await recordAttemptEnvBuild(tx, ref, { seconds: bounded(result.envBuildSeconds), built: result.envBuilt === true });
    switch (result.outcome) {
      case "succeeded":
        return completeUnit(tx, job, unit, runSeconds, rates, now);
      case "node_error":
        // Not the customer's code: re-placed elsewhere without using up its attempts.
        return nodeFailure(tx, job, unit, nodeId, `node error: ${result.error}`, result.exitCode, now);
      case "failed":
        // The customer's code failed: this uses up one of its attempts.
        if (unit.code_failures + 1 < unit.max_attempts) {
          const reason = `attempt ${unit.attempt} failed: ${result.error}`.slice(0, 2000);
          await attemptEnded(tx, unit, "failed", reason, runSeconds, now);
          // The next attempt starts fresh: the checkpoint was written by the code that just failed, and a retry
          // that could be poisoned by its own state would spend every remaining attempt the same way.
          await dropCheckpoints(tx, unit.id, now);
          await requeueUnit(tx, unit, { excludeNode: undefined, reason, newAttempt: true, failure: "code", exitCode: result.exitCode, now });
          return { cancel: [], unitsReady: true };
        }
        return failUnit(tx, job, unit, result, now, `its code failed ${unit.code_failures + 1} time(s) (max_attempts ${unit.max_attempts})`, "code");
      case "timed_out":
        return failUnit(tx, job, unit, { ...result, error: result.error || "killed at its deadline (max_runtime_seconds)" }, now);
      case "cancelled":
        await attemptEnded(tx, unit, "cancelled", result.error, runSeconds, now);
        await recordUnitCancelled(tx, unit, now, result.exitCode, runSeconds);
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
  await attemptEnded(tx, unit, "completed", "", runSeconds, now);
  await markUnitCompleted(tx, unit, now, runSeconds);
  await debitCompletedUnit(tx, job, unit, runSeconds, rates, now);
  const units = await listUnitsOfJob(tx, unit.job_id);
  const completed = new Set(units.filter((u) => u.status === "completed").map((u) => u.name));
  let unitsReady = false;
  for (const candidate of units) {
    if (candidate.status === "pending" && candidate.depends_on.every((d) => completed.has(d))) {
      await readyPendingUnit(tx, candidate, now);
      unitsReady = true;
    }
  }
  if (units.every((u) => u.status === "completed")) {
    const done = isJobActive(job.status) && (await markJobCompleted(tx, job, now));
    if (done) await enqueueWebhookEvent(tx, job.customer_id, "job.completed", { job_id: job.id, name: job.name, status: "completed" }, now);
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
  counts?: "code" | "node",
): Promise<Effects> {
  await attemptEnded(tx, unit, counts === "node" ? "lost" : "failed", result.error, result.runSeconds, now);
  await markUnitFailed(tx, unit, { exitCode: result.exitCode, error: result.error.slice(0, 2000), runSeconds: result.runSeconds, counts, now });
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
  const failures = unit.node_failures + 1;
  if (failures < maxNodeFailures) {
    await attemptEnded(tx, unit, "lost", reason, 0, now);
    // Not the code's doing: the next attempt resumes from the unit's latest checkpoint, when it wrote one.
    await planResume(tx, unit.id, unit.attempt + 1);
    await requeueUnit(tx, unit, { excludeNode: nodeId, reason: reason.slice(0, 2000), newAttempt: true, failure: "node", exitCode: undefined, now });
    return { cancel: [], unitsReady: true };
  }
  const why = `${failures} attempts were lost to nodes (the limit is ${maxNodeFailures}); the unit may be crashing or exhausting the nodes it runs on; the last one`;
  return failUnit(tx, job, unit, { exitCode, error: reason, runSeconds: 0 }, now, why, "node");
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
  // A job that already ended (a second cancel, one that failed a moment ago) stays as it ended.
  if (!isJobActive(job.status) || !(await markJobEnded(tx, job, status, reason, now))) return noEffects();
  await enqueueWebhookEvent(tx, job.customer_id, `job.${status}`, { job_id: job.id, name: job.name, status, error: reason }, now);
  const units = (await listUnitsOfJob(tx, job.id)).sort((a, b) => (a.id < b.id ? -1 : 1));
  const effects = noEffects();
  for (const u of units) {
    if (isUnitTerminal(u.status)) continue;
    if (isUnitOnNode(u.status) && u.node_id !== null) {
      effects.cancel.push({ nodeId: u.node_id, unitId: u.id, attempt: u.attempt });
      await attemptEnded(tx, u, "cancelled", reason, 0, now);
    }
    await cancelUnit(tx, u, now, reason);
  }
  return effects;
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
    const overdue = await lockOverdueJobs(tx, now);
    const effects = noEffects();
    for (const job of overdue) {
      const e = await finishJob(tx, job, "expired", `exceeded max_runtime_seconds (${job.max_runtime_seconds} s)`, now);
      effects.cancel.push(...e.cancel);
    }
    return effects;
  });
}

/** How many queued jobs one sweep expires at most; the next sweep, 2 s later, takes the rest. */
const queueTimeoutBatch = 500;

/**
 * The leader's sweep: jobs still queued (no unit started) past their queue_timeout_seconds expire, with
 * the last reason they waited for. They free their active-job slot; nothing is debited, as no unit ran
 * (an assigned unit its node never accepted is cancelled there).
 */
export async function expireQueuedJobs(db: Database, now: Date): Promise<Effects> {
  return jobTransaction(db, async (tx) => {
    const stale = await lockJobsPastQueueTimeout(tx, now, queueTimeoutBatch);
    const effects = noEffects();
    for (const job of stale) {
      const why = job.pending_reason === "" ? "no unit could start" : job.pending_reason;
      const reason = `waited ${job.queue_timeout_seconds} s (queue_timeout_seconds) for a capable node: ${why}`;
      const e = await finishJob(tx, job, "expired", reason, now);
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
  /** The caller's clock: when the units became ready again, or failed. */
  now: Date;
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
  selection: RequeueSelection,
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
    const candidates = await listAttemptsOnNode(tx, nodeId, selection);
    if (candidates.length === 0) return [];
    await lockJobs(tx, candidates.map((u) => u.job_id));
    const now = selection.now;
    const taken: { unitId: string; attempt: number }[] = [];
    for (const candidate of candidates.sort((a, b) => (a.id < b.id ? -1 : 1))) {
      const unit = await findUnit(tx, candidate.id, true);
      if (unit === undefined || unit.node_id !== nodeId || unit.attempt !== candidate.attempt || !isUnitOnNode(unit.status)) continue;
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
export async function takeBackSilentNode(db: Database, nodeId: string, silentSince: Date, now: Date): Promise<{ unitId: string; attempt: number }[]> {
  return requeueUnitsOfNodeIn(db, nodeId, "the node stopped sending heartbeats", { now }, (tx) => markNodeUnreachableIfSilent(tx, nodeId, silentSince));
}
