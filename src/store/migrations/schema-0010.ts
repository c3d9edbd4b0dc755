/**
 * What a job and each of its units ask of a GPU node beyond VRAM and disk (issue 15), how long a job may
 * wait for one, and why it waits.
 *
 * - `required_gpu_count` (1 to 8 GPUs of one node for a gpu unit; a cpu unit asks for 0), `gpu_models`
 *   (an allow-list matched case-insensitively as a substring of the model a node reports; empty: any),
 *   `min_compute_capability` and `min_cuda_version` ("major.minor"; empty: any), on the job as the
 *   customer asked and on each unit as its stage narrowed them (src/planner/plan.ts). The placer and the
 *   admission check (src/placer/node-capability.ts) read the unit's.
 * - `queue_timeout_seconds`: a job still `queued` (no unit started) past `created_at` plus this ends
 *   `expired` in the leader's sweep; the partial index keeps that sweep to the queued jobs.
 * - `pending_reason`: why a queued job waits, in words, set by the placement cycle and cleared when its
 *   first unit starts.
 *
 * Rows from before keep what they ran with: one GPU for a gpu unit, none for a cpu unit, any model,
 * the default day of queue time. A unit's count is not tied to its kind by a constraint: the column's
 * default (1) serves inserts that name no count, and readers take a cpu unit's GPU count as 0 whatever
 * the column says (`insertUnit` writes 0).
 */
export const schema0010 = [
  `ALTER TABLE training_jobs ADD COLUMN required_gpu_count integer NOT NULL DEFAULT 1 CHECK (required_gpu_count BETWEEN 1 AND 8)`,
  `ALTER TABLE training_jobs ADD COLUMN gpu_models text[] NOT NULL DEFAULT '{}'`,
  `ALTER TABLE training_jobs ADD COLUMN min_compute_capability text NOT NULL DEFAULT ''`,
  `ALTER TABLE training_jobs ADD COLUMN min_cuda_version text NOT NULL DEFAULT ''`,
  `ALTER TABLE training_jobs ADD COLUMN queue_timeout_seconds integer NOT NULL DEFAULT 86400 CHECK (queue_timeout_seconds > 0)`,
  `ALTER TABLE training_jobs ADD COLUMN pending_reason text NOT NULL DEFAULT ''`,
  `CREATE INDEX training_jobs_queued ON training_jobs (created_at) WHERE status = 'queued'`,
  `ALTER TABLE compute_units ADD COLUMN required_gpu_count integer NOT NULL DEFAULT 1 CHECK (required_gpu_count BETWEEN 0 AND 8)`,
  `UPDATE compute_units SET required_gpu_count = 0 WHERE kind = 'cpu'`,
  `ALTER TABLE compute_units ADD COLUMN gpu_models text[] NOT NULL DEFAULT '{}'`,
  `ALTER TABLE compute_units ADD COLUMN min_compute_capability text NOT NULL DEFAULT ''`,
  `ALTER TABLE compute_units ADD COLUMN min_cuda_version text NOT NULL DEFAULT ''`,
];
