/**
 * The agent's side of `AgentService.Session`: one long-lived bidi stream,
 * reconnected forever with jittered exponential backoff until the caller's
 * signal aborts.
 *
 * Session lifecycle (one iteration of `run`):
 *   Connecting  → send Hello (seq 1)                     → AwaitWelcome
 *   AwaitWelcome → Welcome                               → Open
 *                → no Welcome within welcomeTimeoutMs    → Closed
 *   Open        → stream ends / errors / signal aborts   → Closed
 *   Closed      → backoff sleep (reset after a Welcome)  → Connecting
 *
 * A refusal (the control plane answers INVALID_ARGUMENT, e.g. capabilities
 * it will not store, or UNAUTHENTICATED: a revoked or unknown credential) is
 * logged as an error with the control plane's reason, and the next attempt
 * waits the longest backoff: retrying sooner cannot help, and someone has to
 * fix the node (or re-enroll it) anyway.
 *
 * Delivery is at-least-once. Every message the agent sends carries a seq
 * that increases within the session (Ack messages carry 0). Messages that
 * matter across reconnects (Accepted, Rejected, Progress, LogLines,
 * ArtifactReady, Finished) stay in the outbox until the control plane acks
 * their seq; after a reconnect they are sent again, in order, with new seqs.
 * Hello and Heartbeat belong to one session and are never re-sent. The
 * outbox is bounded: on overflow the oldest Progress/LogLines go first;
 * Accepted/Rejected/ArtifactReady/Finished are never dropped.
 *
 * One writer (the pump) feeds a bounded AsyncQueue that is the request
 * stream, so a slow connection pushes back instead of buffering without end.
 */
import { create } from "@bufbuild/protobuf";
import type { MessageInitShape } from "@bufbuild/protobuf";
import type { Client } from "@connectrpc/connect";
import { Code, ConnectError } from "@connectrpc/connect";
import {
  AckSchema,
  HeartbeatSchema,
  HelloSchema,
  SessionRequestSchema,
} from "../gen/gpuagent/agent/v1/agent_pb.ts";
import type {
  AgentService,
  Capabilities,
  SessionRequest,
  SessionResponse,
  UnitRef,
} from "../gen/gpuagent/agent/v1/agent_pb.ts";
import type { Clock } from "../platform/clock.ts";
import { systemRandom } from "../platform/random.ts";
import { createAsyncQueue } from "./async-queue.ts";
import type { AsyncQueue } from "./async-queue.ts";
import type { AgentLogger } from "./logger.ts";

/** The protocol version this agent speaks in Hello. */
export const PROTOCOL_VERSION = 1;

/** One agent → control message body (the oneof of SessionRequest, set). */
export type AgentMessageBody = Exclude<SessionRequest["body"], { case: undefined }>;

/** A control → agent message the session hands to the agent (Assign, Cancel, Drain). */
export type ControlMessage = SessionResponse;

/** Message kinds that may be dropped when the outbox overflows. */
const DROPPABLE: ReadonlySet<AgentMessageBody["case"]> = new Set(["progress", "log"]);

/** Message kinds that survive reconnects until acked. */
const DURABLE: ReadonlySet<AgentMessageBody["case"]> = new Set([
  "accepted",
  "rejected",
  "progress",
  "log",
  "artifactReady",
  "checkpointReady",
  "finished",
]);

/** Backoff bounds for reconnecting. */
export interface BackoffOptions {
  /** First delay (default 500 ms). */
  initialMs: number;
  /** Ceiling (default 30 s). */
  maxMs: number;
}

/** Defaults of BackoffOptions. */
export const DEFAULT_BACKOFF: BackoffOptions = { initialMs: 500, maxMs: 30_000 };

/**
 * The delay before reconnect number `attempt` (0-based): the exponential
 * step capped at maxMs, then "equal jitter" (half fixed, half random) so a
 * fleet of agents cut off together does not reconnect in lockstep while each
 * still waits at least half the step.
 */
