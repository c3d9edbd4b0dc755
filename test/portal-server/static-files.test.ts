/**
 * The portal's static route: content types, cache headers, the SPA fallback
 * for deep links, conditional and compressed answers, a strict CSP, and no
 * way out of the bundle (raw request paths, not a client that normalises them).
 */
import assert from "node:assert/strict";
import http from "node:http";
import { mkdir, mkdtemp, rm, utimes, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { brotliDecompressSync, gunzipSync } from "node:zlib";
import { classifyPortalPath, contentSecurityPolicy, contentTypeOf, createPortalStaticRoutes } from "../../src/portal-server/static-files.ts";
import type { HttpRoute } from "../../src/platform/http-types.ts";
import type { TestControlPlane } from "../support/control-plane.ts";
import { startTestControlPlane } from "../support/control-plane.ts";
import { ensurePortalBuilt } from "./helpers.ts";

/** A raw HTTP/1.1 request: the path goes out byte for byte. */
function raw(url: string, path: string, options: { method?: string; headers?: Record<string, string> } = {}): Promise<{ status: number; headers: http.IncomingHttpHeaders; body: Buffer }> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve, reject) => {
    const req = http.request({ hostname, port, path, method: options.method ?? "GET", headers: options.headers ?? {} }, (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (c: Buffer) => chunks.push(c));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }));
    });
    req.on("error", reject);
    req.end();
  });
}

