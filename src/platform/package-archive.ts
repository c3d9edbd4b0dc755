/**
 * The one set of rules for a training package's zip, applied on both sides of the wire with this one
 * reader: by the control plane when a package is finalized (src/blobs/package-inspect.ts) and by the
 * node agent when it unpacks one onto its own disk (src/node-agent/unzip.ts). So a package that
 * finalizes `ready` is one every agent extracts, and a bad one is refused at finalize with its reason,
 * not on a node after three attempts.
 *
 * Opening checks the whole directory before a byte is inflated (so the agent writes nothing from a zip
 * it refuses): entry count, names, kinds (regular files and directories only), duplicates, file/directory
 * clashes, declared sizes against the limit, and each local header against its central-directory record
 * (name, method, sizes, CRC) with no two entries' data overlapping. Reading an entry then checks what it
 * inflates to: exactly the declared length, with the declared CRC-32.
 *
 * A fault of the zip is a PackageArchiveError whose message names entries of the zip and never a path
 * of the machine reading it: the message reaches the customer. A fault of the machine (the file cannot
 * be read) is another error, also without the path; the path stays in its `cause`, for logs.
 */
import { open } from "node:fs/promises";
import type { FileHandle } from "node:fs/promises";
import { Readable, Transform } from "node:stream";
import { crc32, inflateRawSync } from "node:zlib";
import yauzl from "yauzl";
import type { Entry, ZipFile } from "yauzl";

/** Bounds on a package, the same at finalize and on every agent. */
export interface PackageArchiveLimits {
  /** Number of entries (files and directories). */
  maxEntries: number;
  /** Sum of the files' uncompressed sizes. */
  maxUncompressedBytes: number;
}

/** The bounds every agent applies; the control plane may only tighten them. */
export const packageArchiveLimits: PackageArchiveLimits = { maxEntries: 10_000, maxUncompressedBytes: 2 * 1024 ** 3 };

/** Longest entry name (bytes of UTF-8) and path segment: what every agent's file system takes under its work directory. */
export const packageNameLimits = { maxNameBytes: 1024, maxSegmentBytes: 255 } as const;

/** The zip breaks a rule; the message says which entry and why, in words a customer can act on. */
export class PackageArchiveError extends Error {
  override name = "PackageArchiveError";
}

/** One checked entry of a package. */
export interface PackageEntry {
  /** The name as the zip spells it (backslashes read as `/`), for messages. */
  readonly name: string;
  /** Where it lands inside the package: `/`-separated, without `.` segments or a trailing slash. */
  readonly path: string;
  readonly kind: "file" | "directory";
  /** Uncompressed bytes (0 for a directory). */
  readonly size: number;
}

/** An opened, checked package. Close it when done. */
export interface PackageArchive {
  /** Every entry, in the zip's order. */
  readonly entries: readonly PackageEntry[];
  /** Sum of the files' sizes. */
  readonly uncompressedBytes: number;
  /**
   * A file entry's content, verified as it streams: more bytes than declared, fewer, or another
   * CRC-32 fail the stream with a PackageArchiveError. One entry at a time.
   */
  read(entry: PackageEntry): Promise<Readable>;
  close(): void;
}

/** yauzl 3 has these; @types/yauzl 2 does not declare them. */
interface RawEntry extends Entry {
  fileNameRaw: Buffer;
}
interface LocalFileHeader {
  fileDataStart: number;
  generalPurposeBitFlag: number;
  compressionMethod: number;
  crc32: number;
  compressedSize: number;
  uncompressedSize: number;
  fileName: Buffer;
  extraField: Buffer;
}
interface Yauzl3ZipFile extends ZipFile {
  readLocalFileHeader(entry: Entry, callback: (err: Error | null, header: LocalFileHeader) => void): void;
}
const getFileNameLowLevel = (yauzl as unknown as {
  getFileNameLowLevel(flags: number, raw: Buffer, extraFields: Entry["extraFields"], strictFileNames: boolean): string;
}).getFileNameLowLevel;

