/**
 * Opening the database: a PostgreSQL server when a URL is given, embedded PGlite otherwise, both
 * behind MikroORM and both answering the same SQL with the same JavaScript types.
 *
 * Raw SQL goes through MikroORM's Kysely instance with real bind parameters (`$1, $2`), not through
 * `connection.execute()`: that one takes `?` placeholders and inlines the values into the SQL text
 * on the client. Transactions are `em.transactional()`, and `tx.query` runs on the transaction
 * context MikroORM hands out, so entities added later share the same transactions.
 */
import { AsyncLocalStorage } from "node:async_hooks";
import { PGlite, types as pgliteTypes } from "@electric-sql/pglite";
import { Migrator } from "@mikro-orm/migrations";
import { MikroORM, type Options } from "@mikro-orm/postgresql";
import { CompiledQuery, type Kysely, type Transaction as KyselyTransaction } from "kysely";
import pg from "pg";
import { Migration0001Initial } from "./migrations/Migration0001Initial.ts";
import { Migration0002NodeHistory } from "./migrations/Migration0002NodeHistory.ts";
import { Migration0003UnitTelemetry } from "./migrations/Migration0003UnitTelemetry.ts";
import { Migration0004NodeChanges } from "./migrations/Migration0004NodeChanges.ts";
import { Migration0005LoginAttempts } from "./migrations/Migration0005LoginAttempts.ts";
import { Migration0006StorageQuotas } from "./migrations/Migration0006StorageQuotas.ts";
import { Migration0007NodeIsolation } from "./migrations/Migration0007NodeIsolation.ts";
import { Migration0008UnitEnvBuilds } from "./migrations/Migration0008UnitEnvBuilds.ts";
import { Migration0009JobEvents } from "./migrations/Migration0009JobEvents.ts";
import { Migration0010JobGpuNeeds } from "./migrations/Migration0010JobGpuNeeds.ts";
import { Migration0011NodeUnitSlots } from "./migrations/Migration0011NodeUnitSlots.ts";
import { Migration0012UnitCheckpoints } from "./migrations/Migration0012UnitCheckpoints.ts";
import { Migration0013UsageGpuCount } from "./migrations/Migration0013UsageGpuCount.ts";
import { makePrivateDir, tightenTree } from "../platform/private-files.ts";
import { createPGliteDialect } from "./pglite-dialect.ts";

/**
 * Something that runs SQL: the database itself, or one transaction.
 *
 * Parameters are PostgreSQL's `$1, $2`. Accepted values: `string`, `number`, `boolean`, `null`,
 * `Date`, `string[]` (write `$1::text[]` or `$1::uuid[]`), and plain objects, which are sent as
 * their JSON text (write `$1::jsonb`, or insert into a jsonb column). A JSON *array* must be passed
 * as `JSON.stringify(value)`, because arrays are PostgreSQL arrays. `undefined` is rejected.
 *
 * Results: int8 and integer → number (int8 beyond `Number.MAX_SAFE_INTEGER` throws), double
 * precision → number, timestamptz → Date, jsonb → the parsed value, text[]/uuid[] → string[],
 * uuid → string. Identical on both backends.
 */
export interface Sql {
  query<T = Record<string, unknown>>(text: string, params?: readonly unknown[]): Promise<T[]>;
}

/** Transaction isolation levels offered by {@link Database.transaction}. */
export type Isolation = "read committed" | "repeatable read" | "serializable";

/** Options for {@link Database.transaction}. */
export interface TransactionOptions {
  /** Defaults to `"read committed"` (PostgreSQL's default). */
  readonly isolation?: Isolation;
}

/** An open database: raw SQL, transactions, and the MikroORM instance underneath. */
export interface Database extends Sql {
  /** Which backend this is. */
  readonly kind: "postgresql" | "pglite";
  /** The MikroORM instance (migrations, and entities later). */
  readonly orm: MikroORM;
  /**
   * Runs `fn` in one transaction (BEGIN … COMMIT, ROLLBACK when it throws, the error rethrown).
   * Inside `fn` use only `tx`: `db.query` and a nested `db.transaction` throw there, because on
   * PGlite (one connection) they would wait for this transaction forever.
   */
  transaction<T>(fn: (tx: Sql) => Promise<T>, options?: TransactionOptions): Promise<T>;
  /**
   * Who hears which training jobs a transaction changed, once it has ended (src/jobs/job-changes.ts
   * tells them). Kept on the database object, so two control planes in one process (tests) never
   * hear each other's changes.
   */
  readonly jobChangeListeners: Set<(jobIds: readonly string[]) => void>;
  /**
   * Who hears which training jobs got new events (src/store/job-events.ts tells them once the
   * transaction that added them has ended), kept here for the same reason.
   */
  readonly jobEventListeners: Set<(jobIds: readonly string[]) => void>;
  /** Closes MikroORM, then the pool or the PGlite instance. */
  close(): Promise<void>;
}

