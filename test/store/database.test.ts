import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  isSerializationFailure,
  isUniqueViolation,
  openDatabase,
  type Database,
  type Sql,
} from "../../src/store/database.ts";
import { createTestDatabaseUrl } from "../support/postgres.ts";

interface Backend {
  readonly name: string;
  /** Opens a database with an empty schema (before migrations). */
  open(): Promise<Database>;
}

const backends: readonly Backend[] = [
  { name: "PGlite in memory", open: () => openDatabase({}) },
  { name: "PostgreSQL", open: async () => openDatabase({ url: await createTestDatabaseUrl() }) },
];

/** Every migration, in order. */
const migrations = ["Migration0001Initial", "Migration0002NodeHistory", "Migration0003UnitTelemetry", "Migration0004NodeChanges", "Migration0005LoginAttempts", "Migration0006StorageQuotas", "Migration0007NodeIsolation", "Migration0008UnitEnvBuilds", "Migration0009JobEvents", "Migration0010JobGpuNeeds", "Migration0011NodeUnitSlots", "Migration0012UnitCheckpoints", "Migration0013UsageGpuCount"];

const tables = [
  "api_keys",
  "artifacts",
  "compute_units",
  "customers",
  "datasets",
  "enrollment_tokens",
  "idempotency_records",
  "job_event_counters",
  "job_events",
  "ledger_entries",
  "login_address_budgets",
  "login_attempts",
  "node_attempts",
  "node_datasets",
  "nodes",
  "scheduler_leases",
  "sessions",
  "training_jobs",
  "training_packages",
  "unit_env_builds",
  "unit_log_chunks",
  "unit_metric_points",
  "unit_telemetry",
  "usage_records",
  "webhook_deliveries",
  "webhook_endpoints",
];

/** A customer with one job and one compute unit: the least a ledger debit needs. */
async function seedUnit(sql: Sql): Promise<{ customerId: string; jobId: string; unitId: string }> {
  const [customerId, datasetId, packageId, jobId, unitId] = [1, 2, 3, 4, 5].map(() => randomUUID()) as [
    string,
    string,
    string,
    string,
    string,
  ];
  await sql.query(`INSERT INTO customers (id, email, password_hash) VALUES ($1, $2, 'x')`, [
    customerId,
    `${customerId}@example.com`,
  ]);
  await sql.query(
    `INSERT INTO datasets (id, customer_id, name, size_bytes, sha256, status, blob_key, upload_expires_at)
     VALUES ($1, $2, 'd', 1, 'h', 'ready', 'k', now())`,
    [datasetId, customerId],
  );
  await sql.query(
    `INSERT INTO training_packages (id, customer_id, name, size_bytes, sha256, entrypoint, status, blob_key, upload_expires_at)
     VALUES ($1, $2, 'p', 1, 'h', 'train.py', 'ready', 'k', now())`,
    [packageId, customerId],
  );
  await sql.query(
    `INSERT INTO training_jobs (id, customer_id, name, dataset_id, training_package_id, status,
       required_vram_mb, required_disk_mb, max_runtime_seconds, sensitivity)
     VALUES ($1, $2, 'j', $3, $4, 'queued', 1024, 1024, 60, 'public')`,
    [jobId, customerId, datasetId, packageId],
  );
  await sql.query(
    `INSERT INTO compute_units (id, job_id, customer_id, name, kind, status, entrypoint)
     VALUES ($1, $2, $3, 'train', 'gpu', 'pending', 'train.py')`,
    [unitId, jobId, customerId],
  );
  return { customerId, jobId, unitId };
}

async function debit(sql: Sql, unit: { customerId: string; jobId: string; unitId: string }): Promise<void> {
  await sql.query(
    `INSERT INTO ledger_entries (id, customer_id, amount, kind, job_id, compute_unit_id)
     VALUES ($1, $2, -5, 'debit', $3, $4)`,
    [randomUUID(), unit.customerId, unit.jobId, unit.unitId],
  );
}

/** A promise with its resolve function outside, to order steps of concurrent transactions. */
function gate(): { promise: Promise<void>; open(): void } {
  let open!: () => void;
  const promise = new Promise<void>((resolve) => (open = resolve));
  return { promise, open };
}

/** The rejection of `promise` (fails if it resolves). */
async function rejectionOf(promise: Promise<unknown>): Promise<unknown> {
  try {
    await promise;
  } catch (e) {
    return e;
  }
  assert.fail("expected a rejection");
}

