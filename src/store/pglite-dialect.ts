/**
 * A Kysely dialect over one embedded PGlite instance, so MikroORM (whose SQL drivers run on Kysely)
 * can use PGlite as if it were a PostgreSQL server.
 *
 * PGlite is a single session: whatever runs on it runs inside whatever transaction is open. So the
 * driver hands its one connection to one holder at a time (a FIFO lock held from acquire to
 * release), which turns "a transaction on a pooled connection" into "a transaction that queues
 * everybody else". Savepoints are plain SQL, which the nested transactions of MikroORM's migrator
 * need. Everything that is PostgreSQL-specific above the driver (adapter, query compiler,
 * introspector) is Kysely's own.
 */
import type { PGlite, Results } from "@electric-sql/pglite";
import {
  CompiledQuery,
  PostgresAdapter,
  PostgresIntrospector,
  PostgresQueryCompiler,
  type DatabaseConnection,
  type DatabaseIntrospector,
  type Dialect,
  type DialectAdapter,
  type Driver,
  type Kysely,
  type QueryCompiler,
  type QueryResult,
  type TransactionSettings,
} from "kysely";

/** Builds the Kysely dialect for one PGlite instance; the caller owns (and closes) the instance. */
export function createPGliteDialect(pglite: PGlite): Dialect {
  return {
    createAdapter: (): DialectAdapter => new PostgresAdapter(),
    createDriver: (): Driver => createPGliteDriver(pglite),
    createIntrospector: (db: Kysely<unknown>): DatabaseIntrospector => new PostgresIntrospector(db),
    createQueryCompiler: (): QueryCompiler => new PostgresQueryCompiler(),
  };
}

function createPGliteDriver(pglite: PGlite): Driver {
  // The tail of the lock queue: each acquirer waits for the previous holder's release.
  let tail: Promise<void> = Promise.resolve();
  const releases = new WeakMap<DatabaseConnection, () => void>();

  const connection = (): DatabaseConnection => {
    const conn: DatabaseConnection = {
      async executeQuery<R>(query: CompiledQuery): Promise<QueryResult<R>> {
        const result: Results<R> = await pglite.query<R>(query.sql, [...query.parameters]);
        // PGlite says 0 affected rows for statements that are not writes, where `pg` says nothing
        // and MikroORM falls back to the row count. Leaving out zeros gives the same numbers.
        const affected = result.affectedRows ?? 0;
        return affected > 0 ? { rows: result.rows, numAffectedRows: BigInt(affected) } : { rows: result.rows };
      },
      async *streamQuery<R>(query: CompiledQuery, chunkSize: number): AsyncIterableIterator<QueryResult<R>> {
        // No cursors over the embedded protocol: read everything, hand it out in chunks.
        const { rows } = await conn.executeQuery<R>(query);
        const size = Math.max(1, chunkSize);
        for (let i = 0; i < rows.length; i += size) yield { rows: rows.slice(i, i + size) };
      },
    };
    return conn;
  };

  const run = async (conn: DatabaseConnection, sql: string): Promise<void> => {
    await conn.executeQuery(CompiledQuery.raw(sql));
  };

  return {
    async init(): Promise<void> {
      await pglite.waitReady;
    },
    async acquireConnection(): Promise<DatabaseConnection> {
      const previous = tail;
      let release!: () => void;
      tail = new Promise<void>((resolve) => (release = resolve));
      await previous;
      const conn = connection();
      releases.set(conn, release);
      return conn;
    },
    async releaseConnection(conn: DatabaseConnection): Promise<void> {
      releases.get(conn)?.();
      releases.delete(conn);
    },
    async beginTransaction(conn: DatabaseConnection, settings: TransactionSettings): Promise<void> {
      // Same statement Kysely's PostgresDriver sends.
      let sql = "begin";
      if (settings.isolationLevel !== undefined || settings.accessMode !== undefined) {
        sql = "start transaction";
        if (settings.isolationLevel !== undefined) sql += ` isolation level ${settings.isolationLevel}`;
        if (settings.accessMode !== undefined) sql += ` ${settings.accessMode}`;
      }
      await run(conn, sql);
    },
    async commitTransaction(conn: DatabaseConnection): Promise<void> {
      await run(conn, "commit");
    },
    async rollbackTransaction(conn: DatabaseConnection): Promise<void> {
      await run(conn, "rollback");
    },
    async savepoint(conn: DatabaseConnection, name: string): Promise<void> {
      await run(conn, `savepoint ${quoteIdentifier(name)}`);
    },
    async rollbackToSavepoint(conn: DatabaseConnection, name: string): Promise<void> {
      await run(conn, `rollback to savepoint ${quoteIdentifier(name)}`);
    },
    async releaseSavepoint(conn: DatabaseConnection, name: string): Promise<void> {
      await run(conn, `release savepoint ${quoteIdentifier(name)}`);
    },
    async destroy(): Promise<void> {
      // The PGlite instance belongs to the caller, which closes it after MikroORM has let go.
    },
  };
}

function quoteIdentifier(name: string): string {
  return `"${name.replaceAll('"', '""')}"`;
}
