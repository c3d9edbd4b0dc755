/**
 * `gpuctl login`, `gpuctl logout` and `gpuctl api-keys …`.
 *
 * `login` signs in with an e-mail and password (the portal's Login rpc), makes an API key named
 * `gpuctl@<hostname>` with that session and stores the key and the URL in the config file
 * (src/cli/config.ts) under a profile; later commands use it when neither `--api-key` nor
 * `GPU_AGENT_API_KEY` is given. The session itself is not kept.
 *
 * The server lets only a signed-in session create, list or revoke API keys (a leaked key must not
 * be able to mint more or revoke its owner's), so `logout` and `api-keys` sign in again: the
 * password is asked for, or read with `--password-stdin`.
 */
import type { ApiKey, GpuAgentClient } from "../sdk/index.ts";
import { API_KEY_SCOPES, GpuAgentError, listAll } from "../sdk/index.ts";
import { ApiKeySchema, CreateApiKeyResponseSchema, ListApiKeysResponseSchema } from "../gen/gpuagent/customer/v1/customer_pb.ts";
import type { Profile } from "./config.ts";
import type { CliContext, JsonOption } from "./context.ts";
import type { ListOptions } from "./datasets.ts";
import { pageOf } from "./datasets.ts";
import { CliError, usageError } from "./errors.ts";
import type { QuietOption } from "./output.ts";
import { formatTime, messageJson, printFields, printJson, printListPage, printMessage } from "./output.ts";
import type { PasswordSource } from "./terminal.ts";
import { readPassword } from "./terminal.ts";

/** The name of the key `login` makes on this machine. */
export function loginKeyName(hostname: string): string {
  return `gpuctl@${hostname}`;
}

/** A signed-in session: a client that may manage keys, and who signed in. */
interface Session {
  client: GpuAgentClient;
  email: string;
  customerId: string;
}

/** Signs in as `email` (its password from the terminal or standard input). */
async function signIn(ctx: CliContext, email: string, source: PasswordSource): Promise<Session> {
  const password = await readPassword(ctx.stdin, email, source);
  const res = await ctx.sessionClient().auth.login(email, password);
  return { client: ctx.sessionClient(res.sessionToken), email: res.customer?.email ?? email, customerId: res.customer?.id ?? "" };
}

/** The e-mail to sign in as: `--email`, else the profile's. */
function emailFor(ctx: CliContext, email: string | undefined): string {
  const chosen = email ?? ctx.storedProfile()?.email;
  if (chosen === undefined || chosen === "") {
    throw usageError("EMAIL_MISSING", `--email is needed: profile ${ctx.profile.name} has no signed-in user (gpuctl login --email <email>)`);
  }
  return chosen;
}

/** Options of `login`. */
export interface LoginOptions extends JsonOption, PasswordSource {
  email: string;
  /** Name of the key to make (default `gpuctl@<hostname>`). */
  keyName?: string | undefined;
}

/**
 * Signs in, makes an API key and stores it in the profile. A key the profile held before (from an
 * earlier login) is revoked with the same session once the new one is stored, so logging in again
 * does not pile up keys; if that fails (another account, a key already gone) it is only reported.
 */
