/**
 * The client faults Connect itself answers with a 5xx (src/api/connect-client-faults.ts) get the
 * seed-coded 4xx instead, on a real control plane over HTTP/1.1: a body that is not protobuf binary,
 * an unsupported content-encoding, the agent's bidirectional stream without HTTP/2. Other answers,
 * refusals included, pass unchanged. (The fuzz test, test/contract/fuzz.test.ts, found these.)
 */
import assert from "node:assert/strict";
import http from "node:http";
import { deflateSync } from "node:zlib";
import type { TestControlPlane } from "../support/control-plane.ts";
import { startTestControlPlane } from "../support/control-plane.ts";

interface Answer {
  status: number;
  headers: http.IncomingHttpHeaders;
  raw: Buffer;
}

function errorOf(a: Answer): { code?: string; message?: string } {
  return JSON.parse(a.raw.toString("utf8")) as { code?: string; message?: string };
}

interface Case {
  name: string;
  path: string;
  headers: Record<string, string>;
  body: Buffer;
  status: number;
  connectCode: string;
  /** The seed code (x-gpu-agent-error-code), or undefined where the answer carries none. */
  seedCode: string | undefined;
  message: RegExp;
}

const customer = "/gpuagent.customer.v1.CustomerService";

describe("Connect: client faults the protocol layer answers with a 5xx are 4xx with a seed code", function () {
  let cp: TestControlPlane;
  before(async () => {
    cp = await startTestControlPlane();
  });
  after(() => cp?.stop());

  /** node:http, so the request goes over HTTP/1.1 exactly as written. */
  function post(path: string, headers: Record<string, string>, body: Buffer): Promise<Answer> {
    const url = new URL(cp.url);
    return new Promise((resolve, reject) => {
      const req = http.request({ host: url.hostname, port: url.port, method: "POST", path, headers: { ...headers, "content-length": String(body.length) } }, (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (c: Buffer) => chunks.push(c));
        res.on("end", () => resolve({ status: res.statusCode ?? 0, headers: res.headers, raw: Buffer.concat(chunks) }));
      });
      req.on("error", reject);
      req.end(body);
    });
  }

  const cases: Case[] = [
    {
      name: "a body that is not protobuf binary",
      path: `${customer}/GetConfig`,
      headers: { "content-type": "application/proto" },
      body: Buffer.from([0xff, 0xff, 0xff]),
      status: 400,
      connectCode: "invalid_argument",
      seedCode: "VALIDATION_FAILED",
      message: /^\[VALIDATION_FAILED\] the request body is not a valid gpuagent\.customer\.v1\.GetConfigRequest in protobuf binary \(.+\)$/,
    },
    {
      name: "a string field that is not UTF-8",
      path: "/gpuagent.agent.v1.AgentService/Enroll",
      headers: { "content-type": "application/proto" },
      body: Buffer.from([0x0a, 0x01, 0xff]),
      status: 400,
      connectCode: "invalid_argument",
      seedCode: "VALIDATION_FAILED",
      message: /gpuagent\.agent\.v1\.EnrollRequest in protobuf binary/,
    },
    {
      name: "a content-encoding the server does not decode",
      path: `${customer}/GetConfig`,
      headers: { "content-type": "application/json", "content-encoding": "deflate" },
      body: deflateSync("{}"),
      status: 415,
      connectCode: "invalid_argument",
      seedCode: "UNSUPPORTED_MEDIA_TYPE",
      message: /^\[UNSUPPORTED_MEDIA_TYPE\] unknown compression "deflate": supported encodings are gzip,br$/,
    },
    {
      name: "the agent's bidirectional stream over HTTP/1.1",
      path: "/gpuagent.agent.v1.AgentService/Session",
      headers: { "content-type": "application/connect+proto" },
      body: Buffer.from([0, 0, 0, 0, 0]),
      status: 400,
      connectCode: "invalid_argument",
      seedCode: "VALIDATION_FAILED",
      message: /^\[VALIDATION_FAILED\] gpuagent\.agent\.v1\.AgentService\/Session is a bidirectional stream, which HTTP\/1\.1 cannot carry: call it over HTTP\/2$/,
    },
    {
      name: "(unchanged) JSON that does not parse",
      path: `${customer}/GetConfig`,
      headers: { "content-type": "application/json" },
      body: Buffer.from("{"),
      status: 400,
      connectCode: "invalid_argument",
      seedCode: undefined,
      message: /^cannot decode message gpuagent\.customer\.v1\.GetConfigRequest from JSON/,
    },
    {
      name: "(unchanged) a refusal by the handlers",
      path: `${customer}/ListDatasets`,
      headers: { "content-type": "application/json" },
      body: Buffer.from("{}"),
      status: 401,
      connectCode: "unauthenticated",
      seedCode: "CUSTOMER_AUTH_REQUIRED",
      message: /^\[CUSTOMER_AUTH_REQUIRED\] /,
    },
  ];

  for (const c of cases) {
    it(`${c.name}: ${c.status} ${c.connectCode}${c.seedCode === undefined ? "" : ` ${c.seedCode}`}`, async () => {
      const res = await post(c.path, c.headers, c.body);
      assert.equal(res.status, c.status, res.raw.toString("utf8"));
      assert.equal(res.headers["content-type"], "application/json");
      assert.equal(res.headers["content-length"], String(res.raw.length));
      const error = errorOf(res);
      assert.equal(error.code, c.connectCode);
      assert.match(error.message ?? "", c.message);
      assert.equal(res.headers["x-gpu-agent-error-code"], c.seedCode);
    });
  }

  it("a well-formed binary request still succeeds", async () => {
    const res = await post(`${customer}/GetConfig`, { "content-type": "application/proto" }, Buffer.alloc(0));
    assert.equal(res.status, 200, res.raw.toString("utf8"));
    assert.equal(res.headers["content-type"], "application/proto");
  });
});
