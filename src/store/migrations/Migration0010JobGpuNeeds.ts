import { Migration } from "@mikro-orm/migrations";
import { schema0010 } from "./schema-0010.ts";

/** Jobs' and units' GPU count and constraints, the queue timeout and the pending reason. See `schema-0010.ts`. */
export class Migration0010JobGpuNeeds extends Migration {
  override up(): void {
    for (const statement of schema0010) this.addSql(statement);
  }
}
