/**
 * Fuzzing the REST and Connect surfaces of one real control plane (embedded PGlite, loopback only)
 * with fast-check: generated methods, paths, query strings, headers and bodies, sent over HTTP/1.1
 * (node:http, raw paths as written) and cleartext HTTP/2 (node:http2).
 *
 *  - REST: every route template of the `google.api.http` rules the transcoder serves (read from the
 *    same service descriptors), its variables filled with fuzzed segments (real and unknown ids,
 *    percent-encoded unicode, malformed percent-encoding, raw latin-1 bytes, `..`, empty, very long),
 *    sometimes bent (other verb, extra or missing segment, trailing or doubled slash), with a fuzzed
 *    query string; JSON bodies (fc.json, fc.anything as JSON, the request message's own fields with
 *    right or wrong types, huge numbers, deep nesting within the 1 MiB bound, truncated JSON) and
 *    non-JSON ones (random bytes).
 *  - Connect: POST /<package>.<Service>/<Method> for every rpc of the Customer, Admin and Agent
 *    services, with JSON, binary (random bytes, or a random but well-formed protobuf encoding) and
 *    enveloped (streaming) bodies, connect-protocol-version present or absent, right and wrong
 *    content types (gRPC and gRPC-Web ones included), gzip and brotli bodies, valid and not, and
 *    GET-style unary queries (`?connect=v1&encoding=…&message=…`), which the protocol allows only
 *    for side-effect-free rpcs (none is declared so: they must be refused with a 4xx).
 *  - Headers on both: content-type, content-encoding, content-length that lies (shorter than the
 *    body, not a number, alongside transfer-encoding), chunked bodies, accept, every form of
 *    credential (none, unknown, malformed, the real API key, session, cookie and admin token),
 *    x-request-id and idempotency-key with odd values.
 *
 * Each property run sends a batch of one to four such requests in order (so one request can meet the
 * state another left, e.g. a reused idempotency key), and checks after every request:
 *  - the HTTP status is never ≥ 500, and a well-formed request always gets an answer;
 *  - a 4xx is the REST error envelope (`error.code`, `error.message`, `error.request_id` equal to the
 *    `x-request-id` header); on the Connect surface it may instead be a Connect error
 *    (`{"code", "message"}`) or, for 405/415, the protocol's empty answer. Only a request that is
 *    malformed at the HTTP layer (a lying content-length, an oversized head, a non-ASCII byte in the
 *    path, an `Expect` other than 100-continue) may be answered by Node's own HTTP server (an empty
 *    4xx without `x-request-id`) or not at all;
 *  - nothing stored changed: the database checksum (test/support/db-checksum.ts) is taken after
 *    every request and must equal the one before. Generated requests that carry a real credential to
 *    a mutating route (any but a GET rule) can be valid creates, grants or deletes, and keeping them
 *    from being valid would keep the fuzz from the handlers' own validation; so the comparison is
 *    narrowed to what a request may not change instead: such a request that succeeded (2xx) may
 *    change the database, which becomes the new baseline once it is quiet; a refusal must leave it
 *    exactly as it was (no partial write survives a refusal), and requests without a real
 *    credential, and reads, must never change it. (One exception: a real-credential mutating request
 *    whose content-length is shorter than its body is a complete request the app may carry out while
 *    Node refuses the bytes after it, so its answer says nothing; whatever it stored is taken.)
 *
 * The general request limit is off for this plane (`requestsPerMinute: 0`) so that generated
 * requests reach the handlers instead of 429. A request body that stalls (a content-length larger
 * than what is sent) is not generated: it can only end by the server's body timeout, which the
 * transport's own tests cover.
 *
 * Reproducing: FUZZ_SEED=<seed> (default fixed, below), FUZZ_RUNS=<runs per property> (default sized
 * for ~40 s in all on a loaded 2-core machine), FUZZ_LOG=1 to print every request and its answer. A
 * failure prints the shrunk request batch, the seed and the path for `fc.assert`'s `path` option.
 *   FUZZ_SEED=123 FUZZ_RUNS=2000 npx mocha test/contract/fuzz.test.ts
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import http from "node:http";
import http2 from "node:http2";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { brotliCompressSync, brotliDecompressSync, deflateSync, gunzipSync, gzipSync, inflateSync } from "node:zlib";
import type { DescField, DescMessage, DescMethod, DescService } from "@bufbuild/protobuf";
import { ScalarType, fromJson, getOption, hasOption, toBinary } from "@bufbuild/protobuf";
import { BinaryWriter, WireType } from "@bufbuild/protobuf/wire";
import fc from "fast-check";
import yazl from "yazl";
import { hasRestShape } from "../../src/api/rest/rest-methods.ts";
import { http as httpRule } from "../../src/gen/google/api/annotations_pb.ts";
import { AdminService } from "../../src/gen/gpuagent/admin/v1/admin_pb.ts";
import { AgentService } from "../../src/gen/gpuagent/agent/v1/agent_pb.ts";
import { CustomerService } from "../../src/gen/gpuagent/customer/v1/customer_pb.ts";
import type { TestControlPlane } from "../support/control-plane.ts";
import { adminRequest, request, startTestControlPlane, uploadResource } from "../support/control-plane.ts";
import type { DbChecksum, DbSnapshot } from "../support/db-checksum.ts";
import { createDbChecksum } from "../support/db-checksum.ts";

const seed = Number(process.env["FUZZ_SEED"] ?? 20_260_412);
const runs = Number(process.env["FUZZ_RUNS"] ?? 400);
const example = join(import.meta.dirname, "..", "..", "examples", "tiny-mlp");
const missingId = "00000000-0000-4000-8000-000000000000";
const password = "correct horse battery";
/** Longer than this, a request head may be refused by Node's parser (16 KiB default) before the app sees it. */
const safeHeadBytes = 15 * 1024;
/** Requests per HTTP/2 connection before the next one (see h2()). */
const streamsPerH2Connection = 50;
/** A well-formed request unanswered this long is a failure (nothing here is slow on purpose). */
const answerTimeoutMs = 20_000;

// ---------------------------------------------------------------- the generated request

type Surface = "rest" | "connect";
type Credential = "none" | "unknownKey" | "emptyKey" | "hugeKey" | "badBearer" | "emptyBearer" | "basic" | "key" | "keyAsBearer" | "session" | "lowerBearer" | "cookie" | "admin" | "adminAndKey";
/** How the body is framed on HTTP/1.1; the last three lie, so Node's parser may answer for the app. */
type Framing = "exact" | "chunked" | "shortLength" | "invalidLength" | "lengthAndChunked";

/** Credentials carrying a real secret: with them, a mutating route may succeed and change state. */
const realCredentials: ReadonlySet<Credential> = new Set(["key", "keyAsBearer", "session", "lowerBearer", "cookie", "admin", "adminAndKey"]);