export async function login(opts: LoginOptions, ctx: CliContext): Promise<number> {
  const config = ctx.readConfig();
  const previous = config.profiles[ctx.profile.name];
  const session = await signIn(ctx, opts.email, opts);
  const name = opts.keyName ?? loginKeyName(ctx.hostname);
  const created = await session.client.apiKeys.create({ name, scopes: API_KEY_SCOPES });
  const key = created.apiKey;
  if (key === undefined || created.key === "") throw new CliError("BAD_RESPONSE", "CreateApiKey answered without the key");
  const profile: Profile = { url: ctx.url(), email: session.email, api_key: created.key, api_key_id: key.id, api_key_name: key.name };
  config.profiles[ctx.profile.name] = profile;
  try {
    await ctx.config.write(config);
  } catch (error) {
    // Unstored, the key is of no use to anyone: take it back rather than leave it valid.
    await session.client.apiKeys.revoke(key.id).catch(() => undefined);
    throw new CliError("CONFIG_UNWRITABLE", `cannot write ${ctx.config.path}: ${(error as Error).message}`, { cause: error });
  }
  let replaced = "";
  if (previous !== undefined && previous.api_key_id !== "" && previous.api_key_id !== key.id) {
    try {
      await session.client.apiKeys.revoke(previous.api_key_id);
      replaced = previous.api_key_id;
    } catch (error) {
      const why = error instanceof GpuAgentError ? error.code : String(error);
      ctx.io.stderr(`note: the profile's previous key ${previous.api_key_id} (${previous.url}) was not revoked (${why}); revoke it in the portal if it is still valid\n`);
    }
  }
  if (opts.json) {
    printJson(ctx.io, {
      profile: ctx.profile.name,
      url: profile.url,
      email: profile.email,
      api_key_id: profile.api_key_id,
      api_key_name: profile.api_key_name,
      api_key_prefix: key.prefix,
      config_file: ctx.config.path,
      ...(replaced === "" ? {} : { revoked_previous_key_id: replaced }),
    });
  } else {
    ctx.io.stdout(`Logged in to ${profile.url} as ${profile.email} (profile ${ctx.profile.name}).\n`);
    ctx.io.stdout(`API key ${key.name} (${key.prefix}…) stored in ${ctx.config.path}.\n`);
    if (replaced !== "") ctx.io.stdout(`The profile's previous key ${replaced} was revoked.\n`);
  }
  if (ctx.apiKeyOverride !== undefined) ctx.io.stderr(`note: ${ctx.apiKeyOverride} is set and wins over the profile: unset it to use the key just stored\n`);
  return 0;
}

/** Options of `logout`. */
export interface LogoutOptions extends JsonOption, PasswordSource {
  /** Only forget the key here; it stays valid on the server. */
  local?: boolean | undefined;
}

/**
 * Revokes the profile's key on the server (signing in again to do so), then removes the profile
 * from the config file. A key the server no longer knows is simply forgotten. With `--local` the
 * key is only forgotten here and stays valid until revoked in the portal.
 */
export async function logout(opts: LogoutOptions, ctx: CliContext): Promise<number> {
  const config = ctx.readConfig();
  const profile = config.profiles[ctx.profile.name];
  if (profile === undefined) {
    throw new CliError("NOT_LOGGED_IN", `profile ${ctx.profile.name} is not logged in (nothing in ${ctx.config.path}); nothing to do`);
  }
  let revoked = false;
  if (opts.local !== true) {
    const session = await signIn(ctx, profile.email, opts);
    try {
      await session.client.apiKeys.revoke(profile.api_key_id);
      revoked = true;
    } catch (error) {
      if (!(error instanceof GpuAgentError && error.code === "RESOURCE_NOT_FOUND")) throw error;
      ctx.io.stderr(`note: ${profile.url} no longer knows key ${profile.api_key_id}; forgetting it\n`);
    }
  }
  delete config.profiles[ctx.profile.name];
  await ctx.config.write(config);
  if (opts.json) {
    printJson(ctx.io, { profile: ctx.profile.name, api_key_id: profile.api_key_id, revoked, config_file: ctx.config.path });
  } else {
    ctx.io.stdout(`Logged out of ${profile.url} (profile ${ctx.profile.name}).\n`);
    if (revoked) ctx.io.stdout(`API key ${profile.api_key_name} revoked.\n`);
    else if (opts.local === true) ctx.io.stdout(`API key ${profile.api_key_name} (${profile.api_key_id}) is still valid: revoke it in the portal or with gpuctl api-keys revoke.\n`);
  }
  return 0;
}

/** Options of every `api-keys` command: who signs in. */
export interface SessionOptions extends JsonOption, PasswordSource {
  email?: string | undefined;
}

/** Options of `api-keys create`. */
export interface ApiKeyCreateOptions extends SessionOptions, QuietOption {
  name: string;
  scopes?: string[] | undefined;
}

