/**
 * npm run bench:events — how long a job's status change takes to reach a client watching it over
 * Server-Sent Events (GET …/training-jobs/{id}/events), measured from the moment the change's
 * transaction has committed to the moment its event arrives at the client. BENCH_CHANGES changes
 * (default 200): a compute unit accepted by its node (→ running) and handed back (→ ready), in turn,
 * each committed through the same lifecycle calls an agent's messages make, one at a time.
 *
 * - same_replica: the change is committed by the replica the client watches on (PostgreSQL);
 * - across_replicas: committed by replica A, watched on replica B of the same PostgreSQL, so the
 *   news travels by NOTIFY/LISTEN (the heartbeat is set to 10 minutes: nothing else could carry it);
 * - same_replica_pglite: one replica on the embedded database.
 *
 * Prints one JSON line with p50, p99 and max per case, in milliseconds.
 */
import { applyAccepted, applyRejected } from "../src/jobs/lifecycle.ts";
import type { Database } from "../src/store/database.ts";
import type { TestControlPlane } from "../test/support/control-plane.ts";
import { createCustomer, startTestControlPlane } from "../test/support/control-plane.ts";
import { assignUnit, seedJob } from "../test/support/job-events.ts";
import { startPostgres } from "../test/support/postgres.ts";
import { openEventStream } from "../test/support/sse.ts";

const changes = Math.max(2, Number(process.env["BENCH_CHANGES"] ?? 200));
const events = { heartbeatMs: 600_000 };
const log = (line: string) => process.stderr.write(`${line}\n`);

/** p50, p99 and max of `samples`, in ms with one decimal. */
function summary(samples: number[]): { p50: number; p99: number; max: number } {
  const sorted = [...samples].sort((a, b) => a - b);
  const at = (q: number) => sorted[Math.min(sorted.length - 1, Math.ceil(q * sorted.length) - 1)] ?? NaN;
  const round = (n: number) => Math.round(n * 10) / 10;
  return { p50: round(at(0.5)), p99: round(at(0.99)), max: round(sorted.at(-1) ?? NaN) };
}

/** Commits `changes` unit transitions through `committer`'s database and times each one's arrival at a watch on `watched`. */
async function measure(committer: TestControlPlane, watched: TestControlPlane): Promise<number[]> {
  const db: Database = committer.plane.deps.db;
  const { customerId, apiKey } = await createCustomer(committer);
  const job = await seedJob(db, customerId, ["train"]);
  const unit = job.units[0]!;
  const stream = await openEventStream(`${watched.url}/api/v1/customer/training-jobs/${job.jobId}/events`, { "x-api-key": apiKey });
  try {
    if ((await stream.nextEvent())?.event !== "snapshot") throw new Error("the watch did not start with a snapshot");
    const latencies: number[] = [];
    let node = await assignUnit(db, unit);
    for (let i = 0; i < changes; i++) {
      const accept = i % 2 === 0;
      if (accept && i > 0) node = await assignUnit(db, unit);
      if (accept) await applyAccepted(db, node, { unitId: unit, attempt: 1 }, new Date());
      else await applyRejected(db, node, { unitId: unit, attempt: 1 }, "bench", new Date());
      const committed = performance.now();
      const expected = accept ? "running" : "ready";
      for (;;) {
        const e = await stream.nextEvent(10_000);
        if (e === undefined) throw new Error("the stream ended");
        if (e.event === "unit" && (e.data["unit"] as { status: string }).status === expected) break;
      }
      latencies.push(performance.now() - committed);
    }
    return latencies;
  } finally {
    stream.close();
  }
}

const postgres = await startPostgres();
const planes: TestControlPlane[] = [];
try {
  const a = await startTestControlPlane({ databaseUrl: postgres.url, replicaId: "bench-a", events });
  planes.push(a);
  const b = await startTestControlPlane({ databaseUrl: postgres.url, replicaId: "bench-b", events });
  planes.push(b);
  log(`same replica (PostgreSQL): ${changes} changes`);
  const same = await measure(a, a);
  log(`across two replicas (PostgreSQL, NOTIFY): ${changes} changes`);
  const across = await measure(a, b);
  const embedded = await startTestControlPlane({ events });
  planes.push(embedded);
  log(`same replica (PGlite): ${changes} changes`);
  const pglite = await measure(embedded, embedded);
  console.log(
    JSON.stringify({
      changes,
      same_replica_ms: summary(same),
      across_replicas_ms: summary(across),
      same_replica_pglite_ms: summary(pglite),
    }),
  );
} finally {
  for (const p of planes.reverse()) await p.stop().catch(() => undefined);
  await postgres.stop();
}
