import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import http from "node:http";
import { createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { csvBatchRows } from "../../src/api/customer/usage.ts";
import { CustomerService } from "../../src/gen/gpuagent/customer/v1/customer_pb.ts";
import { hashSecret, newSecret } from "../../src/platform/ids.ts";
import { insertApiKey } from "../../src/store/customers.ts";
import type { Sql } from "../../src/store/database.ts";
import type { TestControlPlane } from "../support/control-plane.ts";
import { createCustomer, request, startTestControlPlane } from "../support/control-plane.ts";
import { parseCsv } from "../support/csv.ts";

const dayMs = 86_400_000;
const dangerousJobName = "=cmd|' /C calc'!A0";

/** YYYY-MM-DD (UTC). */
const day = (ms: number) => new Date(ms).toISOString().slice(0, 10);

/** A customer's dataset and package, so jobs can be inserted under it. */
async function seedUploads(sql: Sql, customerId: string): Promise<{ datasetId: string; packageId: string }> {
  const datasetId = randomUUID();
  const packageId = randomUUID();
  await sql.query(
    `INSERT INTO datasets (id, customer_id, name, size_bytes, sha256, status, blob_key, upload_expires_at)
     VALUES ($1, $2, 'd', 1, 'h', 'ready', 'k', now())`,
    [datasetId, customerId],
  );
  await sql.query(
    `INSERT INTO training_packages (id, customer_id, name, size_bytes, sha256, entrypoint, status, blob_key, upload_expires_at)
     VALUES ($1, $2, 'p', 1, 'h', 'train.py', 'ready', 'k', now())`,
    [packageId, customerId],
  );
  return { datasetId, packageId };
}

async function seedJob(sql: Sql, customerId: string, name: string): Promise<string> {
  const { datasetId, packageId } = await seedUploads(sql, customerId);
  const jobId = randomUUID();
  await sql.query(
    `INSERT INTO training_jobs (id, customer_id, name, dataset_id, training_package_id, status,
       required_vram_mb, required_disk_mb, max_runtime_seconds, sensitivity)
     VALUES ($1, $2, $3, $4, $5, 'completed', 1024, 1024, 60, 'public')`,
    [jobId, customerId, name, datasetId, packageId],
  );
  return jobId;
}

/** A completed unit with its usage record and its debit, as completion writes them, at `at`. */
async function seedCompletedUnit(
  sql: Sql,
  unit: { customerId: string; jobId: string; jobName: string; name: string; kind: "cpu" | "gpu"; gpuCount?: number; runSeconds: number; credits: number; at: Date },
): Promise<string> {
  const gpuCount = unit.gpuCount ?? (unit.kind === "gpu" ? 1 : 0);
  const unitId = randomUUID();
  await sql.query(
    `INSERT INTO compute_units (id, job_id, customer_id, name, kind, status, entrypoint, required_gpu_count)
     VALUES ($1, $2, $3, $4, $5, 'completed', 'train.py', $6)`,
    [unitId, unit.jobId, unit.customerId, unit.name, unit.kind, gpuCount],
  );
  await sql.query(
    `INSERT INTO usage_records (id, customer_id, job_id, compute_unit_id, kind, gpu_count, run_seconds, credits, created_at)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`,
    [randomUUID(), unit.customerId, unit.jobId, unitId, unit.kind, gpuCount, unit.runSeconds, unit.credits, unit.at],
  );
  await sql.query(
    `INSERT INTO ledger_entries (id, customer_id, amount, kind, description, job_id, compute_unit_id, created_at)
     VALUES ($1, $2, $3, 'debit', $4, $5, $6, $7)`,
    [
      randomUUID(),
      unit.customerId,
      -unit.credits,
      `${unit.jobName}: ${unit.name} (${unit.kind}, ${Math.ceil(unit.runSeconds)} s)`,
      unit.jobId,
      unitId,
      unit.at,
    ],
  );
  return unitId;
}

async function seedGrant(sql: Sql, customerId: string, amount: number, description: string, at: Date): Promise<string> {
  const id = randomUUID();
  await sql.query(`INSERT INTO ledger_entries (id, customer_id, amount, kind, description, created_at) VALUES ($1, $2, $3, 'grant', $4, $5)`, [
    id,
    customerId,
    amount,
    description,
    at,
  ]);
  return id;
}

/** A raw response: status, headers and the exact text, so CRLFs and quoting are visible. */
async function rawGet(cp: TestControlPlane, path: string, apiKey: string): Promise<{ status: number; headers: Headers; text: string }> {
  const res = await fetch(cp.url + path, { headers: { "x-api-key": apiKey } });
  return { status: res.status, headers: res.headers, text: await res.text() };
}

/** A GET read off the socket: every 'data' event counted, so a streamed body shows its chunks. */
function rawChunkedGet(url: string, apiKey: string): Promise<{ status: number; headers: http.IncomingHttpHeaders; text: string; dataEvents: number }> {
  return new Promise((resolve, reject) => {
    http
      .get(url, { headers: { "x-api-key": apiKey } }, (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (c: Buffer) => chunks.push(c));
        res.on("end", () => resolve({ status: res.statusCode ?? 0, headers: res.headers, text: Buffer.concat(chunks).toString("utf8"), dataEvents: chunks.length }));
        res.on("error", reject);
      })
      .on("error", reject);
  });
}

