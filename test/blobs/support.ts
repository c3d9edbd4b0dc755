/** Rows the storage tests build on: a customer's uploads, a job and its unit on a node, artifacts with their blobs. */
import { randomUUID } from "node:crypto";
import { Readable } from "node:stream";
import { hashSecret, newSecret } from "../../src/platform/ids.ts";
import type { BlobStore } from "../../src/blobs/blob-store.ts";
import type { StorageQuotas } from "../../src/platform/config.ts";
import type { Sql } from "../../src/store/database.ts";
import { insertNode } from "../../src/store/nodes.ts";
import type { TestControlPlane } from "../support/control-plane.ts";
import { createCustomer, startTestControlPlane } from "../support/control-plane.ts";
import { createMigratedTestDatabaseUrl } from "../support/postgres.ts";

/** The databases the upload-route tests run a control plane on, with these storage quotas: the embedded one (PGlite), and PostgreSQL. */
export const uploadRouteBackends: readonly { name: string; start: (storage: StorageQuotas) => Promise<TestControlPlane> }[] = [
  { name: "the embedded database (PGlite)", start: (storage) => startTestControlPlane({ limits: { storage } }) },
  { name: "PostgreSQL", start: async (storage) => startTestControlPlane({ databaseUrl: await createMigratedTestDatabaseUrl(), limits: { storage } }) },
];

/** A ready dataset and package of `customerId` (rows only; their bytes are not needed here). */
export async function seedReadyUploads(sql: Sql, customerId: string): Promise<{ datasetId: string; packageId: string }> {
  const datasetId = randomUUID();
  const packageId = randomUUID();
  await sql.query(
    `INSERT INTO datasets (id, customer_id, name, size_bytes, sha256, status, blob_key, upload_expires_at)
     VALUES ($1, $2, 'd', 1, 'h', 'ready', $3, now())`,
    [datasetId, customerId, `datasets/${customerId}/${datasetId}`],
  );
  await sql.query(
    `INSERT INTO training_packages (id, customer_id, name, size_bytes, sha256, entrypoint, status, blob_key, upload_expires_at)
     VALUES ($1, $2, 'p', 1, 'h', 'train.py', 'ready', $3, now())`,
    [packageId, customerId, `packages/${customerId}/${packageId}`],
  );
  return { datasetId, packageId };
}

/** A node that holds a credential (as enrollment leaves it: not connected, so no sweep takes its units back). */
export async function seedNode(sql: Sql, now: Date): Promise<{ nodeId: string; credential: string }> {
  const nodeId = randomUUID();
  const credential = newSecret("nc");
  await insertNode(
    sql,
    {
      id: nodeId,
      hostname: "storage-test",
      trustLevel: "community",
      credentialHash: hashSecret(credential),
      capabilities: { cpuCores: 4, memoryMb: 8192, diskFreeMb: 100_000, gpus: [], hostname: "storage-test", os: "linux", arch: "x64", pythonVersion: "3", agentVersion: "test" },
    },
    now,
  );
  return { nodeId, credential };
}

/** A job of one unit: running on `nodeId` (attempt 1), or ended at `finishedAt` with the given status. */
export async function seedJob(
  sql: Sql,
  customerId: string,
  options: { nodeId?: string; finishedAt?: Date; status?: "running" | "completed" | "failed" | "cancelled" | "expired"; maxRuntimeSeconds?: number },
): Promise<{ jobId: string; unitId: string }> {
  const { datasetId, packageId } = await seedReadyUploads(sql, customerId);
  const jobId = randomUUID();
  const unitId = randomUUID();
  const status = options.status ?? (options.finishedAt === undefined ? "running" : "completed");
  await sql.query(
    `INSERT INTO training_jobs (id, customer_id, name, dataset_id, training_package_id, status,
       required_vram_mb, required_disk_mb, max_runtime_seconds, sensitivity, started_at, finished_at)
     VALUES ($1, $2, 'storage test', $3, $4, $5, 0, 1024, $7, 'public', now(), $6)`,
    [jobId, customerId, datasetId, packageId, status, options.finishedAt ?? null, options.maxRuntimeSeconds ?? 86400],
  );
  const unitStatus = status === "running" ? "running" : status === "completed" ? "completed" : status === "failed" ? "failed" : "cancelled";
  await sql.query(
    `INSERT INTO compute_units (id, job_id, customer_id, name, kind, status, entrypoint, attempt, node_id, assignment_id, assigned_at, started_at)
     VALUES ($1, $2, $3, 'train', 'cpu', $4, 'train.py', 1, $5, $6, now(), now())`,
    [unitId, jobId, customerId, unitStatus, options.nodeId ?? null, randomUUID()],
  );
  return { jobId, unitId };
}

/** An artifact of attempt 1 of `unitId`, recorded and stored (its blob written through the blob store). */
export async function seedArtifact(
  sql: Sql,
  blobs: BlobStore,
  unit: { customerId: string; jobId: string; unitId: string },
  name: string,
  bytes: Buffer,
): Promise<{ artifactId: string; blobKey: string }> {
  const artifactId = randomUUID();
  const blobKey = `artifacts/${unit.unitId}/1/${name}`;
  const stored = await blobs.put(blobKey, Readable.from([bytes]), { maxBytes: bytes.length });
  await sql.query(
    `INSERT INTO artifacts (id, job_id, compute_unit_id, customer_id, attempt, kind, name, size_bytes, sha256, blob_key)
     VALUES ($1, $2, $3, $4, 1, 'checkpoint', $5, $6, $7, $8)`,
    [artifactId, unit.jobId, unit.unitId, unit.customerId, name, stored.size, stored.sha256, blobKey],
  );
  return { artifactId, blobKey };
}

/** Who sends a node's upload: the running node's credential and attempt 1 unless told otherwise. */
export interface UploadSender {
  credential: string;
  attempt: number;
}

/**
 * A customer of `cp` with a unit running (attempt 1) on a node whose credential the test holds, and the
 * node's upload of one of the attempt's files (`artifacts` or `checkpoints`) through the real route.
 */
export async function unitRunningOnNode(cp: TestControlPlane) {
  const { customerId } = await createCustomer(cp);
  const node = await seedNode(cp.plane.deps.db, new Date());
  const unit = await seedJob(cp.plane.deps.db, customerId, { nodeId: node.nodeId });
  const put = (what: "artifacts" | "checkpoints", name: string, body: Buffer, as: UploadSender = { credential: node.credential, attempt: 1 }) =>
    fetch(`${cp.url}/agent/v1/units/${unit.unitId}/attempts/${as.attempt}/${what}/${name}`, {
      method: "PUT",
      body,
      headers: { authorization: `Bearer ${as.credential}`, "content-type": "application/octet-stream" },
    });
  return { customerId, ...node, ...unit, put };
}

/** Artifacts of a finished job of the customer, one per name with the name as its bytes: what fills the artifact quota. */
export async function seedFinishedJobArtifacts(sql: Sql, blobs: BlobStore, customerId: string, names: readonly string[]): Promise<void> {
  const done = await seedJob(sql, customerId, { finishedAt: new Date() });
  for (const name of names) await seedArtifact(sql, blobs, { customerId, ...done }, name, Buffer.from(name));
}
