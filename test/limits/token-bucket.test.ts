/** The general request limit's token bucket, on a FakeClock (exact numbers), and the job-creation description. */
import assert from "node:assert/strict";
import { jobCreationLimitState } from "../../src/limits/job-creation.ts";
import { rateLimitHeaders } from "../../src/limits/headers.ts";
import { TokenBucketLimiter } from "../../src/limits/token-bucket.ts";
import { FakeClock } from "../../src/platform/clock.ts";

describe("token bucket request limiter", () => {
  const start = Date.UTC(2026, 0, 1, 12, 0, 0);

  it("admits a burst of `limit`, then refuses with the wait for one token, and tells the truth about it", () => {
    const clock = new FakeClock(start);
    const limiter = new TokenBucketLimiter({ clock, limit: 3, windowMs: 60_000 });
    const states = [limiter.take("a"), limiter.take("a"), limiter.take("a")];
    assert.deepEqual(states.map((s) => [s.allowed, s.remaining]), [[true, 2], [true, 1], [true, 0]]);
    // Three tokens are missing after three takes: full again 60 s later.
    assert.equal(states[2]!.resetAtS, start / 1000 + 60);
    const refused = limiter.take("a");
    assert.equal(refused.allowed, false);
    assert.equal(refused.remaining, 0);
    assert.equal(refused.retryAfterS, 20, "one token per 20 s at 3 per minute");
    assert.equal(rateLimitHeaders(refused)["retry-after"], "20");
    assert.equal(rateLimitHeaders(states[0]!)["retry-after"], undefined);
    // Another caller has its own bucket.
    assert.equal(limiter.take("b").remaining, 2);
    clock.advance(19_999);
    assert.equal(limiter.take("a").allowed, false);
    clock.advance(1);
    const after = limiter.take("a");
    assert.equal(after.allowed, true);
    assert.equal(after.remaining, 0);
  });

  it("refills continuously up to the limit, never above", () => {
    const clock = new FakeClock(start);
    const limiter = new TokenBucketLimiter({ clock, limit: 600 });
    for (let i = 0; i < 600; i++) assert.equal(limiter.take("k").allowed, true);
    assert.equal(limiter.take("k").allowed, false);
    clock.advance(1_000); // 10 tokens per second
    let admitted = 0;
    while (limiter.take("k").allowed) admitted++;
    assert.equal(admitted, 10);
    clock.advance(3_600_000);
    const full = limiter.take("k");
    assert.equal(full.remaining, 599);
    assert.equal(full.resetAtS, Math.ceil((clock.now() + 100) / 1000));
  });

  it("forgets the least recently seen callers beyond maxKeys", () => {
    const clock = new FakeClock(start);
    const limiter = new TokenBucketLimiter({ clock, limit: 5, maxKeys: 3 });
    for (const k of ["a", "b", "c", "a", "d"]) limiter.take(k);
    assert.equal(limiter.size, 3);
    // "b" was the least recently seen: forgotten, so it starts full again.
    assert.equal(limiter.take("b").remaining, 4);
    assert.equal(limiter.take("a").remaining, 2);
  });

  it("is off at limit 0: admits everything", () => {
    const limiter = new TokenBucketLimiter({ clock: new FakeClock(start), limit: 0 });
    for (let i = 0; i < 1000; i++) assert.equal(limiter.take("x").allowed, true);
    assert.equal(limiter.enabled, false);
    assert.equal(limiter.size, 0);
  });
});

describe("job-creation limit description", () => {
  const now = Date.UTC(2026, 0, 1, 12, 0, 30);
  it("counts a job just created and resets 60 s after the oldest in the window", () => {
    const oldest = new Date(now - 20_000);
    const s = jobCreationLimitState(10, { createdLastMinute: 4, oldestInWindow: oldest }, now, true);
    assert.deepEqual([s.limit, s.remaining, s.resetAtS, s.allowed, s.scope], [10, 5, (now + 40_000) / 1000, true, "job_creations"]);
    const first = jobCreationLimitState(10, { createdLastMinute: 0, oldestInWindow: null }, now, true);
    assert.deepEqual([first.remaining, first.resetAtS], [9, (now + 60_000) / 1000]);
  });
  it("refuses at the limit with Retry-After equal to the reset's distance", () => {
    const s = jobCreationLimitState(10, { createdLastMinute: 10, oldestInWindow: new Date(now - 45_500) }, now, false);
    assert.equal(s.allowed, false);
    assert.equal(s.remaining, 0);
    assert.equal(s.retryAfterS, 15);
    assert.equal(s.resetAtS, Math.ceil((now + 14_500) / 1000));
  });
});
