/**
 * Generates the API documentation from the protos (nothing in it is written
 * per endpoint by hand):
 *
 *   docs/openapi.json                                   OpenAPI 3.1 (src/api/openapi.ts)
 *   docs/api.md                                         a reference page, endpoint by endpoint
 *   docs/postman/gpu-agent.postman_collection.json      Postman v2.1, every customer endpoint
 *   docs/postman/gpu-agent.postman_environment.example.json
 *
 * `npm run docs` writes them; `npm run docs -- --check` writes
 * nothing and exits 1 when a file on disk differs from what it would write
 * (they are committed, like src/gen).
 *
 * Example values (request bodies, curl lines) come from, in order: the table
 * below, a `Default …` or `"a" | "b"` hint in the field's proto comment, and
 * path-variable names (`dataset_id` → `{{dataset_id}}`). Fields left without an
 * example are not sent.
 */
import { createHash } from "node:crypto";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import type { DescService } from "@bufbuild/protobuf";
import { buildOpenApiDocument, defaultApiDescription, defaultApiTitle, loadProtoComments, packageVersion, securitySchemes } from "../src/api/openapi.ts";
import { allScopes } from "../src/auth/scopes.ts";
import { AdminService } from "../src/gen/gpuagent/admin/v1/admin_pb.ts";
import { CustomerService } from "../src/gen/gpuagent/customer/v1/customer_pb.ts";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const defaultBaseUrl = "http://127.0.0.1:8080";
const postmanSchema = "https://schema.getpostman.com/json/collection/v2.1.0/collection.json";

export const docFiles = {
  openapi: "docs/openapi.json",
  apiMd: "docs/api.md",
  collection: "docs/postman/gpu-agent.postman_collection.json",
  environment: "docs/postman/gpu-agent.postman_environment.example.json",
} as const;

// ---------------------------------------------------------------- the document, loosely typed

type Schema = {
  $ref?: string;
  type?: string | string[];
  format?: string;
  description?: string;
  properties?: Record<string, Schema>;
  items?: Schema;
  additionalProperties?: Schema | boolean;
  enum?: string[];
};
type Parameter = { name: string; in: "path" | "query" | "header"; required?: boolean; description?: string; schema: Schema };
type Response = { description: string; "x-error-codes"?: string[]; content?: Record<string, { schema: Schema; "x-event-data"?: Schema }> };
type Operation = {
  operationId: string;
  tags: string[];
  summary: string;
  description?: string;
  deprecated?: boolean;
  "x-area": string;
  "x-rpc": string;
  security: Array<Record<string, string[]>>;
  parameters?: Parameter[];
  requestBody?: { content: Record<string, { schema: Schema }> };
  responses: Record<string, Response>;
};
type OpenApi = {
  info: { title: string; version: string; description?: string };
  tags: Array<{ name: string; description?: string }>;
  paths: Record<string, Record<string, Operation>>;
  components: { schemas: Record<string, Schema> };
};

/** One operation with where it lives. */
interface Endpoint {
  readonly method: string;
  readonly path: string;
  readonly op: Operation;
}

type Auth = "none" | "customer" | "session" | "admin";

function authOf(op: Operation): Auth {
  if (op.security.length === 0) return "none";
  const names = op.security.flatMap((s) => Object.keys(s));
  if (names.includes(securitySchemes.apiKey)) return "customer";
  if (names.includes(securitySchemes.admin)) return "admin";
  return "session";
}

function endpointsOf(doc: OpenApi): Endpoint[] {
  const out: Endpoint[] = [];
  for (const [path, item] of Object.entries(doc.paths)) {
    for (const [method, op] of Object.entries(item)) out.push({ method: method.toUpperCase(), path, op });
  }
  // Proto order: the order the rpcs are declared in, service by service.
  const order = new Map<string, number>();
  let i = 0;
  for (const s of services) for (const m of s.methods) order.set(`${s.typeName}.${m.name}`, i++);
  return out.sort((a, b) => (order.get(a.op["x-rpc"]) ?? 0) - (order.get(b.op["x-rpc"]) ?? 0));
}

