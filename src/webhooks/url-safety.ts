/**
 * Which URLs a webhook may target. Deliveries are made by the control plane from inside its network,
 * so a customer-supplied URL must never reach loopback, the cluster network, cloud metadata services
 * or anything else that is not the public internet (SSRF).
 *
 * Two checks: {@link checkWebhookUrl} when the endpoint is registered (syntax and literal hosts only;
 * the name is not resolved, since a customer may register a URL before its DNS exists), and
 * {@link resolvePublicAddress} at every delivery, which resolves the name and refuses if ANY
 * address is not public. The delivery then connects to that checked address, not to the result of
 * a second lookup, so a DNS answer that changes between check and connect (rebinding) cannot win.
 */
import { lookup } from "node:dns/promises";
import { isIP, isIPv4 } from "node:net";
import { ApiError } from "../platform/errors.ts";

/** The longest URL accepted, in characters. */
export const maxWebhookUrlLength = 2048;

/** One resolved address of a host. */
export interface ResolvedAddress {
  address: string;
  family: 4 | 6;
}

/** Resolves a host name to every address it has (injectable so tests need no DNS). */
export type Resolver = (hostname: string) => Promise<ResolvedAddress[]>;

/** The system resolver: `dns.lookup(host, { all: true })`, i.e. what a normal connect would use. */
export const systemResolver: Resolver = async (hostname) => {
  const found = await lookup(hostname, { all: true, verbatim: true });
  return found.map((a) => ({ address: a.address, family: a.family === 6 ? 6 : 4 }));
};

/** Names that never mean a public host, whatever DNS says. */
function isReservedHostname(host: string): boolean {
  return (
    host === "localhost" ||
    host.endsWith(".localhost") ||
    host === "local" ||
    host.endsWith(".local") ||
    host === "internal" ||
    host.endsWith(".internal")
  );
}

/** The host of a URL without IPv6 brackets or a trailing root dot, lower case. */
function bareHost(url: URL): string {
  const host = url.hostname.toLowerCase();
  if (host.startsWith("[") && host.endsWith("]")) return host.slice(1, -1);
  return host.replace(/\.+$/, "");
}

const invalid = (message: string) => new ApiError("WEBHOOK_INVALID_URL", message, { details: { field: "url" } });

/**
 * Validates a webhook URL at registration and returns it parsed (its `href` is the normalized form
 * to store). Throws 400 `WEBHOOK_INVALID_URL` unless it is an `https:` URL of at most 2048
 * characters, without user name or password, whose host is not a reserved name (`localhost`,
 * `*.localhost`, `*.local`, `*.internal`) nor an IP literal outside the public unicast ranges.
 * Host names are not resolved here (see {@link resolvePublicAddress}).
 */
export function checkWebhookUrl(raw: string): URL {
  const text = raw.trim();
  if (text === "") throw invalid("url is required: a public https:// URL that receives the events");
  if (text.length > maxWebhookUrlLength) throw invalid(`url must be at most ${maxWebhookUrlLength} characters`);
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw invalid(`url ${JSON.stringify(text.slice(0, 200))} is not an absolute URL`);
  }
  if (url.protocol !== "https:") throw invalid(`url must use https:// (got ${url.protocol.replace(/:$/, "")}://)`);
  if (url.username !== "" || url.password !== "") {
    throw invalid("url must not contain a user name or password; authenticate deliveries by their GPU-Agent-Signature");
  }
  checkHost(url);
  return url;
}

function checkHost(url: URL): void {
  const host = bareHost(url);
  if (host === "") throw invalid("url has no host");
  // WHATWG URL parsing already turned decimal, octal and hex IPv4 forms (https://2130706433/) into dotted quads.
  if (isIP(host) !== 0) {
    if (!isPublicAddress(host)) {
      throw invalid(`url points at ${host}, which is not a public internet address (loopback, private, link-local and reserved ranges are refused)`);
    }
    return;
  }
  if (isReservedHostname(host)) throw invalid(`url host ${host} is a local name; use a host reachable from the public internet`);
}

/**
 * Resolves the URL's host at delivery time and returns the one address to connect to. Throws
 * `WEBHOOK_INVALID_URL` when the host has no address or when ANY of its addresses is not public
 * (a name with one public and one private address could otherwise be steered to the private one).
 * `allowPrivateAddresses` skips the address and host-name rules — for tests with a local receiver only.
 */
export async function resolvePublicAddress(url: URL, resolver: Resolver, allowPrivateAddresses = false): Promise<ResolvedAddress> {
  const host = bareHost(url);
  if (!allowPrivateAddresses) checkHost(url);
  const literal = isIP(host);
  if (literal !== 0) return { address: host, family: literal === 6 ? 6 : 4 };
  let addresses: ResolvedAddress[];
  try {
    addresses = await resolver(host);
  } catch (error) {
    throw invalid(`could not resolve ${host}: ${error instanceof Error ? error.message : String(error)}`);
  }
  const first = addresses[0];
  if (first === undefined) throw invalid(`${host} has no address`);
  if (!allowPrivateAddresses) {
    const bad = addresses.find((a) => !isPublicAddress(a.address));
    if (bad !== undefined) throw invalid(`${host} resolves to ${bad.address}, which is not a public internet address; delivery refused`);
  }
  return first;
}

// ---- address ranges -----------------------------------------------------------------------------

