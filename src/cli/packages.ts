/**
 * `gpuctl packages …`: upload a training package (a .zip, or a directory that
 * is zipped first), list, get.
 */
import { mkdtemp, rm } from "node:fs/promises";
import path from "node:path";
import { CliError } from "./client.ts";
import type { CliContext, JsonOption } from "./context.ts";
import { printNextCursor } from "./datasets.ts";
import { hashFile, listPackageFiles, statFile, zipDirectory } from "./files.ts";
import { formatBytes, printFields, printJson, printTable } from "./output.ts";
import type { TrainingPackage } from "./types.ts";
import { uploadThenFinalize } from "./upload.ts";

/** The entry point the server assumes when none is given. */
export const DEFAULT_ENTRYPOINT = "train.py";

/** Options of `packages upload`. */
export interface PackageUploadOptions extends JsonOption {
  /** A .zip file or a directory. */
  path: string;
  name?: string | undefined;
  entrypoint?: string | undefined;
}

/**
 * Uploads a package. A directory is zipped into a temporary file first (and
 * checked for the entry point, so a typo fails before any bytes move); the
 * temporary zip is removed whatever happens.
 */
export async function packagesUpload(opts: PackageUploadOptions, ctx: CliContext): Promise<number> {
  const info = await statFile(opts.path);
  const entrypoint = opts.entrypoint ?? DEFAULT_ENTRYPOINT;
  const base = path.basename(path.resolve(opts.path));
  let tmp: string | undefined;
  try {
    let zipPath = opts.path;
    if (info.isDirectory()) {
      const files = await listPackageFiles(opts.path);
      if (!files.includes(entrypoint)) {
        throw new CliError("ENTRYPOINT_NOT_FOUND", `${opts.path} has no ${entrypoint} (set --entrypoint)`, { exitCode: 2 });
      }
      tmp = await mkdtemp(path.join(ctx.tmpDir, "gpuctl-package-"));
      zipPath = path.join(tmp, `${base}.zip`);
      await zipDirectory(opts.path, zipPath);
    } else if (!info.isFile()) {
      throw new CliError("BAD_PACKAGE", `${opts.path} is neither a .zip file nor a directory`, { exitCode: 2 });
    }
    const { size, sha256 } = await hashFile(zipPath);
    const name = opts.name ?? base.replace(/\.zip$/i, "");
    const pkg = await uploadThenFinalize(
      {
        filePath: zipPath,
        size,
        label: path.basename(zipPath),
        json: opts.json,
        create: () => ctx.client.createPackage({ name, size_bytes: size, sha256, entrypoint }),
        finalize: (id) => ctx.client.finalizePackage(id),
      },
      ctx,
    );
    printPackage(ctx, pkg, opts.json);
    return 0;
  } finally {
    if (tmp !== undefined) await rm(tmp, { recursive: true, force: true });
  }
}

/** Options of `packages list`. */
export interface PackageListOptions extends JsonOption {
  limit?: number | undefined;
  cursor?: string | undefined;
}

/** One page of packages. */
export async function packagesList(opts: PackageListOptions, ctx: CliContext): Promise<number> {
  const page = await ctx.client.listPackages({ limit: opts.limit, cursor: opts.cursor });
  if (opts.json) {
    printJson(ctx.io, page);
    return 0;
  }
  printTable(
    ctx.io,
    ["id", "name", "status", "entrypoint", "size", "created"],
    (page.data ?? []).map((p) => [
      p.id,
      p.name ?? "",
      p.status ?? "",
      p.entrypoint ?? "",
      formatBytes(p.size_bytes),
      p.created_at ?? "",
    ]),
    "no training packages",
  );
  printNextCursor(ctx, page);
  return 0;
}

/** Options of `packages get`. */
export interface PackageGetOptions extends JsonOption {
  id: string;
}

/** One package. */
export async function packagesGet(opts: PackageGetOptions, ctx: CliContext): Promise<number> {
  printPackage(ctx, await ctx.client.getPackage(opts.id), opts.json);
  return 0;
}

function printPackage(ctx: CliContext, p: TrainingPackage, json: boolean): void {
  if (json) {
    printJson(ctx.io, p);
    return;
  }
  printFields(ctx.io, [
    ["id", p.id],
    ["name", p.name],
    ["status", p.status],
    ["entrypoint", p.entrypoint],
    ["size", p.size_bytes === undefined ? undefined : `${formatBytes(p.size_bytes)} (${p.size_bytes} bytes)`],
    ["sha256", p.sha256],
    ["entries", p.entry_count],
    ["stages", p.stages?.join(" → ")],
    ["created_at", p.created_at],
    ["finalized_at", p.finalized_at],
  ]);
}
