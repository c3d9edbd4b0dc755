/**
 * CustomerService handlers: what a job's units report while they run — the
 * live tail of a unit's log, and each unit's history of progress and metrics
 * (written by src/telemetry/recorder.ts, read by src/telemetry/reads.ts).
 * Another customer's job is not found, exactly like a job that does not exist.
 */
import type { MessageInitShape } from "@bufbuild/protobuf";
import { timestampFromDate, timestampFromMs } from "@bufbuild/protobuf/wkt";
import type { HandlerContext, ServiceImpl } from "@connectrpc/connect";
import { authorizeCall } from "../../auth/authorize.ts";
import type { AuthorizeDeps } from "../../auth/authorize.ts";
import type { CustomerService, LogLineSchema } from "../../gen/gpuagent/customer/v1/customer_pb.ts";
import { isUuid } from "../../platform/ids.ts";
import { findJob, findUnit, listUnitsOfJob } from "../../store/jobs.ts";
import type { UnitRow } from "../../store/jobs.ts";
import type { TailLine } from "../../telemetry/log-lines.ts";
import { readLogTail, readMetricHistories } from "../../telemetry/reads.ts";
import type { TelemetryRecorder } from "../../telemetry/recorder.ts";
import { ApiError, validationError } from "../../platform/errors.ts";

function lineMessage(l: TailLine): MessageInitShape<typeof LogLineSchema> {
  return { seq: BigInt(l.seq), at: timestampFromMs(l.atMs), stream: l.stream, text: l.text };
}

/** What the telemetry reads need (a subset of ControlPlaneDeps): the access check's and the recorder (for its tail bounds). */
export interface TelemetryHandlerDeps extends AuthorizeDeps {
  readonly telemetry: TelemetryRecorder;
}

/** The telemetry part of CustomerService. */
export function createTelemetryHandlers(deps: TelemetryHandlerDeps): Partial<ServiceImpl<typeof CustomerService>> {
  const { db } = deps;
  const caller = (ctx: HandlerContext) => authorizeCall(deps, ctx);

  /** The customer's job, or JOB_NOT_FOUND (malformed ids and other customers' jobs alike). */
  async function ownJob(customerId: string, id: string): Promise<string> {
    const jobId = isUuid(id) ? id.toLowerCase() : undefined;
    if (jobId === undefined || (await findJob(db, customerId, jobId)) === undefined) throw new ApiError("JOB_NOT_FOUND", `training job ${JSON.stringify(id)} not found`);
    return jobId;
  }

  /** A unit of that job, or RESOURCE_NOT_FOUND. */
  async function unitOfJob(jobId: string, id: string): Promise<UnitRow> {
    const unit = isUuid(id) ? await findUnit(db, id.toLowerCase()) : undefined;
    if (unit === undefined || unit.job_id !== jobId) throw new ApiError("RESOURCE_NOT_FOUND", `compute unit ${JSON.stringify(id)} not found in training job ${jobId}`);
    return unit;
  }

  return {
    async getComputeUnitLogs(req, ctx) {
      const principal = await caller(ctx);
      const jobId = await ownJob(principal.customerId, req.id);
      const unit = await unitOfJob(jobId, req.unitId);
      if (req.attempt < 0 || req.attempt > Math.max(1, unit.attempt)) {
        throw validationError(`attempt must be between 1 and ${Math.max(1, unit.attempt)} (0 or absent: the latest attempt that logged)`, { field: "attempt" });
      }
      if (req.after < 0n || req.after > BigInt(Number.MAX_SAFE_INTEGER)) throw validationError("after must be a line's seq (0 or more)", { field: "after" });
      const tail = await readLogTail(db, { id: unit.id, attempt: unit.attempt }, req.attempt, Number(req.after), {
        lines: deps.telemetry.options.tailLines,
        bytes: deps.telemetry.options.tailBytes,
      });
      return {
        unitId: unit.id,
        attempt: tail.attempt,
        unitStatus: unit.status,
        lines: tail.lines.map(lineMessage),
        nextAfter: BigInt(tail.nextAfter),
        droppedLines: BigInt(tail.droppedLines),
        trimmedLines: BigInt(tail.trimmedLines),
      };
    },

    async getTrainingJobMetrics(req, ctx) {
      const principal = await caller(ctx);
      const jobId = await ownJob(principal.customerId, req.id);
      const units = await listUnitsOfJob(db, jobId);
      const histories = await readMetricHistories(db, units);
      return {
        units: units.map((u, i) => {
          const h = histories[i];
          return {
            unitId: u.id,
            name: u.name,
            kind: u.kind,
            attempt: h?.attempt ?? 0,
            reports: BigInt(h?.reports ?? 0),
            points: (h?.points ?? []).map((p) => ({ at: timestampFromDate(p.at), progress: p.progress, metrics: p.metrics })),
          };
        }),
      };
    },
  };
}