describe("portal static files", function () {
  this.timeout(60_000);

  describe("path classification", () => {
    const cases: Array<{ name: string; path: string; want: ReturnType<typeof classifyPortalPath> }> = [
      { name: "the bare mount point redirects to the slash", path: "/portal", want: { kind: "redirect", location: "/portal/" } },
      { name: "the root is the app", path: "/portal/", want: { kind: "file", rel: "" } },
      { name: "a deep link keeps its segments", path: "/portal/jobs/42", want: { kind: "file", rel: "jobs/42" } },
      { name: "a trailing slash is the same page", path: "/portal/jobs/", want: { kind: "file", rel: "jobs" } },
      { name: "an encoded slash is refused", path: "/portal/..%2f..%2fadmin-token", want: { kind: "bad" } },
      { name: "an encoded backslash is refused", path: "/portal/assets/..%5cadmin-token", want: { kind: "bad" } },
      { name: "an encoded dot-dot segment is refused", path: "/portal/assets/%2E%2E", want: { kind: "bad" } },
      { name: "a NUL is refused", path: "/portal/index.html%00.js", want: { kind: "bad" } },
      { name: "an empty inner segment is refused", path: "/portal/assets//x.js", want: { kind: "bad" } },
      { name: "malformed percent-encoding is refused", path: "/portal/%E0%A4%A", want: { kind: "bad" } },
      { name: "another mount is not the portal's", path: "/portalx", want: { kind: "outside" } },
    ];
    for (const tc of cases) it(tc.name, () => assert.deepEqual(classifyPortalPath(tc.path), tc.want));

    it("names content types by extension", () => {
      assert.equal(contentTypeOf("index.html"), "text/html; charset=utf-8");
      assert.equal(contentTypeOf("assets/index-abc.js"), "text/javascript; charset=utf-8");
      assert.equal(contentTypeOf("assets/index-abc.css"), "text/css; charset=utf-8");
      assert.equal(contentTypeOf("favicon.svg"), "image/svg+xml");
      assert.equal(contentTypeOf("blob.bin"), "application/octet-stream");
    });

    it("allows no inline code, no framing and fetches only from this origin", () => {
      const csp = contentSecurityPolicy();
      for (const directive of ["default-src 'none'", "script-src 'self'", "style-src 'self'", "connect-src 'self'", "frame-ancestors 'none'", "base-uri 'none'", "object-src 'none'"]) {
        assert.ok(csp.includes(directive), `${directive} in ${csp}`);
      }
      assert.doesNotMatch(csp, /unsafe-inline|unsafe-eval|\*/);
      assert.match(contentSecurityPolicy(["https://blobs.example"]), /connect-src 'self' https:\/\/blobs\.example/);
    });
  });

  describe("served by the control plane", () => {
    let cp: TestControlPlane;
    let index: string;
    let script: string;

    before(async () => {
      ensurePortalBuilt();
      cp = await startTestControlPlane();
      index = (await raw(cp.url, "/portal/")).body.toString("utf8");
      script = /src="(\/portal\/assets\/[^"]+\.js)"/.exec(index)?.[1] ?? "";
      assert.notEqual(script, "", "index.html names its script");
    });
    after(async () => cp?.stop());

    it("redirects /portal to /portal/, keeping the query", async () => {
      const res = await raw(cp.url, "/portal?x=1");
      assert.equal(res.status, 308);
      assert.equal(res.headers["location"], "/portal/?x=1");
    });

    it("serves index.html uncached with the security headers", async () => {
      const res = await raw(cp.url, "/portal/");
      assert.equal(res.status, 200);
      assert.equal(res.headers["content-type"], "text/html; charset=utf-8");
      assert.equal(res.headers["cache-control"], "no-cache");
      assert.equal(res.headers["content-security-policy"], contentSecurityPolicy());
      assert.equal(res.headers["x-content-type-options"], "nosniff");
      assert.equal(res.headers["x-frame-options"], "DENY");
      assert.equal(res.headers["referrer-policy"], "no-referrer");
      assert.match(res.body.toString("utf8"), /<div id="root"><\/div>/);
      assert.doesNotMatch(res.body.toString("utf8"), /<script(?![^>]*\bsrc=)[^>]*>/, "no inline script for the CSP to allow");
    });

    it("answers deep links with the app's index.html", async () => {
      for (const path of ["/portal/jobs/0b8c2f0e-1111-4a2b-9c3d-123456789abc", "/portal/usage", "/portal/api-keys/", "/portal/sign-in?next=%2Fjobs"]) {
        const res = await raw(cp.url, path);
        assert.equal(res.status, 200, path);
        assert.equal(res.headers["cache-control"], "no-cache", path);
        assert.equal(res.body.toString("utf8"), index, path);
      }
    });

    it("serves hashed assets as immutable, with an ETag, 304 on revalidation, compressed on request", async () => {
      const plain = await raw(cp.url, script);
      assert.equal(plain.status, 200);
      assert.equal(plain.headers["content-type"], "text/javascript; charset=utf-8");
      assert.equal(plain.headers["cache-control"], "public, max-age=31536000, immutable");
      assert.equal(plain.headers["content-length"], String(plain.body.length));
      const etag = plain.headers["etag"] ?? "";
      assert.match(etag, /^"[A-Za-z0-9_-]+"$/);
      assert.equal((await raw(cp.url, script, { headers: { "if-none-match": etag } })).status, 304);
      const br = await raw(cp.url, script, { headers: { "accept-encoding": "gzip, br" } });
      assert.equal(br.headers["content-encoding"], "br");
      assert.equal(br.headers["vary"], "accept-encoding");
      assert.deepEqual(brotliDecompressSync(br.body), plain.body);
      const gz = await raw(cp.url, script, { headers: { "accept-encoding": "gzip" } });
      assert.equal(gz.headers["content-encoding"], "gzip");
      assert.deepEqual(gunzipSync(gz.body), plain.body);
      const head = await raw(cp.url, script, { method: "HEAD" });
      assert.equal(head.status, 200);
      assert.equal(head.headers["content-length"], String(plain.body.length));
      assert.equal(head.body.length, 0);
    });

    it("answers 404, not the app, for a missing file", async () => {
      const res = await raw(cp.url, "/portal/assets/missing-abc123.js");
      assert.equal(res.status, 404);
      assert.equal(res.headers["content-type"], "text/plain; charset=utf-8");
      assert.equal((await raw(cp.url, "/portal/.build-stamp")).status, 404, "dotfiles of the build are not served");
    });

    it("never serves a file from outside the bundle", async () => {
      const secret = cp.adminToken;
      const attempts = [
        "/portal/../admin-token",
        "/portal/%2e%2e/admin-token",
        "/portal/..%2fadmin-token",
        "/portal/assets/..%2f..%2f..%2fadmin-token",
        "/portal/..%5c..%5cadmin-token",
        "/portal/%2e%2e%2f%2e%2e%2fpackage.json",
        "/portal//etc/passwd",
        "/portal/assets/%00",
        "/portal/../../../../etc/passwd",
      ];
      for (const path of attempts) {
        const res = await raw(cp.url, path);
        const body = res.body.toString("utf8");
        assert.ok(res.status === 400 || res.status === 404, `${path} → ${res.status}`);
        assert.ok(!body.includes(secret), `${path} leaked the admin token`);
        assert.doesNotMatch(body, /root:x:0:0|"name": "gpu-agent"/, path);
      }
    });
  });

  describe("the bundle on disk", () => {
    let dir: string;
    let server: http.Server;
    let url: string;

    before(async () => {
      dir = await mkdtemp(join(tmpdir(), "portal-static-"));
      const routes: HttpRoute[] = createPortalStaticRoutes({ dir, recheckMs: 0 });
      server = http.createServer((req, res) => {
        const path = new URL(req.url ?? "/", "http://localhost").pathname;
        const route = routes.find((r) => r.method === req.method && r.pattern.test(path));
        if (route === undefined) {
          res.statusCode = 404;
          res.end();
          return;
        }
        void route.handle(req, res, path.match(route.pattern)!, "test");
      });
      await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
      const address = server.address();
      url = `http://127.0.0.1:${typeof address === "object" && address !== null ? address.port : 0}`;
    });
    after(async () => {
      await new Promise((resolve) => server.close(resolve));
      await rm(dir, { recursive: true, force: true });
    });

    it("answers 503 until the portal is built, then serves it, and picks up a rebuild", async () => {
      const missing = await raw(url, "/portal/");
      assert.equal(missing.status, 503);
      assert.match(missing.body.toString("utf8"), /npm run build:portal/);
      await mkdir(join(dir, "assets"), { recursive: true });
      await writeFile(join(dir, "index.html"), "<!doctype html><title>one</title>");
      await writeFile(join(dir, "assets", "a-1.js"), "console.log(1)");
      assert.match((await raw(url, "/portal/jobs")).body.toString("utf8"), /one/);
      await writeFile(join(dir, "index.html"), "<!doctype html><title>two</title>");
      const later = new Date(Date.now() + 5000);
      await utimes(join(dir, "index.html"), later, later);
      assert.match((await raw(url, "/portal/")).body.toString("utf8"), /two/);
    });
  });
});
