/**
 * How a node contains its units and what its owner decided (issue 14), as the placer and the
 * operators' node view read them.
 *
 * - `isolation`: the mechanism the agent reported in Hello ("bubblewrap", "none" when its operator
 *   chose `--isolation none`, "unavailable" when the sandbox cannot start there). A row no agent has
 *   described yet, and an agent older than the sandbox, is "none": nothing says its units are
 *   contained, so it takes public units only. `isolation_reason` and `isolation_limits` (which
 *   mechanism enforces each limit) are for operators.
 * - `owner_paused`, `owner_available` (the window as the owner wrote it), `owner_within_window` (by
 *   the node's own clock) and `reserved_vram_mb` (per GPU, never free): the owner's controls, from
 *   Hello and every heartbeat that changes them.
 *
 * The trigger of schema-0004.ts now also stamps `placement_changed_at` when the columns that decide
 * placement change, so the leader's FleetCache (src/scheduling/fleet-cache.ts) re-reads a node that
 * was paused, resumed, left its window or changed its reserve on its next look. The window's text
 * and the isolation reason and limits decide nothing, and leave the stamp alone.
 */
export const schema0007 = [
  `ALTER TABLE nodes ADD COLUMN isolation text NOT NULL DEFAULT 'none' CHECK (isolation IN ('bubblewrap', 'none', 'unavailable'))`,
  `ALTER TABLE nodes ADD COLUMN isolation_reason text NOT NULL DEFAULT ''`,
  `ALTER TABLE nodes ADD COLUMN isolation_limits jsonb NOT NULL DEFAULT '{}'`,
  `ALTER TABLE nodes ADD COLUMN owner_paused boolean NOT NULL DEFAULT false`,
  `ALTER TABLE nodes ADD COLUMN owner_available text NOT NULL DEFAULT ''`,
  `ALTER TABLE nodes ADD COLUMN owner_within_window boolean NOT NULL DEFAULT true`,
  `ALTER TABLE nodes ADD COLUMN reserved_vram_mb integer NOT NULL DEFAULT 0 CHECK (reserved_vram_mb >= 0)`,
  `CREATE OR REPLACE FUNCTION nodes_mark_placement_change() RETURNS trigger LANGUAGE plpgsql AS $$
   BEGIN
     IF NEW.state IS DISTINCT FROM OLD.state
        OR NEW.trust_level IS DISTINCT FROM OLD.trust_level
        OR NEW.capabilities IS DISTINCT FROM OLD.capabilities
        OR NEW.isolation IS DISTINCT FROM OLD.isolation
        OR NEW.owner_paused IS DISTINCT FROM OLD.owner_paused
        OR NEW.owner_within_window IS DISTINCT FROM OLD.owner_within_window
        OR NEW.reserved_vram_mb IS DISTINCT FROM OLD.reserved_vram_mb THEN
       NEW.placement_changed_at := clock_timestamp();
     END IF;
     RETURN NEW;
   END
   $$`,
];
