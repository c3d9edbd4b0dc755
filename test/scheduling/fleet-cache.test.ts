/** The leader's copy of the online nodes' rows (src/scheduling/fleet-cache.ts), on a real embedded database. */
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { FleetCache } from "../../src/scheduling/fleet-cache.ts";
import type { Database } from "../../src/store/database.ts";
import { openMigratedPGlite } from "../support/database-template.ts";

describe("FleetCache", function () {
  this.timeout(60_000);
  let db: Database;
  let now: number;
  const clock = { now: () => now, sleep: async () => {} };
  const ids: string[] = [];

  before(async () => {
    db = await openMigratedPGlite();
    for (let i = 0; i < 5; i++) {
      const id = randomUUID();
      ids.push(id);
      await db.query(`INSERT INTO nodes (id, trust_level, state, credential_hash, capabilities) VALUES ($1, 'verified', 'online', $2, '{"cpuCores": 8}')`, [id, id]);
    }
  });
  after(async () => {
    await db?.close();
  });
  beforeEach(async () => {
    now = 1_000_000;
    // What earlier tests changed is history: the embedded database's clock ticks coarsely enough that a
    // change made just before a test's first read can carry the very stamp of that read, and `>=` (right:
    // a change stamped at the instant of a read may commit after it) would read it again.
    await db.query(`UPDATE nodes SET placement_changed_at = clock_timestamp() - interval '1 hour'`);
  });

  const online = async (fleet: FleetCache) => (await fleet.onlineNodes(db)).map((r) => r.id).sort();

  it("reads every online node once, then nothing more within its max age", async () => {
    const fleet = new FleetCache(clock, { maxAgeMs: 1000 });
    assert.deepEqual(await online(fleet), [...ids].sort());
    const read = fleet.rowsRead;
    now += 999;
    await db.query(`UPDATE nodes SET state = 'cordoned' WHERE id = $1`, [ids[0]]);
    assert.equal((await online(fleet)).length, 5, "within the max age the copy is served as it is");
    assert.equal(fleet.rowsRead, read);
    await db.query(`UPDATE nodes SET state = 'online' WHERE id = $1`, [ids[0]]);
  });

  it("then reads only the nodes whose state, trust or capabilities changed, and drops nodes that went offline", async () => {
    const fleet = new FleetCache(clock, { maxAgeMs: 1000, overlapMs: 0 });
    await online(fleet);
    const keptObject = (await fleet.onlineNodes(db)).find((r) => r.id === ids[4]);
    // A heartbeat moves nothing placement reads.
    await db.query(`UPDATE nodes SET last_heartbeat_at = now() WHERE id = ANY($1::uuid[])`, [ids]);
    now += 1000;
    const before = fleet.rowsRead;
    assert.equal((await online(fleet)).length, 5);
    assert.equal(fleet.rowsRead, before, "no row changed for placement");

    await db.query(`UPDATE nodes SET state = 'cordoned' WHERE id = $1`, [ids[0]]);
    await db.query(`UPDATE nodes SET trust_level = 'controlled' WHERE id = $1`, [ids[1]]);
    await db.query(`UPDATE nodes SET capabilities = '{"cpuCores": 16}' WHERE id = $1`, [ids[2]]);
    now += 1000;
    const rows = await fleet.onlineNodes(db);
    assert.equal(fleet.rowsRead - before, 3, "only the three changed rows were read");
    assert.deepEqual(rows.map((r) => r.id).sort(), ids.slice(1).sort());
    assert.equal(rows.find((r) => r.id === ids[1])?.trust_level, "controlled");
    assert.equal(rows.find((r) => r.id === ids[2])?.capabilities.cpuCores, 16);
    assert.equal(rows.find((r) => r.id === ids[4]), keptObject, "an unchanged node keeps its row object");

    await db.query(`UPDATE nodes SET state = 'online' WHERE id = $1`, [ids[0]]);
    now += 1000;
    assert.deepEqual(await online(fleet), [...ids].sort(), "a node back online is back in the copy");
  });

  it("reads everything again after its full-read period, in the background, and waits for it after invalidate", async () => {
    const fleet = new FleetCache(clock, { maxAgeMs: 1000, overlapMs: 0, fullEveryMs: 60_000 });
    await online(fleet);
    const afterFirst = fleet.rowsRead;
    now += 60_000;
    await online(fleet);
    await fleet.whenRead();
    assert.equal(fleet.rowsRead - afterFirst, 5);
    fleet.invalidate();
    await online(fleet);
    assert.equal(fleet.rowsRead - afterFirst, 10);
  });

  it("drops, at the periodic full read, a node that left without its stamp moving, and names only what changed", async () => {
    const fleet = new FleetCache(clock, { maxAgeMs: 1000, overlapMs: 0, fullEveryMs: 60_000 });
    await online(fleet);
    fleet.takeChanged();
    // A change the trigger did not stamp (written with the trigger off, say): only the backstop sees it.
    await db.query(`ALTER TABLE nodes DISABLE TRIGGER nodes_placement_change`);
    await db.query(`UPDATE nodes SET state = 'cordoned' WHERE id = $1`, [ids[2]]);
    await db.query(`ALTER TABLE nodes ENABLE TRIGGER nodes_placement_change`);
    now += 1000;
    assert.equal((await online(fleet)).length, 5, "an incremental read does not see it");
    now += 60_000;
    await online(fleet);
    await fleet.whenRead();
    now += 1000;
    assert.deepEqual(await online(fleet), [...ids].filter((id) => id !== ids[2]).sort());
    assert.deepEqual([...(fleet.takeChanged() as Set<string>)], [ids[2]]);
    await db.query(`UPDATE nodes SET state = 'online' WHERE id = $1`, [ids[2]]);
  });

  it("names the nodes whose row changed, appeared or left since it was last asked, and 'all' after a first read", async () => {
    const fleet = new FleetCache(clock, { maxAgeMs: 1000, overlapMs: 0, fullEveryMs: 60_000 });
    await online(fleet);
    assert.equal(fleet.takeChanged(), "all");
    assert.deepEqual([...(fleet.takeChanged() as Set<string>)], []);
    await db.query(`UPDATE nodes SET state = 'cordoned' WHERE id = $1`, [ids[0]]);
    await db.query(`UPDATE nodes SET capabilities = '{"cpuCores": 4}' WHERE id = $1`, [ids[3]]);
    now += 1000;
    await online(fleet);
    assert.deepEqual([...(fleet.takeChanged() as Set<string>)].sort(), [ids[0], ids[3]].sort());
    assert.equal(fleet.row(ids[3]!)?.capabilities.cpuCores, 4);
    assert.equal(fleet.row(ids[0]!), undefined);
    await db.query(`UPDATE nodes SET state = 'online', capabilities = '{"cpuCores": 8}' WHERE id = ANY($1::uuid[])`, [[ids[0], ids[3]]]);
    now += 60_000;
    await online(fleet);
    await fleet.whenRead();
    assert.deepEqual([...(fleet.takeChanged() as Set<string>)].sort(), [ids[0], ids[3]].sort(), "a periodic full read names only what differed");
    fleet.invalidate();
    await online(fleet);
    assert.equal(fleet.takeChanged(), "all");
  });
});
