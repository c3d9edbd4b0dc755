/**
 * The storage quota decision: what one more dataset, package or artifact would
 * bring a customer's holdings to, against the configured bounds
 * (docs/limits.md, "Storage per customer"). Callers read the usage and write
 * inside one transaction that holds the customer's storage lock
 * (src/store/storage.ts), so the decision is exact.
 */
import { ApiError } from "../platform/errors.ts";
import type { StorageQuotas } from "../platform/config.ts";
import type { StorageUsage } from "../store/uploads.ts";

/** What a quota is about. */
export type StoredKind = "datasets" | "training_packages" | "artifacts";

const labels: Record<StoredKind, string> = { datasets: "datasets", training_packages: "training packages", artifacts: "artifacts" };

/** The count and byte bounds of one kind. */
export function quotaOf(quotas: StorageQuotas, kind: StoredKind): { maxCount: number; maxBytes: number } {
  switch (kind) {
    case "datasets":
      return { maxCount: quotas.datasetsMaxCount, maxBytes: quotas.datasetsMaxBytes };
    case "training_packages":
      return { maxCount: quotas.packagesMaxCount, maxBytes: quotas.packagesMaxBytes };
    case "artifacts":
      return { maxCount: quotas.artifactsMaxCount, maxBytes: quotas.artifactsMaxBytes };
  }
}

/** Bytes for a person: exact below 1 KiB, else one decimal in the largest binary unit. */
export function describeBytes(bytes: number): string {
  const units = ["KiB", "MiB", "GiB", "TiB"];
  if (bytes < 1024) return `${bytes} bytes`;
  let value = bytes;
  let unit = "bytes";
  for (const next of units) {
    if (value < 1024) break;
    value /= 1024;
    unit = next;
  }
  return `${Number.isInteger(value) ? value : value.toFixed(1)} ${unit}`;
}

/**
 * The STORAGE_QUOTA_EXCEEDED error when holding `usage` plus one more item of `bytes` would pass a
 * bound of `kind`; undefined when it fits. The message says what to do; details carry the figures.
 */
export function quotaRefusal(quotas: StorageQuotas, kind: StoredKind, usage: StorageUsage, bytes: number): ApiError | undefined {
  const { maxCount, maxBytes } = quotaOf(quotas, kind);
  const label = labels[kind];
  const remedy = kind === "artifacts" ? "artifacts are removed as their jobs' retention ends" : `delete ${label} you no longer need, then try again`;
  if (usage.count + 1 > maxCount) {
    return new ApiError("STORAGE_QUOTA_EXCEEDED", `storage quota reached: a customer may hold at most ${maxCount} ${label} and you hold ${usage.count}; ${remedy}`, {
      details: { resource: kind, quota: "count", limit: maxCount, used: usage.count, requested: 1 },
    });
  }
  if (usage.bytes + bytes > maxBytes) {
    return new ApiError(
      "STORAGE_QUOTA_EXCEEDED",
      `storage quota reached: ${label} may take at most ${describeBytes(maxBytes)} (${maxBytes} bytes) per customer; you hold ${describeBytes(usage.bytes)} and this needs ${describeBytes(bytes)} more; ${remedy}`,
      { details: { resource: kind, quota: "bytes", limit: maxBytes, used: usage.bytes, requested: bytes } },
    );
  }
  return undefined;
}
