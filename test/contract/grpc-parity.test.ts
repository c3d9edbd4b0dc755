/**
 * REST ⇔ gRPC parity of the whole customer API, against one real control plane
 * with one real agent (so a completed job, compute units and artifacts exist).
 *
 * The method list is the CustomerService descriptor itself: a new rpc without a
 * case here fails the suite. Each method is called over REST (fetch, the path
 * derived from its google.api.http rule) and over gRPC with grpc-js and a
 * dynamic @grpc/proto-loader stub — an independent client, not our own Connect
 * code — and the answers must agree:
 *  - read-only methods: both succeed and the REST JSON equals the gRPC answer
 *    converted to proto JSON, field by field, volatile fields aside;
 *  - mutating methods: each protocol works on its own fresh resource, and the
 *    two answers have the same shape (ids, times, URLs and secrets masked);
 *  - failures: the same seed code (REST `error.code`, gRPC metadata
 *    `x-gpu-agent-error-code`), the HTTP status and the gRPC status both the
 *    ones docs/errors.md maps that code to.
 *
 * Reads run on a customer nothing else touches once set up ("reader"), writes
 * on another ("writer"), so the two protocols read the same state.
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { DescMethod, JsonValue } from "@bufbuild/protobuf";
import { getOption, hasOption } from "@bufbuild/protobuf";
import { connectCodeOf, httpStatusOf } from "../../src/api/errors.ts";
import type { ErrorCode } from "../../src/platform/errors.ts";
import { zipDirectory } from "../../src/cli/files.ts";
import { access } from "../../src/gen/gpuagent/customer/v1/access_pb.ts";
import { CustomerService } from "../../src/gen/gpuagent/customer/v1/customer_pb.ts";
import type { TestAgent, TestControlPlane } from "../support/control-plane.ts";
import { adminRequest, request, startTestAgent, startTestControlPlane, uploadResource, waitFor } from "../support/control-plane.ts";
import type { DynamicGrpcClient, Headers, Outcome } from "./helpers.ts";
import { createDynamicGrpcClient, ensureBufDeps, restCall, restViewOfGrpc, shapeOf, withoutKeys } from "./helpers.ts";

const example = join(import.meta.dirname, "..", "..", "examples", "tiny-mlp");
const missingId = "00000000-0000-4000-8000-000000000000";
const password = "correct horse battery";

/** A customer of the suite: API key, portal session, e-mail. */
interface Who {
  customerId: string;
  email: string;
  apiKey: string;
  session: string;
}

type Auth = "key" | "session" | "none" | "limited" | "invalid" | "revoked";
type Side = "rest" | "grpc";
type Req = Record<string, unknown>;

/** One error both protocols must answer with `code`. */
interface ErrorCase {
  name: string;
  req: () => Req;
  auth?: Auth;
  headers?: Headers;
  code: ErrorCode;
}

/** How one rpc is exercised. */
type MethodCase =
  | {
      kind: "read";
      auth: Auth;
      req: () => Req;
      /** Keys dropped at any depth before comparing (server_time, signed URLs, …). */
      volatile?: readonly string[];
      /** Extra checks on the (equal) REST body. */
      check?: (rest: JsonValue, grpc: JsonValue) => Promise<void> | void;
      errors?: readonly ErrorCase[];
    }
  | {
      kind: "mutate";
      auth: Auth;
      /** Makes the side's own fresh resource and returns the request. */
      prepare: (side: Side) => Promise<Req>;
      headers?: (side: Side) => Headers;
      /** Keys dropped before comparing shapes (values that legitimately differ beyond ids/times). */
      volatile?: readonly string[];
      cleanup?: (body: JsonValue) => Promise<void>;
      errors?: readonly ErrorCase[];
    }
  | {
      /** An rpc whose every call fails by contract (the retired image endpoint). */
      kind: "fails";
      errors: readonly ErrorCase[];
    };

