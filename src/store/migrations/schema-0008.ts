/**
 * How long each attempt's Python environment took to build (issue 14: build time is reported apart
 * from run time).
 *
 * - `unit_env_builds`: one row per attempt whose node reported it finished (every outcome), from
 *   Finished.env_build_seconds and Finished.env_built. `env_build_seconds` is 0 when the
 *   environment came from the node's cache or the package has no requirements.txt; a build that
 *   failed, and a wait for another unit's build of the same environment, have their seconds and
 *   `env_built` false. A row is written for every finished attempt, a
 *   cached one too, so the latest row always describes the latest finished attempt. Keyed by
 *   (unit, attempt): a Finished replayed after a reconnect writes nothing twice.
 *
 * Kept apart from `compute_units.run_seconds` on purpose: billing reads run time only, and the
 * build is never billed (src/billing/debit.ts).
 */
export const schema0008 = [
  `CREATE TABLE unit_env_builds (
     unit_id uuid NOT NULL REFERENCES compute_units(id),
     attempt integer NOT NULL,
     env_build_seconds double precision NOT NULL CHECK (env_build_seconds >= 0),
     env_built boolean NOT NULL,
     PRIMARY KEY (unit_id, attempt)
   )`,
];
