/**
 * The one bag of dependencies the control plane's parts receive (built only in
 * cmd/ and in test setups), so the database, clock, blob store and logger are
 * always injected.
 */
import type { Logger } from "pino";
import type { ApiKeyCache } from "./auth/authenticate.ts";
import type { JobEventFeed } from "./jobs/job-event-feed.ts";
import type { JobViewCache } from "./jobs/job-view-cache.ts";
import type { TokenBucketLimiter } from "./limits/token-bucket.ts";
import type { Clock } from "./platform/clock.ts";
import type { SchedulerConfig } from "./platform/config.ts";
import type { BlobStore } from "./blobs/blob-store.ts";
import type { UrlSigner } from "./blobs/signed-url.ts";
import type { Database } from "./store/database.ts";
import type { TelemetryRecorder } from "./telemetry/recorder.ts";

/** Shared dependencies of the control plane. */
export interface ControlPlaneDeps {
  readonly config: SchedulerConfig;
  readonly db: Database;
  readonly blobs: BlobStore;
  readonly signer: UrlSigner;
  readonly clock: Clock;
  readonly logger: Logger;
  /** Recently verified API keys (see ApiKeyCache). */
  readonly apiKeyCache: ApiKeyCache;
  /** Recently read job views (see src/jobs/job-view-cache.ts), forgotten when their jobs change. */
  readonly jobViews: JobViewCache;
  /**
   * The general per-caller request limit of this replica (src/limits/README.md), applied by
   * `authorizeCall`. Build it with `createRequestLimiter(clock, { requestsPerMinute })`.
   */
  readonly requestLimiter: TokenBucketLimiter;
  /** Asks the leader's placement loop to run soon (units became ready, a node connected). */
  readonly wakePlacer: () => void;
  /** Buffers the log lines and progress reports of this replica's agent streams (src/telemetry/recorder.ts). */
  readonly telemetry: TelemetryRecorder;
  /** This replica's watches of job events (WatchTrainingJob; src/jobs/job-event-feed.ts). */
  readonly jobEvents: JobEventFeed;
}
