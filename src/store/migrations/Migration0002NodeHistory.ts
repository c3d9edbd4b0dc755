import { Migration } from "@mikro-orm/migrations";
import { schema0002 } from "./schema-0002.ts";

/** Node history for the placer's scores: attempts completed and lost, datasets fetched. See `schema-0002.ts`. */
export class Migration0002NodeHistory extends Migration {
  override up(): void {
    for (const statement of schema0002) this.addSql(statement);
  }
}
