/**
 * Webhook dispatcher settings from the environment (read by cmd/scheduler.ts; nothing below cmd/
 * reads process.env itself). All but `GPU_AGENT_WEBHOOK_DELIVER` are for tests that run the real
 * scheduler process against a receiver on loopback:
 *
 * | variable | effect |
 * | --- | --- |
 * | `GPU_AGENT_WEBHOOK_DELIVER=0` | this replica queues events but delivers none (API-only replica) |
 * | `GPU_AGENT_WEBHOOK_ALLOW_PRIVATE=1` | TESTS ONLY: deliver to loopback/private addresses (SSRF protection off; logged loudly) |
 * | `GPU_AGENT_WEBHOOK_RESOLVE=host:addr[,…]` | TESTS ONLY, needs ALLOW_PRIVATE: resolve `host` to `addr` (like curl's `--resolve`) |
 * | `GPU_AGENT_WEBHOOK_CA_FILE=path` | PEM roots that replace the system's for deliveries (a self-signed test receiver) |
 * | `GPU_AGENT_WEBHOOK_RETRY_BASE_MS=n` | base of the retry backoff (default 10 000) |
 */
import { readFileSync } from "node:fs";
import { isIP } from "node:net";
import type { WebhookDispatcherOptions } from "./dispatcher.ts";
import type { ResolvedAddress, Resolver } from "./url-safety.ts";
import { systemResolver } from "./url-safety.ts";

function flag(env: NodeJS.ProcessEnv, name: string): boolean | undefined {
  const raw = env[name]?.trim().toLowerCase();
  if (raw === undefined || raw === "") return undefined;
  if (["1", "true", "yes", "on"].includes(raw)) return true;
  if (["0", "false", "no", "off"].includes(raw)) return false;
  throw new Error(`${name} must be 1 or 0, got ${JSON.stringify(env[name])}`);
}

/** Parses `host:addr,host:addr` into a resolver that answers those names and defers the rest to DNS. */
function staticResolver(spec: string): Resolver {
  const table = new Map<string, ResolvedAddress>();
  for (const entry of spec.split(",").map((e) => e.trim()).filter((e) => e !== "")) {
    const colon = entry.indexOf(":");
    const host = entry.slice(0, colon).toLowerCase();
    const address = entry.slice(colon + 1).replace(/^\[|\]$/g, "");
    const family = isIP(address);
    if (colon <= 0 || family === 0) throw new Error(`GPU_AGENT_WEBHOOK_RESOLVE entry ${JSON.stringify(entry)} must be host:ip-address`);
    table.set(host, { address, family: family === 6 ? 6 : 4 });
  }
  return async (hostname) => {
    const hit = table.get(hostname.toLowerCase());
    return hit === undefined ? systemResolver(hostname) : [hit];
  };
}

/** The dispatcher options the environment asks for (an empty object when it asks for nothing). */
export function webhookDispatcherOptionsFromEnv(env: NodeJS.ProcessEnv): WebhookDispatcherOptions {
  const allowPrivate = flag(env, "GPU_AGENT_WEBHOOK_ALLOW_PRIVATE") ?? false;
  const deliver = flag(env, "GPU_AGENT_WEBHOOK_DELIVER");
  const caFile = env["GPU_AGENT_WEBHOOK_CA_FILE"] ?? "";
  const resolve = env["GPU_AGENT_WEBHOOK_RESOLVE"] ?? "";
  const baseRaw = env["GPU_AGENT_WEBHOOK_RETRY_BASE_MS"] ?? "";
  if (resolve !== "" && !allowPrivate) throw new Error("GPU_AGENT_WEBHOOK_RESOLVE is for tests and needs GPU_AGENT_WEBHOOK_ALLOW_PRIVATE=1");
  const retryBaseMs = baseRaw === "" ? undefined : Number(baseRaw);
  if (retryBaseMs !== undefined && !(Number.isInteger(retryBaseMs) && retryBaseMs > 0)) {
    throw new Error(`GPU_AGENT_WEBHOOK_RETRY_BASE_MS must be a positive integer, got ${JSON.stringify(baseRaw)}`);
  }
  return {
    ...(allowPrivate ? { allowPrivateAddresses: true } : {}),
    ...(deliver === undefined ? {} : { deliver }),
    ...(caFile === "" ? {} : { tls: { ca: readFileSync(caFile, "utf8") } }),
    ...(resolve === "" ? {} : { resolver: staticResolver(resolve) }),
    ...(retryBaseMs === undefined ? {} : { retryBaseMs }),
  };
}
