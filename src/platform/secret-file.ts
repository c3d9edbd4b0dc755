/**
 * Secrets a replica keeps in its data directory across restarts (the admin
 * token, the URL-signing key) when the operator did not supply one.
 */
import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { newSecret } from "./ids.ts";
import { privateFileMode } from "./private-files.ts";

/** Reads the secret file `file` of `dataDir`, creating it (32 random bytes, base64url, mode 0600) on first start. */
export async function persistentSecret(dataDir: string, file: string): Promise<{ value: string; created: boolean }> {
  const path = join(dataDir, file);
  let existing: string | undefined;
  try {
    existing = (await readFile(path, "utf8")).trim();
  } catch {
    existing = undefined;
  }
  if (existing !== undefined) {
    // A short or empty secret would make signatures forgeable: refuse to start rather than run with it.
    if (existing.length < 32) throw new Error(`${path} holds a secret shorter than 32 characters; remove it to generate a new one`);
    return { value: existing, created: false };
  }
  const value = newSecret("");
  await writeFile(path, `${value}\n`, { mode: privateFileMode, flag: "wx" });
  return { value, created: true };
}
