/**
 * A unit's checkpoints through its lifecycle (src/jobs/lifecycle.ts, src/store/checkpoints.ts) on a real
 * database: a CheckpointReady makes a stored file the unit's latest (once, by its bytes; never from another
 * attempt or node), a newer one deletes the older, a failure of the unit's code drops them, and the next
 * attempt after a node-caused failure is sent the latest to resume from (the Assign of
 * src/agent-streams/assignments.ts).
 */
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import type { Assign, SessionResponse } from "../../src/gen/gpuagent/agent/v1/agent_pb.ts";
import { dispatchAssignments } from "../../src/agent-streams/assignments.ts";
import { SessionRegistry } from "../../src/agent-streams/session-registry.ts";
import { checkpointBlobKey } from "../../src/blobs/unit-checkpoints.ts";
import { createUrlSigner } from "../../src/blobs/signed-url.ts";
import { applyAccepted, applyCheckpointReady, applyFinished, requeueUnitsOfNode, takeBackSilentNode } from "../../src/jobs/lifecycle.ts";
import type { FinishOutcome } from "../../src/jobs/lifecycle.ts";
import { AsyncQueue } from "../../src/platform/async-queue.ts";
import { FakeClock } from "../../src/platform/clock.ts";
import { defaultRates, schedulerConfigFromEnv } from "../../src/platform/config.ts";
import { findAttempt, findLatestCheckpoint, insertCheckpointUpload } from "../../src/store/checkpoints.ts";
import type { Database } from "../../src/store/database.ts";
import { openDatabase } from "../../src/store/database.ts";
import { openMigratedPGlite } from "../support/database-template.ts";
import { createMigratedTestDatabaseUrl } from "../support/postgres.ts";
import { insertJob, insertNodes } from "../support/rows.ts";

const backends: readonly { name: string; open(): Promise<Database> }[] = [
  { name: "PGlite", open: () => openMigratedPGlite() },
  { name: "PostgreSQL", open: async () => openDatabase({ url: await createMigratedTestDatabaseUrl() }) },
];

const t0 = new Date("2030-01-01T00:00:00Z");
const at = (seconds: number) => new Date(t0.getTime() + seconds * 1000);
const sha = (c: string) => c.repeat(64);

interface Fixture {
  customerId: string;
  jobId: string;
  unitId: string;
  nodes: string[];
}

/** A checkpoint as the node announces it. */
interface Announced {
  name: string;
  sha256: string;
  metrics: Record<string, number>;
}

