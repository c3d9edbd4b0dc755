/**
 * `gpuctl jobs logs JOB_ID [-f] [--unit NAME]`: the logs of a job's compute units, in DAG order
 * (a unit after the units it depends on), from the API's per-unit log tail
 * (`GetComputeUnitLogs`: the last 500 lines of an attempt; the stage's `.log` artifact has the
 * whole log once the attempt ends).
 *
 * `-f` follows the job's live event stream (`WatchTrainingJob`, the SDK's `jobs.watch`): it opens
 * the stream first, reads the tail of every unit that had started by its snapshot and prints those
 * in DAG order, then prints the lines of each log event as it comes, until the job has ended. A
 * line is printed once: an event's lines that the tail read already showed (stored between the
 * snapshot and the read) are skipped by their seq. Nothing is polled, so a line shows as soon as
 * the control plane stored it (it receives them every couple of seconds). A server without the
 * stream (UNIMPLEMENTED) is polled as before: each poll passes the previous answer's
 * `next_after`, a unit that moved to a new attempt is read again from that attempt's start, and
 * only units whose dependencies have all ended are asked.
 */
import { Code } from "@connectrpc/connect";
import type { ComputeUnit, GetComputeUnitLogsResponse, JobEvent, LogLine } from "../sdk/index.ts";
import { GpuAgentError, TERMINAL_UNIT_STATUSES, isTransientFailure, listAll } from "../sdk/index.ts";
import { GetComputeUnitLogsResponseSchema } from "../gen/gpuagent/customer/v1/customer_pb.ts";
import type { CliContext, JsonOption } from "./context.ts";
import { usageError } from "./errors.ts";
import { formatTime, messageJson, printJson } from "./output.ts";

/** Options of `jobs logs`. */
export interface JobLogsOptions extends JsonOption {
  id: string;
  /** Keep reading until the job ends. */
  follow?: boolean | undefined;
  /** Only this unit (its name, e.g. `train`, or its id). */
  unit?: string | undefined;
  /** Poll interval of `--follow` against a server without live job events. */
  intervalMs?: number | undefined;
}

/** Default poll interval of `jobs logs -f` against a server without live job events. */
export const DEFAULT_LOG_INTERVAL_MS = 1000;

/** Consecutive transient failures (5xx, connection loss) a follow rides out before giving up. */
const MAX_TRANSIENT_FAILURES = 5;

/**
 * Units in DAG order: each after every unit it depends on, otherwise in the order listed (the
 * order the planner made them). A dependency on a unit not in the list does not hold anything
 * back, and a cycle (which the planner never makes) leaves the rest as listed.
 */
export function dagOrder<T extends { name: string; dependsOn: string[] }>(units: readonly T[]): T[] {
  const names = new Set(units.map((u) => u.name));
  const placed = new Set<string>();
  const left = [...units];
  const ordered: T[] = [];
  while (left.length > 0) {
    const next = left.findIndex((u) => u.dependsOn.every((d) => placed.has(d) || !names.has(d)));
    if (next < 0) {
      ordered.push(...left);
      break;
    }
    const [unit] = left.splice(next, 1) as [T];
    ordered.push(unit);
    placed.add(unit.name);
  }
  return ordered;
}

/** The units `--unit` picks (by name or id), in DAG order; all of them without it. */
function selectUnits(units: ComputeUnit[], jobId: string, unit: string | undefined): ComputeUnit[] {
  const ordered = dagOrder(units);
  if (unit === undefined) return ordered;
  const picked = ordered.filter((u) => u.name === unit || u.id === unit);
  if (picked.length === 0) {
    throw usageError("UNIT_NOT_FOUND", `--unit ${unit}: job ${jobId} has no such unit (its units: ${ordered.map((u) => u.name).join(", ") || "none"})`);
  }
  return picked;
}

/** Writes log lines for people: `name | text` when several units share the output. */
function lineWriter(ctx: CliContext, units: ComputeUnit[], json: boolean): (unit: ComputeUnit, attempt: number, line: LogLine) => void {
  if (json) {
    return (unit, attempt, line) =>
      ctx.io.stdout(`${JSON.stringify({ unit_id: unit.id, unit_name: unit.name, attempt, seq: String(line.seq), at: formatTime(line.at), stream: line.stream, text: line.text })}\n`);
  }
  const width = Math.max(0, ...units.map((u) => u.name.length));
  const prefixed = units.length > 1;
  return (unit, _attempt, line) => ctx.io.stdout(prefixed ? `${unit.name.padEnd(width)} | ${line.text}\n` : `${line.text}\n`);
}

/** What a person should know beside the lines (on stderr): some are older than the tail, some were lost. */
function notes(ctx: CliContext, unit: ComputeUnit, trimmed: bigint, dropped: bigint): void {
  if (trimmed > 0n) ctx.io.stderr(`${unit.name}: ${trimmed} earlier lines are no longer kept here; the stage's .log artifact has the whole log once it ends\n`);
  if (dropped > 0n) ctx.io.stderr(`${unit.name}: ${dropped} lines were lost on the way (written faster than the log is kept live, or the node was offline)\n`);
}

