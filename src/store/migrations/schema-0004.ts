/**
 * `nodes.placement_changed_at`: when a node last changed in a way placement
 * cares about (state, trust level, capabilities), set by a trigger so no
 * writer can forget it. Heartbeats (`last_heartbeat_at`) do not move it. The
 * leader's FleetCache (src/scheduling/fleet-cache.ts) re-reads only the rows
 * that moved instead of every online node every second.
 *
 * `clock_timestamp()`, not `now()`: `now()` is the transaction's start, and a
 * long transaction would stamp a change earlier than a reader may already
 * have looked.
 */
export const schema0004 = [
  `ALTER TABLE nodes ADD COLUMN placement_changed_at timestamptz NOT NULL DEFAULT clock_timestamp()`,
  `CREATE INDEX nodes_placement_changed ON nodes (placement_changed_at)`,
  `CREATE FUNCTION nodes_mark_placement_change() RETURNS trigger LANGUAGE plpgsql AS $$
   BEGIN
     IF NEW.state IS DISTINCT FROM OLD.state
        OR NEW.trust_level IS DISTINCT FROM OLD.trust_level
        OR NEW.capabilities IS DISTINCT FROM OLD.capabilities THEN
       NEW.placement_changed_at := clock_timestamp();
     END IF;
     RETURN NEW;
   END
   $$`,
  `CREATE TRIGGER nodes_placement_change BEFORE UPDATE ON nodes FOR EACH ROW EXECUTE FUNCTION nodes_mark_placement_change()`,
];
