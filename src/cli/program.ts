/**
 * The gpuctl command tree (commander). This file only wires flags to the action functions of the
 * sibling files; each action takes its parsed options and a {@link CliContext}, so tests call
 * them without a process. Every call to the API goes through the SDK (src/sdk/).
 *
 * Exit codes: 0 success, 1 failure (API error, failed job, bad checksum, an action that had
 * nothing to do), 2 usage error (unknown flag, bad value, missing credential), 130 Ctrl-C at a
 * password prompt.
 */
import { Argument, Command, CommanderError, InvalidArgumentError, Option } from "commander";
import { API_KEY_SCOPES, JOB_STATUSES, SENSITIVITY_TIERS, TRUST_LEVELS } from "../sdk/index.ts";
import type { NodeAction } from "./admin.ts";
import {
  adminCreateCustomer,
  adminCustomers,
  adminEnrollmentToken,
  adminGrantCredits,
  adminNodeAction,
  adminNodes,
  adminScheduler,
  adminSetTrustLevel,
} from "./admin.ts";
import { artifactsDownload, artifactsList } from "./artifacts.ts";
import type { ApiKeyListOptions, SessionOptions } from "./auth.ts";
import { apiKeysCreate, apiKeysList, apiKeysRevoke, login, logout } from "./auth.ts";
import { COMPLETION_SHELLS, completionScript } from "./completion.ts";
import type { CliContext, CliDeps, ConnectionFlags } from "./context.ts";
import { DEFAULT_BASE_URL, createCliContext } from "./context.ts";
import type { ListOptions } from "./datasets.ts";
import { datasetsDelete, datasetsGet, datasetsList, datasetsUpload } from "./datasets.ts";
import { USAGE_EXIT_CODE, usageError } from "./errors.ts";
import { DEFAULT_WATCH_INTERVAL_MS, JOB_DEFAULTS, jobsCancel, jobsCreate, jobsGet, jobsList, jobsUnits, jobsWatch } from "./jobs.ts";
import { DEFAULT_LOG_INTERVAL_MS, jobsLogs } from "./logs.ts";
import type { OutputMode } from "./output.ts";
import { reportError } from "./output.ts";
import { DEFAULT_ENTRYPOINT, packagesDelete, packagesGet, packagesList, packagesUpload } from "./packages.ts";
import type { CsvOptions } from "./usage.ts";
import { creditsLedger, creditsStatement, usageDaily, usageExport, usageSummary } from "./usage.ts";
import {
  defaultToleranceSeconds,
  webhooksCreate,
  webhooksDeliveries,
  webhooksDelete,
  webhooksList,
  webhooksRedeliver,
  webhooksRotate,
  webhooksTest,
  webhooksVerify,
} from "./webhooks.ts";

export type { CliDeps } from "./context.ts";

/** Flags every command inherits from the program. */
interface GlobalOptions extends ConnectionFlags {
  json?: boolean;
}

/** Flags a command may have that change how it runs rather than what it does. */
interface CommandOptions {
  quiet?: boolean;
}

function parseInteger(min: number) {
  return (value: string): number => {
    if (!/^-?\d+$/.test(value.trim())) throw new InvalidArgumentError("not an integer.");
    const n = Number(value);
    if (!Number.isSafeInteger(n) || n < min) throw new InvalidArgumentError(`must be an integer >= ${min}.`);
    return n;
  };
}

const positiveInt = parseInteger(1);
const nonNegativeInt = parseInteger(0);

/** GPUs of one node a unit may ask for (the API's bound). */
const maxGpusPerUnit = 8;

function gpuCount(value: string): number {
  const n = positiveInt(value);
  if (n > maxGpusPerUnit) throw new InvalidArgumentError(`at most ${maxGpusPerUnit} GPUs of one node.`);
  return n;
}

/** A "major.minor" version, as the API takes compute capabilities and CUDA versions. */
function majorMinor(value: string): string {
  if (!/^\d{1,4}\.\d{1,4}$/.test(value)) throw new InvalidArgumentError('expected major.minor, e.g. "8.0".');
  return value;
}

