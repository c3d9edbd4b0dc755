import assert from "node:assert/strict";
import { cutTail, lineBytes, maxLineChars, normalizeLine, tailLength } from "../../src/telemetry/log-lines.ts";

describe("log lines", () => {
  const normalized = [
    { name: "a plain line is kept as it is", line: "epoch 1/20 loss=0.5", want: "epoch 1/20 loss=0.5" },
    { name: "NUL becomes the replacement character (jsonb cannot hold it)", line: "a\u0000b", want: "a\uFFFDb" },
    { name: "a line over the limit is cut and marked", line: "x".repeat(maxLineChars + 10), want: `${"x".repeat(maxLineChars)}…` },
    {
      name: "a cut never splits a surrogate pair",
      line: `${"x".repeat(maxLineChars - 1)}😀tail`,
      want: `${"x".repeat(maxLineChars - 1)}…`,
    },
  ];
  for (const tc of normalized) it(tc.name, () => assert.equal(normalizeLine(tc.line), tc.want));

  it("measures lines in UTF-8 bytes", () => {
    assert.equal(lineBytes("abc"), 3);
    assert.equal(lineBytes("é"), 2);
  });

  const tails = [
    { name: "everything fits", sizes: [1, 2, 3], lines: 10, bytes: 100, want: 3 },
    { name: "the line bound keeps the newest lines", sizes: [1, 1, 1, 1], lines: 2, bytes: 100, want: 2 },
    { name: "the byte bound keeps the newest lines that fit", sizes: [5, 5, 5], lines: 10, bytes: 11, want: 2 },
    { name: "the newest line stays even when it alone is over the byte bound", sizes: [1, 50], lines: 10, bytes: 10, want: 1 },
    { name: "no lines, no tail", sizes: [], lines: 10, bytes: 10, want: 0 },
  ];
  for (const tc of tails) it(`tail length: ${tc.name}`, () => assert.equal(tailLength(tc.sizes, { lines: tc.lines, bytes: tc.bytes }), tc.want));

  it("cuts the tail oldest first", () => {
    const lines = ["a", "b", "c", "d"].map((text) => ({ text }));
    assert.deepEqual(
      cutTail(lines, { lines: 2, bytes: 100 }).map((l) => l.text),
      ["c", "d"],
    );
  });
});
