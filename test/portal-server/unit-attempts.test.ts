/**
 * The portal's compute-unit view in headless Chromium, for a unit whose node was lost after it wrote a
 * checkpoint and which now runs again elsewhere, resumed from it: its GPUs, its latest checkpoint, what its
 * current attempt resumed from ("resumed from attempt 1 (epoch 3)") and each attempt, on a desktop screen
 * and in the unit's card on a phone. The unit gets there through the life cycle's own functions.
 */
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import type { Browser, Page } from "playwright-core";
import { applyAccepted, applyCheckpointReady, requeueUnitsOfNode } from "../../src/jobs/lifecycle.ts";
import { insertCheckpointUpload } from "../../src/store/checkpoints.ts";
import type { TestControlPlane } from "../support/control-plane.ts";
import { startTestControlPlane } from "../support/control-plane.ts";
import { assignUnit, seedJob } from "../support/job-events.ts";
import type { PortalCustomer } from "./helpers.ts";
import { createPortalCustomer, ensurePortalBuilt, launchChromium, phoneLayout, signInWithKeyboard, watchForBrowserErrors } from "./helpers.ts";

describe("the portal's compute-unit view: GPUs, attempts and what each resumed from", function () {
  this.timeout(90_000);
  let cp: TestControlPlane;
  let browser: Browser;
  let customer: PortalCustomer;
  let jobId = "";

  before(async () => {
    ensurePortalBuilt();
    [cp, browser] = await Promise.all([startTestControlPlane(), launchChromium()]);
    customer = await createPortalCustomer(cp);
    const db = cp.plane.deps.db;
    const job = await seedJob(db, customer.customerId, ["train"]);
    jobId = job.jobId;
    const unit = job.units[0]!;
    await db.query(`UPDATE compute_units SET required_gpu_count = 2, gpu_models = '{A100}' WHERE id = $1`, [unit]);
    // Attempt 1 runs, stores a checkpoint at epoch 3, and its node is lost.
    const first = await assignUnit(db, unit);
    await applyAccepted(db, first, { unitId: unit, attempt: 1 }, new Date());
    const checkpoint = { name: "ckpt-3.pt", sha256: "a".repeat(64), metrics: { loss: 0.4321, epoch: 3 } };
    await insertCheckpointUpload(db, {
      blob_key: `artifacts/${unit}/checkpoints/1/${randomUUID()}-ckpt-3.pt`,
      unit_id: unit,
      job_id: jobId,
      customer_id: customer.customerId,
      attempt: 1,
      name: checkpoint.name,
      size_bytes: 3 * 1024 * 1024,
      sha256: checkpoint.sha256,
      stored_at: new Date(),
    });
    assert.equal(await applyCheckpointReady(db, first, { unitId: unit, attempt: 1 }, checkpoint, new Date()), "recorded");
    await requeueUnitsOfNode(db, first, "the node stopped sending heartbeats", { now: new Date() });
    // Attempt 2 runs on another node, from that checkpoint.
    const second = await assignUnit(db, unit);
    await db.query(`UPDATE compute_units SET gpu_indexes = '{0,1}' WHERE id = $1`, [unit]);
    await applyAccepted(db, second, { unitId: unit, attempt: 2 }, new Date());
  });
  after(async () => {
    await browser?.close();
    await cp?.stop();
  });

  async function jobPage(viewport: { width: number; height: number }): Promise<{ page: Page; problems: string[] }> {
    const context = await browser.newContext({ viewport });
    context.setDefaultTimeout(15_000);
    const page = await context.newPage();
    const problems = watchForBrowserErrors(page);
    await page.goto(`${cp.url}/portal/`);
    await signInWithKeyboard(page, customer);
    await page.getByRole("heading", { name: "Training jobs" }).waitFor();
    await page.goto(`${cp.url}/portal/jobs/${jobId}`);
    await page.getByTestId("job-status").getByText("running").waitFor();
    return { page, problems };
  }

  it("shows the unit's GPUs, its constraints, its latest checkpoint and what its attempt resumed from", async () => {
    const { page, problems } = await jobPage({ width: 1280, height: 900 });
    await page.getByTestId("gpus-train").getByText("2 (GPU 0, 1)").waitFor();
    await page.getByText("Needs model A100").waitFor();
    await page.getByTestId("resumed-train").getByText("Attempt 2 resumed from attempt 1 (epoch 3, loss 0.4321)").waitFor();
    await page.getByTestId("checkpoint-train").getByText("Latest checkpoint: ckpt-3.pt from attempt 1 (epoch 3, loss 0.4321), 3.0 MiB").waitFor();
    const attempts = page.getByTestId("attempts-train");
    await attempts.getByText("2 attempts").click();
    const items = await attempts.getByRole("listitem").allTextContents();
    assert.equal(items.length, 2);
    assert.match(items[0] ?? "", /^1 on node [0-9a-f]{8}: lost — the node stopped sending heartbeats$/);
    assert.match(items[1] ?? "", /^2 on node [0-9a-f]{8}: running, resumed from attempt 1 \(epoch 3, loss 0\.4321\)$/);
    assert.deepEqual(problems, []);
  });

  it("fits the unit's card on a phone (390×844)", async () => {
    const { page, problems } = await jobPage({ width: 390, height: 844 });
    await page.getByTestId("resumed-train").waitFor();
    const layout = await phoneLayout(page);
    assert.ok(layout.scrollWidth <= layout.viewportWidth, `no sideways scroll (${layout.scrollWidth} px wide)`);
    assert.deepEqual(problems, []);
  });
});
