/**
 * `gpuctl jobs logs JOB_ID [-f] [--unit NAME]`: the logs of a job's compute units, in DAG order
 * (a unit after the units it depends on), from the API's per-unit log tail
 * (`GetComputeUnitLogs`: the last 500 lines of an attempt; the stage's `.log` artifact has the
 * whole log once the attempt ends).
 *
 * `-f` follows as the portal's live tail does: each poll passes the previous answer's
 * `next_after`, so it carries only new lines; a unit that moved to a new attempt is read again
 * from the start of that attempt. Only units that can be running are polled (those whose
 * dependencies have all ended), so a long DAG costs about one request per running unit per
 * interval. It stops when every unit has ended, which is when the job has.
 */
import type { ComputeUnit, GetComputeUnitLogsResponse, LogLine } from "../sdk/index.ts";
import { TERMINAL_UNIT_STATUSES, isTransientFailure, listAll } from "../sdk/index.ts";
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
  /** Poll interval of `--follow`. */
  intervalMs?: number | undefined;
}

/** Default poll interval of `jobs logs -f` (the portal's live tail polls every second as well). */
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
  const units = selectUnits(await listAll((p) => client.jobs.computeUnits(opts.id, p)), opts.id, opts.unit);
  if (opts.follow === true) return followLogs(opts, ctx, units);
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

/** Where the follow of one unit stands. */
interface Cursor {
  /** The attempt read so far; undefined before the first answer. */
  attempt: number | undefined;
  /** The last line's seq (0: nothing read yet). */
  after: bigint;
  /** Lost lines of this attempt already reported. */
  dropped: bigint;
  ended: boolean;
}

async function followLogs(opts: JobLogsOptions, ctx: CliContext, units: ComputeUnit[]): Promise<number> {
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
