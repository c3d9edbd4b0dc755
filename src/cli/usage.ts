/**
 * `gpuctl usage …`: credits and compute used, in total and per day.
 */
import { GetDailyUsageResponseSchema, GetUsageSummaryResponseSchema } from "../gen/gpuagent/customer/v1/customer_pb.ts";
import type { CliContext, JsonOption } from "./context.ts";
import { printFields, printMessage, printTable } from "./output.ts";

/** Balance, totals and job counts. */
export async function usageSummary(opts: JsonOption, ctx: CliContext): Promise<number> {
  const s = await ctx.customer().usage.summary();
  if (opts.json) {
    printMessage(ctx.io, GetUsageSummaryResponseSchema, s);
    return 0;
  }
  printFields(ctx.io, [
    ["credits_balance", s.creditsBalance],
    ["credits_debited_total", s.creditsDebitedTotal],
    ["credits_granted_total", s.creditsGrantedTotal],
    ["compute_units_completed", s.computeUnitsCompleted],
    ["gpu_seconds", s.gpuSeconds],
    ["cpu_seconds", s.cpuSeconds],
    ["jobs_total", s.jobsTotal],
    ["jobs_active", s.jobsActive],
  ]);
  return 0;
}

/** Options of `usage daily`. */
export interface UsageDailyOptions extends JsonOption {
  /** How many days back (server default 30, at most 90). */
  days?: number | undefined;
}

/** One row per day (UTC). */
export async function usageDaily(opts: UsageDailyOptions, ctx: CliContext): Promise<number> {
  const res = await ctx.customer().usage.daily(opts.days === undefined ? {} : { days: opts.days });
  if (opts.json) {
    printMessage(ctx.io, GetDailyUsageResponseSchema, res);
    return 0;
  }
  printTable(
    ctx.io,
    ["date", "units", "gpu_seconds", "cpu_seconds", "credits"],
    res.data.map((d) => [d.date, String(d.computeUnitsCompleted), String(d.gpuSeconds), String(d.cpuSeconds), String(d.creditsDebited)]),
    "no usage",
  );
  return 0;
}
