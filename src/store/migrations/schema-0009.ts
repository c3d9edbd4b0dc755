/**
 * The per-job event log behind WatchTrainingJob (issue 16): every change a
 * customer can see of a job, numbered 1, 2, 3 … per job in commit order, so a
 * watch that reconnects — to this replica or another — resumes after the last
 * id it saw and misses nothing, sees nothing twice.
 *
 * - `job_event_counters`: the last id given out per job. A transaction that adds
 *   events bumps its job's row as its last statement (src/store/job-events.ts),
 *   and holds that row's lock until it commits, so the next writer of the same
 *   job gets greater ids only after this one is visible: ids are in commit
 *   order, dense, and a reader that sees id n sees every id below it.
 * - `job_events`: the events. `body` holds what the event says, written from
 *   the job's or unit's row as the transaction left it: a job's status,
 *   progress, metrics, times and counters, or a unit's. A log event refers to
 *   the stored chunk of lines (`unit_id`, `attempt`, `first_seq`,
 *   src/store/telemetry.ts) instead of copying it; a reader that comes after the
 *   chunk was trimmed from the tail learns how many lines it missed. Each job
 *   keeps its latest 10,000 events (older ones are deleted as new ones come), so
 *   a log-heavy job costs bounded rows; once the job is past artifact retention
 *   the storage sweep deletes its events and its counter row (job-events.ts).
 */
export const schema0009 = [
  `CREATE TABLE job_event_counters (
     job_id uuid PRIMARY KEY REFERENCES training_jobs(id),
     last_id bigint NOT NULL CHECK (last_id >= 0)
   )`,
  `CREATE TABLE job_events (
     job_id uuid NOT NULL REFERENCES training_jobs(id),
     id bigint NOT NULL CHECK (id >= 1),
     type text NOT NULL CHECK (type IN ('job', 'unit', 'log')),
     body jsonb NOT NULL,
     unit_id uuid,
     attempt integer,
     first_seq bigint,
     PRIMARY KEY (job_id, id),
     CHECK ((type = 'log') = (unit_id IS NOT NULL AND attempt IS NOT NULL AND first_seq IS NOT NULL))
   )`,
];
