/**
 * Local file work before an upload: checking a path and zipping a package directory
 * deterministically. Hashing and sending the bytes is the SDK's job. Nothing here reads a whole
 * file into memory.
 */
import type { Stats } from "node:fs";
import { createWriteStream } from "node:fs";
import { readdir, stat } from "node:fs/promises";
import path from "node:path";
import { pipeline } from "node:stream/promises";
import yazl from "yazl";
import { usageError } from "./errors.ts";

/** stat that turns "no such file" into a usage error the user can act on. */
export async function statFile(filePath: string): Promise<Stats> {
  try {
    return await stat(filePath);
  } catch (err) {
    throw usageError("FILE_NOT_FOUND", `cannot read ${filePath}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`, err);
  }
}

/** Directory names never packed: Python bytecode caches are machine-specific noise. */
const SKIPPED_DIRS = new Set(["__pycache__"]);

/** File suffixes never packed. */
const SKIPPED_SUFFIXES = [".pyc"];

/** Byte-order comparison, so the zip order does not depend on the locale. */
function byteOrder(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/**
 * Relative, `/`-separated paths of the regular files under `root`, sorted.
 * Symlinks are skipped rather than followed: following one could pack files
 * from outside the directory (or loop).
 */
export async function listPackageFiles(root: string): Promise<string[]> {
  const out: string[] = [];
  async function walk(rel: string): Promise<void> {
    const entries = await readdir(path.join(root, rel), { withFileTypes: true });
    entries.sort((a, b) => byteOrder(a.name, b.name));
    for (const e of entries) {
      const child = rel === "" ? e.name : `${rel}/${e.name}`;
      if (e.isSymbolicLink()) continue;
      if (e.isDirectory()) {
        if (!SKIPPED_DIRS.has(e.name)) await walk(child);
      } else if (e.isFile() && !SKIPPED_SUFFIXES.some((s) => e.name.endsWith(s))) {
        out.push(child);
      }
    }
  }
  await walk("");
  return out;
}

/** Fixed entry time: the same tree gives the same bytes (and sha256) on every run. */
const ZIP_MTIME = new Date(Date.UTC(2000, 0, 1));

/**
 * Zips `root` into `destFile` deterministically: sorted entries, relative
 * paths, a fixed mtime and mode. Returns the entry names.
 */
export async function zipDirectory(root: string, destFile: string): Promise<string[]> {
  const files = await listPackageFiles(root);
  if (files.length === 0) throw usageError("PACKAGE_EMPTY", `${root} holds no files to package`);
  const zip = new yazl.ZipFile();
  for (const rel of files) {
    zip.addFile(path.join(root, ...rel.split("/")), rel, { mtime: ZIP_MTIME, mode: 0o100644, compress: true });
  }
  zip.end();
  await pipeline(zip.outputStream, createWriteStream(destFile));
  return files;
}
