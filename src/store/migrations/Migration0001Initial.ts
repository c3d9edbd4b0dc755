import { Migration } from "@mikro-orm/migrations";
import { schema0001 } from "./schema-0001.ts";

/**
 * The initial schema. The SQL lives in `schema-0001.ts` so it reads as plain PostgreSQL; this class
 * only hands it to MikroORM's migrator, which runs it in one transaction on both backends.
 */
export class Migration0001Initial extends Migration {
  override up(): void {
    for (const statement of schema0001) this.addSql(statement);
  }

  // No down(): the first migration is never rolled back in place; a fresh database is cheaper.
}
