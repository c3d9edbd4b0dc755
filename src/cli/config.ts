/**
 * gpuctl's config file: named profiles, each an API URL and the API key `gpuctl login` made for
 * it. It lives at `$XDG_CONFIG_HOME/gpuctl/config.json` (an absolute XDG_CONFIG_HOME only, as the
 * XDG spec says), else `~/.config/gpuctl/config.json`.
 *
 * The key is a credential: the file is written 0600 inside a 0700 directory, through a temporary
 * file renamed over the old one, so a reader never sees half a file and the key is never readable
 * by others, not even for a moment. It holds no password and no session token: API keys are
 * managed from a session only (the server's rule, so that a leaked key cannot mint or revoke
 * keys), and the file must not undo that.
 */
import { readFileSync, statSync } from "node:fs";
import { chmod, mkdir, open, rename, rm } from "node:fs/promises";
import path from "node:path";
import { usageError } from "./errors.ts";

/** The profile used when neither `--profile` nor `GPUCTL_PROFILE` names one. */
export const DEFAULT_PROFILE = "default";

/** One profile of the config file (stored with these snake_case names). */
export interface Profile {
  /** The API's base URL. */
  url: string;
  /** Who signed in; `logout` and `api-keys` sign in as them again. */
  email: string;
  /** The plaintext API key. */
  api_key: string;
  /** The key's id, to revoke it on `logout` or when a new `login` replaces it. */
  api_key_id: string;
  /** The key's name as the portal and `api-keys list` show it. */
  api_key_name: string;
}

/** The whole file. */
export interface ConfigFile {
  profiles: Record<string, Profile>;
}

/** Where the config file is, from the environment and the home directory. */
export function configFilePath(env: Record<string, string | undefined>, homeDir: string): string {
  const xdg = env["XDG_CONFIG_HOME"];
  const base = xdg !== undefined && path.isAbsolute(xdg) ? xdg : path.join(homeDir, ".config");
  return path.join(base, "gpuctl", "config.json");
}

/** Profile names become keys of a JSON object and words on a command line: keep them plain. */
export function checkProfileName(name: string): string {
  if (!/^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/.test(name)) {
    throw usageError("INVALID_PROFILE", `profile name ${JSON.stringify(name)}: use 1 to 64 letters, digits, '.', '_' or '-'`);
  }
  return name;
}

function isProfile(value: unknown): value is Profile {
  if (typeof value !== "object" || value === null) return false;
  const v = value as Record<string, unknown>;
  return ["url", "email", "api_key", "api_key_id", "api_key_name"].every((k) => typeof v[k] === "string");
}

/** The config file on disk. */
export interface ConfigStore {
  readonly path: string;
  /**
   * The file's contents (no profiles when it does not exist). Synchronous: a command reads it at
   * most once, when it needs the URL or key it did not get from a flag or the environment.
   * @param warn told when the file is readable by others.
   */
  read(warn?: (message: string) => void): ConfigFile;
  /** Writes the whole file: 0600, in a 0700 directory, atomically. */
  write(config: ConfigFile): Promise<void>;
}

/** The store at `file`; `tempSuffix` names each temporary file uniquely. */
export function configStore(file: string, tempSuffix: () => string): ConfigStore {
  return {
    path: file,
    read(warn) {
      let text: string;
      try {
        text = readFileSync(file, "utf8");
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code === "ENOENT") return { profiles: {} };
        throw usageError("CONFIG_UNREADABLE", `cannot read ${file}: ${(error as Error).message}`, error);
      }
      const mode = statSync(file).mode & 0o777;
      if ((mode & 0o077) !== 0) warn?.(`warning: ${file} is readable by others (mode ${mode.toString(8).padStart(4, "0")}); it holds API keys: chmod 600 ${file}\n`);
      let parsed: unknown;
      try {
        parsed = JSON.parse(text);
      } catch (error) {
        throw usageError("CONFIG_INVALID", `${file} is not valid JSON (${(error as Error).message}); fix or remove it, then gpuctl login again`, error);
      }
      const raw = (parsed as { profiles?: unknown } | null)?.profiles;
      if (typeof raw !== "object" || raw === null || Array.isArray(raw)) {
        throw usageError("CONFIG_INVALID", `${file} has no "profiles" object; fix or remove it, then gpuctl login again`);
      }
      const profiles: Record<string, Profile> = {};
      for (const [name, value] of Object.entries(raw as Record<string, unknown>)) {
        if (!isProfile(value)) throw usageError("CONFIG_INVALID", `${file}: profile ${JSON.stringify(name)} lacks url, email or api_key; gpuctl login --profile ${name} rewrites it`);
        profiles[name] = value;
      }
      return { profiles };
    },
    async write(config) {
      const dir = path.dirname(file);
      await mkdir(dir, { recursive: true, mode: 0o700 });
      // mkdir's mode is masked by the umask and leaves an existing directory as it was.
      await chmod(dir, 0o700);
      const temp = path.join(dir, `.config.json.${tempSuffix()}.tmp`);
      // Created 0600 (exclusive, so never someone else's file), whatever the umask allows.
      const handle = await open(temp, "wx", 0o600);
      try {
        await handle.chmod(0o600);
        await handle.writeFile(`${JSON.stringify(config, null, 2)}\n`);
        await handle.sync();
      } catch (error) {
        await handle.close();
        await rm(temp, { force: true });
        throw error;
      }
      await handle.close();
      try {
        await rename(temp, file);
      } catch (error) {
        await rm(temp, { force: true });
        throw error;
      }
    },
  };
}
