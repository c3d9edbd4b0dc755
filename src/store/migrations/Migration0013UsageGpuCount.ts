import { Migration } from "@mikro-orm/migrations";
import { schema0013 } from "./schema-0013.ts";

/** The GPUs each completed unit held, on its usage record (`gpu_count`). See `schema-0013.ts`. */
export class Migration0013UsageGpuCount extends Migration {
  override up(): void {
    for (const statement of schema0013) this.addSql(statement);
  }
}