function resolveRef(doc: OpenApi, schema: Schema): Schema {
  if (schema.$ref === undefined) return schema;
  const name = schema.$ref.replace("#/components/schemas/", "");
  const target = doc.components.schemas[name];
  if (target === undefined) throw new Error(`unresolved ${schema.$ref}`);
  return { ...target, ...(schema.description === undefined ? {} : { description: schema.description }) };
}

const refName = (ref: string): string => ref.replace("#/components/schemas/", "");

// ---------------------------------------------------------------- variables and examples

/** The Postman variable of a path variable: `training-jobs/{id}` and `training-jobs/{job_id}` → training_job_id. */
export function variableFor(path: string, name: string): string {
  // An artifact belongs to a finished job, not to the job the collection just created:
  // as in seed 002, `job_id` + `artifact_id` name a completed job and one of its artifacts.
  if (name === "job_id" && path.includes("{artifact_id}")) return "job_id";
  const segments = path.split("/");
  const at = segments.indexOf(`{${name}}`);
  const collection = at > 0 ? (segments[at - 1] ?? "") : "";
  if (collection === "" || collection.startsWith("{")) return name;
  const singular = collection.replace(/s$/, "").replace(/-/g, "_");
  if (name === "id") return `${singular}_id`;
  if (name.endsWith("_id")) {
    const stem = name.slice(0, -3);
    if (singular === stem || singular.endsWith(`_${stem}`)) return `${singular}_id`;
  }
  return name;
}

/** Example values by `Rpc.field` or by field name. */
const examples: Readonly<Record<string, unknown>> = {
  "Login.email": "{{email}}",
  "Login.password": "{{password}}",
  "CreateApiKey.name": "ci pipeline",
  "CreateApiKey.scopes": [...allScopes],
  "CreateDataset.name": "tiny-mlp dataset",
  "CreateDataset.size_bytes": "{{dataset_size_bytes}}",
  "CreateDataset.sha256": "{{dataset_sha256}}",
  "CreateDataset.format": "csv",
  "CreateTrainingPackage.name": "tiny-mlp package",
  "CreateTrainingPackage.size_bytes": "{{training_package_size_bytes}}",
  "CreateTrainingPackage.sha256": "{{training_package_sha256}}",
  "CreateTrainingJob.name": "tiny-mlp run",
  required_vram_mb: 8000,
  required_disk_mb: 1024,
  max_runtime_seconds: 600,
  sensitivity: "low_sensitive",
  "CreateTrainingJob.required_gpu_count": 1,
  "CreateTrainingJob.queue_timeout_seconds": 86400,
  url: "https://your-receiver.example.com/gpu-agent",
  events: ["job.completed", "job.failed"],
  "CreateWebhook.description": "job notifications",
  "CreateCustomer.email": "customer@example.com",
  "CreateCustomer.password": "change-me-please",
  "CreateCustomer.credits": "1000",
  "GrantCredits.amount": "500",
  "GrantCredits.reason": "monthly top-up",
  "SetNodeTrustLevel.trust_level": "verified",
  limit: 20,
  days: 30,
  date_from: "2025-01-01",
  date_to: "2025-01-31",
};

const isEmpty = (v: unknown): boolean =>
  v === undefined || v === "" || v === 0 || v === false || (Array.isArray(v) && v.length === 0) || (typeof v === "object" && v !== null && Object.keys(v).length === 0);

/** An example for one field, or undefined when there is none worth sending. */
function exampleOf(doc: OpenApi, rpc: string, name: string, schema: Schema, path: string, depth = 0): unknown {
  const own = examples[`${rpc}.${name}`] ?? examples[name];
  if (own !== undefined) return own;
  if (name.endsWith("_id")) {
    // dataset_id → {{dataset_id}}; job_id → {{training_job_id}}.
    const variable = (postmanVariables as readonly string[]).find((v) => v === name) ?? postmanVariables.find((v) => v.endsWith(`_${name}`)) ?? name;
    return `{{${variable}}}`;
  }
  const description = schema.description ?? "";
  const s = resolveRef(doc, schema);
  const type = Array.isArray(s.type) ? s.type[0] : s.type;
  if (type === "object" && s.properties !== undefined && depth < 3) {
    return objectExample(doc, rpc, s, path, depth + 1);
  }
  if (type === "array" && s.items !== undefined) {
    const item = exampleOf(doc, rpc, name, s.items, path, depth + 1);
    return item === undefined ? undefined : [item];
  }
  if (s.enum !== undefined) return s.enum.find((v) => !v.endsWith("_UNSPECIFIED")) ?? s.enum[0];
  const defaultNumber = /\bDefault (\d+)\b/.exec(description)?.[1];
  const defaultString = /\bDefault "([^"]+)"/i.exec(description)?.[1];
  const choice = /"([^"]+)"\s*\|/.exec(description)?.[1];
  if (type === "integer" && defaultNumber !== undefined) return Number(defaultNumber);
  if (type === "string" && s.format === "int64" && defaultNumber !== undefined) return defaultNumber;
  if (type === "string" && s.format === undefined) return defaultString ?? choice;
  return undefined;
}

