/**
 * Agent streams across replicas. Every replica holds some nodes' streams; the leader places on any of
 * them, and customers and operators cancel through any replica. So what would be sent down a stream must
 * reach the replica that holds it:
 *
 * - `ClusterSessionRegistry.get(nodeId)` returns the local session, or — for a node held elsewhere (or
 *   nowhere) — a relay session whose queue forwards `Cancel` and `Drain` messages and `close()` over the
 *   cluster bus.
 *   The services call `sendCancel(sessions, …)` and `sessions.get(id)?.outbound.close()` unchanged and
 *   reach the holder. Assignments are never relayed through it (a relay refuses them, so
 *   `dispatchAssignments` sends nothing); `dispatchNode` publishes "dispatch" instead and the holder
 *   builds the Assign messages itself, with its own signed URLs and sequence numbers.
 * - Each replica re-scans its own streams every few seconds (dispatching pending assignments and closing
 *   streams silent past the grace period): the backstop for a lost NOTIFY.
 *
 * Only locally held sessions are counted, listed and registered; `getLocal` is the plain lookup.
 */
import { create } from "@bufbuild/protobuf";
import type { Logger } from "pino";
import type { SessionResponse } from "../gen/gpuagent/agent/v1/agent_pb.ts";
import { CancelSchema, DrainSchema, UnitRefSchema } from "../gen/gpuagent/agent/v1/agent_pb.ts";
import { dispatchAssignments, newResponse } from "../agent-streams/assignments.ts";
import type { AssignmentDeps } from "../agent-streams/assignments.ts";
import type { AgentSession } from "../agent-streams/session-registry.ts";
import { SessionRegistry, sendToSession } from "../agent-streams/session-registry.ts";
import { AsyncQueue } from "../platform/async-queue.ts";
import { isUuid } from "../platform/ids.ts";
import { findNodesWithAssignmentsWaiting } from "../store/units-on-nodes.ts";
import type { ClusterBus, ClusterMessage } from "./cluster-bus.ts";

/** The outbound queue of a stream held elsewhere: forwards what can be forwarded, refuses the rest. */
class RelayQueue extends AsyncQueue<SessionResponse> {
  private readonly bus: ClusterBus;
  private readonly nodeId: string;

  constructor(bus: ClusterBus, nodeId: string) {
    super(0);
    this.bus = bus;
    this.nodeId = nodeId;
  }

  override push(item: SessionResponse): boolean {
    const body = item.body;
    if (body.case === "drain") {
      this.bus.publish({ type: "drain", nodeId: this.nodeId, reason: body.value.reason });
      return true;
    }
    if (body.case !== "cancel") return false;
    const unit = body.value.unit;
    if (unit === undefined) return false;
    this.bus.publish({ type: "cancel", nodeId: this.nodeId, unitId: unit.unitId, attempt: unit.attempt, reason: body.value.reason });
    return true;
  }

  override close(): void {
    this.bus.publish({ type: "close-stream", nodeId: this.nodeId });
  }
}

/** A session registry that reaches streams on other replicas; see the module comment. */
export class ClusterSessionRegistry extends SessionRegistry {
  private readonly bus: ClusterBus;

  constructor(bus: ClusterBus) {
    super();
    this.bus = bus;
  }

  /** The local session of a node, or a relay to whichever replica holds it. */
  override get(nodeId: string): AgentSession | undefined {
    return super.get(nodeId) ?? this.relay(nodeId);
  }

  /** The session of a node held by this replica only. */
  getLocal(nodeId: string): AgentSession | undefined {
    return super.get(nodeId);
  }

  private relay(nodeId: string): AgentSession {
    return {
      nodeId,
      sessionId: "relay",
      outbound: new RelayQueue(this.bus, nodeId),
      sentAssignments: new Set(),
      // A relay is never "seen": liveness of remote nodes comes from the database heartbeat.
      lastSeenMs: Number.NEGATIVE_INFINITY,
      lastPersistedMs: 0,
      nextSeq: 1n,
    };
  }
}