interface FuzzRequest {
  surface: Surface;
  protocol: "h1" | "h2";
  method: string;
  /** Sent as is (node:http writes latin-1 characters as single bytes). */
  path: string;
  credential: Credential;
  headers: Array<[string, string]>;
  body: Buffer | undefined;
  framing: Framing;
  /** The route is not a GET rule (or is an rpc without one): with a real credential it may change state. */
  mutating: boolean;
}

interface Answer {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: Buffer;
}

interface Fixtures {
  cp: TestControlPlane;
  apiKey: string;
  session: string;
  email: string;
  /** Ids the generated paths and bodies use: real ones reach the handlers past "not found". */
  ids: string[];
}

let fx: Fixtures;

function credentialHeaders(c: Credential): Array<[string, string]> {
  switch (c) {
    case "none":
      return [];
    case "unknownKey":
      return [["x-api-key", "sk_live_not-a-real-key"]];
    case "emptyKey":
      return [["x-api-key", ""]];
    case "hugeKey":
      return [["x-api-key", `sk_live_${"k".repeat(8000)}`]];
    case "badBearer":
      return [["authorization", "Bearer st_not-a-real-session"]];
    case "emptyBearer":
      return [["authorization", "Bearer "]];
    case "basic":
      return [["authorization", `Basic ${Buffer.from(`${fx.email}:${password}`).toString("base64")}`]];
    case "key":
      return [["x-api-key", fx.apiKey]];
    case "keyAsBearer":
      return [["authorization", `Bearer ${fx.apiKey}`]];
    case "session":
      return [["authorization", `Bearer ${fx.session}`]];
    case "lowerBearer":
      return [["authorization", `bearer ${fx.session}`]];
    case "cookie":
      return [["cookie", `gpu_agent_session=${fx.session}`]];
    case "admin":
      return [["authorization", `Bearer ${fx.cp.adminToken}`]];
    case "adminAndKey":
      return [
        ["authorization", `Bearer ${fx.cp.adminToken}`],
        ["x-api-key", fx.apiKey],
      ];
  }
}

// ---------------------------------------------------------------- arbitraries: text pieces

const printableAscii = fc.integer({ min: 0x21, max: 0x7e }).map((n) => String.fromCharCode(n));
/** Characters a path segment may carry raw: printable ASCII but the delimiters. */
const segmentChar = printableAscii.filter((ch) => !"/?#%".includes(ch));
const latin1High = fc.integer({ min: 0x80, max: 0xff }).map((n) => String.fromCharCode(n));
/** Header values Node will send: visible ASCII, space, tab and latin-1 (never CR, LF or NUL). */
const headerValue = fc.oneof(
  { weight: 4, arbitrary: fc.string({ unit: printableAscii, maxLength: 40 }) },
  { weight: 1, arbitrary: fc.string({ unit: fc.oneof(printableAscii, latin1High, fc.constantFrom(" ", "\t")), maxLength: 40 }) },
  { weight: 1, arbitrary: fc.integer({ min: 129, max: 4000 }).map((n) => "v".repeat(n)) },
  { weight: 1, arbitrary: fc.constantFrom("", " ", "null", "-1", "0", "1e309", "undefined", "[object Object]", "%00", "\u00ff\u00fe") },
);

const malformedPercent = fc.constantFrom("%", "%Z", "%ZZ", "%zz", "%0", "%00", "%2F", "%2f", "%2e%2e", "%E0%A4", "%C0%AF", "%ED%A0%80", "%FF", "%uD800", "%25", "%252F", "%%", "%E2%82");

/** One path segment as written on the wire (already "encoded", correctly or not). */
function segmentArb(): fc.Arbitrary<string> {
  const piece = fc.oneof(
    { weight: 8, arbitrary: fc.constantFrom(...fx.ids, missingId) },
    { weight: 3, arbitrary: fc.string({ unit: segmentChar, maxLength: 24 }) },
    { weight: 2, arbitrary: fc.string({ unit: "grapheme", minLength: 1, maxLength: 12 }).map(encodeURIComponent) },
    { weight: 2, arbitrary: malformedPercent },
    { weight: 1, arbitrary: fc.string({ unit: latin1High, minLength: 1, maxLength: 8 }) },
    { weight: 1, arbitrary: fc.constantFrom("..", ".", "", "~", "%2e", "*", "**", "{id}", ":cancel", ";x=1") },
  );
  return fc.oneof(
    { weight: 8, arbitrary: piece },
    { weight: 2, arbitrary: fc.array(piece, { minLength: 2, maxLength: 4 }).map((p) => p.join("")) },
    { weight: 1, arbitrary: fc.integer({ min: 1000, max: 20_000 }).map((n) => "a".repeat(n)) },
  );
}

/** A query value, written raw. */
function queryValueArb(): fc.Arbitrary<string> {
  return fc.oneof(
    segmentArb(),
    fc.constantFrom("-1", "0", "1", "101", "1e309", "99999999999999999999", "NaN", "true", "null", "2026-02-30", "2026-01-01T00:00:00Z", "Zm9vYmFy", "eyJ0IjoxfQ"),
    fc.integer().map(String),
  );
}

function queryArb(input: DescMessage | undefined): fc.Arbitrary<string> {
  const known = input === undefined ? [] : input.fields.flatMap((f) => [f.name, f.jsonName]);
  const key = fc.oneof(
    { weight: 3, arbitrary: known.length === 0 ? fc.constant("limit") : fc.constantFrom(...known) },
    { weight: 1, arbitrary: fc.string({ unit: segmentChar, maxLength: 10 }).filter((k) => !k.includes("&") && !k.includes("=")) },
    { weight: 1, arbitrary: fc.constantFrom("", "a[b]", "page.limit", "%ZZ", "limit%00", "__proto__", "constructor") },
  );
  const pair = fc.oneof(
    { weight: 5, arbitrary: fc.tuple(key, queryValueArb()).map(([k, v]) => `${k}=${v.replace(/[&#]/g, "")}`) },
    { weight: 1, arbitrary: key },
  );
  return fc.oneof(
    { weight: 3, arbitrary: fc.constant("") },
    { weight: 4, arbitrary: fc.array(pair, { minLength: 1, maxLength: 4 }).map((p) => `?${p.join("&")}`) },
    { weight: 1, arbitrary: fc.constantFrom("?", "?&", "?=", "?&&=&", "??", "?%") },
  );
}

// ---------------------------------------------------------------- arbitraries: JSON bodies

