/**
 * npm run bench:failover — leader failover with real processes: a throwaway
 * PostgreSQL, a one-member etcd and three `cmd/scheduler.ts` replicas. Over
 * BENCH_TRIALS trials (default 3) it measures
 *
 * - kill9_failover_s: SIGKILL of the leader → another replica reports leading
 *   (target: ≤ TTL + 1 s);
 * - graceful_handover_s: SIGTERM of the leader (it resigns) → another leads
 *   (target: ≤ 1 s);
 * - stale_commits_accepted: the leader is SIGSTOPped past its TTL, another
 *   leads, jobs are queued before and right after SIGCONT; placements
 *   committed under the old term after the pause (must be 0). A fake node
 *   (a row with a fresh heartbeat, no agent) gives the placer somewhere to put
 *   units, so the resumed leader really has work it could try to commit.
 *
 * Prints one JSON line; the headline figures are the worst trial, the
 * `*_trials` arrays list them all. BENCH_LEASE_TTL_SECONDS (default 5, the
 * production default) sets the lease TTL.
 */
import { randomBytes, randomUUID } from "node:crypto";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pg from "pg";
import { zipDirectory } from "../src/cli/files.ts";
import type { Replica } from "../test/ha/cluster.ts";
import { clusterSettings, poll, startEtcd, startReplica, waitForLeader } from "../test/ha/cluster.ts";
import type { TestControlPlane } from "../test/support/control-plane.ts";
import { createCustomer, request, uploadResource } from "../test/support/control-plane.ts";
import { startPostgres } from "../test/support/postgres.ts";

const ttl = Number(process.env["BENCH_LEASE_TTL_SECONDS"] ?? 5);
const trials = Math.max(3, Number(process.env["BENCH_TRIALS"] ?? 3));
const example = join(import.meta.dirname, "..", "examples", "tiny-mlp");
const asPlane = (r: Replica): TestControlPlane => ({ url: r.url, adminToken: r.adminToken }) as TestControlPlane;
const alive = (r: Replica) => r.child.exitCode === null && r.child.signalCode === null;
const log = (line: string) => process.stderr.write(`${line}\n`);

