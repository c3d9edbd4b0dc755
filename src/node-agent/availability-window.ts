/**
 * The owner's availability window (`gpu-agent run --available …`): when, in the machine's local time,
 * the node takes new units. Pure: the time and the time zone come in as arguments.
 *
 * Grammar (case-insensitive, spaces around separators ignored):
 *
 *   spec    = window *( ";" window )
 *   window  = [ days " " ] time "-" time        no days: every day
 *   days    = day-or-range *( "," day-or-range )
 *   day-or-range = day | day "-" day             a range may wrap: "Fri-Mon" is Fri, Sat, Sun, Mon
 *   day     = Mon | Tue | Wed | Thu | Fri | Sat | Sun
 *   time    = HH:MM, 00:00 … 24:00 (24:00 only as an end)
 *
 * A window belongs to the day it starts on. One whose end is earlier than its start runs overnight into
 * the next day: "Mon-Fri 18:00-08:00" is Monday 18:00 to Tuesday 08:00, …, Friday 18:00 to Saturday
 * 08:00; the weekend has none of it. "Sat,Sun 00:00-24:00" is the whole weekend. Several windows add up:
 * "Mon-Fri 18:00-08:00; Sat,Sun 00:00-24:00" is every evening, night and weekend. A window starts at its
 * start minute and ends just before its end minute.
 *
 * Why local time and an offset function rather than a time-zone library: the owner thinks in the wall
 * clock of the machine itself, which the host already knows (`hostUtcOffsetMinutes`, src/platform/host.ts);
 * tests pass a fixed offset, or one that changes at a daylight-saving step.
 */

/** Minutes east of UTC that the local wall clock shows at the instant `utcMs` (e.g. +120 for CEST). */
export type UtcOffset = (utcMs: number) => number;

/** A spec the grammar above does not accept; the message says what and where. */
export class AvailabilityWindowError extends Error {
  override readonly name = "AvailabilityWindowError";
}

/** One stretch of the week, in milliseconds since Monday 00:00 local: [start, end). */
interface WeekSpan {
  start: number;
  end: number;
}

/** A parsed availability window. */
export interface AvailabilityWindow {
  /** The spec as the owner wrote it (reported in OwnerPolicy.available). */
  readonly text: string;
  /** Disjoint, sorted, non-adjacent spans of the week where the node is available. */
  readonly spans: readonly WeekSpan[];
}

const MINUTE = 60_000;
const DAY = 24 * 60 * MINUTE;
const WEEK = 7 * DAY;
/** 1970-01-01, day 0 of the epoch, was a Thursday: 3 days after a Monday. */
const EPOCH_WEEKDAY = 3;

const DAY_NAMES = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"] as const;

function dayIndex(name: string, window: string): number {
  const i = DAY_NAMES.indexOf(name.toLowerCase() as (typeof DAY_NAMES)[number]);
  if (i < 0) throw new AvailabilityWindowError(`unknown day "${name}" in "${window}": use Mon, Tue, Wed, Thu, Fri, Sat, Sun`);
  return i;
}

/** The days a `days` part names, as indexes 0 (Monday) … 6 (Sunday). */
function parseDays(part: string, window: string): Set<number> {
  const days = new Set<number>();
  for (const item of part.split(",").map((s) => s.trim())) {
    if (item === "") throw new AvailabilityWindowError(`empty day in "${window}": separate days with single commas, e.g. "Sat,Sun"`);
    const range = item.split("-").map((s) => s.trim());
    if (range.length > 2) throw new AvailabilityWindowError(`bad day range "${item}" in "${window}": write it as e.g. "Mon-Fri"`);
    const first = dayIndex(range[0] ?? "", window);
    const last = range.length === 2 ? dayIndex(range[1] ?? "", window) : first;
    // A range that wraps ("Fri-Mon") runs through the end of the week.
    for (let d = first; ; d = (d + 1) % 7) {
      days.add(d);
      if (d === last) break;
    }
  }
  return days;
}

/** Minutes since midnight of an `HH:MM`; 24:00 only where `endOfDay` is allowed. */
function parseTime(text: string, window: string, allowEndOfDay: boolean): number {
  const m = /^(\d{1,2}):(\d{2})$/.exec(text);
  const hours = m ? Number(m[1]) : NaN;
  const minutes = m ? Number(m[2]) : NaN;
  const valid = m !== null && minutes < 60 && (hours < 24 || (allowEndOfDay && hours === 24 && minutes === 0));
  if (!valid) {
    const range = allowEndOfDay ? "00:00 to 24:00" : "00:00 to 23:59";
    throw new AvailabilityWindowError(`bad time "${text}" in "${window}": write HH:MM from ${range}`);
  }
  return hours * 60 + minutes;
}

