/**
 * Browser tests of the portal: the portal bundle built once, Debian's
 * Chromium driven by playwright-core (no browser download), customers with a
 * known password, and screenshots of every open page when a test fails.
 */
import { execFileSync } from "node:child_process";
import { mkdir, readFile } from "node:fs/promises";
import { join } from "node:path";
import type { Browser, BrowserContext, Page } from "playwright-core";
import { chromium } from "playwright-core";
import type { TestControlPlane } from "../support/control-plane.ts";
import { adminRequest } from "../support/control-plane.ts";

const repoRoot = join(import.meta.dirname, "..", "..");

/** Where failing tests leave their screenshots (TEST_OUTPUT_DIR, default test-output/ at the repository root). */
export const testOutputDir = join(process.env["TEST_OUTPUT_DIR"] ?? join(repoRoot, "test-output"), "portal");

/** Builds portal/dist unless it is up to date (npm test already did; `npx mocha test/portal` may not have). */
export function ensurePortalBuilt(): void {
  execFileSync(process.execPath, [join(repoRoot, "scripts", "build-portal.ts")], { stdio: ["ignore", "ignore", "inherit"] });
}

/** The flags this closed network needs (no background connections, no sandbox as root, no GPU). */
export const chromiumArgs = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];

/** Launches Debian's Chromium (a fresh temporary profile per launch). */
export function launchChromium(): Promise<Browser> {
  return chromium.launch({ executablePath: process.env["CHROMIUM_PATH"] ?? "/usr/bin/chromium", headless: true, args: chromiumArgs, timeout: 30_000 });
}

/** A customer with a password, as the admin API creates it. */
export interface PortalCustomer {
  customerId: string;
  email: string;
  password: string;
  apiKey: string;
}

/** Creates a customer that can sign in to the portal. */
export async function createPortalCustomer(cp: TestControlPlane, credits = 10_000): Promise<PortalCustomer> {
  const email = `portal-${Math.random().toString(36).slice(2)}@example.com`;
  const password = "correct horse battery staple";
  const body = await adminRequest(cp, "POST", "/api/v1/admin/customers", { email, password, credits });
  return { customerId: body["customer_id"] as string, email, password, apiKey: body["api_key"] as string };
}

/**
 * Collects what the browser reports as broken: uncaught page errors and
 * console errors (a Content-Security-Policy violation is one).
 */
export function watchForBrowserErrors(page: Page): string[] {
  const problems: string[] = [];
  page.on("pageerror", (error) => problems.push(`page error: ${error.message}`));
  page.on("console", (message) => {
    // API refusals the tests provoke on purpose (wrong password, another customer's job, a bad webhook URL)
    // log "Failed to load resource … status of 4xx"; the page shows them, so only 5xx and the rest count.
    if (message.type() === "error" && !/status of 4\d\d\b/.test(message.text())) problems.push(`console: ${message.text()}`);
  });
  return problems;
}

/** Saves a full-page screenshot of every page of `contexts` into {@link testOutputDir}; returns the paths. */
export async function screenshotAll(contexts: readonly (BrowserContext | undefined)[], testTitle: string): Promise<string[]> {
  await mkdir(testOutputDir, { recursive: true });
  const slug = testTitle.replace(/[^A-Za-z0-9]+/g, "-").slice(0, 80);
  const saved: string[] = [];
  let n = 0;
  for (const context of contexts) {
    for (const page of context?.pages() ?? []) {
      const path = join(testOutputDir, `${slug}-${++n}.png`);
      try {
        await page.screenshot({ path, fullPage: true, timeout: 5000 });
        saved.push(path);
      } catch {
        // A closed or crashed page has nothing to show.
      }
    }
  }
  return saved;
}

/** Signs in on the sign-in page with the keyboard only (Tab between fields, Enter submits). */
export async function signInWithKeyboard(page: Page, customer: PortalCustomer): Promise<void> {
  await page.getByLabel("E-mail").focus();
  await page.keyboard.type(customer.email);
  await page.keyboard.press("Tab");
  await page.keyboard.type(customer.password);
  await page.keyboard.press("Enter");
}

interface AxeViolation {
  id: string;
  impact: string | null;
  help: string;
  nodes: Array<{ target: unknown[] }>;
}

