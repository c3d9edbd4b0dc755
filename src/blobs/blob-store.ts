/**
 * Blobs (datasets, packages, artifacts) in a local directory. Several replicas
 * may share the directory (a ReadWriteMany volume): writes go to a temporary
 * file and are renamed into place, so a reader never sees half a blob.
 * An S3-compatible store can implement the same interface later.
 */
import { createHash } from "node:crypto";
import { createReadStream, createWriteStream } from "node:fs";
import { mkdir, rename, rm, stat } from "node:fs/promises";
import { dirname, join, normalize, sep } from "node:path";
import type { Readable } from "node:stream";
import { Transform } from "node:stream";
import { pipeline } from "node:stream/promises";
import { newId } from "../platform/ids.ts";
import { privateDirMode, privateFileMode } from "../platform/private-files.ts";

/** What was written. */
export interface StoredBlob {
  size: number;
  sha256: string;
}

/** Thrown when a write exceeds its byte limit; nothing is kept. */
export class BlobTooLargeError extends Error {
  readonly limit: number;
  constructor(limit: number) {
    super(`blob exceeds ${limit} bytes`);
    this.limit = limit;
    this.name = "BlobTooLargeError";
  }
}

/** Storage of immutable byte blobs by key. */
export interface BlobStore {
  /** Streams `source` into `key`, hashing as it goes; fails (keeping nothing) past maxBytes. */
  put(key: string, source: Readable, options: { maxBytes: number }): Promise<StoredBlob>;
  /** A stream of the blob's bytes (rejects when absent). */
  open(key: string): Promise<{ stream: Readable; size: number }>;
  exists(key: string): Promise<boolean>;
  /** Removes the blob, or with a key ending in "/" every blob under that prefix; an absent one is fine. */
  delete(key: string): Promise<void>;
  /** A local path for the blob (the local store only; used to inspect zips). */
  localPath(key: string): string;
}

const keyPattern = /^[a-z0-9][A-Za-z0-9/_.-]{0,300}$/;

/** A BlobStore over a directory. Keys are relative paths such as `datasets/<uuid>`. */
export function createLocalBlobStore(root: string): BlobStore {
  const pathOf = (key: string): string => {
    if (!keyPattern.test(key) || key.includes("..")) throw new Error(`invalid blob key ${JSON.stringify(key)}`);
    const path = normalize(join(root, key));
    if (!path.startsWith(normalize(root) + sep)) throw new Error(`invalid blob key ${JSON.stringify(key)}`);
    return path;
  };

  return {
    async put(key, source, { maxBytes }) {
      const target = pathOf(key);
      // Private to the control plane's user whatever the umask: blobs are customers' datasets.
      await mkdir(dirname(target), { recursive: true, mode: privateDirMode });
      const temp = `${target}.${newId()}.partial`;
      const hash = createHash("sha256");
      let size = 0;
      const meter = new Transform({
        transform(chunk: Buffer, _enc, done) {
          size += chunk.length;
          if (size > maxBytes) return done(new BlobTooLargeError(maxBytes));
          hash.update(chunk);
          done(null, chunk);
        },
      });
      try {
        await pipeline(source, meter, createWriteStream(temp, { flags: "wx", mode: privateFileMode }));
        await rename(temp, target);
      } catch (error) {
        await rm(temp, { force: true });
        throw error;
      }
      return { size, sha256: hash.digest("hex") };
    },
    async open(key) {
      const path = pathOf(key);
      const info = await stat(path);
      return { stream: createReadStream(path), size: info.size };
    },
    async exists(key) {
      try {
        await stat(pathOf(key));
        return true;
      } catch {
        return false;
      }
    },
    async delete(key) {
      if (key.endsWith("/")) await rm(pathOf(key.slice(0, -1)), { recursive: true, force: true });
      else await rm(pathOf(key), { force: true });
    },
    localPath: pathOf,
  };
}