const S_IFMT = 0o170000;
const fileTypes: Readonly<Record<number, string>> = {
  0o100000: "regular file",
  0o040000: "directory",
  0o120000: "symbolic link",
  0o020000: "character device",
  0o060000: "block device",
  0o010000: "named pipe (FIFO)",
  0o140000: "socket",
};
const GP_ENCRYPTED = 0x1;
const GP_DATA_DESCRIPTOR = 0x8;
const ZIP64_MARK = 0xffffffff;

function quoted(name: string): string {
  return JSON.stringify(name.length > 200 ? `${name.slice(0, 200)}…` : name);
}

function entryFault(name: string, why: string): PackageArchiveError {
  return new PackageArchiveError(`entry ${quoted(name)} ${why}`);
}

/**
 * A failed system call (ENOENT, EIO …): the machine's fault, reported without its path. zlib's errors
 * carry a code too (Z_DATA_ERROR) but no system call: those are the zip's.
 */
function machineFault(err: unknown): Error | undefined {
  const { code, syscall } = (err ?? {}) as { code?: unknown; syscall?: unknown };
  if (typeof code !== "string" || typeof syscall !== "string") return undefined;
  return Object.assign(new Error(`reading the package failed on this machine (${code})`, { cause: err }), { code });
}

/** A fault yauzl reported while reading the zip: the zip's, unless it is a system error. */
function zipFault(err: unknown, what: string): Error {
  if (err instanceof PackageArchiveError) return err;
  return machineFault(err) ?? new PackageArchiveError(`${what}: ${err instanceof Error ? err.message : String(err)}`);
}

function withoutTrailingSlash(name: string): string {
  return name.endsWith("/") ? name.slice(0, -1) : name;
}

/** Where an acceptable name lands: without its trailing slash and its `.` segments ("" for the root). */
function packagePath(name: string): string {
  const trimmed = withoutTrailingSlash(name);
  if (!/(^|\/)\.(\/|$)/.test(trimmed)) return trimmed;
  return trimmed
    .split("/")
    .filter((s) => s !== ".")
    .join("/");
}

/** Why an entry name is refused, or undefined when acceptable. Backslashes are already `/`. */
function nameProblem(name: string): string | undefined {
  if (name === "" || name === "/") return "has an empty name";
  if (/[\u0000-\u001f\u007f]/.test(name)) return "has a control character in its name";
  if (name.startsWith("/") || /^[A-Za-z]:/.test(name)) return "is an absolute path; entries must be relative to the package root";
  if (Buffer.byteLength(name) > packageNameLimits.maxNameBytes) return `has a name longer than ${packageNameLimits.maxNameBytes} bytes`;
  // By pattern, not by splitting: 10,000 names of 500 segments would be 5 million strings.
  const trimmed = withoutTrailingSlash(name);
  if (/(^|\/)\.\.(\/|$)/.test(trimmed)) return 'has a ".." segment, which would climb out of the package';
  if (trimmed.includes("//") || trimmed.endsWith("/")) return "has an empty path segment (//)";
  // A UTF-16 unit is at most 3 bytes of UTF-8, so only segments of 86 units or more can pass the bound.
  for (const [segment] of trimmed.matchAll(/[^/]{86,}/g)) {
    if (Buffer.byteLength(segment) > packageNameLimits.maxSegmentBytes) return `has a path segment longer than ${packageNameLimits.maxSegmentBytes} bytes`;
  }
  return undefined;
}