export function backoffDelay(attempt: number, opts: BackoffOptions = DEFAULT_BACKOFF, random: () => number = systemRandom): number {
  const step = Math.min(opts.maxMs, opts.initialMs * 2 ** Math.min(attempt, 30));
  return step / 2 + random() * (step / 2);
}

/** Everything createAgentSession needs. */
export interface AgentSessionOptions {
  /** An AgentService client over any transport (gRPC in production, in-memory in tests). */
  client: Client<typeof AgentService>;
  nodeId: string;
  nodeCredential: string;
  /** Fresh capabilities and running units for each Hello. */
  hello(): Promise<{ capabilities: Capabilities; running: UnitRef[] }>;
  /** Fresh heartbeat contents. */
  heartbeat(): Promise<MessageInitShape<typeof HeartbeatSchema>>;
  /** Called for Assign, Cancel and Drain (Welcome and Ack are handled here). */
  onControl(message: ControlMessage): void;
  clock: Clock;
  logger: AgentLogger;
  /** Injected for deterministic jitter in tests. */
  random?: () => number;
  /** Outbox bound (default 5000 messages). */
  maxUnacked?: number;
  /** Request-stream queue bound (default 64 messages). */
  streamBuffer?: number;
  backoff?: BackoffOptions;
  /** How long to wait for Welcome after Hello (default 30 s). */
  welcomeTimeoutMs?: number;
}

/** The running session, as the agent sees it. */
export interface AgentSession {
  /** Queues a message for delivery (now or after the next reconnect). Never blocks. */
  send(body: AgentMessageBody): void;
  /** Holds the stream, reconnecting, until `signal` aborts; then resolves. */
  run(signal: AbortSignal): Promise<void>;
  /** Durable messages not yet acknowledged. */
  unacked(): number;
  /**
   * Resolves true once every durable message is acknowledged, false after
   * `timeoutMs` or when `signal` aborts (used for graceful shutdown).
   */
  flushed(timeoutMs: number, signal?: AbortSignal): Promise<boolean>;
}

interface OutboxEntry {
  body: AgentMessageBody;
  /** The seq it was sent with in the current session; 0n = not sent yet. */
  seq: bigint;
}

