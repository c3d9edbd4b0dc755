/**
 * Money and limits, proven against the real control plane on the embedded database (PGlite) and on
 * a real PostgreSQL, where concurrent transactions really race:
 *
 * - 50 simultaneous job creations for one customer (REST, Promise.all): exactly the allowed number
 *   (3 active jobs) are created, the rest are 429 RATE_LIMITED with Retry-After; with a distinct
 *   Idempotency-Key each, the same; with one shared key, exactly one job and 50 answers naming it;
 * - 200 duplicate `Finished` events for one unit, applied concurrently through the job life cycle
 *   (and 200 raw debit inserts): one debit;
 * - after every test, for every customer: the ledger's sum is the balance the API reports, debits
 *   equal usage, and no balance is negative;
 * - the usage and statement CSV exports parse with a strict RFC 4180 parser and hold the rows expected.
 */
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { applyFinished } from "../../src/jobs/lifecycle.ts";
import { insertDebitOnce } from "../../src/store/customers.ts";
import { examplePackageZip, startPlane } from "../limits/plane.ts";
import type { JsonResponse, TestControlPlane } from "../support/control-plane.ts";
import { createCustomer, request, uploadResource } from "../support/control-plane.ts";
import { parseCsv } from "../support/csv.ts";
import { createMigratedTestDatabaseUrl } from "../support/postgres.ts";

const example = join(import.meta.dirname, "..", "..", "examples", "tiny-mlp");

describe("the RFC 4180 test parser", () => {
  it("parses quotes, escaped quotes, commas and line breaks in fields, and refuses malformed input", () => {
    assert.deepEqual(parseCsv('a,b\r\n"x, ""y""","line\r\nbreak"\r\n'), [["a", "b"], ['x, "y"', "line\r\nbreak"]]);
    assert.deepEqual(parseCsv("a,b\r\n,\r\n"), [["a", "b"], ["", ""]]);
    assert.throws(() => parseCsv('a,b\r\nx"y,z\r\n'), /quote inside/);
    assert.throws(() => parseCsv('a,b\r\n"x"y,z\r\n'), /after a closing quote/);
    assert.throws(() => parseCsv('a,b\r\n"x,z\r\n'), /unterminated/);
    assert.throws(() => parseCsv("a,b\r\nx\r\n"), /1 fields/);
  });
});

const backends: { name: string; databaseUrl: () => Promise<string | undefined> }[] = [
  { name: "the embedded database (PGlite)", databaseUrl: async () => undefined },
  { name: "PostgreSQL", databaseUrl: () => createMigratedTestDatabaseUrl() },
];

