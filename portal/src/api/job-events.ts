/**
 * A job's live events (GET …/training-jobs/{id}/events, Server-Sent Events) through the browser's
 * EventSource: same origin, authenticated by the session cookie. The browser reconnects by itself
 * after a network break and sends the last event's id (`Last-Event-ID`), so the server resumes
 * exactly after it; the stream is closed here once the job has ended. An answer that is not a
 * stream (401, 404, 429 over the open-watch bound) closes the EventSource for good: `onClosed` is
 * told, and the page decides whether to read the job again and when to watch again.
 */
import type { ComputeUnit, LogLine, TrainingJob } from "./types.ts";

/** The job and its units as they stood at the event's id. */
export interface JobSnapshot {
  training_job: TrainingJob;
  compute_units: ComputeUnit[];
  /** The resume point was older than the events the server keeps: this replaces them. */
  gap: boolean;
}

/** A job's state after a change: fields of TrainingJob. */
export type JobChange = Pick<TrainingJob, "status" | "progress" | "error" | "metrics" | "compute_units_completed" | "credits_debited" | "pending_reason"> &
  Partial<Pick<TrainingJob, "started_at" | "finished_at">>;

/** A unit's state after a change: fields of ComputeUnit. */
export type UnitChange = Pick<ComputeUnit, "id" | "name" | "status" | "attempt" | "progress" | "metrics" | "node_id" | "exit_code" | "error"> &
  Partial<Pick<ComputeUnit, "started_at" | "finished_at">>;

/** Lines a unit's attempt wrote, as stored. */
export interface LogEvent {
  compute_unit_id: string;
  attempt: number;
  lines: LogLine[];
  /** Lines of this event the server no longer keeps (int64). */
  missing_lines: string;
}

/** What the page does with each kind of event. */
export interface JobEventHandlers {
  snapshot(s: JobSnapshot): void;
  job(change: JobChange): void;
  unit(change: UnitChange): void;
  log(event: LogEvent): void;
  /** The stream ended for good (an error answer, or the end of an ended job). */
  onClosed(): void;
}

const terminal = new Set(["completed", "failed", "cancelled", "expired"]);

/** Opens the job's event stream; returns the function that closes it. */
export function watchJobEvents(jobPath: string, handlers: JobEventHandlers): () => void {
  const source = new EventSource(`${jobPath}/events`);
  const on = <T>(type: string, handle: (payload: T) => void) =>
    source.addEventListener(type, (e) => {
      const message = JSON.parse((e as MessageEvent<string>).data) as Record<string, unknown>;
      handle(message[type] as T);
    });
  on<JobSnapshot>("snapshot", (s) => {
    handlers.snapshot(s);
    if (terminal.has(s.training_job.status)) source.close();
  });
  on<JobChange>("job", (change) => {
    handlers.job(change);
    // Nothing follows an ended job's last event: closing now spares the reconnect that would learn it.
    if (terminal.has(change.status)) source.close();
  });
  on<UnitChange>("unit", handlers.unit);
  on<LogEvent>("log", handlers.log);
  source.addEventListener("error", () => {
    if (source.readyState === EventSource.CLOSED) handlers.onClosed();
  });
  return () => source.close();
}
