/**
 * Every step that decodes a request's path or query answers malformed input
 * with a 4xx and an error code — never a 5xx: REST path segments and query
 * parameters, request targets that are not URLs, a Host no URL can hold,
 * signed blob URLs (download and upload), the agents' artifact uploads and the
 * portal's files. Paths go
 * out byte for byte, over HTTP/1.1 and HTTP/2.
 */
import assert from "node:assert/strict";
import http from "node:http";
import http2 from "node:http2";
import { createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { AgentService } from "../../src/gen/gpuagent/agent/v1/agent_pb.ts";
import type { TestControlPlane } from "../support/control-plane.ts";
import { adminRequest, createCustomer, startTestControlPlane } from "../support/control-plane.ts";

interface Answer {
  status: number;
  body: string;
}

/** One request over HTTP/1.1 with the target exactly as given. */
function http1(cp: TestControlPlane, method: string, target: string, headers: Record<string, string>): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: "127.0.0.1", port: cp.plane.port, method, path: target, headers: { ...headers, "content-length": "0" } }, (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (c: Buffer) => chunks.push(c));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString("utf8") }));
    });
    req.on("error", reject);
    req.end();
  });
}

/** One request over cleartext HTTP/2 with `:path` exactly as given. */
function h2(session: http2.ClientHttp2Session, method: string, target: string, headers: Record<string, string>): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const stream = session.request({ ":method": method, ":path": target, ...headers }, { endStream: true });
    let status = 0;
    const chunks: Buffer[] = [];
    stream.on("response", (h) => (status = Number(h[":status"])));
    stream.on("data", (c: Buffer) => chunks.push(c));
    stream.on("end", () => resolve({ status, body: Buffer.concat(chunks).toString("utf8") }));
    stream.on("error", reject);
  });
}

interface Case {
  name: string;
  method: string;
  /** The request target; `unit` is replaced by a unit id. */
  target: string;
  /** Which credential goes along. */
  auth: "customer" | "node" | "none";
  status: number;
  code: string;
  /** A Host header (HTTP/2: `:authority`) in place of the client's own. */
  host?: string;
  /** HTTP/1.1 only: HTTP/2 resets a stream whose `:path` is not origin-form before any code of ours runs. */
  http1Only?: boolean;
}

const future = Math.floor(Date.now() / 1000) + 3600;
const unit = "6f0c1f5e-8a51-4c57-9d59-0d8f1b1f7a10";

