/**
 * The whole agent against a real HTTP/2 cleartext server speaking gRPC:
 * enroll, Hello/Welcome, an Assign run to Finished, acks, graceful stop.
 */
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { mkdtemp, rm, stat } from "node:fs/promises";
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
  EnrollResponseSchema,
  InputFileSchema,
  Outcome,
  SessionResponseSchema,
  UnitRefSchema,
  WelcomeSchema,
} from "../../src/gen/gpuagent/agent/v1/agent_pb.ts";
import type { SessionRequest, SessionResponse } from "../../src/gen/gpuagent/agent/v1/agent_pb.ts";
import { createNodeAgent, enrollNode, readNodeIdentity } from "../../src/node-agent/agent.ts";
import { createAsyncQueue } from "../../src/node-agent/async-queue.ts";
import { silentLogger } from "../../src/node-agent/logger.ts";
import { systemClock } from "../../src/platform/clock.ts";
import { sha256, startBlobServer, zipOf } from "./helpers.ts";

describe("node agent over gRPC", function () {
  this.timeout(30_000);

  it("enrolls, runs an assigned unit to Finished and stops gracefully", async () => {
    const dataDir = await mkdtemp(path.join(os.tmpdir(), "gpu-agent-node-"));
    const blobs = await startBlobServer();
    const received: SessionRequest[] = [];
    const unitId = randomUUID();
    const pkg = await zipOf({
      "main.py": 'import os\nprint("@@gpu-agent {\\"progress\\": 1.0}")\nopen(os.path.join(os.environ["GPU_AGENT_OUTPUT_DIR"], "out.txt"), "w").write("ok")\n',
    });
    blobs.blobs.set("pkg.zip", pkg);
    let enrollToken = "";
    let seq = 0n;
    const next = (body: SessionResponse["body"]) => create(SessionResponseSchema, { seq: ++seq, body });

    const server = http2.createServer(
      connectNodeAdapter({
        routes(router) {
          router.service(AgentService, {
            enroll(req) {
              enrollToken = req.token;
              assert.ok(req.capabilities?.gpus.some((g) => g.declared && g.vramMb === 4096));
              return create(EnrollResponseSchema, { nodeId: "node-1", nodeCredential: "nc_secret", trustLevel: "community" });
            },
            session(requests, ctx) {
              assert.equal(ctx.requestHeader.get("authorization"), "Bearer nc_secret");
              const out = createAsyncQueue<SessionResponse>(100);
              void (async () => {
                try {
                  for await (const r of requests) {
                    received.push(r);
                    if (r.seq > 0n) await out.put(create(SessionResponseSchema, { body: { case: "ack", value: create(AckSchema, { seq: r.seq }) } }));
                    if (r.body.case === "hello") {
                      await out.put(next({ case: "welcome", value: create(WelcomeSchema, { nodeId: "node-1", sessionId: "s1", heartbeatIntervalSeconds: 1 }) }));
                      await out.put(
                        next({
                          case: "assign",
                          value: create(AssignSchema, {
                            assignmentId: "as-1",
                            unit: create(UnitRefSchema, { unitId, attempt: 1 }),
                            jobId: "job-1",
                            stage: "train",
                            kind: "gpu",
                            gpuIndex: 0,
                            entrypoint: "main.py",
                            maxRuntimeSeconds: 30,
                            artifactUploadUrl: `${blobs.url}/artifacts/${unitId}`,
                            inputs: [
                              create(InputFileSchema, {
                                role: "package",
                                name: "pkg.zip",
                                url: `${blobs.url}/blobs/pkg.zip`,
                                sha256: sha256(pkg),
                                sizeBytes: BigInt(pkg.length),
                              }),
                            ],
                          }),
                        }),
                      );
                    }
                  }
                } catch {
                  // The agent hung up; nothing more to read.
                }
                out.close();
              })();
              return out;
            },
          });
        },
      }),
    );
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;

    try {
      const identity = await enrollNode({ url, token: "tok-1", dataDir, devGpuMib: 4096, logger: silentLogger });
      assert.equal(enrollToken, "tok-1");
      assert.deepEqual(identity, { url, node_id: "node-1", node_credential: "nc_secret", trust_level: "community" });
      assert.deepEqual(await readNodeIdentity(dataDir), identity);
      assert.equal((await stat(path.join(dataDir, "node.json"))).mode & 0o777, 0o600);

      const stop = new AbortController();
      const agent = createNodeAgent({
        dataDir,
        devGpuMib: 4096,
        maxConcurrentUnits: 1,
        clock: systemClock,
        logger: silentLogger,
        shutdownGraceMs: 2000,
      });
      const running = agent.run(stop.signal);
      const until = Date.now() + 20_000;
      const seen = (kind: SessionRequest["body"]["case"]) => received.some((r) => r.body.case === kind);
      while (!(seen("finished") && seen("heartbeat")) && Date.now() < until) {
        await new Promise((r) => setTimeout(r, 50));
      }
      stop.abort();
      await running;

      assert.equal(received[0]?.body.case, "hello");
      const hello = received[0]?.body.case === "hello" ? received[0].body.value : undefined;
      assert.equal(hello?.protocolVersion, 1);
      assert.equal(hello?.nodeId, "node-1");
      const kinds = received.map((r) => r.body.case);
      assert.ok(kinds.includes("accepted"));
      assert.ok(kinds.includes("progress"));
      assert.ok(kinds.includes("artifactReady"));
      const finished = received.find((r) => r.body.case === "finished");
      assert.equal(finished?.body.case === "finished" && finished.body.value.outcome, Outcome.SUCCEEDED);
      assert.equal(blobs.uploads.get(`${unitId}/out.txt`)?.body.toString(), "ok");
      assert.ok(received.some((r) => r.body.case === "ack"), "the agent acked Welcome and Assign");
      const heartbeat = received.find((r) => r.body.case === "heartbeat");
      assert.ok(heartbeat && heartbeat.seq > 0n);
      assert.ok(heartbeat.body.case === "heartbeat" && heartbeat.body.value.diskFreeMb > 0);
      assert.deepEqual(heartbeat.body.case === "heartbeat" && heartbeat.body.value.gpus.map((g) => g.index), [0]);
    } finally {
      await blobs.close();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      await rm(dataDir, { recursive: true, force: true });
    }
  });
});
