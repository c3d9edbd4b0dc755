/**
 * Downsampling of a unit's progress history, so a run of any length keeps a
 * bounded number of points that still show its whole shape.
 *
 * Reports get ordinals 0, 1, 2, … in the order they are stored. With stride
 * `s` (a power of two, starting at 1) the history keeps every ordinal that is
 * a multiple of `s`, plus the latest ordinal. When that would exceed the
 * capacity, the stride doubles, which drops every other kept point: the
 * history is thinned evenly over its whole length, never cut at the start,
 * and it holds between half the capacity and the capacity once it is full.
 * Ordinal 0 (the first report) is a multiple of every stride, so it always
 * stays, and so does the latest report.
 *
 * Pure functions; the database applies the same rule with
 * `ordinal % stride <> 0 AND ordinal <> latest` (src/store/telemetry.ts).
 */

/** Where a history stands: how many reports it stored, and its stride. */
export interface ThinningState {
  /** Reports stored so far; the next report's ordinal. */
  readonly reports: number;
  /** Every kept ordinal but the latest is a multiple of this (1, 2, 4, …). */
  readonly stride: number;
}

/** The state of a history with no reports. */
export const emptyHistory: ThinningState = { reports: 0, stride: 1 };

/** Whether ordinal `k` is kept in a history of `reports` reports thinned with `stride`. */
export function isKept(k: number, reports: number, stride: number): boolean {
  return k % stride === 0 || k === reports - 1;
}

/** How many points a history of `reports` reports keeps with `stride`. */
export function keptCount(reports: number, stride: number): number {
  if (reports <= 0) return 0;
  const multiples = Math.floor((reports - 1) / stride) + 1;
  return multiples + ((reports - 1) % stride === 0 ? 0 : 1);
}

/**
 * Adds `added` reports to a history of at most `capacity` points (≥ 2): the
 * new state, with the stride doubled as often as needed to fit.
 */
export function addReports(state: ThinningState, added: number, capacity: number): ThinningState {
  if (!Number.isInteger(capacity) || capacity < 2) throw new RangeError(`capacity must be an integer of at least 2, got ${capacity}`);
  const reports = state.reports + Math.max(0, added);
  let stride = Math.max(1, state.stride);
  while (keptCount(reports, stride) > capacity) stride *= 2;
  return { reports, stride };
}