/** The entry's kind from its name and the Unix mode in its external attributes (0 when made elsewhere). */
function entryKind(entry: Entry, name: string): "file" | "directory" {
  const type = (entry.externalFileAttributes >>> 16) & S_IFMT;
  const trailingSlash = name.endsWith("/");
  if (type !== 0 && type !== 0o100000 && type !== 0o040000) {
    throw entryFault(name, `is a ${fileTypes[type] ?? "special file"}; a package holds only regular files and directories`);
  }
  if (type === 0o040000 && !trailingSlash) throw entryFault(name, "is marked as a directory but its name does not end in /");
  if (type === 0o100000 && trailingSlash) throw entryFault(name, "is marked as a regular file but its name ends in /");
  if (trailingSlash && entry.uncompressedSize !== 0) throw entryFault(name, "is a directory with content");
  return trailingSlash ? "directory" : "file";
}

function readCentralDirectory(zip: ZipFile): Promise<RawEntry[]> {
  return new Promise((resolve, reject) => {
    const entries: RawEntry[] = [];
    zip.on("error", (err: unknown) => reject(zipFault(err, "the zip's directory is damaged or unsafe")));
    zip.on("end", () => resolve(entries));
    zip.on("entry", (entry: RawEntry) => {
      entries.push(entry);
      zip.readEntry();
    });
    zip.readEntry();
  });
}

const SLASH = 0x2f;

/** Orders paths segment by segment: "/" below every other character, so "a/b" comes before "a-b". */
function comparePaths(a: string, b: string): number {
  const common = Math.min(a.length, b.length);
  for (let i = 0; i < common; i++) {
    const x = a.charCodeAt(i);
    const y = b.charCodeAt(i);
    if (x !== y) return (x === SLASH ? -1 : x) - (y === SLASH ? -1 : y);
  }
  return a.length - b.length;
}

/**
 * Each path once, and no file where another entry needs a directory ("a" and "a/b", in either order).
 * In segment order an entry's descendants follow it directly, so neighbours tell both, however deep and
 * many the names.
 */
function checkPaths(entries: readonly PackageEntry[]): void {
  const ordered = entries.map((entry, index) => ({ entry, index }));
  ordered.sort((a, b) => comparePaths(a.entry.path, b.entry.path) || a.index - b.index);
  for (let i = 1; i < ordered.length; i++) {
    const earlier = ordered[i - 1]!.entry;
    const entry = ordered[i]!.entry;
    if (entry.path === earlier.path) {
      throw entryFault(entry.name, earlier.name === entry.name ? "appears twice in the zip" : `lands on the same path as entry ${quoted(earlier.name)}`);
    }
    const below = entry.path.charCodeAt(earlier.path.length) === SLASH && entry.path.startsWith(earlier.path);
    if (earlier.kind === "file" && below) throw entryFault(entry.name, `needs ${quoted(earlier.name)} to be a directory, but the zip has it as a file`);
  }
}

/** Names, kinds, duplicates, clashes, methods and sizes: everything the central directory alone tells. */
function checkEntries(raw: readonly RawEntry[], limits: PackageArchiveLimits): { entries: PackageEntry[]; uncompressedBytes: number } {
  const entries: PackageEntry[] = [];
  let uncompressedBytes = 0;
  for (const entry of raw) {
    const name = getFileNameLowLevel(entry.generalPurposeBitFlag, entry.fileNameRaw, entry.extraFields, false);
    const problem = nameProblem(name);
    if (problem !== undefined) throw entryFault(name, problem);
    const kind = entryKind(entry, name);
    if ((entry.generalPurposeBitFlag & GP_ENCRYPTED) !== 0) throw entryFault(name, "is encrypted; upload it unencrypted");
    if (entry.compressionMethod !== 0 && entry.compressionMethod !== 8) {
      throw entryFault(name, `uses compression method ${entry.compressionMethod}; only stored (0) and deflate (8) are read`);
    }
    if (entry.compressionMethod === 0 && entry.compressedSize !== entry.uncompressedSize) {
      throw entryFault(name, `is stored uncompressed but declares ${entry.uncompressedSize} bytes in ${entry.compressedSize}`);
    }
    const path = packagePath(name);
    if (path === "" && kind === "file") throw entryFault(name, "names the package root itself, not a file in it");
    if (kind === "file") {
      uncompressedBytes += entry.uncompressedSize;
      if (uncompressedBytes > limits.maxUncompressedBytes) {
        throw new PackageArchiveError(`the package unpacks to more than ${limits.maxUncompressedBytes} bytes, the most an agent unpacks`);
      }
    }
    entries.push({ name, path, kind, size: kind === "file" ? entry.uncompressedSize : 0 });
  }
  checkPaths(entries);
  return { entries, uncompressedBytes };
}

