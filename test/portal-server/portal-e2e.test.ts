/**
 * The portal end to end in headless Chromium, against a real control plane
 * and a real agent running the tiny-mlp example: sign in, create an API key,
 * upload the example dataset and package, create a job and watch it complete
 * with the progress bar moving, the train stage's log tail and loss curve
 * growing while it runs, download an artifact, see usage, sign out;
 * and a second customer (on a phone-sized screen, keyboard only) cannot open
 * the first one's job by its URL. Jobs that ask for more GPU memory than the
 * running node has wait on a node with a big enough GPU that was enrolled and
 * went away, so they are accepted and show why they wait. A failing test leaves screenshots in
 * test-output/portal/.
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Browser, BrowserContext, Page } from "playwright-core";
import { zipDirectory } from "../../src/cli/files.ts";
import type { TestAgent, TestControlPlane } from "../support/control-plane.ts";
import { adminRequest, request, startTestAgent, startTestControlPlane, uploadResource, waitFor } from "../support/control-plane.ts";
import type { PortalCustomer } from "./helpers.ts";
import {
  accessibilityViolations,
  createPortalCustomer,
  ensurePortalBuilt,
  launchChromium,
  phoneLayout,
  screenshotAll,
  signInWithKeyboard,
  watchForBrowserErrors,
} from "./helpers.ts";

const example = join(import.meta.dirname, "..", "..", "examples", "tiny-mlp");

describe("the web portal in a browser", function () {
  this.timeout(120_000);
  let cp: TestControlPlane;
  let agent: TestAgent;
  let browser: Browser;
  let work: string;
  let packageZip: string;
  let first: PortalCustomer;
  let firstJobId = "";
  const contexts: BrowserContext[] = [];

  before(async () => {
    ensurePortalBuilt();
    work = await mkdtemp(join(tmpdir(), "portal-e2e-"));
    packageZip = join(work, "tiny-mlp.zip");
    // Telemetry written every 0.5 s (2 s in production), so the 4-second train stage is seen live more than once;
    // a node silent for 5 s is unreachable (30 s in production), so the stopped node below is soon known gone.
    [cp, browser] = await Promise.all([startTestControlPlane({ telemetry: { flushIntervalMs: 500 }, agents: { unreachableAfterSeconds: 5 } }), launchChromium(), zipDirectory(join(example, "package"), packageZip)]).then(
      ([c, b]) => [c, b] as const,
    );
    // An 80 GiB GPU that was enrolled and is gone: a job asking 80,000 MB is one some node could run (admitted),
    // and it waits, queued, with its pending reason, instead of being refused with NO_CAPABLE_NODE.
    const big = await startTestAgent(cp, { trustLevel: "controlled", devGpuMib: 81_920 });
    await waitForNodeState(big.nodeId, (state) => state === "online");
    await big.stop();
    await waitForNodeState(big.nodeId, (state) => state === "unreachable");
    agent = await startTestAgent(cp, { trustLevel: "controlled", devGpuMib: 24576 });
    first = await createPortalCustomer(cp);
  });

  async function waitForNodeState(nodeId: string, wanted: (state: string) => boolean): Promise<void> {
    await waitFor(
      `node ${nodeId} in the wanted state`,
      async () => {
        const nodes = (await adminRequest(cp, "GET", "/api/v1/admin/nodes?limit=100"))["data"] as Array<{ id: string; state: string }>;
        return nodes.some((n) => n.id === nodeId && wanted(n.state)) ? true : undefined;
      },
      30_000,
    );
  }

  afterEach(async function () {
    if (this.currentTest?.state === "failed") {
      const saved = await screenshotAll(contexts, this.currentTest.fullTitle());
      if (saved.length > 0) console.error(`  screenshots: ${saved.join(", ")}`);
    }
  });

  after(async () => {
    for (const context of contexts) await context.close().catch(() => undefined);
    await browser?.close();
    await agent?.stop();
    await cp?.stop();
    if (work !== undefined) await rm(work, { recursive: true, force: true });
  });

  async function newPage(options: { viewport?: { width: number; height: number } } = {}): Promise<{ page: Page; problems: string[] }> {
    const context = await browser.newContext({ acceptDownloads: true, viewport: options.viewport ?? { width: 1280, height: 900 } });
    contexts.push(context);
    context.setDefaultTimeout(15_000);
    const page = await context.newPage();
    return { page, problems: watchForBrowserErrors(page) };
  }

  it("signs in, creates an API key, uploads, runs a job to completion, downloads an artifact, shows usage and signs out", async () => {
    const { page, problems } = await newPage();
    const started = Date.now();

    // A deep link while signed out lands on sign-in and comes back after it.
    await page.goto(`${cp.url}/portal/jobs`);
    await page.getByRole("heading", { name: "Sign in to GPU-Agent" }).waitFor();
    assert.match(page.url(), /\/portal\/sign-in\?next=%2Fjobs$/);
    const a11y: string[] = [];
    const checkA11y = async (where: string) => a11y.push(...(await accessibilityViolations(page)).map((v) => `${where}: ${v}`));
    await checkA11y("sign-in");
    await page.getByLabel("E-mail").fill(first.email);
    await page.getByLabel("Password").fill("not the password");
    await page.getByRole("button", { name: "Sign in" }).click();
    await page.getByRole("alert").getByText("The e-mail or the password is wrong.").waitFor();
    await page.getByRole("alert").getByText("CUSTOMER_AUTH_REQUIRED").waitFor();
    await page.getByLabel("Password").fill(first.password);
    await page.getByRole("button", { name: "Sign in" }).click();
    await page.getByRole("heading", { name: "Training jobs" }).waitFor();
    assert.match(page.url(), /\/portal\/jobs$/);
    const cookies = await page.context().cookies();
    const session = cookies.find((c) => c.name === "gpu_agent_session");
    assert.ok(session !== undefined, "the session cookie is set");
    assert.equal(session.httpOnly, true);
    assert.equal(session.sameSite, "Strict");
    assert.equal(await page.evaluate<string>("document.cookie"), "", "no script can read the session");

    // API key: created with two scopes, the plaintext shown once, and it works.
    await page.getByRole("navigation", { name: "Main" }).getByRole("link", { name: "API keys" }).click();
    await page.getByRole("heading", { name: "API keys", level: 1 }).waitFor();
    await page.getByLabel("Name").fill("ci pipeline");
    await page.getByLabel(/usage:read/).uncheck();
    await page.getByLabel(/webhook:write/).uncheck();
    await page.getByRole("button", { name: "Create key" }).click();
    const key = await page.getByTestId("secret-value").inputValue();
    assert.match(key, /^sk_live_/);
    await page.getByRole("button", { name: "Copy" }).click();
    await page.getByText("Copied to the clipboard.").waitFor();
    const withKey = await request(cp, "GET", "/api/v1/customer/datasets", { headers: { "x-api-key": key } });
    assert.equal(withKey.status, 200);
    const denied = await request(cp, "GET", "/api/v1/customer/usage/summary", { headers: { "x-api-key": key } });
    assert.equal(denied.body["error"] !== undefined && (denied.body["error"] as { code: string }).code, "API_KEY_SCOPE_DENIED");
    await page.getByRole("button", { name: "I have stored it" }).click();
    assert.equal(await page.getByTestId("secret-value").count(), 0, "the key is shown only once");
    await page.getByRole("row", { name: /ci pipeline/ }).getByText("active").waitFor();
    await checkA11y("API keys");

    // Dataset and package: upload with a progress bar, verified on the server.
    await page.getByRole("link", { name: "Datasets" }).click();
    await page.getByLabel("File").setInputFiles(join(example, "dataset.csv"));
    await page.getByRole("button", { name: "Upload", exact: true }).click();
    await page.getByRole("status").getByText(/is uploaded and verified/).waitFor();
    assert.equal(await page.getByRole("progressbar", { name: "Upload progress" }).getAttribute("aria-valuenow"), "100");
    await page.getByRole("row", { name: /dataset\.csv/ }).getByText("ready").waitFor();
    await checkA11y("datasets");

    await page.getByRole("link", { name: "Training packages" }).click();
    await page.getByLabel("File").setInputFiles(packageZip);
    await page.getByLabel("Name").fill("tiny-mlp");
    await page.getByRole("button", { name: "Upload", exact: true }).click();
    await page.getByRole("status").getByText(/“tiny-mlp” is uploaded and verified/).waitFor();
    await page.getByRole("row", { name: /tiny-mlp/ }).getByText("train.py · prepare → train → evaluate").waitFor();

    // A job from the form with seed 001's fields.
    await page.getByRole("link", { name: "Training jobs" }).click();
    await page.getByRole("link", { name: "New training job" }).click();
    await page.getByLabel("Name").fill("tiny-mlp-fine-tune");
    await page.getByLabel("GPU memory (MB)").fill("8000");
    await page.getByLabel("Disk (MB)").fill("1024");
    await page.getByLabel("Maximum run time (s)").fill("600");
    await page.getByLabel(/Low sensitivity/).check();
    // The GPU fields are checked before anything is sent, each message beside its field.
    await page.getByLabel("GPUs per unit").fill("9");
    await page.getByLabel("Minimum compute capability").fill("8");
    await page.getByLabel("Queue timeout (s)").fill("30");
    await page.getByRole("button", { name: "Create training job" }).click();
    await page.getByText("Ask for 1 to 8 GPUs (all on one machine).").waitFor();
    await page.getByText("Write it as major.minor, e.g. 8.0, or leave it empty for any.").waitFor();
    await page.getByText(/^Between 60 seconds and 2,592,000 \(30 days\), or empty for one day\.$/).waitFor();
    assert.equal(await page.getByLabel("GPUs per unit").getAttribute("aria-invalid"), "true");
    await checkA11y("new job, with messages");
    await page.getByLabel("GPUs per unit").fill("1");
    await page.getByLabel("Minimum compute capability").fill("");
    await page.getByLabel("Queue timeout (s)").fill("3600");
    assert.equal(await page.locator(".field-error").count(), 0, "the messages go once the fields are right");
    await checkA11y("new job");
    await page.getByRole("button", { name: "Create training job" }).click();
    await page.getByRole("heading", { name: "tiny-mlp-fine-tune" }).waitFor();
    await page.getByTestId("job-gpus").getByText(/^1 of one machine, each with 8,000 MB of GPU memory free$/).waitFor();
    await page.getByTestId("job-gpu-constraints").getByText("none").waitFor();
    await page.getByText("1 h 0 min").waitFor();
    firstJobId = /\/portal\/jobs\/([0-9a-f-]{36})$/.exec(page.url())?.[1] ?? "";
    assert.notEqual(firstJobId, "", page.url());

    // Watch it: the progress bar moves through values between 0 and 100 and ends at 100; while the train
    // stage runs, its log tail and its loss curve grow on the page (live, not from the log artifact).
    const bar = page.getByRole("progressbar", { name: "Job progress" });
    const seen = new Set<number>();
    const liveLogLines = new Set<number>();
    const liveCurvePoints = new Set<number>();
    const deadline = Date.now() + 60_000;
    for (;;) {
      seen.add(Number(await bar.getAttribute("aria-valuenow")));
      const status = await page.getByTestId("job-status").textContent();
      if (status === "completed") break;
      if ((await page.getByTestId("dag").locator('[data-unit="train"]').getAttribute("data-status")) === "running") {
        const log = page.getByTestId("log-train");
        if ((await log.count()) > 0 && /epoch \d+\/20 loss=/.test((await log.textContent()) ?? "")) liveLogLines.add(Number(await log.getAttribute("data-lines")));
        const curve = page.getByTestId("loss-chart-train");
        if ((await curve.count()) > 0) liveCurvePoints.add(Number(await curve.getAttribute("data-points")));
      }
      assert.ok(status === "queued" || status === "running", `job ended ${status}`);
      assert.ok(Date.now() < deadline, `the job did not complete; progress seen: ${[...seen].join(", ")}\n${agent.output().slice(-2000)}`);
      await page.waitForTimeout(100);
    }
    seen.add(Number(await bar.getAttribute("aria-valuenow")));
    const between = [...seen].filter((v) => v > 0 && v < 100);
    assert.ok(between.length >= 2, `the bar moved through intermediate values: ${[...seen].sort((a, b) => a - b).join(", ")}`);
    assert.ok(seen.has(100));
    assert.ok(liveLogLines.size >= 2, `the train log grew while it ran (line counts seen: ${[...liveLogLines].join(", ")})`);
    assert.ok(liveCurvePoints.size >= 1, "the loss curve was drawn while the train stage ran");

    // The DAG, the loss curve, the logs and the artifacts.
    for (const unit of ["prepare", "train", "evaluate"]) {
      assert.equal(await page.getByTestId("dag").locator(`[data-unit="${unit}"]`).getAttribute("data-status"), "completed");
    }
    // The whole curve from the server's history of the train stage's reports (the agent sends at most four a
    // second, the latest of each moment, so a 0.2 s epoch may share a report), ending at the last epoch.
    const curve = page.getByTestId("loss-chart-train");
    await curve.locator("svg[aria-label$='at epoch 20']").waitFor();
    assert.ok(Number(await curve.getAttribute("data-points")) >= 10, `${await curve.getAttribute("data-points")} points`);
    // Each stage's log, complete once it ended, without the progress protocol's lines.
    await page.getByTestId("log-train").getByRole("heading", { name: "train" }).waitFor();
    await page.getByLabel("Log of train").getByText(/epoch 20\/20 loss=/).waitFor();
    const trainLog = (await page.getByLabel("Log of train").textContent()) ?? "";
    assert.equal(trainLog.match(/^epoch \d+\/20 loss=/gm)?.length, 20, "every epoch line once, none twice");
    assert.doesNotMatch(trainLog, /@@gpu-agent/);
    await page.getByLabel("Log of prepare").getByText(/prepared 400 rows/).waitFor();
    await page.getByLabel("Log of evaluate").getByText(/evaluated \d+ test rows/).waitFor();
    const [download] = await Promise.all([page.waitForEvent("download"), page.getByRole("button", { name: "Download model.ckpt" }).click()]);
    const saved = join(work, "model.ckpt");
    await download.saveAs(saved);
    const artifacts = await request(cp, "GET", `/api/v1/customer/training-jobs/${firstJobId}/artifacts`, { headers: { "x-api-key": first.apiKey } });
    const ckpt = (artifacts.body["data"] as Array<{ name: string; sha256: string }>).find((a) => a.name === "model.ckpt");
    assert.equal(createHash("sha256").update(await readFile(saved)).digest("hex"), ckpt?.sha256, "the downloaded bytes are the artifact's");
    await checkA11y("job");

    // The list filters by status.
    await page.getByRole("link", { name: "Training jobs" }).click();
    await page.getByLabel("Status").selectOption("completed");
    await page.getByRole("row", { name: /tiny-mlp-fine-tune/ }).waitFor();
    await page.getByLabel("Status").selectOption("failed");
    await page.getByText("No failed jobs.").waitFor();

    // Usage: the job's GPU time and credits, charts, and a CSV export.
    await page.getByRole("link", { name: "Usage" }).click();
    await page.getByTestId("usage-summary").waitFor();
    const summary = await request(cp, "GET", "/api/v1/customer/usage/summary", { headers: { "x-api-key": first.apiKey } });
    assert.ok(Number(summary.body["credits_debited_total"]) > 0);
    await page.getByTestId("usage-summary").getByText(Number(summary.body["credits_debited_total"]).toLocaleString("en")).first().waitFor();
    await page.getByTestId("credits-chart").waitFor();
    await page.getByTestId("gpu-chart").waitFor();
    await checkA11y("usage");
    const [csv] = await Promise.all([page.waitForEvent("download"), page.getByRole("button", { name: "Download usage CSV" }).click()]);
    const csvPath = join(work, "usage.csv");
    await csv.saveAs(csvPath);
    assert.match(await readFile(csvPath, "utf8"), /^date,/);

    // Sign out: the session is revoked on the server, and the app is behind sign-in again.
    await page.getByRole("button", { name: "Sign out" }).click();
    await page.getByText("You are signed out.").waitFor();
    const replay = await request(cp, "GET", "/api/v1/customer/auth/me", { headers: { cookie: `gpu_agent_session=${session.value}` } });
    assert.equal(replay.status, 401, "the old cookie no longer works");
    await page.goto(`${cp.url}/portal/jobs/${firstJobId}`);
    await page.getByRole("heading", { name: "Sign in to GPU-Agent" }).waitFor();

    assert.deepEqual(problems, [], "no script errors and no Content-Security-Policy violations");
    assert.deepEqual(a11y, [], "no WCAG 2.1 A/AA violations found by axe-core");
    console.log(`      (portal flow took ${((Date.now() - started) / 1000).toFixed(1)} s)`);
  });

  it("does not show one customer's job to another, even by its URL (phone screen, keyboard only)", async () => {
    assert.notEqual(firstJobId, "", "needs the first test's job");
    const second = await createPortalCustomer(cp);
    const { page, problems } = await newPage({ viewport: { width: 390, height: 844 } });
    await page.goto(`${cp.url}/portal/jobs/${firstJobId}`);
    await page.getByRole("heading", { name: "Sign in to GPU-Agent" }).waitFor();
    await signInWithKeyboard(page, second);
    await page.getByRole("heading", { name: "Training job" }).waitFor();
    const alert = page.getByRole("alert");
    await alert.getByText("This training job does not exist, or it belongs to another account.").waitFor();
    await alert.getByText("JOB_NOT_FOUND").waitFor();
    assert.equal(await page.getByText("tiny-mlp-fine-tune").count(), 0);

    // On a phone the navigation sits behind a Menu button.
    const nav = page.getByRole("navigation", { name: "Main" });
    assert.equal(await nav.isVisible(), false);
    await page.getByRole("button", { name: "Menu" }).click();
    await nav.getByRole("link", { name: "Training jobs" }).click();
    await page.getByText("No training jobs yet.").waitFor();
    const fits = async (what: string) => {
      const width = await page.evaluate<number>("document.documentElement.scrollWidth");
      assert.ok(width <= 390, `${what} fits a phone screen (scroll width ${width})`);
    };
    await fits("the jobs page");
    await page.getByRole("button", { name: "Menu" }).click();
    await nav.getByRole("link", { name: "Usage" }).click();
    await page.getByTestId("credits-chart").waitFor();
    await fits("the usage page");
    assert.deepEqual(problems, []);
  });

  it("fits every page on a phone (390×844) with a customer's data: no sideways scroll, no blank band, progress figures in full", async () => {
    assert.notEqual(firstJobId, "", "needs the first test's completed job (progress, metrics, artifacts, logs)");
    // More jobs beside the completed one: one waiting for a GPU no node has, with a long name, and a cancelled one;
    // a webhook with a delivery.
    const auth = { "x-api-key": first.apiKey };
    const job = (await request(cp, "GET", `/api/v1/customer/training-jobs/${firstJobId}`, { headers: auth })).body;
    const inputs = { dataset_id: job["dataset_id"], training_package_id: job["training_package_id"], max_runtime_seconds: 600 };
    const waiting = await request(cp, "POST", "/api/v1/customer/training-jobs", {
      headers: auth,
      body: { ...inputs, name: "resnet50-imagenet-subset-learning-rate-sweep-0.003", required_vram_mb: 80_000 },
    });
    const cancelled = await request(cp, "POST", "/api/v1/customer/training-jobs", { headers: auth, body: { ...inputs, name: "cancelled-run", required_vram_mb: 80_000 } });
    assert.equal(waiting.status, 201, JSON.stringify(waiting.body));
    assert.equal(cancelled.status, 201, JSON.stringify(cancelled.body));
    await request(cp, "POST", `/api/v1/customer/training-jobs/${cancelled.body["id"] as string}/cancel`, { headers: auth, body: {} });
    const hook = await request(cp, "POST", "/api/v1/customer/webhooks", {
      headers: auth,
      body: { url: "https://hooks.example.com/gpu-agent/notifications/with/a/rather/long/path", events: ["job.completed", "job.failed"], description: "team chat" },
    });
    await request(cp, "POST", `/api/v1/customer/webhooks/${(hook.body["webhook"] as { id: string }).id}/test`, { headers: auth, body: {} });

    const { page, problems } = await newPage({ viewport: { width: 390, height: 844 } });
    await page.goto(`${cp.url}/portal/jobs`);
    await page.getByLabel("E-mail").fill(first.email);
    await page.getByLabel("Password").fill(first.password);
    await page.getByRole("button", { name: "Sign in" }).click();
    await page.getByRole("heading", { name: "Training jobs" }).waitFor();

    const pages: ReadonlyArray<{ path: string; loaded: (p: Page) => Promise<void> }> = [
      {
        path: "/jobs",
        loaded: async (p) => {
          await p.getByRole("link", { name: "cancelled-run" }).waitFor();
          // The waiting job's reason, long as it is, is part of the phone layout checked below.
          await p.getByTestId("job-pending-reason").getByText(/^Waiting: .+/).waitFor();
        },
      },
      { path: `/jobs/${firstJobId}`, loaded: (p) => p.getByLabel("Log of evaluate").getByText(/evaluated/).waitFor() },
      { path: "/jobs/new", loaded: (p) => p.getByRole("button", { name: "Create training job" }).waitFor() },
      { path: "/datasets", loaded: (p) => p.getByTestId("datasets-table").waitFor() },
      { path: "/packages", loaded: (p) => p.getByTestId("training-packages-table").waitFor() },
      { path: "/usage", loaded: (p) => p.getByRole("cell", { name: /tiny-mlp-fine-tune: train/ }).waitFor() },
      { path: "/api-keys", loaded: (p) => p.getByRole("button", { name: /^Revoke / }).first().waitFor() },
      {
        path: "/webhooks",
        loaded: async (p) => {
          await p.getByRole("button", { name: "Recent deliveries" }).click();
          await p.getByText("webhook.test").waitFor();
        },
      },
    ];
    const faults: string[] = [];
    for (const { path, loaded } of pages) {
      await page.goto(`${cp.url}/portal${path}`);
      await loaded(page);
      const layout = await phoneLayout(page);
      if (layout.scrollWidth > layout.viewportWidth) faults.push(`${path}: scrolls sideways (${layout.scrollWidth} px wide)`);
      if (layout.mainOffset > 1) faults.push(`${path}: ${layout.mainOffset} px between the header and the page`);
      // The widest legitimate gap is a heading's top margin (about 30 px); 96 px of nothing is a blank band.
      if (layout.largestGap.height > 96) faults.push(`${path}: a ${layout.largestGap.height} px blank band at y ${layout.largestGap.atY}`);
      for (const figure of layout.hiddenProgressFigures) faults.push(`${path}: progress figure ${figure} is cut off`);
    }
    // The jobs list shows every job's progress figure (the completed one's 100 %) on the phone.
    await page.goto(`${cp.url}/portal/jobs`);
    await page.getByRole("link", { name: "cancelled-run" }).waitFor();
    assert.equal(await page.getByTestId("jobs-table").locator(".progress-text").count(), 3);
    await page.getByTestId("jobs-table").getByText("100 %").waitFor();
    // Each job's GPU count, and a reason only on the job still queued.
    assert.deepEqual(await page.getByTestId("job-gpu-count").allTextContents(), ["1", "1", "1"]);
    assert.equal(await page.getByTestId("job-pending-reason").count(), 1);
    assert.deepEqual(faults, []);

    // The desktop keeps its tables: column headers on top, one row per job.
    await page.setViewportSize({ width: 1280, height: 900 });
    assert.equal(await page.evaluate<string>(`getComputedStyle(document.querySelector('[data-testid="jobs-table"] tbody tr')).display`), "table-row");
    assert.ok(await page.getByRole("columnheader", { name: "Progress" }).isVisible());
    await request(cp, "POST", `/api/v1/customer/training-jobs/${waiting.body["id"] as string}/cancel`, { headers: auth, body: {} });
    assert.deepEqual(problems, []);
  });

  it("cancels a job that cannot be placed, and manages a webhook (errors in words with their code)", async () => {
    const customer = await createPortalCustomer(cp);
    const dataset = await uploadResource(cp, customer.apiKey, "datasets", "data.csv", await readFile(join(example, "dataset.csv")));
    const pkg = await uploadResource(cp, customer.apiKey, "training-packages", "tiny-mlp", await readFile(packageZip));
    // More VRAM than the test node has: the job waits, queued, with the placer's reason on its unit.
    const created = await request(cp, "POST", "/api/v1/customer/training-jobs", {
      headers: { "x-api-key": customer.apiKey },
      body: { name: "too-big", dataset_id: dataset["id"], training_package_id: pkg["id"], required_vram_mb: 80_000, max_runtime_seconds: 600 },
    });
    assert.equal(created.status, 201, JSON.stringify(created.body));
    const { page, problems } = await newPage();
    page.on("dialog", (dialog) => void dialog.accept());
    await page.goto(`${cp.url}/portal/jobs/${created.body["id"] as string}`);
    await page.getByLabel("E-mail").fill(customer.email);
    await page.getByLabel("Password").fill(customer.password);
    await page.getByRole("button", { name: "Sign in" }).click();
    await page.getByRole("heading", { name: "too-big" }).waitFor();
    // Why it waits, from the placement cycle, while it is queued.
    await page.getByTestId("pending-reason").getByText(/^Waiting: .+/).waitFor({ timeout: 30_000 });
    await page.getByRole("button", { name: "Cancel job" }).click();
    await page.getByTestId("job-status").getByText("cancelled").waitFor();
    assert.equal(await page.getByTestId("pending-reason").count(), 0, "an ended job waits for nothing");
    assert.equal(await page.getByRole("button", { name: "Cancel job" }).count(), 0);

    await page.getByRole("link", { name: "Webhooks" }).click();
    await page.getByLabel("Endpoint URL").fill("https://127.0.0.1/hook");
    await page.getByRole("button", { name: "Add webhook" }).click();
    await page.getByRole("alert").getByText("Webhook addresses must be public https:// URLs").waitFor();
    await page.getByRole("alert").getByText("WEBHOOK_INVALID_URL").waitFor();
    await page.getByLabel("Endpoint URL").fill("https://hooks.example.com/gpu-agent");
    await page.getByLabel("Description").fill("build notifications");
    await page.getByRole("button", { name: "Add webhook" }).click();
    const first = await page.getByTestId("secret-value").inputValue();
    assert.match(first, /\S{16,}/);
    await page.getByRole("button", { name: "I have stored it" }).click();
    await page.getByRole("button", { name: "Send test" }).click();
    await page.getByText(/A test event was queued/).waitFor();
    await page.getByRole("cell", { name: "webhook.test" }).waitFor();
    await page.getByRole("button", { name: "Rotate secret" }).click();
    const rotated = await page.getByTestId("secret-value").inputValue();
    assert.notEqual(rotated, first);
    await page.getByRole("button", { name: "I have stored it" }).click();
    await page.getByRole("button", { name: "Delete" }).click();
    await page.getByText("No webhooks yet.").waitFor();
    assert.deepEqual(problems, []);
  });
});