/** Makes a key and shows its plaintext, this once; `-q` prints the key alone (for `$(…)`). */
export async function apiKeysCreate(opts: ApiKeyCreateOptions, ctx: CliContext): Promise<number> {
  const session = await signIn(ctx, emailFor(ctx, opts.email), opts);
  const res = await session.client.apiKeys.create({ name: opts.name, scopes: opts.scopes ?? API_KEY_SCOPES });
  if (opts.quiet === true) {
    ctx.io.stdout(`${res.key}\n`);
  } else if (opts.json) {
    printMessage(ctx.io, CreateApiKeyResponseSchema, res);
  } else {
    printFields(ctx.io, [...(res.apiKey === undefined ? [] : apiKeyFields(res.apiKey)), ["key", res.key]]);
    ctx.io.stderr("store the key now: it is not shown again\n");
  }
  return 0;
}

/** Options of `api-keys list`. */
export interface ApiKeyListOptions extends SessionOptions, ListOptions {}

/** One page of the customer's keys, newest first, revoked ones included. */
export async function apiKeysList(opts: ApiKeyListOptions, ctx: CliContext): Promise<number> {
  const session = await signIn(ctx, emailFor(ctx, opts.email), opts);
  const res = await session.client.apiKeys.list(pageOf(opts));
  printListPage(ctx.io, opts, ListApiKeysResponseSchema, res, {
    columns: ["id", "name", "prefix", "scopes", "created", "last_used", "revoked"],
    row: (k: ApiKey) => [k.id, k.name, k.prefix, k.scopes.join(","), formatTime(k.createdAt), formatTime(k.lastUsedAt), formatTime(k.revokedAt)],
    empty: "no API keys",
  });
  return 0;
}

/** Options of `api-keys revoke`. */
export interface ApiKeyRevokeOptions extends SessionOptions {
  /** A key's id, or its name when one active key has it. */
  key: string;
}

/**
 * Revokes a key named by id or by name. A key already revoked is left as it is and reported as
 * such (exit 1): the command did nothing. Revoking the key this profile uses also forgets it here.
 */
export async function apiKeysRevoke(opts: ApiKeyRevokeOptions, ctx: CliContext): Promise<number> {
  const session = await signIn(ctx, emailFor(ctx, opts.email), opts);
  const keys = await listAll((p) => session.client.apiKeys.list(p));
  const byId = keys.find((k) => k.id === opts.key.toLowerCase());
  const byName = keys.filter((k) => k.name === opts.key && k.revokedAt === undefined);
  if (byId === undefined && byName.length > 1) {
    throw usageError("AMBIGUOUS_KEY", `${byName.length} active keys are named ${opts.key} (${byName.map((k) => k.id).join(", ")}): give the id`);
  }
  const target = byId ?? byName[0];
  if (target === undefined) throw new CliError("RESOURCE_NOT_FOUND", `no API key with id or name ${opts.key}`);
  if (target.revokedAt !== undefined) {
    throw new CliError("ALREADY_REVOKED", `API key ${target.id} (${target.name}) was already revoked at ${formatTime(target.revokedAt)}; nothing to do`);
  }
  const revoked = await session.client.apiKeys.revoke(target.id);
  const config = ctx.readConfig();
  const holders = Object.entries(config.profiles).filter(([, p]) => p.api_key_id === target.id && p.url === ctx.url());
  if (holders.length > 0) {
    for (const [name] of holders) delete config.profiles[name];
    await ctx.config.write(config);
    ctx.io.stderr(`profile ${holders.map(([name]) => name).join(", ")} used this key and was removed from ${ctx.config.path}\n`);
  }
  if (opts.json) printJson(ctx.io, messageJson(ApiKeySchema, revoked));
  else printFields(ctx.io, apiKeyFields(revoked));
  return 0;
}

function apiKeyFields(k: ApiKey): [string, unknown][] {
  return [
    ["id", k.id],
    ["name", k.name],
    ["prefix", k.prefix],
    ["scopes", k.scopes.join(",")],
    ["created_at", formatTime(k.createdAt)],
    ["last_used_at", formatTime(k.lastUsedAt)],
    ["revoked_at", formatTime(k.revokedAt)],
  ];
}
