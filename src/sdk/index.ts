/**
 * The GPU-Agent TypeScript SDK: `createGpuAgentClient` (src/sdk/client.ts), the operator client
 * `createGpuAgentAdminClient` (src/sdk/admin.ts), their typed errors (src/sdk/errors.ts), paging
 * helpers, webhook signature verification, and the generated message types callers see in their
 * answers. See src/sdk/README.md.
 */
import { systemClock } from "../platform/clock.ts";
import {
  defaultToleranceSeconds,
  signatureHeaderName,
  verifyWebhookSignature as verifyAt,
} from "../webhooks/signature.ts";

export * from "./admin.ts";
export * from "./client.ts";
export * from "./errors.ts";
export * from "./pagination.ts";
export type { ErrorCode } from "../platform/errors.ts";
export type {
  ApiKey,
  Artifact,
  ComputeUnit,
  ComputeUnitChange,
  ComputeUnitLogLines,
  Dataset,
  ComputeUnitMetrics,
  DailyUsage,
  GetComputeUnitLogsResponse,
  GetTrainingJobMetricsResponse,
  GetUsageSummaryResponse,
  LedgerEntry,
  LogLine,
  MetricPoint,
  TrainingJob,
  TrainingJobChange,
  TrainingJobSnapshot,
  TrainingPackage,
  UnitAttempt,
  UnitCheckpoint,
  WatchTrainingJobResponse,
  Webhook,
  WebhookDelivery,
  WorkloadRate,
} from "../gen/gpuagent/customer/v1/customer_pb.ts";
export type {
  CreateCustomerResponse,
  CreateEnrollmentTokenResponse,
  Customer as AdminCustomer,
  GetSchedulerStatusResponse,
  GrantCreditsResponse,
  Node,
  NodeGpu,
  QueueDepth,
} from "../gen/gpuagent/admin/v1/admin_pb.ts";

/** The header carrying a delivery's signature (`GPU-Agent-Signature`). */
export const webhookSignatureHeader = signatureHeaderName;

/** The default tolerance between the signed timestamp and now, in seconds (300). */
export const defaultWebhookToleranceSeconds = defaultToleranceSeconds;

/**
 * True when `header` (the `GPU-Agent-Signature` value) signs `rawBody` — the bytes exactly as
 * received, before JSON parsing — with any of `secrets` (pass both during a rotation), and its
 * timestamp is within `toleranceS` seconds of `nowS` (default: now). The same check the server's
 * own tests use (src/webhooks/signature.ts), so the two cannot drift.
 */
export function verifyWebhookSignature(
  rawBody: string | Uint8Array,
  header: string | null | undefined,
  secrets: readonly string[],
  toleranceS: number = defaultToleranceSeconds,
  nowS: number = systemClock.now() / 1000,
): boolean {
  return verifyAt(rawBody, header, secrets, toleranceS, nowS);
}
