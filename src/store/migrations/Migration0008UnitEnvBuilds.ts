import { Migration } from "@mikro-orm/migrations";
import { schema0008 } from "./schema-0008.ts";

/** Python environment build time per attempt. See `schema-0008.ts`. */
export class Migration0008UnitEnvBuilds extends Migration {
  override up(): void {
    for (const statement of schema0008) this.addSql(statement);
  }
}