/** Creates the session client. Call `run` once. */
export function createAgentSession(opts: AgentSessionOptions): AgentSession {
  const { clock, logger } = opts;
  const random = opts.random ?? systemRandom;
  const maxUnacked = opts.maxUnacked ?? 5000;
  const streamBuffer = opts.streamBuffer ?? 64;
  const backoff = opts.backoff ?? DEFAULT_BACKOFF;
  const welcomeTimeoutMs = opts.welcomeTimeoutMs ?? 30_000;

  // Durable messages in send order, until acked.
  let outbox: OutboxEntry[] = [];
  // Per-session state, reset on each connect.
  let nextSeq = 0n;
  let pendingAcks: bigint[] = [];
  let pendingHeartbeat: AgentMessageBody | undefined;
  let dropped = 0;

  // Wakes the pump when there is something to send, and flush waiters when
  // the outbox shrinks.
  let wakePump: (() => void) | undefined;
  const notify = () => {
    const w = wakePump;
    wakePump = undefined;
    w?.();
  };
  const flushWaiters = new Set<() => void>();
  const notifyFlush = () => {
    if (outbox.length === 0) for (const w of [...flushWaiters]) w();
  };

  const send = (body: AgentMessageBody): void => {
    if (!DURABLE.has(body.case)) {
      // Only Heartbeat reaches here from outside; the latest one replaces an unsent one.
      if (body.case === "heartbeat") pendingHeartbeat = body;
      notify();
      return;
    }
    if (outbox.length >= maxUnacked) {
      const victim = outbox.findIndex((e) => DROPPABLE.has(e.body.case));
      if (victim >= 0) {
        outbox.splice(victim, 1);
      } else if (DROPPABLE.has(body.case)) {
        countDrop();
        return;
      }
      // Otherwise everything queued is critical: exceed the bound rather than
      // lose a result. Critical messages are a handful per unit.
      if (victim >= 0) countDrop();
    }
    outbox.push({ body, seq: 0n });
    notify();
  };

  const countDrop = () => {
    dropped++;
    if (dropped === 1 || dropped % 1000 === 0) {
      logger.warn({ dropped, unacked: outbox.length }, "outbox full: dropping oldest progress/log messages");
    }
  };

  const handleAck = (seq: bigint) => {
    const i = outbox.findIndex((e) => e.seq === seq);
    if (i >= 0) {
      outbox.splice(i, 1);
      notifyFlush();
    }
  };

  /** The next request to write, by priority: acks, heartbeat, durable in order. */
  const takeNext = (): SessionRequest | undefined => {
    const ackSeq = pendingAcks.shift();
    if (ackSeq !== undefined) {
      return create(SessionRequestSchema, { seq: 0n, body: { case: "ack", value: create(AckSchema, { seq: ackSeq }) } });
    }
    if (pendingHeartbeat) {
      const body = pendingHeartbeat;
      pendingHeartbeat = undefined;
      return create(SessionRequestSchema, { seq: ++nextSeq, body });
    }
    const entry = outbox.find((e) => e.seq === 0n);
    if (entry) {
      entry.seq = ++nextSeq;
      return create(SessionRequestSchema, { seq: entry.seq, body: entry.body });
    }
    return undefined;
  };

  /** The single writer of one session's request stream. */
  const pump = async (queue: AsyncQueue<SessionRequest>, signal: AbortSignal) => {
    // One listener for the whole session, not one per wait, so a long
    // session does not pile up abort listeners.
    signal.addEventListener("abort", notify, { once: true });
    while (!signal.aborted) {
      const next = takeNext();
      if (next) {
        if (!(await queue.put(next))) return;
        continue;
      }
      await new Promise<void>((resolve) => {
        wakePump = resolve;
      });
    }
  };

  const heartbeatLoop = async (intervalMs: number, signal: AbortSignal) => {
    for (;;) {
      try {
        await clock.sleep(intervalMs, signal);
      } catch {
        return;
      }
      try {
        const value = create(HeartbeatSchema, await opts.heartbeat());
        send({ case: "heartbeat", value });
      } catch (err) {
        logger.warn({ err }, "could not build heartbeat");
      }
    }
  };

  /** One stream from connect to close. Resolves whether Welcome arrived, and whether the control plane refused the node. */
  const runOnce = async (outer: AbortSignal): Promise<{ welcomed: boolean; refused: boolean }> => {
    const ctrl = new AbortController();
    const onOuterAbort = () => ctrl.abort(outer.reason);
    outer.addEventListener("abort", onOuterAbort, { once: true });
    const queue = createAsyncQueue<SessionRequest>(streamBuffer);
    nextSeq = 0n;
    pendingAcks = [];
    pendingHeartbeat = undefined;
    // Everything unacked is sent again in this session, with new seqs.
    for (const e of outbox) e.seq = 0n;
    let welcomed = false;
    let refused = false;
    try {
      const hello = await opts.hello();
      await queue.put(
        create(SessionRequestSchema, {
          seq: ++nextSeq,
          body: {
            case: "hello",
            value: create(HelloSchema, {
              protocolVersion: PROTOCOL_VERSION,
              nodeId: opts.nodeId,
              capabilities: hello.capabilities,
              running: hello.running,
            }),
          },
        }),
      );
      clock.sleep(welcomeTimeoutMs, ctrl.signal).then(
        () => {
          if (!welcomed) ctrl.abort(new Error("no Welcome within timeout"));
        },
        () => {},
      );
      const responses = opts.client.session(queue, {
        signal: ctrl.signal,
        headers: { authorization: `Bearer ${opts.nodeCredential}` },
      });
      for await (const message of responses) {
        if (message.seq > 0n) {
          pendingAcks.push(message.seq);
          notify();
        }
        switch (message.body.case) {
          case "welcome": {
            if (welcomed) break;
            welcomed = true;
            const seconds = message.body.value.heartbeatIntervalSeconds;
            const intervalMs = Math.max(1, seconds > 0 ? seconds : 10) * 1000;
            logger.info(
              { session_id: message.body.value.sessionId, heartbeat_ms: intervalMs, unacked: outbox.length },
              "session open",
            );
            void pump(queue, ctrl.signal);
            void heartbeatLoop(intervalMs, ctrl.signal);
            break;
          }
          case "ack":
            handleAck(message.body.value.seq);
            break;
          case "assign":
          case "cancel":
          case "drain":
            try {
              opts.onControl(message);
            } catch (err) {
              logger.error({ err, kind: message.body.case }, "control message handler failed");
            }
            break;
          case undefined:
            // A newer control plane may send bodies this agent does not know; it still acked above.
            break;
        }
      }
      if (!outer.aborted) logger.warn({}, "session stream ended by the control plane");
    } catch (err) {
      const refusal = outer.aborted ? undefined : refusalOf(err);
      if (refusal !== undefined) {
        refused = true;
        const fix = refusal.code === "NODE_AUTH_INVALID" ? "enroll the node again" : "correct what this node reports and restart the agent";
        logger.error(
          { code: refusal.code, reason: refusal.reason, retry_within_ms: backoff.maxMs },
          `the control plane refused this node: ${refusal.reason}; ${fix} (trying again within ${Math.round(backoff.maxMs / 1000)} s)`,
        );
      } else if (!outer.aborted) {
        logger.warn({ err: errorMessage(err) }, "session stream failed");
      }
    } finally {
      outer.removeEventListener("abort", onOuterAbort);
      ctrl.abort();
      queue.close();
      notify();
    }
    return { welcomed, refused };
  };

  return {
    send,
    unacked: () => outbox.length,
    async run(signal) {
      let attempt = 0;
      while (!signal.aborted) {
        const { welcomed, refused } = await runOnce(signal);
        if (signal.aborted) break;
        if (welcomed) attempt = 0;
        // The longest step: a refusal stands until the node is fixed.
        if (refused) attempt = Math.max(attempt, Math.ceil(Math.log2(backoff.maxMs / backoff.initialMs)));
        const delay = backoffDelay(attempt++, backoff, random);
        logger.info({ delay_ms: Math.round(delay), unacked: outbox.length }, "reconnecting");
        try {
          await clock.sleep(delay, signal);
        } catch {
          break;
        }
      }
    },
    flushed(timeoutMs, signal) {
      if (outbox.length === 0) return Promise.resolve(true);
      return new Promise((resolve) => {
        const timer = new AbortController();
        const done = (value: boolean) => {
          flushWaiters.delete(onFlush);
          timer.abort();
          resolve(value);
        };
        const onFlush = () => done(true);
        flushWaiters.add(onFlush);
        const combined = signal ? AbortSignal.any([signal, timer.signal]) : timer.signal;
        clock.sleep(timeoutMs, combined).then(
          () => done(false),
          () => {
            if (signal?.aborted) done(false);
          },
        );
      });
    },
  };
}

/** The control plane's reason when `err` is a refusal of this node (see the module comment), else undefined. */
export function refusalOf(err: unknown): { code: string; reason: string } | undefined {
  if (!(err instanceof ConnectError) || (err.code !== Code.InvalidArgument && err.code !== Code.Unauthenticated)) return undefined;
  // The control plane names its error code in metadata and as a "[CODE] " prefix of the message.
  const prefixed = /^\[([A-Z_]+)\] (.*)$/s.exec(err.rawMessage);
  const code = err.metadata.get("x-gpu-agent-error-code") ?? prefixed?.[1] ?? Code[err.code];
  return { code, reason: prefixed?.[2] ?? err.rawMessage };
}

function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
