/**
 * The transcoder reads a plain request path without building a URL; whatever
 * the target, the path it uses must be the one `new URL(target, base)` gives.
 */
import assert from "node:assert/strict";
import { requestPathname } from "../../../src/api/rest/transcoder.ts";

const targets = [
  "/",
  "/api/v1/customer/training-jobs/6f0c1f5e-8a51-4c57-9d59-0d8f1b1f7a10",
  "/api/v1/customer/training-jobs/abc:cancel",
  "/api/v1/customer/training-jobs/",
  "/api/v1/x?limit=5",
  "/api/v1/x#fragment",
  "/api/v1/../v1/customer/meta",
  "/api/v1/./customer/meta",
  "/api/v1/customer/meta/..",
  "/api/v1/customer/meta/.",
  "/api/v1/%2e%2e/customer",
  "/api/v1/%2E/customer",
  "/api/v1/.%2e/customer",
  "/api/v1/...",
  "/api/v1/.hidden/..x",
  "//evil.example/api",
  "/api\\v1\\customer",
  "/api/v1/a b",
  "/api/v1/caf\u00e9",
  "/api/v1/%zz",
  "/api/v1/%2F/x",
  "/api/v1/<tag>",
  "/api/v1/{id}",
  "/api/v1/`x`",
  "/api/v1/'quoted'",
  "/api/v1/a|b^c[d]",
  "/api/v1/\tx",
  "/api/v1/x\u0000",
  "http://other.example/api/v1/meta",
  "*",
  "",
];

describe("REST request targets", () => {
  for (const target of targets) {
    it(`reads ${JSON.stringify(target)} as URL does`, () => {
      assert.equal(requestPathname(target), new URL(target, "http://localhost").pathname);
    });
  }
});
