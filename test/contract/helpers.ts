/**
 * Helpers of the contract tests: a REST client and a gRPC client (grpc-js with
 * a dynamic stub from @grpc/proto-loader, i.e. what a third-party gRPC customer
 * would use) that both take one request written as proto JSON, and a converter
 * from grpc-js objects to the same proto-JSON shape the REST API answers.
 *
 * The REST request is derived from the rpc's `google.api.http` annotation
 * (path variables into the path, `body: "*"` → the remaining fields as the JSON
 * body, no body → the remaining fields as query parameters), so a case names
 * its request once and both protocols receive the same thing.
 */
import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { create, getOption, hasOption, toJson } from "@bufbuild/protobuf";
import type { DescField, DescMessage, DescMethod, JsonValue } from "@bufbuild/protobuf";
import { ScalarType } from "@bufbuild/protobuf";
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import { http } from "../../src/gen/google/api/annotations_pb.ts";
import type { TestControlPlane } from "../support/control-plane.ts";

export const repoRoot = join(import.meta.dirname, "..", "..");

/** Puts the googleapis protos into .buf-deps/ (scripts/buf.ts copies them) when they are missing. */
export function ensureBufDeps(): void {
  if (existsSync(join(repoRoot, ".buf-deps", "google", "api", "annotations.proto"))) return;
  const r = spawnSync(process.execPath, [join(repoRoot, "scripts", "buf.ts"), "lint"], { cwd: repoRoot, encoding: "utf8" });
  if (!existsSync(join(repoRoot, ".buf-deps", "google", "api", "annotations.proto"))) {
    throw new Error(`node scripts/buf.ts lint did not provide .buf-deps (exit ${String(r.status)}):\n${r.stdout}\n${r.stderr}`);
  }
}

/** The outcome of one call on either protocol, reduced to what the contract compares. */
export type Outcome =
  | { ok: true; body: JsonValue; raw?: { contentType: string; text: string } }
  | { ok: false; code: string; message: string; httpStatus?: number; grpcStatus?: number; requestId?: string };

/** Who calls: a header set. */
export type Headers = Record<string, string>;

// ---------------------------------------------------------------- gRPC (grpc-js)

type GrpcCallback = (err: grpc.ServiceError | null, out: Record<string, unknown>) => void;
type GrpcMethod = (req: unknown, md: grpc.Metadata, options: grpc.CallOptions, cb: GrpcCallback) => void;

/** A grpc-js client of gpuagent.customer.v1.CustomerService built from the .proto at run time. */
export interface DynamicGrpcClient {
  call(method: DescMethod, req: Record<string, unknown>, headers?: Headers): Promise<Outcome>;
  close(): void;
}

/** Loads customer.proto with proto-loader (keepCase, longs/enums as String, defaults) and connects to the plane's port (h2c). */
export function createDynamicGrpcClient(cp: TestControlPlane): DynamicGrpcClient {
  ensureBufDeps();
  const definition = protoLoader.loadSync("gpuagent/customer/v1/customer.proto", {
    keepCase: true,
    longs: String,
    enums: String,
    defaults: true,
    includeDirs: [join(repoRoot, "proto"), join(repoRoot, ".buf-deps")],
  });
  const loaded = grpc.loadPackageDefinition(definition) as unknown as {
    gpuagent: { customer: { v1: { CustomerService: new (address: string, creds: grpc.ChannelCredentials) => grpc.Client } } };
  };
  const client = new loaded.gpuagent.customer.v1.CustomerService(new URL(cp.url).host, grpc.credentials.createInsecure());
  return {
    call(method, req, headers = {}) {
      const md = new grpc.Metadata();
      for (const [k, v] of Object.entries(headers)) md.set(k.toLowerCase(), v);
      const fn = (client as unknown as Record<string, GrpcMethod | undefined>)[method.name];
      if (fn === undefined) throw new Error(`the proto-loader stub has no method ${method.name}`);
      const failed = (err: grpc.ServiceError): Outcome => {
        const code = err.metadata?.get("x-gpu-agent-error-code")[0];
        return {
          ok: false,
          // An unimplemented rpc is refused by the router itself, without the metadata (the REST side says NOT_IMPLEMENTED).
          code: typeof code === "string" ? code : err.code === grpc.status.UNIMPLEMENTED ? "NOT_IMPLEMENTED" : `grpc-status-${err.code}`,
          message: err.details,
          grpcStatus: err.code,
        };
      };
      if (method.methodKind === "server_streaming") return callServerStream(fn as unknown as GrpcStreamMethod, client, method, req, md, failed);
      return new Promise<Outcome>((resolve) => {
        fn.call(client, req, md, { deadline: Date.now() + 30_000 }, (err, out) => {
          if (err !== null) {
            resolve(failed(err));
            return;
          }
          resolve({ ok: true, body: grpcToProtoJson(method.output, out) });
        });
      });
    },
    close() {
      client.close();
    },
  };
}

