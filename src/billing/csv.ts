/**
 * CSV encoding for customer downloads (usage export, credit statement).
 *
 * RFC 4180: records end in CRLF; a field holding `,`, `"`, CR or LF is wrapped
 * in double quotes and its inner quotes are doubled.
 *
 * Formula-injection safety: spreadsheets run a cell that starts with `=`, `+`,
 * `-` or `@` (and some also after a leading tab or CR) as a formula, and text
 * cells here include things customers typed (job names in ledger
 * descriptions). Such a text cell gets a leading `'`, which spreadsheets show
 * as text and do not evaluate. Only text is neutralised: numbers and bigints
 * are values this service computed, so a negative amount stays `-5` and still
 * sums as a number.
 */

/** A value a CSV cell can hold; null and undefined are empty cells. */
export type CsvValue = string | number | bigint | null | undefined;

/** First characters that make a spreadsheet evaluate a text cell. */
const formulaStarts = new Set(["=", "+", "-", "@", "\t", "\r"]);

/** Characters that force a field into quotes. */
const needsQuotes = /[",\r\n]/;

/** Encodes one cell: formula-neutralised when it is text, then quoted when it must be. */
export function csvCell(value: CsvValue): string {
  if (value === null || value === undefined) return "";
  if (typeof value === "number") {
    // NaN and Infinity are not numbers a spreadsheet reads; they would be a bug upstream, so show nothing rather than a lie.
    return Number.isFinite(value) ? String(value) : "";
  }
  if (typeof value === "bigint") return value.toString();
  const text = formulaStarts.has(value.charAt(0)) ? `'${value}` : value;
  return needsQuotes.test(text) ? `"${text.replaceAll('"', '""')}"` : text;
}

/** Encodes one record, CRLF included. */
export function csvRow(values: readonly CsvValue[]): string {
  return values.map(csvCell).join(",") + "\r\n";
}

/** Encodes a header and its records into one document (every record, the last too, ends in CRLF). */
export function csvDocument(header: readonly string[], rows: Iterable<readonly CsvValue[]>): string {
  let out = csvRow(header);
  for (const row of rows) out += csvRow(row);
  return out;
}

/** The content type of the documents above. */
export const csvContentType = "text/csv; charset=utf-8";
