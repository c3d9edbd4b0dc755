/**
 * What the control plane learns about nodes from the work they do, for the
 * placer's scores (src/placer/plugins/reliability.ts, data-locality.ts).
 *
 * - `node_attempts`: one row per attempt a node finished (`completed`) or lost
 *   (`lost`: it went silent, its agent restarted or answered NODE_ERROR, it was
 *   revoked). Failures of the customer's code are not recorded: they say
 *   nothing about the home. Keyed by (unit, attempt), so an event replayed
 *   after a reconnect counts once. Inserting references the node with a key
 *   share lock only, so recording an outcome inside a job transaction never
 *   waits on (or deadlocks with) a transaction that changes the node's state.
 * - `node_datasets`: datasets a node fetched for a unit that then completed, so
 *   the agent's content-addressed input cache holds them unless it evicted them
 *   since (a hint for scoring, never a constraint: a stale hint costs one download).
 */
export const schema0002 = [
  `CREATE TABLE node_attempts (
     unit_id uuid NOT NULL REFERENCES compute_units(id),
     attempt integer NOT NULL,
     node_id uuid NOT NULL REFERENCES nodes(id),
     outcome text NOT NULL CHECK (outcome IN ('completed', 'lost')),
     finished_at timestamptz NOT NULL,
     PRIMARY KEY (unit_id, attempt)
   )`,
  `CREATE INDEX node_attempts_recent ON node_attempts (finished_at, node_id)`,
  `CREATE TABLE node_datasets (
     node_id uuid NOT NULL REFERENCES nodes(id),
     dataset_id uuid NOT NULL REFERENCES datasets(id),
     last_used_at timestamptz NOT NULL,
     PRIMARY KEY (node_id, dataset_id)
   )`,
  `CREATE INDEX node_datasets_dataset ON node_datasets (dataset_id, last_used_at)`,
];
