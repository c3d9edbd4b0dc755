/**
 * Migrated databases for tests without initdb and every migration each time: one PGlite cluster per
 * test process is made empty and migrated by the real `openDatabase`, and tests start from copies of
 * it (initdb and the migrations cost seconds per database on a 2-core CI machine, a copy a fraction).
 *
 * Stays right when a migration is added: the template is made in this process from an empty cluster
 * by the same `openDatabase` the product uses (every migration it lists), never read from an earlier
 * run; and `openDatabase` runs the migrator again on every copy, so a copy that lacked one would get
 * it there. Tests of the migrations themselves (test/store/database.test.ts) open empty databases.
 */
import { execFile } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { PGlite } from "@electric-sql/pglite";
import { openDatabase, type Database } from "../../src/store/database.ts";

const execFileAsync = promisify(execFile);

interface PGliteTemplate {
  /** The migrated cluster's directory (closed; only copied from). */
  readonly dir: string;
  /** The same cluster as a tarball, for in-memory databases. */
  readonly dump: Blob;
}

let template: Promise<PGliteTemplate> | undefined;

function pgliteTemplate(): Promise<PGliteTemplate> {
  template ??= (async () => {
    const root = mkdtempSync(join(tmpdir(), "gpu-agent-pg-template-"));
    process.once("exit", () => rmSync(root, { recursive: true, force: true }));
    const dir = join(root, "pgdata");
    await (await openDatabase({ dataDir: dir })).close();
    const cluster = new PGlite(dir);
    try {
      // dumpDataDir before the cluster is up never settles.
      await cluster.waitReady;
      return { dir, dump: await cluster.dumpDataDir("none") };
    } finally {
      await cluster.close();
    }
  })();
  return template;
}

// Registered when this module loads (while mocha loads spec files), so it is a root hook: the template
// is made before the first test, under its own timeout rather than that of whichever test needs it first.
if (typeof before === "function") {
  before(async function makePGliteTemplate() {
    this.timeout(180_000);
    await pgliteTemplate();
  });
}

/** An in-memory PGlite database, migrated (what `openDatabase({})` gives, from a copy). */
export async function openMigratedPGlite(): Promise<Database> {
  return openDatabase({ pgliteTemplate: (await pgliteTemplate()).dump });
}

/** Makes `pgdataDir` (which must not exist) a copy of the migrated cluster, for a control plane's data directory. */
export async function copyMigratedPGlite(pgdataDir: string): Promise<void> {
  // cp -a keeps the modes (0700/0600) and is several times faster than fs.cp on the cluster's ~1,000 files.
  await execFileAsync("cp", ["-a", (await pgliteTemplate()).dir, pgdataDir]);
}
