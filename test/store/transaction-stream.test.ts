import assert from "node:assert/strict";
import type { Database } from "../../src/store/database.ts";
import { openMigratedPGlite } from "../support/database-template.ts";
import { streamFromTransaction } from "../../src/store/transaction-stream.ts";

describe("streamFromTransaction (PGlite)", function () {
  this.timeout(30_000);
  let db: Database;

  before(async () => {
    db = await openMigratedPGlite();
  });

  after(async () => {
    await db?.close();
  });

  const collect = async <T>(it: AsyncIterable<T>): Promise<T[]> => {
    const out: T[] = [];
    for await (const x of it) out.push(x);
    return out;
  };

  it("yields what the producer emits, in order, from one transaction", async () => {
    const items = await collect(
      streamFromTransaction<number>(db, { isolation: "repeatable read", maxQueued: 1 }, async (tx, emit) => {
        for (let i = 0; i < 5; i++) {
          const [row] = await tx.query<{ n: number }>("SELECT $1::int AS n", [i]);
          await emit(row?.n ?? -1);
        }
      }),
    );
    assert.deepEqual(items, [0, 1, 2, 3, 4]);
  });

  it("throws a producer error to the consumer, items already queued included", async () => {
    const seen: number[] = [];
    await assert.rejects(async () => {
      for await (const x of streamFromTransaction<number>(db, { isolation: "read committed", maxQueued: Infinity }, async (_tx, emit) => {
        await emit(1);
        throw new Error("boom");
      })) {
        seen.push(x);
      }
    }, /boom/);
    assert.ok(seen.length <= 1);
  });

  it("ends the transaction when the consumer stops early, so the single connection is free again", async () => {
    let emitted = 0;
    for await (const x of streamFromTransaction<number>(db, { isolation: "repeatable read", maxQueued: 1 }, async (_tx, emit) => {
      for (let i = 0; i < 1000; i++) {
        await emit(i);
        emitted++;
      }
    })) {
      if (x === 2) break;
    }
    assert.ok(emitted < 1000, "the producer was stopped");
    assert.deepEqual(await db.query("SELECT 1 AS one"), [{ one: 1 }]);
  });

  it("ends in an error, not a clean end, when the call's signal aborts", async () => {
    const abort = new AbortController();
    await assert.rejects(async () => {
      for await (const x of streamFromTransaction<number>(db, { isolation: "repeatable read", maxQueued: 1, signal: abort.signal }, async (_tx, emit) => {
        for (let i = 0; i < 1000; i++) await emit(i);
      })) {
        if (x === 1) abort.abort(new Error("client gone"));
      }
    }, /client gone/);
    assert.deepEqual(await db.query("SELECT 1 AS one"), [{ one: 1 }]);
  });
});
