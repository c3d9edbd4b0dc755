/** The storage bounds from the environment: defaults, each variable, and values refused at start. */
import assert from "node:assert/strict";
import { defaultLimits, schedulerConfigFromEnv, storageQuotasFromEnv } from "../../src/platform/config.ts";

describe("storage quotas from the environment", () => {
  it("defaults to the documented values", () => {
    assert.deepEqual(schedulerConfigFromEnv({}).limits.storage, defaultLimits.storage);
    assert.deepEqual(defaultLimits.storage, {
      datasetsMaxCount: 100,
      datasetsMaxBytes: 100 * 1024 ** 3,
      packagesMaxCount: 100,
      packagesMaxBytes: 10 * 1024 ** 3,
      artifactsMaxCount: 10_000,
      artifactsMaxBytes: 100 * 1024 ** 3,
      unitArtifactsMaxBytes: 2 * 1024 ** 3,
      artifactRetentionDays: 30,
      sweepIntervalSeconds: 300,
    });
  });

  const variables: [string, keyof typeof defaultLimits.storage][] = [
    ["GPU_AGENT_QUOTA_DATASETS", "datasetsMaxCount"],
    ["GPU_AGENT_QUOTA_DATASET_BYTES", "datasetsMaxBytes"],
    ["GPU_AGENT_QUOTA_PACKAGES", "packagesMaxCount"],
    ["GPU_AGENT_QUOTA_PACKAGE_BYTES", "packagesMaxBytes"],
    ["GPU_AGENT_QUOTA_ARTIFACTS", "artifactsMaxCount"],
    ["GPU_AGENT_QUOTA_ARTIFACT_BYTES", "artifactsMaxBytes"],
    ["GPU_AGENT_UNIT_ARTIFACT_BYTES", "unitArtifactsMaxBytes"],
    ["GPU_AGENT_ARTIFACT_RETENTION_DAYS", "artifactRetentionDays"],
    ["GPU_AGENT_STORAGE_SWEEP_SECONDS", "sweepIntervalSeconds"],
  ];
  for (const [name, field] of variables) {
    it(`${name} sets ${field}`, () => {
      assert.equal(storageQuotasFromEnv({ [name]: "7" })[field], 7);
    });
  }

  const refused: [Record<string, string>, RegExp][] = [
    [{ GPU_AGENT_QUOTA_DATASETS: "-1" }, /GPU_AGENT_QUOTA_DATASETS must be a non-negative integer/],
    [{ GPU_AGENT_QUOTA_DATASET_BYTES: "10GiB" }, /GPU_AGENT_QUOTA_DATASET_BYTES must be a non-negative integer/],
    [{ GPU_AGENT_QUOTA_ARTIFACTS: String(2 ** 31) }, /GPU_AGENT_QUOTA_ARTIFACTS must be at most 2147483647/],
    [{ GPU_AGENT_STORAGE_SWEEP_SECONDS: "0" }, /GPU_AGENT_STORAGE_SWEEP_SECONDS must be at least 1/],
  ];
  for (const [env, message] of refused) {
    it(`refuses ${JSON.stringify(env)}`, () => {
      assert.throws(() => storageQuotasFromEnv(env), message);
    });
  }
});
