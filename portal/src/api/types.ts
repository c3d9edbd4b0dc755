/**
 * The JSON shapes of the REST API the portal reads (seed 001 field names,
 * proto field names in snake_case). int64 fields arrive as strings (proto3
 * JSON), int32 and double as numbers; timestamps are RFC 3339 strings, "" or
 * absent when unset.
 */

/** Forward-only cursor page of every list. */
export interface Page {
  limit: number;
  next_cursor: string;
  has_more: boolean;
}

/** A list response. */
export interface List<T> {
  data: T[];
  page: Page;
}

export interface Customer {
  id: string;
  email: string;
  credits_balance: string;
  created_at?: string;
}

/** GET /portal/session and POST /portal/session. */
export interface PortalSession {
  customer: Customer;
  csrf_token: string;
  scopes?: string[];
  expires_at?: string;
}

export interface ApiKey {
  id: string;
  name: string;
  prefix: string;
  scopes: string[];
  created_at?: string;
  last_used_at?: string;
  revoked_at?: string;
}

export interface CreatedApiKey {
  key: string;
  api_key: ApiKey;
}

/** A dataset or a training package (packages add entrypoint, entry_count, stages). */
export interface Upload {
  id: string;
  name: string;
  size_bytes: string;
  sha256: string;
  status: "awaiting_upload" | "ready" | "deleted";
  upload_url: string;
  upload_expires_at?: string;
  created_at?: string;
  finalized_at?: string;
  format?: string;
  entrypoint?: string;
  entry_count?: number;
  stages?: string[];
}

export const jobStatuses = ["queued", "running", "completed", "failed", "cancelled", "expired"] as const;
export type JobStatus = (typeof jobStatuses)[number];

export const sensitivities = ["public", "low_sensitive", "high_sensitive"] as const;
export type Sensitivity = (typeof sensitivities)[number];

export interface TrainingJob {
  id: string;
  name: string;
  dataset_id: string;
  training_package_id: string;
  status: JobStatus;
  progress: number;
  required_vram_mb: number;
  required_disk_mb: number;
  max_runtime_seconds: number;
  sensitivity: Sensitivity;
  created_at?: string;
  started_at?: string;
  finished_at?: string;
  error: string;
  metrics: Record<string, number>;
  projected_cost_credits: string;
  credits_debited: string;
  compute_unit_count: number;
  compute_units_completed: number;
  /** GPUs of one node each GPU unit asks for (0 from a server that predates GPU counts). */
  required_gpu_count: number;
  /** Allowed GPU models (substrings of the reported name); empty: any. */
  gpu_models: string[];
  /** "major.minor", or "" for any. */
  min_compute_capability: string;
  /** "major.minor", or "" for any. */
  min_cuda_version: string;
  queue_timeout_seconds: number;
  /** Why the job waits, in words; "" when it does not. */
  pending_reason: string;
}

export type UnitStatus = "pending" | "ready" | "assigned" | "running" | "completed" | "failed" | "cancelled";

export interface ComputeUnit {
  id: string;
  job_id: string;
  name: string;
  kind: "cpu" | "gpu";
  depends_on: string[];
  status: UnitStatus;
  attempt: number;
  progress: number;
  metrics: Record<string, number>;
  node_id: string;
  required_vram_mb: number;
  required_disk_mb: number;
  unschedulable_reason: string;
  created_at?: string;
  started_at?: string;
  finished_at?: string;
  exit_code: number;
  error: string;
  credits_debited: string;
  /** The latest finished attempt's Python environment build (or wait for one), apart from the run; never billed. */
  env_build_seconds: number;
  env_built: boolean;
  /** GPUs of one node it needs; 0 for a cpu unit. */
  required_gpu_count: number;
  gpu_models: string[];
  min_compute_capability: string;
  min_cuda_version: string;
  /** Its node's GPUs of the current or last attempt; empty before it is placed. */
  gpu_indexes: number[];
  /** Every attempt, oldest first. */
  attempts: UnitAttempt[];
  /** The latest checkpoint it wrote; absent when none. */
  latest_checkpoint?: UnitCheckpoint;
}

