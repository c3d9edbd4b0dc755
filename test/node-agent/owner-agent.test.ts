/**
 * The owner's controls in the whole agent: a real agent object against a real HTTP/2 gRPC server
 * standing in for the control plane, real Python units, and the real control socket, driven through
 * sendControlCommand and, for `pause --now`, the real `gpu-agent` command line.
 */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { randomUUID } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import http2 from "node:http2";
import type { AddressInfo } from "node:net";
import os from "node:os";
import path from "node:path";
import { create } from "@bufbuild/protobuf";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import {
  AckSchema,
  AgentService,
  AssignSchema,
  InputFileSchema,
  Outcome,
  SessionResponseSchema,
  UnitRefSchema,
  WelcomeSchema,
} from "../../src/gen/gpuagent/agent/v1/agent_pb.ts";
import type { Finished, Heartbeat, Hello, Rejected, SessionRequest, SessionResponse } from "../../src/gen/gpuagent/agent/v1/agent_pb.ts";
import { createNodeAgent, writeNodeIdentity } from "../../src/node-agent/agent.ts";
import type { NodeAgentOptions } from "../../src/node-agent/agent.ts";
import { createAsyncQueue } from "../../src/node-agent/async-queue.ts";
import type { AsyncQueue } from "../../src/node-agent/async-queue.ts";
import { sendControlCommand } from "../../src/node-agent/control-socket.ts";
import { silentLogger } from "../../src/node-agent/logger.ts";
import { FakeClock, systemClock } from "../../src/platform/clock.ts";
import type { Clock } from "../../src/platform/clock.ts";
import { sha256, startBlobServer, zipOf } from "./helpers.ts";
import type { BlobServer } from "./helpers.ts";

const agentCommand = path.resolve(import.meta.dirname, "../../cmd/agent.ts");

/** Monday 2026-01-05 at the given UTC time. */
const monday = (h: number, m: number) => Date.UTC(2026, 0, 5, h, m);

/** A control plane that welcomes, acks everything, records what the agent sends, and sends what the test says. */
async function startControlPlane(heartbeatIntervalSeconds: number) {
  const received: SessionRequest[] = [];
  const waiters: { from: number; match: (r: SessionRequest) => boolean; resolve: (r: SessionRequest) => void }[] = [];
  let out: AsyncQueue<SessionResponse> | undefined;
  let seq = 0n;
  const settle = () => {
    for (const w of [...waiters]) {
      const hit = received.slice(w.from).find(w.match);
      if (hit === undefined) continue;
      waiters.splice(waiters.indexOf(w), 1);
      w.resolve(hit);
    }
  };
  const server = http2.createServer(
    connectNodeAdapter({
      routes(router) {
        router.service(AgentService, {
          enroll() {
            throw new Error("these tests write node.json themselves");
          },
          session(requests) {
            const queue = createAsyncQueue<SessionResponse>(100);
            out = queue;
            void (async () => {
              try {
                for await (const r of requests) {
                  if (r.seq > 0n) await queue.put(create(SessionResponseSchema, { body: { case: "ack", value: create(AckSchema, { seq: r.seq }) } }));
                  if (r.body.case === "hello") {
                    await queue.put(create(SessionResponseSchema, { seq: ++seq, body: { case: "welcome", value: create(WelcomeSchema, { nodeId: "node-1", sessionId: randomUUID(), heartbeatIntervalSeconds }) } }));
                  }
                  received.push(r);
                  settle();
                }
              } catch {
                // The agent hung up.
              }
              queue.close();
            })();
            return queue;
          },
        });
      },
    }),
  );
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    received,
    /** The first message from index `from` on that `match` accepts, when it arrives. */
    next<T>(from: number, pick: (r: SessionRequest) => T | undefined): Promise<T> {
      return new Promise((resolve) => {
        waiters.push({ from, match: (r) => pick(r) !== undefined, resolve: (r) => resolve(pick(r) as T) });
        settle();
      });
    },
    async send(body: SessionResponse["body"]) {
      assert.ok(out, "no session open");
      await out.put(create(SessionResponseSchema, { seq: ++seq, body }));
    },
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}
type ControlPlane = Awaited<ReturnType<typeof startControlPlane>>;

