/**
 * CustomerService handlers: Sessions (login, me) and API keys. Sign-in and its throttle are
 * src/auth/sign-in.ts, accounts src/auth/accounts.ts, keys src/auth/api-keys.ts; API keys are
 * managed only from a signed-in session (the rpcs' access policy in the proto).
 */
import { optionalTimestamp } from "../proto-time.ts";
import type { MessageInitShape } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import type { HandlerContext, ServiceImpl } from "@connectrpc/connect";
import type { CustomerAccount } from "../../auth/accounts.ts";
import { customerAccount } from "../../auth/accounts.ts";
import { createApiKey, revokeCustomerApiKey } from "../../auth/api-keys.ts";
import { authorizeCall, authorizePublicCall } from "../../auth/authorize.ts";
import type { AuthorizeDeps } from "../../auth/authorize.ts";
import { signIn } from "../../auth/sign-in.ts";
import type { ApiKeySchema, CustomerSchema, CustomerService } from "../../gen/gpuagent/customer/v1/customer_pb.ts";
import { peerAddressHeader } from "../../platform/http-types.ts";
import type { ApiKeyRow } from "../../store/customers.ts";
import { listApiKeys } from "../../store/customers.ts";
import { pageRequest, toPage } from "../../store/pagination.ts";

const ts = optionalTimestamp;

function apiKeyMessage(row: ApiKeyRow): MessageInitShape<typeof ApiKeySchema> {
  // Never the hash, never the plaintext: only what lets a person recognise the key.
  return {
    id: row.id,
    name: row.name,
    prefix: row.prefix,
    scopes: row.scopes,
    createdAt: ts(row.created_at),
    lastUsedAt: ts(row.last_used_at),
    revokedAt: ts(row.revoked_at),
  };
}

function customerMessage({ customer, creditsBalance }: CustomerAccount): MessageInitShape<typeof CustomerSchema> {
  return { id: customer.id, email: customer.email, creditsBalance: BigInt(creditsBalance), createdAt: ts(customer.created_at) };
}

/** The identity part of CustomerService. */
export function createIdentityHandlers(deps: AuthorizeDeps): Partial<ServiceImpl<typeof CustomerService>> {
  const { db } = deps;
  // Authentication and the rpc's access policy (declared in the proto) are checked here, once.
  const caller = (ctx: HandlerContext) => authorizeCall(deps, ctx);

  // Session-only rpcs declare it in the proto; authorizeCall enforces it.
  const sessionCaller = caller;

  return {
    async login(req, ctx) {
      authorizePublicCall(deps, ctx);
      const peer = ctx.requestHeader.get(peerAddressHeader) ?? "unknown";
      const session = await signIn(deps, { email: req.email, password: req.password, peer });
      return { sessionToken: session.sessionToken, expiresAt: timestampFromDate(session.expiresAt), customer: customerMessage(session.account) };
    },

    async getMe(_req, ctx) {
      const principal = await caller(ctx);
      return { customer: customerMessage(await customerAccount(db, principal.customerId)), authMethod: principal.method, scopes: [...principal.scopes] };
    },

    async createApiKey(req, ctx) {
      const principal = await sessionCaller(ctx);
      const { key, row } = await createApiKey(db, principal.customerId, { name: req.name, scopes: req.scopes });
      return { key, apiKey: apiKeyMessage(row) };
    },

    async listApiKeys(req, ctx) {
      const principal = await sessionCaller(ctx);
      const page = pageRequest(req.limit, req.cursor);
      const rows = await listApiKeys(db, principal.customerId, page.limit + 1, page.after);
      const cut = toPage(rows, page, (r) => ({ at: r.created_at, id: r.id }));
      return { data: cut.rows.map(apiKeyMessage), page: cut.page };
    },

    async revokeApiKey(req, ctx) {
      const principal = await sessionCaller(ctx);
      return { apiKey: apiKeyMessage(await revokeCustomerApiKey(deps, principal.customerId, req.id)) };
    },
  };
}
