/**
 * SQL for the two uploaded resources, datasets and training packages. They share
 * one life cycle (awaiting_upload → ready → deleted) and most columns, so one
 * set of functions serves both, parameterised by the table.
 */
import type { Sql } from "./database.ts";
import { activeJobStatusSql } from "./state-machines.ts";

/** Which uploaded resource. */
export type UploadTable = "datasets" | "training_packages";

/** Columns common to datasets and training_packages (packages add entrypoint, entry_count, manifest). */
export interface UploadRow {
  id: string;
  customer_id: string;
  name: string;
  size_bytes: number;
  sha256: string;
  status: "awaiting_upload" | "ready" | "deleted";
  blob_key: string;
  upload_expires_at: Date;
  uploaded_at: Date | null;
  created_at: Date;
  finalized_at: Date | null;
  deleted_at: Date | null;
  // datasets only
  format?: string;
  // training_packages only
  entrypoint?: string;
  entry_count?: number;
  manifest?: unknown;
}

/** Inserts a dataset or package awaiting its upload. */
export async function insertUpload(
  sql: Sql,
  table: UploadTable,
  row: { id: string; customerId: string; name: string; sizeBytes: number; sha256: string; blobKey: string; uploadExpiresAt: Date; extra: string },
  now: Date,
): Promise<UploadRow> {
  const extraColumn = table === "datasets" ? "format" : "entrypoint";
  const [created] = await sql.query<UploadRow>(
    `INSERT INTO ${table} (id, customer_id, name, size_bytes, sha256, status, blob_key, upload_expires_at, ${extraColumn}, created_at)
     VALUES ($1, $2, $3, $4, $5, 'awaiting_upload', $6, $7, $8, $9) RETURNING *`,
    [row.id, row.customerId, row.name, row.sizeBytes, row.sha256, row.blobKey, row.uploadExpiresAt, row.extra, now],
  );
  return created!;
}

/** One of this customer's rows (deleted ones included; callers decide); `forUpdate` locks it. */
export async function findUpload(sql: Sql, table: UploadTable, customerId: string, id: string, forUpdate = false): Promise<UploadRow | undefined> {
  const [row] = await sql.query<UploadRow>(`SELECT * FROM ${table} WHERE id = $1 AND customer_id = $2${forUpdate ? " FOR UPDATE" : ""}`, [id, customerId]);
  return row;
}

/** What a customer holds of one kind: rows and bytes. */
export interface StorageUsage {
  count: number;
  bytes: number;
}

/**
 * What counts against the customer's quota at creation: every row not deleted, an upload awaiting
 * its bytes reserving its declared size, except an upload whose URL expired unused (it can never
 * receive bytes).
 */
export async function uploadUsage(sql: Sql, table: UploadTable, customerId: string, now: Date): Promise<StorageUsage> {
  const [row] = await sql.query<StorageUsage>(
    `SELECT count(*)::int AS count, COALESCE(sum(size_bytes), 0)::bigint AS bytes FROM ${table}
     WHERE customer_id = $1 AND status <> 'deleted'
       AND NOT (status = 'awaiting_upload' AND uploaded_at IS NULL AND upload_expires_at <= $2)`,
    [customerId, now],
  );
  return row ?? { count: 0, bytes: 0 };
}

/** What counts against the quota at finalize: the customer's ready rows other than `exceptId`. */
export async function readyUsage(sql: Sql, table: UploadTable, customerId: string, exceptId: string): Promise<StorageUsage> {
  const [row] = await sql.query<StorageUsage>(
    `SELECT count(*)::int AS count, COALESCE(sum(size_bytes), 0)::bigint AS bytes FROM ${table}
     WHERE customer_id = $1 AND status = 'ready' AND id <> $2`,
    [customerId, exceptId],
  );
  return row ?? { count: 0, bytes: 0 };
}

