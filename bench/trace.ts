// npm run bench:trace — the openb production trace (../shared/traces/openb,
// the FGD paper's, Weng et al., ATC '23) replayed through the project's placer
// beside first-fit and best-fit, in one run on the same arrivals (see
// src/placer/README.md, "Trace replay", and bench/trace/replay.ts).
//
//   BENCH_SEEDS=10              seeds per workload (the paper's 10)
//   BENCH_WORKLOADS=default,…   which of default, gpushare100, gpuspec33, multigpu50
//   BENCH_TRACE_DIR=…           where the CSVs are (default ../shared/traces/openb)
//   BENCH_MAX_SCORED=32         the placer's cap on scored nodes per unit (default: the placer's)
//   BENCH_WEIGHTS=0.7,0.2,0.1,0.3,0.2  binPack,reliability,dataLocality,gpuFragmentation,gpuScarcity
//                               (default: the placer's; the last two left out: 0)
//
// Prints one JSON line: per workload the GPU allocation % at 100% arrival,
// mean over the seeds, of the project's placer, first-fit and best-fit, and
// beside it the paper's FGD and BestFit, the standard deviations, the curve
// at 80–130% and the time taken.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import type { ScoreWeights } from "../src/platform/config.ts";
import { defaultWeights } from "../src/placer/index.ts";
import { createBestFit, createFirstFit } from "./trace/baselines.ts";
import { milliPerGpu, parseNodes, parseTasks, type TraceNode, type TraceTask } from "./trace/openb.ts";
import { createProjectScheduler } from "./trace/project.ts";
import { allocationByLevel, arrivalOrder, replay, type TraceScheduler } from "./trace/replay.ts";

const dir = process.env["BENCH_TRACE_DIR"] ?? join(import.meta.dirname, "..", "..", "shared", "traces", "openb");
const seeds = Number(process.env["BENCH_SEEDS"] ?? 10);
const workloads = (process.env["BENCH_WORKLOADS"] ?? "default,gpushare100,gpuspec33,multigpu50").split(",");
const levels = [80, 90, 100, 110, 120, 130];
const policies = ["project", "first_fit", "best_fit"] as const;
type Policy = (typeof policies)[number];

interface PaperRow {
  mean: Record<string, number>;
  stdev?: Record<string, number>;
}
const paper = JSON.parse(readFileSync(join(dir, "paper_alloc.json"), "utf8")) as { workloads: Record<string, Record<string, PaperRow>> };

const round = (x: number, digits = 2) => Math.round(x * 10 ** digits) / 10 ** digits;
const mean = (xs: readonly number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
const stdev = (xs: readonly number[]) => {
  const m = mean(xs);
  return Math.sqrt(xs.reduce((a, b) => a + (b - m) ** 2, 0) / Math.max(1, xs.length - 1));
};

/** The placer's default weights unless BENCH_WEIGHTS says otherwise (binPack,reliability,dataLocality[,gpuFragmentation[,gpuScarcity]]). */
const weights: ScoreWeights | undefined = (() => {
  const raw = process.env["BENCH_WEIGHTS"];
  if (raw === undefined || raw === "") return undefined;
  const [binPack = NaN, reliability = NaN, dataLocality = NaN, gpuFragmentation = 0, gpuScarcity = 0] = raw.split(",").map(Number);
  return { binPack, reliability, dataLocality, gpuFragmentation, gpuScarcity };
})();

const maxScored = process.env["BENCH_MAX_SCORED"] === undefined ? undefined : Number(process.env["BENCH_MAX_SCORED"]);

function schedulerFor(policy: Policy, nodes: readonly TraceNode[], seed: string): TraceScheduler {
  if (policy === "first_fit") return createFirstFit(nodes);
  if (policy === "best_fit") return createBestFit(nodes, seed);
  return createProjectScheduler(nodes, seed, weights, maxScored);
}

const started = process.hrtime.bigint();
const nodes = parseNodes(readFileSync(join(dir, "openb_node_list_gpu_node.csv"), "utf8"));
const capacityMilli = nodes.reduce((a, n) => a + n.gpus, 0) * milliPerGpu;
const out: Record<string, Record<string, number>> = {};
const detail: Record<string, unknown> = {};
for (const workload of workloads) {
  const tasks: TraceTask[] = parseTasks(readFileSync(join(dir, `openb_pod_list_${workload}.csv`), "utf8"));
  const curves: Record<Policy, Map<number, number>[]> = { project: [], first_fit: [], best_fit: [] };
  const seconds: Record<Policy, number> = { project: 0, first_fit: 0, best_fit: 0 };
  let arrivals = 0;
  for (let s = 0; s < seeds; s++) {
    const seed = String(42 + s);
    const order = arrivalOrder(tasks, seed, capacityMilli);
    arrivals += order.length;
    for (const policy of policies) {
      const t0 = process.hrtime.bigint();
      const log = replay(order, schedulerFor(policy, nodes, seed));
      seconds[policy] += Number(process.hrtime.bigint() - t0) / 1e9;
      curves[policy].push(allocationByLevel(log, capacityMilli));
    }
  }
  const at = (policy: Policy, level: number) => curves[policy].map((c) => c.get(level) ?? NaN);
  out[workload] = Object.fromEntries(policies.map((p) => [p, round(mean(at(p, 100)))]));
  const paperRows = paper.workloads[`openb_pod_list_${workload}`] ?? {};
  detail[workload] = {
    paper_fgd: paperRows["06-FGD"]?.mean["100"],
    paper_best_fit: paperRows["05-BestFit"]?.mean["100"],
    stdev: Object.fromEntries(policies.map((p) => [p, round(stdev(at(p, 100)), 3)])),
    curve: Object.fromEntries(policies.map((p) => [p, Object.fromEntries(levels.map((l) => [l, round(mean(at(p, l)))]))])),
    paper_curve_fgd: Object.fromEntries(levels.map((l) => [l, paperRows["06-FGD"]?.mean[String(l)]])),
    paper_curve_best_fit: Object.fromEntries(levels.map((l) => [l, paperRows["05-BestFit"]?.mean[String(l)]])),
    mean_arrivals: Math.round(arrivals / seeds),
    seconds: Object.fromEntries(policies.map((p) => [p, round(seconds[p], 1)])),
  };
}
const totalSeconds = round(Number(process.hrtime.bigint() - started) / 1e9, 1);
console.log(JSON.stringify({ workloads: out, seeds, weights: weights ?? defaultWeights, nodes: nodes.length, gpus: capacityMilli / milliPerGpu, seconds: totalSeconds, detail }));
