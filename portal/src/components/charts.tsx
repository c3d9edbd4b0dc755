/**
 * Plain SVG charts (no chart library: small bundle, nothing inline that the
 * CSP would have to allow). Each chart is an image with a summary label and
 * carries its numbers in a table for screen readers and for copying.
 */
import type { RefObject } from "react";
import { useEffect, useRef, useState } from "react";
import { formatMetric, formatNumber } from "../format.ts";

/** The element's width in CSS pixels, followed as it resizes (charts draw at their real size, text stays legible). */
function useWidth(ref: RefObject<HTMLElement | null>, fallback: number): number {
  const [width, setWidth] = useState(fallback);
  useEffect(() => {
    const el = ref.current;
    if (el === null) return;
    const measure = () => setWidth(Math.max(240, Math.round(el.clientWidth)));
    measure();
    const observer = new ResizeObserver(measure);
    observer.observe(el);
    return () => observer.disconnect();
  }, [ref]);
  return width;
}

/** Short axis numbers: 0.5, 0.25, 1,200. */
function axisNumber(value: number): string {
  if (Math.abs(value) >= 1) return formatNumber(Math.round(value * 100) / 100);
  return String(Number(value.toPrecision(2)));
}

/** One bar per label. */
export function BarChart({ title, data, unit, testId }: { title: string; data: ReadonlyArray<{ label: string; value: number }>; unit: string; testId?: string }) {
  const box = useRef<HTMLDivElement>(null);
  const width = useWidth(box, 560);
  const height = 200;
  const pad = { left: 56, right: 8, top: 12, bottom: 28 };
  const max = Math.max(1, ...data.map((d) => d.value));
  const niceMax = niceCeil(max);
  const plotW = width - pad.left - pad.right;
  const plotH = height - pad.top - pad.bottom;
  const step = data.length === 0 ? plotW : plotW / data.length;
  const barW = Math.max(1, step * 0.7);
  const total = data.reduce((s, d) => s + d.value, 0);
  const labelEvery = Math.max(1, Math.ceil(data.length / Math.max(2, Math.floor(plotW / 56))));
  return (
    <figure className="chart" data-testid={testId}>
      <figcaption>{title}</figcaption>
      <div ref={box}>
        <svg viewBox={`0 0 ${width} ${height}`} width={width} height={height} role="img" aria-label={`${title}: ${formatNumber(total)} ${unit} over ${data.length} days, at most ${formatNumber(max)} a day`}>
          <YGrid left={pad.left} right={width - pad.right} top={pad.top} height={plotH} min={0} max={niceMax} />
          {data.map((d, i) => {
            const h = (d.value / niceMax) * plotH;
            const x = pad.left + i * step + (step - barW) / 2;
            return (
              <g key={d.label}>
                <rect x={x} y={pad.top + plotH - h} width={barW} height={Math.max(0, h)} className="bar">
                  <title>{`${d.label}: ${formatNumber(d.value)} ${unit}`}</title>
                </rect>
                {i % labelEvery === 0 ? (
                  <text x={x + barW / 2} y={height - 8} textAnchor="middle" className="axis">
                    {d.label.slice(5)}
                  </text>
                ) : null}
              </g>
            );
          })}
        </svg>
      </div>
      <details>
        <summary>{title} as a table</summary>
        <table>
          <thead>
            <tr>
              <th scope="col">Day (UTC)</th>
              <th scope="col">{unit}</th>
            </tr>
          </thead>
          <tbody>
            {data.map((d) => (
              <tr key={d.label}>
                <td>{d.label}</td>
                <td className="num">{formatNumber(d.value)}</td>
              </tr>
            ))}
          </tbody>
        </table>
      </details>
    </figure>
  );
}

/** A line through (x, y) points, e.g. loss by epoch. */
export function LineChart({ title, xLabel, yLabel, points, testId }: { title: string; xLabel: string; yLabel: string; points: ReadonlyArray<{ x: number; y: number }>; testId?: string }) {
  const box = useRef<HTMLDivElement>(null);
  const width = useWidth(box, 640);
  const height = 220;
  const pad = { left: 56, right: 12, top: 12, bottom: 36 };
  const plotW = width - pad.left - pad.right;
  const plotH = height - pad.top - pad.bottom;
  const xs = points.map((p) => p.x);
  const ys = points.map((p) => p.y);
  const xMin = Math.min(...xs);
  const xMax = Math.max(...xs, xMin + 1);
  const yMin = Math.min(0, ...ys);
  const yMax = niceCeil(Math.max(...ys, 1e-9));
  const sx = (x: number) => pad.left + ((x - xMin) / Math.max(1e-9, xMax - xMin)) * plotW;
  const sy = (y: number) => pad.top + plotH - ((y - yMin) / Math.max(1e-9, yMax - yMin)) * plotH;
  const last = points.at(-1);
  return (
    <figure className="chart" data-testid={testId} data-points={points.length}>
      <figcaption>{title}</figcaption>
      <div ref={box}>
        <svg
          viewBox={`0 0 ${width} ${height}`}
          width={width}
          height={height}
          role="img"
          aria-label={last === undefined ? `${title}: no points yet` : `${title}: ${points.length} points, latest ${yLabel} ${formatMetric(last.y)} at ${xLabel} ${formatMetric(last.x)}`}
        >
          <YGrid left={pad.left} right={width - pad.right} top={pad.top} height={plotH} min={yMin} max={yMax} />
          <text x={pad.left + plotW / 2} y={height - 6} textAnchor="middle" className="axis">
            {xLabel}
          </text>
          {points.length === 0 ? null : (
            <>
              <text x={sx(xMin)} y={pad.top + plotH + 16} textAnchor="start" className="axis">
                {axisNumber(xMin)}
              </text>
              <text x={sx(xMax)} y={pad.top + plotH + 16} textAnchor="end" className="axis">
                {axisNumber(xMax)}
              </text>
            </>
          )}
          {points.length > 1 ? <polyline className="line" points={points.map((p) => `${sx(p.x)},${sy(p.y)}`).join(" ")} /> : null}
          {points.map((p) => (
            <circle key={p.x} cx={sx(p.x)} cy={sy(p.y)} r={3} className="dot">
              <title>{`${xLabel} ${formatMetric(p.x)}: ${yLabel} ${formatMetric(p.y)}`}</title>
            </circle>
          ))}
        </svg>
      </div>
    </figure>
  );
}

/** Three horizontal grid lines (min, middle, max) with their values at the left. */
function YGrid({ left, right, top, height, min, max }: { left: number; right: number; top: number; height: number; min: number; max: number }) {
  return (
    <>
      {[0, 0.5, 1].map((f) => {
        const y = top + height * (1 - f);
        return (
          <g key={f}>
            <line x1={left} x2={right} y1={y} y2={y} className="grid" />
            <text x={left - 6} y={y + 4} textAnchor="end" className="axis">
              {axisNumber(min + (max - min) * f)}
            </text>
          </g>
        );
      })}
    </>
  );
}

/** The smallest 1/2/5×10^n at or above `value`. */
function niceCeil(value: number): number {
  if (value <= 0) return 1;
  const exp = 10 ** Math.floor(Math.log10(value));
  for (const m of [1, 2, 5, 10]) if (m * exp >= value) return m * exp;
  return 10 * exp;
}
