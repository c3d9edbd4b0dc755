/**
 * A small in-memory part of CustomerService for transport tests. It exercises
 * what the transcoder must carry: request headers in, response headers out,
 * ApiErrors with headers and details, HttpBody answers, an unexpected crash,
 * and rpcs left unimplemented (Login, GetDataset, ...).
 */
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import type { ServiceImpl } from "@connectrpc/connect";
import { ApiError } from "../../../src/platform/errors.ts";
import { CustomerService } from "../../../src/gen/gpuagent/customer/v1/customer_pb.ts";

/** The API key the fake accepts on CreateTrainingJob. */
export const fakeApiKey = "key-1";

const jobs = [
  { id: "job-1", name: "first", status: "running", progress: 0.5, createdAt: timestampFromMs(Date.UTC(2024, 0, 1)) },
  { id: "job-2", name: "second", status: "completed", progress: 1, createdAt: timestampFromMs(Date.UTC(2024, 0, 2)) },
  { id: "job-3", name: "third", status: "running", progress: 0, createdAt: timestampFromMs(Date.UTC(2024, 0, 3)) },
];

/** The fake implementation; the same object is served over Connect and REST. */
export const fakeCustomerService: Partial<ServiceImpl<typeof CustomerService>> = {
  getMeta(_req, ctx) {
    ctx.responseHeader.set("x-ratelimit-remaining", "59");
    // build echoes the request id the handler saw, to prove it crossed the transport.
    return { service: "gpu-agent", apiVersion: "v1", build: ctx.requestHeader.get("x-request-id") ?? "" };
  },
  getConfig() {
    throw new Error("database password is hunter2");
  },
  getTrainingJob(req) {
    const job = jobs.find((j) => j.id === req.id);
    if (job === undefined) throw new ApiError("JOB_NOT_FOUND", `training job ${req.id} not found`);
    return { trainingJob: job };
  },
  listTrainingJobs(req) {
    const matching = jobs.filter((j) => req.status === "" || j.status === req.status);
    const limit = req.limit === 0 ? 50 : req.limit;
    return { data: matching.slice(0, limit), page: { limit, hasMore: matching.length > limit, nextCursor: "" } };
  },
  createTrainingJob(req, ctx) {
    if (ctx.requestHeader.get("x-api-key") !== fakeApiKey) throw new ApiError("API_KEY_INVALID", "unknown API key");
    const key = ctx.requestHeader.get("idempotency-key") ?? "none";
    return {
      trainingJob: {
        id: `job-${key}`,
        name: req.name,
        datasetId: req.datasetId,
        trainingPackageId: req.trainingPackageId,
        requiredVramMb: req.requiredVramMb,
        status: "queued",
        sensitivity: req.sensitivity === "" ? "public" : req.sensitivity,
      },
    };
  },
  cancelTrainingJob(req, ctx) {
    if (req.id === "job-limited") {
      ctx.responseHeader.set("x-ratelimit-remaining", "0");
      throw new ApiError("RATE_LIMITED", "too many cancellations", { headers: { "retry-after": "30" }, details: { limit: 5 } });
    }
    return { trainingJob: { id: req.id, status: "cancelled" } };
  },
  async *exportUsageCsv(req, ctx) {
    ctx.responseHeader.set("content-disposition", 'attachment; filename="usage.csv"');
    if (req.dateFrom === "1999-01-01") throw new ApiError("EXPORT_RANGE_TOO_LARGE", "range over 90 days");
    // Two chunks: only the first names the content type, as the real handler streams.
    yield { body: { contentType: "text/csv; charset=utf-8", data: new TextEncoder().encode("day,credits\n") } };
    if (req.dateFrom === "2000-01-01") throw new Error("the database went away mid-export");
    yield { body: { data: new TextEncoder().encode("2024-01-01,5\n") } };
  },
  createLegacyImageJob(req) {
    throw new ApiError("LEGACY_DEPRECATED", `the image API (/jobs/${req.legacyPath}) is retired; use training jobs`);
  },
};
