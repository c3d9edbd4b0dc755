/**
 * Takes the README's portal screenshots: starts a throwaway control plane and
 * agent, runs the tiny-mlp example job for a new customer, signs in to the
 * portal in headless Chromium and saves
 *   docs/portal-job.png    the job page (desktop width)
 *   docs/portal-phone.png  the usage page on a phone-sized screen
 * Run with `npm run screenshot:portal` after changing the portal.
 */
import { readFile, rm, mkdtemp } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { zipDirectory } from "../src/cli/files.ts";
import { request, startTestAgent, startTestControlPlane, uploadResource, waitFor } from "../test/support/control-plane.ts";
import { createPortalCustomer, ensurePortalBuilt, launchChromium } from "../test/portal-server/helpers.ts";

const root = join(import.meta.dirname, "..");
const example = join(root, "examples", "tiny-mlp");

ensurePortalBuilt();
const work = await mkdtemp(join(tmpdir(), "portal-shot-"));
const cp = await startTestControlPlane();
const agent = await startTestAgent(cp, { trustLevel: "controlled", devGpuMib: 24576 });
const browser = await launchChromium();
try {
  const customer = await createPortalCustomer(cp, 5000);
  const auth = { "x-api-key": customer.apiKey };
  await zipDirectory(join(example, "package"), join(work, "package.zip"));
  const dataset = await uploadResource(cp, customer.apiKey, "datasets", "tiny-mlp-dataset.csv", await readFile(join(example, "dataset.csv")), { format: "csv" });
  const pkg = await uploadResource(cp, customer.apiKey, "training-packages", "tiny-mlp", await readFile(join(work, "package.zip")), { entrypoint: "train.py" });
  const created = await request(cp, "POST", "/api/v1/customer/training-jobs", {
    headers: auth,
    body: { name: "tiny-mlp-fine-tune", dataset_id: dataset["id"], training_package_id: pkg["id"], required_vram_mb: 8000, required_disk_mb: 1024, max_runtime_seconds: 600, sensitivity: "low_sensitive" },
  });
  const jobId = created.body["id"] as string;
  await waitFor(
    "the job to complete",
    async () => ((await request(cp, "GET", `/api/v1/customer/training-jobs/${jobId}`, { headers: auth })).body["status"] === "completed" ? true : undefined),
    90_000,
  );

  const desktop = await browser.newContext({ viewport: { width: 1280, height: 900 }, deviceScaleFactor: 1 });
  const page = await desktop.newPage();
  await page.goto(`${cp.url}/portal/jobs/${jobId}`);
  await page.getByLabel("E-mail").fill(customer.email);
  await page.getByLabel("Password").fill(customer.password);
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.getByLabel("Log of train").getByText(/epoch 20\/20/).waitFor();
  await page.getByTestId("loss-chart-train").waitFor();
  await page.mouse.move(0, 0);
  // The top of the page: status, DAG, metrics and the loss curve (artifacts and logs follow below).
  await page.screenshot({ path: join(root, "docs", "portal-job.png"), fullPage: true, clip: { x: 0, y: 0, width: 1280, height: 1460 } });

  const phone = await browser.newContext({ viewport: { width: 390, height: 844 }, deviceScaleFactor: 1, storageState: await desktop.storageState() });
  const small = await phone.newPage();
  await small.goto(`${cp.url}/portal/usage`);
  await small.getByTestId("credits-chart").waitFor();
  await small.screenshot({ path: join(root, "docs", "portal-phone.png") });
  process.stdout.write("saved docs/portal-job.png and docs/portal-phone.png\n");
} finally {
  await browser.close();
  await agent.stop();
  await cp.stop();
  await rm(work, { recursive: true, force: true });
}
