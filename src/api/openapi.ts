/**
 * OpenAPI 3.1 from the service descriptors: the same `google.api.http`
 * annotations the REST transcoder (`rest/transcoder.ts`) serves are turned into
 * paths, parameters, bodies and responses, and every reachable message into a
 * component schema following the proto3 JSON mapping the transcoder answers
 * with (proto field names, int64 as strings, Timestamp as RFC 3339, enums as
 * names). Nothing here is written per endpoint.
 *
 * protobuf-es keeps no source comments at run time, so descriptions come from
 * the `.proto` files themselves ({@link loadProtoComments}); without them the
 * document is the same, minus descriptions.
 *
 * Conventions mirrored from the transcoder:
 * - a POST rule of an rpc named `Create*` answers 201, everything else 200;
 * - `response_body` answers that one field; a `google.api.HttpBody` field is
 *   raw bytes (the media type is inferred from the path's extension, e.g. `.csv`),
 *   and on a server-streaming rpc the messages' bodies are the chunks of one body;
 * - fields bound neither to the path nor to the body are query parameters
 *   (dotted names reach into sub-messages);
 * - errors are the envelope `{"error":{"code","message","request_id","details"?}}`.
 */
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { ScalarType, getOption, hasOption } from "@bufbuild/protobuf";
import type { DescEnum, DescField, DescFile, DescMessage, DescMethod, DescService } from "@bufbuild/protobuf";
import { http } from "../gen/google/api/annotations_pb.ts";
import type { HttpRule } from "../gen/google/api/http_pb.ts";
import type { HttpRoute } from "../platform/http-types.ts";
import { ErrorCode } from "../platform/errors.ts";
import { httpStatusOf } from "./errors.ts";
import { hasRestShape, isEventStream, resumeFieldName } from "./rest/rest-methods.ts";

/** A JSON value as written into the document. */
type Json = null | boolean | number | string | Json[] | { [key: string]: Json };
type JsonObj = { [key: string]: Json };

/** How an rpc authenticates. */
export type AuthKind = "none" | "customer" | "session" | "admin";

/** Comments of a set of `.proto` files, keyed by fully-qualified element name. */
export interface ProtoComments {
  /** Message, enum, enum value, field, service, rpc and package → leading (and trailing) comment. */
  readonly comments: ReadonlyMap<string, string>;
  /** rpc → the `// ---- title ----` section header it sits under inside its service. */
  readonly sections: ReadonlyMap<string, string>;
}

/** Options of {@link buildOpenApiDocument}. */
export interface OpenApiOptions {
  readonly title: string;
  readonly version: string;
  /** Written as the only entry of `servers`; absent means relative to where the document is served. */
  readonly serverUrl?: string;
  /** A description of the whole API (info.description). */
  readonly description?: string;
  /** Source comments; see {@link loadProtoComments}. */
  readonly comments?: ProtoComments;
  /** Overrides the auth an rpc needs; undefined falls back to {@link defaultAuthOf}. */
  readonly auth?: (method: DescMethod) => AuthKind | undefined;
}

export const openApiPath = "/api/v1/openapi.json";

/** The security scheme names of the document. */
export const securitySchemes = {
  apiKey: "ApiKeyAuth",
  session: "SessionAuth",
  admin: "AdminAuth",
} as const;

const httpBodyTypeName = "google.api.HttpBody";

/** The rpcs whose auth differs from their service's default. */
const authExceptions: Readonly<Record<string, AuthKind>> = {
  "gpuagent.customer.v1.CustomerService.GetConfig": "none",
  "gpuagent.customer.v1.CustomerService.GetMeta": "none",
  "gpuagent.customer.v1.CustomerService.Login": "none",
  "gpuagent.customer.v1.CustomerService.CreateLegacyImageJob": "none",
  "gpuagent.customer.v1.CustomerService.CreateApiKey": "session",
  "gpuagent.customer.v1.CustomerService.ListApiKeys": "session",
  "gpuagent.customer.v1.CustomerService.RevokeApiKey": "session",
};

/**
 * The auth of an rpc: the exceptions above, else what its section header says
 * ("(no auth)", "(session only)"), else the admin token for a service in an
 * `admin` package and a customer API key or session for everything else.
 */
export function defaultAuthOf(method: DescMethod, comments?: ProtoComments): AuthKind {
  const fullName = `${method.parent.typeName}.${method.name}`;
  const exception = authExceptions[fullName];
  if (exception !== undefined) return exception;
  const section = comments?.sections.get(fullName) ?? "";
  if (/\bno auth\b/i.test(section)) return "none";
  if (/\bsession only\b/i.test(section)) return "session";
  return method.parent.typeName.split(".").includes("admin") ? "admin" : "customer";
}

// ---------------------------------------------------------------- proto comments

/**
 * Reads the comments of a `.proto` source. Leading comments (the comment lines
 * right above an element, no blank line between) and trailing ones (after the
 * code on the same line) are kept; detached comments are dropped. A comment
 * line of the form `---- title ----` inside a service is a section header: it
 * names the section of the rpcs below it and is no part of their description.
 */