/** Where to open the database. */
export interface OpenDatabaseOptions {
  /** A PostgreSQL URL (`postgres://user:pass@host:port/db`); unset → embedded PGlite. */
  readonly url?: string;
  /** PGlite only: keep the data in this directory; unset → in memory, gone at close. */
  readonly dataDir?: string;
  /** PostgreSQL only: the most connections in the pool (default 10). */
  readonly poolSize?: number;
  /**
   * PGlite only: start an empty data directory (or memory) from this tarball of another one (PGlite's
   * `dumpDataDir`) instead of an empty cluster. Tests start from a copy of an already migrated cluster,
   * which saves initdb and the migrations; the migrations still run here, so whatever the copy lacks is applied.
   */
  readonly pgliteTemplate?: Blob;
}

/**
 * Opens the database and applies pending migrations (the same ones on both backends).
 * `url` set → PostgreSQL through `pg`; otherwise PGlite, persistent when `dataDir` is set.
 */
export async function openDatabase(options: OpenDatabaseOptions): Promise<Database> {
  if (options.url !== undefined) {
    const orm = await MikroORM.init({
      ...commonOptions,
      clientUrl: options.url,
      pool: { min: 0, max: options.poolSize ?? 10 },
      // Replaces MikroORM's own parsers (which keep dates as strings) for this pool only.
      driverOptions: { types: pgTypeParsers() },
    });
    return finishOpening("postgresql", orm, async () => {});
  }
  // Created private before PGlite sees it: PGlite would make it with the umask's mode.
  if (options.dataDir !== undefined) await makePrivateDir(options.dataDir);
  const pglite = new PGlite(options.dataDir ?? "memory://", {
    parsers: pgliteParsers,
    ...(options.pgliteTemplate === undefined ? {} : { loadDataDir: options.pgliteTemplate }),
  });
  try {
    if (options.dataDir !== undefined) {
      // PGlite's initdb chmods the new cluster's files to 0666, whatever the umask; the files PostgreSQL
      // makes afterwards are 0600. So after the first start this walk only confirms (about 1,000 files).
      await pglite.waitReady;
      await tightenTree(options.dataDir);
    }
    const orm = await MikroORM.init({
      ...commonOptions,
      dbName: "postgres",
      // A dialect object makes MikroORM build its Kysely client on it instead of on `pg`.
      driverOptions: createPGliteDialect(pglite),
    });
    return await finishOpening("pglite", orm, () => pglite.close());
  } catch (e) {
    await pglite.close();
    throw e;
  }
}

/** The migrations, in order. Listed rather than discovered, so no cwd or glob matters. */
const migrationsList = [
  { name: "Migration0001Initial", class: Migration0001Initial },
  { name: "Migration0002NodeHistory", class: Migration0002NodeHistory },
  { name: "Migration0003UnitTelemetry", class: Migration0003UnitTelemetry },
  { name: "Migration0004NodeChanges", class: Migration0004NodeChanges },
  { name: "Migration0005LoginAttempts", class: Migration0005LoginAttempts },
  { name: "Migration0006StorageQuotas", class: Migration0006StorageQuotas },
  { name: "Migration0007NodeIsolation", class: Migration0007NodeIsolation },
  { name: "Migration0008UnitEnvBuilds", class: Migration0008UnitEnvBuilds },
  { name: "Migration0009JobEvents", class: Migration0009JobEvents },
  { name: "Migration0010JobGpuNeeds", class: Migration0010JobGpuNeeds },
  { name: "Migration0011NodeUnitSlots", class: Migration0011NodeUnitSlots },
  { name: "Migration0012UnitCheckpoints", class: Migration0012UnitCheckpoints },
  { name: "Migration0013UsageGpuCount", class: Migration0013UsageGpuCount },
];

const commonOptions = {
  entities: [],
  discovery: { warnWhenNoEntities: false },
  extensions: [Migrator],
  migrations: {
    migrationsList,
    snapshot: false,
    silent: true,
    transactional: true,
    allOrNothing: true,
    // `true` would run `set session_replication_role`, which needs a superuser.
    disableForeignKeys: false,
  },
  debug: false,
} satisfies Options;

