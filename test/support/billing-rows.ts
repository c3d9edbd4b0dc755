/**
 * What domain tests of job creation, cancellation and billing start from, on
 * a real database of either backend: a customer with credits and a finalized
 * dataset and package, written through the store's own functions.
 */
import { randomUUID } from "node:crypto";
import { insertCustomer, insertGrant } from "../../src/store/customers.ts";
import type { Database, Sql } from "../../src/store/database.ts";
import { openDatabase } from "../../src/store/database.ts";
import { openMigratedPGlite } from "./database-template.ts";
import type { JobRow, UnitRow } from "../../src/store/jobs.ts";
import { insertJob, insertUnit, listUnitsOfJob } from "../../src/store/jobs.ts";
import { insertUpload, markUploadReady } from "../../src/store/uploads.ts";
import type { UploadTable } from "../../src/store/uploads.ts";
import { createMigratedTestDatabaseUrl } from "./postgres.ts";

/** Both backends, migrated (PGlite as a copy of a migrated cluster, ./database-template.ts). */
const databaseBackends: readonly { name: string; open: () => Promise<Database> }[] = [
  { name: "PGlite", open: () => openMigratedPGlite() },
  { name: "PostgreSQL", open: async () => openDatabase({ url: await createMigratedTestDatabaseUrl() }) },
];

/** The database of the running describe block (open between its `before` and `after`). */
export interface OnBackend {
  readonly db: Database;
}

/** `body` as one describe block per backend, named "`title` on <backend>", on a database of its own. */
export function describeOnEachBackend(title: string, body: (on: OnBackend) => void): void {
  for (const backend of databaseBackends) {
    describe(`${title} on ${backend.name}`, function () {
      this.timeout(60_000);
      let db: Database | undefined;
      before(async () => {
        db = await backend.open();
      });
      after(async () => {
        await db?.close();
      });
      body({
        get db(): Database {
          if (db === undefined) throw new Error("the database is open only while the tests run");
          return db;
        },
      });
    });
  }
}

/** A customer's upload of `table`, ready (or still awaiting its bytes). */
export async function insertCustomerUpload(sql: Sql, table: UploadTable, customerId: string, ready = true): Promise<string> {
  const id = randomUUID();
  await insertUpload(sql, table, {
    id,
    customerId,
    name: table,
    sizeBytes: 1,
    sha256: "0".repeat(64),
    blobKey: `${table}/${customerId}/${id}`,
    uploadExpiresAt: new Date(Date.UTC(2030, 0, 1)),
    extra: table === "datasets" ? "csv" : "train.py",
  }, new Date());
  if (ready) await markUploadReady(sql, table, id, new Date(Date.UTC(2026, 0, 1)));
  return id;
}

/** A customer granted `credits`, with a ready dataset and package. */
export async function insertCustomerWithInputs(sql: Sql, credits: number): Promise<{ customerId: string; datasetId: string; packageId: string }> {
  const customer = await insertCustomer(sql, { id: randomUUID(), email: `${randomUUID()}@example.com`, passwordHash: "x" }, new Date());
  if (credits > 0) await insertGrant(sql, { id: randomUUID(), customerId: customer.id, amount: credits, description: "opening grant" }, customer.created_at);
  return {
    customerId: customer.id,
    datasetId: await insertCustomerUpload(sql, "datasets", customer.id),
    packageId: await insertCustomerUpload(sql, "training_packages", customer.id),
  };
}

/** How many rows of each table job creation writes belong to the customer. */
export async function creationRowCounts(sql: Sql, customerId: string): Promise<{ jobs: number; units: number; idempotencyRecords: number }> {
  const [row] = await sql.query<{ jobs: number; units: number; idempotency_records: number }>(
    `SELECT (SELECT count(*)::int FROM training_jobs WHERE customer_id = $1) AS jobs,
            (SELECT count(*)::int FROM compute_units WHERE customer_id = $1) AS units,
            (SELECT count(*)::int FROM idempotency_records WHERE customer_id = $1) AS idempotency_records`,
    [customerId],
  );
  return { jobs: row!.jobs, units: row!.units, idempotencyRecords: row!.idempotency_records };
}

/** A queued job of the customer with one unit per entry of `kinds` (named `u0`, `u1` …), none depending on another. */
export async function insertJobWithUnits(
  sql: Sql,
  inputs: { customerId: string; datasetId: string; packageId: string },
  kinds: readonly ("cpu" | "gpu")[],
  projectedCostCredits = 0,
): Promise<{ job: JobRow; units: UnitRow[] }> {
  const at = new Date(Date.UTC(2026, 0, 1));
  const job = await insertJob(
    sql,
    {
      id: randomUUID(),
      customer_id: inputs.customerId,
      name: "billed job",
      dataset_id: inputs.datasetId,
      training_package_id: inputs.packageId,
      required_vram_mb: 1024,
      required_disk_mb: 1024,
      max_runtime_seconds: 3600,
      sensitivity: "public",
      projected_cost_credits: projectedCostCredits,
    },
    at,
  );
  for (const [planIndex, kind] of kinds.entries()) {
    await insertUnit(
      sql,
      {
        id: randomUUID(),
        jobId: job.id,
        customerId: inputs.customerId,
        name: `u${planIndex}`,
        planIndex,
        kind,
        dependsOn: [],
        entrypoint: "train.py",
        args: [],
        vramMb: kind === "gpu" ? 1024 : 0,
        diskMb: 1024,
        cpuCores: 1,
        memoryMb: 512,
        maxAttempts: 3,
      },
      at,
    );
  }
  return { job, units: await listUnitsOfJob(sql, job.id) };
}