export function parseProtoComments(source: string): ProtoComments {
  const comments = new Map<string, string>();
  const sections = new Map<string, string>();
  type Frame = { kind: "message" | "enum" | "service" | "oneof" | "block"; name: string };
  const stack: Frame[] = [];
  let pkg = "";
  let pending: string[] = [];
  let section: string | undefined;
  const scope = (): string => [pkg, ...stack.filter((f) => f.kind === "message" || f.kind === "enum" || f.kind === "service").map((f) => f.name)].filter((s) => s !== "").join(".");
  const record = (name: string, text: string): void => {
    if (text !== "") comments.set(name, text);
  };

  for (const raw of source.split(/\r?\n/)) {
    const line = raw.trim();
    if (line === "") {
      pending = [];
      continue;
    }
    if (line.startsWith("//")) {
      const text = line.replace(/^\/\/\s?/, "").trimEnd();
      const header = /^-{2,}\s*(.*?)\s*-{2,}$/.exec(text.trim());
      if (header !== null) {
        if (stack.at(-1)?.kind === "service") section = header[1];
        pending = [];
        continue;
      }
      pending.push(text);
      continue;
    }
    const { code, trailing } = splitTrailingComment(line);
    const text = [pending.join("\n").trim(), trailing].filter((s) => s !== "").join("\n");
    pending = [];
    const bare = code.replace(/"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'/g, '""');
    const top = stack.at(-1);
    const inBlock = stack.some((f) => f.kind === "block");
    let opened = 0;
    if (!inBlock) {
      let m: RegExpExecArray | null;
      if ((m = /^package\s+([\w.]+)\s*;/.exec(bare)) !== null) {
        pkg = m[1] ?? "";
        record(pkg, text);
      } else if ((m = /^(message|enum|service)\s+(\w+)\s*\{/.exec(bare)) !== null) {
        const kind = m[1] as "message" | "enum" | "service";
        const name = m[2] ?? "";
        record(`${scope() === "" ? "" : `${scope()}.`}${name}`, text);
        stack.push({ kind, name });
        if (kind === "service") section = undefined;
        opened = 1;
      } else if ((m = /^oneof\s+(\w+)\s*\{/.exec(bare)) !== null) {
        stack.push({ kind: "oneof", name: m[1] ?? "" });
        opened = 1;
      } else if (top?.kind === "service" && (m = /^rpc\s+(\w+)\s*\(/.exec(bare)) !== null) {
        const name = `${scope()}.${m[1] ?? ""}`;
        record(name, text);
        if (section !== undefined) sections.set(name, section);
      } else if (top?.kind === "enum" && (m = /^(\w+)\s*=\s*-?\w+/.exec(bare)) !== null && m[1] !== "option") {
        record(`${scope()}.${m[1] ?? ""}`, text);
      } else if (
        (top?.kind === "message" || top?.kind === "oneof") &&
        (m = /^(?:(?:repeated|optional|required)\s+)?(?:map\s*<[^>]*>|\.?[\w.]+)\s+(\w+)\s*=\s*\d+/.exec(bare)) !== null
      ) {
        record(`${scope()}.${m[1] ?? ""}`, text);
      }
    }
    for (const ch of bare) {
      if (ch === "{") {
        if (opened > 0) opened--;
        else stack.push({ kind: "block", name: "" });
      } else if (ch === "}") {
        stack.pop();
      }
    }
  }
  return { comments, sections };
}

function splitTrailingComment(line: string): { code: string; trailing: string } {
  let quote: string | undefined;
  for (let i = 0; i < line.length; i++) {
    const ch = line[i];
    if (quote !== undefined) {
      if (ch === "\\") i++;
      else if (ch === quote) quote = undefined;
    } else if (ch === '"' || ch === "'") {
      quote = ch;
    } else if (ch === "/" && line[i + 1] === "/") {
      return { code: line.slice(0, i).trim(), trailing: line.slice(i + 2).trim() };
    }
  }
  return { code: line, trailing: "" };
}

/** Where the repository's `.proto` files are, relative to this module. */
export const defaultProtoRoot = fileURLToPath(new URL("../../proto/", import.meta.url));

/**
 * Reads the comments of the services' files and of the files they import,
 * from `protoRoot` (files that are not there, such as the well-known types,
 * are skipped).
 */
export function loadProtoComments(services: ReadonlyArray<DescService>, protoRoot: string = defaultProtoRoot): ProtoComments {
  const comments = new Map<string, string>();
  const sections = new Map<string, string>();
  const seen = new Set<string>();
  const visit = (file: DescFile): void => {
    const name = file.proto.name;
    if (seen.has(name)) return;
    seen.add(name);
    const path = join(protoRoot, name);
    if (existsSync(path)) {
      const parsed = parseProtoComments(readFileSync(path, "utf8"));
      for (const [k, v] of parsed.comments) comments.set(k, v);
      for (const [k, v] of parsed.sections) sections.set(k, v);
    }
    for (const dep of file.dependencies) visit(dep);
  };
  for (const s of services) visit(s.file);
  return { comments, sections };
}

// ---------------------------------------------------------------- schemas

/** Well-known types with a special JSON form; undefined for ordinary messages. */
function wellKnownSchema(typeName: string): JsonObj | undefined {
  const wrapper = (schema: JsonObj): JsonObj => ({ ...schema, type: [schema["type"] as string, "null"] });
  switch (typeName) {
    case "google.protobuf.Timestamp":
      return { type: "string", format: "date-time" };
    case "google.protobuf.Duration":
      return { type: "string", pattern: "^-?[0-9]+(\\.[0-9]{1,9})?s$", description: "Seconds with an `s` suffix, e.g. `1.5s`." };
    case "google.protobuf.Struct":
      return { type: "object", additionalProperties: true };
    case "google.protobuf.Value":
      return {};
    case "google.protobuf.ListValue":
      return { type: "array", items: {} };
    case "google.protobuf.Empty":
      return { type: "object" };
    case "google.protobuf.FieldMask":
      return { type: "string", description: "Comma-separated field paths." };
    case "google.protobuf.Any":
      return { type: "object", properties: { "@type": { type: "string" } }, required: ["@type"], additionalProperties: true };
    case "google.protobuf.DoubleValue":
      return wrapper(scalarSchema(ScalarType.DOUBLE));
    case "google.protobuf.FloatValue":
      return wrapper(scalarSchema(ScalarType.FLOAT));
    case "google.protobuf.Int64Value":
      return wrapper(scalarSchema(ScalarType.INT64));
    case "google.protobuf.UInt64Value":
      return wrapper(scalarSchema(ScalarType.UINT64));
    case "google.protobuf.Int32Value":
      return wrapper(scalarSchema(ScalarType.INT32));
    case "google.protobuf.UInt32Value":
      return wrapper(scalarSchema(ScalarType.UINT32));
    case "google.protobuf.BoolValue":
      return wrapper(scalarSchema(ScalarType.BOOL));
    case "google.protobuf.StringValue":
      return wrapper(scalarSchema(ScalarType.STRING));
    case "google.protobuf.BytesValue":
      return wrapper(scalarSchema(ScalarType.BYTES));
    default:
      return undefined;
  }
}

/** The proto3 JSON form of a scalar. */
function scalarSchema(scalar: ScalarType): JsonObj {
  switch (scalar) {
    case ScalarType.DOUBLE:
      return { type: "number", format: "double" };
    case ScalarType.FLOAT:
      return { type: "number", format: "float" };
    case ScalarType.INT32:
    case ScalarType.SINT32:
    case ScalarType.SFIXED32:
      return { type: "integer", format: "int32" };
    case ScalarType.UINT32:
    case ScalarType.FIXED32:
      return { type: "integer", format: "uint32", minimum: 0 };
    case ScalarType.INT64:
    case ScalarType.SINT64:
    case ScalarType.SFIXED64:
      return { type: "string", format: "int64" };
    case ScalarType.UINT64:
    case ScalarType.FIXED64:
      return { type: "string", format: "uint64" };
    case ScalarType.BOOL:
      return { type: "boolean" };
    case ScalarType.STRING:
      return { type: "string" };
    case ScalarType.BYTES:
      return { type: "string", format: "byte", contentEncoding: "base64" };
  }
}

/** Builds `components.schemas` lazily: a message or enum becomes a component when first referenced. */
class SchemaRegistry {
  readonly schemas: Record<string, JsonObj> = {};
  private readonly names = new Map<string, string>();
  private readonly comments: ReadonlyMap<string, string>;
  private readonly nameOf: (typeName: string) => string;

  constructor(comments: ReadonlyMap<string, string>, nameOf: (typeName: string) => string) {
    this.comments = comments;
    this.nameOf = nameOf;
  }

  comment(name: string): string | undefined {
    return this.comments.get(name);
  }

  messageRef(message: DescMessage): JsonObj {
    const wkt = wellKnownSchema(message.typeName);
    if (wkt !== undefined) return wkt;
    let name = this.names.get(message.typeName);
    if (name === undefined) {
      name = this.nameOf(message.typeName);
      this.names.set(message.typeName, name);
      this.schemas[name] = {}; // reserved before recursing: recursive messages reference themselves
      this.schemas[name] = this.objectSchema(message, message.fields, this.comment(message.typeName));
    }
    return { $ref: `#/components/schemas/${name}` };
  }

  enumRef(desc: DescEnum): JsonObj {
    if (desc.typeName === "google.protobuf.NullValue") return { type: "null" };
    let name = this.names.get(desc.typeName);
    if (name === undefined) {
      name = this.nameOf(desc.typeName);
      this.names.set(desc.typeName, name);
      const schema: JsonObj = { type: "string", enum: desc.values.map((v) => v.name) };
      const description = this.comment(desc.typeName);
      if (description !== undefined) schema["description"] = description;
      this.schemas[name] = schema;
    }
    return { $ref: `#/components/schemas/${name}` };
  }

  /** An object schema of some fields of a message (all of them for its component). */
  objectSchema(message: DescMessage, fields: ReadonlyArray<DescField>, description: string | undefined): JsonObj {
    const properties: JsonObj = {};
    for (const f of fields) properties[f.name] = this.fieldSchema(f);
    const schema: JsonObj = { type: "object" };
    if (description !== undefined) schema["description"] = description;
    schema["properties"] = properties;
    const oneofs = message.oneofs.filter((o) => fields.some((f) => f.oneof === o));
    if (oneofs.length > 0) schema["x-oneofs"] = Object.fromEntries(oneofs.map((o) => [o.name, o.fields.map((f) => f.name)]));
    return schema;
  }

  /** The schema of one field, with its comment as description. */
  fieldSchema(field: DescField): JsonObj {
    let schema: JsonObj;
    switch (field.fieldKind) {
      case "scalar":
        schema = scalarSchema(field.scalar);
        break;
      case "enum":
        schema = this.enumRef(field.enum);
        break;
      case "message":
        schema = this.messageRef(field.message);
        break;
      case "list": {
        const items = field.listKind === "scalar" ? scalarSchema(field.scalar) : field.listKind === "enum" ? this.enumRef(field.enum) : this.messageRef(field.message);
        schema = { type: "array", items };
        break;
      }
      case "map": {
        const values = field.mapKind === "scalar" ? scalarSchema(field.scalar) : field.mapKind === "enum" ? this.enumRef(field.enum) : this.messageRef(field.message);
        schema = { type: "object", additionalProperties: values };
        if (field.mapKey === ScalarType.BOOL) schema["propertyNames"] = { enum: ["true", "false"] };
        else if (field.mapKey !== ScalarType.STRING) schema["propertyNames"] = { pattern: "^-?[0-9]+$" };
        break;
      }
    }
    const description = this.comment(`${field.parent.typeName}.${field.name}`);
    if (description !== undefined) {
      // A "$ref" with siblings is fine in OpenAPI 3.1 (JSON Schema 2020-12).
      schema = { ...schema, description };
    }
    if (field.oneof !== undefined && !field.proto.proto3Optional) {
      schema = { ...schema, "x-oneof": field.oneof.name };
    }
    return schema;
  }
}

/**
 * Component names: the message's own name, or, where two reachable types share
 * it, the name with its package minus the first component (`admin.v1.Customer`).
 */
function componentNamer(services: ReadonlyArray<DescService>): (typeName: string) => string {
  const all = new Set<string>();
  const visitMessage = (m: DescMessage): void => {
    if (all.has(m.typeName) || wellKnownSchema(m.typeName) !== undefined) return;
    all.add(m.typeName);
    for (const f of m.fields) {
      if (f.fieldKind === "message" || (f.fieldKind === "list" && f.listKind === "message") || (f.fieldKind === "map" && f.mapKind === "message")) visitMessage(f.message);
      if (f.fieldKind === "enum" || (f.fieldKind === "list" && f.listKind === "enum") || (f.fieldKind === "map" && f.mapKind === "enum")) all.add(f.enum.typeName);
    }
  };
  for (const s of services) {
    for (const m of s.methods) {
      visitMessage(m.input);
      visitMessage(m.output);
    }
  }
  const short = (t: string): string => t.slice(t.lastIndexOf(".") + 1);
  const count = new Map<string, number>();
  for (const t of all) count.set(short(t), (count.get(short(t)) ?? 0) + 1);
  return (typeName) => {
    const name = short(typeName);
    if ((count.get(name) ?? 0) <= 1) return name;
    const dot = typeName.indexOf(".");
    return dot === -1 ? typeName : typeName.slice(dot + 1);
  };
}

// ---------------------------------------------------------------- operations

interface PathVariable {
  readonly name: string;
  /** The template's sub-pattern, "*" when none was given. */
  readonly pattern: string;
}

/** `/v1/{name=shelves/*}/books/{id}:verb` → `/v1/{name}/books/{id}:verb` and its variables. */
function convertPath(template: string): { path: string; variables: PathVariable[] } {
  const variables: PathVariable[] = [];
  const path = template.replace(/\{([^}=]+)(?:=([^}]*))?\}/g, (_all, name: string, pattern: string | undefined) => {
    variables.push({ name, pattern: pattern ?? "*" });
    return `{${name}}`;
  });
  return { path, variables };
}

function ruleMethod(rule: HttpRule): { method: string; template: string } | undefined {
  switch (rule.pattern.case) {
    case "get":
    case "put":
    case "post":
    case "delete":
    case "patch":
      return { method: rule.pattern.case, template: rule.pattern.value };
    case "custom":
      return { method: rule.pattern.value.kind.toLowerCase(), template: rule.pattern.value.path };
    default:
      return undefined;
  }
}

function fieldAt(message: DescMessage, path: string): DescField | undefined {
  let current: DescMessage | undefined = message;
  let field: DescField | undefined;
  for (const name of path.split(".")) {
    if (current === undefined) return undefined;
    field = current.fields.find((f) => f.name === name);
    current = field?.fieldKind === "message" ? field.message : undefined;
  }
  return field;
}

const allErrorCodes = Object.values(ErrorCode);

/** `training-jobs` → JOB_NOT_FOUND: the longest word-suffix of the singular that names a not-found code. */
function notFoundCodeFor(collection: string): ErrorCode {
  const words = collection.replace(/s$/, "").split(/[-_]/).map((w) => w.toUpperCase());
  for (let i = 0; i < words.length; i++) {
    const code = `${words.slice(i).join("_")}_NOT_FOUND`;
    if ((allErrorCodes as string[]).includes(code)) return code as ErrorCode;
  }
  return "RESOURCE_NOT_FOUND";
}

const statusText: Readonly<Record<number, string>> = {
  400: "Bad request",
  401: "Unauthenticated",
  402: "Payment required",
  403: "Forbidden",
  404: "Not found",
  405: "Method not allowed",
  409: "Conflict",
  410: "Gone",
  413: "Payload too large",
  415: "Unsupported media type",
  429: "Too many requests",
  500: "Internal error",
  501: "Not implemented",
  502: "Bad gateway",
};

const mediaTypesByExtension: Readonly<Record<string, string>> = {
  csv: "text/csv",
  json: "application/json",
  txt: "text/plain",
  zip: "application/zip",
  html: "text/html",
};

/** "CreateApiKey" → "Create API key". */
export function rpcSummary(rpc: string): string {
  const acronyms: Readonly<Record<string, string>> = { api: "API", csv: "CSV", url: "URL", id: "ID", http: "HTTP" };
  return rpc
    .replace(/([a-z0-9])([A-Z])/g, "$1 $2")
    .split(" ")
    .map((w, i) => acronyms[w.toLowerCase()] ?? (i === 0 ? w : w.toLowerCase()))
    .join(" ");
}

/** Why an operation exists in the document: enough for the docs generator to group and describe it. */
interface OperationContext {
  readonly service: DescService;
  readonly method: DescMethod;
  readonly rule: HttpRule;
  readonly httpMethod: string;
  readonly template: string;
}

/** Builds the OpenAPI 3.1 document of the services' `google.api.http` rules. */
export function buildOpenApiDocument(services: ReadonlyArray<DescService>, options: OpenApiOptions): Record<string, unknown> {
  const protoComments: ProtoComments = options.comments ?? { comments: new Map(), sections: new Map() };
  const registry = new SchemaRegistry(protoComments.comments, componentNamer(services));
  const authOf = (m: DescMethod): AuthKind => options.auth?.(m) ?? defaultAuthOf(m, protoComments);
  const rpcNameCount = new Map<string, number>();
  for (const s of services) for (const m of s.methods) rpcNameCount.set(m.name, (rpcNameCount.get(m.name) ?? 0) + 1);

  const paths: Record<string, JsonObj> = {};
  const tags: JsonObj[] = [];
  for (const service of services) {
    const tag: JsonObj = { name: service.name };
    const pkg = service.typeName.slice(0, service.typeName.lastIndexOf("."));
    const description = [protoComments.comments.get(service.typeName), protoComments.comments.get(pkg)].filter((s) => s !== undefined).join("\n\n");
    if (description !== "") tag["description"] = description;
    tags.push(tag);
    for (const method of service.methods) {
      // The transcoder's own rule: unary rpcs, and server-streaming ones whose body is a streamed HttpBody.
      if (!hasRestShape(method)) continue;
      const rule = getOption(method, http);
      const bindings = [rule, ...rule.additionalBindings];
      bindings.forEach((binding, index) => {
        const shape = ruleMethod(binding);
        if (shape === undefined) return;
        const context: OperationContext = { service, method, rule: binding, httpMethod: shape.method, template: shape.template };
        let operationId = (rpcNameCount.get(method.name) ?? 0) > 1 ? `${service.name}_${method.name}` : method.name;
        if (index > 0) operationId = `${operationId}_${index}`;
        const { path, operation } = buildOperation(context, operationId, authOf(method), protoComments, registry);
        const item = (paths[path] ??= {});
        if (item[shape.method] !== undefined) throw new Error(`${method.parent.typeName}.${method.name}: ${shape.method.toUpperCase()} ${path} is bound twice`);
        item[shape.method] = operation;
      });
    }
  }

  registry.schemas["ErrorEnvelope"] = errorEnvelopeSchema();
  const info: JsonObj = { title: options.title, version: options.version };
  if (options.description !== undefined) info["description"] = options.description;
  const document: JsonObj = { openapi: "3.1.0", info };
  if (options.serverUrl !== undefined) document["servers"] = [{ url: options.serverUrl }];
  document["tags"] = tags;
  document["paths"] = paths;
  document["components"] = {
    schemas: Object.fromEntries(Object.entries(registry.schemas).sort(([a], [b]) => a.localeCompare(b))),
    securitySchemes: {
      [securitySchemes.apiKey]: { type: "apiKey", in: "header", name: "X-API-Key", description: "A customer API key (scoped)." },
      [securitySchemes.session]: { type: "http", scheme: "bearer", description: "A customer portal session token from Login (every scope)." },
      [securitySchemes.admin]: { type: "http", scheme: "bearer", description: "The operator's admin token." },
    },
  };
  return document;
}

function errorEnvelopeSchema(): JsonObj {
  return {
    type: "object",
    description: "The error envelope of every non-2xx REST answer; the codes and their statuses are in docs/errors.md.",
    required: ["error"],
    properties: {
      error: {
        type: "object",
        description: "What went wrong.",
        required: ["code", "message", "request_id"],
        properties: {
          code: { type: "string", enum: [...allErrorCodes], description: "Stable and machine-readable: branch on this (docs/errors.md lists each with its HTTP status)." },
          message: { type: "string", description: "For a person; never parse it." },
          request_id: { type: "string", description: "Also in the X-Request-Id response header." },
          details: { type: "object", additionalProperties: true, description: "Extra fields of some codes, e.g. `field`, `required_scope`." },
        },
      },
    },
  };
}

function securityOf(auth: AuthKind): Json[] {
  switch (auth) {
    case "none":
      return [];
    case "customer":
      return [{ [securitySchemes.apiKey]: [] }, { [securitySchemes.session]: [] }];
    case "session":
      return [{ [securitySchemes.session]: [] }];
    case "admin":
      return [{ [securitySchemes.admin]: [] }];
  }
}

function buildOperation(
  context: OperationContext,
  operationId: string,
  auth: AuthKind,
  protoComments: ProtoComments,
  registry: SchemaRegistry,
): { path: string; operation: JsonObj } {
  const { service, method, rule, httpMethod, template } = context;
  const fullName = `${method.parent.typeName}.${method.name}`;
  const comment = protoComments.comments.get(fullName);
  const section = protoComments.sections.get(fullName);
  const { path, variables } = convertPath(template);
  const input = method.input;
  const deprecated = method.deprecated || /\b(retired|deprecated)\b/i.test(`${section ?? ""}\n${comment ?? ""}`);

  const operation: JsonObj = { operationId, tags: [service.name] };
  operation["summary"] = rpcSummary(method.name);
  const notes: string[] = [];
  if (deprecated && section !== undefined) notes.push(`${section.charAt(0).toUpperCase()}${section.slice(1)}.`);
  if (comment !== undefined) notes.push(comment);
  const greedy = variables.filter((v) => v.pattern !== "*");
  for (const v of greedy) {
    notes.push(`The path template is \`${template}\`: \`{${v.name}}\` stands for \`{${v.name}=${v.pattern}}\`${v.pattern.includes("**") ? ", which matches the rest of the path, slashes included" : ""}.`);
  }
  if (notes.length > 0) operation["description"] = notes.join("\n\n");
  if (deprecated) operation["deprecated"] = true;
  // The area of the API the rpc belongs to: its section header, else its service and first path noun.
  const area = section ?? `${service.name.replace(/Service$/, "")}: ${template.split("/").filter((s) => s !== "" && !s.startsWith("{"))[3] ?? template}`;
  operation["x-area"] = area.charAt(0).toUpperCase() + area.slice(1);
  operation["x-rpc"] = fullName;
  operation["security"] = securityOf(auth);

  // ---- parameters
  const parameters: JsonObj[] = [];
  const pathBound = new Set(variables.map((v) => v.name));
  for (const v of variables) {
    const field = fieldAt(input, v.name);
    if (field === undefined) throw new Error(`${fullName}: path variable "${v.name}" names no field of ${input.typeName}`);
    const param: JsonObj = { name: v.name, in: "path", required: true, schema: stripDescription(registry.fieldSchema(field)) };
    const description = [registry.comment(`${field.parent.typeName}.${field.name}`)];
    if (v.pattern !== "*") {
      description.push(
        v.pattern.includes("**")
          ? `Template \`{${v.name}=${v.pattern}}\`: the rest of the path, slashes included (send them unencoded).`
          : `Template \`{${v.name}=${v.pattern}}\`.`,
      );
    }
    const text = description.filter((s) => s !== undefined).join(" ");
    if (text !== "") param["description"] = text;
    parameters.push(param);
  }
  const headerName = /Honou?rs the ([A-Za-z][A-Za-z0-9-]*) header/.exec(comment ?? "")?.[1];
  if (headerName !== undefined) {
    const sentence = (comment ?? "").split(/(?<=\.)\s+|\n\n/).find((s) => s.includes(headerName)) ?? "";
    parameters.push({ name: headerName, in: "header", required: false, schema: { type: "string" }, description: sentence.replace(/\s+/g, " ").trim() });
  }
  if (isEventStream(method)) {
    parameters.push({
      name: "Last-Event-ID",
      in: "header",
      required: false,
      schema: { type: "string" },
      description: `The id of the last event received (EventSource sends it when it reconnects): the stream resumes after it. Sets \`${resumeFieldName}\` when the query does not.`,
    });
  }
  if (rule.body !== "*") {
    const bodyField = rule.body === "" ? undefined : rule.body;
    for (const q of queryParameters(input, "", pathBound, bodyField, registry, new Set([input.typeName]))) parameters.push(q);
  }
  if (parameters.length > 0) operation["parameters"] = parameters;

  // ---- request body
  if (rule.body === "*") {
    const rest = input.fields.filter((f) => !pathBound.has(f.name));
    const schema = variables.length === 0 ? registry.messageRef(input) : registry.objectSchema(input, rest, registry.comment(input.typeName));
    // An empty body is accepted (it is `{}`), so the body is never required.
    operation["requestBody"] = { required: false, content: { "application/json": { schema } } };
  } else if (rule.body !== "") {
    const field = input.fields.find((f) => f.name === rule.body);
    if (field === undefined) throw new Error(`${fullName}: body names unknown field "${rule.body}"`);
    const content: JsonObj =
      field.fieldKind === "message" && field.message.typeName === httpBodyTypeName
        ? { "*/*": { schema: { type: "string", contentMediaType: "application/octet-stream" } } }
        : { "application/json": { schema: registry.fieldSchema(field) } };
    operation["requestBody"] = { required: false, content };
  }

  // ---- responses
  const status = httpMethod === "post" && method.name.startsWith("Create") ? "201" : "200";
  const responses: JsonObj = {};
  const responseField = rule.responseBody === "" ? undefined : method.output.fields.find((f) => f.name === rule.responseBody);
  if (rule.responseBody !== "" && responseField === undefined) throw new Error(`${fullName}: response_body names unknown field "${rule.responseBody}"`);
  let content: JsonObj;
  let description = status === "201" ? "Created." : "OK.";
  if (responseField !== undefined && responseField.fieldKind === "message" && responseField.message.typeName === httpBodyTypeName) {
    const extension = /\.([A-Za-z0-9]+)$/.exec(template)?.[1]?.toLowerCase() ?? "";
    const mediaType = mediaTypesByExtension[extension] ?? "application/octet-stream";
    content = { [mediaType]: { schema: { type: "string" } } };
    description +=
      method.methodKind === "server_streaming"
        ? ` The body is the raw \`${mediaType}\` document, streamed: the chunks are field \`${responseField.name}\` of each ${method.output.name} message, in order. A response cut short (the connection closes before the end) is a failed download, not a shorter document.`
        : ` The body is the raw \`${mediaType}\` document (field \`${responseField.name}\` of ${method.output.name}).`;
  } else if (isEventStream(method)) {
    // Server-Sent Events (src/api/rest/rest-methods.ts, isEventStream): the data of each event is one message.
    content = { "text/event-stream": { schema: { type: "string" }, "x-event-data": registry.messageRef(method.output) } };
    description += ` The body is a stream of Server-Sent Events, one per ${method.output.name} message (\`x-event-data\`): \`id:\` its \`id\`, \`event:\` its \`type\`, \`data:\` the message as JSON on one line; a heartbeat is the comment line \`: heartbeat\`.`;
    responses["204"] = { description: "No content: the stream ended before its first event (the job had ended, and nothing came after Last-Event-ID); EventSource stops reconnecting." };
  } else if (responseField !== undefined) {
    content = { "application/json": { schema: registry.fieldSchema(responseField) } };
    description += ` The body is field \`${responseField.name}\` of ${method.output.name}.`;
  } else {
    content = { "application/json": { schema: registry.messageRef(method.output) } };
  }
  responses[status] = { description, content };

  for (const [code, codes] of errorCodesOf(context, auth, variables, headerName === undefined ? [] : [headerName], deprecated, `${section ?? ""}\n${comment ?? ""}`)) {
    responses[String(code)] = {
      description: `${statusText[code] ?? "Error"}: ${codes.map((c) => `\`${c}\``).join(", ")}.`,
      "x-error-codes": codes,
      content: { "application/json": { schema: { $ref: "#/components/schemas/ErrorEnvelope" } } },
    };
  }
  responses["default"] = {
    description: "Any other error of docs/errors.md, in the same envelope.",
    content: { "application/json": { schema: { $ref: "#/components/schemas/ErrorEnvelope" } } },
  };
  operation["responses"] = responses;
  return { path, operation };
}

/** The error codes an operation can answer, by HTTP status, derived from its shape and comments. */
function errorCodesOf(
  context: OperationContext,
  auth: AuthKind,
  variables: PathVariable[],
  headers: ReadonlyArray<string>,
  deprecated: boolean,
  text: string,
): Array<[number, ErrorCode[]]> {
  const { method, rule, template } = context;
  const codes = new Set<ErrorCode>();
  if (!deprecated) {
    codes.add("VALIDATION_FAILED");
    if (method.input.fields.some((f) => f.name === "cursor")) codes.add("PAGINATION_INVALID_CURSOR");
    if (auth === "customer") ["CUSTOMER_AUTH_REQUIRED", "API_KEY_INVALID", "API_KEY_REVOKED", "API_KEY_SCOPE_DENIED"].forEach((c) => codes.add(c as ErrorCode));
    if (auth === "session") codes.add("CUSTOMER_AUTH_REQUIRED");
    if (auth === "admin") codes.add("ADMIN_AUTH_REQUIRED");
    const segments = template.split("/");
    for (const v of variables) {
      const at = segments.findIndex((s) => s.startsWith(`{${v.name}`));
      const collection = at > 0 ? segments[at - 1] : undefined;
      if (collection !== undefined && !collection.startsWith("{")) codes.add(notFoundCodeFor(collection));
    }
    if (rule.body !== "") {
      codes.add("PAYLOAD_TOO_LARGE");
      codes.add("UNSUPPORTED_MEDIA_TYPE");
    }
  }
  if (!deprecated) {
    // Body fields naming another resource: dataset_id → DATASET_NOT_FOUND (only where such a code exists).
    if (rule.body === "*") {
      for (const f of method.input.fields) {
        if (!f.name.endsWith("_id") || variables.some((v) => v.name === f.name)) continue;
        const code = notFoundCodeFor(f.name.slice(0, -3));
        if (code !== "RESOURCE_NOT_FOUND") codes.add(code);
      }
    }
    // A header the rpc honours: its own codes (Idempotency-Key → IDEMPOTENCY_KEY_INVALID).
    for (const header of headers) {
      const prefix = header.toUpperCase().replace(/-/g, "_");
      for (const code of allErrorCodes) if (code.startsWith(`${prefix}_`)) codes.add(code);
    }
  }
  for (const word of text.match(/\b[A-Z][A-Z0-9_]{3,}\b/g) ?? []) {
    if ((allErrorCodes as string[]).includes(word)) codes.add(word as ErrorCode);
  }
  codes.add("INTERNAL_ERROR");
  const byStatus = new Map<number, ErrorCode[]>();
  for (const code of allErrorCodes) {
    if (!codes.has(code)) continue;
    const status = httpStatusOf(code);
    byStatus.set(status, [...(byStatus.get(status) ?? []), code]);
  }
  return [...byStatus.entries()].sort(([a], [b]) => a - b);
}

/** Query parameters: fields bound neither to the path nor to the body, sub-messages as dotted names. */
function queryParameters(
  message: DescMessage,
  prefix: string,
  pathBound: ReadonlySet<string>,
  bodyField: string | undefined,
  registry: SchemaRegistry,
  visiting: Set<string>,
): JsonObj[] {
  const out: JsonObj[] = [];
  for (const field of message.fields) {
    const name = `${prefix}${field.name}`;
    if (pathBound.has(name) || (prefix === "" && field.name === bodyField)) continue;
    const description = registry.comment(`${field.parent.typeName}.${field.name}`);
    const param = (schema: JsonObj): JsonObj => {
      const p: JsonObj = { name, in: "query", required: false, schema };
      if (description !== undefined) p["description"] = description;
      if (schema["type"] === "array") {
        p["style"] = "form";
        p["explode"] = true;
      }
      return p;
    };
    switch (field.fieldKind) {
      case "scalar":
      case "enum":
        out.push(param(stripDescription(registry.fieldSchema(field))));
        break;
      case "list":
        if (field.listKind !== "message" || wellKnownSchema(field.message.typeName) !== undefined) out.push(param(stripDescription(registry.fieldSchema(field))));
        break;
      case "message":
        if (wellKnownSchema(field.message.typeName) !== undefined) {
          out.push(param(stripDescription(registry.fieldSchema(field))));
        } else if (!visiting.has(field.message.typeName) && prefix.split(".").length < 4) {
          visiting.add(field.message.typeName);
          out.push(...queryParameters(field.message, `${name}.`, pathBound, undefined, registry, visiting));
          visiting.delete(field.message.typeName);
        }
        break;
      case "map":
        // The transcoder cannot set a map from a query string.
        break;
    }
  }
  return out;
}

function stripDescription(schema: JsonObj): JsonObj {
  const { description: _unused, ...rest } = schema;
  return rest;
}

// ---------------------------------------------------------------- route

/** Options of {@link createOpenApiRoute}. */
export interface OpenApiRouteOptions {
  readonly title?: string;
  readonly version?: string;
  readonly serverUrl?: string;
  /** Where the `.proto` files are read for descriptions; default the repository's `proto/`. */
  readonly protoRoot?: string;
}

/** The document's default title and description, shared by the route and `scripts/docs.ts`. */
export const defaultApiTitle = "GPU-Agent API";
export const defaultApiDescription =
  "REST/JSON API of GPU-Agent, transcoded from the `google.api.http` annotations of the protos (the same rpcs are served over Connect and gRPC). " +
  "JSON uses proto field names; 64-bit integers are strings; timestamps are RFC 3339. " +
  "Customers authenticate with `X-API-Key` or `Authorization: Bearer <session token>`, operators with `Authorization: Bearer <admin token>`. " +
  "Every answer carries `X-Request-Id`; errors are `{\"error\":{\"code\",\"message\",\"request_id\"}}` (see docs/errors.md).";

/** The package version, for the document's info.version. */
export function packageVersion(): string {
  try {
    const pkg = JSON.parse(readFileSync(fileURLToPath(new URL("../../package.json", import.meta.url)), "utf8")) as { version?: unknown };
    return typeof pkg.version === "string" ? pkg.version : "0.0.0";
  } catch {
    return "0.0.0";
  }
}

/**
 * `GET /api/v1/openapi.json`: the document of `services`, built on the first
 * request and cached (the descriptors cannot change while the process runs).
 */
export function createOpenApiRoute(services: ReadonlyArray<DescService>, options: OpenApiRouteOptions = {}): HttpRoute {
  let body: Buffer | undefined;
  const render = (): Buffer => {
    body ??= Buffer.from(
      `${JSON.stringify(
        buildOpenApiDocument(services, {
          title: options.title ?? defaultApiTitle,
          version: options.version ?? packageVersion(),
          description: defaultApiDescription,
          comments: loadProtoComments(services, options.protoRoot),
          ...(options.serverUrl === undefined ? {} : { serverUrl: options.serverUrl }),
        }),
        null,
        2,
      )}\n`,
    );
    return body;
  };
  return {
    method: "GET",
    pattern: /^\/api\/v1\/openapi\.json$/,
    async handle(_req, res, _match, requestId) {
      const bytes = render();
      res.statusCode = 200;
      res.setHeader("content-type", "application/json; charset=utf-8");
      res.setHeader("content-length", String(bytes.length));
      res.setHeader("cache-control", "public, max-age=300");
      res.setHeader("x-request-id", requestId);
      res.end(bytes);
    },
  };
}