async function finishOpening(
  kind: Database["kind"],
  orm: MikroORM,
  closeBackend: () => Promise<void>,
): Promise<Database> {
  try {
    await orm.migrator.up();
  } catch (e) {
    await orm.close(true);
    await closeBackend();
    throw e;
  }

  const kysely = (): Kysely<unknown> => orm.em.getConnection().getClient<unknown>();
  // Marks the async context of a running `transaction` callback, so that a stray `db.query` there
  // fails at once instead of deadlocking PGlite's single connection (or escaping the transaction
  // on PostgreSQL). The flag is cleared when the transaction ends, for work that outlives it.
  const inTransaction = new AsyncLocalStorage<{ active: boolean }>();
  const refuseInsideTransaction = (what: string): void => {
    if (inTransaction.getStore()?.active === true) {
      throw new Error(`${what} inside a transaction callback: use the transaction's tx.query`);
    }
  };
  let closed = false;

  return {
    kind,
    orm,
    async query<T>(text: string, params: readonly unknown[] = []): Promise<T[]> {
      refuseInsideTransaction("db.query");
      return run<T>(kysely(), text, params);
    },
    async transaction<T>(fn: (tx: Sql) => Promise<T>, options: TransactionOptions = {}): Promise<T> {
      refuseInsideTransaction("db.transaction");
      const em = orm.em.fork();
      return em.transactional(
        async (txEm) => {
          const ctx = txEm.getTransactionContext<KyselyTransaction<unknown>>();
          if (ctx === undefined) throw new Error("MikroORM opened no transaction context");
          const tx: Sql = { query: <R>(text: string, params: readonly unknown[] = []) => run<R>(ctx, text, params) };
          const marker = { active: true };
          try {
            return await inTransaction.run(marker, () => fn(tx));
          } finally {
            marker.active = false;
          }
        },
        { isolationLevel: options.isolation ?? "read committed" },
      );
    },
    jobChangeListeners: new Set(),
    jobEventListeners: new Set(),
    async close(): Promise<void> {
      if (closed) return;
      closed = true;
      // MikroORM first: it still holds the dialect's connection; PGlite stalls exit if left open.
      await orm.close(true);
      await closeBackend();
    },
  };
}

async function run<T>(executor: Kysely<unknown>, text: string, params: readonly unknown[]): Promise<T[]> {
  const result = await executor.executeQuery<T>(CompiledQuery.raw(text, params.map(toParameter)));
  return result.rows;
}

function toParameter(value: unknown, index: number): unknown {
  if (value === undefined) throw new TypeError(`SQL parameter $${index + 1} is undefined (pass null)`);
  if (typeof value === "object" && value !== null && !Array.isArray(value) && !(value instanceof Date)) {
    const proto: unknown = Object.getPrototypeOf(value);
    // JSON text, so both drivers send the same thing and the SQL decides the type (`::jsonb`).
    if (proto === Object.prototype || proto === null) return JSON.stringify(value);
  }
  return value;
}

// ---- Result types -------------------------------------------------------------------------------

const oid = {
  int8: 20,
  int8Array: 1016,
  textArray: 1009,
  timestamptz: 1184,
  timestamptzArray: 1185,
} as const;

/** int8 as a JS number; refuses to round silently. */
function parseInt8(text: string): number {
  const n = Number(text);
  if (!Number.isSafeInteger(n)) throw new RangeError(`int8 value ${text} is beyond Number.MAX_SAFE_INTEGER`);
  return n;
}

/** `pg` parsers for our pool: pg's own defaults, except int8 (number) and timestamptz (Date). */
function pgTypeParsers(): pg.CustomTypesConfig {
  // pg's typings only name scalar type ids; array ids are valid at run time.
  const builtin = pg.types.getTypeParser as (id: number, format?: "text" | "binary") => (text: string) => unknown;
  const textArray = builtin(oid.textArray) as (s: string) => (string | null)[];
  const timestamptz = builtin(oid.timestamptz) as (s: string) => Date;
  const overrides = new Map<number, (text: string) => unknown>([
    [oid.int8, parseInt8],
    [oid.int8Array, (s) => textArray(s).map((v) => (v === null ? null : parseInt8(v)))],
    [oid.timestamptz, timestamptz],
    [oid.timestamptzArray, (s) => textArray(s).map((v) => (v === null ? null : timestamptz(v)))],
  ]);
  return {
    getTypeParser: ((id: number, format?: "text" | "binary") =>
      overrides.get(id) ?? builtin(id, format)) as pg.CustomTypesConfig["getTypeParser"],
  };
}

/** PGlite already returns Date, parsed JSON and string arrays; only int8 needs the range check. */
const pgliteParsers = {
  [oid.int8]: parseInt8,
  [oid.int8Array]: (s: string) => pgliteTypes.arrayParser(s, parseInt8, oid.int8Array) as unknown,
};

// ---- Errors -------------------------------------------------------------------------------------

/**
 * The SQLSTATE of a database error (e.g. `"23505"`), looking through MikroORM's wrappers and
 * `cause` chains; undefined for anything else. Works for `pg` and PGlite errors alike.
 */
export function sqlStateOf(error: unknown): string | undefined {
  let e: unknown = error;
  for (let depth = 0; depth < 5 && typeof e === "object" && e !== null; depth++) {
    const { code, sqlState, cause } = e as { code?: unknown; sqlState?: unknown; cause?: unknown };
    for (const candidate of [sqlState, code]) {
      if (typeof candidate === "string" && /^[0-9A-Z]{5}$/.test(candidate)) return candidate;
    }
    e = cause;
  }
  return undefined;
}

/** True when `error` is a unique-constraint violation (SQLSTATE 23505). */
export function isUniqueViolation(error: unknown): boolean {
  return sqlStateOf(error) === "23505";
}

/** True when a serializable transaction lost a conflict (SQLSTATE 40001) and may be retried. */
export function isSerializationFailure(error: unknown): boolean {
  return sqlStateOf(error) === "40001";
}