for (const backend of backends) {
  describe(`unit checkpoints through the lifecycle on ${backend.name}`, function () {
    this.timeout(60_000);
    let db: Database;
    let f: Fixture;

    before(async () => {
      db = await backend.open();
    });
    after(async () => {
      await db.close();
    });
    beforeEach(async () => {
      const { customerId, jobId } = await insertJob(db, { status: "running" });
      const unitId = randomUUID();
      await db.query(
        `INSERT INTO compute_units (id, job_id, customer_id, name, kind, status, entrypoint, attempt, max_attempts, required_gpu_count)
         VALUES ($1, $2, $3, 'train', 'cpu', 'ready', 'train.py', 1, 3, 0)`,
        [unitId, jobId, customerId],
      );
      f = { customerId, jobId, unitId, nodes: await insertNodes(db, 2, t0) };
    });

    /** What the placer commits: the ready unit's current attempt assigned to `nodeId`. Returns the attempt. */
    async function place(nodeId: string, when = t0): Promise<number> {
      const [row] = await db.query<{ attempt: number }>(
        `UPDATE compute_units SET status = 'assigned', node_id = $2, assignment_id = $3, assigned_at = $4 WHERE id = $1 AND status = 'ready' RETURNING attempt`,
        [f.unitId, nodeId, randomUUID(), when],
      );
      assert.ok(row, "the unit was ready to place");
      return row.attempt;
    }

    /** Placed, then the node's Accepted: the unit's current attempt runs on `nodeId`. */
    async function placeAndAccept(nodeId: string, when = t0): Promise<number> {
      const attempt = await place(nodeId, when);
      await applyAccepted(db, nodeId, { unitId: f.unitId, attempt }, when);
      return attempt;
    }

    /** A checkpoint file the node stored for `attempt` (what the upload route records), with its blob key. */
    async function stored(attempt: number, c: Announced, storedAt: Date, sizeBytes = 100): Promise<string> {
      const key = checkpointBlobKey(f.unitId, attempt, randomUUID(), c.name);
      await insertCheckpointUpload(db, {
        blob_key: key,
        unit_id: f.unitId,
        job_id: f.jobId,
        customer_id: f.customerId,
        attempt,
        name: c.name,
        size_bytes: sizeBytes,
        sha256: c.sha256,
        stored_at: storedAt,
      });
      return key;
    }

    const announce = (nodeId: string, attempt: number, c: Announced, when: Date) => applyCheckpointReady(db, nodeId, { unitId: f.unitId, attempt }, c, when);
    const finish = (nodeId: string, attempt: number, outcome: FinishOutcome, when: Date) =>
      applyFinished(db, nodeId, { unitId: f.unitId, attempt }, { outcome, exitCode: outcome === "failed" ? 1 : -1, error: outcome, runSeconds: 5 }, defaultRates, when);

    const latest = async () => {
      const c = await findLatestCheckpoint(db, f.unitId);
      return c && { attempt: c.attempt, name: c.name, sha256: c.sha256, metrics: c.metrics, blobKey: c.blob_key, createdAt: c.created_at.toISOString() };
    };
    const uploadKeys = async () => (await db.query<{ blob_key: string }>(`SELECT blob_key FROM unit_checkpoint_uploads WHERE unit_id = $1 ORDER BY stored_at`, [f.unitId])).map((r) => r.blob_key);
    const deletionsOf = async (keys: readonly string[]) =>
      (await db.query<{ blob_key: string }>(`SELECT blob_key FROM blob_deletions WHERE blob_key = ANY($1::text[]) ORDER BY blob_key`, [[...keys]])).map((r) => r.blob_key);

    /** The Assign the unit's node is sent now, as dispatched on a fresh stream. */
    async function assignSentTo(nodeId: string): Promise<Assign> {
      const clock = new FakeClock(t0.getTime());
      const config = { ...schedulerConfigFromEnv({}), publicUrl: "https://cp.example" };
      const deps = { db, clock, config, signer: createUrlSigner(config.publicUrl, "test-secret") };
      const sessions = new SessionRegistry();
      const outbound = new AsyncQueue<SessionResponse>(16);
      sessions.register({ nodeId, sessionId: randomUUID(), outbound, sentAssignments: new Set(), lastSeenMs: 0, lastPersistedMs: 0, nextSeq: 1n });
      assert.equal(await dispatchAssignments(deps, sessions, nodeId), 1);
      outbound.close();
      for await (const message of outbound) if (message.body.case === "assign") return message.body.value;
      assert.fail("no Assign was sent");
    }

    const first: Announced = { name: "epoch-1.ckpt", sha256: sha("a"), metrics: { epoch: 1 } };
    const second: Announced = { name: "epoch-2.ckpt", sha256: sha("b"), metrics: { epoch: 2, loss: 0.25 } };

    it("records an announced checkpoint once: a replay of the same (unit, attempt, name, sha256) changes nothing", async () => {
      const [a] = f.nodes as [string];
      const attempt = await placeAndAccept(a);
      const key = await stored(attempt, first, at(1));
      assert.equal(await announce(a, attempt, first, at(2)), "recorded");
      const recorded = await latest();
      assert.deepEqual(recorded, { attempt, name: first.name, sha256: first.sha256, metrics: first.metrics, blobKey: key, createdAt: at(2).toISOString() });

      assert.equal(await announce(a, attempt, { ...first, metrics: { epoch: 99 } }, at(3)), "recorded");
      assert.deepEqual(await latest(), recorded);
      assert.deepEqual(await uploadKeys(), [key]);
      assert.deepEqual(await deletionsOf([key]), []);
    });

    it("makes a newer checkpoint the latest and schedules the older file's deletion; the older one announced late records nothing", async () => {
      const [a] = f.nodes as [string];
      const attempt = await placeAndAccept(a);
      const olderKey = await stored(attempt, first, at(1));
      assert.equal(await announce(a, attempt, first, at(2)), "recorded");
      const newerKey = await stored(attempt, second, at(3));
      assert.equal(await announce(a, attempt, second, at(4)), "recorded");

      assert.deepEqual(await latest().then((c) => c && [c.name, c.blobKey, c.metrics]), [second.name, newerKey, second.metrics]);
      assert.deepEqual(await uploadKeys(), [newerKey]);
      assert.deepEqual(await deletionsOf([olderKey, newerKey]), [olderKey]);

      assert.equal(await announce(a, attempt, first, at(5)), "not_stored");
      assert.deepEqual(await latest().then((c) => c?.name), second.name);
    });

    it("keeps a newer file still on its way when an older one is announced", async () => {
      const [a] = f.nodes as [string];
      const attempt = await placeAndAccept(a);
      const olderKey = await stored(attempt, first, at(1));
      const newerKey = await stored(attempt, second, at(2));
      assert.equal(await announce(a, attempt, first, at(3)), "recorded");
      assert.deepEqual(await uploadKeys(), [olderKey, newerKey]);
      assert.deepEqual(await deletionsOf([olderKey, newerKey]), []);
      assert.equal(await announce(a, attempt, second, at(4)), "recorded");
      assert.deepEqual(await deletionsOf([olderKey, newerKey]), [olderKey]);
    });

    const notTheRunningAttempt: { name: string; from: (nodes: string[], attempt: number) => { nodeId: string; attempt: number } }[] = [
      { name: "an attempt the unit is not at", from: (nodes, attempt) => ({ nodeId: nodes[0]!, attempt: attempt + 1 }) },
      { name: "another node than the attempt's", from: (nodes, attempt) => ({ nodeId: nodes[1]!, attempt }) },
    ];
    for (const c of notTheRunningAttempt) {
      it(`records nothing for a CheckpointReady from ${c.name}`, async () => {
        const attempt = await placeAndAccept(f.nodes[0]!);
        const from = c.from(f.nodes, attempt);
        const key = await stored(from.attempt, first, at(1));
        assert.equal(await announce(from.nodeId, from.attempt, first, at(2)), "stale");
        assert.equal(await latest(), undefined);
        assert.deepEqual(await deletionsOf([key]), []);
      });
    }

    it("records nothing for a late CheckpointReady of an attempt lost with its node, once the unit runs elsewhere", async () => {
      const [a, b] = f.nodes as [string, string];
      const lost = await placeAndAccept(a);
      await stored(lost, first, at(1));
      await takeBackSilentNode(db, a, at(10), at(10));
      await placeAndAccept(b, at(11));
      assert.equal(await announce(a, lost, first, at(12)), "stale");
      assert.equal(await latest(), undefined);
    });

    it("drops the checkpoints when the unit's code fails: the next attempt starts fresh", async () => {
      const [a] = f.nodes as [string];
      const attempt = await placeAndAccept(a);
      const recordedKey = await stored(attempt, first, at(1));
      assert.equal(await announce(a, attempt, first, at(2)), "recorded");
      const onItsWayKey = await stored(attempt, second, at(3));
      await finish(a, attempt, "failed", at(4));

      assert.equal(await latest(), undefined);
      assert.deepEqual(await uploadKeys(), []);
      assert.deepEqual(await deletionsOf([recordedKey, onItsWayKey]), [recordedKey, onItsWayKey].sort());
      const next = await findAttempt(db, f.unitId, attempt + 1);
      assert.equal(next?.resumed_from_attempt ?? null, null);

      assert.equal(await place(a, at(5)), attempt + 1);
      const assign = await assignSentTo(a);
      assert.equal(assign.resumeFrom, undefined);
      assert.deepEqual(assign.inputs.filter((i) => i.role === "checkpoint"), []);
    });

    const nodeCaused: { name: string; lose: (nodeId: string, attempt: number) => Promise<unknown> }[] = [
      { name: "its node went silent", lose: (nodeId) => takeBackSilentNode(db, nodeId, at(10), at(10)) },
      { name: "its agent restarted without it", lose: (nodeId) => requeueUnitsOfNode(db, nodeId, "the agent restarted and no longer runs it", { unitIds: [f.unitId], now: at(10) }) },
      { name: "its node reported a node error (the owner took the GPU back)", lose: (nodeId, attempt) => finish(nodeId, attempt, "node_error", at(10)) },
    ];
    for (const c of nodeCaused) {
      it(`sends the next attempt the latest checkpoint to resume from when ${c.name}`, async () => {
        const [a, b] = f.nodes as [string, string];
        const lost = await placeAndAccept(a);
        await stored(lost, first, at(1));
        assert.equal(await announce(a, lost, first, at(2)), "recorded");
        const latestKey = await stored(lost, second, at(3), 4096);
        assert.equal(await announce(a, lost, second, at(4)), "recorded");
        await c.lose(a, lost);

        assert.equal(await place(b, at(11)), lost + 1);
        const assign = await assignSentTo(b);
        assert.deepEqual(
          assign.resumeFrom && { attempt: assign.resumeFrom.attempt, name: assign.resumeFrom.name, metrics: { ...assign.resumeFrom.metrics } },
          { attempt: lost, name: second.name, metrics: second.metrics },
        );
        const checkpointInputs = assign.inputs.filter((i) => i.role === "checkpoint");
        assert.deepEqual(
          checkpointInputs.map((i) => ({ name: i.name, sha256: i.sha256, sizeBytes: i.sizeBytes })),
          [{ name: second.name, sha256: second.sha256, sizeBytes: 4096n }],
        );
        const url = new URL(checkpointInputs[0]!.url);
        assert.equal(decodeURIComponent(url.pathname), `/blobs/${latestKey}`);
        assert.equal(url.searchParams.get("op"), "get");
        assert.equal(assign.checkpointUploadUrl, `https://cp.example/agent/v1/units/${f.unitId}/attempts/${lost + 1}/checkpoints`);

        await applyAccepted(db, b, { unitId: f.unitId, attempt: lost + 1 }, at(12));
        const record = await findAttempt(db, f.unitId, lost + 1);
        assert.deepEqual(
          record && [record.node_id, record.resumed_from_attempt, record.resumed_from_checkpoint, record.resumed_from_metrics],
          [b, lost, second.name, second.metrics],
        );
      });
    }

    it("starts the next attempt fresh after a node-caused failure when the unit wrote no checkpoint", async () => {
      const [a, b] = f.nodes as [string, string];
      const lost = await placeAndAccept(a);
      await takeBackSilentNode(db, a, at(10), at(10));
      assert.equal(await place(b, at(11)), lost + 1);
      const assign = await assignSentTo(b);
      assert.equal(assign.resumeFrom, undefined);
      assert.deepEqual(assign.inputs.filter((i) => i.role === "checkpoint"), []);
      assert.equal(await findAttempt(db, f.unitId, lost + 1), undefined);
    });
  });
}
