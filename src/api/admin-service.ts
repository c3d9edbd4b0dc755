/**
 * AdminService: operators create customers (with an opening credit grant and a
 * first API key: src/auth/accounts.ts), grant credits (src/billing/grants.ts),
 * mint node enrollment tokens and manage nodes (src/agent-streams/node-admin.ts),
 * and read them as the scheduler knows them (src/scheduling/node-views.ts).
 */
import type { MessageInitShape } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import type { HandlerContext, ServiceImpl } from "@connectrpc/connect";
import { changeNodeState, mintEnrollmentToken } from "../agent-streams/node-admin.ts";
import type { NodeAdminDeps } from "../agent-streams/node-admin.ts";
import type { SessionRegistry } from "../agent-streams/session-registry.ts";
import { createCustomerAccount, customerAccountsPage } from "../auth/accounts.ts";
import { requireAdmin } from "../auth/authenticate.ts";
import { grantCreditsToCustomer } from "../billing/grants.ts";
import type { AdminService, NodeSchema } from "../gen/gpuagent/admin/v1/admin_pb.ts";
import type { NodeState, TrustLevel } from "../store/nodes.ts";
import type { NodeView } from "../scheduling/node-views.ts";
import { changeNodeTrustLevel, nodeView, nodeViewsPage } from "../scheduling/node-views.ts";
import { pageRequest } from "../store/pagination.ts";
import { validationError } from "../platform/errors.ts";

const trustLevels: readonly TrustLevel[] = ["community", "verified", "controlled"];

/** What the AdminService needs (a subset of ControlPlaneDeps): node administration's. */
export type AdminServiceDeps = NodeAdminDeps;

/** Builds the AdminService implementation. */
export function createAdminService(deps: AdminServiceDeps, sessions: SessionRegistry, adminToken: string): Partial<ServiceImpl<typeof AdminService>> {
  const { db, clock } = deps;
  const now = () => new Date(clock.now());
  const admin = (ctx: HandlerContext) => requireAdmin(ctx.requestHeader, adminToken);

  function trustLevelOf(value: string): TrustLevel {
    if (!(trustLevels as readonly string[]).includes(value)) throw validationError(`trust_level must be one of ${trustLevels.join(", ")}`, { field: "trust_level" });
    return value as TrustLevel;
  }

  function nodeMessage({ row, runningUnits, unitsCompleted, unitsLost, reliability, notPlacingReason }: NodeView): MessageInitShape<typeof NodeSchema> {
    const c = row.capabilities;
    return {
      id: row.id,
      hostname: row.hostname,
      trustLevel: row.trust_level,
      state: row.state,
      cpuCores: c.cpuCores ?? 0,
      memoryMb: c.memoryMb ?? 0,
      diskFreeMb: c.diskFreeMb ?? 0,
      gpus: (c.gpus ?? []).map((g) => ({
        index: g.index ?? 0,
        name: g.name ?? "",
        vramMb: g.vramMb ?? 0,
        declared: g.declared ?? false,
        uuid: g.uuid ?? "",
        computeCapability: g.computeCapability ?? "",
        driverVersion: g.driverVersion ?? "",
        cudaVersion: g.cudaVersion ?? "",
      })),
      lastHeartbeatAt: row.last_heartbeat_at === null ? undefined : timestampFromDate(row.last_heartbeat_at),
      enrolledAt: timestampFromDate(row.enrolled_at),
      runningUnits,
      unitsCompleted30d: unitsCompleted,
      unitsLost30d: unitsLost,
      reliability,
      isolation: row.isolation,
      isolationReason: row.isolation_reason,
      isolationLimits: row.isolation_limits,
      paused: row.owner_paused,
      available: row.owner_available,
      withinWindow: row.owner_within_window,
      reservedVramMb: row.reserved_vram_mb,
      maxUnits: row.max_units,
      notPlacingReason,
    };
  }

  async function changeState(ctx: HandlerContext, id: string, state: NodeState) {
    admin(ctx);
    return { node: nodeMessage(await nodeView(deps, await changeNodeState(deps, sessions, id, state))) };
  }

  return {
    async createCustomer(req, ctx) {
      admin(ctx);
      const { customer, creditsBalance, apiKey } = await createCustomerAccount(db, { email: req.email, password: req.password, credits: Number(req.credits) }, now());
      return {
        customerId: customer.id,
        apiKey,
        customer: { id: customer.id, email: customer.email, creditsBalance: BigInt(creditsBalance), createdAt: timestampFromDate(customer.created_at) },
      };
    },

    async listCustomers(req, ctx) {
      admin(ctx);
      const { rows, page } = await customerAccountsPage(db, pageRequest(req.limit, req.cursor));
      return {
        data: rows.map(({ customer: c, creditsBalance }) => ({ id: c.id, email: c.email, creditsBalance: BigInt(creditsBalance), createdAt: timestampFromDate(c.created_at) })),
        page,
      };
    },

    async grantCredits(req, ctx) {
      admin(ctx);
      const { entry, balance } = await grantCreditsToCustomer(db, req.customerId, { amount: Number(req.amount), reason: req.reason }, now());
      return { ledgerEntryId: entry.id, creditsBalance: BigInt(balance) };
    },

    async createEnrollmentToken(req, ctx) {
      admin(ctx);
      const trustLevel = trustLevelOf(req.trustLevel);
      const { token, expiresAt } = await mintEnrollmentToken(deps, trustLevel, req.ttlSeconds);
      return { token, expiresAt: timestampFromDate(expiresAt), trustLevel };
    },

    async listNodes(req, ctx) {
      admin(ctx);
      const { views, page } = await nodeViewsPage(deps, pageRequest(req.limit, req.cursor));
      return { data: views.map(nodeMessage), page };
    },

    cordonNode: (req, ctx) => changeState(ctx, req.id, "cordoned"),
    uncordonNode: (req, ctx) => changeState(ctx, req.id, "online"),
    drainNode: (req, ctx) => changeState(ctx, req.id, "draining"),
    revokeNode: (req, ctx) => changeState(ctx, req.id, "revoked"),

    async setNodeTrustLevel(req, ctx) {
      admin(ctx);
      return { node: nodeMessage(await changeNodeTrustLevel(deps, req.id, trustLevelOf(req.trustLevel))) };
    },
  };
}