function readLocalHeader(zip: Yauzl3ZipFile, entry: Entry): Promise<LocalFileHeader> {
  return new Promise((resolve, reject) => zip.readLocalFileHeader(entry, (err, header) => (err ? reject(err) : resolve(header))));
}

/** The sizes a local header declares, reading its ZIP64 field where a size is 0xFFFFFFFF. */
function localSizes(header: LocalFileHeader): { compressed: number; uncompressed: number } | undefined {
  if (header.compressedSize !== ZIP64_MARK && header.uncompressedSize !== ZIP64_MARK) {
    return { compressed: header.compressedSize, uncompressed: header.uncompressedSize };
  }
  let at = 0;
  while (at + 4 <= header.extraField.length) {
    const id = header.extraField.readUInt16LE(at);
    const size = header.extraField.readUInt16LE(at + 2);
    if (id === 0x0001 && size >= 16 && at + 4 + size <= header.extraField.length) {
      return { uncompressed: Number(header.extraField.readBigUInt64LE(at + 4)), compressed: Number(header.extraField.readBigUInt64LE(at + 12)) };
    }
    at += 4 + size;
  }
  return undefined;
}

/**
 * Each local header against its central-directory record, and no two entries' bytes shared: readers
 * that trust one or the other (or that follow overlapping entries, the "zip bomb without recursion")
 * would otherwise see different packages.
 */
async function checkLocalHeaders(zip: Yauzl3ZipFile, raw: readonly RawEntry[], entries: readonly PackageEntry[]): Promise<number[]> {
  const spans: { start: number; end: number; name: string }[] = [];
  const dataStarts: number[] = [];
  for (const [i, entry] of raw.entries()) {
    const name = entries[i]!.name;
    const header = await readLocalHeader(zip, entry).catch((err: unknown) => {
      throw zipFault(err, `entry ${quoted(name)} has no valid local header`);
    });
    if (!header.fileName.equals(entry.fileNameRaw)) throw entryFault(name, "has another name in its local header than in the zip's directory");
    if (header.compressionMethod !== entry.compressionMethod) throw entryFault(name, "has another compression method in its local header than in the zip's directory");
    if ((header.generalPurposeBitFlag & GP_ENCRYPTED) !== 0) throw entryFault(name, "is encrypted in its local header; upload it unencrypted");
    if ((header.generalPurposeBitFlag & GP_DATA_DESCRIPTOR) === 0) {
      const sizes = localSizes(header);
      if (sizes === undefined || sizes.uncompressed !== entry.uncompressedSize || sizes.compressed !== entry.compressedSize) {
        throw entryFault(name, "declares other sizes in its local header than in the zip's directory");
      }
      if (header.crc32 !== entry.crc32) throw entryFault(name, "declares another CRC-32 in its local header than in the zip's directory");
    }
    spans.push({ start: entry.relativeOffsetOfLocalHeader, end: header.fileDataStart + entry.compressedSize, name });
    dataStarts.push(header.fileDataStart);
  }
  spans.sort((a, b) => a.start - b.start);
  for (let i = 1; i < spans.length; i++) {
    if (spans[i]!.start < spans[i - 1]!.end) {
      throw entryFault(spans[i]!.name, `shares its bytes with entry ${quoted(spans[i - 1]!.name)}; entries of a zip may not overlap`);
    }
  }
  return dataStarts;
}