function objectExample(doc: OpenApi, rpc: string, schema: Schema, path: string, depth = 0): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [name, field] of Object.entries(resolveRef(doc, schema).properties ?? {})) {
    const value = exampleOf(doc, rpc, name, field, path, depth);
    if (!isEmpty(value)) out[name] = value;
  }
  return out;
}

function requestBodyExample(doc: OpenApi, e: Endpoint): unknown {
  const body = e.op.requestBody?.content["application/json"]?.schema;
  if (body === undefined) return undefined;
  return objectExample(doc, e.op.operationId, body, e.path);
}

function queryExamples(doc: OpenApi, e: Endpoint): Array<{ name: string; value: unknown; description: string | undefined }> {
  return (e.op.parameters ?? [])
    .filter((p) => p.in === "query")
    .map((p) => ({ name: p.name, value: exampleOf(doc, e.op.operationId, p.name, { ...p.schema, ...(p.description === undefined ? {} : { description: p.description }) }, e.path), description: p.description }));
}

// ---------------------------------------------------------------- Postman

const isDestructive = (e: Endpoint): boolean => e.method === "DELETE" || /^(Cancel|Revoke|Delete)/.test(e.op.operationId);

/** Where a successful answer names a variable later requests use, the script that saves it. */
function captureScript(doc: OpenApi, e: Endpoint, variables: ReadonlySet<string>): string[] {
  const success = Object.entries(e.op.responses).find(([status]) => status.startsWith("2"));
  const schemaRef = success?.[1].content?.["application/json"]?.schema;
  if (schemaRef === undefined) return [];
  const schema = resolveRef(doc, schemaRef);
  const props = schema.properties ?? {};
  const saves: string[] = [];
  const collection = e.path.split("/").filter((s) => s !== "").at(-1) ?? "";
  // The variable of the resources this path lists or creates: /training-jobs → training_job_id.
  const resourceVar = collection === "" || collection.startsWith("{") ? undefined : `${collection.replace(/ies$/, "y").replace(/s$/, "").replace(/-/g, "_")}_id`;
  // Top-level fields named like a (non-id) variable: Login → session_token.
  for (const name of Object.keys(props)) {
    if (variables.has(name) && !name.endsWith("_id") && props[name]?.type === "string") saves.push(`save(${JSON.stringify(name)}, json[${JSON.stringify(name)}]);`);
  }
  if (resourceVar !== undefined && variables.has(resourceVar) && e.method === "POST") {
    if ("id" in props) saves.push(`save(${JSON.stringify(resourceVar)}, json.id);`);
    else {
      // A wrapper such as {webhook, secret}: the one message field that has an id.
      for (const [name, p] of Object.entries(props)) {
        if (p.$ref !== undefined && "id" in (resolveRef(doc, p).properties ?? {})) saves.push(`save(${JSON.stringify(resourceVar)}, json[${JSON.stringify(name)}] && json[${JSON.stringify(name)}].id);`);
      }
    }
    if ("upload_url" in props && variables.has(`${resourceVar.replace(/_id$/, "")}_upload_url`)) {
      saves.push(`save(${JSON.stringify(`${resourceVar.replace(/_id$/, "")}_upload_url`)}, json.upload_url);`);
    }
  }
  if (resourceVar !== undefined && variables.has(resourceVar) && e.method === "GET" && props["data"]?.type === "array") {
    saves.push(`if (!pm.variables.get(${JSON.stringify(resourceVar)}) && json.data && json.data.length > 0) save(${JSON.stringify(resourceVar)}, json.data[0].id);`);
  }
  if (saves.length === 0) return [];
  return [
    "function save(key, value) {",
    "  if (value === undefined || value === null || value === \"\") return;",
    "  pm.collectionVariables.set(key, value);",
    "  if (pm.environment.has(key)) pm.environment.set(key, value);",
    "}",
    "if (pm.response.code >= 200 && pm.response.code < 300) {",
    "  const json = pm.response.json();",
    ...saves.map((s) => `  ${s}`),
    "}",
  ];
}

