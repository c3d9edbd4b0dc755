/**
 * AgentService, control side: enrollment and the per-node Session stream.
 *
 * Inbound messages are handled in order; each one with seq > 0 is acknowledged
 * only after its effect is committed, so an agent that resends after a
 * reconnect loses nothing, and the handlers are idempotent by (unit, attempt),
 * so a resent message changes nothing twice. Log lines and progress reports
 * go to the telemetry recorder (src/telemetry/recorder.ts), which writes them
 * in batches; their acks follow when the batch holding them is committed.
 *
 * Flow control: acks go out in the order their messages came and are never
 * dropped; a stream whose acks owed plus responses queued reach its ack window
 * reads no further message until they drain (src/agent-streams/ack-window.ts), which
 * pushes back on the agent through HTTP/2 flow control.
 *
 * What a node says is checked before it is stored: capabilities and the
 * running list at Enroll and Hello (src/agent-streams/node-capabilities.ts, refused
 * with VALIDATION_FAILED); later messages are made storable or ignored
 * instead, since the agent would resend a refused message forever.
 */
import { createHash } from "node:crypto";
import { create } from "@bufbuild/protobuf";
import type { Timestamp } from "@bufbuild/protobuf/wkt";
import { timestampMs } from "@bufbuild/protobuf/wkt";
import type { HandlerContext, ServiceImpl } from "@connectrpc/connect";
import type { Logger } from "pino";
import { authenticateNode } from "../auth/authenticate.ts";
import { ApiError } from "../platform/errors.ts";
import type { AgentService, Capabilities, SessionRequest, SessionResponse } from "../gen/gpuagent/agent/v1/agent_pb.ts";
import { Outcome, WelcomeSchema } from "../gen/gpuagent/agent/v1/agent_pb.ts";
import type { FinishOutcome } from "../jobs/lifecycle.ts";
import { applyAccepted, applyArtifactReady, applyCheckpointReady, applyFinished, applyProgress, applyRejected, requeueUnitsOfNode } from "../jobs/lifecycle.ts";
import { AsyncQueue } from "../platform/async-queue.ts";
import { hashSecret, isUuid, newId, newSecret } from "../platform/ids.ts";
import { artifactBlobKey, artifactNamePattern } from "../blobs/artifact-keys.ts";
import type { BlobStore } from "../blobs/blob-store.ts";
import type { NodeRow, StoredCapabilities } from "../store/nodes.ts";
import { consumeEnrollmentToken, insertNode, markNodeConnected, releaseNodeBusy, setNodeOwnerPolicy, setNodeTrustLevel } from "../store/nodes.ts";
import { listHeldVramOfNode } from "../store/placement.ts";
import { listAttemptsOnNode } from "../store/units-on-nodes.ts";
import type { TelemetryRecorder } from "../telemetry/recorder.ts";
import type { AckWaitsOn } from "./ack-window.ts";
import { AckWindow } from "./ack-window.ts";
import { dispatchAssignments, newResponse, sendCancel, sendDrain } from "./assignments.ts";
import type { AssignmentDeps } from "./assignments.ts";
import { busyHoldMs, hasRoomAgain } from "./busy-nodes.ts";
import { createHeartbeatBatcher } from "./heartbeat-batch.ts";
import {
  describeProblems,
  nodeCapabilityBounds,
  sameOwnerPolicy,
  storableText,
  storedIsolation,
  storedOwnerPolicy,
  validateNodeCapabilities,
  validateRunningUnits,
  wellFormedText,
} from "./node-capabilities.ts";
import type { AgentSession, SessionRegistry } from "./session-registry.ts";
import { sendToSession } from "./session-registry.ts";

/** What the agent service needs (a subset of ControlPlaneDeps): the assignments' and these. */
export interface AgentServiceDeps extends AssignmentDeps {
  readonly blobs: BlobStore;
  readonly logger: Logger;
  /** Asks the leader's placement loop to run soon (units became ready, a node connected). */
  readonly wakePlacer: () => void;
  /** Buffers the log lines and progress reports of this replica's agent streams (src/telemetry/recorder.ts). */
  readonly telemetry: TelemetryRecorder;
}

/** Protocol version this control plane speaks. */
export const protocolVersion = 1;
/** Bound of each stream's outbound queue (flow control). */
const outboundCapacity = 1024;
/**
 * Acks owed plus responses queued at which a stream stops reading (src/agent-streams/ack-window.ts). Half
 * the queue: acks alone never fill it, so an Assign or Cancel always finds room beside them.
 */
