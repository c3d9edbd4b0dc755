/**
 * The DAG of a job's compute units, left to right by depth (a unit sits one
 * column right of its deepest dependency), each box showing name, kind,
 * state and progress in words as well as colour.
 */
import { useId } from "react";
import type { ComputeUnit } from "../api/types.ts";
import { formatPercent, humanize } from "../format.ts";

const boxW = 168;
const boxH = 68;
const colGap = 56;
const rowGap = 18;

/** Depth of each unit by name (0 for units without dependencies); cycles are cut. */
export function unitDepths(units: readonly ComputeUnit[]): Map<string, number> {
  const byName = new Map(units.map((u) => [u.name, u]));
  const depth = new Map<string, number>();
  const visiting = new Set<string>();
  const visit = (name: string): number => {
    const known = depth.get(name);
    if (known !== undefined) return known;
    if (visiting.has(name)) return 0;
    visiting.add(name);
    const unit = byName.get(name);
    const d = unit === undefined || unit.depends_on.length === 0 ? 0 : 1 + Math.max(...unit.depends_on.map((n) => (byName.has(n) ? visit(n) : -1)));
    visiting.delete(name);
    depth.set(name, d);
    return d;
  };
  for (const u of units) visit(u.name);
  return depth;
}

/** The graph as an SVG image (the units table beside it holds the same facts as text). */
export function DagView({ units }: { units: readonly ComputeUnit[] }) {
  const marker = `arrow-${useId().replace(/[^A-Za-z0-9_-]/g, "")}`;
  if (units.length === 0) return null;
  const depths = unitDepths(units);
  const columns: ComputeUnit[][] = [];
  for (const u of units) {
    const d = depths.get(u.name) ?? 0;
    (columns[d] ??= []).push(u);
  }
  const rows = Math.max(...columns.map((c) => c?.length ?? 0));
  const width = columns.length * boxW + (columns.length - 1) * colGap + 8;
  const height = rows * boxH + (rows - 1) * rowGap + 8;
  const pos = new Map<string, { x: number; y: number }>();
  columns.forEach((col, c) => {
    const offset = ((rows - col.length) * (boxH + rowGap)) / 2;
    col.forEach((u, r) => pos.set(u.name, { x: 4 + c * (boxW + colGap), y: 4 + offset + r * (boxH + rowGap) }));
  });
  const summary = units.map((u) => `${u.name} (${u.kind.toUpperCase()}, ${humanize(u.status)}${u.depends_on.length > 0 ? `, after ${u.depends_on.join(" and ")}` : ""})`).join("; ");
  return (
    <div className="dag-scroll">
      <svg className="dag" viewBox={`0 0 ${width} ${height}`} width={width} height={height} role="img" aria-label={`Compute unit graph: ${summary}`} data-testid="dag">
        <defs>
          <marker id={marker} viewBox="0 0 10 10" refX="10" refY="5" markerWidth="8" markerHeight="8" orient="auto-start-reverse">
            <path d="M 0 0 L 10 5 L 0 10 z" className="dag-arrow" />
          </marker>
        </defs>
        {units.flatMap((u) =>
          u.depends_on.map((dep) => {
            const from = pos.get(dep);
            const to = pos.get(u.name);
            if (from === undefined || to === undefined) return null;
            const x1 = from.x + boxW;
            const y1 = from.y + boxH / 2;
            const x2 = to.x;
            const y2 = to.y + boxH / 2;
            const mid = (x1 + x2) / 2;
            return <path key={`${dep}->${u.name}`} className="dag-edge" d={`M ${x1} ${y1} C ${mid} ${y1}, ${mid} ${y2}, ${x2} ${y2}`} markerEnd={`url(#${marker})`} />;
          }),
        )}
        {units.map((u) => {
          const p = pos.get(u.name)!;
          return (
            <g key={u.id} transform={`translate(${p.x} ${p.y})`} className={`dag-node unit-${u.status}`} data-unit={u.name} data-status={u.status}>
              <rect width={boxW} height={boxH} rx={8} />
              <text x={10} y={20} className="dag-name">
                {u.name}
              </text>
              <text x={10} y={38} className="dag-meta">
                {`${u.kind.toUpperCase()} · ${humanize(u.status)}`}
              </text>
              <rect x={10} y={48} width={boxW - 20} height={8} rx={4} className="dag-track" />
              <rect x={10} y={48} width={(boxW - 20) * Math.max(0, Math.min(1, u.status === "completed" ? 1 : u.progress))} height={8} rx={4} className="dag-fill" />
              <title>{`${u.name}: ${humanize(u.status)}, ${formatPercent(u.status === "completed" ? 1 : u.progress)}${u.attempt > 1 ? `, attempt ${u.attempt}` : ""}`}</title>
            </g>
          );
        })}
      </svg>
    </div>
  );
}
