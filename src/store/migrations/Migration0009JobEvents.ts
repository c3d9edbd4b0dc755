import { Migration } from "@mikro-orm/migrations";
import { schema0009 } from "./schema-0009.ts";

/** The per-job event log of WatchTrainingJob. See `schema-0009.ts`. */
export class Migration0009JobEvents extends Migration {
  override up(): void {
    for (const statement of schema0009) this.addSql(statement);
  }
}