/** Passes an entry's inflated bytes on while checking their length and CRC-32 against the directory. */
function verifiedContent(entry: PackageEntry, expectedCrc: number): Transform {
  let length = 0;
  let crc = 0;
  return new Transform({
    transform(chunk: Buffer, _encoding, done) {
      length += chunk.length;
      if (length > entry.size) return done(entryFault(entry.name, `inflates to more than the ${entry.size} bytes the zip declares`));
      crc = crc32(chunk, crc);
      done(null, chunk);
    },
    flush(done) {
      if (length !== entry.size) return done(entryFault(entry.name, `inflates to ${length} bytes, not the ${entry.size} the zip declares`));
      if (crc !== expectedCrc) return done(entryFault(entry.name, "does not match its CRC-32; the zip is damaged"));
      done();
    },
  });
}

/** Entries at most this large (compressed, and inflated) are read and inflated in one step instead of streamed. */
const wholeEntry = { maxCompressedBytes: 1024 ** 2, maxBytes: 8 * 1024 ** 2 } as const;
const blockBytes = 64 * 1024;
const streamChunkBytes = 256 * 1024;

/**
 * The zip file for yauzl through a one-block cache: yauzl reads the directory, and this module the local
 * headers, in two small reads per entry, each a system call without it (seconds for 10,000 entries).
 */
class CachedFileReader extends yauzl.RandomAccessReader {
  readonly handle: FileHandle;
  readonly size: number;
  #block = { start: 0, bytes: Buffer.alloc(0) };

  constructor(handle: FileHandle, size: number) {
    super();
    this.handle = handle;
    this.size = size;
  }

  /** Up to `length` bytes from `position` (fewer only at the end of the file). */
  async bytesAt(position: number, length: number): Promise<Buffer> {
    const { start, bytes } = this.#block;
    if (position >= start && position + length <= start + bytes.length) return bytes.subarray(position - start, position - start + length);
    const fresh = Buffer.alloc(Math.max(0, Math.min(Math.max(length, blockBytes), this.size - position)));
    const { bytesRead } = await this.handle.read(fresh, 0, fresh.length, position);
    this.#block = { start: position, bytes: fresh.subarray(0, bytesRead) };
    return this.#block.bytes.subarray(0, Math.min(length, bytesRead));
  }

  override read(buffer: Buffer, offset: number, length: number, position: number, callback: (err: Error | null, bytesRead?: number) => void): void {
    this.bytesAt(position, length).then(
      (bytes) => callback(null, bytes.copy(buffer, offset)),
      (err: unknown) => callback(err as Error),
    );
  }

  /** The bytes [start, end) as a stream. Not fs.createReadStream: destroying one closes its descriptor, which every entry shares. */
  override _readStreamForRange(start: number, end: number): Readable {
    const handle = this.handle;
    let position = start;
    return new Readable({
      highWaterMark: streamChunkBytes,
      read(size: number) {
        const length = Math.min(size, end - position);
        if (length <= 0) return void this.push(null);
        handle.read(Buffer.allocUnsafe(length), 0, length, position).then(
          ({ buffer, bytesRead }) => {
            if (bytesRead === 0) return void this.destroy(new Error("unexpected end of the zip file"));
            position += bytesRead;
            this.push(buffer.subarray(0, bytesRead));
          },
          (err: unknown) => this.destroy(err as Error),
        );
      },
    });
  }

  override close(callback: (err: Error | null) => void): void {
    this.handle.close().then(
      () => callback(null),
      (err: unknown) => callback(err as Error),
    );
  }
}

async function openZip(file: string): Promise<{ zip: Yauzl3ZipFile; reader: CachedFileReader }> {
  let reader: CachedFileReader;
  try {
    const handle = await open(file, "r");
    reader = new CachedFileReader(handle, (await handle.stat()).size);
  } catch (err) {
    throw zipFault(err, "the package cannot be opened");
  }
  return new Promise((resolve, reject) => {
    // decodeStrings and validateEntrySizes off: names and sizes are judged here (checkEntries, verifiedContent),
    // so both sides refuse a zip in the same words.
    const options = { lazyEntries: true, autoClose: false, decodeStrings: false, validateEntrySizes: false };
    yauzl.fromRandomAccessReader(reader, reader.size, options, (err, zip) => {
      if (!err) return resolve({ zip: zip as Yauzl3ZipFile, reader });
      reader.close(() => reject(zipFault(err, "the package is not a readable zip file")));
    });
  });
}

