/**
 * `gpuctl admin …`: operator commands, authenticated with the admin token
 * (`Authorization: Bearer`).
 */
import { listAll } from "./client.ts";
import type { CliContext, JsonOption } from "./context.ts";
import { formatBytes, printFields, printJson, printTable } from "./output.ts";

/** Options of `admin create-customer`. */
export interface CreateCustomerOptions extends JsonOption {
  email: string;
  password: string;
  credits: number;
}

/**
 * Creates a customer with an opening credit grant. The output is always the
 * JSON `{"customer_id", "api_key"}` (DESIGN.md promises it, and scripts
 * capture the key from it); the key is shown only this once.
 */
export async function adminCreateCustomer(opts: CreateCustomerOptions, ctx: CliContext): Promise<number> {
  const res = await ctx.client.createCustomer({ email: opts.email, password: opts.password, credits: opts.credits });
  printJson(ctx.io, { customer_id: res.customer_id, api_key: res.api_key });
  return 0;
}

/** Options of `admin grant-credits`. */
export interface GrantCreditsOptions extends JsonOption {
  customer: string;
  amount: number;
  reason?: string | undefined;
}

/** Grants credits; prints the new balance. */
export async function adminGrantCredits(opts: GrantCreditsOptions, ctx: CliContext): Promise<number> {
  const res = await ctx.client.grantCredits(opts.customer, {
    amount: opts.amount,
    ...(opts.reason === undefined ? {} : { reason: opts.reason }),
  });
  if (opts.json) {
    printJson(ctx.io, { customer_id: opts.customer, ...res });
  } else {
    printFields(ctx.io, [
      ["customer_id", opts.customer],
      ["granted", opts.amount],
      ["credits_balance", res.credits_balance],
      ["ledger_entry_id", res.ledger_entry_id],
    ]);
  }
  return 0;
}

/** Options of `admin enrollment-token`. */
export interface EnrollmentTokenOptions extends JsonOption {
  trustLevel: string;
  ttl?: number | undefined;
}

/** Mints a one-time node enrollment token (for `gpu-agent enroll --token`). */
export async function adminEnrollmentToken(opts: EnrollmentTokenOptions, ctx: CliContext): Promise<number> {
  const res = await ctx.client.createEnrollmentToken({
    trust_level: opts.trustLevel,
    ...(opts.ttl === undefined ? {} : { ttl_seconds: opts.ttl }),
  });
  if (opts.json) {
    printJson(ctx.io, res);
  } else {
    printFields(ctx.io, [
      ["token", res.token],
      ["expires_at", res.expires_at],
      ["trust_level", res.trust_level ?? opts.trustLevel],
    ]);
  }
  return 0;
}

/** Every enrolled node (all pages). */
export async function adminNodes(opts: JsonOption, ctx: CliContext): Promise<number> {
  const nodes = await listAll((cursor) => ctx.client.listNodes({ limit: 100, cursor }));
  if (opts.json) {
    printJson(ctx.io, { data: nodes });
    return 0;
  }
  printTable(
    ctx.io,
    ["id", "hostname", "trust", "state", "gpus", "cpu", "memory", "disk_free", "running", "last_heartbeat"],
    nodes.map((n) => [
      n.id,
      n.hostname ?? "",
      n.trust_level ?? "",
      n.state ?? "",
      (n.gpus ?? []).map((g) => `${g.name ?? "gpu"} ${g.vram_mb ?? 0}MiB${g.declared === true ? "*" : ""}`).join(", "),
      String(n.cpu_cores ?? ""),
      n.memory_mb === undefined ? "" : formatBytes(n.memory_mb * 1024 * 1024),
      n.disk_free_mb === undefined ? "" : formatBytes(n.disk_free_mb * 1024 * 1024),
      String(n.running_units ?? 0),
      n.last_heartbeat_at ?? "",
    ]),
    "no nodes enrolled",
  );
  return 0;
}

/** Scheduler status: which replica leads, its term, queue depths. */
export async function adminScheduler(opts: JsonOption, ctx: CliContext): Promise<number> {
  const s = await ctx.client.getSchedulerStatus();
  if (opts.json) {
    printJson(ctx.io, s);
    return 0;
  }
  printFields(ctx.io, [
    ["replica_id", s.replica_id],
    ["is_leader", String(s.is_leader ?? false)],
    ["leader_id", s.leader_id],
    ["term", s.term],
    ["nodes_online", s.nodes_online ?? 0],
  ]);
  printTable(
    ctx.io,
    ["kind", "pending", "ready", "running"],
    (s.queues ?? []).map((q) => [q.kind ?? "", String(q.pending ?? 0), String(q.ready ?? 0), String(q.running ?? 0)]),
    "no queues",
  );
  return 0;
}
