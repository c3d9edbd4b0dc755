/**
 * The job-view cache: a read after a write sees the write (in-process
 * invalidation when the writing transaction ends, also racing a read already
 * in flight), tenancy is exact (another customer's id misses and answers 404),
 * entries are bounded (least recently used go first) and expire, and the news
 * travels to other replicas as a well-formed cluster message.
 */
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pino } from "pino";
import type { ControlPlane } from "../../src/control-plane.ts";
import { startControlPlane } from "../../src/control-plane.ts";
import { maxChangedJobIds, parseEnvelope } from "../../src/ha/cluster-bus.ts";
import { jobTransaction, jobsChanged, markJobChanged, onJobsChanged } from "../../src/jobs/job-changes.ts";
import type { JobViewCache } from "../../src/jobs/job-view-cache.ts";
import { createJobViewCache } from "../../src/jobs/job-view-cache.ts";
import { applyAccepted, applyFinished, cancelJob } from "../../src/jobs/lifecycle.ts";
import { FakeClock } from "../../src/platform/clock.ts";
import { defaultAgents, defaultLimits, defaultRates } from "../../src/platform/config.ts";
import type { Database } from "../../src/store/database.ts";
import { openMigratedPGlite } from "../support/database-template.ts";
import type { JobViewRow } from "../../src/store/jobs.ts";
import { findJobView } from "../../src/store/jobs.ts";
import { examplePackageZip, startPlane } from "../limits/plane.ts";
import { insertJob, insertNodes } from "../support/rows.ts";
import type { TestControlPlane } from "../support/control-plane.ts";
import { createCustomer, request, uploadResource } from "../support/control-plane.ts";
import { enrollReferenceNode } from "../support/fleet.ts";
import type { TestPostgres } from "../support/postgres.ts";
import { startPostgres } from "../support/postgres.ts";

function viewWith(overrides: Partial<JobViewRow> = {}): JobViewRow {
  return {
    id: randomUUID(),
    customer_id: randomUUID(),
    name: "job",
    dataset_id: randomUUID(),
    training_package_id: randomUUID(),
    status: "queued",
    progress: 0,
    required_vram_mb: 1024,
    required_disk_mb: 1024,
    max_runtime_seconds: 600,
    sensitivity: "public",
    error: "",
    metrics: {},
    projected_cost_credits: 10,
    created_at: new Date(0),
    started_at: null,
    finished_at: null,
    compute_unit_count: 1,
    compute_units_completed: 0,
    credits_debited: 0,
    required_gpu_count: 1,
    gpu_models: [],
    min_compute_capability: "",
    min_cuda_version: "",
    queue_timeout_seconds: 86_400,
    pending_reason: "",
    ...overrides,
  };
}

/** A load that counts its calls and answers from `rows` (the "database"). */
function loader(rows: Map<string, JobViewRow>) {
  const calls = { n: 0 };
  const load = (customerId: string, jobId: string) => async () => {
    calls.n++;
    const row = rows.get(jobId);
    return row !== undefined && row.customer_id === customerId ? { ...row } : undefined;
  };
  return { calls, load };
}

/** A promise and its resolver, to hold a load in flight. */
function deferred<T>(): { promise: Promise<T>; resolve: (value: T) => void } {
  let resolve!: (value: T) => void;
  const promise = new Promise<T>((r) => (resolve = r));
  return { promise, resolve };
}

