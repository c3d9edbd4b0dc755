import { Migration } from "@mikro-orm/migrations";
import { schema0007 } from "./schema-0007.ts";

/** Node isolation and owner controls. See `schema-0007.ts`. */
export class Migration0007NodeIsolation extends Migration {
  override up(): void {
    for (const statement of schema0007) this.addSql(statement);
  }
}