type GrpcStreamMethod = (req: unknown, md: grpc.Metadata, options: grpc.CallOptions) => grpc.ClientReadableStream<Record<string, unknown>>;

/**
 * Calls a server-streaming rpc until the server ends it, and folds the stream
 * into what REST answers in one response. HttpBody chunks (the CSV exports):
 * one response message, the chunks' data concatenated in order, the first
 * chunk's content type, so it compares byte for byte with the REST body
 * (`chunks` counts the messages). Events (WatchTrainingJob, no response_body):
 * `{events: [...]}`, each message as proto JSON, as restCall reads the SSE.
 */
function callServerStream(
  fn: GrpcStreamMethod,
  client: grpc.Client,
  method: DescMethod,
  req: Record<string, unknown>,
  md: grpc.Metadata,
  failed: (err: grpc.ServiceError) => Outcome,
): Promise<Outcome & { chunks?: number }> {
  const rule = getOption(method, http);
  return new Promise((resolve) => {
    const call = fn.call(client, req, md, { deadline: Date.now() + 30_000 });
    const messages: Record<string, unknown>[] = [];
    call.on("data", (message: Record<string, unknown>) => messages.push(message));
    call.on("error", (err: grpc.ServiceError) => resolve(failed(err)));
    call.on("end", () => {
      if (rule.responseBody === "") {
        resolve({ ok: true, body: { events: messages.map((m) => grpcToProtoJson(method.output, m)) } });
        return;
      }
      const bodies = messages.map((m) => (m[rule.responseBody] ?? {}) as { content_type?: string; data?: Buffer });
      const data = Buffer.concat(bodies.flatMap((b) => (b.data === undefined ? [] : [Buffer.from(b.data)])));
      const folded = { [rule.responseBody]: { content_type: bodies[0]?.content_type ?? "", data, extensions: [] } };
      resolve({ ok: true, body: grpcToProtoJson(method.output, folded), chunks: messages.length });
    });
  });
}

// ---------------------------------------------------------------- grpc-js object → proto JSON

const int64Types = new Set([ScalarType.INT64, ScalarType.UINT64, ScalarType.SINT64, ScalarType.FIXED64, ScalarType.SFIXED64]);

function scalarFromGrpc(type: ScalarType, value: unknown): unknown {
  if (int64Types.has(type)) return BigInt(value as string | number);
  if (type === ScalarType.BYTES) return new Uint8Array(value as Buffer);
  return value;
}

function initFromGrpc(desc: DescMessage, obj: Record<string, unknown>): Record<string, unknown> {
  const init: Record<string, unknown> = {};
  for (const f of desc.fields) {
    const v = obj[f.name];
    if (v === null || v === undefined) continue;
    if (f.oneof !== undefined) init[f.oneof.localName] = { case: f.localName, value: valueFromGrpc(f, v) };
    else init[f.localName] = valueFromGrpc(f, v);
  }
  return init;
}

function valueFromGrpc(f: DescField, v: unknown): unknown {
  switch (f.fieldKind) {
    case "scalar":
      return scalarFromGrpc(f.scalar, v);
    case "enum":
      throw new Error(`enum field ${f.name}: the customer API uses strings, not enums`);
    case "message":
      return create(f.message, initFromGrpc(f.message, v as Record<string, unknown>));
    case "list":
      return (v as unknown[]).map((x) =>
        f.listKind === "message" ? create(f.message, initFromGrpc(f.message, x as Record<string, unknown>)) : f.listKind === "scalar" ? scalarFromGrpc(f.scalar, x) : x,
      );
    case "map":
      return Object.fromEntries(
        Object.entries(v as Record<string, unknown>).map(([k, x]) => [
          k,
          f.mapKind === "message" ? create(f.message, initFromGrpc(f.message, x as Record<string, unknown>)) : f.mapKind === "scalar" ? scalarFromGrpc(f.scalar, x) : x,
        ]),
      );
  }
}

/**
 * A grpc-js response object (proto field names, longs as strings, Timestamps as
 * {seconds, nanos}, bytes as Buffers) as the proto JSON the REST API writes
 * (useProtoFieldName, alwaysEmitImplicit), by way of a protobuf-es message.
 */
export function grpcToProtoJson(desc: DescMessage, obj: Record<string, unknown>): JsonValue {
  return toJson(desc, create(desc, initFromGrpc(desc, obj)), { useProtoFieldName: true, alwaysEmitImplicit: true });
}

// ---------------------------------------------------------------- REST

