import { Migration } from "@mikro-orm/migrations";
import { schema0012 } from "./schema-0012.ts";

/** Checkpoints, the latest per unit, and every attempt of a unit with what it resumed from. See `schema-0012.ts`. */
export class Migration0012UnitCheckpoints extends Migration {
  override up(): void {
    for (const statement of schema0012) this.addSql(statement);
  }
}
