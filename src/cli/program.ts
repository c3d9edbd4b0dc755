/**
 * The gpuctl command tree (commander). This file only wires flags to the action functions of the
 * sibling files; each action takes its parsed options and a {@link CliContext}, so tests call
 * them without a process. Every call to the API goes through the SDK (src/sdk/).
 *
 * Exit codes: 0 success, 1 failure (API error, failed job, bad checksum),
 * 2 usage error (unknown flag, bad value, missing credential).
 */
import { Command, CommanderError, InvalidArgumentError, Option } from "commander";
import { JOB_STATUSES, SENSITIVITY_TIERS, TRUST_LEVELS } from "../sdk/index.ts";
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
import type { CliContext, CliDeps, ConnectionFlags } from "./context.ts";
import { DEFAULT_BASE_URL, createCliContext } from "./context.ts";
import type { ListOptions } from "./datasets.ts";
import { datasetsGet, datasetsList, datasetsUpload } from "./datasets.ts";
import { USAGE_EXIT_CODE } from "./errors.ts";
import { DEFAULT_WATCH_INTERVAL_MS, JOB_DEFAULTS, jobsCancel, jobsCreate, jobsGet, jobsList, jobsUnits, jobsWatch } from "./jobs.ts";
import { reportError } from "./output.ts";
import { DEFAULT_ENTRYPOINT, packagesGet, packagesList, packagesUpload } from "./packages.ts";
import { usageDaily, usageSummary } from "./usage.ts";
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

/**
 * Builds the program. `onExit` receives the exit code an action decided
 * (e.g. 1 for a failed job) since commander's `parseAsync` returns none.
 */
