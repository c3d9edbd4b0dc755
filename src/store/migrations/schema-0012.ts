/**
 * Checkpoints and the attempts of a compute unit (issue 15 point 5: resume from checkpoints).
 *
 * - `unit_checkpoint_uploads`: every checkpoint file a node stored for an attempt, under a blob key of its
 *   own (`artifacts/<unit>/checkpoints/<attempt>/<id>-<name>`, so the retention sweep's prefix removes them
 *   with the unit's artifacts). A unit that writes `latest.ckpt` every epoch therefore never overwrites the
 *   bytes a later attempt may resume from: the file of a recorded checkpoint is immutable. Rows of jobs whose
 *   artifacts are kept count against the customer's artifact quota.
 * - `unit_checkpoints`: the unit's latest checkpoint, one row per unit, pointing at one upload. When a newer
 *   one is recorded the older uploads of the unit are deleted (rows here, bytes through `blob_deletions`).
 * - `unit_attempts`: one row per attempt, written when it starts (its node accepted it), when it ends
 *   (completed, failed, cancelled, or `lost`: its node went silent, restarted, was taken back by its owner or
 *   reported a node error), and, for an attempt that resumes, before it is placed: which checkpoint it
 *   resumes from (copied, so the attempt's record stays true after the checkpoint is replaced). The unit's
 *   current attempt while it is on a node is read from `compute_units` (its node, status, `assigned_at`).
 *   `node_attempts` (schema-0002) is the placer's record of nodes, completed and lost only; this is the
 *   customer's record of the unit, failures of its code included.
 */
export const schema0012 = [
  `CREATE TABLE unit_checkpoint_uploads (
     blob_key text PRIMARY KEY,
     unit_id uuid NOT NULL REFERENCES compute_units(id),
     job_id uuid NOT NULL REFERENCES training_jobs(id),
     customer_id uuid NOT NULL REFERENCES customers(id),
     attempt integer NOT NULL CHECK (attempt >= 1),
     name text NOT NULL,
     size_bytes bigint NOT NULL CHECK (size_bytes >= 0),
     sha256 text NOT NULL,
     stored_at timestamptz NOT NULL
   )`,
  `CREATE INDEX unit_checkpoint_uploads_unit ON unit_checkpoint_uploads (unit_id, attempt, name, sha256)`,
  `CREATE INDEX unit_checkpoint_uploads_customer ON unit_checkpoint_uploads (customer_id) INCLUDE (size_bytes, job_id)`,
  `CREATE TABLE unit_checkpoints (
     unit_id uuid PRIMARY KEY REFERENCES compute_units(id),
     attempt integer NOT NULL CHECK (attempt >= 1),
     name text NOT NULL,
     size_bytes bigint NOT NULL CHECK (size_bytes >= 0),
     sha256 text NOT NULL,
     metrics jsonb NOT NULL DEFAULT '{}',
     blob_key text NOT NULL,
     created_at timestamptz NOT NULL
   )`,
  `CREATE TABLE unit_attempts (
     unit_id uuid NOT NULL REFERENCES compute_units(id),
     attempt integer NOT NULL CHECK (attempt >= 1),
     node_id uuid REFERENCES nodes(id),
     status text CHECK (status IN ('completed', 'failed', 'cancelled', 'lost')),
     assigned_at timestamptz,
     started_at timestamptz,
     finished_at timestamptz,
     error text NOT NULL DEFAULT '',
     run_seconds double precision NOT NULL DEFAULT 0,
     resumed_from_attempt integer,
     resumed_from_checkpoint text,
     resumed_from_metrics jsonb,
     resume_blob_key text,
     resume_sha256 text,
     resume_size_bytes bigint,
     PRIMARY KEY (unit_id, attempt)
   )`,
];
