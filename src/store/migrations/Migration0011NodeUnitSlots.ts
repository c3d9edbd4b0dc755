import { Migration } from "@mikro-orm/migrations";
import { schema0011 } from "./schema-0011.ts";

/** Nodes' unit limit (`max_units`) and the GPUs a unit holds (`gpu_indexes`). See `schema-0011.ts`. */
export class Migration0011NodeUnitSlots extends Migration {
  override up(): void {
    for (const statement of schema0011) this.addSql(statement);
  }
}