/**
 * Prints the logs of a job's units in DAG order, or follows them (`-f`) until the job ends. Exit
 * 0 once the logs are read, whatever the job's outcome (`jobs watch` tells that).
 *
 * Output: the lines on stdout (prefixed with the unit's name when there are several units);
 * `--json` prints `{"data": [<GetComputeUnitLogsResponse> + unit_name, …]}`, or with `-f` one JSON
 * object per line (`unit_id`, `unit_name`, `attempt`, `seq`, `at`, `stream`, `text`) as lines come.
 */
export async function jobsLogs(opts: JobLogsOptions, ctx: CliContext): Promise<number> {
  const client = ctx.customer();
  if (opts.follow === true) return followLogs(opts, ctx);
  const units = selectUnits(await listAll((p) => client.jobs.computeUnits(opts.id, p)), opts.id, opts.unit);
  const answers: { unit: ComputeUnit; answer: GetComputeUnitLogsResponse }[] = [];
  for (const unit of units) answers.push({ unit, answer: await client.jobs.logs(opts.id, unit.id) });
  if (opts.json) {
    printJson(ctx.io, { data: answers.map(({ unit, answer }) => ({ unit_name: unit.name, ...(messageJson(GetComputeUnitLogsResponseSchema, answer) as object) })) });
    return 0;
  }
  const write = lineWriter(ctx, units, false);
  for (const { unit, answer } of answers) {
    notes(ctx, unit, answer.trimmedLines, answer.droppedLines);
    for (const line of answer.lines) write(unit, answer.attempt, line);
  }
  return 0;
}

/** What a follow has printed of one unit: the attempt and its last line's seq (0: nothing yet). */
interface Shown {
  attempt: number;
  after: bigint;
}

/** Whether a unit may have written lines by a snapshot: one of its attempts started, or one is on a node now. */
const hasStarted = (unit: ComputeUnit) => unit.startedAt !== undefined || unit.status === "assigned" || unit.status === "running";

/** Follows the job's live events; against a server without them, polls. */
async function followLogs(opts: JobLogsOptions, ctx: CliContext): Promise<number> {
  const client = ctx.customer();
  const events = client.jobs.watch(opts.id);
  try {
    let first: IteratorResult<JobEvent, void>;
    try {
      first = await events.next();
    } catch (error) {
      // A server without WatchTrainingJob answers UNIMPLEMENTED: no retry will change that.
      if (!(error instanceof GpuAgentError && error.connectCode === Code.Unimplemented)) throw error;
      return await pollLogs(opts, ctx, selectUnits(await listAll((p) => client.jobs.computeUnits(opts.id, p)), opts.id, opts.unit));
    }
    if (first.done === true || first.value.payload.case !== "snapshot") {
      throw new GpuAgentError({ code: "BAD_RESPONSE", message: `the event stream of job ${opts.id} did not start with a snapshot`, httpStatus: 0, connectCode: Code.Internal });
    }
    const units = selectUnits(first.value.payload.value.computeUnits, opts.id, opts.unit);
    const byId = new Map(units.map((u) => [u.id, u]));
    // The units picked, in DAG order, as a snapshot shows them.
    const asIn = (listed: readonly ComputeUnit[]) => units.map((u) => listed.find((l) => l.id === u.id) ?? u);
    const follow: Follow = { opts, ctx, write: lineWriter(ctx, units, opts.json), shown: new Map() };
    await catchUp(follow, units);
    for await (const event of events) {
      const { payload } = event;
      // A later snapshot stands in for events the stream could no longer send (a resume far behind).
      if (payload.case === "snapshot") await catchUp(follow, asIn(payload.value.computeUnits));
      if (payload.case !== "log") continue;
      const unit = byId.get(payload.value.computeUnitId);
      if (unit !== undefined) printLines(follow, unit, payload.value.attempt, payload.value.lines);
    }
    return 0;
  } finally {
    await events.return();
  }
}

/** One follow's output and what it has printed. */
interface Follow {
  readonly opts: JobLogsOptions;
  readonly ctx: CliContext;
  readonly write: (unit: ComputeUnit, attempt: number, line: LogLine) => void;
  readonly shown: Map<string, Shown>;
}

/**
 * Prints, in DAG order, what the units that had started by a snapshot wrote and this follow has not
 * printed: the stored tail, read after the snapshot, so every line written before it is there (or
 * older than the tail, which is noted); the lines after it come as events.
 */
