/** The notice between parts built one after the other (src/platform/notifier.ts). */
import assert from "node:assert/strict";
import { Notifier } from "../../src/platform/notifier.ts";

describe("Notifier", () => {
  it("calls every listener once per notice, in the order they were added", () => {
    const notifier = new Notifier();
    const heard: string[] = [];
    notifier.listen(() => heard.push("first"));
    notifier.listen(() => heard.push("second"));
    notifier.notify();
    notifier.notify();
    assert.deepEqual(heard, ["first", "second", "first", "second"]);
  });

  it("drops a notice sent before anyone listens", () => {
    const notifier = new Notifier();
    notifier.notify();
    let heard = 0;
    notifier.listen(() => heard++);
    assert.equal(heard, 0);
    notifier.notify();
    assert.equal(heard, 1);
  });
});
