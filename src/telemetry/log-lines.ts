/**
 * Log lines as the control plane keeps them: normalised so PostgreSQL (jsonb)
 * can hold any of them, measured in UTF-8 bytes, and cut to a tail bounded by
 * both a line count and a byte count. Pure functions.
 */

/** Longest line kept, in UTF-16 code units; the rest of a longer line is cut off. */
export const maxLineChars = 4096;

/** The two streams a unit writes. */
export type LogStream = "stdout" | "stderr";

/** One stored line. */
export interface TailLine {
  /** Position in the attempt's log, 1-based, over both streams. */
  readonly seq: number;
  /** When the node read it (ms since the epoch). */
  readonly atMs: number;
  readonly stream: LogStream;
  readonly text: string;
}

/** Bounds of a tail: at most `lines` lines and `bytes` UTF-8 bytes of text. */
export interface TailBounds {
  readonly lines: number;
  readonly bytes: number;
}

/**
 * A line as stored: NUL (which jsonb and text columns refuse) becomes U+FFFD,
 * and a line longer than {@link maxLineChars} is cut, never inside a surrogate
 * pair (a lone surrogate is refused by jsonb too; decoded protobuf strings
 * have none, since invalid UTF-8 decodes to U+FFFD).
 */
export function normalizeLine(line: string): string {
  let text = line.includes("\u0000") ? line.replaceAll("\u0000", "\uFFFD") : line;
  if (text.length > maxLineChars) {
    let end = maxLineChars;
    const last = text.charCodeAt(end - 1);
    if (last >= 0xd800 && last <= 0xdbff) end -= 1;
    text = `${text.slice(0, end)}…`;
  }
  return text;
}

/** The UTF-8 size of a line's text, the unit of the byte bound. */
export function lineBytes(text: string): number {
  return Buffer.byteLength(text, "utf8");
}

/**
 * How many of the newest items form the tail: walking back from the newest,
 * items are taken while both bounds hold (the newest one always, even alone
 * over the byte bound, so a tail is never empty while lines exist).
 */
export function tailLength(sizes: readonly number[], bounds: TailBounds): number {
  let bytes = 0;
  let n = 0;
  for (let i = sizes.length - 1; i >= 0; i--) {
    const size = sizes[i] ?? 0;
    if (n >= bounds.lines || (n > 0 && bytes + size > bounds.bytes)) break;
    bytes += size;
    n++;
  }
  return n;
}

/** The newest lines within the bounds, oldest first. */
export function cutTail<T extends { readonly text: string }>(lines: readonly T[], bounds: TailBounds): T[] {
  const n = tailLength(
    lines.map((l) => lineBytes(l.text)),
    bounds,
  );
  return lines.slice(lines.length - n);
}
