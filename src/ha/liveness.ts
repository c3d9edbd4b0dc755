/**
 * Node liveness across replicas. A node's stream lives on one replica, but the leader places on every
 * node: it treats a node as live when its stream is here and recently heard from, or when the node is
 * online and its persisted heartbeat (written by whichever replica holds the stream, throttled to a
 * third of the grace period) is within the grace period.
 */
import type { Sql } from "../store/database.ts";

/** Ids of online nodes whose persisted heartbeat is newer than `since`. */
export async function freshNodeIds(sql: Sql, since: Date): Promise<Set<string>> {
  const rows = await sql.query<{ id: string }>(`SELECT id FROM nodes WHERE state = 'online' AND last_heartbeat_at >= $1`, [since]);
  return new Set(rows.map((r) => r.id));
}
