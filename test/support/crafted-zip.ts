/**
 * Zips written byte by byte, so tests can build the ones no honest tool writes: duplicate names, sizes
 * that lie, a local header that disagrees with the directory, special files, entries that share bytes.
 * Honest by default: each field below overrides one thing (PKWARE APPNOTE 4.3.7, 4.3.12, 4.3.16).
 */
import { crc32, deflateRawSync } from "node:zlib";

/** One entry; everything but `name` has an honest default. */
export interface CraftedEntry {
  name: string;
  /** The uncompressed content (default empty). */
  content?: string | Buffer;
  /** Deflate the content (method 8) instead of storing it (method 0). */
  deflate?: boolean;
  /** The compression method written, whatever was done to the content. */
  method?: number;
  /** Unix mode with its type bits, in the external attributes (default 0o100644, or 0o040755 for a name ending in /). */
  mode?: number;
  /** General purpose flags (bit 0: encrypted, bit 3: sizes in a data descriptor). */
  flags?: number;
  /** The directory's claims, when they lie. */
  declaredSize?: number;
  declaredCrc?: number;
  /** The local header's claims, when they differ from the directory's. */
  localName?: string;
  localSize?: number;
  /** The entry's local record sits at the start of entry `insideOf`'s data instead of on its own. */
  insideOf?: number;
}

function localRecord(name: Buffer, flags: number, method: number, crc: number, compressedSize: number, size: number, data: Buffer): Buffer {
  const header = Buffer.alloc(30);
  header.writeUInt32LE(0x04034b50, 0);
  header.writeUInt16LE(20, 4);
  header.writeUInt16LE(flags, 6);
  header.writeUInt16LE(method, 8);
  header.writeUInt16LE(0, 10);
  header.writeUInt16LE(0x21, 12); // 1980-01-01
  header.writeUInt32LE(crc, 14);
  header.writeUInt32LE(compressedSize, 18);
  header.writeUInt32LE(size, 22);
  header.writeUInt16LE(name.length, 26);
  header.writeUInt16LE(0, 28);
  return Buffer.concat([header, name, data]);
}

interface Laid {
  entry: CraftedEntry;
  name: Buffer;
  method: number;
  flags: number;
  crc: number;
  size: number;
  data: Buffer;
  record: Buffer;
  offset: number;
}

/** The zip of `entries`, in order, with a central directory that lists each once. */
export function craftZip(entries: readonly CraftedEntry[]): Buffer {
  const laid: Laid[] = entries.map((entry) => {
    const content = Buffer.from(entry.content ?? "");
    const data = entry.deflate === true ? deflateRawSync(content) : content;
    const name = Buffer.from(entry.name);
    const method = entry.method ?? (entry.deflate === true ? 8 : 0);
    const flags = entry.flags ?? 0x800;
    const crc = entry.declaredCrc ?? crc32(content);
    const size = entry.declaredSize ?? content.length;
    return { entry, name, method, flags, crc, size, data, record: Buffer.alloc(0), offset: 0 };
  });
  // Records nested inside another entry's data are built first, so the outer entry's bytes hold them.
  for (const item of laid) {
    const e = item.entry;
    if (e.insideOf === undefined) continue;
    const record = localRecord(Buffer.from(e.localName ?? e.name), item.flags, item.method, item.crc, item.data.length, e.localSize ?? item.size, item.data);
    const outer = laid[e.insideOf]!;
    outer.data = Buffer.concat([record, outer.data]);
    outer.crc = outer.entry.declaredCrc ?? crc32(outer.data);
    outer.size = outer.entry.declaredSize ?? outer.data.length;
  }
  const parts: Buffer[] = [];
  let at = 0;
  for (const item of laid) {
    const e = item.entry;
    if (e.insideOf !== undefined) continue;
    item.offset = at;
    item.record = localRecord(Buffer.from(e.localName ?? e.name), item.flags, item.method, item.crc, item.data.length, e.localSize ?? item.size, item.data);
    parts.push(item.record);
    at += item.record.length;
  }
  for (const item of laid) {
    if (item.entry.insideOf !== undefined) item.offset = laid[item.entry.insideOf]!.offset + 30 + laid[item.entry.insideOf]!.name.length;
  }
  const directoryStart = at;
  for (const item of laid) {
    const central = Buffer.alloc(46);
    central.writeUInt32LE(0x02014b50, 0);
    central.writeUInt16LE((3 << 8) | 20, 4); // made on Unix, so the mode is read
    central.writeUInt16LE(20, 6);
    central.writeUInt16LE(item.flags, 8);
    central.writeUInt16LE(item.method, 10);
    central.writeUInt16LE(0, 12);
    central.writeUInt16LE(0x21, 14);
    central.writeUInt32LE(item.crc, 16);
    central.writeUInt32LE(item.data.length, 20);
    central.writeUInt32LE(item.size, 24);
    central.writeUInt16LE(item.name.length, 28);
    central.writeUInt32LE(((item.entry.mode ?? (item.entry.name.endsWith("/") ? 0o040755 : 0o100644)) << 16) >>> 0, 38);
    central.writeUInt32LE(item.offset, 42);
    parts.push(central, item.name);
    at += central.length + item.name.length;
  }
  const end = Buffer.alloc(22);
  end.writeUInt32LE(0x06054b50, 0);
  end.writeUInt16LE(laid.length, 8);
  end.writeUInt16LE(laid.length, 10);
  end.writeUInt32LE(at - directoryStart, 12);
  end.writeUInt32LE(directoryStart, 16);
  parts.push(end);
  return Buffer.concat(parts);
}
