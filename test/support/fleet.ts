/**
 * The fleet a test's jobs are admitted against. Job creation refuses a job one of whose stages no
 * enrolled node could ever run (NO_CAPABLE_NODE, src/jobs/admission.ts), so a test that creates jobs
 * without starting an agent first enrolls a reference node: written through the store's own insert,
 * capable of anything a test asks for, and never connected (it is `unreachable`, so nothing is ever
 * placed on it and no job's stage counts it as online).
 */
import { randomUUID } from "node:crypto";
import type { Sql } from "../../src/store/database.ts";
import type { StoredCapabilities } from "../../src/store/nodes.ts";
import { insertNode } from "../../src/store/nodes.ts";

/** Eight 80 GB GPUs of compute capability 9.0 with CUDA 12.8, and room for any unit the tests plan. */
export const referenceCapabilities = {
  cpuCores: 256,
  memoryMb: 2 * 1024 * 1024,
  diskFreeMb: 20 * 1024 * 1024,
  gpus: Array.from({ length: 8 }, (_, index) => ({ index, name: "Reference GPU 80GB", vramMb: 1_048_576, computeCapability: "9.0", cudaVersion: "12.8" })),
  hostname: "test-reference-node",
} as StoredCapabilities;

/** Enrolls the reference node (controlled trust, sandboxed) and returns its id. */
export async function enrollReferenceNode(sql: Sql): Promise<string> {
  const id = randomUUID();
  await insertNode(sql, { id, hostname: "test-reference-node", trustLevel: "controlled", credentialHash: `reference-${id}`, capabilities: referenceCapabilities }, new Date(0));
  await sql.query(`UPDATE nodes SET isolation = 'bubblewrap' WHERE id = $1`, [id]);
  return id;
}
