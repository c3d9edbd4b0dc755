import assert from "node:assert/strict";
import type { CsvValue } from "../../src/billing/csv.ts";
import { csvCell, csvContentType, csvDocument, csvRow } from "../../src/billing/csv.ts";

describe("csv encoding", () => {
  const cellCases: readonly { name: string; value: CsvValue; expected: string }[] = [
    { name: "plain text is written as is", value: "train", expected: "train" },
    { name: "an empty string is an empty cell", value: "", expected: "" },
    { name: "null is an empty cell", value: null, expected: "" },
    { name: "undefined is an empty cell", value: undefined, expected: "" },
    { name: "a comma forces quotes", value: "a,b", expected: '"a,b"' },
    { name: "inner double quotes are doubled inside quotes", value: 'say "hi"', expected: '"say ""hi"""' },
    { name: "a line feed forces quotes", value: "a\nb", expected: '"a\nb"' },
    { name: "a carriage return inside forces quotes", value: "a\rb", expected: '"a\rb"' },
    { name: "a CRLF inside forces quotes", value: "a\r\nb", expected: '"a\r\nb"' },
    { name: "a single quote alone needs no quotes", value: "it's", expected: "it's" },
    { name: "a leading = gets an apostrophe", value: "=1+2", expected: "'=1+2" },
    { name: "a leading + gets an apostrophe", value: "+1", expected: "'+1" },
    { name: "a leading - in text gets an apostrophe", value: "-5", expected: "'-5" },
    { name: "a leading @ gets an apostrophe", value: "@SUM(A1)", expected: "'@SUM(A1)" },
    { name: "a leading tab gets an apostrophe", value: "\t=1", expected: "'\t=1" },
    { name: "a leading carriage return gets an apostrophe and quotes", value: "\r=1", expected: "\"'\r=1\"" },
    {
      name: "a formula with quotes and commas is neutralised, then quoted",
      value: '=HYPERLINK("http://x", "y")',
      expected: '"\'=HYPERLINK(""http://x"", ""y"")"',
    },
    { name: "the DDE payload is neutralised", value: "=cmd|' /C calc'!A0", expected: "'=cmd|' /C calc'!A0" },
    { name: "a formula character later in the cell is left alone", value: "a=b-c", expected: "a=b-c" },
    { name: "unicode text passes through unchanged", value: "训练任务 ✓ ñ 😀", expected: "训练任务 ✓ ñ 😀" },
    { name: "unicode with a comma is quoted", value: "模型,第一版", expected: '"模型,第一版"' },
    { name: "a full-width equals sign is not a formula start", value: "＝1", expected: "＝1" },
    { name: "a negative number stays a number", value: -5, expected: "-5" },
    { name: "zero is written", value: 0, expected: "0" },
    { name: "a fractional number is written", value: 12.5, expected: "12.5" },
    { name: "a bigint is written in full", value: 9007199254740993n, expected: "9007199254740993" },
    { name: "a negative bigint stays a number", value: -7n, expected: "-7" },
    { name: "NaN is an empty cell", value: Number.NaN, expected: "" },
  ];
  for (const tc of cellCases) {
    it(`encodes a cell: ${tc.name}`, () => {
      assert.equal(csvCell(tc.value), tc.expected);
    });
  }

  const rowCases: readonly { name: string; values: readonly CsvValue[]; expected: string }[] = [
    { name: "cells are joined by commas and the row ends in CRLF", values: ["a", 1, "b"], expected: "a,1,b\r\n" },
    { name: "empty cells keep their commas", values: ["a", "", null, undefined], expected: "a,,,\r\n" },
    { name: "an empty row is just CRLF", values: [], expected: "\r\n" },
    { name: "quoted and neutralised cells sit beside plain ones", values: ["x,y", "=1", -3], expected: "\"x,y\",'=1,-3\r\n" },
  ];
  for (const tc of rowCases) {
    it(`encodes a row: ${tc.name}`, () => {
      assert.equal(csvRow(tc.values), tc.expected);
    });
  }

  it("writes a document whose every record, the last too, ends in CRLF", () => {
    const doc = csvDocument(["date", "amount"], [["2026-01-01", 5], ["2026-01-02", -5]]);
    assert.equal(doc, "date,amount\r\n2026-01-01,5\r\n2026-01-02,-5\r\n");
    assert.equal(doc.replaceAll("\r\n", "").includes("\n"), false);
  });

  it("writes only the header when there are no records", () => {
    assert.equal(csvDocument(["a", "b"], []), "a,b\r\n");
  });

  it("names the UTF-8 CSV content type", () => {
    assert.equal(csvContentType, "text/csv; charset=utf-8");
  });
});
