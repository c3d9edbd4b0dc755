/**
 * Sign-in throttling that tells an attacker nothing about which e-mails have accounts and that no
 * one can use to lock a customer out from elsewhere (docs/limits.md, "Sign-in attempts").
 *
 * - Failures are counted per (client address, e-mail) pair, whether or not the e-mail has an
 *   account, so a known and an unknown e-mail answer alike, attempt for attempt. From the
 *   `failuresBeforeLock`-th consecutive failure the pair is locked, 30 s doubling per further
 *   failure up to 15 min; a successful sign-in from that address clears it. Someone else's failures
 *   from another address never lock a customer's own attempts.
 * - An address has a budget of failures over all e-mails (20 per 10 minutes, a leaky bucket), so
 *   one address cannot spray guesses across many accounts. Pairs that signed in from that address
 *   in the last 30 days are not refused by it, so a spray from a shared address (a NAT, a proxy)
 *   does not shut out the customers who sign in there. To keep that exemption invisible, every
 *   attempt the pair lock admits checks one password (the customer's or a dummy) before answering,
 *   and counts toward its pair whether or not the budget refused it.
 * - The address is the TCP peer the server wrote into `x-gpu-agent-peer-address`, never a header a
 *   client chose. IPv6 addresses count by their /64, the block one subscriber usually holds.
 * - Counts live in the database (one upsert per decision), so they are exact across replicas.
 *   Rows end when they no longer matter and are deleted in batches as sign-ins happen; an address
 *   keeps at most its 1,000 most recent failing e-mails.
 */
import { createHash } from "node:crypto";
import { isIPv4, isIPv6 } from "node:net";
import { ApiError } from "../platform/errors.ts";
import type { LoginLimits } from "../platform/config.ts";
import type { Sql } from "../store/database.ts";
import type { AddressAdmission, LoginPairKey, PairPolicy } from "../store/login-attempts.ts";
import { admitAddressAttempt, admitPairAttempt, purgeLoginAttempts, recordLoginSuccess, refundAddressAttempt } from "../store/login-attempts.ts";

/** The window of the per-address budget: `failuresPerAddress` failures per this many seconds. */
export const loginAddressWindowSeconds = 10 * 60;
/** A pair with no failure for this long starts counting from one again. */
export const loginForgetAfterSeconds = 24 * 60 * 60;
/** A pair that signed in is exempt from its address's budget for this long. */
export const loginTrustSeconds = 30 * 24 * 60 * 60;
/** Most failing e-mails remembered per address (the newest are kept). */
export const maxFailingEmailsPerAddress = 1000;
/** Expired rows deleted per sign-in attempt, per table (more than one attempt can add). */
const purgeBatch = 100;

/** The key an address counts under: IPv4 as is (also when mapped into IPv6), IPv6 by its /64. */
export function clientAddressKey(peer: string): string {
  const address = peer.replace(/%.*$/, "");
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address);
  if (mapped !== null) return mapped[1]!;
  if (isIPv4(address) || !isIPv6(address)) return address;
  const [head = "", tail] = address.split("::") as [string, string | undefined];
  const groups = (part: string) => (part === "" ? [] : part.split(":"));
  const left = groups(head);
  const right = tail === undefined ? [] : groups(tail);
  // An embedded IPv4 tail (::1.2.3.4) lies beyond the first 64 bits, so only its group count matters.
  const rightCount = right.reduce((n, g) => n + (g.includes(".") ? 2 : 1), 0);
  const all = [...left, ...Array<string>(Math.max(0, 8 - left.length - rightCount)).fill("0"), ...right];
  return `${all.slice(0, 4).map((g) => parseInt(g, 16).toString(16)).join(":")}::/64`;
}

/** The key an e-mail counts under: SHA-256 of the trimmed, lower-cased text (a fixed 64 characters, no plaintext kept). */
export function loginEmailKey(email: string): string {
  return createHash("sha256").update(email.trim().toLowerCase()).digest("hex");
}

/** An attempt the pair lock admitted. */
export interface LoginAttempt {
  readonly key: LoginPairKey;
  /** The pair signed in from this address recently: the address budget does not refuse it. */
  readonly trusted: boolean;
  /** Set when the address has no budget left: the answer unless the pair is trusted and signs in. */
  readonly addressRefusal?: ApiError;
  /** Whether the attempt took a unit of the address's budget (given back on success). */
  readonly tookBudget: boolean;
}

function pairPolicy(limits: LoginLimits): PairPolicy {
  return {
    failuresBeforeLock: limits.failuresBeforeLock,
    lockSeconds: limits.lockSeconds,
    maxLockSeconds: limits.maxLockSeconds,
    forgetAfterSeconds: loginForgetAfterSeconds,
    trustSeconds: loginTrustSeconds,
  };
}

function rateLimited(message: string, retryAfterS: number): ApiError {
  return new ApiError("RATE_LIMITED", `${message}; try again in ${retryAfterS} s`, {
    headers: { "retry-after": String(retryAfterS) },
    details: { retry_after_seconds: retryAfterS },
  });
}

/**
 * Counts a sign-in attempt before its password is checked. Throws 429 `RATE_LIMITED` (with
 * `Retry-After`) when the pair is locked; the same for every e-mail, known or not.
 */
export async function admitLoginAttempt(db: Sql, limits: LoginLimits, peer: string, email: string, now: Date): Promise<LoginAttempt> {
  const key: LoginPairKey = { address: clientAddressKey(peer), emailKey: loginEmailKey(email) };
  const pair = await admitPairAttempt(db, key, now, pairPolicy(limits));
  if (!pair.admitted) {
    const retry = Math.max(1, Math.ceil((pair.lockedUntil.getTime() - now.getTime()) / 1000));
    throw rateLimited("too many failed sign-ins for this e-mail from your address", retry);
  }
  const budget = { failures: limits.failuresPerAddress, windowSeconds: loginAddressWindowSeconds };
  const address: AddressAdmission = budget.failures === 0 ? { admitted: true } : await admitAddressAttempt(db, key.address, now, budget);
  await purgeLoginAttempts(db, now, {
    ...(pair.inserted ? { current: key } : {}),
    maxFailingPairs: maxFailingEmailsPerAddress,
    batch: purgeBatch,
    budgetWindowSeconds: loginAddressWindowSeconds,
  });
  return {
    key,
    trusted: pair.trusted,
    tookBudget: address.admitted && budget.failures > 0,
    ...(address.admitted ? {} : { addressRefusal: rateLimited("too many failed sign-ins from your address", address.retryAfterS) }),
  };
}

/** The attempt signed in: its pair is cleared and trusted, and its unit of budget given back. */
export async function loginSucceeded(db: Sql, attempt: LoginAttempt, now: Date): Promise<void> {
  await recordLoginSuccess(db, attempt.key, now, loginTrustSeconds);
  if (attempt.tookBudget) await refundAddressAttempt(db, attempt.key.address);
}