async function catchUp(follow: Follow, units: readonly ComputeUnit[]): Promise<void> {
  const { opts, ctx, shown } = follow;
  const client = ctx.customer();
  for (const unit of units.filter(hasStarted)) {
    const seen = shown.get(unit.id);
    let answer = await client.jobs.logs(opts.id, unit.id, seen === undefined ? {} : { after: seen.after });
    // Another attempt than the one printed: read it from its start.
    if (seen !== undefined && answer.attempt !== seen.attempt && seen.after > 0n) answer = await client.jobs.logs(opts.id, unit.id);
    if (seen !== undefined && answer.attempt < seen.attempt) continue;
    if ((seen === undefined || answer.attempt > seen.attempt) && answer.nextAfter > 0n) {
      if (!opts.json) notes(ctx, unit, answer.trimmedLines, answer.droppedLines);
      // The lines older than the tail were just noted.
      startAttempt(follow, unit, answer.attempt, (answer.lines[0]?.seq ?? 1n) - 1n);
    }
    printLines(follow, unit, answer.attempt, answer.lines);
  }
}

/** Records that the unit's lines are now of `attempt`, `after` the ones printed or noted. */
function startAttempt(follow: Follow, unit: ComputeUnit, attempt: number, after: bigint): Shown {
  if (follow.shown.has(unit.id) && !follow.opts.json) follow.ctx.io.stderr(`${unit.name}: attempt ${attempt} (the unit was retried)\n`);
  const seen = { attempt, after };
  follow.shown.set(unit.id, seen);
  return seen;
}

/**
 * Prints the lines not printed yet (by seq: a tail read and an event may hold the same ones); a
 * line of an attempt before the one printed (a late flush) is left out. Lines are numbered 1, 2, 3
 * … per attempt, so lines skipped over were no longer kept when they were asked for: that is noted.
 */
function printLines(follow: Follow, unit: ComputeUnit, attempt: number, lines: readonly LogLine[]): void {
  const { opts, ctx, write } = follow;
  if (lines.length === 0) return;
  let seen = follow.shown.get(unit.id);
  if (seen !== undefined && attempt < seen.attempt) return;
  if (seen === undefined || attempt > seen.attempt) seen = startAttempt(follow, unit, attempt, 0n);
  for (const line of lines) {
    if (line.seq <= seen.after) continue;
    const skipped = line.seq - seen.after - 1n;
    if (skipped > 0n && !opts.json) ctx.io.stderr(`${unit.name}: ${skipped} lines are no longer kept here; the stage's .log artifact has them once it ends\n`);
    write(unit, attempt, line);
    seen.after = line.seq;
  }
}

/** Where the poll of one unit stands. */
interface Cursor {
  /** The attempt read so far; undefined before the first answer. */
  attempt: number | undefined;
  /** The last line's seq (0: nothing read yet). */
  after: bigint;
  /** Lost lines of this attempt already reported. */
  dropped: bigint;
  ended: boolean;
}

/** `-f` against a server without live job events: each unit's tail read with the cursor every interval. */
async function pollLogs(opts: JobLogsOptions, ctx: CliContext, units: ComputeUnit[]): Promise<number> {
  const client = ctx.customer();
  const write = lineWriter(ctx, units, opts.json);
  const cursors = new Map<string, Cursor>(units.map((u) => [u.id, { attempt: undefined, after: 0n, dropped: 0n, ended: false }]));
  const byName = new Map(units.map((u) => [u.name, u]));
  const ended = (name: string) => {
    const dep = byName.get(name);
    return dep === undefined || cursors.get(dep.id)?.ended === true;
  };
  let failures = 0;
  for (;;) {
    try {
      for (const unit of units) {
        const cursor = cursors.get(unit.id);
        // A unit waiting for others has written nothing yet: no need to ask.
        if (cursor === undefined || cursor.ended || !unit.dependsOn.every(ended)) continue;
        let fromStart = cursor.after === 0n;
        let answer = await client.jobs.logs(opts.id, unit.id, fromStart ? {} : { after: cursor.after });
        if (!fromStart && answer.attempt !== cursor.attempt) {
          // A new attempt numbers its lines from 1 again: read it from its start.
          answer = await client.jobs.logs(opts.id, unit.id);
          fromStart = true;
          cursor.dropped = 0n;
          if (!opts.json) ctx.io.stderr(`${unit.name}: attempt ${answer.attempt} (the unit was retried)\n`);
        }
        cursor.attempt = answer.attempt;
        cursor.after = answer.nextAfter;
        if (!opts.json) notes(ctx, unit, fromStart ? answer.trimmedLines : 0n, answer.droppedLines - cursor.dropped);
        cursor.dropped = answer.droppedLines;
        for (const line of answer.lines) write(unit, answer.attempt, line);
        cursor.ended = TERMINAL_UNIT_STATUSES.includes(answer.unitStatus);
      }
      failures = 0;
    } catch (error) {
      if (!isTransientFailure(error) || ++failures > MAX_TRANSIENT_FAILURES) throw error;
    }
    if ([...cursors.values()].every((c) => c.ended)) return 0;
    await ctx.clock.sleep(opts.intervalMs ?? DEFAULT_LOG_INTERVAL_MS);
  }
}