const heartbeatOf = (r: SessionRequest): Heartbeat | undefined => (r.body.case === "heartbeat" ? r.body.value : undefined);
const helloOf = (r: SessionRequest): Hello | undefined => (r.body.case === "hello" ? r.body.value : undefined);
const rejectedOf = (unitId: string) => (r: SessionRequest): Rejected | undefined =>
  r.body.case === "rejected" && r.body.value.unit?.unitId === unitId ? r.body.value : undefined;
const acceptedOf = (unitId: string) => (r: SessionRequest): true | undefined =>
  r.body.case === "accepted" && r.body.value.unit?.unitId === unitId ? true : undefined;
const finishedOf = (unitId: string) => (r: SessionRequest): Finished | undefined =>
  r.body.case === "finished" && r.body.value.unit?.unitId === unitId ? r.body.value : undefined;
const logged = (unitId: string, text: string) => (r: SessionRequest): true | undefined =>
  r.body.case === "log" && r.body.value.unit?.unitId === unitId && r.body.value.lines.some((l) => l.includes(text)) ? true : undefined;

describe("owner controls in the agent", function () {
  this.timeout(30_000);

  let dataDir: string;
  let blobs: BlobServer;
  let cp: ControlPlane;
  let stop: AbortController | undefined;
  let running: Promise<void> | undefined;

  beforeEach(async () => {
    dataDir = await mkdtemp(path.join(os.tmpdir(), "gpu-agent-own-"));
    blobs = await startBlobServer();
  });
  afterEach(async () => {
    await stopAgent();
    await cp.close();
    await blobs.close();
    await rm(dataDir, { recursive: true, force: true });
  });

  /** Starts an agent enrolled with `cp` and resolves once its Hello has arrived. */
  const startAgent = async (clock: Clock, owner: NodeAgentOptions["owner"] = {}): Promise<Hello> => {
    await writeNodeIdentity(dataDir, { url: cp.url, node_id: "node-1", node_credential: "nc_secret", trust_level: "community" });
    const from = cp.received.length;
    stop = new AbortController();
    running = createNodeAgent({
      dataDir,
      maxConcurrentUnits: 2,
      clock,
      logger: silentLogger,
      shutdownGraceMs: 1000,
      owner,
      runner: { killGraceMs: 500 },
    }).run(stop.signal);
    return cp.next(from, helloOf);
  };
  const stopAgent = async () => {
    stop?.abort();
    await running;
    stop = undefined;
    running = undefined;
  };

  /** An Assign of a CPU unit whose package is `script`. */
  const assign = async (unitId: string, script: string) => {
    const pkg = await zipOf({ "main.py": script });
    blobs.blobs.set(`${unitId}.zip`, pkg);
    await cp.send({
      case: "assign",
      value: create(AssignSchema, {
        assignmentId: randomUUID(),
        unit: create(UnitRefSchema, { unitId, attempt: 1 }),
        jobId: "job-1",
        stage: "train",
        kind: "cpu",
        gpuIndex: -1,
        entrypoint: "main.py",
        maxRuntimeSeconds: 60,
        artifactUploadUrl: `${blobs.url}/artifacts/${unitId}`,
        inputs: [create(InputFileSchema, { role: "package", name: "pkg.zip", url: `${blobs.url}/blobs/${unitId}.zip`, sha256: sha256(pkg), sizeBytes: BigInt(pkg.length) })],
      }),
    });
  };

  it("reports the owner's policy in Hello", async () => {
    cp = await startControlPlane(3600);
    const hello = await startAgent(new FakeClock(monday(19, 0)), { available: "Mon-Fri 18:00-08:00", reservedVramMb: 2048, utcOffset: () => 0 });
    const owner = hello.capabilities?.owner;
    assert.deepEqual(
      { paused: owner?.paused, available: owner?.available, withinWindow: owner?.withinWindow, reservedVramMb: owner?.reservedVramMb },
      { paused: false, available: "Mon-Fri 18:00-08:00", withinWindow: true, reservedVramMb: 2048 },
    );
  });

  it("when paused, says so in a heartbeat at once and rejects an Assign with the reason", async () => {
    // An hour between regular heartbeats: any heartbeat seen here was sent because of the pause.
    cp = await startControlPlane(3600);
    await startAgent(systemClock);
    const from = cp.received.length;
    const reply = await sendControlCommand(dataDir, { command: "pause", now: false });
    assert.ok(reply.ok && reply.status.paused);
    const heartbeat = await cp.next(from, heartbeatOf);
    assert.equal(heartbeat.owner?.paused, true);

    const unitId = randomUUID();
    await assign(unitId, "print('should not run')\n");
    const rejected = await cp.next(from, rejectedOf(unitId));
    assert.equal(rejected.reason, "node is paused by its owner (gpu-agent pause)");
  });

  it("when resumed, says so in a heartbeat at once and runs an Assign", async () => {
    cp = await startControlPlane(3600);
    await startAgent(systemClock);
    await sendControlCommand(dataDir, { command: "pause", now: false });
    const from = cp.received.length;
    const reply = await sendControlCommand(dataDir, { command: "resume" });
    assert.ok(reply.ok && !reply.status.paused);
    const heartbeat = await cp.next(from, (r) => (heartbeatOf(r)?.owner?.paused === false ? heartbeatOf(r) : undefined));
    assert.equal(heartbeat.owner?.withinWindow, true);

    const unitId = randomUUID();
    await assign(unitId, "print('ran')\n");
    const finished = await cp.next(from, finishedOf(unitId));
    assert.equal(finished.outcome, Outcome.SUCCEEDED, finished.error);
  });

  it("keeps a pause across a restart: the next Hello says paused", async () => {
    cp = await startControlPlane(3600);
    await startAgent(systemClock);
    await sendControlCommand(dataDir, { command: "pause", now: false });
    await stopAgent();
    const hello = await startAgent(systemClock);
    assert.equal(hello.capabilities?.owner?.paused, true);
  });

  it("on `gpu-agent pause --now`, hands a running unit back as NODE_ERROR, uploads nothing, and takes no new one", async () => {
    cp = await startControlPlane(3600);
    await startAgent(systemClock);
    const from = cp.received.length;
    const unitId = randomUUID();
    await assign(unitId, "import time\nprint('started', flush=True)\ntime.sleep(600)\n");
    await cp.next(from, logged(unitId, "started"));

    const cli = await new Promise<{ code: number; stdout: string; stderr: string }>((resolve) => {
      execFile(process.execPath, [agentCommand, "pause", "--now", "--data-dir", dataDir], (err, stdout, stderr) =>
        resolve({ code: err === null ? 0 : Number(err.code), stdout, stderr }),
      );
    });
    assert.equal(cli.code, 0, cli.stderr);
    assert.match(cli.stdout, new RegExp(`^handed back 1 running unit\\(s\\): ${unitId} \\(attempt 1\\)$`, "m"));
    assert.match(cli.stdout, /^paused: +yes/m);
    assert.match(cli.stdout, /^running units: +none$/m);

    const finished = await cp.next(from, finishedOf(unitId));
    assert.equal(finished.outcome, Outcome.NODE_ERROR);
    assert.match(finished.error, /the node's owner took the machine back \(gpu-agent pause --now\)/);
    assert.equal(cp.received.slice(from).some((r) => r.body.case === "artifactReady"), false, "a handed-back unit uploads nothing");
    assert.equal(blobs.uploads.size, 0);

    const next = randomUUID();
    await assign(next, "print('should not run')\n");
    assert.equal((await cp.next(from, rejectedOf(next))).reason, "node is paused by its owner (gpu-agent pause)");
  });

  it("at the window's edge, sends a heartbeat at once and starts taking units", async () => {
    cp = await startControlPlane(3600);
    const clock = new FakeClock(monday(17, 59));
    await startAgent(clock, { available: "Mon-Fri 18:00-08:00", utcOffset: () => 0 });
    const from = cp.received.length;
    const early = randomUUID();
    await assign(early, "print('too early')\n");
    assert.equal((await cp.next(from, rejectedOf(early))).reason, "node is outside its owner's availability window (Mon-Fri 18:00-08:00)");
    assert.equal(cp.received.slice(from).some((r) => r.body.case === "heartbeat"), false);

    clock.advance(60_000);
    const heartbeat = await cp.next(from, heartbeatOf);
    assert.equal(heartbeat.owner?.withinWindow, true);
    const onTime = randomUUID();
    await assign(onTime, "print('on time')\n");
    await cp.next(from, acceptedOf(onTime));
  });
});
