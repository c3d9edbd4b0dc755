/**
 * CustomerService handlers: Sessions (login, me) and API keys.
 *
 * Login is the one customer endpoint without authentication, so it is built
 * against guessing and against learning which e-mails have accounts: the same
 * work (one scrypt) and the same answers whether or not the e-mail exists, one
 * message for every wrong pair, and throttling per (client address, e-mail)
 * pair and per address, in the database (src/auth/login-throttle.ts).
 * API keys are managed only from a signed-in session: a leaked key must not be
 * able to mint more keys or revoke the owner's.
 */
import { optionalTimestamp } from "../proto-time.ts";
import type { MessageInitShape } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import type { HandlerContext, ServiceImpl } from "@connectrpc/connect";
import type { CustomerPrincipal } from "../../auth/authenticate.ts";
import { authorizeCall, authorizePublicCall } from "../../auth/authorize.ts";
import type { AuthorizeDeps } from "../../auth/authorize.ts";
import { admitLoginAttempt, loginSucceeded } from "../../auth/login-throttle.ts";
import { hashPassword, verifyPassword } from "../../auth/passwords.ts";
import { allScopes, isScope } from "../../auth/scopes.ts";
import type { ApiKeySchema, CustomerSchema, CustomerService } from "../../gen/gpuagent/customer/v1/customer_pb.ts";
import { hashSecret, isUuid, newId, newSecret } from "../../platform/ids.ts";
import { peerAddressHeader } from "../../platform/http-types.ts";
import type { ApiKeyRow } from "../../store/customers.ts";
import {
  countActiveApiKeys,
  creditBalance,
  findCustomer,
  findCustomerByEmail,
  insertApiKey,
  insertSession,
  listApiKeys,
  lockCustomer,
  revokeApiKey,
} from "../../store/customers.ts";
import { pageRequest, toPage } from "../../store/pagination.ts";
import { apiKeyPrefix } from "../admin-service.ts";
import { ApiError, validationError } from "../../platform/errors.ts";

/** How long a portal session lasts. */
export const sessionTtlSeconds = 12 * 60 * 60;

/** Most API keys a customer may hold unrevoked; revoking one frees a slot. */
export const maxActiveApiKeys = 50;

const apiKeyNameMax = 100;
// scrypt's cost hardly grows with input length, but a bound keeps request bodies and logs sane.
const passwordMax = 1024;
const emailMax = 320;
const wrongCredentials = "e-mail or password is wrong";

// One scrypt hash with the production parameters, computed once, so an unknown
// e-mail costs the same verification as a known one.
let dummyHash: Promise<string> | undefined;
function dummyPasswordHash(): Promise<string> {
  dummyHash ??= hashPassword(newSecret("dummy_"));
  return dummyHash;
}

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

/** Validates and de-duplicates requested scopes (order of first mention kept). */
function requireScopes(scopes: readonly string[]): string[] {
  if (scopes.length === 0) {
    throw validationError(`scopes must name at least one of ${allScopes.join(", ")}`, { field: "scopes" });
  }
  const unique: string[] = [];
  for (const scope of scopes) {
    if (!isScope(scope)) {
      throw validationError(`unknown scope ${JSON.stringify(scope)}; known scopes are ${allScopes.join(", ")}`, { field: "scopes", scope });
    }
    if (!unique.includes(scope)) unique.push(scope);
  }
  return unique;
}