function postmanUrl(e: Endpoint, query: Array<{ key: string; value: string; disabled: boolean; description?: string }>): Record<string, unknown> {
  const path = e.path.replace(/\{([^}]+)\}/g, (_a, name: string) => `{{${variableFor(e.path, name)}}}`);
  const url: Record<string, unknown> = {
    raw: `{{base_url}}${path}`,
    host: ["{{base_url}}"],
    path: path.split("/").filter((s) => s !== ""),
  };
  if (query.length > 0) url["query"] = query;
  return url;
}

function authNote(auth: Auth): string {
  switch (auth) {
    case "none":
      return "No authentication.";
    case "customer":
      return "Authentication: `X-API-Key: {{api_key}}` (collection auth), or a session token.";
    case "session":
      return "Authentication: a portal session only (`Authorization: Bearer {{session_token}}`, from Login); API keys are refused.";
    case "admin":
      return "Authentication: `Authorization: Bearer <admin token>`.";
  }
}

function postmanItem(doc: OpenApi, e: Endpoint, variables: ReadonlySet<string>): Record<string, unknown> {
  const auth = authOf(e.op);
  const header: Array<Record<string, unknown>> = [];
  for (const p of e.op.parameters ?? []) {
    if (p.in !== "header") continue;
    // Last-Event-ID is what a client sends when it reconnects, so a first request leaves it out: the header is
    // listed, switched off, with the id of an event to resume after. Other headers (Idempotency-Key) take a fresh id.
    if (p.name === "Last-Event-ID") header.push({ key: p.name, value: "{{last_event_id}}", disabled: true, description: p.description ?? "" });
    else header.push({ key: p.name, value: "{{$guid}}", description: p.description ?? "" });
  }
  const body = requestBodyExample(doc, e);
  if (body !== undefined) header.push({ key: "Content-Type", value: "application/json" });
  const query = queryExamples(doc, e).map((q) => ({
    key: q.name,
    value: q.value === undefined ? "" : String(q.value),
    disabled: true,
    ...(q.description === undefined ? {} : { description: q.description }),
  }));
  const request: Record<string, unknown> = {
    method: e.method,
    header,
    url: postmanUrl(e, query),
    description: [e.op.description, authNote(auth), `rpc \`${e.op["x-rpc"]}\``].filter((s) => s !== undefined).join("\n\n"),
  };
  if (auth === "none") request["auth"] = { type: "noauth" };
  if (auth === "session") request["auth"] = { type: "bearer", bearer: [{ key: "token", value: "{{session_token}}", type: "string" }] };
  if (body !== undefined) request["body"] = { mode: "raw", raw: JSON.stringify(body, null, 2), options: { raw: { language: "json" } } };
  const item: Record<string, unknown> = { name: e.op.summary, request, response: [] };
  const script = captureScript(doc, e, variables);
  if (script.length > 0) item["event"] = [{ listen: "test", script: { type: "text/javascript", exec: script } }];
  return item;
}

