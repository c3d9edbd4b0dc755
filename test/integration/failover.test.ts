/**
 * High availability with real processes: a real etcd, a real PostgreSQL, three
 * scheduler replicas (`node cmd/scheduler.ts`) and two real agents connected
 * to the two replicas that do not lead.
 *
 * 1. kill -9 of the leader while jobs run: another replica leads within the
 *    lease TTL, every job completes, no unit runs twice, credits are exact.
 * 2. Fencing: the leader is SIGSTOPped past its TTL, another replica leads,
 *    the old one resumes — and commits nothing under its old term.
 */
import assert from "node:assert/strict";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pg from "pg";
import { zipDirectory } from "../../src/cli/files.ts";
import type { ClusterSettings, Replica, TestEtcd } from "../ha/cluster.ts";
import { clusterSettings, poll, startEtcd, startReplica, waitForLeader } from "../ha/cluster.ts";
import type { TestAgent, TestControlPlane } from "../support/control-plane.ts";
import { createCustomer, request, startTestAgent, uploadResource } from "../support/control-plane.ts";
import { createTestDatabaseUrl } from "../support/postgres.ts";

const example = join(import.meta.dirname, "..", "..", "examples", "tiny-mlp");
const leaseTtlSeconds = 2;
const jobCount = 6;

/** The REST helpers need only a URL and the admin token. */
const asTestPlane = (r: Replica): TestControlPlane => ({ url: r.url, adminToken: r.adminToken }) as TestControlPlane;

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