export function buildProgram(deps: CliDeps, onExit: (code: number) => void): Command {
  const program = new Command("gpuctl")
    .description("Command line for GPU-Agent: upload datasets and packages, run and watch training jobs, fetch artifacts.")
    .option("--url <url>", `API base URL (env GPU_AGENT_URL, default ${DEFAULT_BASE_URL})`)
    .option("--api-key <key>", "customer API key (env GPU_AGENT_API_KEY)")
    .option("--admin-token <token>", "admin token for `gpuctl admin` (env GPU_AGENT_ADMIN_TOKEN)")
    .option("--json", "print one machine-readable JSON document on stdout", false)
    .showHelpAfterError()
    .configureHelp({ showGlobalOptions: true })
    .exitOverride()
    .configureOutput({ writeOut: (s) => deps.io.stdout(s), writeErr: (s) => deps.io.stderr(s) });

  /** Wraps an action: builds the context from the global flags, records the exit code. */
  function run<A extends unknown[]>(fn: (ctx: CliContext, json: boolean, ...args: A) => Promise<number>) {
    return async (...args: unknown[]): Promise<void> => {
      const cmd = args[args.length - 1] as Command;
      const g = cmd.optsWithGlobals<GlobalOptions>();
      onExit(await fn(createCliContext(g, deps), g.json === true, ...(args.slice(0, -1) as A)));
    };
  }

  /** `--limit` and `--cursor` of the commands that show one page. */
  const pageFlags = (c: Command) =>
    c.option("--limit <n>", "page size (max 100)", positiveInt).option("--cursor <cursor>", "continue after a previous page");

  // ---- datasets ----
  const datasets = program.command("datasets").description("upload and inspect datasets");
  datasets
    .command("upload <file>")
    .description("hash, upload (with a progress bar) and finalize a dataset file")
    .option("--name <name>", "dataset name (default: the file name)")
    .option("--format <format>", "format such as csv or jsonl (default: the file extension)")
    .action(
      run((ctx, json, file: string, o: { name?: string; format?: string }) =>
        datasetsUpload({ file, name: o.name, format: o.format, json }, ctx),
      ),
    );
  pageFlags(datasets.command("list").description("list datasets")).action(
    run((ctx, json, o: ListOptions) => datasetsList({ ...o, json }, ctx)),
  );
  datasets
    .command("get <id>")
    .description("show one dataset")
    .action(run((ctx, json, id: string) => datasetsGet({ id, json }, ctx)));

  // ---- packages ----
  const packages = program.command("packages").description("upload and inspect training packages");
  packages
    .command("upload <path>")
    .description("upload a training package: a .zip file, or a directory zipped on the fly")
    .option("--name <name>", "package name (default: the file or directory name)")
    .option("--entrypoint <file>", "Python entry point inside the package", DEFAULT_ENTRYPOINT)
    .action(
      run((ctx, json, p: string, o: { name?: string; entrypoint?: string }) =>
        packagesUpload({ path: p, name: o.name, entrypoint: o.entrypoint, json }, ctx),
      ),
    );
  pageFlags(packages.command("list").description("list training packages")).action(
    run((ctx, json, o: ListOptions) => packagesList({ ...o, json }, ctx)),
  );
  packages
    .command("get <id>")
    .description("show one training package")
    .action(run((ctx, json, id: string) => packagesGet({ id, json }, ctx)));

  // ---- jobs ----
  const jobs = program.command("jobs").description("create, watch and cancel training jobs");
  const watchFlags = (c: Command) =>
    c
      .option("--interval-ms <ms>", "poll interval", positiveInt, DEFAULT_WATCH_INTERVAL_MS)
      .option("--timeout-s <s>", "give up watching after this many seconds", positiveInt);
  watchFlags(
    jobs
      .command("create")
      .description("create a training job (retry-safe: always sends an Idempotency-Key)")
      .requiredOption("--dataset <id>", "dataset id")
      .requiredOption("--package <id>", "training package id")
      .option("--name <name>", "job name (default derived from the idempotency key)")
      .option("--vram-mb <mb>", "GPU memory the training needs", positiveInt, JOB_DEFAULTS.vramMb)
      .option("--disk-mb <mb>", "disk the job needs", positiveInt, JOB_DEFAULTS.diskMb)
      .option("--max-runtime-seconds <s>", "runtime limit", positiveInt, JOB_DEFAULTS.maxRuntimeSeconds)
      .addOption(
        new Option("--sensitivity <tier>", "data sensitivity tier").choices(SENSITIVITY_TIERS).default(JOB_DEFAULTS.sensitivity),
      )
      .option("--idempotency-key <key>", "reuse to retry a create safely (default: a random UUID)")
      .option("--watch", "watch the job until it finishes"),
  ).action(
    run(
      (
        ctx,
        json,
        o: {
          dataset: string;
          package: string;
          name?: string;
          vramMb: number;
          diskMb: number;
          maxRuntimeSeconds: number;
          sensitivity: string;
          idempotencyKey?: string;
          watch?: boolean;
          intervalMs: number;
          timeoutS?: number;
        },
      ) => jobsCreate({ ...o, json }, ctx),
    ),
  );
  jobs
    .command("get <id>")
    .description("show one job")
    .action(run((ctx, json, id: string) => jobsGet({ id, json }, ctx)));
  pageFlags(
    jobs
      .command("list")
      .description("list jobs")
      .addOption(new Option("--status <status>", "only jobs in this status").choices(JOB_STATUSES)),
  ).action(run((ctx, json, o: ListOptions & { status?: string }) => jobsList({ ...o, json }, ctx)));
  jobs
    .command("units <id>")
    .description("list the compute units (DAG) of a job")
    .action(run((ctx, json, id: string) => jobsUnits({ id, json }, ctx)));
  jobs
    .command("cancel <id>")
    .description("cancel a job")
    .action(run((ctx, json, id: string) => jobsCancel({ id, json }, ctx)));
  watchFlags(
    jobs.command("watch <id>").description("follow a job until it finishes; exit 0 only when it completed"),
  ).action(
    run((ctx, json, id: string, o: { intervalMs: number; timeoutS?: number }) =>
      jobsWatch({ id, intervalMs: o.intervalMs, timeoutS: o.timeoutS, json }, ctx),
    ),
  );

  // ---- artifacts ----
  const artifacts = program.command("artifacts").description("list and download job artifacts");
  artifacts
    .command("list <job-id>")
    .description("list a job's artifacts")
    .action(run((ctx, json, jobId: string) => artifactsList({ jobId, json }, ctx)));
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
  const usage = program.command("usage").description("credits and compute used");
  usage
    .command("summary")
    .description("credit balance, totals and job counts")
    .action(run((ctx, json) => usageSummary({ json }, ctx)));
  usage
    .command("daily")
    .description("usage per day (UTC)")
    .option("--days <n>", "days back (server default 30, at most 90)", positiveInt)
    .action(run((ctx, json, o: { days?: number }) => usageDaily({ ...o, json }, ctx)));

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
  pageFlags(webhooks.command("list").description("list endpoints")).action(
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
  pageFlags(
    webhooks
      .command("deliveries <id>")
      .description("list an endpoint's deliveries")
      .option("--status <status>", "only deliveries in this status (pending, delivered, failed)"),
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
  admin
    .command("create-customer")
    .description('create a customer; always prints {"customer_id", "api_key"} as JSON')
    .requiredOption("--email <email>", "login email")
    .requiredOption("--password <password>", "portal password")
    .requiredOption("--credits <n>", "opening credit grant", nonNegativeInt)
    .action(
      run((ctx, json, o: { email: string; password: string; credits: number }) => adminCreateCustomer({ ...o, json }, ctx)),
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
  admin
    .command("customers")
    .description("list customers and their credit balances")
    .action(run((ctx, json) => adminCustomers({ json }, ctx)));
  admin
    .command("nodes")
    .description("list enrolled nodes")
    .action(run((ctx, json) => adminNodes({ json }, ctx)));
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
