/**
 * A compute unit's attempts as its customer reads them: the records of src/store/checkpoints.ts (written as
 * attempts start, end, or are planned to resume) and, for the attempt on a node now, the unit's own row.
 * Pure, so the merge is tested table by table.
 */
import type { AttemptEnd, AttemptRow } from "../store/checkpoints.ts";
import type { UnitRow } from "../store/jobs.ts";

/** One attempt in the compute-unit view. */
export interface AttemptView {
  attempt: number;
  nodeId: string;
  status: "assigned" | "running" | AttemptEnd;
  assignedAt: Date | null;
  startedAt: Date | null;
  finishedAt: Date | null;
  error: string;
  runSeconds: number;
  /** The checkpoint it started from; undefined: a fresh start. */
  resumedFrom: { attempt: number; name: string; metrics: Record<string, number> } | undefined;
}

/**
 * Every attempt of `unit` that reached a node, oldest first. An attempt only planned (it will resume, but has
 * no node yet) is left out until it is placed; the attempt on a node now takes its node, status and
 * placement time from the unit's row, which moves before any record of it is written.
 */
export function unitAttempts(unit: Pick<UnitRow, "attempt" | "status" | "node_id" | "assigned_at">, records: readonly AttemptRow[]): AttemptView[] {
  const views: AttemptView[] = [];
  const onNode = (unit.status === "assigned" || unit.status === "running") && unit.node_id !== null;
  for (const r of [...records].sort((a, b) => a.attempt - b.attempt)) {
    const current = onNode && r.attempt === unit.attempt && r.status === null;
    if (r.status === null && !current) continue;
    views.push(attemptView(r, current ? { nodeId: unit.node_id!, status: unit.status as "assigned" | "running", assignedAt: unit.assigned_at } : undefined));
  }
  if (onNode && !records.some((r) => r.attempt === unit.attempt)) {
    views.push({
      attempt: unit.attempt,
      nodeId: unit.node_id!,
      status: unit.status as "assigned" | "running",
      assignedAt: unit.assigned_at,
      startedAt: null,
      finishedAt: null,
      error: "",
      runSeconds: 0,
      resumedFrom: undefined,
    });
  }
  return views;
}

function attemptView(r: AttemptRow, onNode: { nodeId: string; status: "assigned" | "running"; assignedAt: Date | null } | undefined): AttemptView {
  return {
    attempt: r.attempt,
    nodeId: onNode?.nodeId ?? r.node_id ?? "",
    status: onNode?.status ?? r.status ?? "assigned",
    assignedAt: onNode?.assignedAt ?? r.assigned_at,
    startedAt: r.started_at,
    finishedAt: onNode === undefined ? r.finished_at : null,
    error: r.error,
    runSeconds: r.run_seconds,
    resumedFrom:
      r.resumed_from_attempt === null || r.resumed_from_checkpoint === null
        ? undefined
        : { attempt: r.resumed_from_attempt, name: r.resumed_from_checkpoint, metrics: r.resumed_from_metrics ?? {} },
  };
}