for (const backend of backends) {
  describe(`money and limits on ${backend.name}`, function () {
    this.timeout(180_000);
    let cp: TestControlPlane;
    let dataset: Record<string, unknown>;
    let pkg: Record<string, unknown>;
    let datasetBytes: Buffer;
    let packageBytes: Buffer;
    /** Every customer a test made, with its key, for the ledger check after each test. */
    const customers = new Map<string, string>();
    const grant = 100_000;

    async function newCustomer(): Promise<{ customerId: string; apiKey: string; dataset: Record<string, unknown>; pkg: Record<string, unknown> }> {
      const c = await createCustomer(cp, grant);
      customers.set(c.customerId, c.apiKey);
      dataset = await uploadResource(cp, c.apiKey, "datasets", "money-dataset", datasetBytes, { format: "csv" });
      pkg = await uploadResource(cp, c.apiKey, "training-packages", "money-package", packageBytes, { entrypoint: "train.py" });
      return { ...c, dataset, pkg };
    }

    const jobBody = (d: Record<string, unknown>, p: Record<string, unknown>, name = "money") => ({
      name,
      dataset_id: d["id"],
      training_package_id: p["id"],
      required_vram_mb: 1000,
      max_runtime_seconds: 120,
    });

    before(async () => {
      const databaseUrl = await backend.databaseUrl();
      cp = await startPlane(databaseUrl === undefined ? {} : { databaseUrl });
      datasetBytes = await readFile(join(example, "dataset.csv"));
      packageBytes = await examplePackageZip();
    });
    after(async () => {
      await cp?.stop();
    });

    afterEach("the ledger sum is the balance, for every customer", async () => {
      const db = cp.plane.deps.db;
      const rows = await db.query<{ id: string; sum: string; debits: string; usage: string }>(
        `SELECT c.id,
                (SELECT COALESCE(sum(amount), 0) FROM ledger_entries l WHERE l.customer_id = c.id)::text AS sum,
                (SELECT COALESCE(-sum(amount), 0) FROM ledger_entries l WHERE l.customer_id = c.id AND kind = 'debit')::text AS debits,
                (SELECT COALESCE(sum(credits), 0) FROM usage_records u WHERE u.customer_id = c.id)::text AS usage
         FROM customers c`,
      );
      assert.ok(rows.length >= customers.size);
      for (const row of rows) {
        const sum = Number(row.sum);
        assert.ok(sum >= 0, `customer ${row.id}: balance ${sum} is negative`);
        assert.equal(Number(row.debits), Number(row.usage), `customer ${row.id}: debits equal the usage records`);
        const apiKey = customers.get(row.id);
        if (apiKey === undefined) continue;
        const auth = { "x-api-key": apiKey };
        const summary = await request(cp, "GET", "/api/v1/customer/usage/summary", { headers: auth });
        assert.equal(summary.status, 200);
        assert.equal(Number(summary.body["credits_balance"]), sum, `customer ${row.id}: usage summary balance`);
        const ledger = await request(cp, "GET", "/api/v1/customer/credits/ledger?limit=100", { headers: auth });
        assert.equal(Number(ledger.body["balance"]), sum, `customer ${row.id}: ledger balance`);
        const listed = (ledger.body["data"] as Record<string, unknown>[]).reduce((acc, e) => acc + Number(e["amount"]), 0);
        assert.equal(listed, sum, `customer ${row.id}: the listed entries add up to the balance`);
      }
    });

    function assertOnlyCreatedOrLimited(answers: JsonResponse[], created: number): void {
      const byStatus = new Map<number, number>();
      for (const a of answers) byStatus.set(a.status, (byStatus.get(a.status) ?? 0) + 1);
      assert.deepEqual(Object.fromEntries(byStatus), { 201: created, 429: answers.length - created }, JSON.stringify(Object.fromEntries(byStatus)));
      for (const a of answers.filter((x) => x.status === 429)) {
        assert.equal((a.body["error"] as Record<string, string>)["code"], "RATE_LIMITED");
        assert.ok(Number(a.headers.get("retry-after")) >= 1, "429 carries Retry-After");
        assert.equal(a.headers.get("x-ratelimit-scope"), "job_creations");
        assert.equal(a.headers.get("x-ratelimit-limit"), "10");
      }
    }

    it("50 simultaneous creations without Idempotency-Key: exactly 3 jobs (the active limit), 47 × 429 RATE_LIMITED", async () => {
      const c = await newCustomer();
      const answers = await Promise.all(
        Array.from({ length: 50 }, (_, i) =>
          request(cp, "POST", "/api/v1/customer/training-jobs", { headers: { "x-api-key": c.apiKey }, body: jobBody(c.dataset, c.pkg, `race-${i}`) }),
        ),
      );
      assertOnlyCreatedOrLimited(answers, 3);
      const [count] = await cp.plane.deps.db.query<{ n: number }>(`SELECT count(*)::int AS n FROM training_jobs WHERE customer_id = $1`, [c.customerId]);
      assert.equal(count!.n, 3);
    });

    it("50 simultaneous creations with a distinct Idempotency-Key each: exactly 3 jobs", async () => {
      const c = await newCustomer();
      const answers = await Promise.all(
        Array.from({ length: 50 }, (_, i) =>
          request(cp, "POST", "/api/v1/customer/training-jobs", {
            headers: { "x-api-key": c.apiKey, "idempotency-key": `money-distinct-${i}-${randomUUID()}` },
            body: jobBody(c.dataset, c.pkg, `distinct-${i}`),
          }),
        ),
      );
      assertOnlyCreatedOrLimited(answers, 3);
      const [records] = await cp.plane.deps.db.query<{ n: number }>(`SELECT count(*)::int AS n FROM idempotency_records WHERE customer_id = $1`, [c.customerId]);
      assert.equal(records!.n, 3, "only created jobs leave an idempotency record");
    });

    it("50 simultaneous creations with one Idempotency-Key: exactly one job, all 50 answers name it", async () => {
      const c = await newCustomer();
      const key = `money-same-${randomUUID()}`;
      const answers = await Promise.all(
        Array.from({ length: 50 }, () =>
          request(cp, "POST", "/api/v1/customer/training-jobs", { headers: { "x-api-key": c.apiKey, "idempotency-key": key }, body: jobBody(c.dataset, c.pkg) }),
        ),
      );
      assert.deepEqual([...new Set(answers.map((a) => a.status))], [201], JSON.stringify(answers.find((a) => a.status !== 201)?.body));
      const ids = new Set(answers.map((a) => a.body["id"]));
      assert.equal(ids.size, 1);
      const [count] = await cp.plane.deps.db.query<{ n: number }>(`SELECT count(*)::int AS n FROM training_jobs WHERE customer_id = $1`, [c.customerId]);
      assert.equal(count!.n, 1);
      // The same key with another body is a conflict, not a second job.
      const conflict = await request(cp, "POST", "/api/v1/customer/training-jobs", {
        headers: { "x-api-key": c.apiKey, "idempotency-key": key },
        body: jobBody(c.dataset, c.pkg, "another body"),
      });
      assert.equal(conflict.status, 409);
      assert.equal((conflict.body["error"] as Record<string, string>)["code"], "IDEMPOTENCY_CONFLICT");
    });

    it("200 duplicate Finished events for one unit, applied concurrently, debit once; the CSV exports show it", async () => {
      const c = await newCustomer();
      const auth = { "x-api-key": c.apiKey };
      // A name that needs CSV quoting and formula neutralising, to prove the exports survive it.
      const name = `=SUM(1,2) "money", test`;
      const created = await request(cp, "POST", "/api/v1/customer/training-jobs", { headers: auth, body: jobBody(c.dataset, c.pkg, name) });
      assert.equal(created.status, 201, JSON.stringify(created.body));
      const jobId = created.body["id"] as string;
      const db = cp.plane.deps.db;
      const [unit] = await db.query<{ id: string; kind: string }>(`SELECT id, kind FROM compute_units WHERE job_id = $1 ORDER BY plan_index LIMIT 1`, [jobId]);
      assert.ok(unit !== undefined);
      // A node (cordoned, so the placer leaves it alone) running attempt 1 of the unit for 90 s. Its
      // heartbeat is fresh: a node that never sent one is silent, and the leader's sweep, when it runs
      // before the Finished events (a loaded machine), would take the unit back and nothing be debited.
      const nodeId = randomUUID();
      await db.query(`INSERT INTO nodes (id, trust_level, state, credential_hash, last_heartbeat_at) VALUES ($1, 'controlled', 'cordoned', $2, now())`, [nodeId, randomUUID()]);
      const now = new Date();
      await db.query(
        `UPDATE compute_units SET status = 'running', node_id = $2, attempt = 1, assigned_at = $3, started_at = $3 WHERE id = $1`,
        [unit.id, nodeId, new Date(now.getTime() - 90_000)],
      );
      await db.query(`UPDATE training_jobs SET status = 'running', started_at = $2 WHERE id = $1`, [jobId, new Date(now.getTime() - 90_000)]);

      const rates = cp.plane.deps.config.rates;
      const result = { outcome: "succeeded" as const, exitCode: 0, error: "", runSeconds: 90 };
      await Promise.all(Array.from({ length: 200 }, () => applyFinished(db, nodeId, { unitId: unit.id, attempt: 1 }, result, rates, now)));
      // The unique index holds even when the state machine is bypassed: 200 raw debit inserts, one row.
      const raw = await Promise.all(
        Array.from({ length: 200 }, () =>
          insertDebitOnce(db, { id: randomUUID(), customerId: c.customerId, amount: 999, jobId, computeUnitId: unit.id, description: "replay" }, now),
        ),
      );
      assert.equal(raw.filter(Boolean).length, 0, "the unit was debited already");

      const debits = await db.query<{ amount: string; description: string }>(
        `SELECT amount::text, description FROM ledger_entries WHERE compute_unit_id = $1 AND kind = 'debit'`,
        [unit.id],
      );
      assert.equal(debits.length, 1, "one debit for the unit");
      // cpu: 1 credit per started minute; 90 s is two started minutes.
      const expected = unit.kind === "cpu" ? 2 * rates.cpuCreditsPerMinute : 2 * rates.gpuCreditsPerMinute;
      assert.equal(Number(debits[0]!.amount), -expected);
      const usage = await db.query<{ credits: string }>(`SELECT credits::text FROM usage_records WHERE compute_unit_id = $1`, [unit.id]);
      assert.equal(usage.length, 1);
      assert.equal(Number(usage[0]!.credits), expected);

      const today = now.toISOString().slice(0, 10);
      const usageCsv = await fetch(`${cp.url}/api/v1/customer/usage/export.csv?date_from=${today}&date_to=${today}`, { headers: auth });
      assert.equal(usageCsv.status, 200);
      assert.match(usageCsv.headers.get("content-type") ?? "", /^text\/csv/);
      assert.ok(usageCsv.headers.get("x-ratelimit-limit") !== null, "CSV answers carry the rate-limit headers too");
      const usageRows = parseCsv(await usageCsv.text());
      assert.deepEqual(usageRows[0], ["date", "job_id", "compute_unit_id", "kind", "run_seconds", "credits", "gpu_count", "gpu_seconds"]);
      assert.equal(usageRows.length, 2, "one usage row, for the one completed unit");
      const gpus = unit.kind === "gpu" ? 1 : 0;
      assert.deepEqual(usageRows[1], [today, jobId, unit.id, unit.kind, usageRows[1]![4], String(expected), String(gpus), usageRows[1]![7]]);
      assert.equal(Number(usageRows[1]![7]), gpus * Number(usageRows[1]![4]), "GPU-seconds: run seconds × the unit's GPUs");
      assert.ok(Math.abs(Number(usageRows[1]![4]) - 90) <= 1.5, `run_seconds ${usageRows[1]![4]}`);

      const statementCsv = await fetch(`${cp.url}/api/v1/customer/credits/statement.csv?date_from=${today}&date_to=${today}`, { headers: auth });
      assert.equal(statementCsv.status, 200);
      const statement = parseCsv(await statementCsv.text());
      assert.deepEqual(statement[0], ["date", "entry_id", "kind", "amount", "balance_after", "description", "job_id", "compute_unit_id"]);
      assert.deepEqual(statement.slice(1).map((r) => [r[2], r[3], r[4]]), [
        ["opening_balance", "0", "0"],
        ["grant", String(grant), String(grant)],
        ["debit", String(-expected), String(grant - expected)],
      ]);
      const debitRow = statement[3]!;
      assert.equal(debitRow[6], jobId);
      assert.equal(debitRow[7], unit.id);
      // The description starts with the job name: quoted, commas and quotes intact, formula neutralised.
      assert.ok(debitRow[5]!.startsWith(`'${name}: `), debitRow[5]);
      assert.ok(statement.slice(2).every((r) => r[0] === today));
    });
  });
}
