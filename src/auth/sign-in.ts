/**
 * Signing in with e-mail and password, for a portal session token.
 *
 * Sign-in is the one customer operation without authentication, so it is built against guessing
 * and against learning which e-mails have accounts: the same work (one scrypt) and the same answers
 * whether or not the e-mail exists, one message for every wrong pair, and throttling per (client
 * address, e-mail) pair and per address, in the database (login-throttle.ts).
 */
import type { Clock } from "../platform/clock.ts";
import type { LoginLimits } from "../platform/config.ts";
import { ApiError, validationError } from "../platform/errors.ts";
import { hashSecret, newId, newSecret } from "../platform/ids.ts";
import type { Database } from "../store/database.ts";
import { findCustomerByEmail, insertSession } from "../store/customers.ts";
import type { CustomerAccount } from "./accounts.ts";
import { customerAccount } from "./accounts.ts";
import { admitLoginAttempt, loginSucceeded } from "./login-throttle.ts";
import { hashPassword, verifyPassword } from "./passwords.ts";

/** How long a portal session lasts. */
export const sessionTtlSeconds = 12 * 60 * 60;

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

/** What signing in needs (a subset of ControlPlaneDeps). */
export interface SignInDeps {
  readonly db: Database;
  readonly clock: Clock;
  readonly config: { readonly limits: { readonly login: LoginLimits } };
}

/** A sign-in as typed, and the TCP peer it came from (the server's `x-gpu-agent-peer-address`, never a client's header). */
export interface SignInRequest {
  email: string;
  password: string;
  peer: string;
}

/** A new session: its token (shown once, only its hash stored), its end, and the account. */
export interface SignedIn {
  sessionToken: string;
  expiresAt: Date;
  account: CustomerAccount;
}

/** Checks e-mail and password under the sign-in throttle and opens a session. */
export async function signIn(deps: SignInDeps, request: SignInRequest): Promise<SignedIn> {
  const { db } = deps;
  const email = request.email.trim();
  if (email === "" || email.length > emailMax) throw validationError("email is required", { field: "email" });
  // PostgreSQL text cannot hold U+0000: the lookup would fail (a 500), so it is bad input.
  if (email.includes("\u0000")) throw validationError("email must not contain NUL (U+0000) characters", { field: "email" });
  if (request.password === "" || request.password.length > passwordMax) {
    throw validationError(`password must be 1 to ${passwordMax} characters`, { field: "password" });
  }
  const at = new Date(deps.clock.now());
  // Counted before the password is checked, and a locked pair refused before it is: a lock also
  // stops guessing of the right one. Nothing here depends on whether the e-mail has an account.
  const attempt = await admitLoginAttempt(db, deps.config.limits.login, request.peer, email, at);
  const candidate = await findCustomerByEmail(db, email);
  const ok = await verifyPassword(request.password, candidate?.password_hash ?? (await dummyPasswordHash()));
  const signedIn = candidate !== undefined && ok;
  // An address out of budget still lets in the pairs that signed in from it before, and only after
  // a correct password: to everyone else every attempt there looks the same.
  if (attempt.addressRefusal !== undefined && !(signedIn && attempt.trusted)) throw attempt.addressRefusal;
  if (!signedIn) throw new ApiError("CUSTOMER_AUTH_REQUIRED", wrongCredentials);
  await loginSucceeded(db, attempt, at);
  const sessionToken = newSecret("st_");
  const expiresAt = new Date(at.getTime() + sessionTtlSeconds * 1000);
  await insertSession(db, { id: newId(), customerId: candidate.id, tokenHash: hashSecret(sessionToken), expiresAt }, at);
  return { sessionToken, expiresAt, account: await customerAccount(db, candidate.id) };
}
