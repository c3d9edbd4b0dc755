/**
 * `gpuctl datasets …`: upload a file as a dataset, list, get, delete. The SDK hashes the file while
 * streaming it, declares its size and sha256, PUTs it to the signed URL and finalizes it.
 */
import path from "node:path";
import type { Dataset } from "../sdk/index.ts";
import { DatasetSchema, ListDatasetsResponseSchema } from "../gen/gpuagent/customer/v1/customer_pb.ts";
import type { CliContext, JsonOption } from "./context.ts";
import { CliError, usageError } from "./errors.ts";
import { statFile } from "./files.ts";
import type { QuietOption, Table } from "./output.ts";
import { formatBytes, formatTime, printFields, printJson, printListPage, printMessage, reportError, withTransferBar } from "./output.ts";

/** Options of `datasets upload`. */
export interface DatasetUploadOptions extends JsonOption, QuietOption {
  file: string;
  name?: string | undefined;
  format?: string | undefined;
}

/**
 * Uploads a file as a dataset with a progress bar (hashing, then uploading). The name defaults to
 * the file name and the format to its extension ("csv", "jsonl", …).
 */
export async function datasetsUpload(opts: DatasetUploadOptions, ctx: CliContext): Promise<number> {
  // A missing file is the user's to fix: a usage error before any call.
  if (!(await statFile(opts.file)).isFile()) throw usageError("NOT_A_FILE", `${opts.file} is not a file`);
  const client = ctx.customer();
  const base = path.basename(opts.file);
  const name = opts.name ?? base;
  const format = opts.format ?? (path.extname(base).slice(1).toLowerCase() || "bin");
  const dataset = await withTransferBar(ctx.io, !opts.json && opts.quiet !== true, base, (onProgress) =>
    client.datasets.upload(opts.file, { name, format, onProgress }),
  );
  if (opts.quiet === true) ctx.io.stdout(`${dataset.id}\n`);
  else printDataset(ctx, dataset, opts.json);
  return 0;
}

/** Options of the list commands. */
export interface ListOptions extends JsonOption, QuietOption {
  limit?: number | undefined;
  cursor?: string | undefined;
}

/** The SDK page request of the `--limit` / `--cursor` flags. */
export function pageOf(opts: ListOptions): { limit?: number; cursor?: string } {
  return { ...(opts.limit === undefined ? {} : { limit: opts.limit }), ...(opts.cursor === undefined ? {} : { cursor: opts.cursor }) };
}

const datasetTable: Table<Dataset> = {
  columns: ["id", "name", "status", "format", "size", "created"],
  row: (d) => [d.id, d.name, d.status, d.format, formatBytes(d.sizeBytes), formatTime(d.createdAt)],
  empty: "no datasets",
};

/** One page of datasets. */
export async function datasetsList(opts: ListOptions, ctx: CliContext): Promise<number> {
  printListPage(ctx.io, opts, ListDatasetsResponseSchema, await ctx.customer().datasets.list(pageOf(opts)), datasetTable);
  return 0;
}

/** Options of the commands that take one id. */
export interface IdOptions extends JsonOption {
  id: string;
}

/** One dataset. */
export async function datasetsGet(opts: IdOptions, ctx: CliContext): Promise<number> {
  printDataset(ctx, await ctx.customer().datasets.get(opts.id), opts.json);
  return 0;
}

/** Options of the delete commands: one or more ids. */
export interface DeleteOptions extends JsonOption {
  ids: string[];
}

/**
 * Deletes each of `ids` through `remove`, going on past a failure so one bad id does not keep the
 * others; exit 1 when any was not deleted (reported on stderr, the server's code with it).
 */
export async function deleteEach(
  opts: DeleteOptions,
  ctx: CliContext,
  what: string,
  remove: (id: string) => Promise<{ id: string; deleted: boolean }>,
): Promise<number> {
  const results: { id: string; deleted: boolean }[] = [];
  let failed = false;
  for (const id of opts.ids) {
    try {
      const res = await remove(id);
      results.push({ id: res.id || id, deleted: res.deleted });
      if (!res.deleted) {
        failed = true;
        reportError(ctx.io, new CliError("NOT_DELETED", `${what} ${id} was not deleted`), opts.json);
      } else if (!opts.json) {
        ctx.io.stdout(`deleted ${what} ${res.id || id}\n`);
      }
    } catch (error) {
      failed = true;
      results.push({ id, deleted: false });
      reportError(ctx.io, error, opts.json);
    }
  }
  if (opts.json) printJson(ctx.io, { data: results });
  return failed ? 1 : 0;
}

/** Deletes datasets (their bytes go too); one used by an active job is refused (`STATE_CONFLICT`). */
export async function datasetsDelete(opts: DeleteOptions, ctx: CliContext): Promise<number> {
  const client = ctx.customer();
  return deleteEach(opts, ctx, "dataset", (id) => client.datasets.delete(id));
}

function printDataset(ctx: CliContext, d: Dataset, json: boolean): void {
  if (json) {
    printMessage(ctx.io, DatasetSchema, d);
    return;
  }
  printFields(ctx.io, [
    ["id", d.id],
    ["name", d.name],
    ["status", d.status],
    ["format", d.format],
    ["size", `${formatBytes(d.sizeBytes)} (${d.sizeBytes} bytes)`],
    ["sha256", d.sha256],
    ["created_at", formatTime(d.createdAt)],
    ["finalized_at", formatTime(d.finalizedAt)],
  ]);
}
