/**
 * The agent streams this replica holds, keyed by node AND session id, so that
 * a stale stream's cleanup can never remove the newer session of the same node
 * (a node that reconnects quickly has two for a moment).
 */
import type { SessionResponse } from "../gen/gpuagent/agent/v1/agent_pb.ts";
import type { AsyncQueue } from "../platform/async-queue.ts";
import type { StoredOwnerPolicy } from "../store/nodes.ts";
import type { BusyNeed } from "./busy-nodes.ts";

/** One open stream. */
export interface AgentSession {
  readonly nodeId: string;
  readonly sessionId: string;
  readonly outbound: AsyncQueue<SessionResponse>;
  /** Assignment ids already sent on this stream (re-sent on a new stream). */
  readonly sentAssignments: Set<string>;
  lastSeenMs: number;
  lastPersistedMs: number;
  nextSeq: bigint;
  /**
   * Set when an Assign did not fit the full outbound queue: the next
   * heartbeat re-runs the dispatch, so flow control delays an assignment
   * instead of losing it.
   */
  dispatchPending?: boolean;
  /** Messages refused because the outbound queue was full (flow control at work). */
  refused?: number;
  /** The owner's controls as last stored for this node, so a heartbeat that repeats them writes nothing. */
  ownerPolicy?: StoredOwnerPolicy;
  /**
   * Set while the node is held full after a busy rejection (busy-nodes.ts): what the unit asked, to end
   * the hold as soon as a heartbeat shows room or a unit ends, and when the hold ends anyway.
   */
  busyHold?: (BusyNeed & { untilMs: number }) | undefined;
}

/** Registry of open sessions on this replica. */
export class SessionRegistry {
  private readonly byNode = new Map<string, AgentSession>();
  private readonly watchers: ((nodeId: string) => void)[] = [];

  /** Calls `watcher` with the node id whenever a node's stream here opens or closes (the leader's liveness). */
  watch(watcher: (nodeId: string) => void): void {
    this.watchers.push(watcher);
  }

  private changed(nodeId: string): void {
    for (const watcher of this.watchers) watcher(nodeId);
  }

  /** Registers a session, closing an older one of the same node. */
  register(session: AgentSession): void {
    const previous = this.byNode.get(session.nodeId);
    if (previous !== undefined && previous.sessionId !== session.sessionId) previous.outbound.close();
    this.byNode.set(session.nodeId, session);
    this.changed(session.nodeId);
  }

  /** Removes the session only if it is still the current one of its node. */
  unregister(session: AgentSession): void {
    if (this.byNode.get(session.nodeId)?.sessionId !== session.sessionId) return;
    this.byNode.delete(session.nodeId);
    this.changed(session.nodeId);
  }

  get(nodeId: string): AgentSession | undefined {
    return this.byNode.get(nodeId);
  }

  get size(): number {
    return this.byNode.size;
  }

  all(): AgentSession[] {
    return [...this.byNode.values()];
  }

  /** Closes every stream (shutdown). */
  closeAll(): void {
    const nodeIds = [...this.byNode.keys()];
    for (const s of this.byNode.values()) s.outbound.close();
    this.byNode.clear();
    for (const nodeId of nodeIds) this.changed(nodeId);
  }
}

/**
 * Sends a control message with the session's next sequence number; false when
 * the queue is full or closed (nothing is queued then, and no seq is used up).
 * The queue's bound is what keeps a slow agent from growing this process's
 * memory: a caller that gets false must be able to send again later.
 */
export function sendToSession(session: AgentSession, body: SessionResponse["body"], create: (seq: bigint, body: SessionResponse["body"]) => SessionResponse): boolean {
  const seq = session.nextSeq;
  if (!session.outbound.push(create(seq, body))) {
    session.refused = (session.refused ?? 0) + 1;
    return false;
  }
  session.nextSeq += 1n;
  return true;
}