const cases: Case[] = [
  // REST path segments: malformed escapes, truncated and non-UTF-8 sequences, and NUL, which PostgreSQL text cannot hold.
  { name: "REST path: a bad escape", method: "GET", target: "/api/v1/customer/training-jobs/%ZZ", auth: "customer", status: 400, code: "VALIDATION_FAILED" },
  { name: "REST path: a truncated sequence", method: "GET", target: "/api/v1/customer/training-jobs/%E0%A4%A", auth: "customer", status: 400, code: "VALIDATION_FAILED" },
  { name: "REST path: bytes that are not UTF-8", method: "GET", target: "/api/v1/customer/datasets/%C3%28", auth: "customer", status: 400, code: "VALIDATION_FAILED" },
  { name: "REST path: an encoded NUL", method: "GET", target: "/api/v1/customer/training-packages/%00", auth: "customer", status: 400, code: "VALIDATION_FAILED" },
  { name: "REST path: a bad escape before a custom verb", method: "POST", target: "/api/v1/customer/training-jobs/%ZZ:cancel", auth: "customer", status: 400, code: "VALIDATION_FAILED" },
  { name: "REST path: without credentials, decoding still comes first", method: "GET", target: "/api/v1/customer/training-jobs/%ZZ", auth: "none", status: 400, code: "VALIDATION_FAILED" },
  // REST query parameters: URLSearchParams would pass these on mangled; they are refused instead.
  { name: "REST query: a bad escape in a value", method: "GET", target: "/api/v1/customer/training-jobs?limit=%ZZ", auth: "customer", status: 400, code: "VALIDATION_FAILED" },
  { name: "REST query: a bad escape in a name", method: "GET", target: "/api/v1/customer/training-jobs?%ZZ=1", auth: "customer", status: 400, code: "VALIDATION_FAILED" },
  { name: "REST query: bytes that are not UTF-8", method: "GET", target: "/api/v1/customer/training-jobs?status=%FF", auth: "customer", status: 400, code: "VALIDATION_FAILED" },
  { name: "REST query: an encoded NUL", method: "GET", target: "/api/v1/customer/datasets?cursor=%00", auth: "customer", status: 400, code: "VALIDATION_FAILED" },
  { name: "REST query: an admin route", method: "GET", target: "/api/v1/admin/nodes?limit=%E0%A4", auth: "none", status: 400, code: "VALIDATION_FAILED" },
  // Request targets no URL can be read from.
  { name: "a target with a broken authority", method: "GET", target: "//[x/api/v1/customer/meta", auth: "none", status: 400, code: "VALIDATION_FAILED" },
  { name: "an absolute-form target with a broken host", method: "GET", target: "http://[/api/v1/customer/meta", auth: "none", status: 400, code: "VALIDATION_FAILED", http1Only: true },
  // A Host no URL can hold, on an rpc path (connect-node builds the request's URL on it).
  { name: "an rpc with a broken Host", method: "POST", target: "/gpuagent.customer.v1.CustomerService/GetMeta", host: "[", auth: "none", status: 400, code: "VALIDATION_FAILED" },
  // Signed blob URLs: a malformed path cannot be one this server issued.
  { name: "blob download: a bad escape in the key", method: "GET", target: `/blobs/%ZZ?op=get&exp=${future}&sig=x`, auth: "none", status: 403, code: "SIGNED_URL_INVALID" },
  { name: "blob download: a truncated sequence", method: "GET", target: `/blobs/artifacts/%E0%A4%A?op=get&exp=${future}&sig=x`, auth: "none", status: 403, code: "SIGNED_URL_INVALID" },
  { name: "blob upload: a bad escape in the key", method: "PUT", target: `/blobs/datasets/%ZZ?op=put&exp=${future}&sig=x`, auth: "none", status: 403, code: "SIGNED_URL_INVALID" },
  // The agents' artifact uploads (with a real node credential, so the name is what is refused).
  { name: "artifact upload: a bad escape in the name", method: "PUT", target: `/agent/v1/units/${unit}/attempts/1/artifacts/%ZZ`, auth: "node", status: 400, code: "VALIDATION_FAILED" },
  { name: "artifact upload: bytes that are not UTF-8", method: "PUT", target: `/agent/v1/units/${unit}/attempts/1/artifacts/log%C3%28.txt`, auth: "node", status: 400, code: "VALIDATION_FAILED" },
  // The portal's files.
  { name: "portal file: a bad escape", method: "GET", target: "/portal/%ZZ", auth: "none", status: 400, code: "VALIDATION_FAILED" },
  { name: "portal file: bytes that are not UTF-8", method: "GET", target: "/portal/assets/%C3%28.js", auth: "none", status: 400, code: "VALIDATION_FAILED" },
];

describe("malformed percent-encoding in paths and queries", function () {
  this.timeout(60_000);
  let cp: TestControlPlane;
  let session: http2.ClientHttp2Session;
  const credentials: Record<Case["auth"], Record<string, string>> = { customer: {}, node: {}, none: {} };

  before(async () => {
    cp = await startTestControlPlane();
    credentials.customer = { "x-api-key": (await createCustomer(cp)).apiKey };
    const token = (await adminRequest(cp, "POST", "/api/v1/admin/enrollment-tokens", { trust_level: "verified" }))["token"] as string;
    const enrolled = await createClient(AgentService, createGrpcTransport({ baseUrl: cp.url })).enroll({
      token,
      capabilities: { cpuCores: 2, memoryMb: 2048, diskFreeMb: 10_000, hostname: "encoding-test" },
    });
    credentials.node = { authorization: `Bearer ${enrolled.nodeCredential}` };
    session = http2.connect(cp.url);
  });
  after(async () => {
    session?.close();
    await cp?.stop();
  });

  const protocols: { name: string; send: (tc: Case) => Promise<Answer> }[] = [
    { name: "HTTP/1.1", send: (tc) => http1(cp, tc.method, tc.target, { ...credentials[tc.auth], ...(tc.host === undefined ? {} : { host: tc.host }) }) },
    { name: "HTTP/2", send: (tc) => h2(session, tc.method, tc.target, { ...credentials[tc.auth], ...(tc.host === undefined ? {} : { ":authority": tc.host }) }) },
  ];

  for (const protocol of protocols) {
    describe(`over ${protocol.name}`, () => {
      for (const tc of cases) {
        if (tc.http1Only === true && protocol.name !== "HTTP/1.1") continue;
        it(`${tc.name} → ${tc.status} ${tc.code}`, async () => {
          const answer = await protocol.send(tc);
          assert.ok(answer.status < 500, `${tc.method} ${tc.target} → ${answer.status} ${answer.body}`);
          assert.equal(answer.status, tc.status, answer.body);
          const error = (JSON.parse(answer.body) as { error: { code: string; message: string; request_id: string } }).error;
          assert.equal(error.code, tc.code);
          assert.ok(error.message.length > 20, `a message a person can act on: ${error.message}`);
          assert.ok(error.request_id.length > 0);
        });
      }
    });
  }
});