/** The spans of one window (it may add one span per day, and split one across the end of the week). */
function parseWindow(window: string): WeekSpan[] {
  const m = /^(?:(.*\S)\s+)?(\S+)$/.exec(window);
  const times = (m?.[2] ?? "").split("-");
  if (times.length !== 2 || !/\d/.test(m?.[2] ?? "")) {
    throw new AvailabilityWindowError(`"${window}" has no time range: write e.g. "Mon-Fri 18:00-08:00" or "09:00-17:00"`);
  }
  const start = parseTime(times[0] ?? "", window, false);
  const end = parseTime(times[1] ?? "", window, true);
  if (start === end) {
    throw new AvailabilityWindowError(`"${window}" starts and ends at the same time: write 00:00-24:00 for whole days`);
  }
  const days = m?.[1] === undefined ? new Set([0, 1, 2, 3, 4, 5, 6]) : parseDays(m[1], window);
  // Overnight: the end is on the next day.
  const length = (end > start ? end - start : end + 24 * 60 - start) * MINUTE;
  const spans: WeekSpan[] = [];
  for (const d of days) {
    const from = d * DAY + start * MINUTE;
    const to = from + length;
    if (to <= WEEK) spans.push({ start: from, end: to });
    else spans.push({ start: from, end: WEEK }, { start: 0, end: to - WEEK });
  }
  return spans;
}

/** Sorts spans and merges the ones that overlap or touch, so every span end is a real edge. */
function mergeSpans(spans: WeekSpan[]): WeekSpan[] {
  const sorted = [...spans].sort((a, b) => a.start - b.start);
  const merged: WeekSpan[] = [];
  for (const s of sorted) {
    const last = merged[merged.length - 1];
    if (last !== undefined && s.start <= last.end) last.end = Math.max(last.end, s.end);
    else merged.push({ ...s });
  }
  return merged;
}

/** Parses an availability spec (grammar in the module comment); throws AvailabilityWindowError. */
export function parseAvailabilityWindow(text: string): AvailabilityWindow {
  const windows = text.split(";").map((w) => w.trim().replace(/\s*([-,])\s*/g, "$1").replace(/\s+/g, " "));
  if (windows.every((w) => w === "")) {
    throw new AvailabilityWindowError(`empty availability window: write e.g. "Mon-Fri 18:00-08:00", or leave --available out to be available always`);
  }
  const spans: WeekSpan[] = [];
  for (const w of windows) {
    if (w === "") throw new AvailabilityWindowError(`empty window between ";" in "${text}"`);
    spans.push(...parseWindow(w));
  }
  return { text: text.trim(), spans: mergeSpans(spans) };
}

/** Where in the local week (ms since Monday 00:00) the instant `utcMs` falls. */
function weekPosition(utcMs: number, utcOffset: UtcOffset): number {
  const local = utcMs + utcOffset(utcMs) * MINUTE + EPOCH_WEEKDAY * DAY;
  return ((local % WEEK) + WEEK) % WEEK;
}

function inside(window: AvailabilityWindow, position: number): boolean {
  return window.spans.some((s) => position >= s.start && position < s.end);
}

/** Whether the node is inside its window at `utcMs`, by the local wall clock. */
export function isWithinWindow(window: AvailabilityWindow, utcMs: number, utcOffset: UtcOffset): boolean {
  return inside(window, weekPosition(utcMs, utcOffset));
}

/**
 * The first instant after `utcMs` at which `isWithinWindow` changes, or undefined when it never does (a
 * window that covers the whole week).
 *
 * The edge is found on the local week at today's offset; when the offset at that edge differs (a
 * daylight-saving step in between), the instant moves by the difference, so "18:00" stays 18:00 on the
 * wall clock. An edge that falls in the hour a step skips or repeats may come an hour off; the caller
 * re-evaluates when it wakes, and its regular heartbeats carry a fresh answer anyway.
 */
export function nextWindowEdge(window: AvailabilityWindow, utcMs: number, utcOffset: UtcOffset): number | undefined {
  const edges = window.spans.flatMap((s) => [s.start, s.end]).filter((e) => e !== 0 && e !== WEEK);
  // A span that runs to the end of the week and one that starts it are one stretch: that point is no edge.
  const wraps = window.spans.some((s) => s.start === 0) && window.spans.some((s) => s.end === WEEK);
  if (!wraps) {
    if (window.spans.some((s) => s.start === 0 || s.end === WEEK)) edges.push(0);
  }
  if (edges.length === 0) return undefined;
  const position = weekPosition(utcMs, utcOffset);
  const ahead = Math.min(...edges.map((e) => (e > position ? e - position : e + WEEK - position)));
  const candidate = utcMs + ahead;
  const shift = (utcOffset(candidate) - utcOffset(utcMs)) * MINUTE;
  return candidate - shift > utcMs ? candidate - shift : candidate;
}

/** `utcMs` as the machine's wall clock shows it, weekday and time: "Tue 08:00". */
export function localWeekdayTime(utcMs: number, utcOffset: UtcOffset): string {
  const position = weekPosition(utcMs, utcOffset);
  const day = DAY_NAMES[Math.floor(position / DAY)] ?? "mon";
  const minutes = Math.floor((position % DAY) / MINUTE);
  const hhmm = `${String(Math.floor(minutes / 60)).padStart(2, "0")}:${String(minutes % 60).padStart(2, "0")}`;
  return `${day.charAt(0).toUpperCase()}${day.slice(1)} ${hhmm}`;
}
