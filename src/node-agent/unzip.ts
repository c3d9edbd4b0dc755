/**
 * Unpacks a customer's training package without trusting it: no absolute
 * paths, no `..`, no symlinks or device files, bounded total size and entry
 * count (zip bombs), every target checked to stay inside the destination.
 * The control plane checks packages at finalize too; the agent checks again
 * because it is the one writing to its own disk.
 */
import { createWriteStream } from "node:fs";
import { mkdir } from "node:fs/promises";
import path from "node:path";
import { Transform } from "node:stream";
import { pipeline } from "node:stream/promises";
import yauzl from "yauzl";
import type { Entry, ZipFile } from "yauzl";
import { zipEntryNameProblem } from "../platform/zip-entry-names.ts";

/** Bounds on a package. */
export interface ZipLimits {
  /** Sum of uncompressed sizes (default 512 MiB). */
  maxTotalBytes: number;
  /** Number of entries (default 10 000). */
  maxEntries: number;
}

/** Defaults of ZipLimits. */
export const DEFAULT_ZIP_LIMITS: ZipLimits = { maxTotalBytes: 512 * 1024 * 1024, maxEntries: 10_000 };

/** The package is unsafe or broken; the message says which entry and why. */
export class UnsafeZipError extends Error {
  override name = "UnsafeZipError";
}

const S_IFMT = 0o170000;
const S_IFREG = 0o100000;
const S_IFDIR = 0o040000;

function openZip(file: string): Promise<ZipFile> {
  return new Promise((resolve, reject) => {
    yauzl.open(file, { lazyEntries: true, validateEntrySizes: true, autoClose: true }, (err, zip) => {
      if (err) reject(new UnsafeZipError(`not a readable zip: ${err.message}`));
      else resolve(zip);
    });
  });
}

function openEntry(zip: ZipFile, entry: Entry): Promise<NodeJS.ReadableStream> {
  return new Promise((resolve, reject) => {
    zip.openReadStream(entry, (err, stream) => (err ? reject(err) : resolve(stream)));
  });
}

/**
 * Extracts `zipFile` into `destDir` (created if missing). Throws
 * UnsafeZipError on the first bad entry; what was written before stays and
 * is removed with the work directory.
 */
export async function extractZipSafely(
  zipFile: string,
  destDir: string,
  limits: ZipLimits = DEFAULT_ZIP_LIMITS,
): Promise<{ entries: number; bytes: number }> {
  const root = path.resolve(destDir);
  await mkdir(root, { recursive: true });
  const zip = await openZip(zipFile);
  if (zip.entryCount > limits.maxEntries) {
    zip.close();
    throw new UnsafeZipError(`too many entries: ${zip.entryCount} > ${limits.maxEntries}`);
  }
  let entries = 0;
  let declared = 0;
  let written = 0;

  const handle = async (entry: Entry): Promise<void> => {
    entries++;
    if (entries > limits.maxEntries) throw new UnsafeZipError(`too many entries (> ${limits.maxEntries})`);
    const name = entry.fileName;
    const problem = zipEntryNameProblem(name);
    if (problem) throw new UnsafeZipError(`refused entry ${JSON.stringify(name)}: ${problem}`);
    // Unix mode sits in the high 16 bits when the zip was made on Unix; 0 elsewhere.
    const type = (entry.externalFileAttributes >>> 16) & S_IFMT;
    const isDir = name.endsWith("/");
    if (type !== 0 && type !== S_IFREG && type !== S_IFDIR) {
      throw new UnsafeZipError(`refused entry ${JSON.stringify(name)}: not a regular file or directory (symlink or device)`);
    }
    if (type === S_IFDIR && !isDir) throw new UnsafeZipError(`refused entry ${JSON.stringify(name)}: directory without trailing slash`);
    if (entry.isEncrypted()) throw new UnsafeZipError(`refused entry ${JSON.stringify(name)}: encrypted`);
    const target = path.resolve(root, name);
    if (target !== root && !target.startsWith(root + path.sep)) {
      throw new UnsafeZipError(`refused entry ${JSON.stringify(name)}: escapes the package directory`);
    }
    if (isDir) {
      await mkdir(target, { recursive: true });
      return;
    }
    declared += entry.uncompressedSize;
    if (declared > limits.maxTotalBytes) {
      throw new UnsafeZipError(`package too large: more than ${limits.maxTotalBytes} bytes uncompressed`);
    }
    await mkdir(path.dirname(target), { recursive: true });
    const source = await openEntry(zip, entry);
    // Count real bytes too: validateEntrySizes catches lying headers, this
    // keeps the bound even if that check were ever off.
    const counter = new Transform({
      transform(chunk: Buffer, _enc, cb) {
        written += chunk.length;
        if (written > limits.maxTotalBytes) cb(new UnsafeZipError("package too large while extracting"));
        else cb(null, chunk);
      },
    });
    // "wx": never write through something that already exists (a duplicate entry).
    await pipeline(source, counter, createWriteStream(target, { flags: "wx", mode: 0o644 }));
  };

  await new Promise<void>((resolve, reject) => {
    let failed = false;
    const fail = (err: unknown) => {
      if (failed) return;
      failed = true;
      try {
        zip.close();
      } catch {
        // Already closed by autoClose; nothing left to release.
      }
      reject(err instanceof UnsafeZipError ? err : new UnsafeZipError(`bad package: ${err instanceof Error ? err.message : String(err)}`));
    };
    zip.on("error", fail);
    zip.on("end", () => {
      if (!failed) resolve();
    });
    zip.on("entry", (entry: Entry) => {
      handle(entry).then(() => {
        if (!failed) zip.readEntry();
      }, fail);
    });
    zip.readEntry();
  });
  return { entries, bytes: written };
}
