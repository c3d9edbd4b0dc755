/**
 * Hostile and careless input over the real REST API: every case gets a 4xx
 * with a seed error code (or a documented addition) and a message, and nothing
 * already stored is lost or changed.
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import yazl from "yazl";
import type { TestControlPlane } from "../support/control-plane.ts";
import { createCustomer, request, startTestControlPlane, uploadResource } from "../support/control-plane.ts";
import { craftZip } from "../support/crafted-zip.ts";

const example = join(import.meta.dirname, "..", "..", "examples", "tiny-mlp");
const sha = (b: Buffer) => createHash("sha256").update(b).digest("hex");

/** A zip of the given entries. Names may be anything: yazl refuses `..`, so such names are patched in afterwards. */
async function zipOf(entries: Record<string, string>): Promise<Buffer> {
  const zip = new yazl.ZipFile();
  const renames: [string, string][] = [];
  for (const [name, text] of Object.entries(entries)) {
    const safe = name.replace(/\.\.\//g, "xx/");
    if (safe !== name) renames.push([safe, name]);
    zip.addBuffer(Buffer.from(text), safe);
  }
  zip.end();
  const chunks: Buffer[] = [];
  for await (const c of zip.outputStream) chunks.push(c as Buffer);
  let bytes = Buffer.concat(chunks);
  for (const [from, to] of renames) {
    // Same length, so offsets stay valid: rewrite the name in local and central headers.
    bytes = Buffer.from(bytes.toString("latin1").split(from).join(to), "latin1");
  }
  return bytes;
}

function errorCode(body: Record<string, unknown>): string {
  return (body["error"] as Record<string, string> | undefined)?.["code"] ?? "";
}

describe("bad input gets a clear 4xx and loses nothing", function () {
  this.timeout(60_000);
  let cp: TestControlPlane;
  let apiKey: string;
  let readyDataset: Record<string, unknown>;
  let readyPackage: Record<string, unknown>;

  before(async () => {
    cp = await startTestControlPlane();
    ({ apiKey } = await createCustomer(cp, 10_000));
    readyDataset = await uploadResource(cp, apiKey, "datasets", "kept", await readFile(join(example, "dataset.csv")));
    readyPackage = await uploadResource(cp, apiKey, "training-packages", "kept", await zipOf({ "train.py": "print('hi')\n" }));
  });

  after(async () => {
    // The resources made before the bad requests are unchanged.
    if (cp !== undefined) {
      const d = await request(cp, "GET", `/api/v1/customer/datasets/${readyDataset["id"] as string}`, { headers: { "x-api-key": apiKey } });
      assert.deepEqual(d.body, readyDataset);
      const p = await request(cp, "GET", `/api/v1/customer/training-packages/${readyPackage["id"] as string}`, { headers: { "x-api-key": apiKey } });
      assert.deepEqual(p.body, readyPackage);
      await cp.stop();
    }
  });

  const jobBody = () => ({ name: "j", dataset_id: readyDataset["id"], training_package_id: readyPackage["id"], required_vram_mb: 8000, max_runtime_seconds: 60 });

  const cases: { name: string; method: string; path: string; body?: unknown; raw?: string; contentType?: string; auth?: "none" | "bad"; status: number; code: string }[] = [
    { name: "an unknown field", method: "POST", path: "/api/v1/customer/datasets", body: { name: "d", size_bytes: 1, sha256: "a".repeat(64), colour: "red" }, status: 400, code: "VALIDATION_FAILED" },
    { name: "a wrong type", method: "POST", path: "/api/v1/customer/datasets", body: { name: "d", size_bytes: "lots", sha256: "a".repeat(64) }, status: 400, code: "VALIDATION_FAILED" },
    { name: "a missing name", method: "POST", path: "/api/v1/customer/datasets", body: { size_bytes: 1, sha256: "a".repeat(64) }, status: 400, code: "VALIDATION_FAILED" },
    { name: "a malformed sha256", method: "POST", path: "/api/v1/customer/datasets", body: { name: "d", size_bytes: 1, sha256: "xyz" }, status: 400, code: "VALIDATION_FAILED" },
    { name: "a dataset over the size limit", method: "POST", path: "/api/v1/customer/datasets", body: { name: "d", size_bytes: 1e15, sha256: "a".repeat(64) }, status: 413, code: "PAYLOAD_TOO_LARGE" },
    { name: "an entrypoint outside the package", method: "POST", path: "/api/v1/customer/training-packages", body: { name: "p", size_bytes: 1, sha256: "a".repeat(64), entrypoint: "../x.py" }, status: 400, code: "VALIDATION_FAILED" },
    { name: "malformed JSON", method: "POST", path: "/api/v1/customer/training-jobs", raw: "{\"name\": ", status: 400, code: "VALIDATION_FAILED" },
    { name: "a body that is not JSON", method: "POST", path: "/api/v1/customer/training-jobs", raw: "name=x", contentType: "application/x-www-form-urlencoded", status: 415, code: "UNSUPPORTED_MEDIA_TYPE" },
    { name: "an unknown sensitivity", method: "POST", path: "/api/v1/customer/training-jobs", body: { ...{ name: "j", dataset_id: "00000000-0000-4000-8000-000000000000", training_package_id: "00000000-0000-4000-8000-000000000000" }, sensitivity: "secret" }, status: 400, code: "VALIDATION_FAILED" },
    { name: "a dataset id that does not exist", method: "POST", path: "/api/v1/customer/training-jobs", body: { name: "j", dataset_id: "00000000-0000-4000-8000-000000000000", training_package_id: "00000000-0000-4000-8000-000000000000", max_runtime_seconds: 60 }, status: 404, code: "DATASET_NOT_FOUND" },
    { name: "no API key", method: "GET", path: "/api/v1/customer/training-jobs", auth: "none", status: 401, code: "CUSTOMER_AUTH_REQUIRED" },
    { name: "an unknown API key", method: "GET", path: "/api/v1/customer/training-jobs", auth: "bad", status: 401, code: "API_KEY_INVALID" },
    { name: "a job id that is not a UUID", method: "GET", path: "/api/v1/customer/training-jobs/not-a-uuid", status: 404, code: "JOB_NOT_FOUND" },
    { name: "a tampered cursor", method: "GET", path: "/api/v1/customer/training-jobs?cursor=Zm9vYmFy", status: 400, code: "PAGINATION_INVALID_CURSOR" },
    { name: "a limit over 100", method: "GET", path: "/api/v1/customer/training-jobs?limit=500", status: 400, code: "VALIDATION_FAILED" },
    { name: "the retired image endpoint", method: "POST", path: "/api/v1/customer/jobs/image-api", body: { model: "sd-1-5", tasks: [] }, status: 410, code: "LEGACY_DEPRECATED" },
    { name: "an unknown route", method: "GET", path: "/api/v1/customer/nothing-here", status: 404, code: "ROUTE_NOT_FOUND" },
    { name: "an invalid Idempotency-Key", method: "POST", path: "/api/v1/customer/training-jobs", body: {}, status: 400, code: "IDEMPOTENCY_KEY_INVALID" },
  ];

  for (const tc of cases) {
    it(`answers ${tc.name} with ${tc.status} ${tc.code}`, async () => {
      const headers: Record<string, string> = {};
      if (tc.auth === undefined) headers["x-api-key"] = apiKey;
      if (tc.auth === "bad") headers["x-api-key"] = "sk_live_not-a-real-key";
      if (tc.code === "IDEMPOTENCY_KEY_INVALID") headers["idempotency-key"] = "bad key!";
      let res: { status: number; body: Record<string, unknown> };
      if (tc.raw !== undefined) {
        const r = await fetch(cp.url + tc.path, { method: tc.method, headers: { ...headers, "content-type": tc.contentType ?? "application/json" }, body: tc.raw });
        res = { status: r.status, body: (await r.json()) as Record<string, unknown> };
      } else {
        res = await request(cp, tc.method, tc.path, { headers, ...(tc.body === undefined ? {} : { body: tc.body }) });
      }
      assert.equal(res.status, tc.status, JSON.stringify(res.body));
      assert.equal(errorCode(res.body), tc.code);
      const error = res.body["error"] as Record<string, string>;
      assert.ok(error["message"]!.length > 10, "the message says what to do");
      assert.ok(error["request_id"]!.length > 0);
    });
  }

  it("answers another customer's job with 404 JOB_NOT_FOUND, never 403", async () => {
    const created = await request(cp, "POST", "/api/v1/customer/training-jobs", { headers: { "x-api-key": apiKey }, body: jobBody() });
    assert.equal(created.status, 201, JSON.stringify(created.body));
    const other = await createCustomer(cp, 10);
    const res = await request(cp, "GET", `/api/v1/customer/training-jobs/${created.body["id"] as string}`, { headers: { "x-api-key": other.apiKey } });
    assert.equal(res.status, 404);
    assert.equal(errorCode(res.body), "JOB_NOT_FOUND");
    const theirs = await request(cp, "POST", "/api/v1/customer/training-jobs", { headers: { "x-api-key": other.apiKey }, body: jobBody() });
    assert.equal(theirs.status, 404, "one customer cannot start a job on another's dataset");
    assert.equal(errorCode(theirs.body), "DATASET_NOT_FOUND");
    await request(cp, "POST", `/api/v1/customer/training-jobs/${created.body["id"] as string}/cancel`, { headers: { "x-api-key": apiKey }, body: {} });
  });

  it("refuses a job whose projected cost exceeds the balance with 402 CREDIT_INSUFFICIENT", async () => {
    const poor = await createCustomer(cp, 1);
    const d = await uploadResource(cp, poor.apiKey, "datasets", "d", Buffer.from("x1,x2,label\n1,2,0\n"));
    const p = await uploadResource(cp, poor.apiKey, "training-packages", "p", await zipOf({ "train.py": "" }));
    const res = await request(cp, "POST", "/api/v1/customer/training-jobs", {
      headers: { "x-api-key": poor.apiKey },
      body: { name: "j", dataset_id: d["id"], training_package_id: p["id"], required_vram_mb: 8000, max_runtime_seconds: 3600 },
    });
    assert.equal(res.status, 402);
    assert.equal(errorCode(res.body), "CREDIT_INSUFFICIENT");
    const jobs = await request(cp, "GET", "/api/v1/customer/training-jobs", { headers: { "x-api-key": poor.apiKey } });
    assert.deepEqual(jobs.body["data"], [], "nothing was created");
  });

  describe("uploads", () => {
    async function create(kind: "datasets" | "training-packages", declared: Buffer, extra: Record<string, unknown> = {}) {
      const res = await request(cp, "POST", `/api/v1/customer/${kind}`, {
        headers: { "x-api-key": apiKey },
        body: { name: "u", size_bytes: declared.length, sha256: sha(declared), ...extra },
      });
      assert.equal(res.status, 201, JSON.stringify(res.body));
      return res.body;
    }
    const finalize = (kind: string, id: unknown) =>
      request(cp, "POST", `/api/v1/customer/${kind}/${id as string}/finalize`, { headers: { "x-api-key": apiKey }, body: {} });

    it("refuses bytes whose sha256 differs at finalize, keeps the dataset awaiting upload, and accepts a correct retry", async () => {
      const good = Buffer.from("x1,x2,label\n0.1,0.2,1\n");
      const ds = await create("datasets", good);
      const bad = Buffer.from(good);
      bad[0] = 0x79;
      assert.equal((await fetch(ds["upload_url"] as string, { method: "PUT", body: bad })).status, 200);
      const refused = await finalize("datasets", ds["id"]);
      assert.equal(refused.status, 400);
      assert.equal(errorCode(refused.body), "UPLOAD_INVALID");
      assert.match((refused.body["error"] as Record<string, string>)["message"]!, /sha256/);
      const retry = await fetch(ds["upload_url"] as string, { method: "PUT", body: good });
      assert.equal(retry.status, 200);
      const ok = await finalize("datasets", ds["id"]);
      assert.equal(ok.body["status"], "ready");
    });

    it("refuses a body larger than the declared size with 413 and nothing stored", async () => {
      const ds = await create("datasets", Buffer.from("12345"));
      const res = await fetch(ds["upload_url"] as string, { method: "PUT", body: Buffer.from("1234567890") });
      assert.equal(res.status, 413);
      const notYet = await finalize("datasets", ds["id"]);
      assert.equal(errorCode(notYet.body), "UPLOAD_INVALID");
    });

    it("refuses a second PUT to a used upload URL and a tampered signature", async () => {
      const bytes = Buffer.from("abc");
      const ds = await create("datasets", bytes);
      const url = ds["upload_url"] as string;
      assert.equal((await fetch(url, { method: "PUT", body: bytes })).status, 200);
      const again = await fetch(url, { method: "PUT", body: bytes });
      assert.equal(again.status, 409);
      const tampered = url.replace(/sig=([^&])/, (_m, c: string) => `sig=${c === "A" ? "B" : "A"}`);
      const forged = await fetch(tampered, { method: "PUT", body: bytes });
      assert.equal(forged.status, 403);
      assert.equal(errorCode((await forged.json()) as Record<string, unknown>), "SIGNED_URL_INVALID");
    });

    const packageCases: { name: string; bytes: () => Promise<Buffer>; message: RegExp }[] = [
      { name: "a file that is not a zip", bytes: async () => Buffer.from("not a zip at all"), message: /not a readable zip/ },
      { name: "a zip entry escaping the directory", bytes: () => zipOf({ "train.py": "", "../evil.py": "boom" }), message: /refused.*\.\.\/evil\.py/ },
      { name: "a zip without the entry point", bytes: () => zipOf({ "other.py": "" }), message: /entry point "train.py"/ },
      { name: "an invalid manifest", bytes: () => zipOf({ "train.py": "", "gpu-agent.json": '{"stages": [{"name": "a", "kind": "gpu", "depends_on": ["b"]}]}' }), message: /gpu-agent.json/ },
      { name: "a duplicate entry", bytes: async () => craftZip([{ name: "train.py" }, { name: "train.py" }]), message: /entry "train.py" appears twice/ },
      { name: "a symbolic link", bytes: async () => craftZip([{ name: "train.py" }, { name: "data", content: "/etc", mode: 0o120777 }]), message: /entry "data" is a symbolic link/ },
      { name: "requirements naming a URL", bytes: () => zipOf({ "train.py": "", "requirements.txt": "evil @ https://example.com/evil.whl\n" }), message: /requirements.txt line 1: .* names a URL/ },
    ];
    for (const tc of packageCases) {
      it(`refuses a training package with ${tc.name} at finalize (400 PACKAGE_INVALID)`, async () => {
        const bytes = await tc.bytes();
        const pkg = await create("training-packages", bytes);
        assert.equal((await fetch(pkg["upload_url"] as string, { method: "PUT", body: bytes })).status, 200);
        const res = await finalize("training-packages", pkg["id"]);
        assert.equal(res.status, 400, JSON.stringify(res.body));
        assert.equal(errorCode(res.body), "PACKAGE_INVALID");
        assert.match((res.body["error"] as Record<string, string>)["message"]!, tc.message);
        const after = await request(cp, "GET", `/api/v1/customer/training-packages/${pkg["id"] as string}`, { headers: { "x-api-key": apiKey } });
        assert.equal(after.body["status"], "awaiting_upload");
      });
    }
  });

  it("keeps temporary files out of the way: the test directory is removable", async () => {
    const dir = await mkdtemp(join(tmpdir(), "x-"));
    await rm(dir, { recursive: true });
  });
});
