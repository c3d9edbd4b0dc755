/**
 * The project's own Postman collection (generated from the protos by
 * scripts/docs.ts, covering every customer endpoint) runs under newman against
 * a fresh server with every request answered 2xx/3xx.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { failuresOf, runConformance } from "../../scripts/conformance/run-collection.ts";

describe("the generated Postman collection", function () {
  this.timeout(240_000);

  it("runs under newman against a fresh server with every request answered 2xx or 3xx", async () => {
    const results = await runConformance(join(import.meta.dirname, "..", "..", "docs", "postman", "gpu-agent.postman_collection.json"), { reporters: [] });
    assert.ok(results.length >= 30, `ran ${results.length} requests`);
    assert.deepEqual(failuresOf(results), []);
  });
});
