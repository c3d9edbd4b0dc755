/**
 * Builds the web portal (portal/, Vite + React) into portal/dist, which the
 * control plane serves at /portal/. `npm start` and `npm test` run it first.
 *
 * It is skipped when nothing it depends on changed: a stamp in
 * portal/dist/.build-stamp holds the sha256 of the portal's sources, its
 * config and the lockfile. `--force` rebuilds anyway. Without Vite installed
 * (`npm ci --omit=dev`) an existing bundle is kept and a missing one is
 * reported; the API works either way and /portal/ answers 503 until built.
 */
import { createHash } from "node:crypto";
import { existsSync } from "node:fs";
import { readdir, readFile, writeFile } from "node:fs/promises";
import { join, relative, resolve } from "node:path";

const root = resolve(import.meta.dirname, "..");
const portal = join(root, "portal");
const dist = join(portal, "dist");
const stampFile = join(dist, ".build-stamp");

async function sourceStamp(): Promise<string> {
  const hash = createHash("sha256");
  const files: string[] = [];
  for (const entry of await readdir(portal, { recursive: true, withFileTypes: true })) {
    if (!entry.isFile()) continue;
    const path = join(entry.parentPath, entry.name);
    const rel = relative(portal, path);
    if (rel.startsWith("dist") || rel.includes("node_modules")) continue;
    files.push(path);
  }
  // The portal types its error words by the server's codes (a type-only import, but a build input all the same).
  files.push(join(root, "src", "platform", "errors.ts"), join(root, "package-lock.json"), join(root, "scripts", "build-portal.ts"));
  for (const path of files.sort()) {
    hash.update(relative(root, path)).update("\0").update(await readFile(path)).update("\0");
  }
  return hash.digest("hex");
}

const force = process.argv.includes("--force");
const stamp = await sourceStamp();
const built = existsSync(stampFile) ? (await readFile(stampFile, "utf8")).trim() : "";
if (!force && built === stamp && existsSync(join(dist, "index.html"))) {
  process.stdout.write("portal: up to date (portal/dist)\n");
  process.exit(0);
}

let vite: typeof import("vite");
try {
  vite = await import("vite");
} catch {
  if (existsSync(join(dist, "index.html"))) {
    process.stderr.write("portal: vite is not installed (npm ci --omit=dev?); serving the existing portal/dist\n");
    process.exit(0);
  }
  process.stderr.write("portal: vite is not installed and portal/dist is missing; /portal/ will answer 503 (run npm ci, then npm run build:portal)\n");
  process.exit(0);
}

const started = performance.now();
await vite.build({ configFile: join(portal, "vite.config.ts"), logLevel: "warn" });
await writeFile(stampFile, `${stamp}\n`);
process.stdout.write(`portal: built portal/dist in ${((performance.now() - started) / 1000).toFixed(1)} s\n`);