/** Cluster-wide stream operations of one replica. */
export interface ClusterStreams {
  readonly sessions: ClusterSessionRegistry;
  /** Sends a node's pending assignments: here if this replica holds its stream, else via its holder. */
  dispatchNode(nodeId: string): Promise<void>;
  /** Handles a message from the bus. */
  handle(message: ClusterMessage): Promise<void>;
  /** Dispatches pending assignments of every local stream and closes silent ones. */
  rescan(): Promise<void>;
  /** Re-scans every `intervalMs` until the signal aborts. */
  runRescans(intervalMs: number, signal: AbortSignal): Promise<void>;
}

/** What the cluster streams need (a subset of ControlPlaneDeps): the assignments' and a logger. */
export interface ClusterStreamDeps extends AssignmentDeps {
  readonly logger: Logger;
}

/** Wires a registry to the bus. `wake` asks this replica's placer to run (it runs only while leading). */
export function createClusterStreams(deps: ClusterStreamDeps, bus: ClusterBus, wake: () => void): ClusterStreams {
  const { clock, config, logger } = deps;
  const sessions = new ClusterSessionRegistry(bus);
  const silenceMs = config.agents.unreachableAfterSeconds * 1000;

  const dispatchLocal = async (nodeId: string) => {
    if (sessions.getLocal(nodeId) === undefined) return;
    await dispatchAssignments(deps, sessions, nodeId);
  };

  const streams: ClusterStreams = {
    sessions,
    async dispatchNode(nodeId) {
      if (sessions.getLocal(nodeId) !== undefined) return dispatchLocal(nodeId);
      bus.publish({ type: "dispatch", nodeId });
    },
    async handle(message) {
      switch (message.type) {
        case "wake":
          wake();
          return;
        case "dispatch":
          return dispatchLocal(message.nodeId);
        case "cancel": {
          const session = sessions.getLocal(message.nodeId);
          if (session === undefined) return;
          sendToSession(
            session,
            {
              case: "cancel",
              value: create(CancelSchema, { unit: create(UnitRefSchema, { unitId: message.unitId, attempt: message.attempt }), reason: message.reason }),
            },
            newResponse,
          );
          return;
        }
        case "drain": {
          const session = sessions.getLocal(message.nodeId);
          if (session === undefined) return;
          sendToSession(session, { case: "drain", value: create(DrainSchema, { reason: message.reason }) }, newResponse);
          return;
        }
        case "close-stream": {
          const session = sessions.getLocal(message.nodeId);
          if (session === undefined) return;
          session.outbound.close();
          sessions.unregister(session);
          return;
        }
        case "jobs-changed":
        case "job-events":
          // For the job-view cache (ha/job-view-relay.ts) and the job watches (ha/job-event-relay.ts), not for streams.
          return;
        default: {
          const never: never = message;
          logger.warn({ message: never }, "unknown cluster message");
        }
      }
    },
    async rescan() {
      const live: string[] = [];
      for (const session of sessions.all()) {
        // A stream open but silent (a half-open connection of a node that lost power) is dead: closing it
        // lets the node's heartbeat age so the leader stops placing there.
        if (clock.now() - session.lastSeenMs >= silenceMs) {
          logger.warn({ nodeId: session.nodeId, sessionId: session.sessionId }, "agent stream silent past the grace period; closing it");
          session.outbound.close();
          sessions.unregister(session);
          continue;
        }
        if (isUuid(session.nodeId)) live.push(session.nodeId);
      }
      if (live.length === 0) return;
      // One query for every local stream (not one per stream every few seconds): only nodes with
      // assignments waiting are dispatched, and they are few.
      for (const nodeId of await findNodesWithAssignmentsWaiting(deps.db, live)) await dispatchLocal(nodeId);
    },
    async runRescans(intervalMs, signal) {
      while (!signal.aborted) {
        await clock.sleep(intervalMs, signal).catch(() => undefined);
        if (signal.aborted) return;
        await streams.rescan().catch((error: unknown) => logger.warn({ err: error }, "stream re-scan failed"));
      }
    },
  };
  bus.subscribe((message) => {
    streams.handle(message).catch((error: unknown) => logger.warn({ err: error, type: message.type }, "cluster message failed"));
  });
  return streams;
}
