/**
 * Turns committed placements (units in `assigned` on a node) into Assign
 * messages on that node's stream. Idempotent: an assignment already sent on the
 * current stream is not sent again; a new stream gets every assignment again,
 * and the agent answers a duplicate with Accepted without running it twice.
 */
import { create } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import type { Assign, SessionResponse } from "../gen/gpuagent/agent/v1/agent_pb.ts";
import { AssignSchema, CancelSchema, DrainSchema, InputFileSchema, ResumeFromSchema, SessionResponseSchema, UnitRefSchema } from "../gen/gpuagent/agent/v1/agent_pb.ts";
import type { Clock } from "../platform/clock.ts";
import type { SchedulerConfig } from "../platform/config.ts";
import type { UrlSigner } from "../blobs/signed-url.ts";
import type { Database } from "../store/database.ts";
import type { UnitRow } from "../store/jobs.ts";
import type { AttemptRow } from "../store/checkpoints.ts";
import { findJobById, listArtifactsOfUnits, listUnitsOfJob } from "../store/jobs.ts";
import { findAttempt } from "../store/checkpoints.ts";
import { listAssignmentsOfNode } from "../store/units-on-nodes.ts";
import type { StoredGpu } from "../store/nodes.ts";
import { findNode } from "../store/nodes.ts";
import { findUpload } from "../store/uploads.ts";
import type { SessionRegistry } from "./session-registry.ts";
import { sendToSession } from "./session-registry.ts";

/** What building and sending assignments needs (a subset of ControlPlaneDeps). */
export interface AssignmentDeps {
  readonly config: SchedulerConfig;
  readonly db: Database;
  readonly signer: UrlSigner;
  readonly clock: Clock;
}

/** Builds a control message. */
export const newResponse = (seq: bigint, body: SessionResponse["body"]): SessionResponse => create(SessionResponseSchema, { seq, body });

/** Sends every not-yet-sent assignment of `nodeId` down its stream on this replica. */
export async function dispatchAssignments(deps: AssignmentDeps, sessions: SessionRegistry, nodeId: string): Promise<number> {
  const session = sessions.get(nodeId);
  if (session === undefined) return 0;
  const units = await listAssignmentsOfNode(deps.db, nodeId);
  let sent = 0;
  session.dispatchPending = false;
  // The node's GPUs as last reported, read once for the UUIDs its assignments name.
  let nodeGpus: readonly StoredGpu[] | undefined;
  for (const unit of units) {
    const assignmentId = unit.assignment_id!;
    if (session.sentAssignments.has(assignmentId)) continue;
    nodeGpus ??= (await findNode(deps.db, nodeId))?.capabilities.gpus ?? [];
    const assign = await buildAssign(deps, unit, nodeGpus);
    if (assign === undefined) continue;
    if (!sendToSession(session, { case: "assign", value: assign }, newResponse)) {
      // Full queue (a slow agent): not marked as sent, so the next heartbeat's re-dispatch sends it.
      session.dispatchPending = true;
      break;
    }
    session.sentAssignments.add(assignmentId);
    sent += 1;
  }
  // Assignments leave `assigned` once accepted or taken back; forget them so the set stays small.
  if (session.sentAssignments.size > units.length) {
    const current = new Set(units.map((u) => u.assignment_id));
    for (const id of session.sentAssignments) if (!current.has(id)) session.sentAssignments.delete(id);
  }
  return sent;
}

/** Tells a node to take no new units (its running units finish). */
export function sendDrain(sessions: SessionRegistry, nodeId: string, reason: string): boolean {
  const session = sessions.get(nodeId);
  if (session === undefined) return false;
  return sendToSession(session, { case: "drain", value: create(DrainSchema, { reason }) }, newResponse);
}

/** Tells a node to kill a unit attempt. */
export function sendCancel(sessions: SessionRegistry, nodeId: string, unitId: string, attempt: number, reason: string): boolean {
  const session = sessions.get(nodeId);
  if (session === undefined) return false;
  return sendToSession(
    session,
    { case: "cancel", value: create(CancelSchema, { unit: create(UnitRefSchema, { unitId, attempt }), reason }) },
    newResponse,
  );
}

