/**
 * A control plane for the limits, money and webhook tests, like test/support's
 * startTestControlPlane but with startControlPlane's `requestLimit` and `webhooks` options.
 */
import { createHash } from "node:crypto";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pino } from "pino";
import type { RequestLimitOptions } from "../../src/limits/request-limits.ts";
import { zipDirectory } from "../../src/cli/files.ts";
import { startControlPlane } from "../../src/control-plane.ts";
import type { Clock } from "../../src/platform/clock.ts";
import type { LimitsConfig } from "../../src/platform/config.ts";
import { defaultAgents, defaultLimits, defaultRates } from "../../src/platform/config.ts";
import type { WebhookDispatcherOptions } from "../../src/webhooks/dispatcher.ts";
import type { TestControlPlane } from "../support/control-plane.ts";

/** Options of {@link startPlane}. */
export interface PlaneOptions {
  databaseUrl?: string;
  clock?: Clock;
  limits?: Partial<LimitsConfig>;
  requestLimit?: RequestLimitOptions;
  webhooks?: WebhookDispatcherOptions;
}

/** Starts a control plane on a free loopback port with the given options. */
export async function startPlane(options: PlaneOptions = {}): Promise<TestControlPlane> {
  const dataDir = await mkdtemp(join(tmpdir(), "gpu-agent-cp-"));
  const adminToken = "test-admin-token-" + createHash("sha256").update(dataDir).digest("hex").slice(0, 16);
  const plane = await startControlPlane(
    {
      host: "127.0.0.1",
      port: 0,
      publicUrl: "http://127.0.0.1:0",
      dataDir,
      databaseUrl: options.databaseUrl,
      etcdEndpoints: [],
      replicaId: "test-replica",
      adminToken,
      blobDir: join(dataDir, "blobs"),
      placementIntervalMs: 200,
      limits: { ...defaultLimits, ...options.limits },
      rates: defaultRates,
      agents: { ...defaultAgents, heartbeatIntervalSeconds: 1 },
      build: "test",
    },
    {
      logger: pino({ level: process.env["TEST_LOG_LEVEL"] ?? "silent" }),
      ...(options.clock === undefined ? {} : { clock: options.clock }),
      ...(options.requestLimit === undefined ? {} : { requestLimit: options.requestLimit }),
      ...(options.webhooks === undefined ? {} : { webhooks: options.webhooks }),
    },
  );
  return {
    plane,
    url: plane.url,
    adminToken,
    dataDir,
    async stop() {
      await plane.close();
      await rm(dataDir, { recursive: true, force: true });
    },
  };
}

/** The tiny-mlp example's training package as a zip. */
export async function examplePackageZip(): Promise<Buffer> {
  const dir = await mkdtemp(join(tmpdir(), "pkg-"));
  try {
    await zipDirectory(join(import.meta.dirname, "..", "..", "examples", "tiny-mlp", "package"), join(dir, "p.zip"));
    return await readFile(join(dir, "p.zip"));
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