describe("job view cache: hits, misses and tenancy", () => {
  let clock: FakeClock;
  let cache: JobViewCache;
  let rows: Map<string, JobViewRow>;

  beforeEach(() => {
    clock = new FakeClock();
    cache = createJobViewCache({ clock, ttlMs: 1000, maxEntries: 3 });
    rows = new Map();
  });

  it("serves the second read from memory", async () => {
    const row = viewWith();
    rows.set(row.id, row);
    const { calls, load } = loader(rows);
    assert.equal((await cache.get(row.customer_id, row.id, load(row.customer_id, row.id)))?.status, "queued");
    assert.equal((await cache.get(row.customer_id, row.id, load(row.customer_id, row.id)))?.status, "queued");
    assert.equal(calls.n, 1);
  });

  it("answers another customer's id from the database as not found, even while the owner's view is cached", async () => {
    const row = viewWith();
    rows.set(row.id, row);
    const { calls, load } = loader(rows);
    await cache.get(row.customer_id, row.id, load(row.customer_id, row.id));
    const intruder = randomUUID();
    assert.equal(cache.peek(intruder, row.id), undefined);
    assert.equal(await cache.get(intruder, row.id, load(intruder, row.id)), undefined);
    // The same path as an id that exists nowhere: one database read, nothing cached.
    assert.equal(await cache.get(intruder, randomUUID(), load(intruder, randomUUID())), undefined);
    assert.equal(calls.n, 3);
    assert.equal(cache.size, 1);
  });

  it("never caches a not-found answer, so a job created later is visible at once", async () => {
    const row = viewWith();
    const { calls, load } = loader(rows);
    assert.equal(await cache.get(row.customer_id, row.id, load(row.customer_id, row.id)), undefined);
    rows.set(row.id, row);
    assert.equal((await cache.get(row.customer_id, row.id, load(row.customer_id, row.id)))?.id, row.id);
    assert.equal(calls.n, 2);
  });

  it("never keeps a row a load returns for another customer", async () => {
    const row = viewWith();
    await cache.get(randomUUID(), row.id, async () => row);
    assert.equal(cache.size, 0);
  });

  it("reads again after the time to live", async () => {
    const row = viewWith();
    rows.set(row.id, row);
    const { calls, load } = loader(rows);
    await cache.get(row.customer_id, row.id, load(row.customer_id, row.id));
    clock.advance(999);
    await cache.get(row.customer_id, row.id, load(row.customer_id, row.id));
    assert.equal(calls.n, 1);
    clock.advance(1);
    await cache.get(row.customer_id, row.id, load(row.customer_id, row.id));
    assert.equal(calls.n, 2);
  });

  it("holds at most maxEntries views, evicting the least recently used", async () => {
    const [a, b, c, d] = [viewWith(), viewWith(), viewWith(), viewWith()];
    for (const r of [a!, b!, c!, d!]) rows.set(r.id, r);
    const { calls, load } = loader(rows);
    const read = (r: JobViewRow) => cache.get(r.customer_id, r.id, load(r.customer_id, r.id));
    await read(a!);
    await read(b!);
    await read(c!);
    await read(a!); // a is now the most recent; b the least
    await read(d!);
    assert.equal(cache.size, 3);
    assert.equal(calls.n, 4);
    assert.notEqual(cache.peek(a!.customer_id, a!.id), undefined);
    assert.equal(cache.peek(b!.customer_id, b!.id), undefined);
    assert.notEqual(cache.peek(c!.customer_id, c!.id), undefined);
    assert.notEqual(cache.peek(d!.customer_id, d!.id), undefined);
    for (let i = 0; i < 100; i++) {
      const r = viewWith();
      rows.set(r.id, r);
      await read(r);
    }
    assert.equal(cache.size, 3);
  });

  it("freezes what it shares between requests", async () => {
    const row = viewWith({ metrics: { loss: 1 } });
    rows.set(row.id, row);
    const { load } = loader(rows);
    const got = await cache.get(row.customer_id, row.id, load(row.customer_id, row.id));
    assert.throws(() => {
      (got as { status: string }).status = "completed";
    }, TypeError);
    assert.throws(() => {
      got!.metrics["loss"] = 2;
    }, TypeError);
  });
});

