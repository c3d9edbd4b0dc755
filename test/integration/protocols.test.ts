/**
 * One behaviour over every protocol on the one port: the real CustomerService
 * answers REST, Connect (JSON over HTTP/1.1), gRPC and gRPC-Web alike, with the
 * same authentication and the same seed error code.
 */
import assert from "node:assert/strict";
import type { Transport } from "@connectrpc/connect";
import { ConnectError, createClient } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport, createGrpcWebTransport } from "@connectrpc/connect-node";
import { apiErrorFrom } from "../../src/api/errors.ts";
import { CustomerService } from "../../src/gen/gpuagent/customer/v1/customer_pb.ts";
import type { TestControlPlane } from "../support/control-plane.ts";
import { createCustomer, request, startTestControlPlane } from "../support/control-plane.ts";

describe("the customer API speaks REST, Connect, gRPC and gRPC-Web on one port", function () {
  this.timeout(60_000);
  let cp: TestControlPlane;
  let apiKey: string;

  before(async () => {
    cp = await startTestControlPlane();
    ({ apiKey } = await createCustomer(cp, 500));
  });
  after(() => cp?.stop());

  const transports: { name: string; make: (url: string) => Transport }[] = [
    { name: "Connect JSON over HTTP/1.1", make: (baseUrl) => createConnectTransport({ baseUrl, httpVersion: "1.1", useBinaryFormat: false }) },
    { name: "Connect binary over h2c", make: (baseUrl) => createConnectTransport({ baseUrl, httpVersion: "2", useBinaryFormat: true }) },
    { name: "gRPC over h2c", make: (baseUrl) => createGrpcTransport({ baseUrl }) },
    { name: "gRPC-Web over HTTP/1.1", make: (baseUrl) => createGrpcWebTransport({ baseUrl, httpVersion: "1.1" }) },
  ];

  for (const t of transports) {
    it(`${t.name}: reads the config, authenticates with X-API-Key and reports JOB_NOT_FOUND like REST`, async () => {
      const client = createClient(CustomerService, t.make(cp.url));
      const config = await client.getConfig({});
      assert.equal(config.limits?.jobCreationsPerMinute, 10);
      const usage = await client.getUsageSummary({}, { headers: { "x-api-key": apiKey } });
      assert.equal(usage.creditsBalance, 500n);
      const missing = "00000000-0000-4000-8000-000000000000";
      const error = await client.getTrainingJob({ id: missing }, { headers: { "x-api-key": apiKey } }).then(
        () => assert.fail("expected an error"),
        (e: unknown) => e,
      );
      assert.ok(error instanceof ConnectError);
      assert.equal(apiErrorFrom(error).code, "JOB_NOT_FOUND");
      const rest = await request(cp, "GET", `/api/v1/customer/training-jobs/${missing}`, { headers: { "x-api-key": apiKey } });
      assert.equal((rest.body["error"] as Record<string, string>)["code"], "JOB_NOT_FOUND");
      const unauthenticated = await client.getUsageSummary({}).then(
        () => assert.fail("expected an error"),
        (e: unknown) => e,
      );
      assert.equal(apiErrorFrom(unauthenticated).code, "CUSTOMER_AUTH_REQUIRED");
    });
  }
});
