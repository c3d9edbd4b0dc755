import { Migration } from "@mikro-orm/migrations";
import { schema0006 } from "./schema-0006.ts";

/** Storage quotas, artifact retention and blob deletions. See `schema-0006.ts`. */
export class Migration0006StorageQuotas extends Migration {
  override up(): void {
    for (const statement of schema0006) this.addSql(statement);
  }
}
