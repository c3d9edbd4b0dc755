/**
 * CustomerService handlers: what a job's units report while they run — the
 * live tail of a unit's log, and each unit's history of progress and metrics
 * (written by src/telemetry/recorder.ts, read with the tenancy checks by
 * src/telemetry/job-telemetry.ts).
 */
import type { MessageInitShape } from "@bufbuild/protobuf";
import { timestampFromDate, timestampFromMs } from "@bufbuild/protobuf/wkt";
import type { HandlerContext, ServiceImpl } from "@connectrpc/connect";
import { authorizeCall } from "../../auth/authorize.ts";
import type { AuthorizeDeps } from "../../auth/authorize.ts";
import type { CustomerService, LogLineSchema } from "../../gen/gpuagent/customer/v1/customer_pb.ts";
import { jobMetricHistories, unitLogTail } from "../../telemetry/job-telemetry.ts";
import type { TailLine } from "../../telemetry/log-lines.ts";
import type { TelemetryRecorder } from "../../telemetry/recorder.ts";

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
  const tailBounds = () => ({ lines: deps.telemetry.options.tailLines, bytes: deps.telemetry.options.tailBytes });

  return {
    async getComputeUnitLogs(req, ctx) {
      const principal = await caller(ctx);
      const { unit, tail } = await unitLogTail(db, tailBounds(), principal.customerId, req.id, req.unitId, { attempt: req.attempt, after: req.after });
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
      const units = await jobMetricHistories(db, principal.customerId, req.id);
      return {
        units: units.map(({ unit: u, history: h }) => ({
          unitId: u.id,
          name: u.name,
          kind: u.kind,
          attempt: h?.attempt ?? 0,
          reports: BigInt(h?.reports ?? 0),
          points: (h?.points ?? []).map((p) => ({ at: timestampFromDate(p.at), progress: p.progress, metrics: p.metrics })),
        })),
      };
    },
  };
}