describe("job view cache: invalidation", () => {
  let cache: JobViewCache;

  beforeEach(() => {
    cache = createJobViewCache({ clock: new FakeClock(), ttlMs: 60_000, maxEntries: 100 });
  });

  it("forgets an invalidated job and reads it again", async () => {
    const row = viewWith();
    await cache.get(row.customer_id, row.id, async () => row);
    cache.invalidate([row.id]);
    assert.equal(cache.peek(row.customer_id, row.id), undefined);
    const changed = { ...row, status: "cancelled" as const };
    assert.equal((await cache.get(row.customer_id, row.id, async () => changed))?.status, "cancelled");
  });

  it("does not let a read that started before an invalidation fill the cache with what it read", async () => {
    const row = viewWith();
    const slow = deferred<JobViewRow | undefined>();
    const reading = cache.get(row.customer_id, row.id, () => slow.promise);
    // The write commits and invalidates while the read is at the database with the old row.
    cache.invalidate([row.id]);
    slow.resolve(row);
    assert.equal((await reading)?.status, "queued"); // that caller gets what it read...
    assert.equal(cache.size, 0); // ...but nobody after it does
    const fresh = { ...row, status: "running" as const };
    assert.equal((await cache.get(row.customer_id, row.id, async () => fresh))?.status, "running");
    assert.equal(cache.peek(row.customer_id, row.id)?.status, "running");
  });

  it("lets a read that started after the invalidation fill, though an older one is still in flight", async () => {
    const row = viewWith();
    const old = deferred<JobViewRow | undefined>();
    const oldRead = cache.get(row.customer_id, row.id, () => old.promise);
    cache.invalidate([row.id]);
    const fresh = { ...row, status: "running" as const };
    await cache.get(row.customer_id, row.id, async () => fresh);
    old.resolve(row);
    await oldRead;
    assert.equal(cache.peek(row.customer_id, row.id)?.status, "running");
  });

  it("clear() forgets everything and also stops reads in flight from filling", async () => {
    const a = viewWith();
    const b = viewWith();
    await cache.get(a.customer_id, a.id, async () => a);
    const slow = deferred<JobViewRow | undefined>();
    const reading = cache.get(b.customer_id, b.id, () => slow.promise);
    cache.clear();
    slow.resolve(b);
    await reading;
    assert.equal(cache.size, 0);
  });

  it("shares one load among callers of one customer that miss together, but not with another customer", async () => {
    const row = viewWith();
    const slow = deferred<JobViewRow | undefined>();
    let loads = 0;
    const load = () => {
      loads++;
      return slow.promise;
    };
    const reads = Array.from({ length: 10 }, () => cache.get(row.customer_id, row.id, load));
    let intruderLoads = 0;
    const intruder = cache.get(randomUUID(), row.id, async () => {
      intruderLoads++;
      return undefined;
    });
    slow.resolve(row);
    assert.deepEqual(new Set((await Promise.all(reads)).map((r) => r?.id)), new Set([row.id]));
    assert.equal(await intruder, undefined);
    assert.equal(loads, 1);
    assert.equal(intruderLoads, 1);
    assert.equal(cache.size, 1);
  });

  it("does not share a load that started before an invalidation with a caller that comes after it", async () => {
    const row = viewWith();
    const old = deferred<JobViewRow | undefined>();
    const before = cache.get(row.customer_id, row.id, () => old.promise);
    cache.invalidate([row.id]);
    const after = cache.get(row.customer_id, row.id, async () => ({ ...row, status: "cancelled" as const }));
    old.resolve(row);
    assert.equal((await before)?.status, "queued");
    assert.equal((await after)?.status, "cancelled");
  });

  it("a failed load fills nothing and leaves later reads working", async () => {
    const row = viewWith();
    await assert.rejects(cache.get(row.customer_id, row.id, async () => Promise.reject(new Error("db down"))), /db down/);
    await assert.rejects(
      cache.get(row.customer_id, row.id, () => {
        throw new Error("failed at once");
      }),
      /failed at once/,
    );
    assert.equal((await cache.get(row.customer_id, row.id, async () => row))?.id, row.id);
    assert.equal(cache.size, 1);
  });
});

