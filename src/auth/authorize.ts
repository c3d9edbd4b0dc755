/**
 * The access check of every customer rpc, driven by the rpc's
 * `(gpuagent.customer.v1.access)` option in the proto: public, session only,
 * or an API key scope. Handlers call `authorizeCall(deps, ctx)` first and never
 * repeat the policy in code, so the contract, the check and the docs agree.
 *
 * Once the caller is known it also takes one request from the caller's general
 * request limit and sets the `X-RateLimit-*` headers (src/limits), before the
 * scope check, so a refused or failing call still reports the limit.
 */
import { getOption, hasOption } from "@bufbuild/protobuf";
import type { DescMethod } from "@bufbuild/protobuf";
import type { HandlerContext } from "@connectrpc/connect";
import { ApiError } from "../platform/errors.ts";
import { access } from "../gen/gpuagent/customer/v1/access_pb.ts";
import type { AccessPolicy } from "../gen/gpuagent/customer/v1/access_pb.ts";
import { enforceAnonymousLimit, enforceRequestLimits } from "../limits/request-limits.ts";
import type { RequestLimitDeps } from "../limits/request-limits.ts";
import type { ApiKeyCache, CustomerPrincipal } from "./authenticate.ts";
import { authenticateCustomer, requireScope } from "./authenticate.ts";
import { isScope } from "./scopes.ts";
import { requireCsrfForCookieSession } from "./session-cookie.ts";

/** What the access check needs (a subset of ControlPlaneDeps): the request limits' and the API key cache. */
export interface AuthorizeDeps extends RequestLimitDeps {
  /** Recently verified API keys (see ApiKeyCache). */
  readonly apiKeyCache: ApiKeyCache;
}

/** Access policies by method: reading an option decodes it from the descriptor (~20 µs), so each is read once. */
const policies = new WeakMap<DescMethod, AccessPolicy | undefined>();

/** The rpc's `(gpuagent.customer.v1.access)` option, or undefined where it declares none. */
function accessPolicyOf(method: DescMethod): AccessPolicy | undefined {
  if (policies.has(method)) return policies.get(method);
  const policy = hasOption(method, access) ? getOption(method, access) : undefined;
  policies.set(method, policy);
  return policy;
}

/** Authenticates the caller, applies its request limit and enforces the rpc's access policy; returns the principal. */
export async function authorizeCall(deps: AuthorizeDeps, ctx: HandlerContext): Promise<CustomerPrincipal> {
  const policy = accessPolicyOf(ctx.method);
  let principal: CustomerPrincipal;
  try {
    // A state-changing call authenticated by the portal's cookie must prove it comes from the portal's own page.
    requireCsrfForCookieSession(ctx.requestHeader, ctx.requestMethod);
    principal = await authenticateCustomer(deps.db, ctx.requestHeader, new Date(deps.clock.now()), deps.apiKeyCache);
  } catch (error) {
    // A caller who could not authenticate is limited (and told so) by its address.
    enforceAnonymousLimit(deps, ctx);
    throw error;
  }
  await enforceRequestLimits(deps, ctx, principal);
  if (policy?.sessionOnly === true && principal.method !== "session") {
    throw new ApiError("API_KEY_SCOPE_DENIED", "API keys are managed from a signed-in portal session (Authorization: Bearer <session token>), not with an API key");
  }
  const scope = policy?.scope ?? "";
  if (scope !== "") {
    if (!isScope(scope)) throw new Error(`rpc ${ctx.method.name} declares unknown scope ${scope}`);
    requireScope(principal, scope);
  }
  return principal;
}

/** For public rpcs (no credentials): the per-address limit and its headers. */
export function authorizePublicCall(deps: AuthorizeDeps, ctx: HandlerContext): void {
  enforceAnonymousLimit(deps, ctx);
}
