/**
 * Where a node's artifacts live in the blob store and which names they may have: one rule for the
 * upload route that stores the bytes (src/blobs/unit-artifacts.ts) and the agent stream that records the artifact
 * once the node announces it (src/agent-streams/agent-service.ts).
 */

/** Artifact names a node may upload and announce. */
export const artifactNamePattern = /^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$/;

/** Blob key of an artifact upload. */
export function artifactBlobKey(unitId: string, attempt: number, name: string): string {
  return `artifacts/${unitId}/${attempt}/${name}`;
}