const ackWindowSize = outboundCapacity / 2;
/** Longest Rejected.reason and Finished.error kept (longer text is cut). */
const maxReportedTextChars = 2000;
/** Metric names longer than this are ignored, and at most `maxMetricsPerReport` names are kept per report. */
const maxMetricNameChars = 64;
const maxMetricsPerReport = 32;
/**
 * Hellos wake the placer at most this often. A new node only adds capacity, and the placement loop
 * runs on its own timer anyway; waking it per Hello made a fleet reconnecting at once run one
 * placement cycle (each reading every node) per node.
 */
const helloWakeEveryMs = 250;

/** Size and sha256 of a stored blob. */
async function hashBlob(deps: AgentServiceDeps, key: string): Promise<{ size: number; sha256: string }> {
  const { stream, size } = await deps.blobs.open(key);
  const hash = createHash("sha256");
  for await (const chunk of stream) hash.update(chunk as Buffer);
  return { size, sha256: hash.digest("hex") };
}

/** Converts the agent's Capabilities message to what the nodes table stores. */
export function storedCapabilities(c: Capabilities | undefined): StoredCapabilities {
  return {
    cpuCores: c?.cpuCores ?? 0,
    memoryMb: c?.memoryMb ?? 0,
    diskFreeMb: c?.diskFreeMb ?? 0,
    gpus: (c?.gpus ?? []).map((g) => ({
      index: g.index,
      name: g.name,
      vramMb: g.vramMb,
      uuid: g.uuid,
      declared: g.declared,
      computeCapability: g.computeCapability,
      driverVersion: g.driverVersion,
      cudaVersion: g.cudaVersion,
    })),
    hostname: c?.hostname ?? "",
    os: c?.os ?? "",
    arch: c?.arch ?? "",
    pythonVersion: c?.pythonVersion ?? "",
    agentVersion: c?.agentVersion ?? "",
  };
}

/**
 * Refuses a node's self-description that breaks a rule of src/agent-streams/node-capabilities.ts, naming
 * each field and rule so the node's log says what to fix.
 */
export function requireValidNode(capabilities: Capabilities | undefined, running: readonly { readonly unitId: string }[] = []): void {
  const problems = [...validateNodeCapabilities(capabilities), ...validateRunningUnits(running)];
  if (problems.length === 0) return;
  throw new ApiError("VALIDATION_FAILED", `invalid node report: ${describeProblems(problems)}`, { details: { problems: problems.map((p) => ({ ...p })) } });
}

const outcomes: Record<number, FinishOutcome> = {
  [Outcome.SUCCEEDED]: "succeeded",
  [Outcome.FAILED]: "failed",
  [Outcome.TIMED_OUT]: "timed_out",
  [Outcome.CANCELLED]: "cancelled",
  [Outcome.NODE_ERROR]: "node_error",
};

const artifactKinds = new Set(["checkpoint", "metrics", "logs", "other"]);

/** The unit attempt a message names, when it can be one (else the message is acked and forgotten). */
function attemptRef(u: { unitId: string; attempt: number } | undefined): { unitId: string; attempt: number } | undefined {
  return u !== undefined && isUuid(u.unitId) && Number.isInteger(u.attempt) && u.attempt >= 1 ? { unitId: u.unitId.toLowerCase(), attempt: u.attempt } : undefined;
}

/**
 * A report's metrics as a unit's row keeps them: finite values, names that are storable text of at
 * most {@link maxMetricNameChars}, and the first {@link maxMetricsPerReport} names in name order (the
 * recorder keeps the same ones), so one report cannot grow the row without bound.
 */
function storableMetrics(reported: Readonly<Record<string, number>>): Record<string, number> {
  const metrics: Record<string, number> = {};
  let kept = 0;
  for (const name of Object.keys(reported).sort()) {
    if (kept >= maxMetricsPerReport) break;
    const value = reported[name];
    if (value === undefined || !Number.isFinite(value) || name.length > maxMetricNameChars || storableText(name, maxMetricNameChars) !== name) continue;
    metrics[name] = value;
    kept++;
  }
  return metrics;
}

/** The ack a message read owes (src/agent-streams/ack-window.ts). */
type OwedAck = ReturnType<AckWindow["owe"]>;

