/** The real sources behind the injected ones (src/platform/): the only reads of clock, randomness and host. */
import assert from "node:assert/strict";
import { monotonicMs } from "../../src/platform/clock.ts";
import { hostPath } from "../../src/platform/host.ts";
import { randomSalt } from "../../src/platform/ids.ts";
import { systemRandom } from "../../src/platform/random.ts";

describe("platform effect sources", () => {
  it("monotonicMs never goes back", () => {
    let last = monotonicMs();
    for (let i = 0; i < 1000; i++) {
      const now = monotonicMs();
      assert.ok(now >= last);
      last = now;
    }
  });

  it("randomSalt gives the asked number of bytes, different each time", () => {
    const a = randomSalt(16);
    assert.equal(a.length, 16);
    assert.notDeepEqual(randomSalt(16), a);
  });

  it("systemRandom draws from [0, 1)", () => {
    for (let i = 0; i < 1000; i++) {
      const r = systemRandom();
      assert.ok(r >= 0 && r < 1);
    }
  });

  it("hostPath is this process's PATH", () => {
    assert.equal(hostPath(), process.env["PATH"]);
  });
});