/** After a Create* whose answer has an upload_url, the PUT of the bytes to it (a signed URL, no auth). */
function uploadItem(e: Endpoint, variable: string): Record<string, unknown> {
  const what = variable.replace(/_upload_url$/, "").replace(/_/g, " ");
  return {
    name: `Upload ${what} bytes`,
    request: {
      method: "PUT",
      header: [{ key: "Content-Type", value: "application/octet-stream" }],
      url: `{{${variable}}}`,
      auth: { type: "noauth" },
      // A path relative to newman's --working-dir; in the Postman app, choose the file in the Body tab.
      body: { mode: "file", file: { src: variable.startsWith("dataset") ? "dataset.csv" : "package.zip" } },
      description: `PUT the file's bytes to the signed \`upload_url\` that ${e.op.summary} answered (saved as \`{{${variable}}}\`). Its size and sha256 must be the ones declared in \`{{${variable.replace(/_upload_url$/, "")}_size_bytes}}\` and \`{{${variable.replace(/_upload_url$/, "")}_sha256}}\`. With newman, the file is \`${variable.startsWith("dataset") ? "dataset.csv" : "package.zip"}\` in the --working-dir. Then finalize.`,
    },
    response: [],
  };
}

const postmanVariables = [
  "base_url",
  "api_key",
  "session_token",
  "email",
  "password",
  "api_key_id",
  "dataset_size_bytes",
  "dataset_sha256",
  "dataset_upload_url",
  "dataset_id",
  "training_package_size_bytes",
  "training_package_sha256",
  "training_package_upload_url",
  "training_package_id",
  "training_job_id",
  "job_id",
  "compute_unit_id",
  "artifact_id",
  "webhook_id",
  "delivery_id",
] as const;
const secretVariables = new Set(["api_key", "session_token", "password"]);

/** A stable UUID-shaped id, so regenerating does not change the file. */
function stableId(seed: string): string {
  const h = createHash("sha256").update(seed).digest("hex");
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-5${h.slice(13, 16)}-a${h.slice(17, 20)}-${h.slice(20, 32)}`;
}

/** The Postman v2.1 collection of every customer endpoint but the retired ones. */
export function buildPostmanCollection(doc: OpenApi): Record<string, unknown> {
  const variables = new Set<string>(postmanVariables);
  const endpoints = endpointsOf(doc).filter((e) => e.op.tags.includes(CustomerService.name) && e.op.deprecated !== true);
  for (const e of endpoints) {
    for (const [, name] of e.path.matchAll(/\{([^}]+)\}/g)) {
      const v = variableFor(e.path, name ?? "");
      if (!variables.has(v)) throw new Error(`${e.op.operationId}: path variable ${name} maps to ${v}, which is no collection variable`);
    }
  }
  const folders = new Map<string, Array<Record<string, unknown>>>();
  const cleanup: Endpoint[] = [];
  for (const e of endpoints) {
    if (isDestructive(e)) {
      cleanup.push(e);
      continue;
    }
    const items = folders.get(e.op["x-area"]) ?? [];
    folders.set(e.op["x-area"], items);
    items.push(postmanItem(doc, e, variables));
    const script = captureScript(doc, e, variables).join("\n");
    const upload = /save\("(\w+_upload_url)"/.exec(script)?.[1];
    if (upload !== undefined) items.push(uploadItem(e, upload));
  }
  // Cancel before deleting what the job uses; then in declaration order.
  cleanup.sort((a, b) => Number(!a.op.operationId.startsWith("Cancel")) - Number(!b.op.operationId.startsWith("Cancel")));
  const item = [...folders].map(([name, items]) => ({ name, item: items }));
  item.push({ name: "Cleanup (destructive)", item: cleanup.map((e) => postmanItem(doc, e, variables)) });
  return {
    info: {
      _postman_id: stableId("gpu-agent customer collection"),
      name: "GPU-Agent customer API",
      description:
        "Generated by `npm run docs` from the protos (do not edit by hand). Every customer endpoint, in an order that makes sense from top to bottom; " +
        "the destructive ones are in the last folder. Set `base_url` and `api_key` (or `email`/`password` and run Login for `session_token`, which the API-key endpoints need). " +
        "Create requests save the ids they answer into the collection variables the later requests use. The retired `POST /api/v1/customer/jobs/…` endpoint is left out: it always answers 410.",
      schema: postmanSchema,
    },
    auth: {
      type: "apikey",
      apikey: [
        { key: "key", value: "X-API-Key", type: "string" },
        { key: "value", value: "{{api_key}}", type: "string" },
        { key: "in", value: "header", type: "string" },
      ],
    },
    item,
    variable: postmanVariables.map((key) => ({ key, value: key === "base_url" ? defaultBaseUrl : "", type: "string" })),
  };
}

export function buildPostmanEnvironment(): Record<string, unknown> {
  return {
    id: stableId("gpu-agent environment example"),
    name: "GPU-Agent (example)",
    values: postmanVariables.map((key) => ({ key, value: "", type: secretVariables.has(key) ? "secret" : "default", enabled: true })),
    _postman_variable_scope: "environment",
  };
}

// ---------------------------------------------------------------- api.md

/** GitHub's heading anchor. */
function slug(heading: string): string {
  return heading
    .toLowerCase()
    .replace(/[^\p{L}\p{N} _-]/gu, "")
    .replace(/ /g, "-");
}

function typeText(doc: OpenApi, schema: Schema): string {
  if (schema.$ref !== undefined) {
    const name = refName(schema.$ref);
    return `[${name}](#${slug(name)})`;
  }
  const type = Array.isArray(schema.type) ? schema.type.filter((t) => t !== "null").join(" | ") + (schema.type.includes("null") ? " | null" : "") : schema.type;
  if (type === "array" && schema.items !== undefined) return `${typeText(doc, schema.items)}[]`;
  if (type === "object" && typeof schema.additionalProperties === "object") return `map<string, ${typeText(doc, schema.additionalProperties)}>`;
  if (type === "object") return "object";
  if (schema.format === "date-time") return "string (RFC 3339)";
  if (schema.format === "int64" || schema.format === "uint64") return `string (${schema.format})`;
  if (schema.format === "byte") return "string (base64)";
  if (schema.enum !== undefined) return schema.enum.map((v) => `\`${v}\``).join(" \\| ");
  return type ?? "any";
}

