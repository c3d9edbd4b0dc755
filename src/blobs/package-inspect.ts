/**
 * Checks an uploaded training package before it is accepted: a readable zip,
 * entry names that stay inside the package (the same rule the agent applies
 * when it unpacks), bounded entry count and uncompressed size, no symlinks,
 * the entry point present, and the optional `gpu-agent.json` manifest parsed.
 */
import yauzl from "yauzl";
import type { Entry, ZipFile } from "yauzl";
import { zipEntryNameProblem } from "../platform/zip-entry-names.ts";
import { ApiError } from "../platform/errors.ts";

/** What finalize learns from the zip. */
export interface PackageFacts {
  entryCount: number;
  uncompressedBytes: number;
  /** Parsed gpu-agent.json, or undefined when the package has none. */
  manifest: unknown;
}

const manifestName = "gpu-agent.json";
const manifestMaxBytes = 64 * 1024;
const S_IFMT = 0o170000;
const S_IFLNK = 0o120000;

function invalid(message: string): ApiError {
  return new ApiError("PACKAGE_INVALID", message);
}

function openZip(path: string): Promise<ZipFile> {
  return new Promise((resolve, reject) => {
    yauzl.open(path, { lazyEntries: true, validateEntrySizes: true, autoClose: true }, (err, zip) =>
      err ? reject(invalid(`the package is not a readable zip file (${err.message})`)) : resolve(zip),
    );
  });
}

function readEntry(zip: ZipFile, entry: Entry, maxBytes: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    zip.openReadStream(entry, (err, stream) => {
      if (err) return reject(invalid(`cannot read ${entry.fileName}: ${err.message}`));
      const chunks: Buffer[] = [];
      let size = 0;
      stream.on("data", (c: Buffer) => {
        size += c.length;
        if (size > maxBytes) {
          stream.destroy();
          reject(invalid(`${entry.fileName} is larger than ${maxBytes} bytes`));
        } else chunks.push(c);
      });
      stream.on("end", () => resolve(Buffer.concat(chunks)));
      stream.on("error", (e) => reject(invalid(`cannot read ${entry.fileName}: ${e.message}`)));
    });
  });
}

/** Inspects the zip at `path`; throws PACKAGE_INVALID with a reason a person can act on. */
export async function inspectPackage(
  path: string,
  options: { entrypoint: string; maxEntries: number; maxUncompressedBytes: number },
): Promise<PackageFacts> {
  const zip = await openZip(path);
  if (zip.entryCount > options.maxEntries) {
    zip.close();
    throw invalid(`the package has ${zip.entryCount} entries; at most ${options.maxEntries} are allowed`);
  }
  let entryCount = 0;
  let uncompressed = 0;
  let sawEntrypoint = false;
  let manifest: unknown;
  try {
    await new Promise<void>((resolve, reject) => {
      zip.on("error", (e: Error) => reject(invalid(`the package is refused: ${e.message}`)));
      zip.on("end", () => resolve());
      zip.on("entry", (entry: Entry) => {
        void (async () => {
          const name = entry.fileName;
          const problem = zipEntryNameProblem(name);
          if (problem !== undefined) throw invalid(`zip entry ${JSON.stringify(name)} is refused: ${problem}`);
          const mode = (entry.externalFileAttributes >>> 16) & S_IFMT;
          if (mode === S_IFLNK) throw invalid(`zip entry ${JSON.stringify(name)} is a symbolic link; links are not allowed`);
          entryCount += 1;
          uncompressed += entry.uncompressedSize;
          if (uncompressed > options.maxUncompressedBytes) {
            throw invalid(`the package unpacks to more than ${options.maxUncompressedBytes} bytes`);
          }
          if (name === options.entrypoint) sawEntrypoint = true;
          if (name === manifestName) {
            const text = (await readEntry(zip, entry, manifestMaxBytes)).toString("utf8");
            try {
              manifest = JSON.parse(text);
            } catch (e) {
              throw invalid(`${manifestName} is not valid JSON: ${(e as Error).message}`);
            }
          }
          zip.readEntry();
        })().catch(reject);
      });
      zip.readEntry();
    });
  } finally {
    zip.close();
  }
  if (!sawEntrypoint) throw invalid(`the entry point ${JSON.stringify(options.entrypoint)} is not in the package`);
  return { entryCount, uncompressedBytes: uncompressed, manifest };
}
