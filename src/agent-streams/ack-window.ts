/**
 * The acks of one agent stream: sent in the order their messages arrived,
 * never dropped, and bounded by a window that holds the stream's reader back.
 *
 * Every message read with seq > 0 owes an ack until its effect is committed
 * (at once for most; for log lines and progress, when the telemetry batch
 * holding them is written). An ack goes out only after every earlier one, so
 * the agent hears "stored" in the order it sent. Acks owed plus responses
 * queued stay under `size`: while they do not, the handler reads no further
 * message, the transport stops reading the request, and HTTP/2 flow control
 * slows the agent down. Memory per stream is therefore at most `size` owed
 * entries, whatever the agent sends, and nothing waits on a timer.
 *
 * Deadlock freedom: the reader waits only for the outbound queue's reader (the
 * transport writing to the agent) or for commits (database writes), neither
 * of which waits for the reader; acks never wait for room (they enter the
 * queue with `pushReserved`, their room having been counted when their
 * message was read), so a commit can always release its ack.
 */
import { create } from "@bufbuild/protobuf";
import type { SessionResponse } from "../gen/gpuagent/agent/v1/agent_pb.ts";
import { AckSchema, SessionResponseSchema } from "../gen/gpuagent/agent/v1/agent_pb.ts";
import type { AsyncQueue } from "../platform/async-queue.ts";

/** The unit attempt whose telemetry write an owed ack waits for. */
export interface AckWaitsOn {
  readonly unitId: string;
  readonly attempt: number;
}

interface OwedAck {
  readonly seq: bigint;
  done: boolean;
  /** Set while the ack waits for a telemetry write of this attempt. */
  waitsOn: AckWaitsOn | undefined;
}

const ackResponse = (seq: bigint): SessionResponse => create(SessionResponseSchema, { seq: 0n, body: { case: "ack", value: create(AckSchema, { seq }) } });

/** See the module comment. */
export class AckWindow {
  private readonly outbound: AsyncQueue<SessionResponse>;
  private readonly owed: OwedAck[] = [];
  private wake: (() => void) | undefined;
  /** Acks owed plus responses queued above which no further message is read. */
  readonly size: number;

  constructor(outbound: AsyncQueue<SessionResponse>, size: number) {
    this.outbound = outbound;
    this.size = size;
    outbound.onTake = () => this.wakeUp();
  }

  /** Acks owed (read, not yet handed to the outbound queue). */
  get owing(): number {
    return this.owed.length;
  }

  /** Whether another message may be read now. */
  get hasRoom(): boolean {
    return this.owed.length + this.outbound.size < this.size;
  }

  /**
   * Owes an ack for `seq` (a message just read); returns the function that
   * acks it once its effect is committed (later calls do nothing). `waitsOn`
   * names the attempt whose telemetry write will ack it, if any.
   */
  owe(seq: bigint): { ack: () => void; waitOn: (attempt: AckWaitsOn) => void } {
    const entry: OwedAck = { seq, done: false, waitsOn: undefined };
    this.owed.push(entry);
    return {
      ack: () => {
        if (entry.done) return;
        entry.done = true;
        entry.waitsOn = undefined;
        this.release();
      },
      waitOn: (attempt) => {
        if (!entry.done) entry.waitsOn = attempt;
      },
    };
  }

  /** Sends every committed ack that has no uncommitted one before it. */
  private release(): void {
    let released = false;
    while (this.owed.length > 0 && this.owed[0]!.done) {
      const entry = this.owed.shift()!;
      // A closed stream takes nothing: the agent sends the message again on its next stream.
      this.outbound.pushReserved(ackResponse(entry.seq));
      released = true;
    }
    if (released) this.wakeUp();
  }

  private wakeUp(): void {
    const wake = this.wake;
    this.wake = undefined;
    wake?.();
  }

  /**
   * Resolves once another message may be read, or the stream is closed. While
   * the oldest owed ack waits for a telemetry write, `writeNow` is asked (once
   * per such ack) to write that attempt now instead of at its next interval.
   */
  async room(writeNow: (attempt: AckWaitsOn) => void): Promise<void> {
    while (!this.hasRoom && !this.outbound.isClosed) await this.waitFor(writeNow);
  }

  /** Resolves once every owed ack is queued (a clean end of the request stream), or the stream is closed. */
  async settled(writeNow: (attempt: AckWaitsOn) => void): Promise<void> {
    while (this.owed.length > 0 && !this.outbound.isClosed) await this.waitFor(writeNow);
  }

  private waitFor(writeNow: (attempt: AckWaitsOn) => void): Promise<void> {
    const head = this.owed[0];
    if (head !== undefined && head.waitsOn !== undefined) {
      const attempt = head.waitsOn;
      head.waitsOn = undefined;
      writeNow(attempt);
    }
    return new Promise<void>((resolve) => {
      this.wake = resolve;
    });
  }
}