/** The HTTP rule of a method, and the REST request a proto-JSON request becomes. */
export function restRequestOf(method: DescMethod, req: Record<string, unknown>): { httpMethod: string; path: string; body: unknown; responseBody: string } {
  if (!hasOption(method, http)) throw new Error(`${method.name} has no google.api.http rule`);
  const rule = getOption(method, http);
  const pattern = rule.pattern;
  if (pattern.case === undefined || pattern.case === "custom") throw new Error(`${method.name}: unsupported rule`);
  const remaining: Record<string, unknown> = { ...req };
  const path = pattern.value.replace(/\{([a-z_]+)(=[^}]*)?\}/g, (_m, name: string, sub: string | undefined) => {
    const value = String(remaining[name] ?? "");
    delete remaining[name];
    // `{x=**}` may span segments: encode each one on its own.
    return sub === "=**" ? value.split("/").map(encodeURIComponent).join("/") : encodeURIComponent(value);
  });
  let body: unknown;
  let query = "";
  if (rule.body === "*") body = remaining;
  else if (rule.body !== "") body = remaining[rule.body] ?? {};
  else {
    const params = new URLSearchParams();
    for (const [k, v] of Object.entries(remaining)) {
      if (v === undefined || v === "" || v === 0) continue;
      for (const item of Array.isArray(v) ? v : [v]) params.append(k, String(item));
    }
    query = params.size === 0 ? "" : `?${params.toString()}`;
  }
  return { httpMethod: pattern.case.toUpperCase(), path: path + query, body, responseBody: rule.responseBody };
}

/** Calls the REST API for `method` with a proto-JSON request; the outcome has the response_body field applied. */
export async function restCall(cp: TestControlPlane, method: DescMethod, req: Record<string, unknown>, headers: Headers = {}): Promise<Outcome & { status: number }> {
  const r = restRequestOf(method, req);
  const res = await fetch(cp.url + r.path, {
    method: r.httpMethod,
    headers: { ...(r.body === undefined ? {} : { "content-type": "application/json" }), ...headers },
    ...(r.body === undefined ? {} : { body: JSON.stringify(r.body) }),
  });
  const contentType = res.headers.get("content-type") ?? "";
  const text = await res.text();
  if (res.status >= 400) {
    const parsed = JSON.parse(text) as { error?: { code?: string; message?: string; request_id?: string } };
    return {
      ok: false,
      status: res.status,
      code: parsed.error?.code ?? `http-${res.status}`,
      message: parsed.error?.message ?? "",
      httpStatus: res.status,
      requestId: parsed.error?.request_id ?? "",
    };
  }
  // An event stream (Server-Sent Events): each event's data, in order; 204 is the stream that ended before its first.
  if (res.status === 204 || contentType.startsWith("text/event-stream")) {
    const events = text
      .split("\n\n")
      .flatMap((frame) => frame.split("\n").filter((line) => line.startsWith("data: ")))
      .map((line) => JSON.parse(line.slice("data: ".length)) as JsonValue);
    return { ok: true, status: res.status, body: { events } };
  }
  if (!contentType.startsWith("application/json")) return { ok: true, status: res.status, body: null, raw: { contentType, text } };
  return { ok: true, status: res.status, body: JSON.parse(text) as JsonValue };
}

/** The REST view of a gRPC success: the response_body field when the rule names one (HttpBody → raw text). */
export function restViewOfGrpc(method: DescMethod, out: Outcome): Outcome {
  if (!out.ok) return out;
  const { responseBody } = restRequestOf(method, {});
  if (responseBody === "") return out;
  const field = method.output.fields.find((f) => f.name === responseBody);
  const value = (out.body as Record<string, JsonValue>)[responseBody];
  if (field?.fieldKind === "message" && field.message.typeName === "google.api.HttpBody") {
    const hb = value as { content_type?: string; data?: string };
    return { ok: true, body: null, raw: { contentType: hb.content_type ?? "", text: Buffer.from(hb.data ?? "", "base64").toString("utf8") } };
  }
  return { ok: true, body: value ?? null };
}

// ---------------------------------------------------------------- normalising

const uuidPattern = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const timePattern = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$/;

/** Drops the named keys at any depth (volatile fields such as server_time or signed URLs). */
export function withoutKeys(value: JsonValue, keys: ReadonlySet<string>): JsonValue {
  if (Array.isArray(value)) return value.map((v) => withoutKeys(v, keys));
  if (value !== null && typeof value === "object") {
    return Object.fromEntries(Object.entries(value).filter(([k]) => !keys.has(k)).map(([k, v]) => [k, withoutKeys(v, keys)]));
  }
  return value;
}

/**
 * The shape of a response created on its own fresh resource: ids, times, URLs
 * and secrets are replaced by placeholders (keeping the secret's prefix), the
 * rest (names, statuses, counts, flags, key sets) stays for comparison.
 */
export function shapeOf(value: JsonValue): JsonValue {
  if (Array.isArray(value)) return value.map(shapeOf);
  if (value !== null && typeof value === "object") return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, shapeOf(v)]));
  if (typeof value === "string") {
    if (uuidPattern.test(value)) return "<uuid>";
    if (timePattern.test(value)) return "<time>";
    if (/^https?:\/\//.test(value)) return "<url>";
    const secret = /^(sk_[a-z]+_|whsec_|st_)/.exec(value);
    if (secret !== null) return `${secret[1]}<secret>`;
  }
  return value;
}
