/**
 * Every server error the control plane answers is logged once, at error
 * level, with its cause (the error and its stack) and the request id the
 * client saw — over REST, Connect, gRPC and the raw blob routes — while the
 * client sees only the code. The failures are real: a table the handlers need
 * is gone, a signed blob is missing from storage.
 */
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { EventEmitter, once } from "node:events";
import { Writable } from "node:stream";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { pino } from "pino";
import { CustomerService } from "../../src/gen/gpuagent/customer/v1/customer_pb.ts";
import type { TestControlPlane } from "../support/control-plane.ts";
import { createCustomer, startTestControlPlane } from "../support/control-plane.ts";

interface LogLine {
  level: number;
  msg: string;
  request_id?: string;
  err?: { type?: string; message?: string; stack?: string };
}

/** What one call answered: its status (HTTP, or the gRPC code) and the request id it carried. */
interface Answer {
  status: number;
  requestId: string | null;
  body: string;
}

interface Case {
  name: string;
  /** Makes the call with `requestId` as its x-request-id. */
  call(requestId: string): Promise<Answer>;
  /** The status the client sees. */
  status: number;
  /** What the logged cause's message says. */
  cause: RegExp;
}

describe("server errors are logged with their cause and request id", function () {
  this.timeout(60_000);
  const lines: LogLine[] = [];
  const logged = new EventEmitter();
  let cp: TestControlPlane;
  let apiKey: string;

  before(async () => {
    const sink = new Writable({
      write(chunk: Buffer, _encoding, done) {
        for (const line of chunk.toString("utf8").split("\n")) {
          if (line === "") continue;
          lines.push(JSON.parse(line) as LogLine);
          logged.emit("line");
        }
        done();
      },
    });
    cp = await startTestControlPlane({ logger: pino({ level: "info" }, sink) });
    ({ apiKey } = await createCustomer(cp));
    // The failure every API case meets: the handlers' table is gone (renamed back before the plane stops).
    await cp.plane.deps.db.query(`ALTER TABLE datasets RENAME TO datasets_gone`);
  });
  after(async () => {
    await cp?.plane.deps.db.query(`ALTER TABLE datasets_gone RENAME TO datasets`);
    await cp?.stop();
  });

  const viaFetch = async (requestId: string, path: string, init: RequestInit = {}): Promise<Answer> => {
    const res = await fetch(cp.url + path, { ...init, headers: { ...(init.headers as Record<string, string>), "x-request-id": requestId } });
    return { status: res.status, requestId: res.headers.get("x-request-id"), body: await res.text() };
  };

  const cases: Case[] = [
    {
      name: "REST",
      call: (id) => viaFetch(id, "/api/v1/customer/datasets", { headers: { "x-api-key": apiKey } }),
      status: 500,
      cause: /datasets/,
    },
    {
      name: "Connect",
      call: (id) =>
        viaFetch(id, `/${CustomerService.typeName}/ListDatasets`, {
          method: "POST",
          headers: { "x-api-key": apiKey, "content-type": "application/json" },
          body: "{}",
        }),
      status: 500,
      cause: /datasets/,
    },
    {
      name: "gRPC",
      async call(id) {
        const client = createClient(CustomerService, createGrpcTransport({ baseUrl: cp.url }));
        let requestId: string | null = null;
        try {
          await client.listDatasets({}, { headers: { "x-api-key": apiKey, "x-request-id": id }, onHeader: (h) => (requestId = h.get("x-request-id")) });
          return { status: 0, requestId, body: "" };
        } catch (error) {
          const e = ConnectError.from(error);
          return { status: e.code, requestId: requestId ?? e.metadata.get("x-request-id"), body: e.rawMessage };
        }
      },
      status: Code.Internal,
      cause: /datasets/,
    },
    {
      name: "a signed blob download whose blob is missing",
      call: (id) => {
        const url = new URL(cp.plane.deps.signer.sign("get", `datasets/${randomUUID()}`, Date.now() + 60_000));
        return viaFetch(id, url.pathname + url.search);
      },
      status: 502,
      cause: /ENOENT/,
    },
  ];

  for (const tc of cases) {
    it(`over ${tc.name}`, async () => {
      const requestId = `server-error-${randomUUID()}`;
      const answer = await tc.call(requestId);
      assert.equal(answer.status, tc.status, answer.body);
      assert.equal(answer.requestId, requestId, "the client saw the request id");
      assert.doesNotMatch(answer.body, tc.cause, "the cause stays out of the answer");
      const errorLines = () => lines.filter((line) => line.request_id === requestId && line.level >= 50);
      // The raw routes' line is written when the response closes, which may come after the client has read it.
      const deadline = AbortSignal.timeout(10_000);
      while (errorLines().length === 0) await once(logged, "line", { signal: deadline });
      // The request's own access line comes after its error line: by then a second error line would be there too.
      while (!lines.some((line) => line.request_id === requestId && line.msg === "request")) await once(logged, "line", { signal: deadline });
      assert.equal(errorLines().length, 1, `one error line for the request: ${JSON.stringify(lines.filter((l) => l.request_id === requestId))}`);
      const { err } = errorLines()[0]!;
      assert.match(err?.message ?? "", tc.cause);
      assert.match(err?.stack ?? "", /\n\s+at /, "the stack is logged");
    });
  }
});
