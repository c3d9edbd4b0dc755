/**
 * CustomerService.WatchTrainingJob: a training job's live events (src/jobs/job-event-feed.ts), as
 * protos. Served as a Connect or gRPC server stream, and over REST as Server-Sent Events by the
 * generic transcoder (src/api/rest/transcoder.ts): each message's `id` becomes the SSE `id:`, its
 * `type` the `event:`, a heartbeat an SSE comment line, and the `Last-Event-ID` header fills
 * `after_event_id`.
 */
import type { MessageInitShape } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import type { HandlerContext, ServiceImpl } from "@connectrpc/connect";
import { authorizeCall } from "../../auth/authorize.ts";
import type { AuthorizeDeps } from "../../auth/authorize.ts";
import type {
  ComputeUnitSchema,
  CustomerService,
  TrainingJobSchema,
  WatchTrainingJobResponseSchema,
} from "../../gen/gpuagent/customer/v1/customer_pb.ts";
import type { JobEventFeed, WatchItem } from "../../jobs/job-event-feed.ts";
import type { UnitView } from "../../jobs/job-reads.ts";
import { validationError } from "../../platform/errors.ts";
import type { JobEventRow } from "../../store/job-events.ts";
import type { JobViewRow } from "../../store/jobs.ts";

/** What the watch handler needs (a subset of ControlPlaneDeps): the access check's and this replica's feed. */
export interface JobEventHandlerDeps extends AuthorizeDeps {
  readonly jobEvents: JobEventFeed;
}

/** How the rest of CustomerService shows jobs and units, so a snapshot shows them the same way. */
export interface JobMessages {
  job(row: JobViewRow): MessageInitShape<typeof TrainingJobSchema>;
  unit(view: UnitView): MessageInitShape<typeof ComputeUnitSchema>;
}

type EventMessage = MessageInitShape<typeof WatchTrainingJobResponseSchema>;

const optionalMs = (ms: number | null) => (ms === null ? undefined : timestampFromMs(ms));

/** One stored event as its message. */
function eventMessage(e: JobEventRow): EventMessage {
  const id = BigInt(e.id);
  switch (e.type) {
    case "job": {
      const b = e.body;
      return {
        id,
        type: "job",
        payload: {
          case: "job",
          value: {
            status: b.status,
            progress: b.progress,
            error: b.error,
            metrics: b.metrics,
            startedAt: optionalMs(b.started_at_ms),
            finishedAt: optionalMs(b.finished_at_ms),
            computeUnitsCompleted: b.compute_units_completed,
            creditsDebited: BigInt(b.credits_debited),
            pendingReason: b.pending_reason ?? "",
          },
        },
      };
    }
    case "unit": {
      const b = e.body;
      return {
        id,
        type: "unit",
        payload: {
          case: "unit",
          value: {
            id: b.id,
            name: b.name,
            status: b.status,
            attempt: b.attempt,
            progress: b.progress,
            metrics: b.metrics,
            nodeId: b.node_id ?? "",
            startedAt: optionalMs(b.started_at_ms),
            finishedAt: optionalMs(b.finished_at_ms),
            exitCode: b.exit_code ?? 0,
            error: b.error,
          },
        },
      };
    }
    case "log": {
      const lines = e.lines ?? [];
      return {
        id,
        type: "log",
        payload: {
          case: "log",
          value: {
            computeUnitId: e.unit_id,
            attempt: e.attempt,
            lines: lines.map(([atMs, stream, text], i) => ({ seq: BigInt(e.first_seq + i), at: timestampFromMs(atMs), stream: stream === "o" ? "stdout" : "stderr", text })),
            missingLines: BigInt(e.body.line_count - lines.length),
          },
        },
      };
    }
  }
}

/** The WatchTrainingJob part of CustomerService. */
export function createJobEventHandlers(deps: JobEventHandlerDeps, show: JobMessages): Partial<ServiceImpl<typeof CustomerService>> {
  const caller = (ctx: HandlerContext) => authorizeCall(deps, ctx);

  const message = (item: WatchItem): EventMessage => {
    switch (item.kind) {
      case "heartbeat":
        return { id: 0n, type: "heartbeat" };
      case "snapshot":
        return {
          id: BigInt(item.lastId),
          type: "snapshot",
          payload: { case: "snapshot", value: { trainingJob: show.job(item.job), computeUnits: item.units.map(show.unit), gap: item.gap } },
        };
      case "event":
        return eventMessage(item.event);
    }
  };

  return {
    async *watchTrainingJob(req, ctx) {
      const principal = await caller(ctx);
      if (req.afterEventId < 0n || req.afterEventId > BigInt(Number.MAX_SAFE_INTEGER)) {
        throw validationError("after_event_id must be an event id this job's stream sent (0 or more)", { field: "after_event_id" });
      }
      for await (const item of deps.jobEvents.watch(principal.customerId, req.id, Number(req.afterEventId), ctx.signal)) yield message(item);
    },
  };
}
