/**
 * `gpuctl artifacts …`: list a job's artifacts and download them through
 * freshly minted signed URLs, verifying each file's sha256 against the listing.
 */
import { mkdir, rename, rm } from "node:fs/promises";
import path from "node:path";
import { CliError, listAll } from "./client.ts";
import type { CliContext, JsonOption } from "./context.ts";
import { createProgress, formatBytes, printJson, printTable, TRANSFER_BAR_FORMAT, transferPayload } from "./output.ts";
import type { Artifact } from "./types.ts";

/** Options of `artifacts list`. */
export interface ArtifactListOptions extends JsonOption {
  jobId: string;
}

/** Every artifact of a job (all pages). */
export async function artifactsList(opts: ArtifactListOptions, ctx: CliContext): Promise<number> {
  const artifacts = await listAll((cursor) => ctx.client.listArtifacts(opts.jobId, { limit: 100, cursor }));
  if (opts.json) {
    printJson(ctx.io, { data: artifacts });
    return 0;
  }
  printTable(
    ctx.io,
    ["id", "name", "kind", "size", "sha256"],
    artifacts.map((a) => [a.id, a.name ?? "", a.kind ?? "", formatBytes(a.size_bytes), a.sha256 ?? ""]),
    "no artifacts",
  );
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
 * Where an artifact lands under `outDir`. Artifact names come from the
 * server (ultimately from a customer's training code), so anything absolute
 * or climbing out with `..` is reduced to its base name.
 */
export function artifactPath(outDir: string, artifact: Artifact): string {
  const raw = (artifact.name ?? "").replace(/\\/g, "/");
  const parts = raw.split("/").filter((p) => p !== "" && p !== ".");
  const safe = parts.length > 0 && !parts.includes("..") && !raw.startsWith("/") ? parts : [path.posix.basename(raw)];
  const rel = safe.join("/");
  const name = rel === "" || rel === ".." ? artifact.id : rel;
  return path.join(outDir, ...name.split("/"));
}

/**
 * Downloads one or all artifacts of a job into `--out` (default
 * `./artifacts-<job>`). Each file is written as `<name>.part` and renamed
 * only once its sha256 matches the listing, so a corrupt download never
 * looks complete; a mismatch stops the command with CHECKSUM_MISMATCH.
 */
export async function artifactsDownload(opts: ArtifactDownloadOptions, ctx: CliContext): Promise<number> {
  const outDir = opts.out ?? `artifacts-${opts.jobId}`;
  let artifacts = await listAll((cursor) => ctx.client.listArtifacts(opts.jobId, { limit: 100, cursor }));
  if (opts.artifact !== undefined) {
    artifacts = artifacts.filter((a) => a.id === opts.artifact);
    if (artifacts.length === 0) {
      throw new CliError("ARTIFACT_NOT_FOUND", `job ${opts.jobId} has no artifact ${opts.artifact}`);
    }
  }
  const files: DownloadedFile[] = [];
  const used = new Set<string>();
  for (const a of artifacts) {
    let dest = artifactPath(outDir, a);
    // Two units may both emit e.g. metrics.json; the second keeps its id as a prefix.
    if (used.has(dest)) dest = path.join(path.dirname(dest), `${a.id}-${path.basename(dest)}`);
    used.add(dest);
    await mkdir(path.dirname(dest), { recursive: true });
    const { download_url } = await ctx.client.createArtifactDownloadUrl(opts.jobId, a.id);
    const size = Number(a.size_bytes ?? 0);
    const label = path.basename(dest);
    const bar = createProgress(ctx.io, !opts.json && size > 0, TRANSFER_BAR_FORMAT);
    bar.start(size, transferPayload(label, 0, size));
    const part = `${dest}.part`;
    let got: { bytes: number; sha256: string };
    try {
      got = await ctx.client.downloadToFile(download_url, part, (n) => bar.update(n, transferPayload(label, n, size)));
    } catch (err) {
      await rm(part, { force: true });
      throw err;
    } finally {
      bar.stop();
    }
    const expected = (a.sha256 ?? "").toLowerCase();
    if (expected === "" || got.sha256 !== expected) {
      await rm(part, { force: true });
      throw new CliError(
        "CHECKSUM_MISMATCH",
        expected === ""
          ? `artifact ${a.id} (${a.name ?? ""}) has no sha256 in the listing; refusing an unverifiable file`
          : `artifact ${a.id} (${a.name ?? ""}): downloaded sha256 ${got.sha256} does not match ${expected}`,
      );
    }
    await rename(part, dest);
    files.push({ artifact_id: a.id, name: a.name ?? "", path: dest, size_bytes: got.bytes, sha256: got.sha256 });
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