/** One attempt of a compute unit. */
export interface UnitAttempt {
  attempt: number;
  node_id: string;
  status: "assigned" | "running" | "completed" | "failed" | "cancelled" | "lost";
  assigned_at?: string;
  started_at?: string;
  finished_at?: string;
  error: string;
  /** The attempt whose checkpoint it started from; 0 for a fresh start. */
  resumed_from_attempt: number;
  resumed_from_checkpoint: string;
  resumed_from_metrics: Record<string, number>;
  run_seconds: number;
}

/** A checkpoint a unit announced and its node uploaded. */
export interface UnitCheckpoint {
  attempt: number;
  name: string;
  size_bytes: string;
  sha256: string;
  metrics: Record<string, number>;
  created_at?: string;
}

/** One line of a unit's log (GET …/compute-units/{unit_id}/logs). */
export interface LogLine {
  /** Position in the attempt's log, 1-based (int64). */
  seq: string;
  at?: string;
  stream: "stdout" | "stderr";
  text: string;
}

/** The tail of a unit's log, or the lines after a cursor. */
export interface UnitLogs {
  unit_id: string;
  attempt: number;
  unit_status: UnitStatus;
  lines: LogLine[];
  /** Pass back as `after`. */
  next_after: string;
  dropped_lines: string;
  trimmed_lines: string;
}

/** One progress report of a unit. */
export interface MetricPoint {
  at?: string;
  progress: number;
  metrics: Record<string, number>;
}

/** GET …/training-jobs/{id}/metrics: each unit's history of progress reports. */
export interface JobMetrics {
  units: Array<{ unit_id: string; name: string; kind: "cpu" | "gpu"; attempt: number; points: MetricPoint[]; reports: string }>;
}

export interface Artifact {
  id: string;
  job_id: string;
  compute_unit_id: string;
  kind: "checkpoint" | "metrics" | "logs" | "other";
  name: string;
  size_bytes: string;
  sha256: string;
  created_at?: string;
}

export interface DownloadUrl {
  download_url: string;
  expires_at?: string;
  expires_in_seconds: number;
}

export interface UsageSummary {
  credits_balance: string;
  credits_debited_total: string;
  credits_granted_total: string;
  compute_units_completed: number;
  gpu_seconds: string;
  cpu_seconds: string;
  jobs_total: number;
  jobs_active: number;
}

export interface DailyUsage {
  date: string;
  compute_units_completed: number;
  gpu_seconds: string;
  cpu_seconds: string;
  credits_debited: string;
}

export interface LedgerEntry {
  id: string;
  amount: string;
  kind: "grant" | "debit";
  description: string;
  job_id: string;
  compute_unit_id: string;
  created_at?: string;
}

export interface Webhook {
  id: string;
  url: string;
  events: string[];
  description: string;
  created_at?: string;
  previous_secret_expires_at?: string;
}

export interface CreatedWebhook {
  webhook: Webhook;
  secret: string;
}

export interface RotatedWebhook {
  webhook: Webhook;
  secret: string;
  previous_secret_expires_at?: string;
}

export interface WebhookDelivery {
  id: string;
  webhook_id: string;
  event_id: string;
  event_type: string;
  status: "pending" | "delivered" | "failed";
  attempts: number;
  last_status_code: number;
  last_error: string;
  created_at?: string;
  next_attempt_at?: string;
  delivered_at?: string;
}

/** Events a webhook can subscribe to (src/webhooks/outbox.ts). */
export const webhookEvents = ["job.completed", "job.failed", "job.cancelled", "job.expired", "artifact.ready"] as const;

/** API key scopes (src/auth/scopes.ts), with what each allows, in words. */
export const scopeDescriptions: ReadonlyArray<{ scope: string; description: string }> = [
  { scope: "dataset:write", description: "upload datasets and training packages" },
  { scope: "training:write", description: "create and cancel training jobs" },
  { scope: "artifact:read", description: "list and download artifacts" },
  { scope: "usage:read", description: "read usage, credits and exports" },
  { scope: "webhook:write", description: "manage webhooks" },
];
