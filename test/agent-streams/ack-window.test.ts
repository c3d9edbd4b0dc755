/**
 * A stream's acks (src/agent-streams/ack-window.ts) over a real outbound queue: in arrival order whatever
 * order the effects commit in, never dropped, and a window that holds the stream's reader back
 * until the queue's reader or a commit makes room.
 */
import assert from "node:assert/strict";
import { create } from "@bufbuild/protobuf";
import { AckWindow } from "../../src/agent-streams/ack-window.ts";
import type { AckWaitsOn } from "../../src/agent-streams/ack-window.ts";
import type { SessionResponse } from "../../src/gen/gpuagent/agent/v1/agent_pb.ts";
import { SessionResponseSchema } from "../../src/gen/gpuagent/agent/v1/agent_pb.ts";
import { AsyncQueue } from "../../src/platform/async-queue.ts";

/** The acked seqs queued so far, taken out of the queue in order. */
async function take(queue: AsyncQueue<SessionResponse>, n: number): Promise<bigint[]> {
  const seqs: bigint[] = [];
  const it = queue[Symbol.asyncIterator]();
  while (seqs.length < n) {
    const next = await it.next();
    if (next.done === true) break;
    seqs.push(next.value.body.case === "ack" ? next.value.body.value.seq : -1n);
  }
  return seqs;
}

const control = () => create(SessionResponseSchema, { seq: 9n, body: { case: "drain", value: { reason: "test" } } });
const never = (): void => assert.fail("no telemetry write expected");

describe("ack window", () => {
  it("sends acks in the order the messages came, whatever order their effects commit in", async () => {
    const queue = new AsyncQueue<SessionResponse>(16);
    const acks = new AckWindow(queue, 8);
    const [one, two, three] = [acks.owe(1n), acks.owe(2n), acks.owe(3n)];
    three.ack();
    assert.equal(queue.size, 0, "3 waits for 1 and 2");
    one.ack();
    two.ack();
    two.ack();
    assert.deepEqual(await take(queue, 3), [1n, 2n, 3n]);
    assert.equal(acks.owing, 0);
  });

  it("never drops an ack when control messages have filled the queue", async () => {
    const queue = new AsyncQueue<SessionResponse>(2);
    const acks = new AckWindow(queue, 4);
    const owed = acks.owe(1n);
    assert.equal(queue.push(control()), true);
    assert.equal(queue.push(control()), true);
    assert.equal(queue.push(control()), false, "control messages stop at the capacity");
    owed.ack();
    assert.equal(queue.size, 3);
    assert.deepEqual(await take(queue, 3), [-1n, -1n, 1n]);
  });

  it("holds the reader back while acks owed plus responses queued fill the window, until the queue's reader takes one", async () => {
    const queue = new AsyncQueue<SessionResponse>(16);
    const acks = new AckWindow(queue, 3);
    acks.owe(1n).ack();
    queue.push(control());
    const pending = acks.owe(2n);
    assert.equal(acks.hasRoom, false);
    let released = false;
    const room = acks.room(never).then(() => (released = true));
    pending.ack();
    await Promise.resolve();
    assert.equal(released, false, "a commit moves an ack into the queue: the window is as full as before");
    assert.deepEqual(await take(queue, 1), [1n]);
    await room;
    assert.equal(acks.hasRoom, true);
  });

  it("asks once for the telemetry write the oldest owed ack waits on, and lets the reader go once it commits", async () => {
    const queue = new AsyncQueue<SessionResponse>(16);
    const acks = new AckWindow(queue, 2);
    const attempt: AckWaitsOn = { unitId: "u", attempt: 1 };
    const first = acks.owe(1n);
    first.waitOn(attempt);
    const second = acks.owe(2n);
    second.waitOn(attempt);
    const asked: AckWaitsOn[] = [];
    const take2 = take(queue, 2);
    const room = acks.room((a) => asked.push(a));
    assert.deepEqual(asked, [attempt]);
    // The write commits both: their acks go out, and the reader takes them.
    first.ack();
    second.ack();
    await room;
    assert.deepEqual(await take2, [1n, 2n]);
    assert.deepEqual(asked, [attempt]);
  });

  it("settles once every owed ack is queued, or at once when the stream closes", async () => {
    const queue = new AsyncQueue<SessionResponse>(16);
    const acks = new AckWindow(queue, 8);
    const owed = acks.owe(1n);
    const settled = acks.settled(never);
    owed.ack();
    await settled;
    acks.owe(2n);
    const closing = acks.settled(never);
    queue.close();
    await closing;
    assert.equal(acks.owing, 1, "an ack owed on a closed stream is left to the agent's resend");
  });
});