describe("REST and gRPC (grpc-js, proto-loader stub) answer every CustomerService method alike", function () {
  this.timeout(180_000);
  let cp: TestControlPlane;
  let agent: TestAgent;
  let grpcClient: DynamicGrpcClient;
  let reader: Who;
  let writer: Who;
  let limitedKey: string;
  let revokedKey: string;
  // The reader's fixed state.
  let datasetId: string;
  let packageId: string;
  let jobId: string;
  let trainUnitId: string;
  let artifactId: string;
  let webhookId: string;
  // The writer's inputs.
  let wDatasetId: string;
  let wPackageId: string;
  let wWebhookId: string;
  let packageZip: Buffer;
  const datasetBytes = Buffer.from("x1,x2,label\n0.1,0.2,1\n0.3,0.4,0\n");

  async function newCustomer(credits: number): Promise<Who> {
    const email = `parity-${Math.random().toString(36).slice(2)}@example.com`;
    const created = await adminRequest(cp, "POST", "/api/v1/admin/customers", { email, password, credits });
    const login = await request(cp, "POST", "/api/v1/customer/auth/login", { body: { email, password } });
    assert.equal(login.status, 200, JSON.stringify(login.body));
    return { customerId: created["customer_id"] as string, email, apiKey: created["api_key"] as string, session: login.body["session_token"] as string };
  }

  const rest = (method: string, path: string, who: Who, body?: unknown, auth: "key" | "session" = "key") =>
    request(cp, method, path, {
      headers: auth === "key" ? { "x-api-key": who.apiKey } : { authorization: `Bearer ${who.session}` },
      ...(body === undefined ? {} : { body }),
    });

  before(async function () {
    this.timeout(240_000);
    ensureBufDeps();
    cp = await startTestControlPlane();
    agent = await startTestAgent(cp, { trustLevel: "controlled", devGpuMib: 24576 });
    grpcClient = createDynamicGrpcClient(cp);
    reader = await newCustomer(100_000);
    writer = await newCustomer(1_000_000);

    const dir = await mkdtemp(join(tmpdir(), "parity-pkg-"));
    try {
      await zipDirectory(join(example, "package"), join(dir, "package.zip"));
      packageZip = await readFile(join(dir, "package.zip"));
    } finally {
      await rm(dir, { recursive: true, force: true });
    }

    // Reader: a finalized dataset and package, a completed job with artifacts, a webhook with one delivery.
    datasetId = (await uploadResource(cp, reader.apiKey, "datasets", "tiny-mlp-dataset", await readFile(join(example, "dataset.csv")), { format: "csv" }))["id"] as string;
    packageId = (await uploadResource(cp, reader.apiKey, "training-packages", "tiny-mlp", packageZip))["id"] as string;
    const job = await rest("POST", "/api/v1/customer/training-jobs", reader, {
      name: "parity-job",
      dataset_id: datasetId,
      training_package_id: packageId,
      required_vram_mb: 8000,
      max_runtime_seconds: 600,
      sensitivity: "low_sensitive",
    });
    assert.equal(job.status, 201, JSON.stringify(job.body));
    jobId = job.body["id"] as string;
    const done = await waitFor(
      "the reader's job to finish",
      async () => {
        const r = await rest("GET", `/api/v1/customer/training-jobs/${jobId}`, reader);
        return ["completed", "failed", "cancelled", "expired"].includes(r.body["status"] as string) ? r.body : undefined;
      },
      150_000,
      () => agent.output(),
    );
    assert.equal(done["status"], "completed", `${String(done["error"])}\n${agent.output()}`);
    const units = await rest("GET", `/api/v1/customer/training-jobs/${jobId}/compute-units`, reader);
    trainUnitId = ((units.body["data"] as Record<string, unknown>[]).find((u) => u["name"] === "train")!)["id"] as string;
    const artifacts = await rest("GET", `/api/v1/customer/training-jobs/${jobId}/artifacts`, reader);
    artifactId = ((artifacts.body["data"] as Record<string, unknown>[]).find((a) => a["kind"] === "checkpoint")!)["id"] as string;
    const hook = await rest("POST", "/api/v1/customer/webhooks", reader, { url: "https://hooks.example.com/reader", events: ["job.completed"], description: "reader" });
    assert.equal(hook.status, 201, JSON.stringify(hook.body));
    webhookId = (hook.body["webhook"] as Record<string, string>)["id"]!;
    assert.equal((await rest("POST", `/api/v1/customer/webhooks/${webhookId}/test`, reader, {})).status, 200);

    // Keys for the auth cases: one with only usage:read, one revoked.
    const limited = await rest("POST", "/api/v1/customer/api-keys", reader, { name: "usage only", scopes: ["usage:read"] }, "session");
    assert.equal(limited.status, 201, JSON.stringify(limited.body));
    limitedKey = limited.body["key"] as string;
    const revoked = await rest("POST", "/api/v1/customer/api-keys", reader, { name: "to revoke", scopes: ["usage:read"] }, "session");
    revokedKey = revoked.body["key"] as string;
    const revokedId = (revoked.body["api_key"] as Record<string, string>)["id"]!;
    assert.equal((await rest("DELETE", `/api/v1/customer/api-keys/${revokedId}`, reader, undefined, "session")).status, 200);

    // Writer: inputs of the mutating cases.
    wDatasetId = (await uploadResource(cp, writer.apiKey, "datasets", "w-data", datasetBytes, { format: "csv" }))["id"] as string;
    wPackageId = (await uploadResource(cp, writer.apiKey, "training-packages", "w-pkg", packageZip))["id"] as string;
    const wHook = await rest("POST", "/api/v1/customer/webhooks", writer, { url: "https://hooks.example.com/writer", events: ["job.failed"] });
    wWebhookId = (wHook.body["webhook"] as Record<string, string>)["id"]!;
  });

  after(async () => {
    grpcClient?.close();
    await agent?.stop();
    await cp?.stop();
  });

  function headersOf(auth: Auth, who: Who): Headers {
    switch (auth) {
      case "key":
        return { "x-api-key": who.apiKey };
      case "session":
        return { authorization: `Bearer ${who.session}` };
      case "limited":
        return { "x-api-key": limitedKey };
      case "invalid":
        return { "x-api-key": "sk_live_not-a-real-key-at-all" };
      case "revoked":
        return { "x-api-key": revokedKey };
      case "none":
        return {};
    }
  }

  // ---- helpers making the writer's fresh resources (over REST; the rpc under test then runs on one protocol) ----
  const sha = (b: Buffer) => createHash("sha256").update(b).digest("hex");
  async function freshUploadAwaitingFinalize(kind: "datasets" | "training-packages", bytes: Buffer): Promise<string> {
    const created = await rest("POST", `/api/v1/customer/${kind}`, writer, { name: "fresh", size_bytes: bytes.length, sha256: sha(bytes) });
    assert.equal(created.status, 201, JSON.stringify(created.body));
    const put = await fetch(created.body["upload_url"] as string, { method: "PUT", body: bytes });
    assert.equal(put.status, 200);
    return created.body["id"] as string;
  }
  async function freshJob(): Promise<string> {
    const created = await rest("POST", "/api/v1/customer/training-jobs", writer, {
      name: "fresh-job",
      dataset_id: wDatasetId,
      training_package_id: wPackageId,
      required_vram_mb: 8000,
      max_runtime_seconds: 600,
    });
    assert.equal(created.status, 201, JSON.stringify(created.body));
    return created.body["id"] as string;
  }
  async function cancelJob(body: JsonValue): Promise<void> {
    const id = (body as Record<string, string>)["id"];
    if (id !== undefined) await rest("POST", `/api/v1/customer/training-jobs/${id}/cancel`, writer, {});
  }
  async function freshWebhook(): Promise<string> {
    const created = await rest("POST", "/api/v1/customer/webhooks", writer, { url: "https://hooks.example.com/fresh", events: ["job.completed"] });
    assert.equal(created.status, 201, JSON.stringify(created.body));
    return (created.body["webhook"] as Record<string, string>)["id"]!;
  }

  const notFound = (name: string, req: () => Req, code: ErrorCode, auth: Auth = "key"): ErrorCase => ({ name, req, code, auth });

  const cases: Record<string, MethodCase> = {
    GetConfig: { kind: "read", auth: "none", req: () => ({}), volatile: ["server_time"] },
    GetMeta: { kind: "read", auth: "none", req: () => ({}), volatile: ["server_time"] },
    Login: {
      kind: "mutate",
      auth: "none",
      prepare: async () => ({ email: writer.email, password }),
      volatile: ["expires_at"],
      errors: [
        { name: "a wrong password", req: () => ({ email: writer.email, password: "wrong password!" }), auth: "none", code: "CUSTOMER_AUTH_REQUIRED" },
        { name: "no e-mail", req: () => ({ email: "", password: "x" }), auth: "none", code: "VALIDATION_FAILED" },
      ],
    },
    GetMe: {
      kind: "read",
      auth: "key",
      req: () => ({}),
      errors: [
        { name: "no credentials", req: () => ({}), auth: "none", code: "CUSTOMER_AUTH_REQUIRED" },
        { name: "an unknown key", req: () => ({}), auth: "invalid", code: "API_KEY_INVALID" },
        { name: "a revoked key", req: () => ({}), auth: "revoked", code: "API_KEY_REVOKED" },
      ],
    },
    CreateApiKey: {
      kind: "mutate",
      auth: "session",
      prepare: async () => ({ name: "parity key", scopes: ["dataset:write", "usage:read"] }),
      errors: [
        { name: "an unknown scope", req: () => ({ name: "k", scopes: ["root"] }), auth: "session", code: "VALIDATION_FAILED" },
        { name: "an API key instead of a session", req: () => ({ name: "k", scopes: ["usage:read"] }), auth: "key", code: "API_KEY_SCOPE_DENIED" },
      ],
    },
    ListApiKeys: {
      kind: "read",
      auth: "session",
      req: () => ({}),
      volatile: ["last_used_at"],
      errors: [{ name: "an API key instead of a session", req: () => ({}), auth: "key", code: "API_KEY_SCOPE_DENIED" }],
    },
    RevokeApiKey: {
      kind: "mutate",
      auth: "session",
      prepare: async () => {
        const created = await rest("POST", "/api/v1/customer/api-keys", writer, { name: "to revoke", scopes: ["usage:read"] }, "session");
        return { id: (created.body["api_key"] as Record<string, string>)["id"] };
      },
      errors: [
        notFound("an unknown key id", () => ({ id: missingId }), "RESOURCE_NOT_FOUND", "session"),
        { name: "an API key instead of a session", req: () => ({ id: missingId }), auth: "key", code: "API_KEY_SCOPE_DENIED" },
      ],
    },

    CreateDataset: {
      kind: "mutate",
      auth: "key",
      prepare: async () => ({ name: "parity-data", size_bytes: datasetBytes.length, sha256: sha(datasetBytes), format: "csv" }),
      errors: [
        { name: "an empty name", req: () => ({ name: " ", size_bytes: 1, sha256: "a".repeat(64) }), code: "VALIDATION_FAILED" },
        { name: "a malformed sha256", req: () => ({ name: "d", size_bytes: 1, sha256: "xyz" }), code: "VALIDATION_FAILED" },
        { name: "a NUL character in the name", req: () => ({ name: "a\u0000b", size_bytes: 1, sha256: "a".repeat(64) }), code: "VALIDATION_FAILED" },
        { name: "a size over the limit", req: () => ({ name: "d", size_bytes: "1000000000000000", sha256: "a".repeat(64) }), code: "PAYLOAD_TOO_LARGE" },
        { name: "a key without dataset:write", req: () => ({ name: "d", size_bytes: 1, sha256: "a".repeat(64) }), auth: "limited", code: "API_KEY_SCOPE_DENIED" },
      ],
    },
    FinalizeDataset: {
      kind: "mutate",
      auth: "key",
      prepare: () => freshUploadAwaitingFinalize("datasets", datasetBytes).then((id) => ({ id })),
      errors: [notFound("an unknown dataset", () => ({ id: missingId }), "DATASET_NOT_FOUND")],
    },
    ListDatasets: {
      kind: "read",
      auth: "key",
      req: () => ({}),
      errors: [
        { name: "a tampered cursor", req: () => ({ cursor: "Zm9vYmFy" }), code: "PAGINATION_INVALID_CURSOR" },
        { name: "a limit over 100", req: () => ({ limit: 500 }), code: "VALIDATION_FAILED" },
        { name: "a key without dataset:write", req: () => ({}), auth: "limited", code: "API_KEY_SCOPE_DENIED" },
      ],
    },
    GetDataset: {
      kind: "read",
      auth: "key",
      req: () => ({ id: datasetId }),
      errors: [
        notFound("an unknown dataset", () => ({ id: missingId }), "DATASET_NOT_FOUND"),
        notFound("a malformed id", () => ({ id: "not-a-uuid" }), "DATASET_NOT_FOUND"),
      ],
    },
    DeleteDataset: {
      kind: "mutate",
      auth: "key",
      prepare: async () => ({ id: (await uploadResource(cp, writer.apiKey, "datasets", "to-delete", datasetBytes))["id"] }),
      errors: [notFound("an unknown dataset", () => ({ id: missingId }), "DATASET_NOT_FOUND")],
    },

    CreateTrainingPackage: {
      kind: "mutate",
      auth: "key",
      prepare: async () => ({ name: "parity-pkg", size_bytes: packageZip.length, sha256: sha(packageZip), entrypoint: "train.py" }),
      errors: [{ name: "an entrypoint outside the package", req: () => ({ name: "p", size_bytes: 1, sha256: "a".repeat(64), entrypoint: "../x.py" }), code: "VALIDATION_FAILED" }],
    },
    FinalizeTrainingPackage: {
      kind: "mutate",
      auth: "key",
      prepare: () => freshUploadAwaitingFinalize("training-packages", packageZip).then((id) => ({ id })),
      errors: [notFound("an unknown package", () => ({ id: missingId }), "TRAINING_PACKAGE_NOT_FOUND")],
    },
    ListTrainingPackages: {
      kind: "read",
      auth: "key",
      req: () => ({}),
      errors: [{ name: "a tampered cursor", req: () => ({ cursor: "bm9wZQ" }), code: "PAGINATION_INVALID_CURSOR" }],
    },
    GetTrainingPackage: {
      kind: "read",
      auth: "key",
      req: () => ({ id: packageId }),
      errors: [notFound("an unknown package", () => ({ id: missingId }), "TRAINING_PACKAGE_NOT_FOUND")],
    },
    DeleteTrainingPackage: {
      kind: "mutate",
      auth: "key",
      prepare: async () => ({ id: (await uploadResource(cp, writer.apiKey, "training-packages", "to-delete", packageZip))["id"] }),
      errors: [notFound("an unknown package", () => ({ id: missingId }), "TRAINING_PACKAGE_NOT_FOUND")],
    },

    CreateTrainingJob: {
      kind: "mutate",
      auth: "key",
      prepare: async () => ({
        name: "parity-create",
        dataset_id: wDatasetId,
        training_package_id: wPackageId,
        required_vram_mb: 8000,
        required_disk_mb: 1024,
        max_runtime_seconds: 600,
        sensitivity: "low_sensitive",
      }),
      headers: (side) => ({ "idempotency-key": `parity-${side}-${Date.now()}` }),
      // The placer may already have taken the unit between insert and read-back.
      volatile: ["status", "started_at", "progress"],
      cleanup: cancelJob,
      errors: [
        { name: "an unknown dataset", req: () => ({ name: "j", dataset_id: missingId, training_package_id: wPackageId, max_runtime_seconds: 60 }), code: "DATASET_NOT_FOUND" },
        { name: "an unknown package", req: () => ({ name: "j", dataset_id: wDatasetId, training_package_id: missingId, max_runtime_seconds: 60 }), code: "TRAINING_PACKAGE_NOT_FOUND" },
        { name: "an unknown sensitivity", req: () => ({ name: "j", dataset_id: wDatasetId, training_package_id: wPackageId, sensitivity: "secret" }), code: "VALIDATION_FAILED" },
        {
          name: "an invalid Idempotency-Key",
          req: () => ({ name: "j", dataset_id: wDatasetId, training_package_id: wPackageId, max_runtime_seconds: 60 }),
          headers: { "idempotency-key": "bad key!" },
          code: "IDEMPOTENCY_KEY_INVALID",
        },
        { name: "a key without training:write", req: () => ({ name: "j" }), auth: "limited", code: "API_KEY_SCOPE_DENIED" },
      ],
    },
    ListTrainingJobs: {
      kind: "read",
      auth: "key",
      req: () => ({ status: "completed", limit: 50 }),
      errors: [
        { name: "an unknown status filter", req: () => ({ status: "bogus" }), code: "VALIDATION_FAILED" },
        { name: "a tampered cursor", req: () => ({ cursor: "Zm9vYmFy" }), code: "PAGINATION_INVALID_CURSOR" },
      ],
    },
    GetTrainingJob: {
      kind: "read",
      auth: "key",
      req: () => ({ id: jobId }),
      check: (body) => assert.equal((body as Record<string, unknown>)["status"], "completed"),
      errors: [notFound("an unknown job", () => ({ id: missingId }), "JOB_NOT_FOUND"), notFound("a malformed id", () => ({ id: "nope" }), "JOB_NOT_FOUND")],
    },
    CancelTrainingJob: {
      kind: "mutate",
      auth: "key",
      prepare: async () => ({ id: await freshJob() }),
      errors: [notFound("an unknown job", () => ({ id: missingId }), "JOB_NOT_FOUND")],
    },
    ListComputeUnits: {
      kind: "read",
      auth: "key",
      req: () => ({ id: jobId }),
      check: (body) => assert.equal(((body as Record<string, unknown>)["data"] as unknown[]).length, 3),
      errors: [notFound("an unknown job", () => ({ id: missingId }), "JOB_NOT_FOUND")],
    },
    GetComputeUnitLogs: {
      kind: "read",
      auth: "key",
      req: () => ({ id: jobId, unit_id: trainUnitId }),
      check(body) {
        const b = body as { lines: { seq: string; text: string; stream: string }[]; unit_status: string; attempt: number; next_after: string };
        assert.equal(b.unit_status, "completed");
        assert.equal(b.attempt, 1);
        assert.ok(b.lines.some((l) => /^epoch 20\/20 loss=/.test(l.text)), "the train stage's last epoch is in its log");
        assert.equal(b.next_after, b.lines.at(-1)?.seq);
      },
      errors: [
        notFound("an unknown job", () => ({ id: missingId, unit_id: trainUnitId }), "JOB_NOT_FOUND"),
        notFound("an unknown unit", () => ({ id: jobId, unit_id: missingId }), "RESOURCE_NOT_FOUND"),
        { name: "a negative cursor", req: () => ({ id: jobId, unit_id: trainUnitId, after: -1 }), code: "VALIDATION_FAILED" },
        { name: "an attempt the unit never had", req: () => ({ id: jobId, unit_id: trainUnitId, attempt: 9 }), code: "VALIDATION_FAILED" },
      ],
    },
    // Server-streaming events: the reader's job has ended, so both streams are its snapshot and nothing more.
    WatchTrainingJob: {
      kind: "read",
      auth: "key",
      req: () => ({ id: jobId }),
      check(body) {
        const events = (body as { events: { type: string; snapshot?: { training_job: { status: string }; compute_units: unknown[] } }[] }).events;
        assert.deepEqual(events.map((e) => e.type), ["snapshot"]);
        assert.equal(events[0]?.snapshot?.training_job.status, "completed");
        assert.equal(events[0]?.snapshot?.compute_units.length, 3);
      },
      errors: [
        notFound("an unknown job", () => ({ id: missingId }), "JOB_NOT_FOUND"),
        { name: "a negative after_event_id", req: () => ({ id: jobId, after_event_id: -1 }), code: "VALIDATION_FAILED" },
      ],
    },
    GetTrainingJobMetrics: {
      kind: "read",
      auth: "key",
      req: () => ({ id: jobId }),
      check(body) {
        const units = (body as { units: { name: string; points: { metrics: Record<string, number> }[] }[] }).units;
        assert.deepEqual(
          units.map((u) => u.name),
          ["prepare", "train", "evaluate"],
        );
        const train = units.find((u) => u.name === "train")!;
        assert.ok(train.points.filter((p) => p.metrics["loss"] !== undefined).length >= 2, "the loss curve has points");
      },
      errors: [notFound("an unknown job", () => ({ id: missingId }), "JOB_NOT_FOUND"), notFound("a malformed id", () => ({ id: "nope" }), "JOB_NOT_FOUND")],
    },
    ListArtifacts: {
      kind: "read",
      auth: "key",
      req: () => ({ id: jobId }),
      check: (body) => assert.ok(((body as Record<string, unknown>)["data"] as unknown[]).length >= 3),
      errors: [
        notFound("an unknown job", () => ({ id: missingId }), "JOB_NOT_FOUND"),
        { name: "a key without artifact:read", req: () => ({ id: jobId }), auth: "limited", code: "API_KEY_SCOPE_DENIED" },
      ],
    },
    CreateArtifactDownloadUrl: {
      // Mints a URL, changes nothing stored: compared as a read.
      kind: "read",
      auth: "key",
      req: () => ({ job_id: jobId, artifact_id: artifactId }),
      volatile: ["download_url", "expires_at"],
      async check(restBody, grpcBody) {
        const urls = [restBody, grpcBody].map((b) => (b as Record<string, string>)["download_url"]!);
        const bytes = await Promise.all(
          urls.map(async (u) => {
            const res = await fetch(u);
            assert.equal(res.status, 200, u);
            return Buffer.from(await res.arrayBuffer());
          }),
        );
        assert.ok(bytes[0]!.length > 0);
        assert.deepEqual(bytes[0], bytes[1], "both URLs download the same artifact");
      },
      errors: [
        notFound("an unknown artifact", () => ({ job_id: jobId, artifact_id: missingId }), "ARTIFACT_NOT_FOUND"),
        notFound("an unknown job", () => ({ job_id: missingId, artifact_id: artifactId }), "JOB_NOT_FOUND"),
      ],
    },

    GetUsageSummary: {
      kind: "read",
      auth: "key",
      req: () => ({}),
      check: (body) => assert.equal((body as Record<string, unknown>)["compute_units_completed"], 3),
      errors: [{ name: "no credentials", req: () => ({}), auth: "none", code: "CUSTOMER_AUTH_REQUIRED" }],
    },
    GetDailyUsage: {
      kind: "read",
      auth: "limited",
      req: () => ({ days: 7 }),
      errors: [
        { name: "days over 90", req: () => ({ days: 91 }), code: "VALIDATION_FAILED" },
        { name: "negative days", req: () => ({ days: -1 }), code: "VALIDATION_FAILED" },
      ],
    },
    // The two CSV rpcs are server-streaming: grpc-js reads the stream and the helper folds its
    // HttpBody chunks (data concatenated, the first content type), compared byte for byte with REST.
    ExportUsageCsv: {
      kind: "read",
      auth: "key",
      req: () => ({}),
      errors: [
        { name: "a range over 90 days", req: () => ({ date_from: "2026-01-01", date_to: "2026-12-31" }), code: "EXPORT_RANGE_TOO_LARGE" },
        { name: "a date that does not exist", req: () => ({ date_from: "2026-02-30" }), code: "VALIDATION_FAILED" },
      ],
    },
    ListCreditLedger: {
      kind: "read",
      auth: "key",
      // One entry per page, so the cursor itself is compared too.
      req: () => ({ limit: 1 }),
      check: (body) => assert.equal(((body as Record<string, Record<string, unknown>>)["page"]!)["has_more"], true),
      errors: [{ name: "a tampered cursor", req: () => ({ cursor: "x" }), code: "PAGINATION_INVALID_CURSOR" }],
    },
    GetCreditStatementCsv: {
      kind: "read",
      auth: "key",
      req: () => ({}),
      errors: [{ name: "from after to", req: () => ({ date_from: "2026-05-02", date_to: "2026-05-01" }), code: "VALIDATION_FAILED" }],
    },

    CreateWebhook: {
      kind: "mutate",
      auth: "key",
      prepare: async () => ({ url: "https://hooks.example.com/parity", events: ["job.completed", "job.failed"], description: "parity" }),
      errors: [
        { name: "a plain-HTTP URL", req: () => ({ url: "http://hooks.example.com/x", events: ["job.completed"] }), code: "WEBHOOK_INVALID_URL" },
        { name: "a loopback URL", req: () => ({ url: "https://127.0.0.1/x", events: ["job.completed"] }), code: "WEBHOOK_INVALID_URL" },
        { name: "an unknown event", req: () => ({ url: "https://hooks.example.com/x", events: ["job.exploded"] }), code: "VALIDATION_FAILED" },
        { name: "a key without webhook:write", req: () => ({ url: "https://hooks.example.com/x", events: ["job.completed"] }), auth: "limited", code: "API_KEY_SCOPE_DENIED" },
      ],
    },
    ListWebhooks: { kind: "read", auth: "key", req: () => ({}), errors: [{ name: "a limit over 100", req: () => ({ limit: 101 }), code: "VALIDATION_FAILED" }] },
    TestWebhook: {
      kind: "mutate",
      auth: "key",
      prepare: async () => ({ id: await freshWebhook() }),
      errors: [notFound("an unknown webhook", () => ({ id: missingId }), "RESOURCE_NOT_FOUND")],
    },
    RotateWebhookSecret: {
      kind: "mutate",
      auth: "key",
      prepare: async () => ({ id: await freshWebhook() }),
      errors: [notFound("an unknown webhook", () => ({ id: missingId }), "RESOURCE_NOT_FOUND")],
    },
    DeleteWebhook: {
      kind: "mutate",
      auth: "key",
      prepare: async () => ({ id: await freshWebhook() }),
      errors: [notFound("an unknown webhook", () => ({ id: "not-a-uuid" }), "RESOURCE_NOT_FOUND")],
    },
    ListWebhookDeliveries: {
      kind: "read",
      auth: "key",
      req: () => ({ id: webhookId }),
      // The dispatcher retries in the background (hooks.example.com does not answer here).
      volatile: ["status", "attempts", "last_status_code", "last_error", "next_attempt_at", "delivered_at"],
      errors: [notFound("an unknown webhook", () => ({ id: missingId }), "RESOURCE_NOT_FOUND")],
    },
    RedeliverWebhookDelivery: {
      kind: "mutate",
      auth: "key",
      prepare: async () => {
        const tested = await rest("POST", `/api/v1/customer/webhooks/${wWebhookId}/test`, writer, {});
        return { id: wWebhookId, delivery_id: tested.body["delivery_id"] };
      },
      volatile: ["status", "attempts", "last_status_code", "last_error", "next_attempt_at", "delivered_at"],
      errors: [notFound("an unknown delivery", () => ({ id: wWebhookId, delivery_id: missingId }), "RESOURCE_NOT_FOUND")],
    },

    CreateLegacyImageJob: {
      kind: "fails",
      errors: [
        { name: "the retired image-api endpoint", req: () => ({ legacy_path: "image-api" }), auth: "none", code: "LEGACY_DEPRECATED" },
        { name: "the retired image endpoint with a key", req: () => ({ legacy_path: "image" }), auth: "key", code: "LEGACY_DEPRECATED" },
        { name: "another path under /jobs", req: () => ({ legacy_path: "video-api" }), auth: "none", code: "ROUTE_NOT_FOUND" },
      ],
    },
  };

  /** Both protocols, one request; the REST view of each outcome. */
  async function both(method: DescMethod, reqs: { rest: Req; grpc: Req }, headers: { rest: Headers; grpc: Headers }): Promise<{ rest: Outcome; grpc: Outcome }> {
    const restOut = await restCall(cp, method, reqs.rest, headers.rest);
    const grpcOut = restViewOfGrpc(method, await grpcClient.call(method, reqs.grpc, headers.grpc));
    return { rest: restOut, grpc: grpcOut };
  }

  function describeOutcome(o: Outcome): string {
    return o.ok ? `ok ${JSON.stringify(o.body ?? o.raw).slice(0, 300)}` : `${o.code} (${o.message})`;
  }

  /** Marks the test pending when both sides say the rpc is not built yet (parity holds, the feature does not). */
  function skipIfNotImplemented(ctx: Mocha.Context, method: DescMethod, out: { rest: Outcome; grpc: Outcome }): void {
    if (!out.rest.ok && !out.grpc.ok && out.rest.code === "NOT_IMPLEMENTED" && out.grpc.code === "NOT_IMPLEMENTED") {
      ctx.test!.title += " (PENDING: the rpc answers NOT_IMPLEMENTED on both protocols)";
      ctx.skip();
    }
    void method;
  }

  function assertSameError(out: { rest: Outcome; grpc: Outcome }, code: ErrorCode): void {
    assert.ok(!out.rest.ok, `REST succeeded: ${describeOutcome(out.rest)}`);
    assert.ok(!out.grpc.ok, `gRPC succeeded: ${describeOutcome(out.grpc)}`);
    assert.equal(out.rest.code, code, `REST: ${describeOutcome(out.rest)}`);
    assert.equal(out.grpc.code, code, `gRPC: ${describeOutcome(out.grpc)}`);
    assert.equal(out.rest.httpStatus, httpStatusOf(code), "REST status as docs/errors.md maps the code");
    assert.equal(out.grpc.grpcStatus, connectCodeOf(code), "gRPC status as docs/errors.md maps the code");
    // Connect encodes grpc-message with encodeURIComponent and grpc-js decodes it with decodeURI, which
    // leaves reserved characters (",", ";", "/", ":") percent-encoded in `details`: decode them here.
    const grpcMessage = decodeURIComponent(out.grpc.message);
    assert.ok(out.rest.message.length > 0 && grpcMessage === `[${code}] ${out.rest.message}`, `the same message: ${out.rest.message} | ${grpcMessage}`);
    assert.ok((out.rest.requestId ?? "").length > 0, "REST errors carry a request_id");
  }

  it("has a case for every CustomerService method (a new rpc cannot be forgotten)", () => {
    const missing = CustomerService.methods.map((m) => m.name).filter((name) => cases[name] === undefined);
    assert.deepEqual(missing, [], `add parity cases for: ${missing.join(", ")}`);
    const stale = Object.keys(cases).filter((name) => !CustomerService.methods.some((m) => m.name === name));
    assert.deepEqual(stale, [], `cases for rpcs that no longer exist: ${stale.join(", ")}`);
  });

  for (const method of CustomerService.methods) {
    describe(method.name, () => {
      const c = cases[method.name];
      if (c === undefined) return; // reported by the coverage test above
      if (c.kind === "read") {
        it("succeeds on both protocols with the same body, field by field", async function () {
          const req = c.req();
          const h = headersOf(c.auth, reader);
          const out = await both(method, { rest: req, grpc: req }, { rest: h, grpc: h });
          skipIfNotImplemented(this, method, out);
          assert.ok(out.rest.ok, `REST: ${describeOutcome(out.rest)}`);
          assert.ok(out.grpc.ok, `gRPC: ${describeOutcome(out.grpc)}`);
          if (out.rest.raw !== undefined || out.grpc.raw !== undefined) {
            assert.deepEqual(out.grpc.raw, out.rest.raw, "the same content type and bytes");
          } else {
            const volatile = new Set(c.volatile ?? []);
            assert.ok(out.rest.body !== null && typeof out.rest.body === "object" && Object.keys(out.rest.body).length > 0, "a body to compare");
            assert.deepEqual(withoutKeys(out.grpc.body, volatile), withoutKeys(out.rest.body, volatile));
          }
          await c.check?.(out.rest.body, out.grpc.body);
        });
      } else if (c.kind === "mutate") {
        it("succeeds on both protocols, each on its own fresh resource, with the same shape", async function () {
          const restReq = await c.prepare("rest");
          const grpcReq = await c.prepare("grpc");
          const h = headersOf(c.auth, writer);
          const out = await both(method, { rest: restReq, grpc: grpcReq }, { rest: { ...h, ...c.headers?.("rest") }, grpc: { ...h, ...c.headers?.("grpc") } });
          try {
            skipIfNotImplemented(this, method, out);
            assert.ok(out.rest.ok, `REST: ${describeOutcome(out.rest)}`);
            assert.ok(out.grpc.ok, `gRPC: ${describeOutcome(out.grpc)}`);
            const volatile = new Set(c.volatile ?? []);
            assert.deepEqual(shapeOf(withoutKeys(out.grpc.body, volatile)), shapeOf(withoutKeys(out.rest.body, volatile)));
            assert.notDeepEqual(out.grpc.body, null);
          } finally {
            if (out.rest.ok) await c.cleanup?.(out.rest.body);
            if (out.grpc.ok) await c.cleanup?.(out.grpc.body);
          }
        });
      }
      for (const e of c.errors ?? []) {
        it(`answers ${e.name} with ${e.code} on both protocols`, async function () {
          const req = e.req();
          const who = c.kind === "mutate" ? writer : reader;
          const h = { ...headersOf(e.auth ?? "key", who), ...e.headers };
          const out = await both(method, { rest: req, grpc: req }, { rest: h, grpc: h });
          skipIfNotImplemented(this, method, out);
          assertSameError(out, e.code);
        });
      }
    });
  }

  describe("authentication over gRPC matches REST for every rpc", () => {
    for (const method of CustomerService.methods) {
      const policy = hasOption(method, access) ? getOption(method, access) : undefined;
      if (policy?.public === true) continue;
      const c = cases[method.name];
      const sample = (): Req => (c === undefined ? {} : c.kind === "read" ? c.req() : (c.errors ?? [])[0]?.req() ?? {});
      it(`${method.name}: no credentials → CUSTOMER_AUTH_REQUIRED`, async function () {
        const out = await both(method, { rest: sample(), grpc: sample() }, { rest: {}, grpc: {} });
        skipIfNotImplemented(this, method, out);
        assertSameError(out, "CUSTOMER_AUTH_REQUIRED");
      });
      if (policy?.sessionOnly === true) {
        it(`${method.name}: session-only rpc with an API key → API_KEY_SCOPE_DENIED`, async function () {
          const h = headersOf("key", reader);
          const out = await both(method, { rest: sample(), grpc: sample() }, { rest: h, grpc: h });
          skipIfNotImplemented(this, method, out);
          assertSameError(out, "API_KEY_SCOPE_DENIED");
        });
      } else if (policy !== undefined && policy.scope !== "" && policy.scope !== "usage:read") {
        it(`${method.name}: a key lacking "${policy.scope}" → API_KEY_SCOPE_DENIED`, async function () {
          const h = headersOf("limited", reader);
          const out = await both(method, { rest: sample(), grpc: sample() }, { rest: h, grpc: h });
          skipIfNotImplemented(this, method, out);
          assertSameError(out, "API_KEY_SCOPE_DENIED");
        });
      }
    }
  });
});
