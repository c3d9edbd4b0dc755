import assert from "node:assert/strict";
import { createLineSplitter, parseStdoutLine } from "../../src/node-agent/line-protocol.ts";
import type { ParsedLine } from "../../src/node-agent/line-protocol.ts";

describe("stdout line protocol", () => {
  const cases: { name: string; line: string; want: ParsedLine }[] = [
    {
      name: "a progress line with metrics is a progress report",
      line: '@@gpu-agent {"progress": 0.42, "metrics": {"epoch": 3, "loss": 0.21}}',
      want: { kind: "progress", progress: 0.42, metrics: { epoch: 3, loss: 0.21 } },
    },
    {
      name: "progress above one is clamped to one",
      line: '@@gpu-agent {"progress": 7}',
      want: { kind: "progress", progress: 1, metrics: {} },
    },
    {
      name: "negative progress is clamped to zero",
      line: '@@gpu-agent {"progress": -0.5}',
      want: { kind: "progress", progress: 0, metrics: {} },
    },
    {
      name: "metrics alone are a progress report without a progress value",
      line: '@@gpu-agent {"metrics": {"loss": 1.5}}',
      want: { kind: "progress", metrics: { loss: 1.5 } },
    },
    {
      name: "non-numeric metrics are dropped and the rest kept",
      line: '@@gpu-agent {"progress": 0.5, "metrics": {"loss": 0.3, "name": "x", "ok": true, "n": null}}',
      want: { kind: "progress", progress: 0.5, metrics: { loss: 0.3 } },
    },
    {
      name: "a checkpoint named with progress and metrics is kept with them",
      line: '@@gpu-agent {"progress": 0.3, "metrics": {"epoch": 3}, "checkpoint": "epoch-3.ckpt"}',
      want: { kind: "progress", progress: 0.3, metrics: { epoch: 3 }, checkpoint: "epoch-3.ckpt" },
    },
    {
      name: "a checkpoint alone is a report naming it",
      line: '@@gpu-agent {"checkpoint": "latest.pt"}',
      want: { kind: "progress", metrics: {}, checkpoint: "latest.pt" },
    },
    {
      name: "a checkpoint that is not a non-empty string makes the line a log line",
      line: '@@gpu-agent {"progress": 0.3, "checkpoint": 3}',
      want: { kind: "log", line: '@@gpu-agent {"progress": 0.3, "checkpoint": 3}' },
    },
    {
      name: "an empty checkpoint name makes the line a log line",
      line: '@@gpu-agent {"checkpoint": ""}',
      want: { kind: "log", line: '@@gpu-agent {"checkpoint": ""}' },
    },
    {
      name: "a plain line is a log line",
      line: "epoch 3 loss 0.21",
      want: { kind: "log", line: "epoch 3 loss 0.21" },
    },
    {
      name: "malformed JSON after the prefix is a log line",
      line: "@@gpu-agent {progress: 0.5}",
      want: { kind: "log", line: "@@gpu-agent {progress: 0.5}" },
    },
    {
      name: "a JSON array after the prefix is a log line",
      line: "@@gpu-agent [0.5]",
      want: { kind: "log", line: "@@gpu-agent [0.5]" },
    },
    {
      name: "a string progress is a log line",
      line: '@@gpu-agent {"progress": "0.5"}',
      want: { kind: "log", line: '@@gpu-agent {"progress": "0.5"}' },
    },
    {
      name: "an object with neither progress nor metrics is a log line",
      line: '@@gpu-agent {"hello": 1}',
      want: { kind: "log", line: '@@gpu-agent {"hello": 1}' },
    },
    {
      name: "metrics that are not an object make a log line",
      line: '@@gpu-agent {"progress": 0.1, "metrics": [1, 2]}',
      want: { kind: "log", line: '@@gpu-agent {"progress": 0.1, "metrics": [1, 2]}' },
    },
    {
      name: "the prefix without its space is a log line",
      line: '@@gpu-agent{"progress": 0.1}',
      want: { kind: "log", line: '@@gpu-agent{"progress": 0.1}' },
    },
  ];
  for (const tc of cases) {
    it(tc.name, () => assert.deepEqual(parseStdoutLine(tc.line), tc.want));
  }
});

describe("line splitter", () => {
  function split(chunks: string[], max?: number): string[] {
    const lines: string[] = [];
    const s = createLineSplitter((l) => lines.push(l), max);
    for (const c of chunks) s.write(Buffer.from(c));
    s.end();
    return lines;
  }

  it("joins lines split across chunks", () => {
    assert.deepEqual(split(["ab", "c\nde", "f\n"]), ["abc", "def"]);
  });

  it("emits an unterminated last line at the end", () => {
    assert.deepEqual(split(["one\ntwo"]), ["one", "two"]);
  });

  it("drops carriage returns before newlines", () => {
    assert.deepEqual(split(["a\r\nb\r\n"]), ["a", "b"]);
  });

  it("cuts a long line at the limit and marks it truncated", () => {
    const lines = split(["x".repeat(10), "y".repeat(10), "\nnext\n"], 8);
    assert.deepEqual(lines, ["xxxxxxxx …[truncated]", "next"]);
  });

  it("keeps empty lines", () => {
    assert.deepEqual(split(["\n\n"]), ["", ""]);
  });
});
