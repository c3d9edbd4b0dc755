import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { getOption, hasOption } from "@bufbuild/protobuf";
import type { DescService } from "@bufbuild/protobuf";
import { buildOpenApiDocument, createOpenApiRoute, loadProtoComments, parseProtoComments } from "../../src/api/openapi.ts";
import { http as httpAnnotation } from "../../src/gen/google/api/annotations_pb.ts";
import { AdminService } from "../../src/gen/gpuagent/admin/v1/admin_pb.ts";
import { CustomerService } from "../../src/gen/gpuagent/customer/v1/customer_pb.ts";
import { docFiles, generateDocs } from "../../scripts/docs.ts";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
const services: DescService[] = [CustomerService, AdminService];

type Operation = {
  operationId: string;
  deprecated?: boolean;
  security: unknown[];
  parameters?: Array<{ name: string; in: string; description?: string }>;
  responses: Record<string, { content?: Record<string, unknown> }>;
};
type Doc = {
  openapi: string;
  paths: Record<string, Record<string, Operation>>;
  components: { schemas: Record<string, { properties?: Record<string, { type?: string; format?: string }> }> };
};

const doc = buildOpenApiDocument(services, { title: "GPU-Agent API", version: "test", comments: loadProtoComments(services) }) as unknown as Doc;

/** [rpc, method, OpenAPI path] of every rpc with an http rule. */
function expectedRoutes(service: DescService): Array<[string, string, string]> {
  return service.methods
    .filter((m) => hasOption(m, httpAnnotation))
    .map((m) => {
      const rule = getOption(m, httpAnnotation);
      const { case: method, value } = rule.pattern;
      assert.ok(method !== undefined && method !== "custom", `${m.name} has a plain method`);
      return [m.name, method, (value as string).replace(/\{([^}=]+)(=[^}]*)?\}/g, "{$1}")];
    });
}

function operations(d: Doc): Array<{ method: string; path: string; op: Operation }> {
  return Object.entries(d.paths).flatMap(([path, item]) => Object.entries(item).map(([method, op]) => ({ method, path, op })));
}

describe("OpenAPI document", () => {
  it("is OpenAPI 3.1.0", () => {
    assert.equal(doc.openapi, "3.1.0");
  });

  for (const service of services) {
    it(`lists every ${service.name} rpc with an http rule exactly once, with its method and path`, () => {
      const routes = expectedRoutes(service);
      assert.ok(routes.length > 5);
      for (const [rpc, method, path] of routes) {
        const found = operations(doc).filter((o) => o.op.operationId === rpc);
        assert.equal(found.length, 1, `${rpc} appears ${found.length} times`);
        assert.equal(found[0]?.method, method, `${rpc} method`);
        assert.equal(found[0]?.path, path, `${rpc} path`);
      }
    });
  }

  it("has no operation that is not an rpc of the services", () => {
    const rpcs = new Set(services.flatMap((s) => expectedRoutes(s).map(([rpc]) => rpc)));
    for (const { op } of operations(doc)) assert.ok(rpcs.has(op.operationId), op.operationId);
  });

  it("resolves every $ref to a component", () => {
    let refs = 0;
    const walk = (value: unknown): void => {
      if (Array.isArray(value)) value.forEach(walk);
      else if (value !== null && typeof value === "object") {
        for (const [k, v] of Object.entries(value)) {
          if (k === "$ref") {
            refs++;
            assert.equal(typeof v, "string");
            const match = /^#\/components\/schemas\/(.+)$/.exec(v as string);
            assert.ok(match !== null, `unexpected $ref ${String(v)}`);
            assert.ok(doc.components.schemas[match[1] ?? ""] !== undefined, `unresolved ${String(v)}`);
          } else walk(v);
        }
      }
    };
    walk(doc);
    assert.ok(refs > 50);
  });

  it("maps the TrainingJob fields with the proto3 JSON mapping", () => {
    const props = doc.components.schemas["TrainingJob"]?.properties ?? {};
    assert.equal(props["progress"]?.type, "number");
    assert.deepEqual({ type: props["projected_cost_credits"]?.type, format: props["projected_cost_credits"]?.format }, { type: "string", format: "int64" });
    assert.deepEqual({ type: props["created_at"]?.type, format: props["created_at"]?.format }, { type: "string", format: "date-time" });
    assert.equal(props["required_vram_mb"]?.type, "integer");
    assert.equal((props["metrics"] as { additionalProperties?: { type?: string } } | undefined)?.additionalProperties?.type, "number");
  });

  it("declares text/csv for the CSV exports, text/event-stream for the job's live events and JSON for the rest", () => {
    for (const { op } of operations(doc)) {
      const success = Object.entries(op.responses).find(([s]) => s.startsWith("2"))?.[1];
      const types = Object.keys(success?.content ?? {});
      const csv = op.operationId === "ExportUsageCsv" || op.operationId === "GetCreditStatementCsv";
      assert.deepEqual(types, [csv ? "text/csv" : op.operationId === "WatchTrainingJob" ? "text/event-stream" : "application/json"], op.operationId);
    }
  });

  it("answers 201 for POST rules of Create rpcs and 200 otherwise (and 204 for an event stream that ends before its first event)", () => {
    for (const { method, op } of operations(doc)) {
      const success = Object.keys(op.responses).filter((s) => s.startsWith("2"));
      const expected = method === "post" && op.operationId.startsWith("Create") ? ["201"] : op.operationId === "WatchTrainingJob" ? ["200", "204"] : ["200"];
      assert.deepEqual(success, expected, op.operationId);
    }
  });

  it("needs no auth only for GetConfig, GetMeta, Login and the retired endpoint", () => {
    const open = operations(doc).filter(({ op }) => op.security.length === 0).map(({ op }) => op.operationId).sort();
    assert.deepEqual(open, ["CreateLegacyImageJob", "GetConfig", "GetMeta", "Login"]);
  });

  it("turns the legacy {legacy_path=**} template into a plain path parameter with a note", () => {
    const op = doc.paths["/api/v1/customer/jobs/{legacy_path}"]?.["post"];
    assert.ok(op !== undefined);
    assert.equal(op.deprecated, true);
    const param = op.parameters?.find((p) => p.name === "legacy_path");
    assert.equal(param?.in, "path");
    assert.match(param?.description ?? "", /legacy_path=\*\*/);
    assert.ok(op.responses["410"] !== undefined);
  });

  it("takes descriptions from the proto comments", () => {
    const schema = doc.components.schemas["TrainingJob"] as { properties: Record<string, { description?: string }> };
    assert.equal(schema.properties["progress"]?.description, "0..1 over the whole DAG.");
  });
});