/** CSV records of a document whose fields hold no line breaks (true of every fixture here). */
function lines(text: string): string[] {
  assert.ok(text.endsWith("\r\n"), "the last record ends in CRLF");
  assert.equal(text.replaceAll("\r\n", "").includes("\n"), false, "no bare LF line ends");
  return text.slice(0, -2).split("\r\n");
}

describe("usage and credit reports (REST, real control plane)", () => {
  let cp: TestControlPlane;
  let today: number;
  const alice = { customerId: "", apiKey: "", jobId: "", units: [] as string[], grants: [] as string[] };
  const bob = { customerId: "", apiKey: "", jobId: "", unitId: "" };
  let noUsageKey = "";

  before(async () => {
    cp = await startTestControlPlane();
    const db = cp.plane.deps.db;
    today = Math.floor(cp.plane.deps.clock.now() / dayMs) * dayMs;
    const at = (daysAgo: number, hour: number) => new Date(today - daysAgo * dayMs + hour * 3_600_000);

    // No opening grant through the API: the grants below carry chosen dates.
    Object.assign(alice, await createCustomer(cp, 0));
    Object.assign(bob, await createCustomer(cp, 0));

    alice.jobId = await seedJob(db, alice.customerId, dangerousJobName);
    alice.grants.push(await seedGrant(db, alice.customerId, 1000, "welcome", at(40, 9)));
    const unit = (name: string, kind: "cpu" | "gpu", runSeconds: number, credits: number, when: Date) =>
      seedCompletedUnit(db, { customerId: alice.customerId, jobId: alice.jobId, jobName: dangerousJobName, name, kind, runSeconds, credits, at: when });
    // Long before any report window: only in the statement's opening balance.
    alice.units.push(await unit("warmup", "gpu", 60, 7, at(100, 12)));
    alice.grants.push(await seedGrant(db, alice.customerId, 50, "top-up, thanks", at(5, 8)));
    alice.units.push(await unit("train", "gpu", 12.2, 5, at(2, 10)));
    alice.units.push(await unit("prep", "cpu", 3.5, 1, at(2, 11)));
    alice.units.push(await unit("eval", "gpu", 0.25, 3, at(0, 0)));

    bob.jobId = await seedJob(db, bob.customerId, "bob-private-job");
    await seedGrant(db, bob.customerId, 500, "bob grant", at(40, 9));
    bob.unitId = await seedCompletedUnit(db, { customerId: bob.customerId, jobId: bob.jobId, jobName: "bob-private-job", name: "train", kind: "gpu", runSeconds: 30, credits: 9, at: at(2, 10) });

    noUsageKey = newSecret("sk_test_");
    await insertApiKey(db, {
      id: randomUUID(),
      customerId: alice.customerId,
      name: "no usage",
      prefix: noUsageKey.slice(0, 12),
      keyHash: hashSecret(noUsageKey),
      scopes: ["dataset:write", "training:write"],
    });
  });

  after(async () => {
    await cp?.stop();
  });

  describe("GET /customer/usage/daily", () => {
    it("returns one entry per UTC day, oldest first, ending today, zero days included", async () => {
      const res = await request(cp, "GET", "/api/v1/customer/usage/daily?days=7", { headers: { "x-api-key": alice.apiKey } });
      assert.equal(res.status, 200, JSON.stringify(res.body));
      const data = res.body["data"] as Record<string, unknown>[];
      assert.deepEqual(
        data.map((d) => d["date"]),
        Array.from({ length: 7 }, (_, i) => day(today - (6 - i) * dayMs)),
      );
      const zero = { compute_units_completed: 0, gpu_seconds: "0", cpu_seconds: "0", credits_debited: "0" };
      const expected = data.map((d) => ({ date: d["date"], ...zero }));
      // Two days ago: 12.2 s of GPU rounds up to 13, 3.5 s of CPU to 4.
      expected[4] = { date: day(today - 2 * dayMs), compute_units_completed: 2, gpu_seconds: "13", cpu_seconds: "4", credits_debited: "6" };
      expected[6] = { date: day(today), compute_units_completed: 1, gpu_seconds: "1", cpu_seconds: "0", credits_debited: "3" };
      assert.deepEqual(data, expected);
    });

    const dayCases = [
      { name: "no days parameter means 30 days", query: "", status: 200, length: 30 },
      { name: "days=0 is unset and means 30 days", query: "?days=0", status: 200, length: 30 },
      { name: "days=1 is today alone", query: "?days=1", status: 200, length: 1 },
      { name: "days=90 is the most allowed", query: "?days=90", status: 200, length: 90 },
      { name: "days=91 is refused", query: "?days=91", status: 400, code: "VALIDATION_FAILED" },
      { name: "a negative days is refused", query: "?days=-1", status: 400, code: "VALIDATION_FAILED" },
    ];
    for (const tc of dayCases) {
      it(`answers ${tc.status}: ${tc.name}`, async () => {
        const res = await request(cp, "GET", `/api/v1/customer/usage/daily${tc.query}`, { headers: { "x-api-key": alice.apiKey } });
        assert.equal(res.status, tc.status, JSON.stringify(res.body));
        if (tc.code !== undefined) assert.equal((res.body["error"] as Record<string, unknown>)["code"], tc.code);
        if (tc.length !== undefined) {
          const data = res.body["data"] as Record<string, unknown>[];
          assert.equal(data.length, tc.length);
          assert.equal(data.at(-1)?.["date"], day(today));
        }
      });
    }

    it("never counts another customer's usage", async () => {
      const res = await request(cp, "GET", "/api/v1/customer/usage/daily?days=3", { headers: { "x-api-key": bob.apiKey } });
      assert.equal(res.status, 200);
      const data = res.body["data"] as Record<string, unknown>[];
      assert.deepEqual(
        data.map((d) => [d["compute_units_completed"], d["credits_debited"]]),
        [[1, "9"], [0, "0"], [0, "0"]],
      );
    });
  });

  describe("GET /customer/usage/export.csv", () => {
    it("answers 200 text/csv for the last 30 days when called with no parameters", async () => {
      const res = await rawGet(cp, "/api/v1/customer/usage/export.csv", alice.apiKey);
      assert.equal(res.status, 200, res.text);
      assert.equal(res.headers.get("content-type"), "text/csv; charset=utf-8");
      const from = day(today - 29 * dayMs);
      assert.equal(res.headers.get("content-disposition"), `attachment; filename="usage-${from}-${day(today)}.csv"`);
      const [a, b, c] = alice.units.slice(1);
      assert.deepEqual(lines(res.text), [
        "date,job_id,compute_unit_id,kind,run_seconds,credits,gpu_count,gpu_seconds",
        `${day(today - 2 * dayMs)},${alice.jobId},${a},gpu,12.2,5,1,12.2`,
        `${day(today - 2 * dayMs)},${alice.jobId},${b},cpu,3.5,1,0,0`,
        `${day(today)},${alice.jobId},${c},gpu,0.25,3,1,0.25`,
      ]);
    });

    it("includes both bounds of an explicit range and nothing outside it", async () => {
      const d = day(today - 2 * dayMs);
      const res = await rawGet(cp, `/api/v1/customer/usage/export.csv?date_from=${d}&date_to=${d}`, alice.apiKey);
      assert.equal(res.status, 200, res.text);
      assert.equal(res.headers.get("content-disposition"), `attachment; filename="usage-${d}-${d}.csv"`);
      assert.equal(lines(res.text).length, 3);
    });

    it("never shows another customer's usage", async () => {
      const res = await rawGet(cp, "/api/v1/customer/usage/export.csv", alice.apiKey);
      assert.equal(res.text.includes(bob.jobId), false);
      assert.equal(res.text.includes(bob.unitId), false);
      const bobs = await rawGet(cp, "/api/v1/customer/usage/export.csv", bob.apiKey);
      assert.deepEqual(lines(bobs.text).slice(1), [`${day(today - 2 * dayMs)},${bob.jobId},${bob.unitId},gpu,30,9,1,30`]);
    });
  });

  describe("GPU-seconds of multi-GPU units", () => {
    // One unit per customer, 10.5 s on N GPUs: every report counts N GPU-seconds per second it ran.
    for (const gpus of [1, 2, 8]) {
      it(`counts a ${gpus}-GPU unit's 10.5 s as ${Math.ceil(10.5 * gpus)} GPU-seconds in the summary and the day, and ${10.5 * gpus} in its CSV row`, async () => {
        const db = cp.plane.deps.db;
        const customer = await createCustomer(cp, 0);
        const jobId = await seedJob(db, customer.customerId, `gpus-${gpus}`);
        const unitId = await seedCompletedUnit(db, { customerId: customer.customerId, jobId, jobName: `gpus-${gpus}`, name: "train", kind: "gpu", gpuCount: gpus, runSeconds: 10.5, credits: 10 * gpus, at: new Date(today + 60_000) });
        const headers = { "x-api-key": customer.apiKey };
        const summary = await request(cp, "GET", "/api/v1/customer/usage/summary", { headers });
        assert.equal(summary.status, 200, JSON.stringify(summary.body));
        assert.equal(summary.body["gpu_seconds"], String(Math.ceil(10.5 * gpus)));
        const daily = await request(cp, "GET", "/api/v1/customer/usage/daily?days=1", { headers });
        assert.deepEqual((daily.body["data"] as Record<string, unknown>[]).map((d) => d["gpu_seconds"]), [String(Math.ceil(10.5 * gpus))]);
        const csv = await rawGet(cp, `/api/v1/customer/usage/export.csv?date_from=${day(today)}&date_to=${day(today)}`, customer.apiKey);
        assert.deepEqual(lines(csv.text).slice(1), [`${day(today)},${jobId},${unitId},gpu,10.5,${10 * gpus},${gpus},${10.5 * gpus}`]);
      });
    }
  });

  describe("date ranges of both CSV exports", () => {
    const d = (daysAgo: number) => day(today - daysAgo * dayMs);
    const rangeCases = () => [
      { name: "exactly 90 days is allowed", query: `date_from=${d(89)}&date_to=${d(0)}`, status: 200 },
      { name: "91 days is too large", query: `date_from=${d(90)}&date_to=${d(0)}`, status: 400, code: "EXPORT_RANGE_TOO_LARGE" },
      { name: "a year is too large", query: `date_from=${d(365)}&date_to=${d(0)}`, status: 400, code: "EXPORT_RANGE_TOO_LARGE" },
      { name: "a lone date_from far back is too large", query: `date_from=${d(120)}`, status: 400, code: "EXPORT_RANGE_TOO_LARGE" },
      { name: "a lone date_to is allowed", query: `date_to=${d(3)}`, status: 200 },
      { name: "date_from after date_to is refused", query: `date_from=${d(0)}&date_to=${d(1)}`, status: 400, code: "VALIDATION_FAILED" },
      { name: "a day that does not exist is refused", query: "date_from=2026-02-30&date_to=2026-03-01", status: 400, code: "VALIDATION_FAILED" },
      { name: "a month 13 is refused", query: "date_from=2026-13-01&date_to=2026-12-31", status: 400, code: "VALIDATION_FAILED" },
      { name: "an unpadded date is refused", query: "date_from=2026-1-01&date_to=2026-01-31", status: 400, code: "VALIDATION_FAILED" },
      { name: "a timestamp is refused", query: `date_from=${d(3)}T00:00:00Z`, status: 400, code: "VALIDATION_FAILED" },
      { name: "a word is refused", query: "date_to=yesterday", status: 400, code: "VALIDATION_FAILED" },
    ];
    for (const path of ["/api/v1/customer/usage/export.csv", "/api/v1/customer/credits/statement.csv"]) {
      it(`${path} applies the 90-day limit and refuses bad dates`, async () => {
        for (const tc of rangeCases()) {
          const res = await rawGet(cp, `${path}?${tc.query}`, alice.apiKey);
          assert.equal(res.status, tc.status, `${tc.name}: ${res.text}`);
          if (tc.code === undefined) {
            assert.equal(res.headers.get("content-type"), "text/csv; charset=utf-8", tc.name);
          } else {
            assert.equal((JSON.parse(res.text) as { error: { code: string } }).error.code, tc.code, tc.name);
          }
        }
      });
    }
  });

  describe("GET /customer/credits/statement.csv", () => {
    it("answers 200 text/csv when called with no parameters", async () => {
      const res = await rawGet(cp, "/api/v1/customer/credits/statement.csv", alice.apiKey);
      assert.equal(res.status, 200, res.text);
      assert.equal(res.headers.get("content-type"), "text/csv; charset=utf-8");
      assert.match(res.headers.get("content-disposition") ?? "", /^attachment; filename="credit-statement-\d{4}-\d{2}-\d{2}-\d{4}-\d{2}-\d{2}\.csv"$/);
      // The 40-day-old grant and the 100-day-old debit are before the window: 1000 - 7.
      assert.equal(lines(res.text)[1], `${day(today - 29 * dayMs)},,opening_balance,0,993,opening balance,,`);
    });

    it("opens with the balance before the range and keeps a running balance", async () => {
      const from = day(today - 10 * dayMs);
      const res = await rawGet(cp, `/api/v1/customer/credits/statement.csv?date_from=${from}&date_to=${day(today)}`, alice.apiKey);
      assert.equal(res.status, 200, res.text);
      const rows = lines(res.text);
      const [unitA, unitB, unitC] = alice.units.slice(1) as [string, string, string];
      const topUp = alice.grants[1]!;
      const ids = rows.slice(2).map((r) => r.split(",")[1]);
      assert.equal(ids.length, 4);
      const [debitA, debitB, debitC] = ids.slice(1) as [string, string, string];
      const desc = (name: string, kind: string, s: number) => `"'${dangerousJobName}: ${name} (${kind}, ${s} s)"`;
      assert.deepEqual(rows, [
        "date,entry_id,kind,amount,balance_after,description,job_id,compute_unit_id",
        `${from},,opening_balance,0,993,opening balance,,`,
        `${day(today - 5 * dayMs)},${topUp},grant,50,1043,"top-up, thanks",,`,
        `${day(today - 2 * dayMs)},${debitA},debit,-5,1038,${desc("train", "gpu", 13)},${alice.jobId},${unitA}`,
        `${day(today - 2 * dayMs)},${debitB},debit,-1,1037,${desc("prep", "cpu", 4)},${alice.jobId},${unitB}`,
        `${day(today)},${debitC},debit,-3,1034,${desc("eval", "gpu", 1)},${alice.jobId},${unitC}`,
      ]);
      // The statement's closing balance is the ledger's balance.
      const ledger = await request(cp, "GET", "/api/v1/customer/credits/ledger", { headers: { "x-api-key": alice.apiKey } });
      assert.equal(ledger.body["balance"], "1034");
    });

    it("escapes a job name written as a spreadsheet formula", async () => {
      const res = await rawGet(cp, "/api/v1/customer/credits/statement.csv", alice.apiKey);
      assert.ok(res.text.includes(`"'=cmd|' /C calc'!A0: train (gpu, 13 s)"`), res.text);
      // No cell anywhere starts with a bare formula character.
      assert.equal(/(^|,)"?[=+@]/m.test(res.text), false, res.text);
    });

    it("never shows another customer's entries", async () => {
      const res = await rawGet(cp, "/api/v1/customer/credits/statement.csv", bob.apiKey);
      assert.equal(res.status, 200);
      assert.equal(res.text.includes(alice.jobId), false);
      assert.equal(res.text.includes("calc"), false);
      const rows = lines(res.text);
      assert.equal(rows[1], `${day(today - 29 * dayMs)},,opening_balance,0,500,opening balance,,`);
      assert.equal(rows.length, 3);
      assert.match(rows[2] ?? "", /,debit,-9,491,"bob-private-job: train \(gpu, 30 s\)",/);
    });
  });

  describe("streamed exports of many rows", () => {
    const bulkRows = 5000;
    const carol = { customerId: "", apiKey: "" };
    let bulkDay = "";

    before(async function () {
      this.timeout(60_000);
      const db = cp.plane.deps.db;
      Object.assign(carol, await createCustomer(cp, 0));
      const jobId = await seedJob(db, carol.customerId, "bulk");
      const at = new Date(today - 3 * dayMs + 12 * 3_600_000);
      bulkDay = day(at.getTime());
      await seedGrant(db, carol.customerId, 20_000, "bulk grant", new Date(today - 40 * dayMs));
      // Five rows share each instant, and instants differ by microseconds: pages must break ties
      // by id and keep the microseconds a JS Date would drop, or rows repeat or vanish across batches.
      await db.query(
        `WITH units AS (
           INSERT INTO compute_units (id, job_id, customer_id, name, kind, status, entrypoint)
           SELECT gen_random_uuid(), $2, $1, 'bulk-' || i, 'gpu', 'completed', 'train.py' FROM generate_series(1, $4::int) AS i
           RETURNING id, name
         )
         INSERT INTO usage_records (id, customer_id, job_id, compute_unit_id, kind, run_seconds, credits, created_at)
         SELECT gen_random_uuid(), $1, $2, id, 'gpu', 1.5, 2, $3::timestamptz + (substr(name, 6)::int % 1000) * interval '1 microsecond' FROM units`,
        [carol.customerId, jobId, at, bulkRows],
      );
      await db.query(
        `INSERT INTO ledger_entries (id, customer_id, amount, kind, description, job_id, compute_unit_id, created_at)
         SELECT gen_random_uuid(), customer_id, -credits, 'debit', 'bulk unit', job_id, compute_unit_id, created_at FROM usage_records WHERE customer_id = $1`,
        [carol.customerId],
      );
    });

    it("streams the usage export over REST in several chunks that parse to every row once", async function () {
      this.timeout(60_000);
      const res = await rawChunkedGet(`${cp.url}/api/v1/customer/usage/export.csv?date_from=${bulkDay}&date_to=${bulkDay}`, carol.apiKey);
      assert.equal(res.status, 200, res.text.slice(0, 300));
      assert.equal(res.headers["content-type"], "text/csv; charset=utf-8");
      assert.equal(res.headers["content-disposition"], `attachment; filename="usage-${bulkDay}-${bulkDay}.csv"`);
      assert.equal(res.headers["content-length"], undefined, "a streamed body has no length up front");
      assert.equal(res.headers["transfer-encoding"], "chunked");
      assert.ok(res.headers["x-ratelimit-limit"] !== undefined, "handler headers lead the stream");
      assert.ok(res.dataEvents > 1, `several data events, got ${res.dataEvents}`);
      const rows = parseCsv(res.text);
      assert.deepEqual(rows[0], ["date", "job_id", "compute_unit_id", "kind", "run_seconds", "credits", "gpu_count", "gpu_seconds"]);
      assert.equal(rows.length, bulkRows + 1);
      const units = new Set(rows.slice(1).map((r) => r[2]));
      assert.equal(units.size, bulkRows, "every record exactly once");
      assert.ok(rows.slice(1).every((r) => r[0] === bulkDay && r[3] === "gpu" && r[4] === "1.5" && r[5] === "2"));
    });

    it("streams one message per batch over Connect, the first naming the content type", async function () {
      this.timeout(60_000);
      const client = createClient(CustomerService, createConnectTransport({ baseUrl: cp.url, httpVersion: "2" }));
      const messages = [];
      for await (const m of client.exportUsageCsv({ dateFrom: bulkDay, dateTo: bulkDay }, { headers: { "x-api-key": carol.apiKey } })) messages.push(m);
      assert.equal(messages.length, Math.ceil(bulkRows / csvBatchRows));
      assert.equal(messages[0]?.body?.contentType, "text/csv; charset=utf-8");
      assert.ok(messages.slice(1).every((m) => m.body?.contentType === ""), "only the first chunk names the content type");
      const text = Buffer.concat(messages.map((m) => m.body?.data ?? new Uint8Array())).toString("utf8");
      assert.equal(parseCsv(text).length, bulkRows + 1);
    });

    it("streams the statement with the running balance carried across batches", async function () {
      this.timeout(60_000);
      const client = createClient(CustomerService, createConnectTransport({ baseUrl: cp.url, httpVersion: "2" }));
      const messages = [];
      for await (const m of client.getCreditStatementCsv({ dateFrom: bulkDay, dateTo: bulkDay }, { headers: { "x-api-key": carol.apiKey } })) messages.push(m);
      assert.equal(messages.length, Math.ceil(bulkRows / csvBatchRows));
      const rows = parseCsv(Buffer.concat(messages.map((m) => m.body?.data ?? new Uint8Array())).toString("utf8"));
      assert.equal(rows.length, bulkRows + 2, "header, opening balance, every debit");
      assert.deepEqual(rows[1], [bulkDay, "", "opening_balance", "0", "20000", "opening balance", "", ""]);
      let balance = 20_000;
      for (const r of rows.slice(2)) {
        balance -= 2;
        assert.equal(r[4], String(balance), `balance after ${r[1]}`);
      }
      assert.equal(balance, 10_000);
      assert.equal(new Set(rows.slice(2).map((r) => r[1])).size, bulkRows, "every entry exactly once");
    });

    it("answers a range error before the first chunk as the usual envelope over REST", async () => {
      const res = await rawChunkedGet(`${cp.url}/api/v1/customer/usage/export.csv?date_from=2026-01-01&date_to=2026-12-31`, carol.apiKey);
      assert.equal(res.status, 400);
      assert.match(res.headers["content-type"] ?? "", /^application\/json/);
      assert.equal((JSON.parse(res.text) as { error: { code: string } }).error.code, "EXPORT_RANGE_TOO_LARGE");
    });
  });

  describe("authorization", () => {
    const paths = ["/api/v1/customer/usage/daily", "/api/v1/customer/usage/export.csv", "/api/v1/customer/credits/statement.csv"];
    for (const path of paths) {
      it(`refuses ${path} to a key without usage:read with 403 API_KEY_SCOPE_DENIED`, async () => {
        const res = await request(cp, "GET", path, { headers: { "x-api-key": noUsageKey } });
        assert.equal(res.status, 403);
        assert.equal((res.body["error"] as Record<string, unknown>)["code"], "API_KEY_SCOPE_DENIED");
      });
      it(`refuses ${path} without credentials with 401 CUSTOMER_AUTH_REQUIRED`, async () => {
        const res = await request(cp, "GET", path);
        assert.equal(res.status, 401);
        assert.equal((res.body["error"] as Record<string, unknown>)["code"], "CUSTOMER_AUTH_REQUIRED");
      });
    }
  });
});
