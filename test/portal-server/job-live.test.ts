/**
 * The portal's job page follows the job's live events in headless Chromium: it opens one
 * EventSource on …/events, shows each change as the store commits it (status, the unit's
 * progress, a log line), and reads the job again only when a status changes — it no longer polls.
 */
import assert from "node:assert/strict";
import type { Browser, Page } from "playwright-core";
import { applyAccepted, applyProgress } from "../../src/jobs/lifecycle.ts";
import { transactionWithJobEvents } from "../../src/store/job-events.ts";
import { setPendingReasons } from "../../src/store/jobs.ts";
import type { TestControlPlane } from "../support/control-plane.ts";
import { assignUnit, seedJob, startQuietControlPlane } from "../support/job-events.ts";
import type { PortalCustomer } from "./helpers.ts";
import { createPortalCustomer, ensurePortalBuilt, launchChromium, signInWithKeyboard, watchForBrowserErrors } from "./helpers.ts";

/** Two of the old page's poll intervals (1 s): long enough that a poll would have shown. */
const quietMs = 2500;

describe("the portal's job page follows the job's live events", function () {
  this.timeout(90_000);
  let cp: TestControlPlane;
  let browser: Browser;
  let customer: PortalCustomer;

  before(async () => {
    ensurePortalBuilt();
    // The tests drive each change themselves; no placement cycle writes reasons of its own.
    [cp, browser] = await Promise.all([startQuietControlPlane(), launchChromium()]);
    customer = await createPortalCustomer(cp);
  });
  after(async () => {
    await browser?.close();
    await cp?.stop();
  });

  it("shows each committed change through one EventSource, and reads the job again only when a status moves", async () => {
    const db = cp.plane.deps.db;
    const job = await seedJob(db, customer.customerId, ["train"]);
    const unit = job.units[0]!;
    const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
    context.setDefaultTimeout(15_000);
    const page: Page = await context.newPage();
    const problems = watchForBrowserErrors(page);
    const jobPath = `/api/v1/customer/training-jobs/${job.jobId}`;
    const requests: { type: string; path: string }[] = [];
    page.on("request", (r) => requests.push({ type: r.resourceType(), path: new URL(r.url()).pathname }));
    const jobReads = () => requests.filter((r) => r.path === jobPath).length;

    await page.goto(`${cp.url}/portal/`);
    await signInWithKeyboard(page, customer);
    await page.getByRole("navigation").waitFor();
    await page.goto(`${cp.url}/portal/jobs/${job.jobId}`);
    await page.getByTestId("job-status").getByText("queued").waitFor();
    assert.deepEqual(
      requests.filter((r) => r.path === `${jobPath}/events`).map((r) => r.type),
      ["eventsource"],
      "one EventSource on the job's events",
    );

    const node = await assignUnit(db, unit);
    await applyAccepted(db, node, { unitId: unit, attempt: 1 }, new Date());
    await page.getByTestId("job-status").getByText("running").waitFor();
    await applyProgress(db, node, { unitId: unit, attempt: 1 }, 0.4, { loss: 0.9 });
    await page.getByRole("progressbar", { name: "Progress of train" }).and(page.locator('[aria-valuenow="40"]')).waitFor();
    cp.plane.deps.telemetry.addLog(node, { unitId: unit, attempt: 1 }, { stream: "stdout", lines: ["epoch 1/20 loss=0.9"], firstLine: 0 });
    await cp.plane.deps.telemetry.flushAttempt({ unitId: unit, attempt: 1 });
    await page.getByLabel("Log of train").getByText("epoch 1/20 loss=0.9").waitFor();

    // Nothing moves now: a polling page would read the job again within a second.
    const readsBefore = jobReads();
    await page.waitForTimeout(quietMs);
    assert.equal(jobReads(), readsBefore, "no read of the job while nothing changed");
    assert.deepEqual(problems, []);
    await context.close();
  });

  it("shows why a queued job waits as each new reason's job event brings it", async () => {
    const db = cp.plane.deps.db;
    const job = await seedJob(db, customer.customerId, ["train"]);
    const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
    context.setDefaultTimeout(15_000);
    const page: Page = await context.newPage();
    const problems = watchForBrowserErrors(page);
    // Reads of the job answer with no reason: a reason on the page can only have come with an event.
    const jobPath = `/api/v1/customer/training-jobs/${job.jobId}`;
    await page.route(
      (url) => url.pathname === jobPath,
      async (route) => {
        const response = await route.fetch();
        await route.fulfill({ response, json: { ...((await response.json()) as Record<string, unknown>), pending_reason: "" } });
      },
    );
    await page.goto(`${cp.url}/portal/`);
    await signInWithKeyboard(page, customer);
    await page.getByRole("navigation").waitFor();
    await page.goto(`${cp.url}/portal/jobs/${job.jobId}`);
    await page.getByTestId("job-status").getByText("queued").waitFor();
    for (const reason of ["stage train: the 1 capable node is offline", "stage train: the 1 capable node is busy"]) {
      // What the placement cycle writes when it finds another reason.
      await transactionWithJobEvents(db, (tx) => setPendingReasons(tx, new Map([[job.jobId, reason]])));
      await page.getByTestId("pending-reason").getByText(`Waiting: ${reason}`).waitFor();
    }
    assert.deepEqual(problems, []);
    await context.close();
  });
});
