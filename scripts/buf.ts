// Runs the registry's `buf` with the googleapis protos it needs placed in
// .buf-deps/ first. They come from the `google-proto-files` package (no network
// fetch, nothing third-party committed).
import { spawnSync } from "node:child_process";
import { cpSync, mkdirSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";

const root = join(import.meta.dirname, "..");
const require = createRequire(import.meta.url);
const googleProtos = join(dirname(require.resolve("google-proto-files/package.json")), "google", "api");
const target = join(root, ".buf-deps", "google", "api");
mkdirSync(target, { recursive: true });
for (const file of ["annotations.proto", "http.proto", "httpbody.proto"]) {
  cpSync(join(googleProtos, file), join(target, file));
}
const buf = join(root, "node_modules", ".bin", "buf");
const result = spawnSync(buf, process.argv.slice(2), { cwd: root, stdio: "inherit" });
process.exit(result.status ?? 1);
