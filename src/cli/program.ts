/**
 * The gpuctl command tree (commander). This file only wires flags to the
 * action functions of the sibling files; each action takes its parsed
 * options and a {@link CliContext}, so tests call them without a process.
 *
 * Exit codes: 0 success, 1 failure (API error, failed job, bad checksum),
 * 2 usage error (unknown flag, bad value, missing credential).
 */
import { Command, CommanderError, InvalidArgumentError, Option } from "commander";
import type { Clock } from "../platform/clock.ts";
import { adminCreateCustomer, adminEnrollmentToken, adminGrantCredits, adminNodes, adminScheduler } from "./admin.ts";
import { defaultToleranceSeconds, webhooksVerify } from "./webhooks.ts";
import { artifactsDownload, artifactsList } from "./artifacts.ts";
import { createClient, DEFAULT_BASE_URL } from "./client.ts";
import type { CliContext } from "./context.ts";
import { datasetsGet, datasetsList, datasetsUpload } from "./datasets.ts";
import { DEFAULT_WATCH_INTERVAL_MS, JOB_DEFAULTS, jobsCancel, jobsCreate, jobsGet, jobsList, jobsUnits, jobsWatch } from "./jobs.ts";
import { reportError } from "./output.ts";
import type { Io } from "./output.ts";
import { DEFAULT_ENTRYPOINT, packagesGet, packagesList, packagesUpload } from "./packages.ts";
import { JOB_STATUSES, SENSITIVITIES, TRUST_LEVELS } from "./types.ts";

/** What a gpuctl run depends on; `cmd/gpuctl.ts` passes the real ones. */
export interface CliDeps {
  env: Record<string, string | undefined>;
  io: Io;
  clock: Clock;
  randomUUID: () => string;
  tmpDir: string;
  /** Defaults to the global fetch. */
  fetch?: typeof fetch;
}

/** Flags every command inherits from the program. */
interface GlobalOptions {
  url?: string;
  apiKey?: string;
  adminToken?: string;
  json?: boolean;
}

/** Usage errors exit 2 (commander's own default is 1, which we keep for failures). */
const USAGE_EXIT_CODE = 2;

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
      const client = createClient({
        baseUrl: g.url ?? deps.env["GPU_AGENT_URL"] ?? DEFAULT_BASE_URL,
        apiKey: g.apiKey ?? deps.env["GPU_AGENT_API_KEY"],
        adminToken: g.adminToken ?? deps.env["GPU_AGENT_ADMIN_TOKEN"],
        clock: deps.clock,
        ...(deps.fetch === undefined ? {} : { fetch: deps.fetch }),
      });
      const ctx: CliContext = { client, io: deps.io, clock: deps.clock, randomUUID: deps.randomUUID, tmpDir: deps.tmpDir };
      onExit(await fn(ctx, g.json === true, ...(args.slice(0, -1) as A)));
    };
  }

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
  datasets
    .command("list")
    .description("list datasets")
    .option("--limit <n>", "page size (max 100)", positiveInt)
    .option("--cursor <cursor>", "continue after a previous page")
    .action(run((ctx, json, o: { limit?: number; cursor?: string }) => datasetsList({ ...o, json }, ctx)));
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
  packages
    .command("list")
    .description("list training packages")
    .option("--limit <n>", "page size (max 100)", positiveInt)
    .option("--cursor <cursor>", "continue after a previous page")
    .action(run((ctx, json, o: { limit?: number; cursor?: string }) => packagesList({ ...o, json }, ctx)));
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
        new Option("--sensitivity <tier>", "data sensitivity tier").choices(SENSITIVITIES).default(JOB_DEFAULTS.sensitivity),
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
  jobs
    .command("list")
    .description("list jobs")
    .addOption(new Option("--status <status>", "only jobs in this status").choices(JOB_STATUSES))
    .option("--limit <n>", "page size (max 100)", positiveInt)
    .option("--cursor <cursor>", "continue after a previous page")
    .action(run((ctx, json, o: { status?: string; limit?: number; cursor?: string }) => jobsList({ ...o, json }, ctx)));
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

  // ---- webhooks ----
  const webhooks = program.command("webhooks").description("webhook helpers");
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
    .command("nodes")
    .description("list enrolled nodes")
    .action(run((ctx, json) => adminNodes({ json }, ctx)));
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