async function buildAssign(deps: AssignmentDeps, unit: UnitRow, nodeGpus: readonly StoredGpu[]): Promise<Assign | undefined> {
  const { db, signer, clock, config } = deps;
  const job = await findJobById(db, unit.job_id);
  if (job === undefined) return undefined;
  // Independent reads, side by side: on PostgreSQL each takes its own pooled connection.
  const [pkg, dataset, siblings, record] = await Promise.all([
    findUpload(db, "training_packages", job.customer_id, job.training_package_id),
    findUpload(db, "datasets", job.customer_id, job.dataset_id),
    listUnitsOfJob(db, unit.job_id),
    findAttempt(db, unit.id, unit.attempt),
  ]);
  if (pkg === undefined || dataset === undefined) return undefined;
  const now = clock.now();
  const startedMs = job.started_at?.getTime() ?? now;
  const deadlineMs = Math.max(now + 1000, startedMs + job.max_runtime_seconds * 1000);
  // Inputs must stay downloadable for as long as the unit may run.
  const urlExpiry = deadlineMs + 3600_000;
  const ancestors = ancestorsOf(unit, siblings).map((s) => s.id);
  const produced = await listArtifactsOfUnits(db, ancestors);
  produced.sort((a, b) => ancestors.indexOf(a.compute_unit_id) - ancestors.indexOf(b.compute_unit_id));
  const upstreamArtifacts = dedupeByName(produced);
  const base = safeFileName(dataset.name);
  const resume = resumeOf(record);
  const datasetName = dataset.format && !base.includes(".") ? `${base}.${safeFileName(dataset.format)}` : base;
  return create(AssignSchema, {
    assignmentId: unit.assignment_id!,
    unit: create(UnitRefSchema, { unitId: unit.id, attempt: unit.attempt }),
    jobId: unit.job_id,
    stage: unit.name,
    kind: unit.kind,
    entrypoint: unit.entrypoint,
    args: unit.args,
    inputs: [
      create(InputFileSchema, {
        role: "package",
        name: "package.zip",
        url: signer.sign("get", pkg.blob_key, urlExpiry),
        sha256: pkg.sha256,
        sizeBytes: BigInt(pkg.size_bytes),
      }),
      create(InputFileSchema, {
        role: "dataset",
        name: datasetName,
        url: signer.sign("get", dataset.blob_key, urlExpiry),
        sha256: dataset.sha256,
        sizeBytes: BigInt(dataset.size_bytes),
      }),
      ...upstreamArtifacts
        .filter((a) => a.kind !== "logs")
        .map((a) =>
          create(InputFileSchema, {
            role: "artifact",
            name: a.name,
            url: signer.sign("get", a.blob_key, urlExpiry),
            sha256: a.sha256,
            sizeBytes: BigInt(a.size_bytes),
          }),
        ),
      // After its node failed the previous attempt, this one resumes from the unit's latest checkpoint (lifecycle.ts).
      ...(resume === undefined
        ? []
        : [create(InputFileSchema, { role: "checkpoint", name: resume.name, url: signer.sign("get", resume.blobKey, urlExpiry), sha256: resume.sha256, sizeBytes: BigInt(resume.sizeBytes) })]),
    ],
    // Agents older than gpu_indexes read gpu_index, the first of them.
    gpuIndex: unit.gpu_index,
    gpuIndexes: assignedGpus(unit),
    gpuUuids: assignedGpus(unit).map((index) => nodeGpus.find((g) => g.index === index)?.uuid ?? ""),
    vramMb: unit.required_vram_mb,
    diskMb: unit.required_disk_mb,
    // The agent's sandbox enforces these (src/node-agent/unit-sandbox.ts).
    cpuCores: unit.required_cpu_cores,
    memoryMb: unit.required_memory_mb,
    maxRuntimeSeconds: Math.max(1, Math.ceil((deadlineMs - now) / 1000)),
    deadline: timestampFromMs(deadlineMs),
    artifactUploadUrl: new URL(`/agent/v1/units/${unit.id}/attempts/${unit.attempt}/artifacts`, config.publicUrl).toString(),
    artifactsMaxBytes: BigInt(config.limits.storage.unitArtifactsMaxBytes),
    checkpointUploadUrl: new URL(`/agent/v1/units/${unit.id}/attempts/${unit.attempt}/checkpoints`, config.publicUrl).toString(),
    ...(resume === undefined ? {} : { resumeFrom: create(ResumeFromSchema, { attempt: resume.attempt, name: resume.name, metrics: resume.metrics }) }),
    env: {},
  });
}

/** The checkpoint an attempt resumes from, as its record holds it (src/store/checkpoints.ts planResume). */
function resumeOf(
  record: AttemptRow | undefined,
): { attempt: number; name: string; metrics: Record<string, number>; blobKey: string; sha256: string; sizeBytes: number } | undefined {
  if (record === undefined || record.resumed_from_attempt === null || record.resumed_from_checkpoint === null || record.resume_blob_key === null || record.resume_sha256 === null) return undefined;
  return {
    attempt: record.resumed_from_attempt,
    name: record.resumed_from_checkpoint,
    metrics: record.resumed_from_metrics ?? {},
    blobKey: record.resume_blob_key,
    sha256: record.resume_sha256,
    sizeBytes: record.resume_size_bytes ?? 0,
  };
}

/** The GPUs a placed unit holds: `gpu_indexes`, or `[gpu_index]` for a row placed before that column (none for -1). */
export function assignedGpus(unit: Pick<UnitRow, "gpu_index" | "gpu_indexes">): number[] {
  if (unit.gpu_indexes.length > 0) return [...unit.gpu_indexes];
  return unit.gpu_index >= 0 ? [unit.gpu_index] : [];
}

/** A file name without directories or odd characters. */
export function safeFileName(name: string): string {
  const cleaned = name.replace(/[^A-Za-z0-9._-]/g, "_").replace(/^\.+/, "");
  return cleaned === "" ? "file" : cleaned.slice(0, 120);
}

/**
 * Every unit this one transitively depends on, farthest first, so that a
 * stage sees what any earlier stage produced (evaluate needs prepare's data
 * as well as train's checkpoint).
 */
export function ancestorsOf(unit: UnitRow, siblings: readonly UnitRow[]): UnitRow[] {
  const byName = new Map(siblings.map((s) => [s.name, s]));
  const seen = new Set<string>();
  const order: UnitRow[] = [];
  const visit = (name: string) => {
    if (seen.has(name)) return;
    seen.add(name);
    const s = byName.get(name);
    if (s === undefined) return;
    for (const d of s.depends_on) visit(d);
    order.push(s);
  };
  for (const d of unit.depends_on) visit(d);
  return order;
}

/** Keeps the last artifact of each name (the nearest ancestor's wins). */
function dedupeByName<T extends { name: string; compute_unit_id: string }>(artifacts: T[]): T[] {
  return [...new Map(artifacts.map((a) => [a.name, a])).values()];
}
