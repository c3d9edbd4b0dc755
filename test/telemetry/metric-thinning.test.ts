import assert from "node:assert/strict";
import { addReports, emptyHistory, isKept, keptCount } from "../../src/telemetry/metric-thinning.ts";

/** The ordinals a history keeps after `reports` reports added one at a time (as flushes do). */
function keptAfter(reports: number, capacity: number, step = 1): { kept: number[]; stride: number } {
  let state = emptyHistory;
  let kept: number[] = [];
  for (let added = 0; added < reports; ) {
    const n = Math.min(step, reports - added);
    state = addReports(state, n, capacity);
    for (let k = added; k < added + n; k++) kept.push(k);
    added += n;
    kept = kept.filter((k) => isKept(k, state.reports, state.stride));
    assert.ok(kept.length <= capacity, `${kept.length} points after ${added} reports exceed ${capacity}`);
    assert.equal(kept.length, keptCount(state.reports, state.stride));
  }
  return { kept, stride: state.stride };
}

describe("metric history thinning", () => {
  const cases = [
    { name: "a short history keeps every report", reports: 7, capacity: 10, step: 1 },
    { name: "exactly the capacity keeps every report", reports: 10, capacity: 10, step: 1 },
    { name: "one report over the capacity halves the resolution", reports: 11, capacity: 10, step: 1 },
    { name: "a long history added one report at a time stays within the capacity", reports: 10_000, capacity: 500, step: 1 },
    { name: "a long history added in bursts stays within the capacity", reports: 10_007, capacity: 500, step: 37 },
    { name: "the smallest capacity still keeps first and last", reports: 1000, capacity: 2, step: 3 },
  ];
  for (const tc of cases) {
    it(`${tc.name}, with the first and the latest report kept and even spacing`, () => {
      const { kept, stride } = keptAfter(tc.reports, tc.capacity, tc.step);
      assert.equal(kept[0], 0, "the first report stays");
      assert.equal(kept.at(-1), tc.reports - 1, "the latest report stays");
      // Every gap is the stride, except the one before the latest report (which may be shorter).
      const gaps = kept.slice(1).map((k, i) => k - kept[i]!);
      assert.ok(gaps.slice(0, -1).every((g) => g === stride), `even gaps of ${stride}: ${gaps.join(",").slice(0, 200)}`);
      assert.ok((gaps.at(-1) ?? stride) <= stride);
      if (tc.reports > tc.capacity) assert.ok(kept.length >= Math.floor(tc.capacity / 2), `at least half the capacity is used (${kept.length})`);
      else assert.equal(kept.length, tc.reports);
    });
  }

  it("refuses a capacity below 2", () => {
    assert.throws(() => addReports(emptyHistory, 1, 1), RangeError);
  });
});
