/**
 * Timestamps default to millisecond precision: JavaScript Dates (and so the
 * keyset pagination cursors) carry milliseconds, and a microsecond-precise row
 * would sort between two cursor positions and be skipped.
 *
 * The initial schema, as plain PostgreSQL (the same text runs on PGlite and on
 * a PostgreSQL server). Uniqueness that money and work depend on lives here,
 * not in memory: one debit per compute unit, one idempotency record per key,
 * one artifact per (unit, attempt, name), one use per enrollment token.
 */
export const schema0001 = [
  `CREATE TABLE customers (
     id uuid PRIMARY KEY,
     email text NOT NULL,
     password_hash text NOT NULL,
     -- Login throttling: consecutive failures and the time before which logins are refused.
     failed_logins integer NOT NULL DEFAULT 0,
     locked_until timestamptz,
     created_at timestamptz NOT NULL DEFAULT date_trunc('milliseconds', now())
   )`,
  // E-mail addresses are unique whatever their case (login looks them up case-insensitively).
  `CREATE UNIQUE INDEX customers_email_lower ON customers (lower(email))`,
  `CREATE TABLE api_keys (
     id uuid PRIMARY KEY,
     customer_id uuid NOT NULL REFERENCES customers(id),
     name text NOT NULL,
     prefix text NOT NULL,
     key_hash text NOT NULL UNIQUE,
     scopes text[] NOT NULL,
     created_at timestamptz NOT NULL DEFAULT date_trunc('milliseconds', now()),
     last_used_at timestamptz,
     revoked_at timestamptz
   )`,
  `CREATE INDEX api_keys_customer ON api_keys (customer_id, created_at DESC, id)`,
  `CREATE TABLE sessions (
     id uuid PRIMARY KEY,
     customer_id uuid NOT NULL REFERENCES customers(id),
     token_hash text NOT NULL UNIQUE,
     created_at timestamptz NOT NULL DEFAULT date_trunc('milliseconds', now()),
     expires_at timestamptz NOT NULL,
     revoked_at timestamptz
   )`,
  `CREATE TABLE datasets (
     id uuid PRIMARY KEY,
     customer_id uuid NOT NULL REFERENCES customers(id),
     name text NOT NULL,
     size_bytes bigint NOT NULL CHECK (size_bytes >= 0),
     sha256 text NOT NULL,
     format text NOT NULL DEFAULT '',
     status text NOT NULL CHECK (status IN ('awaiting_upload', 'ready', 'deleted')),
     blob_key text NOT NULL,
     upload_expires_at timestamptz NOT NULL,
     uploaded_at timestamptz,
     created_at timestamptz NOT NULL DEFAULT date_trunc('milliseconds', now()),
     finalized_at timestamptz,
     deleted_at timestamptz
   )`,
  `CREATE INDEX datasets_customer ON datasets (customer_id, created_at DESC, id)`,
  `CREATE TABLE training_packages (
     id uuid PRIMARY KEY,
     customer_id uuid NOT NULL REFERENCES customers(id),
     name text NOT NULL,
     size_bytes bigint NOT NULL CHECK (size_bytes >= 0),
     sha256 text NOT NULL,
     entrypoint text NOT NULL,
     status text NOT NULL CHECK (status IN ('awaiting_upload', 'ready', 'deleted')),
     blob_key text NOT NULL,
     upload_expires_at timestamptz NOT NULL,
     uploaded_at timestamptz,
     entry_count integer NOT NULL DEFAULT 0,
     manifest jsonb,
     created_at timestamptz NOT NULL DEFAULT date_trunc('milliseconds', now()),
     finalized_at timestamptz,
     deleted_at timestamptz
   )`,
  `CREATE INDEX training_packages_customer ON training_packages (customer_id, created_at DESC, id)`,
  `CREATE TABLE training_jobs (
     id uuid PRIMARY KEY,
     customer_id uuid NOT NULL REFERENCES customers(id),
     name text NOT NULL,
     dataset_id uuid NOT NULL REFERENCES datasets(id),
     training_package_id uuid NOT NULL REFERENCES training_packages(id),
     status text NOT NULL CHECK (status IN ('queued', 'running', 'completed', 'failed', 'cancelled', 'expired')),
     progress double precision NOT NULL DEFAULT 0,
     required_vram_mb integer NOT NULL,
     required_disk_mb integer NOT NULL,
     max_runtime_seconds integer NOT NULL,
     sensitivity text NOT NULL CHECK (sensitivity IN ('public', 'low_sensitive', 'high_sensitive')),
     error text NOT NULL DEFAULT '',
     metrics jsonb NOT NULL DEFAULT '{}',
     projected_cost_credits bigint NOT NULL DEFAULT 0,
     created_at timestamptz NOT NULL DEFAULT date_trunc('milliseconds', now()),
     started_at timestamptz,
     finished_at timestamptz
   )`,
  `CREATE INDEX training_jobs_customer ON training_jobs (customer_id, created_at DESC, id)`,
  `CREATE INDEX training_jobs_active ON training_jobs (status) WHERE status IN ('queued', 'running')`,
  `CREATE TABLE nodes (
     id uuid PRIMARY KEY,
     hostname text NOT NULL DEFAULT '',
     trust_level text NOT NULL CHECK (trust_level IN ('community', 'verified', 'controlled')),
     state text NOT NULL CHECK (state IN ('online', 'unreachable', 'cordoned', 'draining', 'revoked')),
     credential_hash text NOT NULL UNIQUE,
     capabilities jsonb NOT NULL DEFAULT '{}',
     enrolled_at timestamptz NOT NULL DEFAULT date_trunc('milliseconds', now()),
     last_heartbeat_at timestamptz,
     revoked_at timestamptz
   )`,
  `CREATE TABLE enrollment_tokens (
     id uuid PRIMARY KEY,
     token_hash text NOT NULL UNIQUE,
     trust_level text NOT NULL CHECK (trust_level IN ('community', 'verified', 'controlled')),
     created_at timestamptz NOT NULL DEFAULT date_trunc('milliseconds', now()),
     expires_at timestamptz NOT NULL,
     used_at timestamptz,
     node_id uuid REFERENCES nodes(id)
   )`,
  `CREATE TABLE compute_units (
     id uuid PRIMARY KEY,
     job_id uuid NOT NULL REFERENCES training_jobs(id),
     customer_id uuid NOT NULL REFERENCES customers(id),
     name text NOT NULL,
     -- Position in the planned DAG (topological order), for stable listings.
     plan_index integer NOT NULL DEFAULT 0,
     kind text NOT NULL CHECK (kind IN ('cpu', 'gpu')),
     depends_on text[] NOT NULL DEFAULT '{}',
     status text NOT NULL CHECK (status IN ('pending', 'ready', 'assigned', 'running', 'completed', 'failed', 'cancelled')),
     attempt integer NOT NULL DEFAULT 0,
     max_attempts integer NOT NULL DEFAULT 3,
     -- Failures of the customer's code (non-zero exit): these consume max_attempts.
     code_failures integer NOT NULL DEFAULT 0,
     -- Attempts lost to nodes (node gone, agent crash, NODE_ERROR): re-placed at no cost, within a separate budget.
     node_failures integer NOT NULL DEFAULT 0,
     progress double precision NOT NULL DEFAULT 0,
     metrics jsonb NOT NULL DEFAULT '{}',
     entrypoint text NOT NULL,
     args text[] NOT NULL DEFAULT '{}',
     required_vram_mb integer NOT NULL DEFAULT 0,
     required_disk_mb integer NOT NULL DEFAULT 0,
     required_cpu_cores integer NOT NULL DEFAULT 1,
     required_memory_mb integer NOT NULL DEFAULT 256,
     node_id uuid REFERENCES nodes(id),
     gpu_index integer NOT NULL DEFAULT -1,
     assignment_id uuid,
     leader_term bigint,
     excluded_node_ids uuid[] NOT NULL DEFAULT '{}',
     unschedulable_reason text NOT NULL DEFAULT '',
     exit_code integer,
     error text NOT NULL DEFAULT '',
     run_seconds double precision NOT NULL DEFAULT 0,
     created_at timestamptz NOT NULL DEFAULT date_trunc('milliseconds', now()),
     ready_at timestamptz,
     assigned_at timestamptz,
     started_at timestamptz,
     finished_at timestamptz,
     UNIQUE (job_id, name)
   )`,
  `CREATE INDEX compute_units_job ON compute_units (job_id, plan_index)`,
  `CREATE INDEX compute_units_ready ON compute_units (ready_at) WHERE status = 'ready'`,
  `CREATE INDEX compute_units_node ON compute_units (node_id) WHERE status IN ('assigned', 'running')`,
  `CREATE INDEX compute_units_customer_day ON compute_units (customer_id, created_at)`,
  `CREATE TABLE artifacts (
     id uuid PRIMARY KEY,
     job_id uuid NOT NULL REFERENCES training_jobs(id),
     compute_unit_id uuid NOT NULL REFERENCES compute_units(id),
     customer_id uuid NOT NULL REFERENCES customers(id),
     attempt integer NOT NULL,
     kind text NOT NULL CHECK (kind IN ('checkpoint', 'metrics', 'logs', 'other')),
     name text NOT NULL,
     size_bytes bigint NOT NULL,
     sha256 text NOT NULL,
     blob_key text NOT NULL,
     created_at timestamptz NOT NULL DEFAULT date_trunc('milliseconds', now()),
     UNIQUE (compute_unit_id, attempt, name)
   )`,
  `CREATE INDEX artifacts_job ON artifacts (job_id, created_at, id)`,
  `CREATE TABLE ledger_entries (
     id uuid PRIMARY KEY,
     customer_id uuid NOT NULL REFERENCES customers(id),
     amount bigint NOT NULL,
     kind text NOT NULL CHECK (kind IN ('grant', 'debit')),
     description text NOT NULL DEFAULT '',
     job_id uuid REFERENCES training_jobs(id),
     compute_unit_id uuid REFERENCES compute_units(id),
     created_at timestamptz NOT NULL DEFAULT date_trunc('milliseconds', now()),
     CHECK ((kind = 'debit') = (compute_unit_id IS NOT NULL))
   )`,
  // A unit is debited at most once, whatever replays the completion.
  `CREATE UNIQUE INDEX ledger_entries_one_debit_per_unit ON ledger_entries (compute_unit_id) WHERE kind = 'debit'`,
  `CREATE INDEX ledger_entries_customer ON ledger_entries (customer_id, created_at DESC, id)`,
  `CREATE TABLE usage_records (
     id uuid PRIMARY KEY,
     customer_id uuid NOT NULL REFERENCES customers(id),
     job_id uuid NOT NULL REFERENCES training_jobs(id),
     compute_unit_id uuid NOT NULL UNIQUE REFERENCES compute_units(id),
     kind text NOT NULL,
     run_seconds double precision NOT NULL,
     credits bigint NOT NULL,
     created_at timestamptz NOT NULL DEFAULT date_trunc('milliseconds', now())
   )`,
  `CREATE INDEX usage_records_customer ON usage_records (customer_id, created_at)`,
  `CREATE TABLE idempotency_records (
     customer_id uuid NOT NULL REFERENCES customers(id),
     key text NOT NULL,
     request_hash text NOT NULL,
     job_id uuid NOT NULL REFERENCES training_jobs(id),
     created_at timestamptz NOT NULL DEFAULT date_trunc('milliseconds', now()),
     PRIMARY KEY (customer_id, key)
   )`,
  // The leader's fencing term: a placement commits only while its term is current.
  `CREATE TABLE scheduler_leases (
     name text PRIMARY KEY,
     term bigint NOT NULL,
     holder text NOT NULL,
     updated_at timestamptz NOT NULL DEFAULT date_trunc('milliseconds', now())
   )`,
  `CREATE TABLE webhook_endpoints (
     id uuid PRIMARY KEY,
     customer_id uuid NOT NULL REFERENCES customers(id),
     url text NOT NULL,
     events text[] NOT NULL,
     description text NOT NULL DEFAULT '',
     -- Secrets sign deliveries, so the plaintext is needed; it is never returned after create/rotate.
     secret text NOT NULL,
     previous_secret text,
     previous_secret_expires_at timestamptz,
     created_at timestamptz NOT NULL DEFAULT date_trunc('milliseconds', now()),
     deleted_at timestamptz
   )`,
  `CREATE INDEX webhook_endpoints_customer ON webhook_endpoints (customer_id, created_at DESC, id) WHERE deleted_at IS NULL`,
  // The outbox: written in the same transaction as the state change that causes the event.
  `CREATE TABLE webhook_deliveries (
     id uuid PRIMARY KEY,
     endpoint_id uuid NOT NULL REFERENCES webhook_endpoints(id),
     customer_id uuid NOT NULL REFERENCES customers(id),
     event_id uuid NOT NULL,
     event_type text NOT NULL,
     payload jsonb NOT NULL,
     status text NOT NULL CHECK (status IN ('pending', 'delivered', 'failed')),
     attempts integer NOT NULL DEFAULT 0,
     next_attempt_at timestamptz NOT NULL DEFAULT date_trunc('milliseconds', now()),
     last_status_code integer,
     last_error text NOT NULL DEFAULT '',
     created_at timestamptz NOT NULL DEFAULT date_trunc('milliseconds', now()),
     delivered_at timestamptz,
     -- A redelivery the customer asked for: a new row of the same event (same event_id and payload)
     -- pointing at the first delivery of that event to this endpoint.
     redelivery_of uuid REFERENCES webhook_deliveries(id),
     CHECK (redelivery_of IS NULL OR redelivery_of <> id)
   )`,
  // An event is queued once per endpoint by the outbox; redeliveries are the only repeats.
  `CREATE UNIQUE INDEX webhook_deliveries_event_once ON webhook_deliveries (endpoint_id, event_id) WHERE redelivery_of IS NULL`,
  // At most one redelivery of a delivery waits at a time (asking again returns it).
  `CREATE UNIQUE INDEX webhook_deliveries_one_pending_redelivery ON webhook_deliveries (redelivery_of) WHERE status = 'pending'`,
  `CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at) WHERE status = 'pending'`,
  `CREATE INDEX webhook_deliveries_endpoint ON webhook_deliveries (endpoint_id, created_at DESC, id)`,
];
