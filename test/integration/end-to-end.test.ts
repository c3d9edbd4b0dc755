/**
 * The foundation's acceptance test: the seed 001 example job runs to
 * `completed` over the real REST API, through the real placer, down a real
 * HTTP/2 gRPC stream to a real agent process that runs the example's Python for
 * real — once on the embedded database (PGlite) and once on PostgreSQL.
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { zipDirectory } from "../../src/cli/files.ts";
import { createMigratedTestDatabaseUrl } from "../support/postgres.ts";
import type { TestAgent, TestControlPlane } from "../support/control-plane.ts";
import { createCustomer, request, startTestAgent, startTestControlPlane, uploadResource, waitFor } from "../support/control-plane.ts";

const example = join(import.meta.dirname, "..", "..", "examples", "tiny-mlp");

async function examplePackageZip(): Promise<Buffer> {
  const dir = await mkdtemp(join(tmpdir(), "pkg-"));
  try {
    const file = join(dir, "package.zip");
    await zipDirectory(join(example, "package"), file);
    return await readFile(file);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

const backends: { name: string; databaseUrl: () => Promise<string | undefined> }[] = [
  { name: "the embedded database (PGlite)", databaseUrl: async () => undefined },
  { name: "PostgreSQL", databaseUrl: () => createMigratedTestDatabaseUrl() },
];

for (const backend of backends) {
  describe(`a training job runs end to end on ${backend.name}`, function () {
    this.timeout(180_000);
    let cp: TestControlPlane;
    let agent: TestAgent;

    before(async () => {
      const databaseUrl = await backend.databaseUrl();
      cp = await startTestControlPlane(databaseUrl === undefined ? {} : { databaseUrl });
      agent = await startTestAgent(cp, { trustLevel: "controlled", devGpuMib: 24576 });
    });

    after(async () => {
      await agent?.stop();
      await cp?.stop();
    });

    it("completes the seed 001 example job with progress, compute units, artifacts and a working download URL", async () => {
      const started = Date.now();
      const { apiKey } = await createCustomer(cp, 10_000);
      const auth = { "x-api-key": apiKey };
      const dataset = await uploadResource(cp, apiKey, "datasets", "tiny-mlp-dataset", await readFile(join(example, "dataset.csv")), { format: "csv" });
      assert.equal(dataset["status"], "ready");
      const pkg = await uploadResource(cp, apiKey, "training-packages", "tiny-mlp", await examplePackageZip(), { entrypoint: "train.py" });
      assert.equal(pkg["status"], "ready");
      assert.deepEqual(pkg["stages"], ["prepare", "train", "evaluate"]);

      // Seed 001's body, verbatim but for the ids.
      const created = await request(cp, "POST", "/api/v1/customer/training-jobs", {
        headers: { ...auth, "idempotency-key": "client-uuid-12345678" },
        body: {
          name: "tiny-mlp-fine-tune",
          dataset_id: dataset["id"],
          training_package_id: pkg["id"],
          required_vram_mb: 8000,
          required_disk_mb: 1024,
          max_runtime_seconds: 600,
          sensitivity: "low_sensitive",
        },
      });
      assert.equal(created.status, 201, JSON.stringify(created.body));
      const jobId = created.body["id"] as string;
      assert.equal(created.body["status"], "queued");

      const seenProgress = new Set<number>();
      const job = await waitFor(
        "the job to finish",
        async () => {
          const res = await request(cp, "GET", `/api/v1/customer/training-jobs/${jobId}`, { headers: auth });
          seenProgress.add(res.body["progress"] as number);
          return ["completed", "failed", "cancelled", "expired"].includes(res.body["status"] as string) ? res.body : undefined;
        },
        150_000,
        () => agent.output(),
      );
      assert.equal(job["status"], "completed", `job ended ${String(job["status"])}: ${String(job["error"])}\n${agent.output()}`);
      assert.equal(job["progress"], 1);
      assert.ok([...seenProgress].some((p) => p > 0 && p < 1), `progress moved between 0 and 1 (saw ${[...seenProgress].join(", ")})`);
      const metrics = job["metrics"] as Record<string, number>;
      assert.ok(metrics["epoch"]! > 0 && typeof metrics["loss"] === "number", `training metrics reached the job: ${JSON.stringify(metrics)}`);

      const units = await request(cp, "GET", `/api/v1/customer/training-jobs/${jobId}/compute-units`, { headers: auth });
      const data = units.body["data"] as Record<string, unknown>[];
      assert.deepEqual(
        data.map((u) => [u["name"], u["kind"], u["status"], u["progress"]]),
        [
          ["prepare", "cpu", "completed", 1],
          ["train", "gpu", "completed", 1],
          ["evaluate", "cpu", "completed", 1],
        ],
      );
      assert.ok(data.every((u) => u["node_id"] === agent.nodeId));

      const artifacts = await request(cp, "GET", `/api/v1/customer/training-jobs/${jobId}/artifacts`, { headers: auth });
      const list = artifacts.body["data"] as Record<string, unknown>[];
      const checkpoint = list.find((a) => a["kind"] === "checkpoint");
      assert.ok(checkpoint !== undefined, `a checkpoint artifact is listed: ${JSON.stringify(list.map((a) => a["name"]))}`);
      assert.ok(list.some((a) => a["kind"] === "metrics"));
      assert.ok(list.some((a) => a["kind"] === "logs"));

      const minted = await request(cp, "POST", `/api/v1/customer/training-jobs/${jobId}/artifacts/${checkpoint["id"] as string}/download-url`, {
        headers: auth,
        body: {},
      });
      assert.equal(minted.status, 201);
      assert.equal(minted.body["expires_in_seconds"], 900);
      const ttl = (Date.parse(minted.body["expires_at"] as string) - Date.now()) / 1000;
      assert.ok(ttl > 890 && ttl <= 900, `download URL lives 900 s (${ttl})`);
      const download = await fetch(minted.body["download_url"] as string);
      assert.equal(download.status, 200);
      const bytes = Buffer.from(await download.arrayBuffer());
      assert.equal(createHash("sha256").update(bytes).digest("hex"), checkpoint["sha256"]);
      assert.ok(JSON.parse(bytes.toString("utf8")), "the checkpoint is the example's JSON weights");

      // Each completed unit is debited once; the balance is the ledger's sum.
      const ledger = await request(cp, "GET", "/api/v1/customer/credits/ledger", { headers: auth });
      const debits = (ledger.body["data"] as Record<string, unknown>[]).filter((e) => e["kind"] === "debit");
      assert.equal(debits.length, 3);
      const debited = debits.reduce((sum, e) => sum - Number(e["amount"]), 0);
      assert.equal(Number(ledger.body["balance"]), 10_000 - debited);
      process.stdout.write(`      end-to-end job on ${backend.name}: ${((Date.now() - started) / 1000).toFixed(1)} s\n`);
    });

    it("answers a replay of the same Idempotency-Key with the original job and a different body with IDEMPOTENCY_CONFLICT", async () => {
      const { apiKey } = await createCustomer(cp, 10_000);
      const auth = { "x-api-key": apiKey };
      const dataset = await uploadResource(cp, apiKey, "datasets", "d", await readFile(join(example, "dataset.csv")));
      const pkg = await uploadResource(cp, apiKey, "training-packages", "p", await examplePackageZip());
      const body = { name: "idem", dataset_id: dataset["id"], training_package_id: pkg["id"], required_vram_mb: 8000, max_runtime_seconds: 600 };
      const first = await request(cp, "POST", "/api/v1/customer/training-jobs", { headers: { ...auth, "idempotency-key": "retry-key-0001" }, body });
      const again = await request(cp, "POST", "/api/v1/customer/training-jobs", { headers: { ...auth, "idempotency-key": "retry-key-0001" }, body });
      assert.equal(first.status, 201);
      assert.equal(again.body["id"], first.body["id"]);
      const conflict = await request(cp, "POST", "/api/v1/customer/training-jobs", {
        headers: { ...auth, "idempotency-key": "retry-key-0001" },
        body: { ...body, name: "other" },
      });
      assert.equal(conflict.status, 409);
      assert.equal((conflict.body["error"] as Record<string, unknown>)["code"], "IDEMPOTENCY_CONFLICT");
      const cancelled = await request(cp, "POST", `/api/v1/customer/training-jobs/${first.body["id"] as string}/cancel`, { headers: auth, body: {} });
      assert.equal(cancelled.body["status"], "cancelled");
    });
  });
}
