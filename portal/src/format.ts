/** Formatting for people: sizes, dates, durations, numbers. */

const numberFormat = new Intl.NumberFormat("en");

/** 1234567 → "1,234,567"; accepts the API's int64 strings. */
export function formatNumber(value: number | string): string {
  const n = typeof value === "string" ? Number(value) : value;
  return Number.isFinite(n) ? numberFormat.format(n) : String(value);
}

/** Bytes in binary units: "1.5 MiB". */
export function formatBytes(value: number | string): string {
  let n = typeof value === "string" ? Number(value) : value;
  if (!Number.isFinite(n)) return String(value);
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) {
    n /= 1024;
    i++;
  }
  return `${i === 0 ? n : n.toFixed(n < 10 ? 1 : 0)} ${units[i]}`;
}

/** An RFC 3339 timestamp in the viewer's locale, "—" when unset. */
export function formatDate(value: string | undefined): string {
  if (value === undefined || value === "") return "—";
  const d = new Date(value);
  return Number.isNaN(d.getTime()) ? value : d.toLocaleString();
}

/** Seconds as "1 h 2 min", "3 min 4 s", "5 s". */
export function formatDuration(seconds: number | string): string {
  let s = Math.round(typeof seconds === "string" ? Number(seconds) : seconds);
  if (!Number.isFinite(s)) return String(seconds);
  const h = Math.floor(s / 3600);
  s -= h * 3600;
  const m = Math.floor(s / 60);
  s -= m * 60;
  if (h > 0) return `${h} h ${m} min`;
  if (m > 0) return `${m} min ${s} s`;
  return `${s} s`;
}

/** 0..1 as "42 %". */
export function formatPercent(fraction: number): string {
  return `${Math.round(Math.max(0, Math.min(1, fraction)) * 100)} %`;
}

/** A metric value with sensible precision. */
export function formatMetric(value: number): string {
  if (Number.isInteger(value)) return String(value);
  return Math.abs(value) >= 100 ? value.toFixed(1) : value.toPrecision(4);
}

/** Status words: "low_sensitive" → "low sensitive". */
export function humanize(value: string): string {
  return value.replaceAll("_", " ");
}