/** Queued or running jobs of the customer that use this dataset or package (a few ids, for the message). */
export async function activeJobsUsing(sql: Sql, table: UploadTable, customerId: string, id: string): Promise<string[]> {
  const column = table === "datasets" ? "dataset_id" : "training_package_id";
  const rows = await sql.query<{ id: string }>(
    `SELECT id FROM training_jobs WHERE customer_id = $1 AND ${column} = $2 AND status IN ${activeJobStatusSql} ORDER BY created_at LIMIT 5`,
    [customerId, id],
  );
  return rows.map((r) => r.id);
}

/** Forgets a rejected upload (its bytes are discarded), so the same URL may be used again. */
export async function resetUpload(sql: Sql, table: UploadTable, id: string): Promise<void> {
  await sql.query(`UPDATE ${table} SET uploaded_at = NULL WHERE id = $1 AND status = 'awaiting_upload'`, [id]);
}

/** A row by its blob key (for the signed upload route). */
export async function findUploadByBlobKey(sql: Sql, table: UploadTable, blobKey: string): Promise<UploadRow | undefined> {
  const [row] = await sql.query<UploadRow>(`SELECT * FROM ${table} WHERE blob_key = $1`, [blobKey]);
  return row;
}

/**
 * Claims the single upload of a row: succeeds once, while it awaits its upload
 * and before its URL expires. Returns false when already used or expired.
 */
export async function claimUpload(sql: Sql, table: UploadTable, id: string, now: Date): Promise<boolean> {
  const rows = await sql.query(
    `UPDATE ${table} SET uploaded_at = $2
     WHERE id = $1 AND status = 'awaiting_upload' AND uploaded_at IS NULL AND upload_expires_at > $2 RETURNING id`,
    [id, now],
  );
  return rows.length === 1;
}

/** Gives an upload claim back after a failed transfer, so the customer can retry with the same URL. */
export async function releaseUpload(sql: Sql, table: UploadTable, id: string): Promise<void> {
  await sql.query(`UPDATE ${table} SET uploaded_at = NULL WHERE id = $1 AND status = 'awaiting_upload'`, [id]);
}

/** Marks a row ready (packages also record entry count and manifest). */
export async function markUploadReady(
  sql: Sql,
  table: UploadTable,
  id: string,
  now: Date,
  packageFacts?: { entryCount: number; manifest: unknown },
): Promise<UploadRow | undefined> {
  const [row] =
    table === "training_packages" && packageFacts !== undefined
      ? await sql.query<UploadRow>(
          `UPDATE training_packages SET status = 'ready', finalized_at = $2, entry_count = $3, manifest = $4::jsonb
           WHERE id = $1 AND status = 'awaiting_upload' RETURNING *`,
          [id, now, packageFacts.entryCount, JSON.stringify(packageFacts.manifest ?? null)],
        )
      : await sql.query<UploadRow>(
          `UPDATE ${table} SET status = 'ready', finalized_at = $2 WHERE id = $1 AND status = 'awaiting_upload' RETURNING *`,
          [id, now],
        );
  return row;
}

/** Soft-deletes a row of this customer (its blob is removed through blob_deletions, src/store/storage.ts). */
export async function markUploadDeleted(sql: Sql, table: UploadTable, customerId: string, id: string, now: Date): Promise<UploadRow | undefined> {
  const [row] = await sql.query<UploadRow>(
    `UPDATE ${table} SET status = 'deleted', deleted_at = COALESCE(deleted_at, $3) WHERE id = $1 AND customer_id = $2 RETURNING *`,
    [id, customerId, now],
  );
  return row;
}

/** A customer's rows (not deleted), newest first. */
export async function listUploads(
  sql: Sql,
  table: UploadTable,
  customerId: string,
  limit: number,
  after?: { at: Date; id: string },
): Promise<UploadRow[]> {
  return after === undefined
    ? sql.query<UploadRow>(
        `SELECT * FROM ${table} WHERE customer_id = $1 AND status <> 'deleted' ORDER BY created_at DESC, id DESC LIMIT $2`,
        [customerId, limit],
      )
    : sql.query<UploadRow>(
        `SELECT * FROM ${table} WHERE customer_id = $1 AND status <> 'deleted' AND (created_at, id) < ($3, $4)
         ORDER BY created_at DESC, id DESC LIMIT $2`,
        [customerId, limit, after.at, after.id],
      );
}
