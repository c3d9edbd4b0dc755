/**
 * Checks an uploaded training package before it is accepted, with the reader every agent unpacks it
 * with (src/platform/package-archive.ts): a package that passes here is one every agent extracts, and
 * one that would fail there is refused now, with its reason. Every file is inflated once, as the agent
 * will, so damaged data is found here too. Besides the archive rules: the entry point present, the
 * optional `gpu-agent.json` parsed (the planner judges it), and the optional `requirements.txt`
 * naming distributions only (src/platform/package-requirements.ts).
 */
import type { Readable } from "node:stream";
import { finished } from "node:stream/promises";
import { ApiError } from "../platform/errors.ts";
import type { PackageArchive } from "../platform/package-archive.ts";
import { PackageArchiveError, openPackageArchive } from "../platform/package-archive.ts";
import { requirementsFileName, requirementsMaxBytes, requirementsProblem } from "../platform/package-requirements.ts";

/** What finalize learns from the zip. */
export interface PackageFacts {
  entryCount: number;
  uncompressedBytes: number;
  /** Parsed gpu-agent.json, or undefined when the package has none. */
  manifest: unknown;
}

const manifestName = "gpu-agent.json";
const manifestMaxBytes = 64 * 1024;

function invalid(message: string): ApiError {
  return new ApiError("PACKAGE_INVALID", message);
}

/** The zip's faults become PACKAGE_INVALID; anything else (the blob store's disk) stays an internal error. */
function refusal(err: unknown): unknown {
  return err instanceof PackageArchiveError ? invalid(`the package is refused: ${err.message}`) : err;
}

/** Reads a small file whole as UTF-8; its size was checked against the directory, which the stream enforces. */
async function text(name: string, content: Readable): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of content) chunks.push(chunk as Buffer);
  try {
    return new TextDecoder("utf-8", { fatal: true }).decode(Buffer.concat(chunks));
  } catch {
    throw invalid(`${name} is not UTF-8 text`);
  }
}

/** Inflates a file to nowhere, so its length and CRC-32 are checked as the agent will check them. */
function verify(content: Readable): Promise<void> {
  return finished(content.resume());
}

/** Inspects the zip at `path`; throws PACKAGE_INVALID with a reason a person can act on. */
export async function inspectPackage(
  path: string,
  options: { entrypoint: string; maxEntries: number; maxUncompressedBytes: number },
): Promise<PackageFacts> {
  let archive: PackageArchive;
  try {
    archive = await openPackageArchive(path, { maxEntries: options.maxEntries, maxUncompressedBytes: options.maxUncompressedBytes });
  } catch (err) {
    throw refusal(err);
  }
  let manifestText: string | undefined;
  let requirementsText: string | undefined;
  try {
    for (const entry of archive.entries) {
      if (entry.kind !== "file") continue;
      if (entry.path === manifestName || entry.path === requirementsFileName) {
        const limit = entry.path === manifestName ? manifestMaxBytes : requirementsMaxBytes;
        if (entry.size > limit) throw invalid(`${entry.path} is larger than ${limit} bytes`);
        const content = await text(entry.path, await archive.read(entry));
        if (entry.path === manifestName) manifestText = content;
        else requirementsText = content;
      } else {
        await verify(await archive.read(entry));
      }
    }
  } catch (err) {
    throw refusal(err);
  } finally {
    archive.close();
  }
  const entrypoint = options.entrypoint.split("/").filter((s) => s !== ".").join("/");
  if (!archive.entries.some((e) => e.kind === "file" && e.path === entrypoint)) {
    throw invalid(`the entry point ${JSON.stringify(options.entrypoint)} is not in the package`);
  }
  if (requirementsText !== undefined) {
    const problem = requirementsProblem(requirementsText);
    if (problem !== undefined) throw invalid(problem);
  }
  let manifest: unknown;
  if (manifestText !== undefined) {
    try {
      manifest = JSON.parse(manifestText);
    } catch (e) {
      throw invalid(`${manifestName} is not valid JSON: ${(e as Error).message}`);
    }
  }
  return { entryCount: archive.entries.length, uncompressedBytes: archive.uncompressedBytes, manifest };
}
