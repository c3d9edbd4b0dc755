/**
 * Wire shapes of the REST API as gpuctl sees them (proto JSON with the proto
 * field names). Proto3 JSON may omit fields at their default value (0, "",
 * empty map), so every field the CLI does not strictly need is optional, and
 * int64 fields arrive as strings.
 */

/** An int64 proto field in JSON: a decimal string (numbers accepted for leniency). */
export type Int64 = string | number;

/** `page` of every list response. */
export interface Page {
  limit?: number;
  next_cursor?: string;
  has_more?: boolean;
}

/** `{ data, page }` envelope of every list endpoint. */
export interface ListResponse<T> {
  data?: T[];
  page?: Page;
}

/** A customer dataset (`Dataset` in customer.proto). */
export interface Dataset {
  id: string;
  name?: string;
  size_bytes?: Int64;
  sha256?: string;
  format?: string;
  /** "awaiting_upload" | "ready" | "deleted" */
  status?: string;
  upload_url?: string;
  upload_expires_at?: string;
  created_at?: string;
  finalized_at?: string;
}

/** A training package (`TrainingPackage` in customer.proto). */
export interface TrainingPackage {
  id: string;
  name?: string;
  size_bytes?: Int64;
  sha256?: string;
  entrypoint?: string;
  status?: string;
  upload_url?: string;
  upload_expires_at?: string;
  created_at?: string;
  finalized_at?: string;
  entry_count?: number;
  stages?: string[];
}

/** Body of the create calls for datasets and packages. */
export interface CreateUploadBody {
  name: string;
  /** Sent as a JSON number: proto JSON accepts it for int64, and files stay far below 2^53. */
  size_bytes: number;
  sha256: string;
  format?: string;
  entrypoint?: string;
}

/** Terminal and non-terminal job statuses, as the API spells them. */
export const JOB_STATUSES = ["queued", "running", "completed", "failed", "cancelled", "expired"] as const;

/** One of {@link JOB_STATUSES}. */
export type JobStatus = (typeof JOB_STATUSES)[number];

/** Sensitivity tiers a job may ask for. */
export const SENSITIVITIES = ["public", "low_sensitive", "high_sensitive"] as const;

/** Node trust levels an enrollment token may grant. */
export const TRUST_LEVELS = ["community", "verified", "controlled"] as const;

/** A training job (`TrainingJob` in customer.proto). */
export interface TrainingJob {
  id: string;
  name?: string;
  dataset_id?: string;
  training_package_id?: string;
  status?: string;
  progress?: number;
  required_vram_mb?: number;
  required_disk_mb?: number;
  max_runtime_seconds?: number;
  sensitivity?: string;
  created_at?: string;
  started_at?: string;
  finished_at?: string;
  error?: string;
  metrics?: Record<string, number>;
  projected_cost_credits?: Int64;
  credits_debited?: Int64;
  compute_unit_count?: number;
  compute_units_completed?: number;
}

/** The seed body of `POST /api/v1/customer/training-jobs`. */
export interface CreateJobBody {
  name: string;
  dataset_id: string;
  training_package_id: string;
  required_vram_mb: number;
  required_disk_mb: number;
  max_runtime_seconds: number;
  sensitivity: string;
}

/** One node of a job's DAG (`ComputeUnit` in customer.proto). */
export interface ComputeUnit {
  id: string;
  job_id?: string;
  name?: string;
  kind?: string;
  depends_on?: string[];
  status?: string;
  attempt?: number;
  progress?: number;
  metrics?: Record<string, number>;
  node_id?: string;
  unschedulable_reason?: string;
  exit_code?: number;
  error?: string;
}

/** A file a job produced (`Artifact` in customer.proto). */
export interface Artifact {
  id: string;
  job_id?: string;
  compute_unit_id?: string;
  kind?: string;
  name?: string;
  size_bytes?: Int64;
  sha256?: string;
  created_at?: string;
}

/** Answer of the download-url mint. */
export interface DownloadUrl {
  download_url: string;
  expires_at?: string;
  expires_in_seconds?: number;
}

/** Admin view of a customer. */
export interface AdminCustomer {
  id?: string;
  email?: string;
  credits_balance?: Int64;
  created_at?: string;
}

/** Answer of `POST /api/v1/admin/customers`. */
export interface CreateCustomerResponse {
  customer_id: string;
  api_key: string;
  customer?: AdminCustomer;
}

/** Answer of a credit grant. */
export interface GrantCreditsResponse {
  ledger_entry_id?: string;
  credits_balance?: Int64;
}

/** Answer of `POST /api/v1/admin/enrollment-tokens`. */
export interface EnrollmentToken {
  token: string;
  expires_at?: string;
  trust_level?: string;
}

/** A GPU of a node. */
export interface NodeGpu {
  index?: number;
  name?: string;
  vram_mb?: number;
  declared?: boolean;
}

/** A home node, as operators see it. */
export interface AgentNode {
  id: string;
  hostname?: string;
  trust_level?: string;
  state?: string;
  cpu_cores?: number;
  memory_mb?: number;
  disk_free_mb?: number;
  gpus?: NodeGpu[];
  last_heartbeat_at?: string;
  enrolled_at?: string;
  running_units?: number;
}

/** Queue depth of one unit kind. */
export interface QueueDepth {
  kind?: string;
  pending?: number;
  ready?: number;
  running?: number;
}

/** Answer of `GET /api/v1/admin/scheduler`. */
export interface SchedulerStatus {
  replica_id?: string;
  is_leader?: boolean;
  leader_id?: string;
  term?: Int64;
  queues?: QueueDepth[];
  nodes_online?: number;
}