/** A value of the field's own type (so some generated requests are valid enough to reach the handler). */
function typedValue(field: DescField, depth: number): fc.Arbitrary<unknown> {
  const scalar = (t: ScalarType): fc.Arbitrary<unknown> => {
    switch (t) {
      case ScalarType.STRING:
        return fc.oneof(
          { weight: 3, arbitrary: fc.string({ maxLength: 30 }) },
          { weight: 2, arbitrary: fc.constantFrom(...fx.ids, missingId, fx.email, "job.completed", "verified", "cpu", "dataset:write", "a".repeat(64)) },
          { weight: 1, arbitrary: fc.string({ unit: "grapheme", maxLength: 20 }) },
          { weight: 1, arbitrary: fc.integer({ min: 200, max: 20_000 }).map((n) => "s".repeat(n)) },
        );
      case ScalarType.BOOL:
        return fc.boolean();
      case ScalarType.BYTES:
        return fc.uint8Array({ maxLength: 40 }).map((b) => Buffer.from(b).toString("base64"));
      case ScalarType.DOUBLE:
      case ScalarType.FLOAT:
        return fc.oneof(fc.double({ noNaN: true, noDefaultInfinity: true }), fc.constantFrom("NaN", "Infinity", "-Infinity"));
      case ScalarType.INT64:
      case ScalarType.UINT64:
      case ScalarType.SINT64:
      case ScalarType.FIXED64:
      case ScalarType.SFIXED64:
        return fc.oneof(fc.integer({ min: -1000, max: 1_000_000 }), fc.bigInt({ min: -(2n ** 70n), max: 2n ** 70n }).map(String));
      default:
        return fc.oneof(fc.integer({ min: -1000, max: 100_000 }), fc.integer());
    }
  };
  switch (field.fieldKind) {
    case "scalar":
      return scalar(field.scalar);
    case "enum":
      return fc.oneof(fc.constantFrom(...field.enum.values.map((v) => v.name)), fc.integer({ min: -1, max: 10 }));
    case "message":
      return messageObject(field.message, depth + 1);
    case "list":
      return fc.array(
        field.listKind === "scalar" ? scalar(field.scalar) : field.listKind === "message" ? messageObject(field.message, depth + 1) : fc.constantFrom(...field.enum.values.map((v) => v.name)),
        { maxLength: 4 },
      );
    case "map":
      return fc.dictionary(fc.string({ maxLength: 8 }), field.mapKind === "scalar" ? scalar(field.scalar) : fc.jsonValue({ maxDepth: 1 }), { maxKeys: 3 });
  }
}

/** A value of any JSON type: wrong for most fields. */
const wrongValue: fc.Arbitrary<unknown> = fc.oneof(
  fc.string({ maxLength: 20 }),
  fc.integer(),
  fc.double(),
  fc.boolean(),
  fc.constant(null),
  fc.array(fc.jsonValue({ maxDepth: 2 }), { maxLength: 3 }),
  fc.dictionary(fc.string({ maxLength: 6 }), fc.jsonValue({ maxDepth: 1 }), { maxKeys: 3 }),
  fc.constantFrom(-1, 0, 2 ** 53 + 2, -(2 ** 63), 1e308, Number.MAX_VALUE, Number.MIN_VALUE),
);

/** An object over the message's fields (proto or JSON names), each of its type or of a wrong one. */
function messageObject(desc: DescMessage, depth = 0): fc.Arbitrary<Record<string, unknown>> {
  if (desc.typeName.startsWith("google.protobuf.")) {
    return desc.typeName === "google.protobuf.Timestamp"
      ? (fc.constantFrom("2026-01-01T00:00:00Z", "1970-01-01T00:00:00Z", "9999-12-31T23:59:59Z", "0001-01-01T00:00:00Z", "2026-13-40T99:99:99Z", "now") as unknown as fc.Arbitrary<Record<string, unknown>>)
      : fc.dictionary(fc.string({ maxLength: 6 }), fc.jsonValue({ maxDepth: 3 }), { maxKeys: 4 });
  }
  if (depth > 2 || desc.fields.length === 0) return fc.constant({});
  return fc.subarray(desc.fields, { maxLength: Math.min(8, desc.fields.length) }).chain((fields) =>
    fc
      .tuple(
        ...fields.map((f) =>
          fc.tuple(fc.constantFrom(f.name, f.jsonName), fc.oneof({ weight: 3, arbitrary: typedValue(f, depth) }, { weight: 1, arbitrary: wrongValue })),
        ),
      )
      .map((entries) => Object.fromEntries(entries)),
  );
}

/** JSON text of `fc.anything`, which has values JSON.stringify cannot write (bigint) or drops. */
function looseJson(value: unknown): string {
  try {
    return JSON.stringify(value, (_k, v: unknown) => (typeof v === "bigint" ? v.toString() : v)) ?? "null";
  } catch {
    return "null";
  }
}

const hugeNumberText = fc.oneof(
  fc.constantFrom("1e400", "-1e400", "123456789012345678901234567890", "18446744073709551616", "-9223372036854775809", "1e-400", "-0", "1E2", "9007199254740993", "0.5", "00", "1.", ".5", "0x10", "Infinity", "NaN"),
  fc.bigInt({ min: -(2n ** 200n), max: 2n ** 200n }).map(String),
);

/** A JSON (or almost JSON) body for a request of type `input`. */
function jsonBodyArb(input: DescMessage | undefined): fc.Arbitrary<string> {
  const fieldNames = input === undefined || input.fields.length === 0 ? ["name"] : input.fields.flatMap((f) => [f.name, f.jsonName]);
  const fieldName = fc.constantFrom(...fieldNames);
  return fc.oneof(
    { weight: 6, arbitrary: (input === undefined ? fc.constant({}) : messageObject(input)).map((o) => JSON.stringify(o)) },
    { weight: 2, arbitrary: fc.json({ maxDepth: 3 }) },
    { weight: 2, arbitrary: fc.anything({ maxDepth: 3, withBigInt: true, withNullPrototype: true, withObjectString: true }).map(looseJson) },
    { weight: 1, arbitrary: fc.tuple(fieldName, hugeNumberText).map(([k, n]) => `{"${k}":${n}}`) },
    {
      weight: 1,
      arbitrary: fc.tuple(fieldName, fc.integer({ min: 50, max: 150_000 }), fc.boolean()).map(([k, depth, arrays]) =>
        arrays ? `{"${k}":${"[".repeat(depth)}${"]".repeat(depth)}}` : `{"${k}":${'{"a":'.repeat(depth)}1${"}".repeat(depth)}}`,
      ),
    },
    {
      weight: 1,
      arbitrary: fc
        .tuple(input === undefined ? fc.constant({}) : messageObject(input), fc.nat())
        .map(([o, cut]) => {
          const text = JSON.stringify(o);
          return text.slice(0, cut % (text.length + 1));
        }),
    },
    { weight: 1, arbitrary: fc.constantFrom("", "{}", "[]", "null", "0", '""', "{", "}", '{"__proto__":{"admin":true}}', '{"constructor":{"prototype":{}}}', "\ufeff{}", '{"a":1,"a":2}', "{'a':1}", "[{}]") },
  );
}

// ---------------------------------------------------------------- arbitraries: binary bodies

