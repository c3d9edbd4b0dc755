/**
 * How a job's GPU constraints read, in one place for the planner (a stage may only narrow its job's) and
 * the placer (admission, the constraint rules), so both read them the same way.
 *
 * "major.minor" versions (a GPU's compute capability, the CUDA version its driver supports), as jobs ask
 * for them and agents report them. Compared as numbers, part by part: "12.10" is newer than "12.9", and
 * "8.0" ≥ "7.5".
 */

const majorMinorPattern = /^(\d{1,4})\.(\d{1,4})$/;

/** The two parts of a "major.minor" string, or undefined when it is not one ("8", "8.x", "v12.1"). */
export function parseMajorMinor(value: string): readonly [number, number] | undefined {
  const match = majorMinorPattern.exec(value);
  if (match === null) return undefined;
  return [Number(match[1]), Number(match[2])];
}

/** Whether `value` is a "major.minor" version. */
export function isMajorMinor(value: string): boolean {
  return parseMajorMinor(value) !== undefined;
}

/** Negative, 0 or positive as `a` is older than, the same as or newer than `b`; an unreadable version is older than any. */
export function compareMajorMinor(a: string, b: string): number {
  const pa = parseMajorMinor(a);
  const pb = parseMajorMinor(b);
  if (pa === undefined || pb === undefined) return (pa === undefined ? 0 : 1) - (pb === undefined ? 0 : 1);
  return pa[0] - pb[0] || pa[1] - pb[1];
}

/**
 * Whether a reported version meets a minimum: always when there is no minimum (""), never when the
 * version is unknown (absent or unreadable) and there is one.
 */
export function meetsMinimum(reported: string | undefined, minimum: string): boolean {
  if (minimum === "") return true;
  if (reported === undefined || !isMajorMinor(reported)) return false;
  return compareMajorMinor(reported, minimum) >= 0;
}

/**
 * Whether a GPU model, as the driver names it ("NVIDIA GeForce RTX 4090"), is on an allow-list: some entry
 * is a case-insensitive substring of it ("rtx 4090", "4090"). An empty list allows every model.
 */
export function gpuModelAllowed(model: string, allowed: readonly string[]): boolean {
  if (allowed.length === 0) return true;
  const name = model.toLowerCase();
  return allowed.some((entry) => name.includes(entry.toLowerCase()));
}

/**
 * Whether every model a narrower allow-list entry admits is also admitted by the wider list: the entry
 * contains one of the wider list's entries (any name containing "RTX 4090" contains "RTX"). An empty wider
 * list admits everything.
 */
export function gpuModelNarrows(entry: string, wider: readonly string[]): boolean {
  return gpuModelAllowed(entry, wider);
}