describe("job changes: which jobs a transaction changed", () => {
  let db: Database;

  beforeEach(async () => {
    db = await openMigratedPGlite();
  });
  afterEach(async () => {
    await db.close();
  });

  it("tells the listeners after the transaction ends, committed or not", async () => {
    const heard: string[][] = [];
    const off = onJobsChanged(db, (ids) => heard.push([...ids]));
    const a = randomUUID();
    const b = randomUUID();
    await jobTransaction(db, async (tx) => {
      markJobChanged(tx, a);
      markJobChanged(tx, a);
      assert.deepEqual(heard, [], "not before the transaction ends");
    });
    await assert.rejects(
      jobTransaction(db, async (tx) => {
        markJobChanged(tx, b);
        throw new Error("rolled back");
      }),
      /rolled back/,
    );
    assert.deepEqual(heard, [[a], [b]]);
    off();
    jobsChanged(db, [a]);
    assert.equal(heard.length, 2);
  });

  it("refuses a change marked outside jobTransaction (nobody would hear of it)", async () => {
    await db.transaction(async (tx) => {
      assert.throws(() => markJobChanged(tx, randomUUID()), /outside jobTransaction/);
    });
  });

  it("travels between replicas as a cluster message of job ids, or of any job when there are too many", () => {
    const ids = [randomUUID(), randomUUID()];
    assert.deepEqual(parseEnvelope(JSON.stringify({ from: "r1", type: "jobs-changed", jobIds: ids })), { from: "r1", message: { type: "jobs-changed", jobIds: ids } });
    assert.deepEqual(parseEnvelope(JSON.stringify({ from: "r1", type: "jobs-changed", jobIds: [] })), { from: "r1", message: { type: "jobs-changed", jobIds: [] } });
    for (const bad of [{ jobIds: "x" }, { jobIds: ["not-a-uuid"] }, { jobIds: [1] }, {}]) {
      assert.equal(parseEnvelope(JSON.stringify({ from: "r1", type: "jobs-changed", ...bad })), undefined, JSON.stringify(bad));
    }
    assert.ok(maxChangedJobIds * 37 < 8000, "a full message fits in a NOTIFY payload");
  });
});

/** One customer's job with one unit assigned to a node, as the placer leaves it. */
async function seedAssignedJob(db: Database): Promise<{ customerId: string; jobId: string; unitId: string; nodeId: string }> {
  const { customerId, jobId } = await insertJob(db);
  const unitId = randomUUID();
  const [nodeId] = (await insertNodes(db, 1)) as [string];
  await db.query(
    `INSERT INTO compute_units (id, job_id, customer_id, name, kind, status, entrypoint, attempt, max_attempts, node_id, assigned_at)
     VALUES ($1, $2, $3, 'train', 'cpu', 'assigned', 'train.py', 1, 3, $4, now())`,
    [unitId, jobId, customerId, nodeId],
  );
  return { customerId, jobId, unitId, nodeId };
}

describe("job view cache over the life cycle (PGlite)", () => {
  let db: Database;
  let cache: JobViewCache;

  beforeEach(async () => {
    db = await openMigratedPGlite();
    cache = createJobViewCache({ clock: new FakeClock(), ttlMs: 60_000 });
    onJobsChanged(db, (ids) => cache.invalidate(ids));
  });
  afterEach(async () => {
    await db.close();
  });

  const read = (customerId: string, jobId: string) => cache.get(customerId, jobId, () => findJobView(db, customerId, jobId));

  it("a read after each transition sees it: running, then completed with its debit", async () => {
    const f = await seedAssignedJob(db);
    const now = new Date();
    assert.equal((await read(f.customerId, f.jobId))?.status, "queued");
    await applyAccepted(db, f.nodeId, { unitId: f.unitId, attempt: 1 }, now);
    assert.equal((await read(f.customerId, f.jobId))?.status, "running");
    await applyFinished(db, f.nodeId, { unitId: f.unitId, attempt: 1 }, { outcome: "succeeded", exitCode: 0, error: "", runSeconds: 5 }, defaultRates, now);
    const done = await read(f.customerId, f.jobId);
    assert.equal(done?.status, "completed");
    assert.equal(done?.compute_units_completed, 1);
    assert.ok((done?.credits_debited ?? 0) > 0, "the debit shows at once");
  });

  it("a read after a cancel sees it", async () => {
    const f = await seedAssignedJob(db);
    await read(f.customerId, f.jobId);
    await cancelJob(db, f.jobId, new Date());
    assert.equal((await read(f.customerId, f.jobId))?.status, "cancelled");
  });

  it("a read in flight while a transition commits does not leave the old view behind", async () => {
    const f = await seedAssignedJob(db);
    // Start a read, let the transition run and end before the read's answer is stored.
    const slow = deferred<void>();
    const reading = cache.get(f.customerId, f.jobId, async () => {
      const row = await findJobView(db, f.customerId, f.jobId);
      await slow.promise;
      return row;
    });
    await new Promise((r) => setImmediate(r));
    await applyAccepted(db, f.nodeId, { unitId: f.unitId, attempt: 1 }, new Date());
    slow.resolve();
    assert.equal((await reading)?.status, "queued");
    assert.equal((await read(f.customerId, f.jobId))?.status, "running");
  });
});

