/**
 * Seed 001's own examples, run as a customer would run them, against a real
 * control plane with a real agent: the curl block (create → poll → download
 * URL, with bash, curl and jq), the JavaScript fetch example (node) and the
 * Python requests example (python3). Only the placeholders are replaced: the
 * staging base URL, the API key, the dataset/package/job/artifact ids.
 *
 * The seed is read from the shared seeds directory (GPU_AGENT_SEEDS_DIR, or
 * shared/seeds next to or inside the checkout), never from a copy, so a change
 * of the contract's examples is run as written.
 */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, readdirSync } from "node:fs";
import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { zipDirectory } from "../../src/cli/files.ts";
import type { TestAgent, TestControlPlane } from "../support/control-plane.ts";
import { createCustomer, request, startTestAgent, startTestControlPlane, uploadResource, waitFor } from "../support/control-plane.ts";

const run = promisify(execFile);
const repoRoot = join(import.meta.dirname, "..", "..");
const example = join(repoRoot, "examples", "tiny-mlp");
const stagingBase = "https://api-staging.c3pool.cn/api/v1";
const seedKey = "sk_alpha_REPLACE_ME_WITH_YOUR_KEY";

/** The newest customer API doc (seed 001), wherever the shared seeds are. */
function seedFile(): string | undefined {
  const dirs = [process.env["GPU_AGENT_SEEDS_DIR"], join(repoRoot, "shared", "seeds"), join(repoRoot, "..", "shared", "seeds")];
  for (const dir of dirs) {
    if (dir === undefined || !existsSync(dir)) continue;
    const name = readdirSync(dir).find((f) => /^001_.*\.txt$/.test(f));
    if (name !== undefined) return join(dir, name);
  }
  return undefined;
}

/** The text between two headings of the seed. */
function between(text: string, start: string, end: string): string {
  const from = text.indexOf(start);
  const to = text.indexOf(end, from + start.length);
  assert.ok(from !== -1 && to !== -1, `the seed has "${start}" … "${end}"`);
  return text.slice(from + start.length, to).trim();
}