const cell = (text: string | undefined): string => (text ?? "").replace(/\|/g, "\\|").replace(/\n+/g, " ");

function fieldTable(doc: OpenApi, schema: Schema): string[] {
  const resolved = resolveRef(doc, schema);
  const props = resolved.properties ?? {};
  if (resolved.properties === undefined && resolved.additionalProperties === true) return [`Any JSON object.${resolved.description === undefined ? "" : ` ${resolved.description}`}`];
  if (Object.keys(props).length === 0) return ["(no fields)"];
  return ["| field | type | description |", "|---|---|---|", ...Object.entries(props).map(([name, p]) => `| \`${name}\` | ${typeText(doc, p)} | ${cell(p.description)} |`)];
}

const curlVariables: Readonly<Record<string, string>> = {
  base_url: "GPU_AGENT_URL",
  api_key: "GPU_AGENT_API_KEY",
  session_token: "GPU_AGENT_SESSION_TOKEN",
};

const toShell = (text: string): string => text.replace(/\{\{(\w+)\}\}/g, (_a, name: string) => `$${curlVariables[name] ?? name.toUpperCase()}`);

function curlExample(doc: OpenApi, e: Endpoint): string[] {
  const auth = authOf(e.op);
  const success = Object.entries(e.op.responses).find(([s]) => s.startsWith("2"))?.[1];
  // An event stream is read as it comes (-N: no buffering), from its start: no resume point, no file.
  const events = success?.content?.["text/event-stream"] !== undefined;
  const path = e.path.replace(/\{([^}]+)\}/g, (_a, name: string) => `{{${e.op.tags.includes(CustomerService.name) ? variableFor(e.path, name) : name}}}`);
  const query = queryExamples(doc, e)
    .filter((q) => q.value !== undefined && q.name !== "cursor" && !events)
    .map((q) => `${q.name}=${encodeURIComponent(String(q.value))}`);
  const url = `{{base_url}}${path}${query.length > 0 ? `?${query.join("&")}` : ""}`;
  const lines = [`curl -sS${events ? "N" : ""}${e.method === "GET" ? "" : ` -X ${e.method}`} "${toShell(url)}"`];
  if (auth === "customer") lines.push(`-H "X-API-Key: $GPU_AGENT_API_KEY"`);
  if (auth === "session") lines.push(`-H "Authorization: Bearer $GPU_AGENT_SESSION_TOKEN"`);
  if (auth === "admin") lines.push(`-H "Authorization: Bearer $GPU_AGENT_ADMIN_TOKEN"`);
  for (const p of e.op.parameters ?? []) if (p.in === "header" && !events) lines.push(`-H "${p.name}: $(uuidgen)"`);
  const raw = events ? undefined : Object.keys(success?.content ?? {}).find((t) => t !== "application/json");
  if (raw !== undefined) lines.push(`-o ${path.split("/").at(-1)}`);
  const body = requestBodyExample(doc, e);
  if (body === undefined) return [lines.join(" \\\n  ")];
  lines.push(`-H "Content-Type: application/json"`, "--data-binary @- <<EOF");
  return [lines.join(" \\\n  "), toShell(JSON.stringify(body, null, 2)), "EOF"];
}

