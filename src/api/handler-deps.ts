/**
 * What the CustomerService needs of the composition's dependencies: its own fields and those of the
 * parts it delegates to (the access check, the telemetry reads, the job watches, the blob cleanup). The composition's
 * `ControlPlaneDeps` satisfies it as it is; the edge never names the composition (issue 13).
 */
import type { Logger } from "pino";
import type { JobViewCache } from "../jobs/job-view-cache.ts";
import type { BlobStore } from "../blobs/blob-store.ts";
import type { UrlSigner } from "../blobs/signed-url.ts";
import type { JobEventHandlerDeps } from "./customer/job-events.ts";
import type { TelemetryHandlerDeps } from "./customer/telemetry.ts";

/** What the CustomerService needs (a subset of ControlPlaneDeps). */
export interface CustomerServiceDeps extends TelemetryHandlerDeps, JobEventHandlerDeps {
  readonly blobs: BlobStore;
  readonly signer: UrlSigner;
  readonly logger: Logger;
  /** Recently read job views (see src/jobs/job-view-cache.ts), forgotten when their jobs change. */
  readonly jobViews: JobViewCache;
  /** Asks the leader's placement loop to run soon (a job's units became ready). */
  readonly wakePlacer: () => void;
}
