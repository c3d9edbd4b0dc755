/**
 * `gpuctl webhooks verify`: checks a received delivery's `GPU-Agent-Signature`
 * against one or more secrets (during a rotation, the new and the previous),
 * with the same code the server signs with — the receiver's helper.
 */
import { readFile } from "node:fs/promises";
import { defaultToleranceSeconds, verifyWebhookSignature } from "../webhooks/signature.ts";
import type { CliContext, JsonOption } from "./context.ts";
import { printJson } from "./output.ts";

/** Options of `webhooks verify`. */
export interface WebhookVerifyOptions extends JsonOption {
  /** The raw request body, exactly as received. */
  bodyFile: string;
  /** The GPU-Agent-Signature header value. */
  signature: string;
  secrets: string[];
  toleranceS: number;
}

/** Exit 0 when the signature holds for one of the secrets, 1 otherwise. */
export async function webhooksVerify(opts: WebhookVerifyOptions, ctx: CliContext): Promise<number> {
  const body = await readFile(opts.bodyFile);
  const valid = verifyWebhookSignature(body, opts.signature, opts.secrets, opts.toleranceS, Math.floor(ctx.clock.now() / 1000));
  if (opts.json) printJson(ctx.io, { valid });
  else if (valid) ctx.io.stdout("signature valid\n");
  else ctx.io.stderr("signature INVALID (wrong secret, altered body, or a timestamp outside the tolerance)\n");
  return valid ? 0 : 1;
}

export { defaultToleranceSeconds };
