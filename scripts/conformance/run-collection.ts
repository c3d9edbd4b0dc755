/**
 * Runs a Postman v2.1 collection for this API under newman against a freshly
 * started control plane (embedded default, port 0, temporary data directory)
 * with one local agent, after creating every fixture the collection's
 * variables may name: the customer `customer@example.com` / `REPLACE_ME` (as in
 * the seed collection's login body), a session, an API key, a ready dataset and
 * package, a completed job with artifacts, and a webhook. It passes only when
 * every request gets a 2xx or 3xx.
 */
import { createHash } from "node:crypto";
import { readFile, writeFile } from "node:fs/promises";
import { createRequire } from "node:module";
import { join } from "node:path";
import type { TestAgent, TestControlPlane } from "../../test/support/control-plane.ts";
import { adminRequest, request, startTestAgent, startTestControlPlane, uploadResource, waitFor } from "../../test/support/control-plane.ts";
import { zipDirectory } from "../../src/cli/files.ts";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";

const repoRoot = join(import.meta.dirname, "..", "..");
const example = join(repoRoot, "examples", "tiny-mlp");

/** One request newman made and what it got. */
export interface ConformanceResult {
  name: string;
  method: string;
  url: string;
  status: number | undefined;
  error: string | undefined;
}

interface NewmanSummary {
  run: {
    executions: {
      item: { name: string };
      request?: { method: string; url: { toString(): string } };
      response?: { code: number; text(): string };
      requestError?: { message: string };
    }[];
  };
}

interface Newman {
  run(options: Record<string, unknown>, callback: (err: Error | null, summary: NewmanSummary) => void): void;
}

/** The fixtures and their variable names. */
export type Fixtures = Record<string, string>;

async function createFixtures(cp: TestControlPlane, workingDir: string): Promise<Fixtures> {
  const created = await adminRequest(cp, "POST", "/api/v1/admin/customers", { email: "customer@example.com", password: "REPLACE_ME", credits: 100_000 });
  const apiKey = created["api_key"] as string;
  const login = await request(cp, "POST", "/api/v1/customer/auth/login", { body: { email: "customer@example.com", password: "REPLACE_ME" } });
  const sessionToken = (login.body["session_token"] as string | undefined) ?? "";
  // The files a collection may upload itself (newman resolves body file paths against workingDir).
  const datasetBytes = await readFile(join(example, "dataset.csv"));
  await writeFile(join(workingDir, "dataset.csv"), datasetBytes);
  await zipDirectory(join(example, "package"), join(workingDir, "package.zip"));
  const packageBytes = await readFile(join(workingDir, "package.zip"));
  const dataset = await uploadResource(cp, apiKey, "datasets", "tiny-mlp", datasetBytes, { format: "csv" });
  const pkg = await uploadResource(cp, apiKey, "training-packages", "tiny-mlp", packageBytes);
  const auth = { "x-api-key": apiKey };
  const job = await request(cp, "POST", "/api/v1/customer/training-jobs", {
    headers: auth,
    body: { name: "conformance", dataset_id: dataset["id"], training_package_id: pkg["id"], required_vram_mb: 8000, max_runtime_seconds: 600, sensitivity: "low_sensitive" },
  });
  if (job.status !== 201) throw new Error(`fixture job: ${job.status} ${JSON.stringify(job.body)}`);
  const jobId = job.body["id"] as string;
  await waitFor(
    "the fixture job to complete",
    async () => {
      const res = await request(cp, "GET", `/api/v1/customer/training-jobs/${jobId}`, { headers: auth });
      if (["failed", "cancelled", "expired"].includes(res.body["status"] as string)) throw new Error(`fixture job ${String(res.body["status"])}: ${String(res.body["error"])}`);
      return res.body["status"] === "completed" ? true : undefined;
    },
    120_000,
  );
  const artifacts = await request(cp, "GET", `/api/v1/customer/training-jobs/${jobId}/artifacts`, { headers: auth });
  const artifactId = ((artifacts.body["data"] as Record<string, unknown>[] | undefined)?.[0]?.["id"] as string | undefined) ?? "";
  const webhook = await request(cp, "POST", "/api/v1/customer/webhooks", {
    headers: auth,
    body: { url: "https://your-receiver.example.com/gpu-agent", events: ["job.completed"], description: "conformance" },
  });
  const webhookId = ((webhook.body["webhook"] as Record<string, unknown> | undefined)?.["id"] as string | undefined) ?? "";
  const keys = sessionToken === "" ? undefined : await request(cp, "GET", "/api/v1/customer/api-keys", { headers: { authorization: `Bearer ${sessionToken}` } });
  const apiKeyId = ((keys?.body["data"] as Record<string, unknown>[] | undefined)?.[0]?.["id"] as string | undefined) ?? "";
  return {
    base_url: cp.url,
    email: "customer@example.com",
    password: "REPLACE_ME",
    dataset_size_bytes: String(datasetBytes.length),
    dataset_sha256: createHash("sha256").update(datasetBytes).digest("hex"),
    training_package_size_bytes: String(packageBytes.length),
    training_package_sha256: createHash("sha256").update(packageBytes).digest("hex"),
    api_key: apiKey,
    session_token: sessionToken,
    admin_token: cp.adminToken,
    dataset_id: dataset["id"] as string,
    training_package_id: pkg["id"] as string,
    training_job_id: jobId,
    job_id: jobId,
    artifact_id: artifactId,
    webhook_id: webhookId,
    api_key_id: apiKeyId,
  };
}

/** Runs `collectionPath` against a fresh server; resolves with every request's result. */
export async function runConformance(collectionPath: string, options: { reporters?: string[] } = {}): Promise<ConformanceResult[]> {
  const collection = JSON.parse(await readFile(collectionPath, "utf8")) as unknown;
  const newman = createRequire(import.meta.url)("newman") as Newman;
  let cp: TestControlPlane | undefined;
  let agent: TestAgent | undefined;
  const workingDir = await mkdtemp(join(tmpdir(), "conformance-"));
  try {
    cp = await startTestControlPlane();
    agent = await startTestAgent(cp, { trustLevel: "controlled", devGpuMib: 24576 });
    const fixtures = await createFixtures(cp, workingDir);
    const summary = await new Promise<NewmanSummary>((resolve, reject) =>
      newman.run(
        {
          collection,
          environment: { values: Object.entries(fixtures).map(([key, value]) => ({ key, value, enabled: true })) },
          reporters: options.reporters ?? ["cli"],
          timeoutRequest: 30_000,
          workingDir,
          insecureFileRead: false,
          ignoreRedirects: true,
        },
        (err, result) => (err === null ? resolve(result) : reject(err)),
      ),
    );
    return summary.run.executions.map((e) => ({
      name: e.item.name,
      method: e.request?.method ?? "?",
      url: e.request?.url.toString() ?? "?",
      status: e.response?.code,
      error: e.requestError?.message ?? (e.response !== undefined && (e.response.code < 200 || e.response.code >= 400) ? e.response.text().slice(0, 300) : undefined),
    }));
  } finally {
    await agent?.stop();
    await cp?.stop();
    await rm(workingDir, { recursive: true, force: true });
  }
}

/** The requests that did not get a 2xx/3xx. */
export function failuresOf(results: readonly ConformanceResult[]): ConformanceResult[] {
  return results.filter((r) => r.status === undefined || r.status < 200 || r.status >= 400);
}
