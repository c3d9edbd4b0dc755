/**
 * `gpuctl datasets …`: upload a file as a dataset, list, get.
 */
import path from "node:path";
import type { CliContext, JsonOption } from "./context.ts";
import { hashFile } from "./files.ts";
import { formatBytes, printFields, printJson, printTable } from "./output.ts";
import type { Dataset, ListResponse } from "./types.ts";
import { uploadThenFinalize } from "./upload.ts";

/** Options of `datasets upload`. */
export interface DatasetUploadOptions extends JsonOption {
  file: string;
  name?: string | undefined;
  format?: string | undefined;
}

/**
 * Hashes the file (streaming), declares it, PUTs it with a progress bar and
 * finalizes it. The format defaults to the file extension ("csv", "jsonl", …).
 */
export async function datasetsUpload(opts: DatasetUploadOptions, ctx: CliContext): Promise<number> {
  const { size, sha256 } = await hashFile(opts.file);
  const base = path.basename(opts.file);
  const name = opts.name ?? base;
  const format = opts.format ?? (path.extname(base).slice(1).toLowerCase() || "bin");
  const dataset = await uploadThenFinalize(
    {
      filePath: opts.file,
      size,
      label: base,
      json: opts.json,
      create: () => ctx.client.createDataset({ name, size_bytes: size, sha256, format }),
      finalize: (id) => ctx.client.finalizeDataset(id),
    },
    ctx,
  );
  printDataset(ctx, dataset, opts.json);
  return 0;
}

/** Options of `datasets list`. */
export interface DatasetListOptions extends JsonOption {
  limit?: number | undefined;
  cursor?: string | undefined;
}

/** One page of datasets. */
export async function datasetsList(opts: DatasetListOptions, ctx: CliContext): Promise<number> {
  const page = await ctx.client.listDatasets({ limit: opts.limit, cursor: opts.cursor });
  if (opts.json) {
    printJson(ctx.io, page);
    return 0;
  }
  printTable(
    ctx.io,
    ["id", "name", "status", "format", "size", "created"],
    (page.data ?? []).map((d) => [d.id, d.name ?? "", d.status ?? "", d.format ?? "", formatBytes(d.size_bytes), d.created_at ?? ""]),
    "no datasets",
  );
  printNextCursor(ctx, page);
  return 0;
}

/** Options of `datasets get`. */
export interface DatasetGetOptions extends JsonOption {
  id: string;
}

/** One dataset. */
export async function datasetsGet(opts: DatasetGetOptions, ctx: CliContext): Promise<number> {
  printDataset(ctx, await ctx.client.getDataset(opts.id), opts.json);
  return 0;
}

function printDataset(ctx: CliContext, d: Dataset, json: boolean): void {
  if (json) {
    printJson(ctx.io, d);
    return;
  }
  printFields(ctx.io, [
    ["id", d.id],
    ["name", d.name],
    ["status", d.status],
    ["format", d.format],
    ["size", d.size_bytes === undefined ? undefined : `${formatBytes(d.size_bytes)} (${d.size_bytes} bytes)`],
    ["sha256", d.sha256],
    ["created_at", d.created_at],
    ["finalized_at", d.finalized_at],
  ]);
}

/** Tells a human how to get the next page; scripts read `page.next_cursor` from --json. */
export function printNextCursor(ctx: CliContext, page: ListResponse<unknown>): void {
  if (page.page?.has_more === true && page.page.next_cursor) {
    ctx.io.stderr(`more results: --cursor ${page.page.next_cursor}\n`);
  }
}
