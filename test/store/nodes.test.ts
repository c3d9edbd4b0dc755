/** Node reads and writes that placement and liveness use (src/store/nodes.ts). */
import assert from "node:assert/strict";
import type { Database } from "../../src/store/database.ts";
import { openDatabase } from "../../src/store/database.ts";
import type { NodeState } from "../../src/store/nodes.ts";
import {
  findNode,
  findOnlineNodesHeardSince,
  findSilentNodes,
  listNodesChangedSince,
  listOnlineNodes,
  markNodeUnreachableIfSilent,
  nodeStates,
  readDatabaseClock,
  setNodeState,
  setNodeTrustLevel,
  touchNodeHeartbeats,
} from "../../src/store/nodes.ts";
import { insertNodes } from "../support/rows.ts";

describe("store/nodes", function () {
  this.timeout(60_000);
  let db: Database;
  const t0 = new Date("2030-01-01T00:00:00Z");
  const at = (s: number) => new Date(t0.getTime() + s * 1000);
  /** One node in each state, last heard at t0. */
  const byState = new Map<NodeState, string>();

  before(async () => {
    db = await openDatabase({});
  });
  after(async () => {
    await db.close();
  });
  beforeEach(async () => {
    await db.query(`DELETE FROM nodes`);
    byState.clear();
    for (const state of nodeStates) {
      const [id] = (await insertNodes(db, 1, t0)) as [string];
      await setNodeState(db, id, state, t0);
      byState.set(state, id);
    }
    // The set-up's changes a minute back, so that none shares the millisecond of a watermark read next.
    await db.query(`UPDATE nodes SET placement_changed_at = clock_timestamp() - interval '1 minute'`);
  });

  it("lists the online nodes only", async () => {
    assert.deepEqual((await listOnlineNodes(db)).map((n) => n.id), [byState.get("online")]);
  });

  it("finds the online nodes heard at or after a time", async () => {
    assert.deepEqual([...(await findOnlineNodesHeardSince(db, t0))], [byState.get("online")]);
    assert.deepEqual([...(await findOnlineNodesHeardSince(db, at(1)))], []);
  });

  it("finds silent nodes among those that keep units (online, cordoned, draining)", async () => {
    const silent = (await findSilentNodes(db, at(1))).map((n) => n.state).sort();
    assert.deepEqual(silent, ["cordoned", "draining", "online"]);
    assert.deepEqual(await findSilentNodes(db, t0), []);
  });

  it("marks a node unreachable only while still silent, and moves only an online one (an operator's state stays)", async () => {
    const stillSilent = new Map<NodeState, { silent: boolean; state: NodeState }>();
    const heardSince = new Map<NodeState, { silent: boolean; state: NodeState }>();
    for (const [state, id] of byState) {
      heardSince.set(state, { silent: await markNodeUnreachableIfSilent(db, id, t0), state: (await findNode(db, id))!.state });
      stillSilent.set(state, { silent: await markNodeUnreachableIfSilent(db, id, at(1)), state: (await findNode(db, id))!.state });
    }
    assert.deepEqual(Object.fromEntries(heardSince), Object.fromEntries(nodeStates.map((s) => [s, { silent: false, state: s }])));
    assert.deepEqual(Object.fromEntries(stillSilent), {
      online: { silent: true, state: "unreachable" },
      unreachable: { silent: true, state: "unreachable" },
      cordoned: { silent: true, state: "cordoned" },
      draining: { silent: true, state: "draining" },
      revoked: { silent: true, state: "revoked" },
    });
  });

  it("writes a batch of heartbeats: brings unreachable nodes back online, never revoked or cordoned ones", async () => {
    await touchNodeHeartbeats(db, [...byState.values()], at(5));
    const after = new Map<NodeState, { state: NodeState; heard: Date | null }>();
    for (const [state, id] of byState) {
      const row = (await findNode(db, id))!;
      after.set(state, { state: row.state, heard: row.last_heartbeat_at });
    }
    assert.deepEqual(Object.fromEntries(after), {
      online: { state: "online", heard: at(5) },
      unreachable: { state: "online", heard: at(5) },
      cordoned: { state: "cordoned", heard: at(5) },
      draining: { state: "draining", heard: at(5) },
      revoked: { state: "revoked", heard: t0 },
    });
  });

  it("lists the nodes whose placement-relevant columns changed since a database-clock watermark, not those only heard from", async () => {
    const watermark = await readDatabaseClock(db);
    const online = byState.get("online")!;
    const cordoned = byState.get("cordoned")!;
    await touchNodeHeartbeats(db, [online], at(5));
    await setNodeTrustLevel(db, cordoned, "community");
    assert.deepEqual((await listNodesChangedSince(db, watermark, 0)).map((n) => n.id), [cordoned]);
    // The overlap reaches back before the watermark, to the changes of the set-up.
    assert.equal((await listNodesChangedSince(db, watermark, 120_000)).length, nodeStates.length);
  });
});