/** A well-formed protobuf encoding of random fields and wire types (valid bytes, nonsense content). */
const protobufBytes: fc.Arbitrary<Buffer> = fc
  .array(
    fc.tuple(
      fc.integer({ min: 1, max: 20 }),
      fc.oneof(
        fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }).map((v) => ({ wt: WireType.Varint, v })),
        fc.uint8Array({ maxLength: 30 }).map((v) => ({ wt: WireType.LengthDelimited, v })),
        fc.string({ maxLength: 20 }).map((v) => ({ wt: WireType.LengthDelimited, v: new TextEncoder().encode(v) })),
        fc.integer().map((v) => ({ wt: WireType.Bit32, v: BigInt(v) })),
        fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }).map((v) => ({ wt: WireType.Bit64, v })),
      ),
    ),
    { maxLength: 8 },
  )
  .map((fields) => {
    const w = new BinaryWriter();
    for (const [no, f] of fields) {
      w.tag(no, f.wt);
      if (f.wt === WireType.Varint) w.uint64(f.v as bigint);
      else if (f.wt === WireType.LengthDelimited) w.bytes(f.v as Uint8Array);
      else if (f.wt === WireType.Bit32) w.fixed32(Number(BigInt.asUintN(32, f.v as bigint)));
      else w.fixed64(f.v as bigint);
    }
    return Buffer.from(w.finish());
  });

/** A binary body for `input`: a real encoding of a generated request, a random encoding, or random bytes. */
function binaryBodyArb(input: DescMessage): fc.Arbitrary<Buffer> {
  return fc.oneof(
    messageObject(input).map((o) => {
      try {
        return Buffer.from(toBinary(input, fromJson(input, o as never, { ignoreUnknownFields: true })));
      } catch {
        return Buffer.alloc(0);
      }
    }),
    protobufBytes,
    fc.uint8Array({ maxLength: 256 }).map((b) => Buffer.from(b)),
  );
}

/** Connect/gRPC envelopes: flags (compressed, end-stream, trailers, junk), a length that may lie. */
function envelopesArb(payload: fc.Arbitrary<Buffer>): fc.Arbitrary<Buffer> {
  const one = fc.tuple(fc.constantFrom(0, 0, 0, 1, 2, 0x80, 0xff), payload, fc.constantFrom("exact", "exact", "exact", "short", "long")).map(([flags, p, len]) => {
    const head = Buffer.alloc(5);
    head[0] = flags;
    head.writeUInt32BE(len === "exact" ? p.length : len === "short" ? Math.max(0, p.length - 1) : p.length + 1000, 1);
    return Buffer.concat([head, p]);
  });
  return fc.oneof(
    { weight: 4, arbitrary: one },
    { weight: 1, arbitrary: fc.array(one, { minLength: 2, maxLength: 3 }).map((b) => Buffer.concat(b)) },
    { weight: 1, arbitrary: fc.uint8Array({ maxLength: 12 }).map((b) => Buffer.from(b)) },
  );
}

// ---------------------------------------------------------------- arbitraries: headers and framing

interface HeaderChoices {
  contentType: string | undefined;
  encoding: "none" | "gzip" | "gzipTruncated" | "gzipLabelOnly" | "br" | "deflate" | "unknown" | "identity";
  framing: Framing;
  accept: string | undefined;
  credential: Credential;
  requestId: string | undefined;
  idempotencyKey: string | undefined;
  extra: Array<[string, string]>;
}

const credentialArb: fc.Arbitrary<Credential> = fc.oneof(
  { weight: 3, arbitrary: fc.constantFrom<Credential>("none", "unknownKey", "badBearer") },
  { weight: 1, arbitrary: fc.constantFrom<Credential>("emptyKey", "hugeKey", "emptyBearer", "basic") },
  { weight: 4, arbitrary: fc.constantFrom<Credential>("key", "session", "admin") },
  { weight: 1, arbitrary: fc.constantFrom<Credential>("keyAsBearer", "lowerBearer", "cookie", "adminAndKey") },
);

const extraHeaderArb: fc.Arbitrary<[string, string]> = fc.oneof(
  fc.tuple(
    fc.constantFrom("x-forwarded-for", "x-real-ip", "origin", "referer", "x-csrf-token", "x-http-method-override", "connect-timeout-ms", "grpc-timeout", "te", "accept-encoding", "connect-accept-encoding", "connect-content-encoding", "grpc-encoding", "x-gpu-agent-peer-address", "range", "if-none-match", "expect"),
    headerValue,
  ),
  fc.tuple(fc.string({ unit: fc.constantFrom(..."abcdefghijklmnopqrstuvwxyz0123456789-_".split("")), minLength: 1, maxLength: 20 }).map((n) => `x-${n}`), headerValue),
);

function headerChoicesArb(contentTypes: readonly string[]): fc.Arbitrary<HeaderChoices> {
  return fc.record({
    contentType: fc.option(fc.oneof({ weight: 6, arbitrary: fc.constantFrom(...contentTypes) }, { weight: 1, arbitrary: headerValue }), { nil: undefined, freq: 6 }),
    encoding: fc.oneof(
      { weight: 16, arbitrary: fc.constant("none" as const) },
      { weight: 4, arbitrary: fc.constantFrom("gzip" as const, "gzipTruncated" as const, "gzipLabelOnly" as const, "br" as const, "deflate" as const, "unknown" as const, "identity" as const) },
    ),
    framing: fc.oneof({ weight: 12, arbitrary: fc.constant("exact" as const) }, { weight: 2, arbitrary: fc.constant("chunked" as const) }, { weight: 1, arbitrary: fc.constantFrom("shortLength" as const, "invalidLength" as const, "lengthAndChunked" as const) }),
    accept: fc.option(fc.oneof(fc.constantFrom("application/json", "*/*", "text/html", "application/xml", "text/csv", "application/proto", ";;", "application/json;q=0"), headerValue), { nil: undefined, freq: 3 }),
    credential: credentialArb,
    requestId: fc.option(fc.oneof(fc.uuid(), headerValue, fc.constantFrom("x".repeat(129), "a b", "../../etc")), { nil: undefined, freq: 4 }),
    idempotencyKey: fc.option(fc.oneof(headerValue, fc.constant("bad-input-key-0001")), { nil: undefined, freq: 5 }),
    extra: fc.array(extraHeaderArb, { maxLength: 2 }),
  });
}

function encodeBody(body: Buffer | undefined, encoding: HeaderChoices["encoding"]): { body: Buffer | undefined; header: string | undefined } {
  if (body === undefined || encoding === "none") return { body, header: undefined };
  switch (encoding) {
    case "gzip":
      return { body: gzipSync(body), header: "gzip" };
    case "gzipTruncated": {
      const z = gzipSync(body);
      return { body: z.subarray(0, Math.max(1, z.length - 6)), header: "gzip" };
    }
    case "gzipLabelOnly":
      return { body, header: "gzip" };
    case "br":
      return { body: brotliCompressSync(body), header: "br" };
    case "deflate":
      return { body: deflateSync(body), header: "deflate" };
    case "unknown":
      return { body, header: "x-squash" };
    case "identity":
      return { body, header: "identity" };
  }
}