let axeSource: Promise<string> | undefined;

/**
 * Runs axe-core's WCAG 2.1 A/AA rules (labels, names, contrast, landmarks…) on
 * the page as it is now and returns the violations, one line each. axe is
 * evaluated through the DevTools protocol, which the page's CSP does not govern.
 */
export async function accessibilityViolations(page: Page): Promise<string[]> {
  axeSource ??= readFile(join(repoRoot, "node_modules", "axe-core", "axe.min.js"), "utf8");
  if (!(await page.evaluate<boolean>("typeof window.axe === 'object'"))) await page.evaluate(await axeSource);
  const violations = await page.evaluate<AxeViolation[]>(
    "axe.run(document, { runOnly: { type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa'] }, resultTypes: ['violations'] }).then((r) => r.violations)",
  );
  return violations.map((v) => `${v.id} (${v.impact ?? "?"}): ${v.help} — ${v.nodes.map((n) => JSON.stringify(n.target)).slice(0, 3).join(", ")}`);
}

/** What {@link phoneLayout} measures on the page as it is now. */
export interface PhoneLayout {
  /** The document's scroll width: more than the viewport's width means the page scrolls sideways. */
  scrollWidth: number;
  viewportWidth: number;
  /** Pixels between the header's bottom edge and `<main>`'s top edge (the navigation closed). */
  mainOffset: number;
  /** The tallest horizontal strip between the header and the last content that holds no content at all. */
  largestGap: { height: number; atY: number };
  /** Progress figures ("42 %") not wholly visible: cut by the viewport, by a scroll box, or truncated. */
  hiddenProgressFigures: string[];
}

/**
 * Measures the layout faults a phone shows: sideways scrolling, a blank band, cut-off progress figures.
 * "Content" is every non-blank text line, control, graphic and progress bar inside `<main>`; the largest
 * gap is the tallest strip of the page (from the header down to the last content) crossed by none of them.
 */
export async function phoneLayout(page: Page): Promise<PhoneLayout> {
  return page.evaluate<PhoneLayout>(`(() => {
    const spans = [];
    const add = (rect) => { if (rect.width > 0 && rect.height > 0) spans.push([rect.top + scrollY, rect.bottom + scrollY]); };
    const main = document.querySelector("main");
    const texts = document.createTreeWalker(main, NodeFilter.SHOW_TEXT);
    for (let node = texts.nextNode(); node !== null; node = texts.nextNode()) {
      if (node.textContent.trim() === "") continue;
      const range = document.createRange();
      range.selectNodeContents(node);
      for (const rect of range.getClientRects()) add(rect);
    }
    for (const el of main.querySelectorAll("svg, img, input, select, textarea, button, [role=progressbar]")) add(el.getBoundingClientRect());
    spans.sort((a, b) => a[0] - b[0]);
    const headerBottom = document.querySelector("header").getBoundingClientRect().bottom + scrollY;
    let reached = headerBottom;
    let largestGap = { height: 0, atY: headerBottom };
    for (const [top, bottom] of spans) {
      if (top - reached > largestGap.height) largestGap = { height: Math.round(top - reached), atY: Math.round(reached) };
      reached = Math.max(reached, bottom);
    }
    const viewportWidth = document.documentElement.clientWidth;
    const hiddenProgressFigures = [];
    for (const figure of main.querySelectorAll(".progress-text")) {
      const rect = figure.getBoundingClientRect();
      let clipped = rect.left < 0 || rect.right > viewportWidth || figure.scrollWidth > figure.clientWidth;
      for (let box = figure.parentElement; box !== null && box !== main; box = box.parentElement) {
        if (getComputedStyle(box).overflowX === "visible") continue;
        const edge = box.getBoundingClientRect();
        if (rect.left < edge.left || rect.right > edge.right) clipped = true;
      }
      if (clipped) hiddenProgressFigures.push(figure.textContent + " at x " + Math.round(rect.left) + "–" + Math.round(rect.right));
    }
    return {
      scrollWidth: document.documentElement.scrollWidth,
      viewportWidth,
      mainOffset: Math.round(main.getBoundingClientRect().top + scrollY - headerBottom),
      largestGap,
      hiddenProgressFigures,
    };
  })()`);
}
