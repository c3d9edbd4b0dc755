/**
 * `gpuctl artifacts …`: list a job's artifacts and download them. The SDK mints a signed URL per
 * file, streams it beside its destination and renames it into place only once its sha256 matches
 * the listing, so a corrupt download never looks complete.
 */
import { mkdir } from "node:fs/promises";
import path from "node:path";
import type { Artifact } from "../sdk/index.ts";
import { listAll } from "../sdk/index.ts";
import { ArtifactSchema } from "../gen/gpuagent/customer/v1/customer_pb.ts";
import type { CliContext, JsonOption } from "./context.ts";
import { CliError } from "./errors.ts";
import type { QuietOption } from "./output.ts";
import { formatBytes, printAll, printJson, printTable, withTransferBar } from "./output.ts";

/** Options of `artifacts list`. */
export interface ArtifactListOptions extends JsonOption, QuietOption {
  jobId: string;
}

/** Every artifact of a job (all pages). */
export async function artifactsList(opts: ArtifactListOptions, ctx: CliContext): Promise<number> {
  const client = ctx.customer();
  const artifacts = await listAll((p) => client.artifacts.list(opts.jobId, p));
  printAll(ctx.io, opts, ArtifactSchema, artifacts, {
    columns: ["id", "name", "kind", "size", "sha256"],
    row: (a) => [a.id, a.name, a.kind, formatBytes(a.sizeBytes), a.sha256],
    empty: "no artifacts",
  });
  return 0;
}

/** Options of `artifacts download`. */
export interface ArtifactDownloadOptions extends JsonOption {
  jobId: string;
  artifact?: string | undefined;
  out?: string | undefined;
}

/** One file written by `artifacts download`. */
export interface DownloadedFile {
  artifact_id: string;
  name: string;
  path: string;
  size_bytes: number;
  sha256: string;
}

/**
 * Where an artifact lands under `outDir`. Artifact names come from the server (ultimately from a
 * customer's training code), so anything absolute or climbing out with `..` is reduced to its
 * base name.
 */
export function artifactPath(outDir: string, artifact: Pick<Artifact, "id" | "name">): string {
  const raw = artifact.name.replace(/\\/g, "/");
  const parts = raw.split("/").filter((p) => p !== "" && p !== ".");
  const safe = parts.length > 0 && !parts.includes("..") && !raw.startsWith("/") ? parts : [path.posix.basename(raw)];
  const rel = safe.join("/");
  const name = rel === "" || rel === ".." ? artifact.id : rel;
  return path.join(outDir, ...name.split("/"));
}

/**
 * Downloads one or all artifacts of a job into `--out` (default `./artifacts-<job>`), each
 * verified against the sha256 of the listing; a mismatch (or a listing without a sha256) stops the
 * command with CHECKSUM_MISMATCH and leaves nothing at that file's destination.
 */
export async function artifactsDownload(opts: ArtifactDownloadOptions, ctx: CliContext): Promise<number> {
  const client = ctx.customer();
  const outDir = opts.out ?? `artifacts-${opts.jobId}`;
  let artifacts = await listAll((p) => client.artifacts.list(opts.jobId, p));
  if (opts.artifact !== undefined) {
    artifacts = artifacts.filter((a) => a.id === opts.artifact);
    if (artifacts.length === 0) throw new CliError("ARTIFACT_NOT_FOUND", `job ${opts.jobId} has no artifact ${opts.artifact}`);
  }
  const files: DownloadedFile[] = [];
  const used = new Set<string>();
  for (const a of artifacts) {
    let dest = artifactPath(outDir, a);
    // Two units may both emit e.g. metrics.json; the second keeps its id as a prefix.
    if (used.has(dest)) dest = path.join(path.dirname(dest), `${a.id}-${path.basename(dest)}`);
    used.add(dest);
    await mkdir(path.dirname(dest), { recursive: true });
    const got = await withTransferBar(ctx.io, !opts.json && a.sizeBytes > 0n, path.basename(dest), (onProgress) =>
      client.artifacts.download(opts.jobId, a.id, dest, { expectedSha256: a.sha256, onProgress }),
    );
    files.push({ artifact_id: a.id, name: a.name, path: dest, size_bytes: got.bytes, sha256: got.sha256 });
  }
  if (opts.json) {
    printJson(ctx.io, { job_id: opts.jobId, out_dir: outDir, files });
  } else {
    printTable(
      ctx.io,
      ["path", "size", "sha256"],
      files.map((f) => [f.path, formatBytes(f.size_bytes), `${f.sha256} ok`]),
      "no artifacts",
    );
  }
  return 0;
}