/** Assembles the request; HTTP/2 gets only exact framing (a lying length is an HTTP/2 protocol error, not a request). */
function assemble(surface: Surface, protocol: "h1" | "h2", method: string, path: string, rawBody: Buffer | undefined, h: HeaderChoices, mutating: boolean, encodingHeader = "content-encoding"): FuzzRequest {
  const headers: Array<[string, string]> = [...credentialHeaders(h.credential)];
  const { body, header } = encodeBody(rawBody, h.encoding);
  if (h.contentType !== undefined) headers.push(["content-type", h.contentType]);
  if (header !== undefined) headers.push([encodingHeader, header]);
  if (h.accept !== undefined) headers.push(["accept", h.accept]);
  if (h.requestId !== undefined) headers.push(["x-request-id", h.requestId]);
  if (h.idempotencyKey !== undefined) headers.push(["idempotency-key", h.idempotencyKey]);
  for (const [k, v] of h.extra) if (!(protocol === "h2" && (k === "te" || k === "expect"))) headers.push([k, v]);
  return { surface, protocol, method, path, credential: h.credential, headers, body, framing: protocol === "h2" ? "exact" : h.framing, mutating };
}

// ---------------------------------------------------------------- the REST surface

interface RestRoute {
  verb: string;
  template: string;
  method: DescMethod;
}

function restRoutes(services: readonly DescService[]): RestRoute[] {
  const routes: RestRoute[] = [];
  for (const service of services) {
    for (const method of service.methods) {
      if (!hasRestShape(method)) continue;
      const rule = getOption(method, httpRule);
      for (const r of [rule, ...rule.additionalBindings]) {
        if (r.pattern.case === undefined || r.pattern.case === "custom") continue;
        routes.push({ verb: r.pattern.case.toUpperCase(), template: r.pattern.value, method });
      }
    }
  }
  return routes;
}

const restContentTypes = ["application/json", "application/json; charset=utf-8", "application/json; charset=utf-16", "text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", "application/octet-stream", "application/proto", "application/*", "application/json, text/plain"];

function restRequestArb(routes: readonly RestRoute[]): fc.Arbitrary<FuzzRequest> {
  return fc.constantFrom(...routes).chain((route) => {
    const vars = route.template.match(/\{[^}]+\}/g) ?? [];
    const pathArb = fc.tuple(fc.array(segmentArb(), { minLength: vars.length, maxLength: vars.length }), fc.oneof({ weight: 12, arbitrary: fc.constant("as is") }, { weight: 1, arbitrary: fc.constantFrom("trailing slash", "extra segment", "doubled slash", "last segment dropped", "upper case", "v2") })).chain(([values, bend]) => {
      let i = 0;
      let path = route.template.replace(/\{[^}]+\}/g, () => values[i++] ?? "");
      if (bend === "trailing slash") path += "/";
      else if (bend === "doubled slash") path = path.replace(/\/([^/]*)$/, "//$1");
      else if (bend === "last segment dropped") path = path.replace(/\/[^/]*$/, "");
      else if (bend === "upper case") path = path.toUpperCase();
      else if (bend === "v2") path = path.replace("/api/v1/", "/api/v2/");
      return fc.tuple(bend === "extra segment" ? segmentArb().map((s) => `${path}/${s}`) : fc.constant(path), queryArb(route.method.input)).map(([p, q]) => p + q);
    });
    const verbArb = fc.oneof({ weight: 10, arbitrary: fc.constant(route.verb) }, { weight: 1, arbitrary: fc.constantFrom("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS") });
    const bodyArb = fc.oneof(
      { weight: 2, arbitrary: fc.constant(undefined) },
      { weight: 8, arbitrary: jsonBodyArb(route.method.input).map((t) => Buffer.from(t)) },
      { weight: 1, arbitrary: fc.uint8Array({ maxLength: 300 }).map((b) => Buffer.from(b)) },
      { weight: 1, arbitrary: jsonBodyArb(route.method.input).map((t) => Buffer.from(t, "utf16le")) },
    );
    return fc
      .tuple(fc.constantFrom<"h1" | "h2">("h1", "h1", "h1", "h2"), verbArb, pathArb, bodyArb, headerChoicesArb(restContentTypes))
      .map(([protocol, verb, path, body, h]) => describable(assemble("rest", protocol, verb, path, body, h, verb !== "GET" && verb !== "HEAD")));
  });
}

// ---------------------------------------------------------------- the Connect surface

const connectContentTypes = ["application/json", "application/proto", "application/json; charset=utf-8", "application/connect+json", "application/connect+proto", "application/grpc", "application/grpc+json", "application/grpc-web", "application/grpc-web+json", "application/grpc-web-text", "text/plain", "application/x-protobuf"];

type BodyKind = "json" | "binary" | "envelopedJson" | "envelopedBinary" | "none";