const durationUnits: Readonly<Record<string, number>> = { s: 1, m: 60, h: 3600, d: 86_400 };

/** Seconds, plain (`3600`) or as a duration of s, m, h and d parts (`90m`, `2h`, `1h30m`, `1d`). */
export function durationSeconds(value: string): number {
  const text = value.trim();
  if (/^\d+$/.test(text)) return positiveInt(text);
  const parts = [...text.matchAll(/(\d+)([smhd])/g)];
  if (parts.length === 0 || parts.map((p) => p[0]).join("") !== text) throw new InvalidArgumentError("expected seconds or a duration such as 90m, 2h, 1h30m or 1d.");
  const seconds = parts.reduce((sum, [, n, unit]) => sum + Number(n) * (durationUnits[unit ?? "s"] ?? 1), 0);
  if (!Number.isSafeInteger(seconds) || seconds < 1) throw new InvalidArgumentError("must be at least one second.");
  return seconds;
}

/** A repeatable flag's values, in the order given. */
function collect(value: string, previous: string[] | undefined): string[] {
  return [...(previous ?? []), value];
}

/** A day as the API's CSV exports take it. */
function isoDate(value: string): string {
  if (!/^\d{4}-\d{2}-\d{2}$/.test(value) || Number.isNaN(Date.parse(`${value}T00:00:00Z`))) throw new InvalidArgumentError("expected a day as YYYY-MM-DD.");
  return value;
}

/** Every flag of the tree, long and short. */
function allFlags(cmd: Command, into = new Set<string>()): Set<string> {
  for (const o of cmd.options) {
    if (o.long !== undefined) into.add(o.long);
    if (o.short !== undefined) into.add(o.short);
  }
  into.add("--help").add("-h");
  for (const sub of cmd.commands) allFlags(sub, into);
  return into;
}

/**
 * A flag that takes a value swallows the next word, even another flag: `--dataset --package X`
 * would set the dataset to "--package" and then complain that `--package` is missing. Every
 * value-taking option of the tree refuses a value that is one of gpuctl's own flags, so the error
 * names the flag that really lacks its value. (A value that merely starts with "-", such as a
 * password, is taken as it is.)
 */
function refuseFlagsAsValues(program: Command): void {
  const flags = allFlags(program);
  const visit = (cmd: Command) => {
    for (const o of cmd.options) {
      if (!o.required && !o.optional) continue;
      const inner = o.parseArg;
      o.argParser((value: string, previous: unknown) => {
        const name = value.split("=")[0] ?? value;
        if (flags.has(name)) throw new InvalidArgumentError(`${name} is an option: ${o.long ?? o.short ?? o.flags} needs a value before it.`);
        if (inner !== undefined) return inner(value, previous);
        if (!o.variadic) return value;
        return Array.isArray(previous) && previous !== o.defaultValue ? [...(previous as unknown[]), value] : [value];
      });
    }
    for (const sub of cmd.commands) visit(sub);
  };
  visit(program);
}

/**
 * Builds the program. `onExit` receives the exit code an action decided
 * (e.g. 1 for a failed job) since commander's `parseAsync` returns none.
 */