for (const backend of backends) {
  describe(`store/database on ${backend.name}`, () => {
    let db: Database;
    before(async () => {
      db = await backend.open();
    });
    after(async () => {
      await db?.close();
    });

    it("creates every table of the schema and records each migration once, in order", async () => {
      const rows = await db.query<{ table_name: string }>(
        `SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' ORDER BY table_name`,
      );
      const names = rows.map((r) => r.table_name);
      for (const table of tables) assert.ok(names.includes(table), `missing table ${table}`);
      const applied = await db.query<{ name: string }>(`SELECT name FROM mikro_orm_migrations`);
      assert.deepEqual(
        applied.map((m) => m.name),
        migrations,
      );
    });

    it("commits a transaction whose callback returns, and returns its value", async () => {
      const id = randomUUID();
      const result = await db.transaction(async (tx) => {
        await tx.query(`INSERT INTO customers (id, email, password_hash) VALUES ($1, $2, 'x')`, [id, `${id}@x`]);
        return "done";
      });
      assert.equal(result, "done");
      assert.equal((await db.query(`SELECT 1 FROM customers WHERE id = $1`, [id])).length, 1);
    });

    it("rolls back a transaction whose callback throws, and rethrows the error", async () => {
      const id = randomUUID();
      const boom = new Error("boom");
      const error = await rejectionOf(
        db.transaction(async (tx) => {
          await tx.query(`INSERT INTO customers (id, email, password_hash) VALUES ($1, $2, 'x')`, [id, `${id}@x`]);
          throw boom;
        }),
      );
      assert.equal(error, boom);
      assert.equal((await db.query(`SELECT 1 FROM customers WHERE id = $1`, [id])).length, 0);
    });

    it("refuses db.query inside a transaction callback instead of deadlocking", async () => {
      const error = await rejectionOf(db.transaction(async () => db.query(`SELECT 1`)));
      assert.match(String(error), /tx\.query/);
      // The database is still usable afterwards.
      assert.deepEqual(await db.query(`SELECT 1 AS one`), [{ one: 1 }]);
    });

    const isolationCases = [
      { name: "defaults to read committed", options: undefined, expected: "read committed" },
      { name: "runs serializable when asked", options: { isolation: "serializable" }, expected: "serializable" },
      {
        name: "runs repeatable read when asked",
        options: { isolation: "repeatable read" },
        expected: "repeatable read",
      },
    ] as const;
    for (const tc of isolationCases) {
      it(`transaction isolation ${tc.name}`, async () => {
        const [row] = await db.transaction(
          (tx) => tx.query<{ transaction_isolation: string }>(`SHOW transaction_isolation`),
          tc.options,
        );
        assert.equal(row?.transaction_isolation, tc.expected);
      });
    }

    it("recognises a second debit of one unit as a unique violation of ledger_entries_one_debit_per_unit", async () => {
      const unit = await seedUnit(db);
      await debit(db, unit);
      const error = await rejectionOf(debit(db, unit));
      assert.ok(isUniqueViolation(error), `not a unique violation: ${String(error)}`);
      assert.equal((error as { constraint?: string }).constraint, "ledger_entries_one_debit_per_unit");
      assert.equal(isSerializationFailure(error), false);
      // Inside a transaction the same error surfaces, and the transaction rolls back.
      const inTx = await rejectionOf(db.transaction((tx) => debit(tx, unit)));
      assert.ok(isUniqueViolation(inTx));
    });

    it("does not call other errors unique violations", async () => {
      const cases = [
        { name: "not-null violation", run: () => db.query(`INSERT INTO scheduler_leases (name, term, holder) VALUES ('a', 1, NULL)`) },
        { name: "syntax error", run: () => db.query(`SELEC 1`) },
      ];
      for (const tc of cases) {
        const error = await rejectionOf(tc.run());
        assert.equal(isUniqueViolation(error), false, tc.name);
      }
      assert.equal(isUniqueViolation(new Error("23505")), false);
      assert.equal(isUniqueViolation(undefined), false);
    });

    const when = new Date("2024-05-06T07:08:09.123Z");
    const uuid = "7a1c9a3e-5d0e-4c8e-9a55-2f0d7c1b9e10";
    const typeCases: readonly { name: string; sql: string; params: unknown[]; expected: unknown }[] = [
      { name: "bigint comes back as a number", sql: `SELECT $1::bigint AS v`, params: [9007199254740991], expected: 9007199254740991 },
      { name: "count(*) (bigint) comes back as a number", sql: `SELECT count(*) AS v FROM (VALUES (1), (2)) t(x)`, params: [], expected: 2 },
      { name: "bigint[] comes back as number[]", sql: `SELECT ARRAY[1, 2]::bigint[] AS v`, params: [], expected: [1, 2] },
      { name: "integer comes back as a number", sql: `SELECT $1::integer AS v`, params: [42], expected: 42 },
      { name: "double precision comes back as a number", sql: `SELECT $1::double precision AS v`, params: [0.25], expected: 0.25 },
      { name: "timestamptz comes back as a Date", sql: `SELECT $1::timestamptz AS v`, params: [when], expected: when },
      { name: "jsonb from a plain object comes back parsed", sql: `SELECT $1::jsonb AS v`, params: [{ a: 1, b: [true, null] }], expected: { a: 1, b: [true, null] } },
      { name: "jsonb array passed as JSON text comes back parsed", sql: `SELECT $1::jsonb AS v`, params: [JSON.stringify([1, "x"])], expected: [1, "x"] },
      { name: "text[] comes back as string[]", sql: `SELECT $1::text[] AS v`, params: [["a", "b,c", 'd"e']], expected: ["a", "b,c", 'd"e'] },
      { name: "empty text[] comes back as []", sql: `SELECT $1::text[] AS v`, params: [[]], expected: [] },
      { name: "uuid[] comes back as string[]", sql: `SELECT $1::uuid[] AS v`, params: [[uuid]], expected: [uuid] },
      { name: "uuid comes back as a string", sql: `SELECT $1::uuid AS v`, params: [uuid], expected: uuid },
      { name: "boolean comes back as a boolean", sql: `SELECT $1::boolean AS v`, params: [true], expected: true },
      { name: "null comes back as null", sql: `SELECT $1::text AS v`, params: [null], expected: null },
    ];
    for (const tc of typeCases) {
      it(`normalises types: ${tc.name}`, async () => {
        const [row] = await db.query<{ v: unknown }>(tc.sql, tc.params);
        assert.deepEqual(row?.v, tc.expected);
      });
    }

    it("refuses a bigint beyond Number.MAX_SAFE_INTEGER rather than rounding it", async () => {
      await assert.rejects(db.query(`SELECT 9007199254740993::bigint AS v`), /MAX_SAFE_INTEGER/);
    });

    it("refuses an undefined parameter", async () => {
      await assert.rejects(db.query(`SELECT $1::text AS v`, [undefined]), /\$1 is undefined/);
    });

    it("round-trips arrays, jsonb and timestamps through table columns", async () => {
      const unit = await seedUnit(db);
      const nodeA = randomUUID();
      await db.query(
        `UPDATE compute_units
            SET args = $2::text[], metrics = $3, excluded_node_ids = $4::uuid[], ready_at = $5, leader_term = $6
          WHERE id = $1`,
        [unit.unitId, ["--epochs", "3"], { loss: 0.5, tags: ["a"] }, [nodeA], when, 7],
      );
      const [row] = await db.query(
        `SELECT args, metrics, excluded_node_ids, ready_at, leader_term, depends_on, progress, attempt
           FROM compute_units WHERE id = $1`,
        [unit.unitId],
      );
      assert.deepEqual(row, {
        args: ["--epochs", "3"],
        metrics: { loss: 0.5, tags: ["a"] },
        excluded_node_ids: [nodeA],
        ready_at: when,
        leader_term: 7,
        depends_on: [],
        progress: 0,
        attempt: 0,
      });
    });

    it("locks rows with FOR UPDATE SKIP LOCKED inside a transaction", async () => {
      const name = `lease-${randomUUID()}`;
      await db.query(`INSERT INTO scheduler_leases (name, term, holder) VALUES ($1, 1, 'a')`, [name]);
      const taken = await db.transaction((tx) =>
        tx.query<{ name: string }>(`SELECT name FROM scheduler_leases WHERE name = $1 FOR UPDATE SKIP LOCKED`, [name]),
      );
      assert.deepEqual(taken, [{ name }]);
    });
  });
}

