/**
 * Unpacks a customer's training package without trusting it, by the same rules the control plane
 * applied at finalize (src/platform/package-archive.ts): the whole zip is checked before anything is
 * written, then every file is written new (never through something that exists) and its bytes are
 * verified as they stream. The agent checks again because it is the one writing to its own disk, and
 * because a package may have been finalized before a rule was added.
 *
 * Errors never show this node's paths: an UnsafeZipError (the package's fault) names entries of the
 * zip only, and a failure of the node's own disk says which system error it was, its path kept in the
 * `cause` for the agent's log.
 */
import { createWriteStream } from "node:fs";
import { mkdir } from "node:fs/promises";
import path from "node:path";
import { pipeline } from "node:stream/promises";
import type { PackageArchive, PackageArchiveLimits } from "../platform/package-archive.ts";
import { PackageArchiveError, openPackageArchive, packageArchiveLimits } from "../platform/package-archive.ts";

/** Bounds on a package. */
export type ZipLimits = PackageArchiveLimits;

/** The bounds the control plane checked at finalize; a smaller bound here would refuse packages it accepted. */
export const DEFAULT_ZIP_LIMITS: ZipLimits = packageArchiveLimits;

/** The package breaks a rule; the message says which entry and why (and is shown to the customer). */
export class UnsafeZipError extends Error {
  override name = "UnsafeZipError";
}

/** The node could not unpack a package it was allowed to: a node fault, reported without the node's paths. */
export class PackageUnpackError extends Error {
  override name = "PackageUnpackError";
}

function unpackFailure(err: unknown): Error {
  if (err instanceof PackageArchiveError) return new UnsafeZipError(err.message);
  if (err instanceof PackageUnpackError || err instanceof UnsafeZipError) return err;
  const code = (err as { code?: unknown } | null)?.code;
  return new PackageUnpackError(`could not unpack the package on this node${typeof code === "string" ? ` (${code})` : ""}`, { cause: err });
}

/**
 * Extracts `zipFile` into `destDir` (created if missing). Throws UnsafeZipError when the package
 * breaks a rule (nothing is written then, unless a file's bytes turn out not to match the zip, which
 * is found while writing it: what was written stays and is removed with the work directory), and
 * PackageUnpackError when the node's disk fails.
 */
export async function extractZipSafely(zipFile: string, destDir: string, limits: ZipLimits = DEFAULT_ZIP_LIMITS): Promise<{ entries: number; bytes: number }> {
  const root = path.resolve(destDir);
  let archive: PackageArchive;
  try {
    archive = await openPackageArchive(zipFile, limits);
  } catch (err) {
    throw unpackFailure(err);
  }
  try {
    await mkdir(root, { recursive: true });
    for (const entry of archive.entries) {
      const target = path.join(root, ...entry.path.split("/"));
      // The shared rules already keep every path inside; this is the last word before a write.
      if (target !== root && !target.startsWith(root + path.sep)) throw new UnsafeZipError(`entry ${JSON.stringify(entry.name)} escapes the package directory`);
      if (entry.kind === "directory") {
        await mkdir(target, { recursive: true });
        continue;
      }
      await mkdir(path.dirname(target), { recursive: true });
      // "wx": never write through something that already exists.
      await pipeline(await archive.read(entry), createWriteStream(target, { flags: "wx", mode: 0o644 }));
    }
  } catch (err) {
    throw unpackFailure(err);
  } finally {
    archive.close();
  }
  return { entries: archive.entries.length, bytes: archive.uncompressedBytes };
}
