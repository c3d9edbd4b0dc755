/**
 * The one rule for names inside a training package, applied on both sides of the wire: by the control
 * plane when a package is uploaded (src/blobs/package-inspect.ts) and by the node agent when it
 * unpacks one onto its own disk (src/node-agent/unzip.ts).
 */

/** Why an entry name is refused, or undefined when it is acceptable. */
export function zipEntryNameProblem(name: string): string | undefined {
  if (name === "") return "empty name";
  if (name.includes("\0")) return "NUL in name";
  if (name.startsWith("/") || /^[A-Za-z]:/.test(name)) return "absolute path";
  const segments = name.replace(/\/$/, "").split("/");
  if (segments.some((s) => s === "..")) return "parent directory segment";
  if (segments.some((s) => s === "")) return "empty path segment";
  return undefined;
}