function authText(auth: Auth): string {
  switch (auth) {
    case "none":
      return "none";
    case "customer":
      return "API key (`X-API-Key`) or session (`Authorization: Bearer <session token>`)";
    case "session":
      return "session only (`Authorization: Bearer <session token>`)";
    case "admin":
      return "admin token (`Authorization: Bearer <admin token>`)";
  }
}

export function buildApiMarkdown(doc: OpenApi): string {
  const endpoints = endpointsOf(doc);
  const areas = new Map<string, Endpoint[]>();
  for (const e of endpoints) {
    const key = e.op["x-area"];
    areas.set(key, [...(areas.get(key) ?? []), e]);
  }
  const out: string[] = [];
  out.push(`# ${doc.info.title} reference`, "");
  out.push("<!-- Generated by `npm run docs` from the protos; do not edit. `npm run docs -- --check` fails when it is stale. -->", "");
  if (doc.info.description !== undefined) out.push(doc.info.description, "");
  out.push(
    "Machine-readable forms: [openapi.json](openapi.json) (OpenAPI 3.1, also served at `GET /api/v1/openapi.json`) and the Postman collection in [postman/](postman/). " +
      "Error codes and their HTTP statuses: [errors.md](errors.md).",
    "",
    "The curl examples read `GPU_AGENT_URL`, `GPU_AGENT_API_KEY`, `GPU_AGENT_SESSION_TOKEN` or `GPU_AGENT_ADMIN_TOKEN`, and ids such as `DATASET_ID` from the environment.",
    "",
  );
  out.push(
    "Conventions: `POST` of a `Create*` rpc answers `201`, everything else `200`. JSON uses proto field names and always includes fields holding default values; 64-bit integers are strings; " +
      "timestamps are RFC 3339 strings (unset ones are left out). Unknown fields and query parameters are `400 VALIDATION_FAILED`. List endpoints take `limit` and `cursor` and answer `page.next_cursor`.",
    "",
  );
  out.push("## Contents", "");
  for (const [area, list] of areas) {
    out.push(`- [${area}](#${slug(area)})`);
    for (const e of list) out.push(`  - [${e.op.summary}](#${slug(e.op.summary)}): \`${e.method} ${e.path}\``);
  }
  out.push("- [Types](#types)", "");

  for (const [area, list] of areas) {
    out.push(`## ${area}`, "");
    for (const e of list) {
      const auth = authOf(e.op);
      const [status, success] = Object.entries(e.op.responses).find(([s]) => s.startsWith("2")) ?? ["200", undefined];
      out.push(`### ${e.op.summary}`, "");
      out.push(`\`${e.method} ${e.path}\` → \`${status}\``, "");
      if (e.op.deprecated === true) out.push("**Deprecated.**", "");
      out.push(`- rpc: \`${e.op["x-rpc"]}\``, `- auth: ${authText(auth)}`, "");
      if (e.op.description !== undefined) out.push(e.op.description, "");
      const params = e.op.parameters ?? [];
      if (params.length > 0) {
        out.push("Parameters:", "", "| name | in | type | description |", "|---|---|---|---|");
        for (const p of params) out.push(`| \`${p.name}\` | ${p.in} | ${typeText(doc, p.schema)} | ${cell(p.description)} |`);
        out.push("");
      }
      const body = e.op.requestBody?.content["application/json"]?.schema;
      if (body !== undefined) {
        const name = body.$ref === undefined ? "JSON object" : `[${refName(body.$ref)}](#${slug(refName(body.$ref))})`;
        out.push(`Request body (${name}):`, "", ...fieldTable(doc, body), "");
      }
      const [mediaType, media] = Object.entries(success?.content ?? {})[0] ?? [];
      if (mediaType === "application/json" && media !== undefined) {
        const name = media.schema.$ref === undefined ? typeText(doc, media.schema) : `[${refName(media.schema.$ref)}](#${slug(refName(media.schema.$ref))})`;
        out.push(`Response \`${status}\` (${name}):`, "", ...fieldTable(doc, media.schema), "");
      } else if (mediaType === "text/event-stream" && media?.["x-event-data"]?.$ref !== undefined) {
        const name = refName(media["x-event-data"].$ref);
        out.push(
          `Response \`${status}\`: Server-Sent Events (\`text/event-stream\`), one per [${name}](#${slug(name)}): \`id:\` its \`id\`, \`event:\` its \`type\`, \`data:\` the message as JSON; a heartbeat is the comment line \`: heartbeat\`. \`204\` when the stream ends before its first event.`,
          "",
        );
      } else if (mediaType !== undefined) {
        out.push(`Response \`${status}\`: the raw \`${mediaType}\` document.`, "");
      }
      const errors = Object.entries(e.op.responses).filter(([s]) => /^[45]/.test(s));
      if (errors.length > 0) {
        out.push("Errors:", "");
        for (const [s, r] of errors) out.push(`- \`${s}\`: ${(r["x-error-codes"] ?? []).map((c) => `\`${c}\``).join(", ")}`);
        out.push("");
      }
      out.push("Example:", "", "```sh", ...curlExample(doc, e), "```", "");
    }
  }

  out.push("## Types", "");
  out.push("Every message a request or response reaches, in its JSON form.", "");
  for (const [name, schema] of Object.entries(doc.components.schemas)) {
    out.push(`### ${name}`, "");
    if (schema.description !== undefined) out.push(schema.description, "");
    if (schema.enum !== undefined) out.push(`One of ${schema.enum.map((v) => `\`${v}\``).join(", ")}.`, "");
    else out.push(...fieldTable(doc, schema), "");
  }
  return `${out.join("\n").replace(/\n{3,}/g, "\n\n").trimEnd()}\n`;
}

// ---------------------------------------------------------------- main

const services: DescService[] = [CustomerService, AdminService];

/** Every generated file, path (relative to the repository) → content. */
export function generateDocs(): Map<string, string> {
  const doc = buildOpenApiDocument(services, {
    title: defaultApiTitle,
    version: packageVersion(),
    description: defaultApiDescription,
    serverUrl: defaultBaseUrl,
    comments: loadProtoComments(services, join(root, "proto")),
  }) as unknown as OpenApi;
  const json = (value: unknown): string => `${JSON.stringify(value, null, 2)}\n`;
  return new Map<string, string>([
    [docFiles.openapi, json(doc)],
    [docFiles.apiMd, buildApiMarkdown(doc)],
    [docFiles.collection, json(buildPostmanCollection(doc))],
    [docFiles.environment, json(buildPostmanEnvironment())],
  ]);
}

function readOrEmpty(path: string): string | undefined {
  try {
    return readFileSync(path, "utf8");
  } catch {
    return undefined;
  }
}

function main(argv: string[]): number {
  const check = argv.includes("--check");
  const files = generateDocs();
  if (check) {
    const stale = [...files].filter(([path, content]) => readOrEmpty(join(root, path)) !== content).map(([path]) => path);
    if (stale.length > 0) {
      console.error(`stale generated docs (run \`npm run docs\`):\n${stale.map((p) => `  ${p}`).join("\n")}`);
      return 1;
    }
    console.log(`docs are up to date (${files.size} files)`);
    return 0;
  }
  for (const [path, content] of files) {
    const full = join(root, path);
    mkdirSync(dirname(full), { recursive: true });
    if (readOrEmpty(full) !== content) {
      writeFileSync(full, content);
      console.log(`wrote ${path}`);
    }
  }
  return 0;
}

if (process.argv[1] !== undefined && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  process.exitCode = main(process.argv.slice(2));
}