/** IPv4 ranges that are not public unicast (IANA special-purpose registry), as [network, prefix]. */
const nonPublicV4: readonly (readonly [string, number])[] = [
  ["0.0.0.0", 8], // "this network"
  ["10.0.0.0", 8], // private
  ["100.64.0.0", 10], // carrier-grade NAT
  ["127.0.0.0", 8], // loopback
  ["169.254.0.0", 16], // link-local (cloud metadata lives here)
  ["172.16.0.0", 12], // private
  ["192.0.0.0", 24], // IETF protocol assignments
  ["192.0.2.0", 24], // documentation
  ["192.88.99.0", 24], // 6to4 relay anycast (deprecated)
  ["192.168.0.0", 16], // private
  ["198.18.0.0", 15], // benchmarking
  ["198.51.100.0", 24], // documentation
  ["203.0.113.0", 24], // documentation
  ["224.0.0.0", 4], // multicast
  ["240.0.0.0", 4], // reserved, broadcast
];

function v4ToInt(ip: string): number {
  return ip.split(".").reduce((n, part) => n * 256 + Number(part), 0);
}

const nonPublicV4Ranges = nonPublicV4.map(([net, prefix]) => {
  const size = 2 ** (32 - prefix);
  const start = Math.floor(v4ToInt(net) / size) * size;
  return { start, end: start + size - 1 };
});

function isPublicV4(ip: string): boolean {
  const n = v4ToInt(ip);
  return !nonPublicV4Ranges.some((r) => n >= r.start && n <= r.end);
}

/** The 16 bytes of an IPv6 address (zone id removed), or undefined if it does not parse. */
function v6Bytes(ip: string): Uint8Array | undefined {
  let text = ip.split("%")[0] ?? "";
  const bytes = new Uint8Array(16);
  // An embedded dotted IPv4 tail (::ffff:1.2.3.4) becomes two hex groups.
  const dotted = /^(.*:)(\d+\.\d+\.\d+\.\d+)$/.exec(text);
  if (dotted !== null) {
    const v4 = dotted[2] ?? "";
    if (!isIPv4(v4)) return undefined;
    const n = v4ToInt(v4);
    text = `${dotted[1] ?? ""}${(n >>> 16).toString(16)}:${(n & 0xffff).toString(16)}`;
  }
  const halves = text.split("::");
  if (halves.length > 2) return undefined;
  const head = halves[0] === "" ? [] : (halves[0] ?? "").split(":");
  const tail = halves.length === 2 ? (halves[1] === "" ? [] : (halves[1] ?? "").split(":")) : [];
  const missing = 8 - head.length - tail.length;
  if (halves.length === 1 ? missing !== 0 : missing < 1) return undefined;
  const groups = [...head, ...Array<string>(halves.length === 2 ? missing : 0).fill("0"), ...tail];
  for (const [i, group] of groups.entries()) {
    if (!/^[0-9a-f]{1,4}$/i.test(group)) return undefined;
    const value = parseInt(group, 16);
    bytes[i * 2] = value >> 8;
    bytes[i * 2 + 1] = value & 0xff;
  }
  return bytes;
}

function startsWith(bytes: Uint8Array, prefix: readonly number[]): boolean {
  return prefix.every((b, i) => bytes[i] === b);
}

function embeddedV4(bytes: Uint8Array, offset: number): string {
  return [0, 1, 2, 3].map((i) => bytes[offset + i] ?? 0).join(".");
}

function isPublicV6(ip: string): boolean {
  const b = v6Bytes(ip);
  if (b === undefined) return false;
  // IPv4-mapped (::ffff:a.b.c.d): the socket really talks IPv4 to a.b.c.d.
  if (startsWith(b, [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff])) return isPublicV4(embeddedV4(b, 12));
  // NAT64 well-known prefix (64:ff9b::/96) reaches the embedded IPv4 address through the translator.
  if (startsWith(b, [0, 0x64, 0xff, 0x9b, 0, 0, 0, 0, 0, 0, 0, 0])) return isPublicV4(embeddedV4(b, 12));
  // 6to4 (2002::/16) carries an IPv4 address in bytes 2..5.
  if (startsWith(b, [0x20, 0x02])) return isPublicV4(embeddedV4(b, 2));
  // Only global unicast (2000::/3) is public; that excludes ::, ::1, fc00::/7, fe80::/10, ff00::/8, 100::/64 …
  if (((b[0] ?? 0) & 0xe0) !== 0x20) return false;
  // … and within it, the special-purpose blocks:
  if (startsWith(b, [0x20, 0x01]) && ((b[2] ?? 0) & 0xfe) === 0) return false; // 2001::/23 IETF (Teredo, ORCHID …)
  if (startsWith(b, [0x20, 0x01, 0x0d, 0xb8])) return false; // 2001:db8::/32 documentation
  if (startsWith(b, [0x3f, 0xff]) && ((b[2] ?? 0) & 0xf0) === 0) return false; // 3fff::/20 documentation
  return true;
}

/**
 * True when `ip` (IPv4 or IPv6 text, brackets allowed) is a public unicast address: not loopback,
 * private, link-local, CGNAT, multicast, documentation, benchmarking or otherwise reserved,
 * including those ranges reached through IPv4-mapped, NAT64 or 6to4 IPv6 forms. Anything that is
 * not an IP address is not public.
 */
export function isPublicAddress(ip: string): boolean {
  const text = ip.startsWith("[") && ip.endsWith("]") ? ip.slice(1, -1) : ip;
  const family = isIP(text.split("%")[0] ?? "");
  if (family === 4) return isPublicV4(text);
  if (family === 6) return isPublicV6(text);
  return false;
}
