/**
 * `gpuctl datasets …`: upload a file as a dataset, list, get. The SDK hashes the file while
 * streaming it, declares its size and sha256, PUTs it to the signed URL and finalizes it.
 */
import path from "node:path";
import type { Dataset } from "../sdk/index.ts";
import { DatasetSchema, ListDatasetsResponseSchema } from "../gen/gpuagent/customer/v1/customer_pb.ts";
import type { CliContext, JsonOption } from "./context.ts";
import { usageError } from "./errors.ts";
import { statFile } from "./files.ts";
import type { Table } from "./output.ts";
import { formatBytes, formatTime, printFields, printListPage, printMessage, withTransferBar } from "./output.ts";

/** Options of `datasets upload`. */
export interface DatasetUploadOptions extends JsonOption {
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
  const dataset = await withTransferBar(ctx.io, !opts.json, base, (onProgress) =>
    client.datasets.upload(opts.file, { name, format, onProgress }),
  );
  printDataset(ctx, dataset, opts.json);
  return 0;
}

/** Options of the list commands. */
export interface ListOptions extends JsonOption {
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
  printListPage(ctx.io, opts.json, ListDatasetsResponseSchema, await ctx.customer().datasets.list(pageOf(opts)), datasetTable);
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
