/** Node reads and writes that placement, liveness and the owner controls use (src/store/nodes.ts). */
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import type { Database } from "../../src/store/database.ts";
import { openDatabase } from "../../src/store/database.ts";
import { openMigratedPGlite } from "../support/database-template.ts";
import type { NodeState, StoredIsolation, StoredOwnerPolicy } from "../../src/store/nodes.ts";
import {
  findNode,
  findOnlineNodesHeardSince,
  findSilentNodes,
  insertNode,
  listNodesChangedSince,
  listOnlineNodes,
  markNodeConnected,
  markNodeUnreachableIfSilent,
  nodeStates,
  readDatabaseClock,
  setNodeOwnerPolicy,
  setNodeState,
  setNodeTrustLevel,
  touchNodeHeartbeats,
} from "../../src/store/nodes.ts";
import { createMigratedTestDatabaseUrl } from "../support/postgres.ts";
import { insertNodes } from "../support/rows.ts";

describe("store/nodes", function () {
  this.timeout(60_000);
  let db: Database;
  const t0 = new Date("2030-01-01T00:00:00Z");
  const at = (s: number) => new Date(t0.getTime() + s * 1000);
  /** One node in each state, last heard at t0. */
  const byState = new Map<NodeState, string>();

  before(async () => {
    db = await openMigratedPGlite();
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

const backends: readonly { name: string; open(): Promise<Database> }[] = [
  { name: "PGlite", open: () => openMigratedPGlite() },
  { name: "PostgreSQL", open: async () => openDatabase({ url: await createMigratedTestDatabaseUrl() }) },
];

const available: StoredOwnerPolicy = { paused: false, available: "", withinWindow: true, reservedVramMb: 0 };

for (const backend of backends) {
  describe(`store/nodes: isolation and owner controls on ${backend.name}`, function () {
    this.timeout(60_000);
    let db: Database;
    const t0 = new Date("2030-01-01T00:00:00Z");

    before(async () => {
      db = await backend.open();
    });
    after(async () => {
      await db?.close();
    });

    /** A node as Enroll leaves it: described by no Hello yet. */
    async function enrolledNode(): Promise<string> {
      const id = randomUUID();
      await insertNode(db, { id, hostname: "home", trustLevel: "verified", credentialHash: `hash-${id}`, capabilities: { cpuCores: 8 } }, t0);
      return id;
    }

    const connect = (id: string, isolation: StoredIsolation, owner: StoredOwnerPolicy) =>
      markNodeConnected(db, id, { capabilities: { cpuCores: 8, hostname: "home" }, isolation, owner }, t0);

    it("counts a node no Hello has described as without isolation, available, nothing reserved", async () => {
      const row = (await findNode(db, await enrolledNode()))!;
      assert.deepEqual(
        [row.isolation, row.isolation_reason, row.isolation_limits, row.owner_paused, row.owner_available, row.owner_within_window, row.reserved_vram_mb],
        ["none", "", {}, false, "", true, 0],
      );
    });

    it("records the isolation and the owner's controls a node connects with", async () => {
      const id = await enrolledNode();
      const isolation: StoredIsolation = { mechanism: "bubblewrap", reason: "no delegated cgroup: rlimits in force", limits: { memory: "rlimit", pids: "rlimit" } };
      const owner: StoredOwnerPolicy = { paused: true, available: "Mon-Fri 18:00-08:00", withinWindow: false, reservedVramMb: 4096 };
      const row = (await connect(id, isolation, owner))!;
      assert.deepEqual(
        [row.state, row.isolation, row.isolation_reason, row.isolation_limits, row.owner_paused, row.owner_available, row.owner_within_window, row.reserved_vram_mb],
        ["online", "bubblewrap", isolation.reason, isolation.limits, true, "Mon-Fri 18:00-08:00", false, 4096],
      );
    });

    it("refuses an isolation mechanism it does not know", async () => {
      const id = await enrolledNode();
      await assert.rejects(db.query(`UPDATE nodes SET isolation = 'chroot' WHERE id = $1`, [id]));
    });

    it("writes a heartbeat's owner controls, but never to a revoked node", async () => {
      const id = await enrolledNode();
      const resumed = await setNodeOwnerPolicy(db, id, { ...available, reservedVramMb: 2048 });
      assert.equal(resumed?.reserved_vram_mb, 2048);
      await setNodeState(db, id, "revoked", t0);
      assert.equal(await setNodeOwnerPolicy(db, id, { ...available, paused: true }), undefined);
      assert.equal((await findNode(db, id))?.owner_paused, false);
    });

    // What moves placement_changed_at, so the leader's fleet cache looks at the node again on its next read.
    const changes: { change: string; write(id: string): Promise<unknown>; moves: boolean }[] = [
      { change: "its owner pauses it", write: (id) => setNodeOwnerPolicy(db, id, { ...available, paused: true }), moves: true },
      { change: "it leaves its availability window", write: (id) => setNodeOwnerPolicy(db, id, { ...available, available: "Sat 00:00-23:59", withinWindow: false }), moves: true },
      { change: "its owner changes the VRAM reserve", write: (id) => setNodeOwnerPolicy(db, id, { ...available, reservedVramMb: 8192 }), moves: true },
      { change: "it reconnects with a sandbox", write: (id) => connect(id, { mechanism: "bubblewrap", reason: "", limits: {} }, available), moves: true },
      { change: "its owner sends the same controls again", write: (id) => setNodeOwnerPolicy(db, id, available), moves: false },
      { change: "only the window's text changes", write: (id) => setNodeOwnerPolicy(db, id, { ...available, available: "Mon-Sun 00:00-23:59" }), moves: false },
      {
        change: "only the isolation's reason and limits change",
        write: (id) => db.query(`UPDATE nodes SET isolation_reason = 'rlimits in force', isolation_limits = '{"memory": "rlimit"}' WHERE id = $1`, [id]),
        moves: false,
      },
    ];
    for (const c of changes) {
      it(`${c.moves ? "stamps" : "does not stamp"} the node as changed for placement when ${c.change}`, async () => {
        const id = await enrolledNode();
        await connect(id, { mechanism: "none", reason: "", limits: {} }, available);
        // The set-up's stamps a minute back, so that none shares the millisecond of the watermark read next.
        await db.query(`UPDATE nodes SET placement_changed_at = clock_timestamp() - interval '1 minute' WHERE id = $1`, [id]);
        const watermark = await readDatabaseClock(db);
        await c.write(id);
        assert.equal((await listNodesChangedSince(db, watermark, 0)).some((n) => n.id === id), c.moves);
      });
    }
  });
}
