// Fails when src/gen differs from what `buf generate` makes of proto/ now, so
// committed generated code can never drift from the contracts.
import { spawnSync } from "node:child_process";
import { cpSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const root = join(import.meta.dirname, "..");
const saved = mkdtempSync(join(tmpdir(), "gen-"));
cpSync(join(root, "src", "gen"), saved, { recursive: true });
const gen = spawnSync(process.execPath, [join(root, "scripts", "buf.ts"), "generate"], { cwd: root, stdio: "inherit" });
if (gen.status !== 0) process.exit(gen.status ?? 1);
const diff = spawnSync("diff", ["-r", saved, join(root, "src", "gen")], { encoding: "utf8" });
rmSync(saved, { recursive: true, force: true });
if (diff.status !== 0) {
  process.stderr.write(`src/gen is out of date with proto/; run \`npm run generate\` and commit the result.\n${diff.stdout}\n`);
  process.exit(1);
}
process.stdout.write("src/gen matches proto/\n");
