/**
 * The owner's availability window: the grammar, whether an instant is inside it (local time), and when
 * it next changes — the instant the agent sends a heartbeat at once.
 */
import assert from "node:assert/strict";
import {
  AvailabilityWindowError,
  isWithinWindow,
  nextWindowEdge,
  parseAvailabilityWindow,
} from "../../src/node-agent/availability-window.ts";
import type { UtcOffset } from "../../src/node-agent/availability-window.ts";

const days = { Mon: 5, Tue: 6, Wed: 7, Thu: 8, Fri: 9, Sat: 10, Sun: 11 } as const;
/** An instant in the week of Monday 2026-01-05 at the given UTC wall time. */
const at = (day: keyof typeof days, time: string): number => {
  const [h, m] = time.split(":").map(Number);
  return Date.UTC(2026, 0, days[day], h, m);
};
/** The same, one week later. */
const nextWeek = (day: keyof typeof days, time: string): number => at(day, time) + 7 * 86_400_000;
const utc: UtcOffset = () => 0;

describe("availability window", () => {
  describe("is within the window at", () => {
    const cases: { spec: string; day: keyof typeof days; time: string; within: boolean }[] = [
      { spec: "Mon-Fri 18:00-08:00", day: "Mon", time: "17:59", within: false },
      { spec: "Mon-Fri 18:00-08:00", day: "Mon", time: "18:00", within: true },
      { spec: "Mon-Fri 18:00-08:00", day: "Tue", time: "07:59", within: true },
      { spec: "Mon-Fri 18:00-08:00", day: "Tue", time: "08:00", within: false },
      { spec: "Mon-Fri 18:00-08:00", day: "Mon", time: "03:00", within: false }, // Sunday night started no window
      { spec: "Mon-Fri 18:00-08:00", day: "Sat", time: "07:00", within: true }, // Friday's night runs into Saturday
      { spec: "Mon-Fri 18:00-08:00", day: "Sat", time: "18:00", within: false },
      { spec: "Sat,Sun 00:00-24:00", day: "Sat", time: "00:00", within: true },
      { spec: "Sat,Sun 00:00-24:00", day: "Sun", time: "23:59", within: true },
      { spec: "Sat,Sun 00:00-24:00", day: "Mon", time: "00:00", within: false },
      { spec: "Sat,Sun 00:00-24:00", day: "Fri", time: "23:59", within: false },
      { spec: "Sun 22:00-06:00", day: "Mon", time: "05:59", within: true }, // overnight across the end of the week
      { spec: "Sun 22:00-06:00", day: "Mon", time: "06:00", within: false },
      { spec: "Fri-Mon 09:00-17:00", day: "Sun", time: "12:00", within: true }, // a day range that wraps
      { spec: "Fri-Mon 09:00-17:00", day: "Wed", time: "12:00", within: false },
      { spec: "09:00-17:00", day: "Wed", time: "09:00", within: true }, // no days: every day
      { spec: "09:00-17:00", day: "Wed", time: "17:00", within: false },
      { spec: "Mon-Fri 18:00-08:00; Sat,Sun 00:00-24:00", day: "Sat", time: "12:00", within: true },
      { spec: "Mon-Fri 18:00-08:00; Sat,Sun 00:00-24:00", day: "Wed", time: "12:00", within: false },
      { spec: "mon - fri  18:00 - 08:00", day: "Tue", time: "07:00", within: true }, // case and spaces do not matter
    ];
    for (const tc of cases) {
      it(`"${tc.spec}": ${tc.day} ${tc.time} is ${tc.within ? "inside" : "outside"}`, () => {
        assert.equal(isWithinWindow(parseAvailabilityWindow(tc.spec), at(tc.day, tc.time), utc), tc.within);
      });
    }
  });

  it("reads the wall clock of the machine's time zone, not UTC", () => {
    const window = parseAvailabilityWindow("Mon-Fri 18:00-08:00");
    // 17:30 UTC is 19:30 at UTC+2: inside there, outside in London.
    assert.equal(isWithinWindow(window, at("Mon", "17:30"), () => 120), true);
    assert.equal(isWithinWindow(window, at("Mon", "17:30"), utc), false);
  });

  describe("next edge", () => {
    const cases: { name: string; spec: string; from: number; edge: number | undefined }[] = [
      { name: "inside an overnight window: its end next morning", spec: "Mon-Fri 18:00-08:00", from: at("Mon", "23:00"), edge: at("Tue", "08:00") },
      { name: "outside on a weekday: that evening's start", spec: "Mon-Fri 18:00-08:00", from: at("Wed", "12:00"), edge: at("Wed", "18:00") },
      { name: "exactly at a start: the end of that window, not the start again", spec: "Mon-Fri 18:00-08:00", from: at("Mon", "18:00"), edge: at("Tue", "08:00") },
      { name: "on the weekend: Monday evening", spec: "Mon-Fri 18:00-08:00", from: at("Sat", "09:00"), edge: nextWeek("Mon", "18:00") },
      { name: "windows that touch are one stretch: Friday's night runs into the weekend until Monday", spec: "Mon-Fri 18:00-08:00; Sat,Sun 00:00-24:00", from: at("Fri", "19:00"), edge: nextWeek("Mon", "00:00") },
      { name: "a stretch across the end of the week has no edge at Monday 00:00", spec: "Sun 22:00-06:00", from: at("Sun", "23:00"), edge: nextWeek("Mon", "06:00") },
      { name: "a window that ends the week has its edge there", spec: "Sun 12:00-24:00", from: at("Sun", "13:00"), edge: nextWeek("Mon", "00:00") },
      { name: "a window covering the whole week never changes", spec: "00:00-24:00", from: at("Wed", "12:00"), edge: undefined },
    ];
    for (const tc of cases) {
      it(tc.name, () => {
        const window = parseAvailabilityWindow(tc.spec);
        const edge = nextWindowEdge(window, tc.from, utc);
        assert.equal(edge, tc.edge);
        if (edge !== undefined) {
          // The state flips exactly there, and not a millisecond before.
          assert.notEqual(isWithinWindow(window, edge, utc), isWithinWindow(window, edge - 1, utc));
          assert.equal(isWithinWindow(window, edge - 1, utc), isWithinWindow(window, tc.from, utc));
        }
      });
    }
  });

  it("keeps an edge on the wall clock across a daylight-saving step", () => {
    // UTC+1 until Sunday 01:00 UTC, UTC+2 after (as central Europe in spring).
    const step = at("Sun", "01:00");
    const cet: UtcOffset = (ms) => (ms < step ? 60 : 120);
    const window = parseAvailabilityWindow("Sun 18:00-20:00");
    const edge = nextWindowEdge(window, at("Sat", "12:00"), cet);
    // 18:00 at UTC+2 is 16:00 UTC.
    assert.equal(edge, at("Sun", "16:00"));
    assert.equal(isWithinWindow(window, edge, cet), true);
  });

  describe("refuses", () => {
    const cases: { spec: string; message: RegExp }[] = [
      { spec: "", message: /empty availability window/ },
      { spec: "Mon-Fri 18:00-08:00;", message: /empty window between ";"/ },
      { spec: "Mun-Fri 18:00-08:00", message: /unknown day "Mun".*use Mon, Tue/ },
      { spec: "Mon-Fri", message: /has no time range/ },
      { spec: "Mon-Fri 18:00", message: /has no time range/ },
      { spec: "Mon-Fri 25:00-08:00", message: /bad time "25:00".*00:00 to 23:59/ },
      { spec: "Mon-Fri 18:00-24:30", message: /bad time "24:30".*00:00 to 24:00/ },
      { spec: "Mon 24:00-08:00", message: /bad time "24:00"/ },
      { spec: "Mon 18:60-20:00", message: /bad time "18:60"/ },
      { spec: "Mon 8am-5pm", message: /bad time "8am"/ },
      { spec: "Mon 08:00-08:00", message: /starts and ends at the same time.*00:00-24:00/ },
      { spec: "Mon,,Tue 08:00-09:00", message: /empty day/ },
      { spec: "Mon-Tue-Wed 08:00-09:00", message: /bad day range "Mon-Tue-Wed"/ },
    ];
    for (const tc of cases) {
      it(`${JSON.stringify(tc.spec)}, saying what is wrong`, () => {
        assert.throws(() => parseAvailabilityWindow(tc.spec), (err: unknown) => err instanceof AvailabilityWindowError && tc.message.test(err.message));
      });
    }
  });

  it("keeps the spec as the owner wrote it", () => {
    assert.equal(parseAvailabilityWindow("  Mon-Fri 18:00-08:00 ").text, "Mon-Fri 18:00-08:00");
  });
});