describe("job view cache through the API (read your writes, tenancy)", function () {
  this.timeout(120_000);
  let cp: TestControlPlane;

  before(async () => {
    cp = await startPlane();
  });
  after(async () => {
    await cp?.stop();
  });

  it("GET after cancel and after an agent's transition shows them; another customer's GET is 404", async () => {
    const owner = await createCustomer(cp);
    const auth = { "x-api-key": owner.apiKey };
    const example = join(import.meta.dirname, "..", "..", "examples", "tiny-mlp");
    const dataset = await uploadResource(cp, owner.apiKey, "datasets", "d", await readFile(join(example, "dataset.csv")), { format: "csv" });
    const pkg = await uploadResource(cp, owner.apiKey, "training-packages", "p", await examplePackageZip(), { entrypoint: "train.py" });
    const body = { name: "cached", dataset_id: dataset["id"], training_package_id: pkg["id"], required_vram_mb: 1000, max_runtime_seconds: 60 };
    const createJob = async () => {
      const res = await request(cp, "POST", "/api/v1/customer/training-jobs", { headers: auth, body });
      assert.equal(res.status, 201, JSON.stringify(res.body));
      return res.body["id"] as string;
    };

    const first = await createJob();
    const get = (id: string, headers = auth) => request(cp, "GET", `/api/v1/customer/training-jobs/${id}`, { headers });
    assert.equal((await get(first)).body["status"], "queued");
    assert.equal((await get(first)).body["status"], "queued"); // now cached
    assert.equal((await request(cp, "POST", `/api/v1/customer/training-jobs/${first}/cancel`, { headers: auth, body: {} })).status, 200);
    assert.equal((await get(first)).body["status"], "cancelled");

    // A transition made by the agent path (not the API) is seen by the next GET too.
    const second = await createJob();
    assert.equal((await get(second)).body["status"], "queued");
    const db = cp.plane.deps.db;
    const nodeId = randomUUID();
    await db.query(`INSERT INTO nodes (id, trust_level, state, credential_hash, last_heartbeat_at) VALUES ($1, 'controlled', 'online', $2, now())`, [nodeId, `hash-${nodeId}`]);
    const [unit] = await db.query<{ id: string; attempt: number }>(
      `UPDATE compute_units SET status = 'assigned', node_id = $2, assigned_at = now()
       WHERE id = (SELECT id FROM compute_units WHERE job_id = $1 AND status = 'ready' ORDER BY plan_index LIMIT 1) RETURNING id, attempt`,
      [second, nodeId],
    );
    await applyAccepted(db, nodeId, { unitId: unit!.id, attempt: unit!.attempt }, new Date());
    assert.equal((await get(second)).body["status"], "running");

    // Another customer: 404 with the job's not-found code, while the owner's view is cached.
    const intruder = await createCustomer(cp);
    const foreign = await get(second, { "x-api-key": intruder.apiKey });
    assert.equal(foreign.status, 404);
    assert.equal((foreign.body["error"] as Record<string, string>)["code"], "JOB_NOT_FOUND");
    const nowhere = await get(randomUUID(), { "x-api-key": intruder.apiKey });
    assert.equal(nowhere.status, 404);
    assert.deepEqual(Object.keys(nowhere.body), Object.keys(foreign.body));
    assert.equal((await get(second)).status, 200);
  });
});