/** An agent's optional uint64 counter as a number (undefined when unset or past 2^53). */
function counter(value: bigint | undefined): number | undefined {
  return value === undefined || value > BigInt(Number.MAX_SAFE_INTEGER) ? undefined : Number(value);
}

/** An agent's optional Timestamp in ms since the epoch. */
function optionalMs(at: Timestamp | undefined): number | undefined {
  return at === undefined ? undefined : timestampMs(at);
}

/** Builds the AgentService implementation. */
export function createAgentService(deps: AgentServiceDeps, sessions: SessionRegistry): ServiceImpl<typeof AgentService> {
  const { db, clock, logger, config, telemetry } = deps;
  const now = () => new Date(clock.now());
  const heartbeats = createHeartbeatBatcher(db, { clock });
  let lastHelloWakeMs = Number.NEGATIVE_INFINITY;
  let helloWakeScheduled = false;
  /** Wakes the placer for a new node: at once, unless a Hello did so recently; then once, at the end of the period. */
  const wakeForHello = () => {
    const since = clock.now() - lastHelloWakeMs;
    if (since >= helloWakeEveryMs) {
      lastHelloWakeMs = clock.now();
      deps.wakePlacer();
      return;
    }
    if (helloWakeScheduled) return;
    helloWakeScheduled = true;
    clock.sleep(helloWakeEveryMs - since).then(
      () => {
        helloWakeScheduled = false;
        lastHelloWakeMs = clock.now();
        deps.wakePlacer();
      },
      () => {
        helloWakeScheduled = false;
      },
    );
  };

  /**
   * Attempts a node says it runs that are no longer its current ones (the
   * unit was re-placed, cancelled, or its job ended) are cancelled there. A
   * Cancel lost to a full queue or a broken stream is thus repeated at the
   * next heartbeat; nodes that run nothing cost no query.
   */
  async function stopStaleAttempts(nodeId: string, reported: { unitId: string; attempt: number }[]): Promise<void> {
    const ids = reported.map((r) => r.unitId).filter((id) => isUuid(id));
    const current = ids.length === 0
      ? []
      : await listAttemptsOnNode(db, nodeId, { unitIds: ids });
    for (const r of reported) {
      if (!current.some((c) => c.id === r.unitId && c.attempt === r.attempt)) sendCancel(sessions, nodeId, r.unitId, r.attempt, "this attempt is no longer current");
    }
  }

  /** Ends the node's busy hold early; one that has run out already is only forgotten (nothing to write). */
  async function endBusyHold(session: AgentSession, nodeId: string): Promise<void> {
    const hold = session.busyHold;
    if (hold === undefined) return;
    session.busyHold = undefined;
    if (clock.now() < hold.untilMs) await releaseNodeBusy(db, nodeId);
  }

  /**
   * Applies one message. Returns true when it took over the message's ack
   * (`owed.ack` runs later, once the effect is committed); false: ack it now.
   * `owed` is absent for messages that need no ack (seq 0).
   */
  async function handle(session: AgentSession, node: NodeRow, message: SessionRequest, owed: OwedAck | undefined): Promise<boolean> {
    const body = message.body;
    switch (body.case) {
      case "hello": {
        // A stale Hello (resent) is harmless: the node is already registered.
        return false;
      }
      case "heartbeat": {
        // The owner paused, resumed, crossed a window's edge or changed the reserve: written at once (the
        // placer's next look at the fleet sees it), and the placer woken. A repeat writes nothing.
        if (body.value.owner !== undefined) {
          const owner = storedOwnerPolicy(body.value.owner);
          if (session.ownerPolicy === undefined || !sameOwnerPolicy(owner, session.ownerPolicy)) {
            await setNodeOwnerPolicy(db, node.id, owner);
            session.ownerPolicy = owner;
            // A busy answer may have been the owner's pause or window: the placer now sees those itself.
            await endBusyHold(session, node.id);
            deps.wakePlacer();
          }
        }
        const hold = session.busyHold;
        if (hold !== undefined && clock.now() < hold.untilMs) {
          const reserved = session.ownerPolicy?.reservedVramMb ?? node.reserved_vram_mb;
          if (hasRoomAgain(hold, body.value.gpus, node.capabilities.gpus ?? [], reserved, await listHeldVramOfNode(db, node.id))) {
            await endBusyHold(session, node.id);
            deps.wakePlacer();
          }
        }
        // Liveness is kept in memory; the database hears about it only every few seconds.
        const persistEveryMs = Math.max(1000, (config.agents.unreachableAfterSeconds * 1000) / 3);
        if (clock.now() - session.lastPersistedMs >= persistEveryMs) {
          session.lastPersistedMs = clock.now();
          await heartbeats.touch(node.id, now());
        }
        // Assigns that found the queue full are sent again now (flow control delays, never loses).
        if (session.dispatchPending === true && session.outbound.size < outboundCapacity / 2) await dispatchAssignments(deps, sessions, node.id);
        // A node runs a handful of units; a longer list is not a real one, and costs a query per entry.
        const running = body.value.running.slice(0, nodeCapabilityBounds.maxRunningUnits);
        if (running.length > 0) await stopStaleAttempts(node.id, running.map((r) => ({ unitId: r.unitId, attempt: r.attempt })));
        return false;
      }
      case "accepted": {
        const ref = attemptRef(body.value.unit);
        if (ref !== undefined) await applyAccepted(db, node.id, ref, now());
        return false;
      }
      case "rejected": {
        const ref = attemptRef(body.value.unit);
        if (ref === undefined) return false;
        const reason = storableText(body.value.reason, maxReportedTextChars);
        if (!body.value.busy) {
          await applyRejected(db, node.id, ref, reason, now());
        } else {
          // The node counts as full for a while (busy-nodes.ts), so the unit, woken placer and all, goes
          // elsewhere or waits its turn here instead of bouncing back every cycle.
          const untilMs = clock.now() + busyHoldMs(config.agents.heartbeatIntervalSeconds);
          const effects = await applyRejected(db, node.id, ref, reason, now(), { busy: true, holdUntil: new Date(untilMs) });
          if (effects.busyFor !== undefined) session.busyHold = { ...effects.busyFor, untilMs };
        }
        deps.wakePlacer();
        return false;
      }
      case "progress": {
        const p = body.value;
        const ref = attemptRef(p.unit);
        if (ref === undefined) return false;
        const metrics = storableMetrics(p.metrics);
        await applyProgress(db, node.id, ref, p.progress, metrics);
        // The history point is written with the next batch, and this message acked then.
        owed?.waitOn(ref);
        telemetry.addProgress(node.id, ref, { progress: p.progress, metrics, sample: counter(p.sample), atMs: optionalMs(p.at) }, owed?.ack);
        return true;
      }
      case "log": {
        const l = body.value;
        const ref = attemptRef(l.unit);
        if (ref === undefined) return false;
        // Lines are cut and cleaned of NUL by the recorder; only JSON can carry unpaired surrogates, which jsonb refuses.
        const lines = l.lines.map(wellFormedText);
        owed?.waitOn(ref);
        telemetry.addLog(node.id, ref, { stream: l.stream, lines, firstLine: counter(l.firstLine), atMs: optionalMs(l.at) }, owed?.ack);
        return true;
      }
      case "artifactReady": {
        const a = body.value;
        const ref = attemptRef(a.unit);
        // The upload route takes only such names (a key the blob store would refuse must not fail the stream).
        if (ref === undefined || !artifactKinds.has(a.kind) || !artifactNamePattern.test(a.name)) return false;
        const key = artifactBlobKey(ref.unitId, ref.attempt, a.name);
        if (!(await deps.blobs.exists(key))) {
          logger.warn({ nodeId: node.id, unitId: ref.unitId, name: a.name }, "artifact announced but never uploaded; ignored");
          return false;
        }
        // Record what is stored, not what the node claims: customers and later stages verify against it.
        const stored = await hashBlob(deps, key);
        if (stored.sha256 !== a.sha256 || stored.size !== Number(a.sizeBytes)) {
          logger.warn({ nodeId: node.id, unitId: ref.unitId, name: a.name }, "artifact differs from what the node announced; recording the stored bytes");
        }
        const outcome = await applyArtifactReady(
          db,
          node.id,
          ref,
          { name: a.name, kind: a.kind as "checkpoint", sizeBytes: stored.size, sha256: stored.sha256, blobKey: key },
          now(),
          config.limits.storage,
        );
        if (typeof outcome === "object") {
          // Over the customer's artifact quota (units racing past the upload route's early check), or its job's artifacts expired: not kept.
          logger.warn({ nodeId: node.id, unitId: ref.unitId, name: a.name, reason: outcome.refused.message }, "artifact refused; its bytes are removed");
          await deps.blobs.delete(key);
        }
        return false;
      }
      case "finished": {
        const f = body.value;
        const ref = attemptRef(f.unit);
        const outcome = outcomes[f.outcome];
        if (ref === undefined || outcome === undefined) return false;
        // The attempt's buffered lines and reports are written first, while it is still current.
        await telemetry.flushAttempt(ref);
        const effects = await applyFinished(
          db,
          node.id,
          ref,
          {
            outcome,
            exitCode: f.exitCode,
            error: storableText(f.error, maxReportedTextChars),
            // Billing and the unit's row take it; lifecycle caps it by the time the attempt could have run.
            runSeconds: Number.isFinite(f.runSeconds) && f.runSeconds > 0 ? f.runSeconds : 0,
            // Shown apart from the run and never billed; lifecycle caps it the same way.
            envBuildSeconds: Number.isFinite(f.envBuildSeconds) && f.envBuildSeconds > 0 ? f.envBuildSeconds : 0,
            envBuilt: f.envBuilt,
          },
          config.rates,
          now(),
        );
        for (const c of effects.cancel) sendCancel(sessions, c.nodeId, c.unitId, c.attempt, "job ended");
        // A unit that ends frees what a busy node lacked (a unit slot, or VRAM the owner shares with it).
        await endBusyHold(session, node.id);
        deps.wakePlacer();
        return false;
      }
      case "checkpointReady": {
        const c = body.value;
        const ref = attemptRef(c.unit);
        // The upload route takes only such names, and a sha256 names the stored file.
        if (ref === undefined || !artifactNamePattern.test(c.name) || !/^[0-9a-f]{64}$/.test(c.sha256)) return false;
        const recorded = await applyCheckpointReady(db, node.id, ref, { name: c.name, sha256: c.sha256, metrics: storableMetrics(c.metrics) }, now());
        if (recorded === "not_stored") logger.warn({ nodeId: node.id, unitId: ref.unitId, name: c.name }, "checkpoint announced but no stored file has its bytes; ignored");
        return false;
      }
      case "ack":
      case undefined:
        return false;
      default: {
        const never: never = body;
        throw new Error(`unknown message ${String(never)}`);
      }
    }
  }

  return {
    async enroll(request) {
      const tokenHash = hashSecret(request.token);
      const credential = newSecret("nc_");
      const nodeId = newId();
      // Before the transaction: a refused report leaves the token unused.
      requireValidNode(request.capabilities);
      const trustLevel = await db.transaction(async (tx) => {
        const capabilities = storedCapabilities(request.capabilities);
        // The node row must exist before the token can point at it.
        const isolation = storedIsolation(request.capabilities?.isolation);
        await insertNode(tx, { id: nodeId, hostname: capabilities.hostname ?? "", trustLevel: "community", credentialHash: hashSecret(credential), capabilities, isolation }, now());
        const level = await consumeEnrollmentToken(tx, tokenHash, nodeId, now());
        if (level === undefined) throw new ApiError("ENROLLMENT_TOKEN_INVALID", "the enrollment token is unknown, already used or expired; ask an operator for a new one");
        await setNodeTrustLevel(tx, nodeId, level);
        return level;
      });
      logger.info({ nodeId, trustLevel }, "node enrolled");
      return { nodeId, nodeCredential: credential, trustLevel };
    },

    async *session(requests: AsyncIterable<SessionRequest>, ctx: HandlerContext): AsyncIterable<SessionResponse> {
      const node = await authenticateNode(deps.db, ctx.requestHeader.get("authorization"));
      const session: AgentSession = {
        nodeId: node.id,
        sessionId: newId(),
        outbound: new AsyncQueue<SessionResponse>(outboundCapacity),
        sentAssignments: new Set(),
        lastSeenMs: clock.now(),
        lastPersistedMs: 0,
        nextSeq: 1n,
      };
      // A pino child per stream costs memory for 10,000 mostly quiet streams; built only when a stream logs.
      let child: typeof logger | undefined;
      const log = () => (child ??= logger.child({ nodeId: node.id, sessionId: session.sessionId }));
      const acks = new AckWindow(session.outbound, ackWindowSize);
      // The oldest owed ack waits for a telemetry write: write that attempt now rather than at the next interval.
      const writeNow = (attempt: AckWaitsOn) => {
        telemetry.flushAttempt(attempt).catch((error: unknown) => log().warn({ err: error }, "writing unit telemetry early failed"));
      };
      const consume = async () => {
        let greeted = false;
        for await (const message of requests) {
          session.lastSeenMs = clock.now();
          const owed = message.seq > 0n ? acks.owe(message.seq) : undefined;
          if (!greeted) {
            if (message.body.case !== "hello") throw new ApiError("VALIDATION_FAILED", "the first message of a session must be Hello");
            greeted = true;
            const hello = message.body.value;
            requireValidNode(hello.capabilities, hello.running);
            const owner = storedOwnerPolicy(hello.capabilities?.owner);
            const connected = await markNodeConnected(
              db,
              node.id,
              {
                capabilities: storedCapabilities(hello.capabilities),
                isolation: storedIsolation(hello.capabilities?.isolation),
                owner,
                maxUnits: hello.capabilities?.maxUnits ?? 0,
              },
              now(),
            );
            if (connected === undefined) throw new ApiError("NODE_AUTH_INVALID", "this node was revoked by an operator");
            session.ownerPolicy = owner;
            session.lastPersistedMs = clock.now();
            sessions.register(session);
            sendToSession(
              session,
              {
                case: "welcome",
                value: create(WelcomeSchema, {
                  nodeId: node.id,
                  sessionId: session.sessionId,
                  heartbeatIntervalSeconds: config.agents.heartbeatIntervalSeconds,
                  protocolVersion,
                }),
              },
              newResponse,
            );
            // A node drained while it was away hears it again: drained is an operator state, not a session one.
            if (connected.state === "draining") sendDrain(sessions, node.id, "the node is being drained by an operator");
            const assigned = await reconcileRunning(node.id, hello.running.map((r) => ({ unitId: r.unitId, attempt: r.attempt })));
            if (logger.isLevelEnabled("info")) log().info({ running: hello.running.length }, "agent session started");
            // Most nodes connect with nothing assigned: no dispatch query for them.
            if (assigned) await dispatchAssignments(deps, sessions, node.id);
            wakeForHello();
            owed?.ack();
          } else if (!(await handle(session, node, message, owed))) {
            owed?.ack();
          }
          // Holding nothing the writer needs: it drains the queue, commits release acks.
          if (!acks.hasRoom) await acks.room(writeNow);
          // Superseded by a newer stream of the node, or the agent left: effects would go unacked.
          if (session.outbound.isClosed) return;
        }
        // The agent ended its stream cleanly: what it sent is acked before the response ends.
        await acks.settled(writeNow);
      };
      /** Reconciles what the agent reports with what we believe; true when the node has assignments to send. */
      const reconcileRunning = async (nodeId: string, reported: { unitId: string; attempt: number }[]): Promise<boolean> => {
        // One read serves all three questions (stale attempts, lost units, anything to dispatch).
        const current = await listAttemptsOnNode(db, nodeId);
        const isCurrent = (r: { unitId: string; attempt: number }) => current.some((c) => c.id === r.unitId && c.attempt === r.attempt);
        // Attempts the node still runs but that were taken back meanwhile must stop: their units run elsewhere now.
        for (const r of reported.filter((r) => !isCurrent(r))) sendCancel(sessions, nodeId, r.unitId, r.attempt, "this attempt was re-placed");
        // Units we believe run there but the agent no longer has were lost with its process.
        const reportedIds = new Set(reported.map((r) => r.unitId));
        const lost = current.filter((c) => c.status === "running" && !reportedIds.has(c.id));
        if (lost.length > 0) {
          await requeueUnitsOfNode(db, nodeId, "the node restarted and lost the unit", { unitIds: lost.map((l) => l.id), statuses: ["running"], now: now() });
          log().warn({ lost: lost.length }, "units lost by a restarted agent were re-queued");
          deps.wakePlacer();
        }
        return current.some((c) => c.status === "assigned" && c.assignment_id !== null);
      };
      const consumer = consume().then(
        () => session.outbound.close(),
        (error: unknown) => {
          log().warn({ err: error }, "agent session ended with an error");
          session.outbound.close(error);
        },
      );
      try {
        yield* session.outbound;
      } finally {
        sessions.unregister(session);
        session.outbound.close();
        void consumer;
        if (logger.isLevelEnabled("info")) log().info("agent session closed");
      }
    },
  };
}