describe("proto comment parser", () => {
  it("keeps leading and trailing comments, drops detached ones and reads section headers", () => {
    const parsed = parseProtoComments(
      [
        "syntax = \"proto3\";",
        "// The package.",
        "package a.b;",
        "// detached",
        "",
        "service S {",
        "  // ---- reads (no auth) ----",
        "  // Gets it.",
        "  rpc Get(M) returns (M) {",
        "    option (google.api.http) = {get: \"/x/{id}\"};",
        "  }",
        "}",
        "// A message.",
        "message M {",
        "  string id = 1; // The id.",
        "  // Nested.",
        "  message N { int32 n = 1; }",
        "  map<string, double> m = 2;",
        "}",
      ].join("\n"),
    );
    assert.equal(parsed.comments.get("a.b"), "The package.");
    assert.equal(parsed.comments.get("a.b.S"), undefined);
    assert.equal(parsed.comments.get("a.b.S.Get"), "Gets it.");
    assert.equal(parsed.sections.get("a.b.S.Get"), "reads (no auth)");
    assert.equal(parsed.comments.get("a.b.M"), "A message.");
    assert.equal(parsed.comments.get("a.b.M.id"), "The id.");
    assert.equal(parsed.comments.get("a.b.M.N"), "Nested.");
  });
});

describe("OpenAPI route", () => {
  it("serves the document as JSON at GET /api/v1/openapi.json, built once", async () => {
    const route = createOpenApiRoute(services);
    assert.equal(route.method, "GET");
    assert.ok(route.pattern.test("/api/v1/openapi.json"));
    assert.ok(!route.pattern.test("/api/v1/openapi.jsonx"));
    const server = http.createServer((req, res) => {
      const match = route.pattern.exec(new URL(req.url ?? "/", "http://x").pathname);
      if (match === null) {
        res.statusCode = 404;
        res.end();
        return;
      }
      void route.handle(req, res, match, "rid-1");
    });
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    try {
      const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/api/v1/openapi.json`;
      const first = await fetch(url);
      assert.equal(first.status, 200);
      assert.match(first.headers.get("content-type") ?? "", /^application\/json/);
      const text = await first.text();
      const body = JSON.parse(text) as Doc;
      assert.equal(body.openapi, "3.1.0");
      assert.ok(body.paths["/api/v1/customer/training-jobs"]?.["post"] !== undefined);
      assert.equal(await (await fetch(url)).text(), text);
    } finally {
      await new Promise<void>((r) => server.close(() => r()));
    }
  });
});

describe("generated docs", () => {
  const files = generateDocs();

  it("cover every customer rpc but the retired one in the Postman collection", () => {
    type Item = { name: string; item?: Item[]; request?: { method: string; url: string | { raw: string; path?: string[] } } };
    const collection = JSON.parse(files.get(docFiles.collection) ?? "{}") as { item: Item[]; auth: { type: string } };
    assert.equal(collection.auth.type, "apikey");
    const requests = collection.item.flatMap((f) => f.item ?? []).flatMap((i) => (i.request === undefined ? [] : [i.request]));
    // Requests to the API (not the PUTs to signed upload URLs), as "METHOD /path/{}".
    const keys = requests.flatMap((r) =>
      typeof r.url === "string" || !r.url.raw.startsWith("{{base_url}}")
        ? []
        : [`${r.method} /${(r.url.path ?? []).map((s) => (s.startsWith("{{") ? "{}" : s)).join("/")}`],
    );
    const expected = expectedRoutes(CustomerService)
      .filter(([rpc]) => rpc !== "CreateLegacyImageJob")
      .map(([, method, path]) => `${method.toUpperCase()} ${path.replace(/\{[^}]+\}/g, "{}")}`);
    assert.deepEqual([...keys].sort(), [...expected].sort());
    assert.ok(!keys.some((k) => k.includes("/customer/jobs/")));
  });

  it("use the documented variables in the Postman paths and put the destructive requests last", () => {
    const raw = files.get(docFiles.collection) ?? "";
    for (const v of ["dataset_id", "training_package_id", "training_job_id", "artifact_id", "webhook_id", "api_key_id"]) {
      assert.ok(raw.includes(`{{${v}}}`), v);
    }
    const collection = JSON.parse(raw) as { item: Array<{ name: string; item: Array<{ request: { method: string } }> }> };
    const last = collection.item.at(-1);
    assert.equal(last?.name, "Cleanup (destructive)");
    assert.ok(collection.item.slice(0, -1).every((f) => f.item.every((i) => i.request.method !== "DELETE")));
  });

  it("pass scripts/docs.ts --check", () => {
    const result = spawnSync(process.execPath, ["scripts/docs.ts", "--check"], { cwd: root, encoding: "utf8" });
    assert.equal(result.status, 0, `${result.stdout}${result.stderr}`);
  });
});
