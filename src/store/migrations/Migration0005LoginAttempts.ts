import { Migration } from "@mikro-orm/migrations";
import { schema0005 } from "./schema-0005.ts";

/** Sign-in failures per (address, e-mail) pair and per address. See `schema-0005.ts`. */
export class Migration0005LoginAttempts extends Migration {
  override up(): void {
    for (const statement of schema0005) this.addSql(statement);
  }
}
