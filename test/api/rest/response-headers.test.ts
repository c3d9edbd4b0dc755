/**
 * The REST handler context's response headers behave as the Headers class
 * does (a handler cannot tell): the same answers and the same refusals for
 * the same operations, checked against Headers step by step.
 */
import assert from "node:assert/strict";
import { ResponseHeaders } from "../../../src/api/rest/transcoder.ts";

type Op = ["set" | "append", string, string] | ["delete", string];

const cases: Array<{ name: string; ops: Op[] }> = [
  { name: "rate-limit headers set and set again", ops: [["set", "X-RateLimit-Limit", "10"], ["set", "x-ratelimit-remaining", "9"], ["set", "X-RATELIMIT-LIMIT", "20"]] },
  { name: "appended values join with a comma", ops: [["append", "Vary", "a"], ["append", "vary", "b"], ["set", "x", "1"], ["append", "X", "2"]] },
  { name: "cookies stay apart and set replaces them all", ops: [["append", "Set-Cookie", "a=1"], ["append", "set-cookie", "b=2"], ["set", "other", "x"], ["set", "Set-Cookie", "c=3"], ["append", "set-cookie", "d=4"]] },
  { name: "delete removes every value of a name", ops: [["append", "set-cookie", "a=1"], ["append", "set-cookie", "b=2"], ["append", "a", "1"], ["delete", "Set-Cookie"], ["delete", "A"], ["delete", "missing"]] },
  { name: "values lose surrounding whitespace", ops: [["set", "a", "  x  "], ["append", "b", "\ty\t"], ["set", "c", ""]] },
  { name: "bad names and values are refused", ops: [["set", "bad name", "x"], ["set", "", "x"], ["set", "a", "x\ny"], ["append", "a", "x\0"], ["set", "a", "caf\u00e9"], ["set", "a", "\u20ac"], ["set", "é", "x"]] },
];

function apply(h: Headers, op: Op): string {
  try {
    if (op[0] === "delete") h.delete(op[1]);
    else h[op[0]](op[1], op[2]);
    return "ok";
  } catch (error) {
    return (error as Error).name;
  }
}

function view(h: Headers, names: string[]): unknown {
  return {
    entries: [...h],
    viaForEach: (() => {
      const out: string[][] = [];
      h.forEach((v, k) => out.push([k, v]));
      return out;
    })(),
    keys: [...h.keys()],
    values: [...h.values()],
    cookies: h.getSetCookie(),
    get: names.map((n) => {
      try {
        return [h.get(n), h.has(n)];
      } catch (error) {
        return (error as Error).name;
      }
    }),
  };
}

describe("REST response headers behave as Headers", () => {
  for (const tc of cases) {
    it(tc.name, () => {
      const real = new Headers();
      const ours = new ResponseHeaders() as unknown as Headers;
      const names = [...new Set(tc.ops.map((op) => op[1])), "set-cookie", "absent"];
      for (const op of tc.ops) {
        assert.equal(apply(ours, op), apply(real, op), JSON.stringify(op));
        assert.deepEqual(view(ours, names), view(real, names), JSON.stringify(op));
      }
      assert.ok(ours instanceof Headers);
      assert.deepEqual([...new Headers(ours)], [...real], "a copy is the same");
    });
  }
});
