/** LISTEN/NOTIFY between replicas (src/store/cluster-notifications.ts), on a real PostgreSQL server. */
import assert from "node:assert/strict";
import { listenOn, notifyChannel } from "../../src/store/cluster-notifications.ts";
import type { ListeningConnection } from "../../src/store/cluster-notifications.ts";
import type { Database } from "../../src/store/database.ts";
import { openDatabase } from "../../src/store/database.ts";
import { createMigratedTestDatabaseUrl } from "../support/postgres.ts";

describe("store/cluster-notifications (PostgreSQL)", function () {
  this.timeout(60_000);
  let url: string;
  let db: Database;
  const open: ListeningConnection[] = [];

  before(async () => {
    url = await createMigratedTestDatabaseUrl();
    db = await openDatabase({ url });
  });
  afterEach(async () => {
    for (const c of open.splice(0)) await c.end();
  });
  after(async () => {
    await db.close();
  });

  /** Listens on `channel`; `next()` resolves with the next payload received. */
  async function listener(channel: string) {
    const queue: string[] = [];
    let waiting: ((payload: string) => void) | undefined;
    const connection = await listenOn(url, "test-listener", channel, (payload) => {
      if (waiting === undefined) return void queue.push(payload);
      waiting(payload);
      waiting = undefined;
    });
    open.push(connection);
    return { next: () => (queue.length > 0 ? Promise.resolve(queue.shift()!) : new Promise<string>((resolve) => (waiting = resolve))) };
  }

  it("delivers a payload sent on the channel to its listener, and nothing sent on another channel", async () => {
    const cluster = await listener("test_cluster");
    await notifyChannel(db, "test_other", "not for you");
    await notifyChannel(db, "test_cluster", '{"hello":1}');
    assert.equal(await cluster.next(), '{"hello":1}');
  });

  it("delivers a NOTIFY sent in a transaction only once it commits, and never when it rolls back", async () => {
    const cluster = await listener("test_cluster");
    await assert.rejects(
      db.transaction(async (tx) => {
        await notifyChannel(tx, "test_cluster", "rolled back");
        throw new Error("abort");
      }),
      /abort/,
    );
    await db.transaction((tx) => notifyChannel(tx, "test_cluster", "committed"));
    assert.equal(await cluster.next(), "committed");
  });

  it("refuses a channel name that is not a plain identifier (it is written into the LISTEN statement)", async () => {
    await assert.rejects(listenOn(url, "test-listener", "x; DROP TABLE nodes", () => undefined), /not a plain channel name/);
  });
});
