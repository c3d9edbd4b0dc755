/**
 * The operator client: a typed client over the generated Connect client of
 * `gpuagent.admin.v1.AdminService`, authenticated with `Authorization: Bearer <admin token>`.
 * It shares the customer client's core (src/sdk/core.ts): the same {@link GpuAgentError} codes,
 * the same 429 policy, the same injectable clock.
 *
 * ```ts
 * const admin = createGpuAgentAdminClient({ baseUrl, adminToken: process.env.GPU_AGENT_ADMIN_TOKEN });
 * const { customerId, apiKey } = await admin.customers.create({ email, password, credits: 1000n });
 * const { token } = await admin.enrollmentTokens.create({ trustLevel: "verified", ttlSeconds: 3600 });
 * ```
 */
import type { MessageInitShape } from "@bufbuild/protobuf";
import type { Client } from "@connectrpc/connect";
import { createClient } from "@connectrpc/connect";
import { AdminService } from "../gen/gpuagent/admin/v1/admin_pb.ts";
import type {
  CreateCustomerRequestSchema,
  CreateCustomerResponse,
  CreateEnrollmentTokenRequestSchema,
  CreateEnrollmentTokenResponse,
  GetSchedulerStatusResponse,
  GrantCreditsResponse,
  ListCustomersResponse,
  ListNodesResponse,
  Node,
} from "../gen/gpuagent/admin/v1/admin_pb.ts";
import type { CallOpts, ClientOptionsBase, PageOptions } from "./core.ts";
import { callOptions as co, createSdkCore, pageRequest as page, required } from "./core.ts";

/** Trust levels a node may hold (and an enrollment token may grant), lowest first. */
export const TRUST_LEVELS = ["community", "verified", "controlled"] as const;

/** How {@link createGpuAgentAdminClient} is configured. */
export interface GpuAgentAdminClientOptions extends ClientOptionsBase {
  /** The control plane's admin token (`GPU_AGENT_ADMIN_TOKEN`), sent as `authorization: Bearer`. */
  adminToken: string;
}

/** Customers and their credits. */
export interface AdminCustomersApi {
  /** Creates a customer with an opening credit grant and a first API key (its plaintext is in the answer, once). */
  create(body: MessageInitShape<typeof CreateCustomerRequestSchema>, opts?: CallOpts): Promise<CreateCustomerResponse>;
  list(page?: PageOptions, opts?: CallOpts): Promise<ListCustomersResponse>;
  /** Adds `amount` credits to the customer's balance; answers the new balance. */
  grantCredits(customerId: string, grant: { amount: bigint; reason?: string }, opts?: CallOpts): Promise<GrantCreditsResponse>;
}

/** Home nodes. Every state change answers the node as it is afterwards. */
export interface AdminNodesApi {
  list(page?: PageOptions, opts?: CallOpts): Promise<ListNodesResponse>;
  /** No new work is placed on the node; what runs there keeps running. */
  cordon(id: string, opts?: CallOpts): Promise<Node>;
  uncordon(id: string, opts?: CallOpts): Promise<Node>;
  /** The node takes no new work and is told to wind down (it hears it again on its next Hello). */
  drain(id: string, opts?: CallOpts): Promise<Node>;
  setTrustLevel(id: string, trustLevel: string, opts?: CallOpts): Promise<Node>;
  /** The node may never connect again; its units are placed elsewhere. */
  revoke(id: string, opts?: CallOpts): Promise<Node>;
}

/** Node enrollment tokens. */
export interface AdminEnrollmentTokensApi {
  /** Mints a one-time token for `gpu-agent enroll --token` (server default lifetime 3600 s). */
  create(body: MessageInitShape<typeof CreateEnrollmentTokenRequestSchema>, opts?: CallOpts): Promise<CreateEnrollmentTokenResponse>;
}

/** The typed client returned by {@link createGpuAgentAdminClient}. */
export interface GpuAgentAdminClient {
  readonly baseUrl: string;
  /** The generated Connect client (authenticated, retrying). Its errors are raw ConnectErrors. */
  readonly rpc: Client<typeof AdminService>;
  readonly customers: AdminCustomersApi;
  readonly nodes: AdminNodesApi;
  readonly enrollmentTokens: AdminEnrollmentTokensApi;
  /** Which replica leads the scheduler, its term, queue depths and nodes online. */
  schedulerStatus(opts?: CallOpts): Promise<GetSchedulerStatusResponse>;
}

/** Builds an operator client; nothing is sent until a method is called. */
export function createGpuAgentAdminClient(options: GpuAgentAdminClientOptions): GpuAgentAdminClient {
  const core = createSdkCore(options, (header) => {
    if (options.adminToken !== "") header.set("authorization", `Bearer ${options.adminToken}`);
  });
  const { call } = core;
  const rpc = createClient(AdminService, core.transport);

  return {
    baseUrl: core.baseUrl,
    rpc,
    customers: {
      create: (body, opts) => call(() => rpc.createCustomer(body, co(opts))),
      list: (p, opts) => call(() => rpc.listCustomers(page(p), co(opts))),
      grantCredits: (customerId, grant, opts) =>
        call(() => rpc.grantCredits({ customerId, amount: grant.amount, reason: grant.reason ?? "" }, co(opts))),
    },
    nodes: {
      list: (p, opts) => call(() => rpc.listNodes(page(p), co(opts))),
      cordon: async (id, opts) => required((await call(() => rpc.cordonNode({ id }, co(opts)))).node, "CordonNode"),
      uncordon: async (id, opts) => required((await call(() => rpc.uncordonNode({ id }, co(opts)))).node, "UncordonNode"),
      drain: async (id, opts) => required((await call(() => rpc.drainNode({ id }, co(opts)))).node, "DrainNode"),
      setTrustLevel: async (id, trustLevel, opts) =>
        required((await call(() => rpc.setNodeTrustLevel({ id, trustLevel }, co(opts)))).node, "SetNodeTrustLevel"),
      revoke: async (id, opts) => required((await call(() => rpc.revokeNode({ id }, co(opts)))).node, "RevokeNode"),
    },
    enrollmentTokens: {
      create: (body, opts) => call(() => rpc.createEnrollmentToken(body, co(opts))),
    },
    schedulerStatus: (opts) => call(() => rpc.getSchedulerStatus({}, co(opts))),
  };
}
