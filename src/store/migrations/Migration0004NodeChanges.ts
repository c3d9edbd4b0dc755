import { Migration } from "@mikro-orm/migrations";
import { schema0004 } from "./schema-0004.ts";

/** When each node last changed for placement. See `schema-0004.ts`. */
export class Migration0004NodeChanges extends Migration {
  override up(): void {
    for (const statement of schema0004) this.addSql(statement);
  }
}