function connectRequestArb(services: readonly DescService[]): fc.Arbitrary<FuzzRequest> {
  const methods = services.flatMap((s) => s.methods);
  return fc.constantFrom(...methods).chain((method) => {
    const rpcPath = `/${method.parent.typeName}/${method.name}`;
    const mutating = !hasOption(method, httpRule) || getOption(method, httpRule).pattern.case !== "get";
    const pathArb = fc.oneof(
      { weight: 12, arbitrary: fc.constant(rpcPath) },
      { weight: 1, arbitrary: fc.constantFrom(`${rpcPath}/`, rpcPath.toLowerCase(), `${rpcPath}?x=1`, `/${method.parent.typeName}/${method.name}Extra`, `/${method.parent.typeName}/`, `${rpcPath}%00`, `/${method.parent.typeName.replace("v1", "v2")}/${method.name}`) },
    );
    const jsonBody = jsonBodyArb(method.input).map((t) => Buffer.from(t));
    const binaryBody = binaryBodyArb(method.input);
    const post = fc
      .tuple(
        pathArb,
        // Unary rpcs take a plain body, streaming ones enveloped messages; each sometimes gets the other kind.
        method.methodKind === "unary"
          ? fc.constantFrom<BodyKind>("json", "json", "json", "json", "binary", "binary", "binary", "envelopedJson", "envelopedBinary", "none")
          : fc.constantFrom<BodyKind>("envelopedJson", "envelopedJson", "envelopedBinary", "envelopedBinary", "envelopedBinary", "json", "binary", "none"),
        headerChoicesArb(connectContentTypes),
        fc.option(fc.constantFrom("1", "2", "", "one"), { nil: undefined, freq: 2 }),
        fc.constantFrom<"h1" | "h2">("h1", "h2"),
        fc.oneof({ weight: 12, arbitrary: fc.constant("POST") }, { weight: 1, arbitrary: fc.constantFrom("PUT", "DELETE", "PATCH") }),
        fc.oneof({ weight: 4, arbitrary: fc.constant(true) }, { weight: 1, arbitrary: fc.constant(false) }),
      )
      .chain(([path, kind, h, version, protocol, verb, matchingType]) => {
        const bodyArb: fc.Arbitrary<Buffer | undefined> =
          kind === "json" ? jsonBody : kind === "binary" ? binaryBody : kind === "envelopedJson" ? envelopesArb(jsonBody) : kind === "envelopedBinary" ? envelopesArb(binaryBody) : fc.constant(undefined);
        // The content type usually matches the body (else the fuzz would mostly test the 415 answer).
        const matching = kind === "json" ? "application/json" : kind === "binary" ? "application/proto" : kind === "envelopedJson" ? "application/connect+json" : kind === "envelopedBinary" ? "application/connect+proto" : undefined;
        return bodyArb.map((body) => {
          const choices = { ...h, contentType: matchingType ? (matching ?? h.contentType) : h.contentType };
          const enveloped = kind === "envelopedJson" || kind === "envelopedBinary";
          const req = assemble("connect", protocol, verb, path, body, choices, mutating, enveloped ? "connect-content-encoding" : "content-encoding");
          if (version !== undefined) req.headers.push(["connect-protocol-version", version]);
          return describable(req);
        });
      });
    const get = fc
      .tuple(
        fc.constantFrom("json", "proto", "", "xml"),
        // A query carries a small message (a URL over the head bound is the HTTP layer's refusal, tested on POST paths).
        fc.oneof(
          fc.oneof(messageObject(method.input).map((o) => JSON.stringify(o)), fc.json({ maxDepth: 2 })).map((t) => ({ base64: false, bytes: Buffer.from(t) })),
          binaryBody.map((b) => ({ base64: true, bytes: b })),
        ),
        fc.option(fc.constantFrom("gzip", "br", "x"), { nil: undefined, freq: 3 }),
        fc.option(fc.constantFrom("v1", "v2", ""), { nil: undefined, freq: 4 }),
        credentialArb,
        fc.constantFrom<"h1" | "h2">("h1", "h2"),
      )
      .map(([encoding, message, compression, connect, credential, protocol]) => {
        const payload = compression === "gzip" ? gzipSync(message.bytes) : message.bytes;
        const text = message.base64 || compression !== undefined ? payload.toString("base64url") : encodeURIComponent(payload.toString("utf8"));
        const params = [connect === undefined ? "" : `connect=${connect}`, `encoding=${encoding}`, `message=${text}`, message.base64 || compression !== undefined ? "base64=1" : "", compression === undefined ? "" : `compression=${compression}`].filter((p) => p !== "");
        return describable({ surface: "connect" as const, protocol, method: "GET", path: `${rpcPath}?${params.join("&")}`, credential, headers: credentialHeaders(credential), body: undefined, framing: "exact" as const, mutating });
      });
    return fc.oneof({ weight: 8, arbitrary: post }, { weight: 1, arbitrary: get });
  });
}

// ---------------------------------------------------------------- sending

/** The request as a person would read it in a failure report (fast-check prints this for the counterexample). */
function show(r: FuzzRequest): string {
  const body =
    r.body === undefined
      ? "(no body)"
      : /^[\t\n\r\x20-\x7e]*$/.test(r.body.toString("latin1"))
        ? JSON.stringify(r.body.length > 600 ? `${r.body.toString("latin1").slice(0, 600)}…(${r.body.length} bytes)` : r.body.toString("latin1"))
        : `base64:${r.body.length > 450 ? `${r.body.subarray(0, 450).toString("base64")}…(${r.body.length} bytes)` : r.body.toString("base64")}`;
  // Bytes outside printable ASCII are shown escaped: some are invisible (C1 controls, soft hyphen).
  const escaped = r.path.replace(/[^\x20-\x7e]/g, (ch) => `\\x${ch.charCodeAt(0).toString(16).padStart(2, "0")}`);
  const path = escaped.length > 300 ? `${escaped.slice(0, 300)}…(${escaped.length} chars)` : escaped;
  const headers = r.headers.map(([k, v]) => `${k}: ${JSON.stringify(v.length > 120 ? `${v.slice(0, 120)}…(${v.length} chars)` : v).slice(1, -1)}`).join(" | ");
  return `${r.protocol} ${r.method} "${path}" [${r.credential}, ${r.framing}${r.mutating ? ", mutating" : ""}] {${headers}} ${body}`;
}

function describable(r: FuzzRequest): FuzzRequest {
  return Object.defineProperty(r, fc.toStringMethod, { value: () => show(r), enumerable: false });
}

/**
 * A request whose head or framing breaks HTTP, which Node's HTTP server may refuse before the app
 * sees it: a lying or invalid length, an oversized head, a byte outside ASCII in the path, or an
 * `Expect` other than 100-continue (417 by Node itself, RFC 9110 §10.1.1).
 */
function malformedHttp(r: FuzzRequest): boolean {
  const head = r.path.length + r.headers.reduce((n, [k, v]) => n + k.length + v.length + 4, 0);
  if (r.protocol === "h2") return head > safeHeadBytes;
  const expectation = r.headers.some(([k, v]) => k === "expect" && v.toLowerCase() !== "100-continue");
  // A request target is ASCII (RFC 9112 §3.2); Node's parser refuses any other byte (HTTP/2 passes them on).
  const rawBytes = /[^\x21-\x7e]/.test(r.path);
  return r.framing === "shortLength" || r.framing === "invalidLength" || r.framing === "lengthAndChunked" || head > safeHeadBytes || expectation || rawBytes;
}

const keepAlive = new http.Agent({ keepAlive: true, maxSockets: 4 });
let h2Session: http2.ClientHttp2Session | undefined;

let h2Streams = 0;
/**
 * The shared HTTP/2 connection; a new one once the server has sent GOAWAY, the connection broke, or
 * it carried `streamsPerH2Connection` requests. Node counts DATA frames that arrive for streams it
 * already reset (the early refusals of bodies) as invalid, and ends a connection with too many
 * (ENHANCE_YOUR_CALM); real clients reconnect long before thousands of refusals.
 */
function h2(): http2.ClientHttp2Session {
  if (++h2Streams > streamsPerH2Connection) {
    h2Session?.close();
    h2Session = undefined;
    h2Streams = 1;
  }
  if (h2Session === undefined || h2Session.closed || h2Session.destroyed) {
    const session = http2.connect(fx.cp.url);
    session.on("error", () => undefined);
    session.on("goaway", () => {
      if (h2Session === session) h2Session = undefined;
    });
    h2Session = session;
  }
  return h2Session;
}

/** The answer with its body decoded: Connect compresses a response in the encoding the request used. */
function decoded(a: Answer): Answer {
  const encoding = String(a.headers["content-encoding"] ?? "identity").toLowerCase();
  if (encoding === "identity" || a.body.length === 0) return a;
  const decode = encoding === "gzip" ? gunzipSync : encoding === "br" ? brotliDecompressSync : encoding === "deflate" ? inflateSync : undefined;
  if (decode === undefined) return { ...a, body: Buffer.from(`(a response in content-encoding "${encoding}", which no client asked for)`) };
  try {
    return { ...a, body: decode(a.body) };
  } catch {
    return { ...a, body: Buffer.from(`(a response body that is not valid ${encoding})`) };
  }
}