describe("store/database on PGlite with a data directory", () => {
  let dataDir: string;
  before(async () => {
    dataDir = await mkdtemp(join(tmpdir(), "gpu-agent-pglite-"));
  });
  after(async () => {
    await rm(dataDir, { recursive: true, force: true });
  });

  it("keeps data across close and reopen, and migrates only once", async () => {
    const id = randomUUID();
    const first = await openDatabase({ dataDir });
    try {
      assert.equal(first.kind, "pglite");
      await first.query(`INSERT INTO customers (id, email, password_hash) VALUES ($1, 'p@x', 'x')`, [id]);
    } finally {
      await first.close();
    }
    const second = await openDatabase({ dataDir });
    try {
      assert.deepEqual(await second.query(`SELECT email FROM customers WHERE id = $1`, [id]), [{ email: "p@x" }]);
      assert.deepEqual(await second.query(`SELECT count(*) AS n FROM mikro_orm_migrations`), [{ n: migrations.length }]);
    } finally {
      await second.close();
    }
  });

  it("queues concurrent transactions on its single connection instead of interleaving them", async () => {
    const db = await openDatabase({ dataDir });
    try {
      const order: string[] = [];
      const step = (label: string) => async (tx: Sql) => {
        order.push(`${label} begin`);
        await tx.query(`SELECT pg_sleep(0.05)`);
        order.push(`${label} end`);
      };
      await Promise.all([db.transaction(step("a")), db.transaction(step("b")), db.query(`SELECT 1`)]);
      assert.deepEqual(order, ["a begin", "a end", "b begin", "b end"]);
    } finally {
      await db.close();
    }
  });
});