describe("job view cache across replicas (PostgreSQL, LISTEN/NOTIFY)", function () {
  this.timeout(180_000);
  let pg: TestPostgres;
  const replicas: Array<{ plane: ControlPlane; dataDir: string }> = [];
  const adminToken = `admin-${randomUUID()}`;

  async function replica(replicaId: string): Promise<ControlPlane> {
    const dataDir = await mkdtemp(join(tmpdir(), "gpu-agent-cache-"));
    const plane = await startControlPlane(
      {
        host: "127.0.0.1",
        port: 0,
        publicUrl: "http://127.0.0.1:0",
        dataDir,
        databaseUrl: pg.url,
        etcdEndpoints: [],
        replicaId,
        adminToken,
        blobDir: join(dataDir, "blobs"),
        placementIntervalMs: 200,
        limits: defaultLimits,
        rates: defaultRates,
        agents: defaultAgents,
        build: "test",
      },
      { logger: pino({ level: "silent" }) },
    );
    replicas.push({ plane, dataDir });
    return plane;
  }

  before(async () => {
    pg = await startPostgres();
  });
  after(async () => {
    for (const r of replicas) {
      await r.plane.close();
      await rm(r.dataDir, { recursive: true, force: true });
    }
    await pg?.stop();
  });

  it("a cancel through one replica reaches the view another replica cached, well before its TTL", async () => {
    const a = await replica("replica-a");
    const b = await replica("replica-b");
    const cpA: TestControlPlane = { plane: a, url: a.url, adminToken, dataDir: "", stop: async () => undefined };
    const cpB: TestControlPlane = { ...cpA, plane: b, url: b.url };
    await enrollReferenceNode(a.deps.db);
    const { apiKey } = await createCustomer(cpA);
    const auth = { "x-api-key": apiKey };
    const example = join(import.meta.dirname, "..", "..", "examples", "tiny-mlp");
    const dataset = await uploadResource(cpA, apiKey, "datasets", "d", await readFile(join(example, "dataset.csv")), { format: "csv" });
    const pkg = await uploadResource(cpA, apiKey, "training-packages", "p", await examplePackageZip(), { entrypoint: "train.py" });
    const created = await request(cpA, "POST", "/api/v1/customer/training-jobs", {
      headers: auth,
      body: { name: "replicated", dataset_id: dataset["id"], training_package_id: pkg["id"], required_vram_mb: 1000, max_runtime_seconds: 60 },
    });
    assert.equal(created.status, 201, JSON.stringify(created.body));
    const id = created.body["id"] as string;
    const getOnB = async () => (await request(cpB, "GET", `/api/v1/customer/training-jobs/${id}`, { headers: auth })).body["status"];
    assert.equal(await getOnB(), "queued");
    assert.equal(await getOnB(), "queued");
    assert.ok(b.deps.jobViews.size > 0, "replica B holds the view");

    const cancelled = Date.now();
    assert.equal((await request(cpA, "POST", `/api/v1/customer/training-jobs/${id}/cancel`, { headers: auth, body: {} })).status, 200);
    let seenAfterMs: number | undefined;
    while (Date.now() - cancelled < 5000) {
      if ((await getOnB()) === "cancelled") {
        seenAfterMs = Date.now() - cancelled;
        break;
      }
      await new Promise((r) => setTimeout(r, 10));
    }
    assert.ok(seenAfterMs !== undefined, "replica B never saw the cancel");
    // The entry was filled just before the cancel and lives 2 s: seeing the cancel sooner is the NOTIFY's doing.
    assert.ok(seenAfterMs < 1000, `replica B saw the cancel after ${seenAfterMs} ms`);
  });
});