/** Sends the request; resolves with what came back, or why nothing did (connection closed, timed out). */
function send(r: FuzzRequest): Promise<Answer | { failed: string }> {
  return r.protocol === "h2" ? sendH2(r) : sendH1(r);
}

function sendH1(r: FuzzRequest): Promise<Answer | { failed: string }> {
  const url = new URL(fx.cp.url);
  const lying = r.framing === "shortLength" || r.framing === "invalidLength" || r.framing === "lengthAndChunked";
  const headers: Record<string, string | string[]> = {};
  for (const [k, v] of r.headers) {
    const prev = headers[k];
    headers[k] = prev === undefined ? v : [...(Array.isArray(prev) ? prev : [prev]), v];
  }
  const body = r.body ?? Buffer.alloc(0);
  if (r.framing === "exact" && r.body !== undefined) headers["content-length"] = String(body.length);
  // Named, or node:http sends a GET/DELETE/OPTIONS body unframed (and it becomes the next request).
  if (r.framing === "chunked" && r.body !== undefined) headers["transfer-encoding"] = "chunked";
  if (r.framing === "shortLength") headers["content-length"] = String(Math.max(0, body.length - 1 - (body.length >> 1)));
  if (r.framing === "invalidLength") headers["content-length"] = ["abc", "-1", "1, 2", "0x10", "+5"][body.length % 5]!;
  if (r.framing === "lengthAndChunked") {
    headers["content-length"] = String(body.length);
    headers["transfer-encoding"] = "chunked";
  }
  return new Promise((resolve) => {
    let req: http.ClientRequest;
    try {
      req = http.request({ host: "127.0.0.1", port: url.port, method: r.method, path: r.path, headers, agent: lying ? false : keepAlive, timeout: answerTimeoutMs });
    } catch (error) {
      resolve({ failed: `not sendable by node:http: ${String(error)}` });
      return;
    }
    if (lying) req.shouldKeepAlive = false;
    req.on("response", (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (c: Buffer) => chunks.push(c));
      res.on("end", () => resolve(decoded({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) })));
      res.on("error", (e) => resolve({ failed: `response broke: ${e.message}` }));
    });
    req.on("timeout", () => {
      req.destroy(new Error(`no answer within ${answerTimeoutMs} ms`));
    });
    req.on("error", (e) => resolve({ failed: e.message }));
    if (r.body === undefined) req.end();
    else if (r.framing === "chunked" || r.framing === "lengthAndChunked") {
      req.write(body.subarray(0, body.length >> 1));
      req.end(body.subarray(body.length >> 1));
    } else req.end(body);
  });
}

function sendH2(r: FuzzRequest): Promise<Answer | { failed: string }> {
  return new Promise((resolve) => {
    const headers: http2.OutgoingHttpHeaders = { ":method": r.method, ":path": r.path };
    // HTTP/2 has no repeated fields for most headers (node:http2 refuses them): the last one wins.
    for (const [k, v] of r.headers) headers[k] = v;
    // A request that breaks HTTP/2 (an oversized header block) may take its connection down: it gets one of its own.
    const own = malformedHttp(r) ? http2.connect(fx.cp.url).on("error", () => undefined) : undefined;
    let stream: http2.ClientHttp2Stream;
    try {
      stream = (own ?? h2()).request(headers, { endStream: r.body === undefined });
    } catch (error) {
      own?.destroy();
      resolve({ failed: `not sendable by node:http2: ${String(error)}` });
      return;
    }
    const timer = setTimeout(() => stream.close(http2.constants.NGHTTP2_CANCEL), answerTimeoutMs);
    let status = 0;
    let responseHeaders: http.IncomingHttpHeaders = {};
    const chunks: Buffer[] = [];
    stream.on("response", (h) => {
      status = Number(h[":status"]);
      responseHeaders = h as http.IncomingHttpHeaders;
    });
    stream.on("data", (c: Buffer) => chunks.push(c));
    // The answer is complete when the server ends its side; a body the server chose not to read is not waited for.
    stream.on("end", () => {
      if (!stream.closed) stream.close(http2.constants.NGHTTP2_CANCEL);
    });
    stream.on("close", () => {
      clearTimeout(timer);
      own?.destroy();
      resolve(status === 0 ? { failed: `stream closed without an answer (code ${stream.rstCode ?? "?"})` } : decoded({ status, headers: responseHeaders, body: Buffer.concat(chunks) }));
    });
    stream.on("error", () => undefined);
    if (r.body !== undefined) stream.end(r.body);
  });
}

// ---------------------------------------------------------------- the property

const connectCodes = new Set(["canceled", "unknown", "invalid_argument", "deadline_exceeded", "not_found", "already_exists", "permission_denied", "resource_exhausted", "failed_precondition", "aborted", "out_of_range", "unimplemented", "internal", "unavailable", "data_loss", "unauthenticated"]);

/** What is wrong with the answer, or undefined. */
function judge(r: FuzzRequest, a: Answer | { failed: string }): string | undefined {
  if ("failed" in a) return malformedHttp(r) ? undefined : `no answer: ${a.failed}`;
  const text = a.body.toString("utf8");
  const shown = `${a.status} ${text.slice(0, 400)}`;
  if (a.status >= 500) return `a ${a.status}: ${shown}`;
  if (a.status < 400 || r.method === "HEAD") return undefined;
  const requestId = a.headers["x-request-id"];
  if (requestId === undefined) {
    // Only Node's HTTP parser answers without the id every request gets.
    return malformedHttp(r) && a.body.length === 0 ? undefined : `a 4xx without x-request-id: ${shown} ${JSON.stringify(a.headers)}`;
  }
  if (r.surface === "connect" && (a.status === 405 || a.status === 415) && a.body.length === 0) return undefined;
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    return `a 4xx whose body is not JSON: ${shown}`;
  }
  const envelope = (parsed as { error?: { code?: unknown; message?: unknown; request_id?: unknown } }).error;
  if (envelope !== undefined && typeof envelope === "object" && envelope !== null) {
    if (typeof envelope.code !== "string" || !/^[A-Z][A-Z0-9_]+$/.test(envelope.code)) return `an error envelope without a code: ${shown}`;
    if (typeof envelope.message !== "string" || envelope.message.trim() === "") return `an error envelope without a message: ${shown}`;
    if (envelope.request_id !== requestId) return `an error envelope whose request_id is not the x-request-id header (${String(requestId)}): ${shown}`;
    return undefined;
  }
  if (r.surface === "connect") {
    const c = parsed as { code?: unknown; message?: unknown };
    if (typeof c.code === "string" && connectCodes.has(c.code) && (c.message === undefined || typeof c.message === "string")) return undefined;
  }
  return `a 4xx that is not ${r.surface === "rest" ? "the error envelope" : "a Connect error or the error envelope"}: ${shown}`;
}

interface Tally {
  requests: number;
  statuses: Map<number, number>;
  accepted: number;
  noAnswer: number;
  fivexx: number;
}

