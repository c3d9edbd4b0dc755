// npm run conformance -- <collection.json>
// Runs a Postman v2.1 collection for this API under newman against a freshly
// started server with every fixture its variables need; exits 1 unless every
// request got a 2xx/3xx. See scripts/conformance/run-collection.ts.
import { resolve } from "node:path";
import { failuresOf, runConformance } from "./conformance/run-collection.ts";

const path = process.argv[2];
if (path === undefined) {
  process.stderr.write("usage: npm run conformance -- <postman collection v2.1 JSON>\n");
  process.exit(2);
}
const results = await runConformance(resolve(path));
const failures = failuresOf(results);
for (const f of failures) process.stderr.write(`FAIL ${f.method} ${f.url} → ${f.status ?? "no response"}: ${f.error ?? ""}\n`);
process.stdout.write(`conformance: ${results.length - failures.length} passed, ${failures.length} failed\n`);
process.exit(failures.length === 0 && results.length > 0 ? 0 : 1);
