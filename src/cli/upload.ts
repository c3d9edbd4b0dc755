/**
 * The three-step upload both datasets and packages use:
 * create (size + sha256 declared) → PUT the bytes to the signed upload URL →
 * finalize (the server verifies size and sha256).
 */
import { CliError } from "./client.ts";
import type { CliContext } from "./context.ts";
import { createProgress, TRANSFER_BAR_FORMAT, transferPayload } from "./output.ts";

/** Anything created through the signed-upload flow. */
export interface Uploadable {
  id: string;
  upload_url?: string;
}

/** Inputs of {@link uploadThenFinalize}. */
export interface UploadFlow<T extends Uploadable> {
  filePath: string;
  size: number;
  /** Label of the progress bar. */
  label: string;
  /** Whether `--json` was asked (no bar then). */
  json: boolean;
  create(): Promise<T>;
  finalize(id: string): Promise<T>;
}

/** Runs create → PUT → finalize and returns the finalized resource. */
export async function uploadThenFinalize<T extends Uploadable>(flow: UploadFlow<T>, ctx: CliContext): Promise<T> {
  const created = await flow.create();
  if (created.upload_url === undefined || created.upload_url === "") {
    throw new CliError("BAD_RESPONSE", `the server created ${created.id} without an upload_url`);
  }
  const bar = createProgress(ctx.io, !flow.json, TRANSFER_BAR_FORMAT);
  bar.start(flow.size, transferPayload(flow.label, 0, flow.size));
  try {
    await ctx.client.uploadFile(created.upload_url, flow.filePath, flow.size, (sent) =>
      bar.update(sent, transferPayload(flow.label, sent, flow.size)),
    );
  } finally {
    bar.stop();
  }
  return flow.finalize(created.id);
}