export function buildProgram(deps: CliDeps, onExit: (code: number) => void): Command {
  const program = new Command("gpuctl")
    .description("Command line for GPU-Agent: upload datasets and packages, run and watch training jobs, fetch artifacts.")
    .version(deps.version, "-V, --version", "print gpuctl's version")
    .option("--url <url>", `API base URL (env GPU_AGENT_URL, else the profile's, else ${DEFAULT_BASE_URL})`)
    .option("--api-key <key>", "customer API key (env GPU_AGENT_API_KEY, else the profile's from gpuctl login)")
    .option("--admin-token <token>", "admin token for `gpuctl admin` (env GPU_AGENT_ADMIN_TOKEN)")
    .option("--profile <name>", "profile of the config file to use (env GPUCTL_PROFILE, default \"default\")")
    .option("--json", "print one machine-readable JSON document on stdout", false)
    .showHelpAfterError("(run with --help for usage)")
    .configureHelp({ showGlobalOptions: true })
    .exitOverride()
    .configureOutput({ writeOut: (s) => deps.io.stdout(s), writeErr: (s) => deps.io.stderr(s) });

  /** Wraps an action: builds the context from the global flags, records the exit code. */
  function run<A extends unknown[]>(fn: (ctx: CliContext, json: boolean, ...args: A) => Promise<number>) {
    return async (...args: unknown[]): Promise<void> => {
      const cmd = args[args.length - 1] as Command;
      const g = cmd.optsWithGlobals<GlobalOptions & CommandOptions>();
      if (g.quiet === true && g.json === true) throw usageError("CONFLICTING_OPTIONS", "-q/--quiet prints ids only and --json one document: choose one");
      onExit(await fn(createCliContext(g, deps), g.json === true, ...(args.slice(0, -1) as A)));
    };
  }

  /** `--limit` and `--cursor` of the commands that show one page. */
  const pageFlags = (c: Command) =>
    c.option("--limit <n>", "page size (max 100)", positiveInt).option("--cursor <cursor>", "continue after a previous page");
  /** `-q` of the create and list commands. */
  const quietFlag = (c: Command, what = "print only the ids, one per line") => c.option("-q, --quiet", what);
  /** Who signs in for the session-only commands (`logout`, `api-keys`). */
  const sessionFlags = (c: Command) =>
    c
      .option("--email <email>", "sign in as (default: the profile's)")
      .option("--password-stdin", "read the password from standard input instead of asking on the terminal");
  /** `--from`, `--to`, `--out` of the CSV commands. */
  const csvFlags = (c: Command) =>
    c
      .option("--from <day>", "first day, YYYY-MM-DD (UTC); default 30 days back", isoDate)
      .option("--to <day>", "last day, YYYY-MM-DD; default today (at most 90 days in all)", isoDate)
      .option("--out <file>", "write the CSV to this file (only once complete) instead of stdout");

  // ---- sign-in ----
  program
    .command("login")
    .description("sign in, make an API key for this machine and store it in the config file (the profile's)")
    .requiredOption("--email <email>", "your login e-mail")
    .option("--password-stdin", "read the password from standard input instead of asking on the terminal")
    .option("--key-name <name>", "name of the API key to make (default gpuctl@<hostname>)")
    .action(run((ctx, json, o: { email: string; passwordStdin?: boolean; keyName?: string }) => login({ ...o, json }, ctx)));
  program
    .command("logout")
    .description("revoke the profile's API key on the server (signing in again) and remove it from the config file")
    .option("--password-stdin", "read the password from standard input instead of asking on the terminal")
    .option("--local", "only remove the key from the config file; it stays valid on the server")
    .action(run((ctx, json, o: { passwordStdin?: boolean; local?: boolean }) => logout({ ...o, json }, ctx)));

  // ---- API keys ----
  const apiKeys = program.command("api-keys").description("create, list and revoke API keys (each signs in: the server manages keys from a session only)");
  quietFlag(
    sessionFlags(
      apiKeys
        .command("create")
        .description("make an API key and show it, this once")
        .requiredOption("--name <name>", "a name to recognise it by")
        .addOption(new Option("--scope <scope...>", "what it may do (default: everything)").choices(API_KEY_SCOPES)),
    ),
    "print only the key",
  ).action(run((ctx, json, o: SessionOptions & { name: string; scope?: string[]; quiet?: boolean }) => apiKeysCreate({ ...o, scopes: o.scope, json }, ctx)));
  quietFlag(pageFlags(sessionFlags(apiKeys.command("list").description("list API keys, newest first, revoked ones included")))).action(
    run((ctx, json, o: ApiKeyListOptions) => apiKeysList({ ...o, json }, ctx)),
  );
  sessionFlags(apiKeys.command("revoke <key>").description("revoke an API key by id (or by name, when one active key has it)")).action(
    run((ctx, json, key: string, o: SessionOptions) => apiKeysRevoke({ ...o, key, json }, ctx)),
  );

  // ---- datasets ----
  const datasets = program.command("datasets").description("upload, inspect and delete datasets");
  quietFlag(
    datasets
      .command("upload <file>")
      .description("hash, upload (with a progress bar) and finalize a dataset file")
      .option("--name <name>", "dataset name (default: the file name)")
      .option("--format <format>", "format such as csv or jsonl (default: the file extension)"),
    "print only the new dataset's id",
  ).action(
    run((ctx, json, file: string, o: { name?: string; format?: string; quiet?: boolean }) =>
      datasetsUpload({ file, name: o.name, format: o.format, quiet: o.quiet, json }, ctx),
    ),
  );
  quietFlag(pageFlags(datasets.command("list").description("list datasets"))).action(
    run((ctx, json, o: ListOptions) => datasetsList({ ...o, json }, ctx)),
  );
  datasets
    .command("get <id>")
    .description("show one dataset")
    .action(run((ctx, json, id: string) => datasetsGet({ id, json }, ctx)));
  datasets
    .command("delete <id...>")
    .description("delete datasets and their bytes (refused while an active job uses one)")
    .action(run((ctx, json, ids: string[]) => datasetsDelete({ ids, json }, ctx)));

  // ---- packages ----
  const packages = program.command("packages").description("upload, inspect and delete training packages");
  quietFlag(
    packages
      .command("upload <path>")
      .description("upload a training package: a .zip file, or a directory zipped on the fly")
      .option("--name <name>", "package name (default: the file or directory name)")
      .option("--entrypoint <file>", "Python entry point inside the package", DEFAULT_ENTRYPOINT),
    "print only the new package's id",
  ).action(
    run((ctx, json, p: string, o: { name?: string; entrypoint?: string; quiet?: boolean }) =>
      packagesUpload({ path: p, name: o.name, entrypoint: o.entrypoint, quiet: o.quiet, json }, ctx),
    ),
  );
  quietFlag(pageFlags(packages.command("list").description("list training packages"))).action(
    run((ctx, json, o: ListOptions) => packagesList({ ...o, json }, ctx)),
  );
  packages
    .command("get <id>")
    .description("show one training package")
    .action(run((ctx, json, id: string) => packagesGet({ id, json }, ctx)));
  packages
    .command("delete <id...>")
    .description("delete training packages and their bytes (refused while an active job uses one)")
    .action(run((ctx, json, ids: string[]) => packagesDelete({ ids, json }, ctx)));

  // ---- jobs ----
  const jobs = program.command("jobs").description("create, watch, cancel training jobs and read their logs");
  const watchFlags = (c: Command) =>
    c
      .option("--interval-ms <ms>", "poll interval, for a server without live job events", positiveInt, DEFAULT_WATCH_INTERVAL_MS)
      .option("--timeout-s <s>", "give up watching after this many seconds", positiveInt);
  // No commander defaults here: a default would hide the value of a --file; jobBody applies them.
  quietFlag(
    watchFlags(
      jobs
        .command("create")
        .description("create a training job (retry-safe: always sends an Idempotency-Key)")
        .option("-f, --file <path>", "job spec, JSON or YAML, with the REST API's fields (dataset_id, …); flags override it")
        .option("--dataset <id>", "dataset id (required unless the file sets dataset_id)")
        .option("--package <id>", "training package id (required unless the file sets training_package_id)")
        .option("--name <name>", "job name (default derived from the idempotency key)")
        .option("--vram-mb <mb>", `GPU memory the training needs (default ${JOB_DEFAULTS.vramMb})`, positiveInt)
        .option("--disk-mb <mb>", `disk the job needs (default ${JOB_DEFAULTS.diskMb})`, positiveInt)
        .option("--max-runtime-seconds <s>", `runtime limit (default ${JOB_DEFAULTS.maxRuntimeSeconds})`, positiveInt)
        .addOption(new Option("--sensitivity <tier>", `data sensitivity tier (default ${JOB_DEFAULTS.sensitivity})`).choices(SENSITIVITY_TIERS))
        .option("--gpus <n>", `GPUs of one node each GPU stage needs, 1 to ${maxGpusPerUnit}, each with --vram-mb free (default 1); billed per GPU`, gpuCount)
        .option("--gpu-model <name>", 'a GPU model the job may run on, e.g. "RTX 4090" or A100 (repeat for several; default any)', collect)
        .option("--min-compute-capability <x.y>", 'lowest CUDA compute capability, e.g. "8.0" for bf16 (default any)', majorMinor)
        .option("--min-cuda-version <x.y>", 'lowest CUDA version the node\'s driver must support, e.g. "12.1" (default any)', majorMinor)
        .option("--queue-timeout <duration>", "how long the job may wait queued before it ends expired: seconds or 90m, 2h, 1d (default: the server's, one day)", durationSeconds)
        .option("--idempotency-key <key>", "reuse to retry a create safely (default: a random UUID)")
        .option("--watch", "watch the job until it finishes"),
    ),
    "print only the new job's id (with --watch, nothing more: the exit status tells how it ended)",
  ).action(
    run(
      (
        ctx,
        json,
        o: {
          file?: string;
          dataset?: string;
          package?: string;
          name?: string;
          vramMb?: number;
          diskMb?: number;
          maxRuntimeSeconds?: number;
          sensitivity?: string;
          gpus?: number;
          gpuModel?: string[];
          minComputeCapability?: string;
          minCudaVersion?: string;
          queueTimeout?: number;
          idempotencyKey?: string;
          watch?: boolean;
          intervalMs: number;
          timeoutS?: number;
          quiet?: boolean;
        },
      ) => jobsCreate({ ...o, json }, ctx),
    ),
  );
  jobs
    .command("get <id>")
    .description("show one job")
    .action(run((ctx, json, id: string) => jobsGet({ id, json }, ctx)));
  quietFlag(
    pageFlags(
      jobs
        .command("list")
        .description("list jobs")
        .addOption(new Option("--status <status>", "only jobs in this status").choices(JOB_STATUSES)),
    ),
  ).action(run((ctx, json, o: ListOptions & { status?: string }) => jobsList({ ...o, json }, ctx)));
  quietFlag(jobs.command("units <id>").description("list the compute units (DAG) of a job")).action(
    run((ctx, json, id: string, o: { quiet?: boolean }) => jobsUnits({ id, quiet: o.quiet, json }, ctx)),
  );
  jobs
    .command("cancel <id>")
    .description("cancel a job (exit 1 when it had already ended: nothing was cancelled)")
    .action(run((ctx, json, id: string) => jobsCancel({ id, json }, ctx)));
  jobs
    .command("logs <id>")
    .description("print every unit's log in DAG order (each line prefixed with its unit when there are several)")
    .option("-f, --follow", "keep printing new lines, as the job's live events bring them, until the job ends")
    .option("--unit <name>", "only this unit (name, e.g. train, or id)")
    .option("--interval-ms <ms>", "poll interval of --follow, for a server without live job events", positiveInt, DEFAULT_LOG_INTERVAL_MS)
    .action(
      run((ctx, json, id: string, o: { follow?: boolean; unit?: string; intervalMs: number }) => jobsLogs({ id, ...o, json }, ctx)),
    );
  watchFlags(
    jobs.command("watch <id>").description("follow a job's live events until it finishes; exit 0 only when it completed"),
  ).action(
    run((ctx, json, id: string, o: { intervalMs: number; timeoutS?: number }) =>
      jobsWatch({ id, intervalMs: o.intervalMs, timeoutS: o.timeoutS, json }, ctx),
    ),
  );

  // ---- artifacts ----
  const artifacts = program.command("artifacts").description("list and download job artifacts");
  quietFlag(artifacts.command("list <job-id>").description("list a job's artifacts")).action(
    run((ctx, json, jobId: string, o: { quiet?: boolean }) => artifactsList({ jobId, quiet: o.quiet, json }, ctx)),
  );
  artifacts
    .command("download <job-id>")
    .description("download artifacts, verifying each sha256")
    .option("--artifact <id>", "only this artifact")
    .option("--out <dir>", "destination directory (default ./artifacts-<job-id>)")
    .action(
      run((ctx, json, jobId: string, o: { artifact?: string; out?: string }) =>
        artifactsDownload({ jobId, artifact: o.artifact, out: o.out, json }, ctx),
      ),
    );

  // ---- usage ----
  const usage = program.command("usage").description("credits and compute used, and the usage export");
  usage
    .command("summary")
    .description("credit balance, totals and job counts")
    .action(run((ctx, json) => usageSummary({ json }, ctx)));
  usage
    .command("daily")
    .description("usage per day (UTC)")
    .option("--days <n>", "days back (server default 30, at most 90)", positiveInt)
    .action(run((ctx, json, o: { days?: number }) => usageDaily({ ...o, json }, ctx)));
  csvFlags(usage.command("export").description("usage per compute unit as CSV")).action(run((ctx, _json, o: CsvOptions) => usageExport(o, ctx)));

  // ---- credits ----
  const credits = program.command("credits").description("the credit ledger and statement");
  quietFlag(pageFlags(credits.command("ledger").description("ledger entries, newest first, under the current balance"))).action(
    run((ctx, json, o: ListOptions) => creditsLedger({ ...o, json }, ctx)),
  );
  csvFlags(credits.command("statement").description("the statement as CSV: opening balance, then each entry with the balance after it")).action(
    run((ctx, _json, o: CsvOptions) => creditsStatement(o, ctx)),
  );

  // ---- webhooks ----
  const webhooks = program.command("webhooks").description("webhook endpoints, their deliveries, and signature verification");
  webhooks
    .command("create <url>")
    .description("create an endpoint (deliveries are POSTed to the https <url>); prints its signing secret, shown this once only")
    .requiredOption("--event <type...>", "event types, e.g. job.completed job.failed")
    .option("--description <text>", "a note for yourself")
    .action(
      run((ctx, json, url: string, o: { event: string[]; description?: string }) =>
        webhooksCreate({ url, events: o.event, description: o.description, json }, ctx),
      ),
    );
  quietFlag(pageFlags(webhooks.command("list").description("list endpoints"))).action(
    run((ctx, json, o: ListOptions) => webhooksList({ ...o, json }, ctx)),
  );
  webhooks
    .command("test <id>")
    .description("queue a webhook.test delivery to the endpoint")
    .action(run((ctx, json, id: string) => webhooksTest({ id, json }, ctx)));
  webhooks
    .command("rotate <id>")
    .description("new signing secret; the previous one keeps signing for a grace period")
    .action(run((ctx, json, id: string) => webhooksRotate({ id, json }, ctx)));
  webhooks
    .command("delete <id>")
    .description("delete an endpoint")
    .action(run((ctx, json, id: string) => webhooksDelete({ id, json }, ctx)));
  quietFlag(
    pageFlags(
      webhooks
        .command("deliveries <id>")
        .description("list an endpoint's deliveries")
        .option("--status <status>", "only deliveries in this status (pending, delivered, failed)"),
    ),
  ).action(run((ctx, json, id: string, o: ListOptions & { status?: string }) => webhooksDeliveries({ id, ...o, json }, ctx)));
  webhooks
    .command("redeliver <id> <delivery-id>")
    .description("queue a new delivery of the same event")
    .action(run((ctx, json, id: string, deliveryId: string) => webhooksRedeliver({ id, deliveryId, json }, ctx)));
  webhooks
    .command("verify")
    .description("verify a received delivery's GPU-Agent-Signature header (exit 0 valid, 1 invalid)")
    .requiredOption("--body-file <file>", "the raw request body, exactly as received")
    .requiredOption("--signature <header>", "the GPU-Agent-Signature header value")
    .requiredOption("--secret <secret...>", "the endpoint's secret(s); give both during a rotation")
    .option("--tolerance-s <seconds>", "accepted timestamp age", (v) => Number(v), defaultToleranceSeconds)
    .action(
      run((ctx, json, o: { bodyFile: string; signature: string; secret: string[]; toleranceS: number }) =>
        webhooksVerify({ bodyFile: o.bodyFile, signature: o.signature, secrets: o.secret, toleranceS: o.toleranceS, json }, ctx),
      ),
    );

  // ---- admin ----
  const admin = program.command("admin").description("operator commands (admin token)");
  quietFlag(
    admin
      .command("create-customer")
      .description('create a customer; always prints {"customer_id", "api_key"} as JSON')
      .requiredOption("--email <email>", "login email")
      .requiredOption("--password <password>", "portal password")
      .requiredOption("--credits <n>", "opening credit grant", nonNegativeInt)
      .option("--if-missing", "a customer with this e-mail already is not an error: leave it as it is (no key, no credits)"),
    "print only the customer's id",
  ).action(
    run((ctx, json, o: { email: string; password: string; credits: number; ifMissing?: boolean; quiet?: boolean }) =>
      adminCreateCustomer({ ...o, json }, ctx),
    ),
  );
  admin
    .command("grant-credits")
    .description("grant credits to a customer")
    .requiredOption("--customer <id>", "customer id")
    .requiredOption("--amount <n>", "credits to add", positiveInt)
    .option("--reason <text>", "ledger note")
    .action(
      run((ctx, json, o: { customer: string; amount: number; reason?: string }) => adminGrantCredits({ ...o, json }, ctx)),
    );
  admin
    .command("enrollment-token")
    .description("mint a one-time node enrollment token")
    .addOption(new Option("--trust-level <level>", "trust level the node gets").choices(TRUST_LEVELS).makeOptionMandatory())
    .option("--ttl <seconds>", "token lifetime (server default 3600)", positiveInt)
    .action(run((ctx, json, o: { trustLevel: string; ttl?: number }) => adminEnrollmentToken({ ...o, json }, ctx)));
  quietFlag(admin.command("customers").description("list customers and their credit balances")).action(
    run((ctx, json, o: OutputMode) => adminCustomers({ ...o, json }, ctx)),
  );
  quietFlag(admin.command("nodes").description("list enrolled nodes")).action(run((ctx, json, o: OutputMode) => adminNodes({ ...o, json }, ctx)));
  const nodeActions: [NodeAction, string][] = [
    ["cordon", "place no new work on a node"],
    ["uncordon", "let a cordoned node take work again"],
    ["drain", "stop placing work on a node and tell it to wind down"],
    ["revoke", "revoke a node for good; its units are placed elsewhere"],
  ];
  for (const [action, description] of nodeActions) {
    admin
      .command(`${action} <node-id>`)
      .description(description)
      .action(run((ctx, json, id: string) => adminNodeAction(action, { id, json }, ctx)));
  }
  admin
    .command("set-trust-level <node-id>")
    .description("change a node's trust level")
    .addOption(new Option("--trust-level <level>", "the new trust level").choices(TRUST_LEVELS).makeOptionMandatory())
    .action(run((ctx, json, id: string, o: { trustLevel: string }) => adminSetTrustLevel({ id, trustLevel: o.trustLevel, json }, ctx)));
  admin
    .command("scheduler")
    .description("show scheduler leader, term and queue depths")
    .action(run((ctx, json) => adminScheduler({ json }, ctx)));

  // ---- shell completion ----
  program
    .command("completion")
    .description("print a completion script: source <(gpuctl completion bash), or zsh")
    .addArgument(new Argument("<shell>", "the shell").choices(COMPLETION_SHELLS))
    .action((shell: (typeof COMPLETION_SHELLS)[number]) => {
      deps.io.stdout(completionScript(program, shell));
      onExit(0);
    });

  refuseFlagsAsValues(program);
  return program;
}

/**
 * Runs gpuctl on `argv` (without the node and script paths) and resolves to
 * the process exit code; it never calls `process.exit` itself.
 */
export async function runCli(argv: string[], deps: CliDeps): Promise<number> {
  let exitCode = 0;
  const program = buildProgram(deps, (code) => {
    exitCode = code;
  });
  try {
    await program.parseAsync(argv, { from: "user" });
    return exitCode;
  } catch (err) {
    if (err instanceof CommanderError) {
      // Help and version exit 0; everything commander rejects is a usage error.
      return err.exitCode === 0 ? 0 : USAGE_EXIT_CODE;
    }
    return reportError(deps.io, err, argv.includes("--json"));
  }
}