/** The identity part of CustomerService. */
export function createIdentityHandlers(deps: AuthorizeDeps): Partial<ServiceImpl<typeof CustomerService>> {
  const { db, clock } = deps;
  const now = () => new Date(clock.now());
  // Authentication and the rpc's access policy (declared in the proto) are checked here, once.
  const caller = (ctx: HandlerContext) => authorizeCall(deps, ctx);

  // Session-only rpcs declare it in the proto; authorizeCall enforces it.
  const sessionCaller = caller;

  async function customerMessage(id: string): Promise<MessageInitShape<typeof CustomerSchema>> {
    const customer = await findCustomer(db, id);
    if (customer === undefined) throw new ApiError("CUSTOMER_AUTH_REQUIRED", "the account no longer exists; sign in again");
    return { id: customer.id, email: customer.email, creditsBalance: BigInt(await creditBalance(db, id)), createdAt: ts(customer.created_at) };
  }

  return {
    async login(req, ctx) {
      authorizePublicCall(deps, ctx);
      const email = req.email.trim();
      if (email === "" || email.length > emailMax) throw validationError("email is required", { field: "email" });
      // PostgreSQL text cannot hold U+0000: the lookup would fail (a 500), so it is bad input.
      if (email.includes("\u0000")) throw validationError("email must not contain NUL (U+0000) characters", { field: "email" });
      if (req.password === "" || req.password.length > passwordMax) {
        throw validationError(`password must be 1 to ${passwordMax} characters`, { field: "password" });
      }
      const at = now();
      // Counted before the password is checked, and a locked pair refused before it is: a lock also
      // stops guessing of the right one. Nothing here depends on whether the e-mail has an account.
      const peer = ctx.requestHeader.get(peerAddressHeader) ?? "unknown";
      const attempt = await admitLoginAttempt(db, deps.config.limits.login, peer, email, at);
      const candidate = await findCustomerByEmail(db, email);
      const ok = await verifyPassword(req.password, candidate?.password_hash ?? (await dummyPasswordHash()));
      const signedIn = candidate !== undefined && ok;
      // An address out of budget still lets in the pairs that signed in from it before, and only after
      // a correct password: to everyone else every attempt there looks the same.
      if (attempt.addressRefusal !== undefined && !(signedIn && attempt.trusted)) throw attempt.addressRefusal;
      if (!signedIn) throw new ApiError("CUSTOMER_AUTH_REQUIRED", wrongCredentials);
      await loginSucceeded(db, attempt, at);
      const token = newSecret("st_");
      const expiresAt = new Date(at.getTime() + sessionTtlSeconds * 1000);
      await insertSession(db, { id: newId(), customerId: candidate.id, tokenHash: hashSecret(token), expiresAt });
      return { sessionToken: token, expiresAt: timestampFromDate(expiresAt), customer: await customerMessage(candidate.id) };
    },

    async getMe(_req, ctx) {
      const principal = await caller(ctx);
      return { customer: await customerMessage(principal.customerId), authMethod: principal.method, scopes: [...principal.scopes] };
    },

    async createApiKey(req, ctx) {
      const principal = await sessionCaller(ctx);
      const name = req.name.trim();
      if (name === "" || name.length > apiKeyNameMax) throw validationError(`name must be 1 to ${apiKeyNameMax} characters`, { field: "name" });
      if (name.includes("\u0000")) throw validationError("name must not contain NUL (U+0000) characters", { field: "name" });
      const scopes = requireScopes(req.scopes);
      const prefix = apiKeyPrefix("live");
      const key = newSecret(prefix);
      const row = await db.transaction(async (tx) => {
        // The customer row lock serialises creations, so the cap holds under concurrent requests and across replicas.
        await lockCustomer(tx, principal.customerId);
        if ((await countActiveApiKeys(tx, principal.customerId)) >= maxActiveApiKeys) {
          throw new ApiError("STATE_CONFLICT", `at most ${maxActiveApiKeys} active API keys per customer; revoke one first`, {
            details: { max_active_api_keys: maxActiveApiKeys },
          });
        }
        // Same scheme as mintApiKey (admin-service.ts): the stored prefix is the readable part plus 4 characters.
        return insertApiKey(tx, { id: newId(), customerId: principal.customerId, name, prefix: key.slice(0, prefix.length + 4), keyHash: hashSecret(key), scopes });
      });
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
      // Unknown, malformed and other customers' ids answer alike: no tenant learns another's ids.
      const notFound = () => new ApiError("RESOURCE_NOT_FOUND", `API key ${JSON.stringify(req.id)} not found`);
      if (!isUuid(req.id)) throw notFound();
      const row = await revokeApiKey(db, principal.customerId, req.id.toLowerCase(), now());
      if (row === undefined) throw notFound();
      // Revocation takes effect at once on this replica (others within the cache's ttl).
      deps.apiKeyCache.clear();
      return { apiKey: apiKeyMessage(row) };
    },
  };
}
