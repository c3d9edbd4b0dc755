/**
 * Storage bounds per customer (docs/limits.md, "Storage per customer").
 *
 * - Partial indexes over the rows that count against a customer's dataset and
 *   package quotas, so the usage read inside the creating transaction does not
 *   walk every deleted row the customer ever had.
 * - `artifacts.expired_at`: set when the retention sweep removed the artifact's
 *   bytes; the row stays (listings show it expired, downloads answer
 *   ARTIFACT_EXPIRED) and no longer counts against the quota.
 * - `training_jobs.artifacts_expired_at`: the job whose artifacts were swept,
 *   so the sweep takes each finished job once (claimed FOR UPDATE SKIP LOCKED).
 * - `unit_artifact_bytes`: bytes an attempt's uploads have reserved, against
 *   the per-unit artifact bound; one atomic UPDATE per upload makes the bound
 *   exact whatever a node sends in parallel.
 * - `blob_deletions`: blobs (or, for a key ending in "/", everything under a
 *   prefix) that no row needs any more. Written in the transaction that made
 *   them unneeded, removed once the bytes are gone: a crash between the commit
 *   and the removal leaves the row, and the periodic sweep finishes the job.
 */
export const schema0006 = [
  `CREATE INDEX datasets_live_customer ON datasets (customer_id) INCLUDE (size_bytes) WHERE status <> 'deleted'`,
  `CREATE INDEX training_packages_live_customer ON training_packages (customer_id) INCLUDE (size_bytes) WHERE status <> 'deleted'`,
  `ALTER TABLE artifacts ADD COLUMN expired_at timestamptz`,
  `CREATE INDEX artifacts_live_customer ON artifacts (customer_id) INCLUDE (size_bytes) WHERE expired_at IS NULL`,
  `ALTER TABLE training_jobs ADD COLUMN artifacts_expired_at timestamptz`,
  `CREATE INDEX training_jobs_artifact_retention ON training_jobs (finished_at) WHERE finished_at IS NOT NULL AND artifacts_expired_at IS NULL`,
  `CREATE TABLE unit_artifact_bytes (
     compute_unit_id uuid NOT NULL REFERENCES compute_units(id),
     attempt integer NOT NULL,
     bytes bigint NOT NULL CHECK (bytes >= 0),
     PRIMARY KEY (compute_unit_id, attempt)
   )`,
  `CREATE TABLE blob_deletions (
     blob_key text PRIMARY KEY,
     requested_at timestamptz NOT NULL
   )`,
  `CREATE INDEX blob_deletions_requested ON blob_deletions (requested_at)`,
];