describe("high availability: three replicas on etcd and PostgreSQL", function () {
  this.timeout(120_000);
  let etcd: TestEtcd | undefined;
  let settings: ClusterSettings;
  let db: pg.Client;
  const replicas: Replica[] = [];
  const agents: TestAgent[] = [];
  let apiKey: string;
  let customerId: string;
  let datasetId: string;
  let packageId: string;

  const q = async <T extends Record<string, unknown>>(text: string, params: unknown[] = []): Promise<T[]> => (await db.query<T>(text, params)).rows;

  const createJob = async (via: Replica, name: string): Promise<string> => {
    const res = await request(asTestPlane(via), "POST", "/api/v1/customer/training-jobs", {
      headers: { "x-api-key": apiKey },
      body: { name, dataset_id: datasetId, training_package_id: packageId, required_vram_mb: 8000, max_runtime_seconds: 600, sensitivity: "low_sensitive" },
    });
    assert.equal(res.status, 201, JSON.stringify(res.body));
    return res.body["id"] as string;
  };

  const diagnostics = () => [...replicas.map((r) => `--- replica ${r.id}\n${r.output().slice(-3000)}`), ...agents.map((a, i) => `--- agent ${i}\n${a.output().slice(-2000)}`)].join("\n");

  before(async () => {
    const databaseUrl = await createTestDatabaseUrl();
    etcd = await startEtcd();
    settings = await clusterSettings(databaseUrl, etcd.endpoint, leaseTtlSeconds, {
      GPU_AGENT_LIMIT_ACTIVE_JOBS: "20",
      GPU_AGENT_LIMIT_JOBS_PER_MINUTE: "60",
      GPU_AGENT_HEARTBEAT_SECONDS: "1",
    });
    db = new pg.Client({ connectionString: databaseUrl });
    await db.connect();
    // "a" starts alone so that it leads; the agents connect to "b" and "c".
    replicas.push(await startReplica(settings, "a"));
    const first = await waitForLeader(replicas, 10_000);
    assert.equal(first.replica.id, "a");
    replicas.push(await startReplica(settings, "b"), await startReplica(settings, "c"));
    const [, b, c] = replicas as [Replica, Replica, Replica];
    agents.push(
      await startTestAgent(asTestPlane(b), { trustLevel: "controlled", devGpuMib: 24576 }),
      await startTestAgent(asTestPlane(c), { trustLevel: "controlled", devGpuMib: 24576 }),
    );
    const customer = await createCustomer(asTestPlane(b), 10_000);
    apiKey = customer.apiKey;
    customerId = customer.customerId;
    const dataset = await uploadResource(asTestPlane(b), apiKey, "datasets", "tiny-mlp-dataset", await readFile(join(example, "dataset.csv")), { format: "csv" });
    const pkg = await uploadResource(asTestPlane(c), apiKey, "training-packages", "tiny-mlp", await examplePackageZip(), { entrypoint: "train.py" });
    datasetId = dataset["id"] as string;
    packageId = pkg["id"] as string;
    // Both nodes are online (each replica persisted its node's connection).
    await poll("both nodes online", async () => ((await q(`SELECT 1 FROM nodes WHERE state = 'online'`)).length === 2 ? true : undefined), 15_000);
  });

  after(async () => {
    for (const a of agents) await a.stop().catch(() => undefined);
    for (const r of replicas) await r.stop().catch(() => undefined);
    await db?.end().catch(() => undefined);
    await etcd?.stop();
    if (settings !== undefined) await rm(settings.blobDir, { recursive: true, force: true });
  });

  it("survives kill -9 of the leader mid-stream: all jobs complete, no unit runs twice, credits exact", async () => {
    const [a, b, c] = replicas as [Replica, Replica, Replica];
    const jobIds: string[] = [];
    for (let i = 0; i < jobCount; i++) jobIds.push(await createJob(i % 2 === 0 ? b : c, `failover-${i}`));
    // Kill the leader once work is under way (some unit assigned or running), with more still queued.
    await poll("a unit to be placed", async () => ((await q(`SELECT 1 FROM compute_units WHERE status IN ('assigned', 'running', 'completed')`)).length > 0 ? true : undefined), 30_000);
    const killedAt = Date.now();
    a.signal("SIGKILL");
    await a.exited();
    const next = await waitForLeader([b, c], 10_000);
    const failoverSeconds = (Date.now() - killedAt) / 1000;
    assert.ok(failoverSeconds <= leaseTtlSeconds + 1, `a new leader within TTL + 1 s (took ${failoverSeconds} s)`);

    const finished = await poll(
      "every job to finish",
      async () => {
        const rows = await q<{ status: string }>(`SELECT status FROM training_jobs WHERE id = ANY($1::uuid[])`, [jobIds]);
        return rows.every((r) => ["completed", "failed", "cancelled", "expired"].includes(r.status)) ? rows : undefined;
      },
      70_000,
      250,
    ).catch((error: unknown) => {
      throw new Error(`${(error as Error).message}\n${diagnostics()}`);
    });
    assert.deepEqual(
      finished.map((r) => r.status),
      jobIds.map(() => "completed"),
      diagnostics(),
    );

    // No unit placed twice: every unit completed on its first attempt, and ran exactly once on the agents.
    const units = await q<{ id: string; status: string; attempt: number; leader_term: number }>(
      `SELECT id, status, attempt, leader_term FROM compute_units WHERE job_id = ANY($1::uuid[])`,
      [jobIds],
    );
    assert.equal(units.length, jobCount * 3);
    assert.ok(units.every((u) => u.status === "completed" && u.attempt === 1), JSON.stringify(units));
    const finishes = new Map<string, number>();
    for (const line of agents.flatMap((ag) => ag.output().split("\n"))) {
      if (!line.includes('"unit finished"')) continue;
      const unitId = (JSON.parse(line) as { unit_id?: string }).unit_id;
      if (unitId !== undefined) finishes.set(unitId, (finishes.get(unitId) ?? 0) + 1);
    }
    for (const u of units) assert.equal(finishes.get(u.id), 1, `unit ${u.id} ran exactly once`);

    // Credits: one debit per completed unit, equal to its usage; the balance is the ledger's sum.
    const debits = await q<{ compute_unit_id: string; amount: number }>(`SELECT compute_unit_id, amount::int AS amount FROM ledger_entries WHERE customer_id = $1 AND kind = 'debit'`, [
      customerId,
    ]);
    assert.equal(debits.length, units.length);
    assert.equal(new Set(debits.map((d) => d.compute_unit_id)).size, units.length);
    const usage = await q<{ compute_unit_id: string; credits: number }>(`SELECT compute_unit_id, credits::int AS credits FROM usage_records WHERE customer_id = $1`, [customerId]);
    const usageOf = new Map(usage.map((u) => [u.compute_unit_id, u.credits]));
    for (const d of debits) assert.equal(-d.amount, usageOf.get(d.compute_unit_id));
    const [sum] = await q<{ total: number }>(`SELECT sum(amount)::int AS total FROM ledger_entries WHERE customer_id = $1`, [customerId]);
    const ledger = await request(asTestPlane(next.replica), "GET", "/api/v1/customer/credits/ledger", { headers: { "x-api-key": apiKey } });
    assert.equal(Number(ledger.body["balance"]), sum?.total);
    assert.equal(sum?.total, 10_000 - usage.reduce((acc, u) => acc + u.credits, 0));
    process.stdout.write(`      kill -9 failover: new leader in ${failoverSeconds.toFixed(2)} s (TTL ${leaseTtlSeconds} s)\n`);
  });

  it("fences a leader paused past its lease: after SIGCONT it commits nothing under its old term", async () => {
    const live = replicas.filter((r) => r.child.exitCode === null && r.child.signalCode === null);
    const old = await waitForLeader(live, 10_000);
    const stoppedAt = new Date();
    old.replica.signal("SIGSTOP");
    try {
      const next = await waitForLeader(live, (leaseTtlSeconds + 3) * 1000, old.replica);
      assert.ok(next.term > old.term, `the new term ${next.term} is above the old ${old.term}`);
      const [fence] = await q<{ term: number }>(`SELECT term::int AS term FROM scheduler_leases WHERE name = 'placement'`);
      assert.equal(fence?.term, next.term, "the database fence carries the new term");
      // Work for the resumed replica to be tempted by: one job queued while it sleeps, one right after it wakes.
      const during = await createJob(next.replica, "while-paused");
      old.replica.signal("SIGCONT");
      const afterwards = await createJob(next.replica, "after-resume");
      // The resumed replica notices it lost the lease and reports not leading.
      await poll("the old leader to step down", async () => ((await old.replica.status()).isLeader ? undefined : true), 10_000);
      await poll(
        "the new jobs' first units to be placed",
        async () => {
          const rows = await q(`SELECT 1 FROM compute_units WHERE job_id = ANY($1::uuid[]) AND status <> 'pending' AND status <> 'ready' AND name = 'prepare'`, [[during, afterwards]]);
          return rows.length === 2 ? true : undefined;
        },
        20_000,
      );
      const stale = await q<{ n: number }>(`SELECT count(*)::int AS n FROM compute_units WHERE leader_term = $1 AND assigned_at >= $2`, [old.term, stoppedAt]);
      assert.equal(stale[0]?.n, 0, "no placement committed under the old term after the pause");
      const placedByNew = await q<{ n: number }>(`SELECT count(*)::int AS n FROM compute_units WHERE job_id = ANY($1::uuid[]) AND leader_term = $2`, [[during, afterwards], next.term]);
      assert.ok((placedByNew[0]?.n ?? 0) >= 2, "the new leader placed them");
    } finally {
      old.replica.signal("SIGCONT");
    }
  });

  it("loses etcd: the leader steps down, nothing is placed, the API keeps accepting jobs, /readyz says not ready", async () => {
    const live = replicas.filter((r) => r.child.exitCode === null && r.child.signalCode === null);
    await waitForLeader(live, 10_000);
    await etcd?.stop();
    etcd = undefined;
    // The renew deadline (2/3 of the TTL) passes without a confirmation: every replica reports not leading.
    await poll(
      "no replica to lead",
      async () => {
        const states = await Promise.all(live.map((r) => r.status()));
        return states.every((st) => !st.isLeader) ? true : undefined;
      },
      (leaseTtlSeconds + 3) * 1000,
    );
    const jobId = await createJob(live[0]!, "without-etcd");
    assert.equal((await fetch(`${live[0]!.url}/readyz`)).status, 503);
    // Absence of placement can only be shown over time: one TTL of placement intervals (200 ms each).
    await new Promise((r) => setTimeout(r, leaseTtlSeconds * 1000));
    const units = await q<{ status: string }>(`SELECT status FROM compute_units WHERE job_id = $1 AND name = 'prepare'`, [jobId]);
    assert.deepEqual(units.map((u) => u.status), ["ready"]);
  });
});