/** The curl block's commands, keyed by their "# 1)" … "# 3)" comments. */
function curlSteps(block: string): string[] {
  const steps: string[] = [];
  for (const part of block.split(/^# \d\).*$/m).slice(1)) {
    const command = part.trim();
    if (command !== "") steps.push(command);
  }
  return steps;
}

/**
 * A stand-in for the `requests` package with the standard library only (urllib), for machines
 * without it: post/get with headers=, json=, timeout=, and a Response with status_code, text,
 * json() and raise_for_status(). The seed's example runs unchanged against it.
 */
const requestsShim = `
import json as _json
import urllib.request, urllib.error

class HTTPError(Exception):
    pass

class Response:
    def __init__(self, status_code, body, headers):
        self.status_code = status_code
        self.content = body
        self.text = body.decode("utf-8", "replace")
        self.headers = headers
    def json(self):
        return _json.loads(self.text)
    def raise_for_status(self):
        if self.status_code >= 400:
            raise HTTPError(f"{self.status_code} Error: {self.text}")

def request(method, url, headers=None, json=None, timeout=None):
    headers = dict(headers or {})
    data = None
    if json is not None:
        data = _json.dumps(json).encode("utf-8")
        headers.setdefault("Content-Type", "application/json")
    req = urllib.request.Request(url, data=data, headers=headers, method=method)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return Response(r.status, r.read(), dict(r.headers))
    except urllib.error.HTTPError as e:
        return Response(e.code, e.read(), dict(e.headers))

def post(url, **kwargs):
    return request("POST", url, **kwargs)

def get(url, **kwargs):
    return request("GET", url, **kwargs)
`;

describe("seed 001's curl, fetch and requests examples run as written", function () {
  this.timeout(180_000);
  const seed = seedFile();
  let cp: TestControlPlane;
  let agent: TestAgent;
  let apiKey: string;
  let datasetId: string;
  let packageId: string;
  let jobId: string;
  let tmp: string;
  let text: string;

  /** The seed's text with the staging URL, the key and the ids of this test run. */
  function substitute(snippet: string, ids: { job?: string; artifact?: string } = {}): string {
    let out = snippet.split(stagingBase).join(`${cp.url}/api/v1`).split(seedKey).join(apiKey);
    out = out.split("<your-dataset-uuid>").join(datasetId).split("<your-package-uuid>").join(packageId);
    if (ids.job !== undefined) out = out.split("<job-id>").join(ids.job);
    if (ids.artifact !== undefined) out = out.split("<artifact-id>").join(ids.artifact);
    assert.ok(!out.includes("api-staging") && !out.includes("REPLACE_ME") && !/<[a-z-]+>/.test(out), `every placeholder replaced:\n${out}`);
    return out;
  }

  const bash = (command: string) => run("bash", ["-c", command], { timeout: 30_000 });
  /** A skip says why in the test's title, so the report never shows a bare pending line. */
  const skipWithReason = (ctx: Mocha.Context, why: string) => {
    ctx.test!.title += ` (SKIPPED: ${why})`;
    ctx.skip();
  };

  before(async function () {
    if (seed === undefined) {
      this.test!.parent!.title += " (SKIPPED: seed 001 not found; set GPU_AGENT_SEEDS_DIR)";
      this.skip();
    }
    text = await readFile(seed!, "utf8");
    for (const tool of ["curl", "jq", "python3"]) {
      await run("bash", ["-c", `command -v ${tool}`]).catch(() => assert.fail(`${tool} is needed (npm test installs it first, through scripts/ensure-system.ts)`));
    }
    tmp = await mkdtemp(join(tmpdir(), "seed-curl-"));
    cp = await startTestControlPlane();
    agent = await startTestAgent(cp, { trustLevel: "controlled", devGpuMib: 24576 });
    ({ apiKey } = await createCustomer(cp, 10_000));
    datasetId = (await uploadResource(cp, apiKey, "datasets", "tiny-mlp-dataset", await readFile(join(example, "dataset.csv")), { format: "csv" }))["id"] as string;
    await zipDirectory(join(example, "package"), join(tmp, "package.zip"));
    packageId = (await uploadResource(cp, apiKey, "training-packages", "tiny-mlp", await readFile(join(tmp, "package.zip"))))["id"] as string;
  });

  after(async () => {
    await agent?.stop();
    await cp?.stop();
    if (tmp !== undefined) await rm(tmp, { recursive: true, force: true });
  });

  it("the curl block: 1) creates the job, 2) polls a quoted status until \"completed\", 3) prints a download URL that serves the artifact", async () => {
    const steps = curlSteps(between(text, "curl 示例", "JavaScript fetch 示例"));
    assert.equal(steps.length, 3, `three commands in the curl block:\n${steps.join("\n---\n")}`);
    const [create, poll, download] = steps as [string, string, string];

    // 1) a job JSON with an id
    const created = await bash(substitute(create));
    const job = JSON.parse(created.stdout) as Record<string, unknown>;
    assert.match(String(job["id"]), /^[0-9a-f-]{36}$/, created.stdout);
    assert.equal(job["name"], "tiny-mlp-fine-tune");
    assert.equal(job["sensitivity"], "low_sensitive");
    assert.equal(job["status"], "queued");
    jobId = job["id"] as string;

    // 2) `| jq '.status'` prints the status quoted; re-run until it says "completed"
    const seen: string[] = [];
    await waitFor(
      "the polled status to be \"completed\"",
      async () => {
        const { stdout } = await bash(substitute(poll, { job: jobId }));
        const status = stdout.trim();
        if (seen.at(-1) !== status) seen.push(status);
        assert.match(status, /^"(queued|running|completed)"$/, `a quoted, non-failed status: ${status}\n${agent.output()}`);
        return status === '"completed"' ? status : undefined;
      },
      150_000,
      () => `seen ${seen.join(" → ")}\n${agent.output()}`,
    );
    assert.ok(["\"queued\"", "\"running\""].includes(seen[0]!), `the first poll shows the job waiting or running: ${seen.join(" → ")}`);

    // 3) `| jq -r '.download_url'` prints an http URL that downloads the artifact
    const artifacts = await request(cp, "GET", `/api/v1/customer/training-jobs/${jobId}/artifacts`, { headers: { "x-api-key": apiKey } });
    const checkpoint = (artifacts.body["data"] as Record<string, unknown>[]).find((x) => x["kind"] === "checkpoint");
    assert.ok(checkpoint !== undefined, JSON.stringify(artifacts.body));
    const { stdout } = await bash(substitute(download, { job: jobId, artifact: checkpoint["id"] as string }));
    const url = stdout.trim();
    assert.match(url, /^https?:\/\/\S+$/, `one URL, unquoted: ${stdout}`);
    const res = await fetch(url);
    assert.equal(res.status, 200);
    const bytes = Buffer.from(await res.arrayBuffer());
    assert.equal(bytes.length, Number(checkpoint["size_bytes"]));
    assert.equal(createHash("sha256").update(bytes).digest("hex"), checkpoint["sha256"]);
  });

  it("the JavaScript fetch example prints the job id (same Idempotency-Key and body: the original job)", async function () {
    if (jobId === undefined) skipWithReason(this, "the curl example above created no job");
    const code = substitute(between(text, "JavaScript fetch 示例", "Python requests 示例"));
    const file = join(tmp, "example.mjs");
    await writeFile(file, code);
    const { stdout } = await run(process.execPath, [file], { timeout: 30_000 });
    assert.equal(stdout.trim(), jobId);
  });

  async function runPython(env: Record<string, string>): Promise<string> {
    const code = substitute(between(text, "Python requests 示例", "幂等性"));
    const file = join(tmp, "example.py");
    await writeFile(file, code);
    const { stdout } = await run("python3", [file], { timeout: 30_000, env: { ...process.env, ...env, GPU_AGENT_API_KEY: apiKey } });
    return stdout.trim();
  }

  it("the Python requests example prints the job id, with the real requests package", async function () {
    if (jobId === undefined) skipWithReason(this, "the curl example above created no job");
    const installed = await run("python3", ["-c", "import requests"]).then(
      () => true,
      () => false,
    );
    if (!installed) {
      this.test!.title += " (SKIPPED: the requests package is not installed; the stdlib shim case below runs the example)";
      this.skip();
    }
    assert.equal(await runPython({}), jobId);
  });

  it("the Python requests example prints the job id, with a stdlib stand-in for requests (machines without the package)", async function () {
    if (jobId === undefined) skipWithReason(this, "the curl example above created no job");
    // A temporary requests.py (urllib only) first on PYTHONPATH, shadowing any installed package.
    const shimDir = join(tmp, "requests-shim");
    await mkdir(shimDir, { recursive: true });
    await writeFile(join(shimDir, "requests.py"), requestsShim);
    assert.equal(await runPython({ PYTHONPATH: shimDir }), jobId);
    const which = await run("python3", ["-c", "import requests; print(requests.__file__)"], { env: { ...process.env, PYTHONPATH: shimDir } });
    assert.equal(which.stdout.trim(), join(shimDir, "requests.py"), "the shim, not an installed package, ran");
  });
});