function newTally(): Tally {
  return { requests: 0, statuses: new Map(), accepted: 0, noAnswer: 0, fivexx: 0 };
}

let checksum: DbChecksum;
let baseline: DbSnapshot;

/** After an accepted change, waits until the database is quiet (two equal snapshots 300 ms apart). */
async function settle(): Promise<DbSnapshot> {
  let last = await checksum.snapshot();
  for (let i = 0; i < 10; i++) {
    await new Promise((r) => setTimeout(r, 300));
    const next = await checksum.snapshot();
    if (checksum.diff(last, next).length === 0) return next;
    last = next;
  }
  throw new Error("the database kept changing for 3 s after an accepted request");
}

/** Sends a batch in order and checks each answer and the database after it; throws with the first failure. */
async function runBatch(batch: readonly FuzzRequest[], tally: Tally): Promise<void> {
  for (const r of batch) {
    const a = await send(r);
    if (process.env["FUZZ_LOG"] === "1") process.stderr.write(`${new Date().toISOString().slice(14, 23)} ${show(r)}\n  → ${"failed" in a ? a.failed : `${a.status} ${a.body.toString("utf8").slice(0, 160)}`}\n`);
    tally.requests++;
    if ("failed" in a) tally.noAnswer++;
    else {
      tally.statuses.set(a.status, (tally.statuses.get(a.status) ?? 0) + 1);
      if (a.status >= 500) tally.fivexx++;
    }
    const problem = judge(r, a);
    if (problem !== undefined) throw new Error(`${problem}\n  request: ${show(r)}`);
    const authorised = realCredentials.has(r.credential) && r.mutating;
    if (authorised && r.framing === "shortLength") {
      // The server reads a complete request of the declared length, which may succeed, and refuses
      // the bytes after it; Node's answer to those can come first and the app's is then lost. The
      // outcome is unknown here: whatever it stored is taken once the database is quiet.
      const settled = await settle();
      if (checksum.diff(baseline, settled).length > 0) tally.accepted++;
      baseline = settled;
      continue;
    }
    const after = await checksum.snapshot();
    const changed = checksum.diff(baseline, after);
    if (changed.length === 0) continue;
    const succeeded = !("failed" in a) && a.status >= 200 && a.status < 300;
    if (authorised && succeeded) {
      tally.accepted++;
      if (process.env["FUZZ_LOG"] === "1") process.stderr.write(`ACCEPTED CHANGE: ${changed.join("; ")}\n`);
      baseline = await settle();
      continue;
    }
    const status = "failed" in a ? `no answer (${a.failed})` : `${a.status} ${a.body.toString("utf8").slice(0, 200)}`;
    throw new Error(`the database changed after a request that may not change it (${status}):\n    ${changed.join("\n    ")}\n  request: ${show(r)}`);
  }
}

function summary(t: Tally): string {
  const statuses = [...t.statuses].sort(([a], [b]) => a - b).map(([s, n]) => `${s}×${n}`).join(" ");
  return `${t.requests} requests, ${t.fivexx} 5xx, ${t.noAnswer} unanswered (malformed HTTP), ${t.accepted} accepted changes; statuses ${statuses}; seed ${seed}, ${runs} runs`;
}

// ---------------------------------------------------------------- the suite

describe("fuzz: generated REST and Connect requests never get a 5xx, are refused with the error shape, and a refusal stores nothing", function () {
  this.timeout(180_000);

  before(async () => {
    // The general limit would answer most of the fuzz with 429 before any handler ran.
    const cp = await startTestControlPlane({ requestLimit: { requestsPerMinute: 0 } });
    const email = `fuzz-${Math.random().toString(36).slice(2)}@example.com`;
    const created = await adminRequest(cp, "POST", "/api/v1/admin/customers", { email, password, credits: 100_000 });
    const apiKey = created["api_key"] as string;
    const login = await request(cp, "POST", "/api/v1/customer/auth/login", { body: { email, password } });
    assert.equal(login.status, 200, JSON.stringify(login.body));
    const csv = await readFile(join(example, "dataset.csv"));
    const zip = new yazl.ZipFile();
    zip.addBuffer(Buffer.from("print('hi')\n"), "train.py");
    zip.end();
    const parts: Buffer[] = [];
    for await (const c of zip.outputStream) parts.push(c as Buffer);
    const pkg = Buffer.concat(parts);
    const dataset = (await uploadResource(cp, apiKey, "datasets", "kept", csv))["id"] as string;
    const trainingPackage = (await uploadResource(cp, apiKey, "training-packages", "kept", pkg))["id"] as string;
    const k = { "x-api-key": apiKey };
    const awaiting = await request(cp, "POST", "/api/v1/customer/datasets", { headers: k, body: { name: "awaiting", size_bytes: 3, sha256: createHash("sha256").update("abc").digest("hex") } });
    assert.equal(awaiting.status, 201, JSON.stringify(awaiting.body));
    fx = { cp, apiKey, session: login.body["session_token"] as string, email, ids: [dataset, trainingPackage, awaiting.body["id"] as string, created["customer_id"] as string] };
    checksum = await createDbChecksum(cp.plane.deps.db);
  });

  after(async () => {
    h2Session?.close();
    keepAlive.destroy();
    await fx?.cp.stop();
  });

  it("the database is quiet on its own: two snapshots a second apart are equal", async () => {
    const first = await checksum.snapshot();
    await new Promise((r) => setTimeout(r, 1000));
    assert.deepEqual(checksum.diff(first, await checksum.snapshot()), [], "a table changes without requests; add its background column to volatileColumns (test/support/db-checksum.ts) with the reason");
  });

  const properties: Array<{ name: string; arb: () => fc.Arbitrary<FuzzRequest> }> = [
    { name: "REST (every route template of the Customer and Admin services)", arb: () => restRequestArb(restRoutes([CustomerService, AdminService])) },
    { name: "Connect (every rpc of the Customer, Admin and Agent services)", arb: () => connectRequestArb([CustomerService, AdminService, AgentService]) },
  ];
  for (const p of properties) {
    it(`${p.name}: no 5xx, every refusal the error shape, no stored change but by an authorised success`, async function () {
      // About 10 ms a run here; shrinking a failure and a loaded machine take many times that.
      this.timeout(Math.max(180_000, runs * 200));
      const tally = newTally();
      baseline = await checksum.snapshot();
      try {
        await fc.assert(
          fc.asyncProperty(fc.array(p.arb(), { minLength: 1, maxLength: 4 }), (batch) => runBatch(batch, tally)),
          { seed, numRuns: runs },
        );
      } finally {
        this.test!.title += ` [${summary(tally)}]`;
      }
      assert.ok(tally.requests >= runs, "every run sent its batch");
      // The fuzz is worth something only if it reached past the front door.
      assert.ok(tally.statuses.has(200) || tally.statuses.has(201), `some requests succeeded: ${summary(tally)}`);
    });
  }
});