const postgres = await startPostgres();
const etcd = await startEtcd();
const settings = await clusterSettings(postgres.url, etcd.endpoint, ttl, {
  GPU_AGENT_LIMIT_ACTIVE_JOBS: "1000",
  GPU_AGENT_LIMIT_JOBS_PER_MINUTE: "1000",
  GPU_AGENT_LIMIT_UNITS_PER_DAY: "100000",
  GPU_AGENT_LIMIT_REQUESTS_PER_MINUTE: "0",
});
const db = new pg.Client({ connectionString: postgres.url });
const replicas: Replica[] = [];
let heartbeat: NodeJS.Timeout | undefined;
try {
  for (const id of ["r1", "r2", "r3"]) replicas.push(await startReplica(settings, id));
  await db.connect();

  // Something to place on: a node row with a fresh heartbeat (kept fresh below), without an agent.
  const fakeNode = randomUUID();
  await db.query(
    `INSERT INTO nodes (id, hostname, trust_level, state, credential_hash, capabilities, enrolled_at, last_heartbeat_at)
     VALUES ($1, 'bench-fake-node', 'controlled', 'online', $2, $3::jsonb, now(), now())`,
    [fakeNode, randomBytes(16).toString("hex"), JSON.stringify({ cpuCores: 1024, memoryMb: 1 << 24, diskFreeMb: 1 << 30, gpus: [{ index: 0, name: "fake", vramMb: 1 << 30 }] })],
  );
  heartbeat = setInterval(() => void db.query(`UPDATE nodes SET last_heartbeat_at = now() WHERE id = $1`, [fakeNode]).catch(() => undefined), 1000);

  const first = replicas[0]!;
  const { apiKey } = await createCustomer(asPlane(first), 1_000_000);
  const dataset = await uploadResource(asPlane(first), apiKey, "datasets", "d", await readFile(join(example, "dataset.csv")), { format: "csv" });
  const zipDir = await mkdtemp(join(tmpdir(), "bench-pkg-"));
  await zipDirectory(join(example, "package"), join(zipDir, "package.zip"));
  const pkg = await uploadResource(asPlane(first), apiKey, "training-packages", "p", await readFile(join(zipDir, "package.zip")), { entrypoint: "train.py" });
  await rm(zipDir, { recursive: true, force: true });
  const createJob = async (via: Replica): Promise<string> => {
    const res = await request(asPlane(via), "POST", "/api/v1/customer/training-jobs", {
      headers: { "x-api-key": apiKey },
      body: { name: "bench", dataset_id: dataset["id"], training_package_id: pkg["id"], required_vram_mb: 1000, max_runtime_seconds: 3600, sensitivity: "low_sensitive" },
    });
    if (res.status !== 201) throw new Error(`create job: ${res.status} ${JSON.stringify(res.body)}`);
    return res.body["id"] as string;
  };
  const replace = async (gone: Replica) => {
    await gone.stop();
    replicas[replicas.indexOf(gone)] = await startReplica(settings, gone.id);
  };

  const kill9: number[] = [];
  const graceful: number[] = [];
  const stale: number[] = [];
  for (let trial = 1; trial <= trials; trial++) {
    // kill -9
    let leader = await waitForLeader(replicas, (ttl + 5) * 1000);
    let started = Date.now();
    leader.replica.signal("SIGKILL");
    await waitForLeader(replicas, (ttl + 5) * 1000, leader.replica);
    kill9.push((Date.now() - started) / 1000);
    await replace(leader.replica);

    // SIGTERM (resign)
    leader = await waitForLeader(replicas, (ttl + 5) * 1000);
    started = Date.now();
    leader.replica.signal("SIGTERM");
    await waitForLeader(replicas, (ttl + 5) * 1000, leader.replica);
    graceful.push((Date.now() - started) / 1000);
    await leader.replica.exited();
    await replace(leader.replica);

    // SIGSTOP past the TTL, SIGCONT
    leader = await waitForLeader(replicas, (ttl + 5) * 1000);
    const stoppedAt = new Date();
    leader.replica.signal("SIGSTOP");
    const next = await waitForLeader(replicas, (ttl + 5) * 1000, leader.replica);
    const during = await createJob(next.replica);
    leader.replica.signal("SIGCONT");
    const afterwards = await createJob(next.replica);
    await poll("the resumed leader to step down", async () => ((await leader.replica.status()).isLeader ? undefined : true), 10_000);
    await poll(
      "the queued units to be placed",
      async () => ((await db.query(`SELECT 1 FROM compute_units WHERE job_id = ANY($1::uuid[]) AND name = 'prepare' AND status = 'assigned'`, [[during, afterwards]])).rowCount === 2 ? true : undefined),
      10_000,
    );
    const rows = await db.query<{ n: number }>(`SELECT count(*)::int AS n FROM compute_units WHERE leader_term = $1 AND assigned_at >= $2`, [leader.term, stoppedAt]);
    stale.push(rows.rows[0]?.n ?? -1);
    log(`trial ${trial}: kill -9 ${kill9.at(-1)} s, SIGTERM ${graceful.at(-1)} s, stale commits ${stale.at(-1)}`);
    for (const r of replicas) if (!alive(r)) await replace(r);
  }
  const round = (n: number) => Math.round(n * 1000) / 1000;
  process.stdout.write(
    `${JSON.stringify({
      lease_ttl_s: ttl,
      kill9_failover_s: round(Math.max(...kill9)),
      graceful_handover_s: round(Math.max(...graceful)),
      stale_commits_accepted: stale.reduce((a, b) => a + b, 0),
      trials,
      kill9_failover_s_trials: kill9.map(round),
      graceful_handover_s_trials: graceful.map(round),
    })}\n`,
  );
} finally {
  if (heartbeat !== undefined) clearInterval(heartbeat);
  await db.end().catch(() => undefined);
  for (const r of replicas) await r.stop().catch(() => undefined);
  await etcd.stop();
  await postgres.stop();
  await rm(settings.blobDir, { recursive: true, force: true });
}