describe("store/database on PostgreSQL, concurrency", () => {
  let db: Database;
  let url: string;
  before(async () => {
    url = await createTestDatabaseUrl();
    db = await openDatabase({ url, poolSize: 4 });
  });
  after(async () => {
    await db?.close();
  });

  it("reports its kind and keeps data across reopen without migrating twice", async () => {
    assert.equal(db.kind, "postgresql");
    const again = await openDatabase({ url });
    try {
      assert.deepEqual(await again.query(`SELECT count(*) AS n FROM mikro_orm_migrations`), [{ n: migrations.length }]);
    } finally {
      await again.close();
    }
  });

  it("gives two concurrent FOR UPDATE SKIP LOCKED transactions different rows", async () => {
    const prefix = `skip-${randomUUID()}`;
    await db.query(
      `INSERT INTO scheduler_leases (name, term, holder) VALUES ($1 || '-1', 1, 'x'), ($1 || '-2', 1, 'x')`,
      [prefix],
    );
    const claim = (tx: Sql) =>
      tx.query<{ name: string }>(
        `SELECT name FROM scheduler_leases WHERE name LIKE $1 || '%' ORDER BY name LIMIT 1 FOR UPDATE SKIP LOCKED`,
        [prefix],
      );
    const firstHolds = gate();
    const secondDone = gate();
    const first = db.transaction(async (tx) => {
      const rows = await claim(tx);
      firstHolds.open();
      await secondDone.promise; // keep the lock until the other transaction has chosen
      return rows;
    });
    await firstHolds.promise;
    const second = db.transaction(claim).finally(() => secondDone.open());
    const [a, b] = await Promise.all([first, second]);
    assert.deepEqual(a, [{ name: `${prefix}-1` }]);
    assert.deepEqual(b, [{ name: `${prefix}-2` }]);
  });

  it("reports a write-skew conflict between serializable transactions as a serialization failure", async () => {
    const prefix = `ser-${randomUUID()}`;
    const bothRead = { a: gate(), b: gate() };
    const writeSkew = (me: "a" | "b", other: "a" | "b") =>
      db.transaction(
        async (tx) => {
          await tx.query(`SELECT count(*) FROM scheduler_leases WHERE name LIKE $1 || '%'`, [prefix]);
          bothRead[me].open();
          await bothRead[other].promise;
          await tx.query(`INSERT INTO scheduler_leases (name, term, holder) VALUES ($1, 1, 'x')`, [`${prefix}-${me}`]);
        },
        { isolation: "serializable" },
      );
    const results = await Promise.allSettled([writeSkew("a", "b"), writeSkew("b", "a")]);
    const failures = results.filter((r) => r.status === "rejected");
    assert.equal(failures.length, 1, "exactly one transaction must lose");
    assert.ok(isSerializationFailure(failures[0]?.reason), String(failures[0]?.reason));
    assert.equal(isUniqueViolation(failures[0]?.reason), false);
  });
});
