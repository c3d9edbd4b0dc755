/**
 * The live tail of one compute unit's log: the server's tail, read once (and
 * again when the unit changes state or attempt), then the lines each of the
 * job's log events brings (`pushed`, the latest event of this unit; the page
 * follows the job's event stream). Lines are numbered 1, 2, 3 … per attempt, so
 * an event that does not continue the lines shown (one went by unseen) is
 * followed by a read with the cursor (`after` = the last line's seq) instead.
 * The server keeps the last 500 lines (64 KiB) of each attempt and receives
 * them every couple of seconds; the stage's `.log` artifact holds the whole log
 * once the attempt ends.
 */
import { useCallback, useEffect, useLayoutEffect, useRef, useState } from "react";
import { api } from "../api/client.ts";
import type { LogEvent } from "../api/job-events.ts";
import type { ComputeUnit, LogLine, UnitLogs } from "../api/types.ts";
import { formatNumber } from "../format.ts";
import { ErrorBox } from "./ui.tsx";

/** Lines kept on the page (the server's tail size). */
const maxLines = 500;

interface Shown {
  readonly attempt: number;
  readonly lines: LogLine[];
  readonly dropped: number;
  readonly trimmed: number;
}

/** One unit's log, live while the unit runs. */
export function UnitLog({ jobId, unit, pushed }: { jobId: string; unit: ComputeUnit; pushed?: LogEvent | undefined }) {
  const [shown, setShown] = useState<Shown | undefined>(undefined);
  const [error, setError] = useState<unknown>(undefined);
  const cursor = useRef({ attempt: -1, after: "0", busy: false });
  const pre = useRef<HTMLPreElement>(null);
  const followBottom = useRef(true);
  const live = unit.status === "assigned" || unit.status === "running";
  const path = `/api/v1/customer/training-jobs/${encodeURIComponent(jobId)}/compute-units/${encodeURIComponent(unit.id)}/logs`;

  const load = useCallback(async () => {
    const c = cursor.current;
    if (c.busy) return;
    c.busy = true;
    try {
      let answer = await api<UnitLogs>("GET", c.attempt < 0 ? path : `${path}?after=${encodeURIComponent(c.after)}`);
      // The unit was retried: the new attempt's log has its own numbering, read it from the start.
      if (c.attempt >= 0 && answer.attempt !== c.attempt && c.after !== "0") answer = await api<UnitLogs>("GET", path);
      const fresh = answer.attempt !== c.attempt;
      c.attempt = answer.attempt;
      c.after = answer.next_after;
      setShown((old) => {
        const all = [...(fresh || old === undefined ? [] : old.lines), ...answer.lines];
        const lines = all.length > maxLines ? all.slice(all.length - maxLines) : all;
        const first = lines[0];
        return {
          attempt: answer.attempt,
          lines,
          dropped: Number(answer.dropped_lines),
          // Lines are numbered from 1 without gaps: everything before the first one shown is older.
          trimmed: first === undefined ? Number(answer.trimmed_lines) : Number(first.seq) - 1,
        };
      });
      setError(undefined);
    } catch (e) {
      setError(e);
    } finally {
      c.busy = false;
    }
  }, [path]);

  // Read at once, and again whenever the unit changes state or attempt (its final lines come with its end).
  useEffect(() => {
    void load();
  }, [load, unit.status, unit.attempt]);
  // A log event that continues the lines shown is appended as it is; any other one is read with the cursor.
  useEffect(() => {
    const c = cursor.current;
    if (pushed === undefined || c.busy) return;
    const first = pushed.lines[0];
    if (first === undefined) return;
    if (pushed.attempt !== c.attempt || BigInt(first.seq) !== BigInt(c.after) + 1n) {
      void load();
      return;
    }
    c.after = pushed.lines.at(-1)?.seq ?? c.after;
    setShown((old) => {
      const all = [...(old?.lines ?? []), ...pushed.lines];
      const lines = all.length > maxLines ? all.slice(all.length - maxLines) : all;
      // Lines are numbered from 1 without gaps: everything before the first one shown is older.
      return { attempt: pushed.attempt, lines, dropped: old?.dropped ?? 0, trimmed: Number(lines[0]?.seq ?? "1") - 1 };
    });
  }, [pushed, load]);

  // Stay at the newest line unless the reader scrolled up.
  useLayoutEffect(() => {
    const el = pre.current;
    if (el !== null && followBottom.current) el.scrollTop = el.scrollHeight;
  }, [shown]);
  const onScroll = () => {
    const el = pre.current;
    if (el !== null) followBottom.current = el.scrollHeight - el.scrollTop - el.clientHeight < 24;
  };

  const lines = shown?.lines ?? [];
  const attempt = shown?.attempt ?? unit.attempt;
  return (
    <div className="log" data-testid={`log-${unit.name}`} data-lines={lines.length}>
      <h3>
        {unit.name}
        {attempt > 1 ? ` (attempt ${attempt})` : ""}
        {live ? <span className="live-badge">live</span> : null}
      </h3>
      <ErrorBox error={error} />
      {shown !== undefined && shown.trimmed > 0 ? (
        <p className="hint">
          {formatNumber(shown.trimmed)} earlier {shown.trimmed === 1 ? "line is" : "lines are"} not shown; the stage’s .log artifact has the whole log once it ends.
        </p>
      ) : null}
      {lines.length === 0 ? (
        <p className="empty">{shown === undefined ? "Loading the log…" : live ? "No output yet." : "This unit wrote no output."}</p>
      ) : (
        <pre ref={pre} tabIndex={0} aria-label={`Log of ${unit.name}`} onScroll={onScroll}>
          {lines.map((l) => (
            <span key={l.seq} className={l.stream === "stderr" ? "stderr" : undefined}>
              {l.text}
              {"\n"}
            </span>
          ))}
        </pre>
      )}
      {shown !== undefined && shown.dropped > 0 ? (
        <p className="hint">
          {formatNumber(shown.dropped)} {shown.dropped === 1 ? "line was" : "lines were"} lost on the way (the unit wrote faster than the log is kept live, or its node was offline).
        </p>
      ) : null}
    </div>
  );
}
