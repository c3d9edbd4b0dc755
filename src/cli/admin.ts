/**
 * `gpuctl admin …`: operator commands over the SDK's admin client (`Authorization: Bearer
 * <admin token>`).
 */
import type { Node } from "../sdk/index.ts";
import { GpuAgentError, listAll } from "../sdk/index.ts";
import {
  CreateEnrollmentTokenResponseSchema,
  CustomerSchema,
  GetSchedulerStatusResponseSchema,
  GrantCreditsResponseSchema,
  NodeSchema,
} from "../gen/gpuagent/admin/v1/admin_pb.ts";
import type { CliContext, JsonOption } from "./context.ts";
import type { OutputMode, QuietOption, Table } from "./output.ts";
import { formatBytes, formatTime, messageJson, printAll, printFields, printJson, printMessage, printTable } from "./output.ts";

/** Options of `admin create-customer`. */
export interface CreateCustomerOptions extends JsonOption, QuietOption {
  email: string;
  password: string;
  credits: number;
  /** An existing customer with this e-mail is not an error: it is left as it is. */
  ifMissing?: boolean | undefined;
}

/**
 * Creates a customer with an opening credit grant. The output is always the JSON
 * `{"customer_id", "api_key"}` (DESIGN.md promises it, and scripts capture the key from it); the
 * key is shown only this once. `-q` prints the customer id alone.
 *
 * With `--if-missing` a customer that already has this e-mail is left untouched (no key, no
 * credits) and the command still succeeds, printing `{"customer_id", "api_key": ""}`, so a
 * set-up script can run twice; the customer then signs in with `gpuctl login`.
 */
export async function adminCreateCustomer(opts: CreateCustomerOptions, ctx: CliContext): Promise<number> {
  const admin = ctx.admin();
  let customerId: string;
  let apiKey = "";
  try {
    const res = await admin.customers.create({ email: opts.email, password: opts.password, credits: BigInt(opts.credits) });
    customerId = res.customerId;
    apiKey = res.apiKey;
  } catch (error) {
    if (opts.ifMissing !== true || !(error instanceof GpuAgentError && error.code === "STATE_CONFLICT")) throw error;
    const wanted = opts.email.trim().toLowerCase();
    const existing = (await listAll((p) => admin.customers.list(p))).find((c) => c.email.toLowerCase() === wanted);
    if (existing === undefined) throw error;
    customerId = existing.id;
    ctx.io.stderr(`customer ${opts.email} already exists (${customerId}); left as it is, no key made: sign in with gpuctl login --email ${opts.email}\n`);
  }
  if (opts.quiet === true) ctx.io.stdout(`${customerId}\n`);
  else printJson(ctx.io, { customer_id: customerId, api_key: apiKey });
  return 0;
}

