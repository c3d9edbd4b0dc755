/**
 * `gpuctl packages …`: upload a training package (a .zip, or a directory that is zipped first),
 * list, get, delete.
 */
import { mkdtemp, rm } from "node:fs/promises";
import path from "node:path";
import type { TrainingPackage } from "../sdk/index.ts";
import { ListTrainingPackagesResponseSchema, TrainingPackageSchema } from "../gen/gpuagent/customer/v1/customer_pb.ts";
import type { CliContext, JsonOption } from "./context.ts";
import type { DeleteOptions, IdOptions, ListOptions } from "./datasets.ts";
import { deleteEach, pageOf } from "./datasets.ts";
import { usageError } from "./errors.ts";
import { listPackageFiles, statFile, zipDirectory } from "./files.ts";
import type { QuietOption, Table } from "./output.ts";
import { formatBytes, formatTime, printFields, printListPage, printMessage, withTransferBar } from "./output.ts";

/** The entry point the server assumes when none is given. */
export const DEFAULT_ENTRYPOINT = "train.py";

/** Options of `packages upload`. */
export interface PackageUploadOptions extends JsonOption, QuietOption {
  /** A .zip file or a directory. */
  path: string;
  name?: string | undefined;
  entrypoint?: string | undefined;
}

/**
 * Uploads a package. A directory is zipped into a temporary file first (and checked for the entry
 * point, so a typo fails before any bytes move); the temporary zip is removed whatever happens.
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
      if (!files.includes(entrypoint)) throw usageError("ENTRYPOINT_NOT_FOUND", `${opts.path} has no ${entrypoint} (set --entrypoint)`);
      tmp = await mkdtemp(path.join(ctx.tmpDir, "gpuctl-package-"));
      zipPath = path.join(tmp, `${base}.zip`);
      await zipDirectory(opts.path, zipPath);
    } else if (!info.isFile()) {
      throw usageError("BAD_PACKAGE", `${opts.path} is neither a .zip file nor a directory`);
    }
    const client = ctx.customer();
    const name = opts.name ?? base.replace(/\.zip$/i, "");
    const pkg = await withTransferBar(ctx.io, !opts.json && opts.quiet !== true, path.basename(zipPath), (onProgress) =>
      client.packages.upload(zipPath, { name, entrypoint, onProgress }),
    );
    if (opts.quiet === true) ctx.io.stdout(`${pkg.id}\n`);
    else printPackage(ctx, pkg, opts.json);
    return 0;
  } finally {
    if (tmp !== undefined) await rm(tmp, { recursive: true, force: true });
  }
}

const packageTable: Table<TrainingPackage> = {
  columns: ["id", "name", "status", "entrypoint", "size", "created"],
  row: (p) => [p.id, p.name, p.status, p.entrypoint, formatBytes(p.sizeBytes), formatTime(p.createdAt)],
  empty: "no training packages",
};

/** One page of packages. */
export async function packagesList(opts: ListOptions, ctx: CliContext): Promise<number> {
  printListPage(ctx.io, opts, ListTrainingPackagesResponseSchema, await ctx.customer().packages.list(pageOf(opts)), packageTable);
  return 0;
}

/** One package. */
export async function packagesGet(opts: IdOptions, ctx: CliContext): Promise<number> {
  printPackage(ctx, await ctx.customer().packages.get(opts.id), opts.json);
  return 0;
}

/** Deletes training packages (their bytes go too); one used by an active job is refused (`STATE_CONFLICT`). */
export async function packagesDelete(opts: DeleteOptions, ctx: CliContext): Promise<number> {
  const client = ctx.customer();
  return deleteEach(opts, ctx, "training package", (id) => client.packages.delete(id));
}

function printPackage(ctx: CliContext, p: TrainingPackage, json: boolean): void {
  if (json) {
    printMessage(ctx.io, TrainingPackageSchema, p);
    return;
  }
  printFields(ctx.io, [
    ["id", p.id],
    ["name", p.name],
    ["status", p.status],
    ["entrypoint", p.entrypoint],
    ["size", `${formatBytes(p.sizeBytes)} (${p.sizeBytes} bytes)`],
    ["sha256", p.sha256],
    ["entries", p.entryCount],
    ["stages", p.stages.join(" → ")],
    ["created_at", formatTime(p.createdAt)],
    ["finalized_at", formatTime(p.finalizedAt)],
  ]);
}