/** A small file entry read and inflated at once, then checked as verifiedContent checks a stream. */
async function wholeContent(reader: CachedFileReader, entry: PackageEntry, source: RawEntry, dataStart: number): Promise<Readable> {
  const stored = await reader.bytesAt(dataStart, source.compressedSize);
  let content = stored;
  if (source.compressionMethod === 8) {
    try {
      // One byte past the declared size is enough to tell that it inflates to more.
      content = inflateRawSync(stored, { maxOutputLength: entry.size + 1 });
    } catch (err) {
      if ((err as { code?: unknown }).code === "ERR_BUFFER_TOO_LARGE") throw entryFault(entry.name, `inflates to more than the ${entry.size} bytes the zip declares`);
      throw zipFault(err, `entry ${quoted(entry.name)} has damaged data`);
    }
  }
  if (content.length > entry.size) throw entryFault(entry.name, `inflates to more than the ${entry.size} bytes the zip declares`);
  if (content.length !== entry.size) throw entryFault(entry.name, `inflates to ${content.length} bytes, not the ${entry.size} the zip declares`);
  if (crc32(content) !== source.crc32) throw entryFault(entry.name, "does not match its CRC-32; the zip is damaged");
  return Readable.from([content], { objectMode: false });
}

/** A larger file entry, inflated as it streams and checked by verifiedContent. */
function streamedContent(zip: Yauzl3ZipFile, entry: PackageEntry, source: RawEntry): Promise<Readable> {
  return new Promise((resolve, reject) => {
    zip.openReadStream(source, (err, stream) => {
      if (err) return reject(zipFault(err, `entry ${quoted(entry.name)} cannot be read`));
      const verified = verifiedContent(entry, source.crc32);
      stream.on("error", (e: unknown) => verified.destroy(zipFault(e, `entry ${quoted(entry.name)} has damaged data`)));
      verified.on("close", () => stream.destroy());
      stream.pipe(verified);
      resolve(verified);
    });
  });
}

/**
 * Opens the zip at `file` and checks everything but the content (module comment).
 * @throws PackageArchiveError when the zip breaks a rule; another Error, without the path, when the machine cannot read it.
 */
export async function openPackageArchive(file: string, limits: PackageArchiveLimits = packageArchiveLimits): Promise<PackageArchive> {
  const { zip, reader } = await openZip(file);
  try {
    if (zip.entryCount > limits.maxEntries) {
      throw new PackageArchiveError(`the package has ${zip.entryCount} entries; at most ${limits.maxEntries} are allowed`);
    }
    const raw = await readCentralDirectory(zip);
    const { entries, uncompressedBytes } = checkEntries(raw, limits);
    const dataStarts = await checkLocalHeaders(zip, raw, entries);
    const sourceOf = new Map(entries.map((entry, i) => [entry, { raw: raw[i]!, dataStart: dataStarts[i]! }]));
    return {
      entries,
      uncompressedBytes,
      async read(entry: PackageEntry): Promise<Readable> {
        const source = sourceOf.get(entry);
        if (source === undefined || entry.kind !== "file") throw new Error(`not a file of this package: ${entry.name}`);
        const small = source.raw.compressedSize <= wholeEntry.maxCompressedBytes && entry.size <= wholeEntry.maxBytes;
        return small ? wholeContent(reader, entry, source.raw, source.dataStart) : streamedContent(zip, entry, source.raw);
      },
      close: () => zip.close(),
    };
  } catch (err) {
    zip.close();
    throw err;
  }
}
