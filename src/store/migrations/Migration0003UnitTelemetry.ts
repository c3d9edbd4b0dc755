import { Migration } from "@mikro-orm/migrations";
import { schema0003 } from "./schema-0003.ts";

/** Log tails and progress histories of unit attempts. See `schema-0003.ts`. */
export class Migration0003UnitTelemetry extends Migration {
  override up(): void {
    for (const statement of schema0003) this.addSql(statement);
  }
}