/** Every customer (all pages). */
export async function adminCustomers(opts: OutputMode, ctx: CliContext): Promise<number> {
  const admin = ctx.admin();
  const customers = await listAll((p) => admin.customers.list(p));
  printAll(ctx.io, opts, CustomerSchema, customers, {
    columns: ["id", "email", "credits", "created"],
    row: (c) => [c.id, c.email, String(c.creditsBalance), formatTime(c.createdAt)],
    empty: "no customers",
  });
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
  const res = await ctx.admin().customers.grantCredits(opts.customer, {
    amount: BigInt(opts.amount),
    ...(opts.reason === undefined ? {} : { reason: opts.reason }),
  });
  if (opts.json) {
    printJson(ctx.io, { customer_id: opts.customer, ...(messageJson(GrantCreditsResponseSchema, res) as object) });
  } else {
    printFields(ctx.io, [
      ["customer_id", opts.customer],
      ["granted", opts.amount],
      ["credits_balance", res.creditsBalance],
      ["ledger_entry_id", res.ledgerEntryId],
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
  const res = await ctx.admin().enrollmentTokens.create({
    trustLevel: opts.trustLevel,
    ...(opts.ttl === undefined ? {} : { ttlSeconds: opts.ttl }),
  });
  if (opts.json) {
    printMessage(ctx.io, CreateEnrollmentTokenResponseSchema, res);
  } else {
    printFields(ctx.io, [
      ["token", res.token],
      ["expires_at", formatTime(res.expiresAt)],
      ["trust_level", res.trustLevel || opts.trustLevel],
    ]);
  }
  return 0;
}

const nodeTable: Table<Node> = {
  columns: ["id", "hostname", "trust", "state", "gpus", "cpu", "memory", "disk_free", "running", "reliability", "last_heartbeat", "isolation", "not_placing"],
  row: (n) => [
    n.id,
    n.hostname,
    n.trustLevel,
    n.state,
    n.gpus.map((g) => `${g.name || "gpu"} ${g.vramMb}MiB${g.declared ? "*" : ""}`).join(", "),
    String(n.cpuCores),
    formatBytes(n.memoryMb * 1024 * 1024),
    formatBytes(n.diskFreeMb * 1024 * 1024),
    String(n.runningUnits),
    // Done/lost over 30 days beside the score, so an operator sees what it rests on.
    `${n.reliability.toFixed(2)} (${n.unitsCompleted30d}/${n.unitsLost30d})`,
    formatTime(n.lastHeartbeatAt),
    n.isolation,
    // Why the placer sends it nothing (paused by its owner, sandbox unavailable …); "-" when it may take units.
    n.notPlacingReason || "-",
  ],
  empty: "no nodes enrolled",
};

/** Every enrolled node (all pages). */
export async function adminNodes(opts: OutputMode, ctx: CliContext): Promise<number> {
  const admin = ctx.admin();
  printAll(ctx.io, opts, NodeSchema, await listAll((p) => admin.nodes.list(p)), nodeTable);
  return 0;
}

/** A node state change of `gpuctl admin`. */
export type NodeAction = "cordon" | "uncordon" | "drain" | "revoke";

/** Options of the node state commands. */
export interface NodeActionOptions extends JsonOption {
  id: string;
}

/** Cordons, uncordons, drains or revokes a node; shows the node as it is afterwards. */
export async function adminNodeAction(action: NodeAction, opts: NodeActionOptions, ctx: CliContext): Promise<number> {
  showNode(ctx, await ctx.admin().nodes[action](opts.id), opts.json);
  return 0;
}

/** Options of `admin set-trust-level`. */
export interface SetTrustLevelOptions extends NodeActionOptions {
  trustLevel: string;
}

/** Changes a node's trust level (which sensitivity tiers it may run). */
export async function adminSetTrustLevel(opts: SetTrustLevelOptions, ctx: CliContext): Promise<number> {
  showNode(ctx, await ctx.admin().nodes.setTrustLevel(opts.id, opts.trustLevel), opts.json);
  return 0;
}

function showNode(ctx: CliContext, node: Node, json: boolean): void {
  if (json) printMessage(ctx.io, NodeSchema, node);
  else printTable(ctx.io, nodeTable.columns, [nodeTable.row(node)]);
}

/** Scheduler status: which replica leads, its term, queue depths. */
export async function adminScheduler(opts: JsonOption, ctx: CliContext): Promise<number> {
  const s = await ctx.admin().schedulerStatus();
  if (opts.json) {
    printMessage(ctx.io, GetSchedulerStatusResponseSchema, s);
    return 0;
  }
  printFields(ctx.io, [
    ["replica_id", s.replicaId],
    ["is_leader", String(s.isLeader)],
    ["leader_id", s.leaderId],
    ["term", s.term],
    ["nodes_online", s.nodesOnline],
  ]);
  printTable(
    ctx.io,
    ["kind", "pending", "ready", "running"],
    s.queues.map((q) => [q.kind, String(q.pending), String(q.ready), String(q.running)]),
    "no queues",
  );
  return 0;
}
