/**
 * Nodes' unit limit and units on several GPUs (issue 15).
 *
 * - `nodes.max_units`: the most units the node's agent runs at once (`gpu-agent run --max-units`, reported
 *   in Hello's capabilities); 0 when the agent did not say (older agents), which means no limit. The
 *   placer sees `max_units` less the units assigned to or running on the node as the node's free unit
 *   slots, and the placement commit checks it again. The trigger of schema-0004.ts also stamps
 *   `placement_changed_at` when it changes. The GPUs' own details (UUID, compute capability, driver
 *   and CUDA versions) are part of `capabilities`, which already stamps it.
 * - `compute_units.gpu_indexes`: every GPU of its node a placed unit holds (1 to 8, ascending), empty
 *   for a CPU unit and for a unit not on a node. `gpu_index` stays the first of them (-1 for none), for
 *   what reads one GPU (agents older than `gpu_indexes`, the operators' views). A unit placed before
 *   this migration holds `{gpu_index}`.
 * - `nodes.busy_until`: a node that answered an assignment `Rejected{busy}` (point 4: busy is not broken).
 *   Until then the placer sees the node as full (no free unit slot) and the placement commit refuses it;
 *   NULL when it is not held. The agent refuses a unit as busy when it is at its `--max-units`, its owner
 *   paused it or left its window, or the owner's own processes hold the VRAM the unit needs. The control
 *   plane sees the first three itself (`max_units`, the owner's controls), but not the owner's live VRAM
 *   use, so without this a unit bounced back to that node every placement cycle. The hold is short and
 *   bounded (`src/agent-streams/busy-nodes.ts`: the heartbeat interval, at most 10 s) and ends earlier when
 *   a unit on the node ends or a heartbeat shows the unit's VRAM free again.
 *
 * The trigger function is restated whole, as in schema-0007: a migration is frozen once shipped, so none
 * builds on another's code.
 */
export const schema0011 = [
  `ALTER TABLE nodes ADD COLUMN max_units integer NOT NULL DEFAULT 0 CHECK (max_units >= 0)`,
  `ALTER TABLE compute_units ADD COLUMN gpu_indexes integer[] NOT NULL DEFAULT '{}'`,
  `UPDATE compute_units SET gpu_indexes = ARRAY[gpu_index] WHERE gpu_index >= 0 AND node_id IS NOT NULL`,
  `ALTER TABLE nodes ADD COLUMN busy_until timestamptz`,
  `CREATE OR REPLACE FUNCTION nodes_mark_placement_change() RETURNS trigger LANGUAGE plpgsql AS $$
   BEGIN
     IF NEW.state IS DISTINCT FROM OLD.state
        OR NEW.trust_level IS DISTINCT FROM OLD.trust_level
        OR NEW.capabilities IS DISTINCT FROM OLD.capabilities
        OR NEW.isolation IS DISTINCT FROM OLD.isolation
        OR NEW.owner_paused IS DISTINCT FROM OLD.owner_paused
        OR NEW.owner_within_window IS DISTINCT FROM OLD.owner_within_window
        OR NEW.reserved_vram_mb IS DISTINCT FROM OLD.reserved_vram_mb
        OR NEW.max_units IS DISTINCT FROM OLD.max_units
        OR NEW.busy_until IS DISTINCT FROM OLD.busy_until THEN
       NEW.placement_changed_at := clock_timestamp();
     END IF;
     RETURN NEW;
   END
   $$`,
];
