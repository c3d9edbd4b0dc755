/** Which webhook URLs and addresses are accepted: public HTTPS only (SSRF). */
import assert from "node:assert/strict";
import { httpStatusOf } from "../../src/api/errors.ts";
import { ApiError } from "../../src/platform/errors.ts";
import type { Resolver } from "../../src/webhooks/url-safety.ts";
import { checkWebhookUrl, isPublicAddress, resolvePublicAddress } from "../../src/webhooks/url-safety.ts";

function rejectionOf(url: string): ApiError | undefined {
  try {
    checkWebhookUrl(url);
    return undefined;
  } catch (error) {
    assert.ok(error instanceof ApiError);
    return error;
  }
}

describe("webhook URL safety", () => {
  const accepted = [
    "https://your-receiver.example.com/gpu-agent",
    "https://hooks.example.org:8443/a/b?c=d",
    "https://93.184.216.34/hook",
    "https://[2606:4700:4700::1111]/hook",
    "https://not-resolvable-yet.example.net/",
  ];
  for (const url of accepted) {
    it(`accepts ${url}`, () => {
      assert.equal(rejectionOf(url), undefined);
    });
  }

  const rejected: [string, string][] = [
    ["http://example.com/hook", "plain http"],
    ["ftp://example.com/hook", "another scheme"],
    ["https://localhost/hook", "localhost"],
    ["https://api.localhost/hook", "a *.localhost name"],
    ["https://printer.local/hook", "a *.local name"],
    ["https://metadata.google.internal/hook", "a *.internal name"],
    ["https://LOCALHOST./hook", "localhost in capitals with a root dot"],
    ["https://127.0.0.1/hook", "IPv4 loopback"],
    ["https://2130706433/hook", "IPv4 loopback written as one number"],
    ["https://0x7f.1/hook", "IPv4 loopback written in hex"],
    ["https://0.0.0.0/hook", "the unspecified IPv4 address"],
    ["https://10.1.2.3/hook", "10.0.0.0/8"],
    ["https://172.16.0.1/hook", "172.16.0.0/12"],
    ["https://192.168.1.1/hook", "192.168.0.0/16"],
    ["https://169.254.169.254/latest/meta-data", "link-local (cloud metadata)"],
    ["https://100.64.0.1/hook", "carrier-grade NAT"],
    ["https://224.0.0.1/hook", "IPv4 multicast"],
    ["https://255.255.255.255/hook", "broadcast"],
    ["https://198.18.0.1/hook", "benchmarking"],
    ["https://[::1]/hook", "IPv6 loopback"],
    ["https://[::]/hook", "the unspecified IPv6 address"],
    ["https://[fc00::1]/hook", "IPv6 unique local"],
    ["https://[fd12:3456::1]/hook", "IPv6 unique local (fd)"],
    ["https://[fe80::1]/hook", "IPv6 link-local"],
    ["https://[ff02::1]/hook", "IPv6 multicast"],
    ["https://[::ffff:127.0.0.1]/hook", "IPv4-mapped loopback"],
    ["https://[::ffff:a9fe:a9fe]/hook", "IPv4-mapped link-local in hex"],
    ["https://[64:ff9b::a00:1]/hook", "NAT64 of a private address"],
    ["https://[2002:c0a8:101::1]/hook", "6to4 of a private address"],
    ["https://[2001:db8::1]/hook", "IPv6 documentation"],
    ["https://user:pass@example.com/hook", "credentials in the URL"],
    ["https://user@example.com/hook", "a user name in the URL"],
    ["not a url", "something that is not a URL"],
    ["", "an empty URL"],
    [`https://example.com/${"a".repeat(2048)}`, "a URL longer than 2048 characters"],
  ];
  for (const [url, why] of rejected) {
    it(`rejects ${why} with WEBHOOK_INVALID_URL`, () => {
      const error = rejectionOf(url);
      assert.ok(error !== undefined, `${url} was accepted`);
      assert.equal(error.code, "WEBHOOK_INVALID_URL");
      assert.equal(httpStatusOf(error.code), 400);
      assert.ok(error.message.length > 10);
    });
  }

  const addresses: [string, boolean][] = [
    ["8.8.8.8", true],
    ["1.1.1.1", true],
    ["2606:4700:4700::1111", true],
    ["::ffff:8.8.8.8", true],
    ["127.0.0.1", false],
    ["10.0.0.1", false],
    ["172.31.255.255", false],
    ["172.32.0.1", true],
    ["192.168.0.1", false],
    ["169.254.1.1", false],
    ["100.64.0.1", false],
    ["100.128.0.1", true],
    ["::1", false],
    ["fc00::1", false],
    ["fe80::1%eth0", false],
    ["::ffff:127.0.0.1", false],
    ["::ffff:10.0.0.1", false],
    ["example.com", false],
  ];
  for (const [ip, expected] of addresses) {
    it(`says ${ip} is ${expected ? "" : "not "}a public address`, () => {
      assert.equal(isPublicAddress(ip), expected);
    });
  }

  describe("at delivery time", () => {
    const resolverOf =
      (answers: Record<string, string[]>): Resolver =>
      async (host) =>
        (answers[host] ?? []).map((address) => ({ address, family: address.includes(":") ? 6 : 4 }));

    it("returns the checked public address to connect to", async () => {
      const resolved = await resolvePublicAddress(new URL("https://hooks.example.com/x"), resolverOf({ "hooks.example.com": ["93.184.216.34"] }));
      assert.deepEqual(resolved, { address: "93.184.216.34", family: 4 });
    });

    it("refuses a name when any one of its addresses is private", async () => {
      const resolver = resolverOf({ "hooks.example.com": ["93.184.216.34", "10.0.0.5"] });
      await assert.rejects(resolvePublicAddress(new URL("https://hooks.example.com/x"), resolver), (e: unknown) => e instanceof ApiError && e.code === "WEBHOOK_INVALID_URL" && /10\.0\.0\.5/.test(e.message));
    });

    it("refuses a name that resolves to an IPv4-mapped loopback address", async () => {
      const resolver = resolverOf({ "hooks.example.com": ["::ffff:127.0.0.1"] });
      await assert.rejects(resolvePublicAddress(new URL("https://hooks.example.com/x"), resolver), ApiError);
    });

    it("refuses a name without addresses", async () => {
      await assert.rejects(resolvePublicAddress(new URL("https://nothing.example.com/x"), resolverOf({})), ApiError);
    });

    it("allows a private address only when told to (tests)", async () => {
      const resolver = resolverOf({ "hooks.example.com": ["127.0.0.1"] });
      const resolved = await resolvePublicAddress(new URL("https://hooks.example.com/x"), resolver, true);
      assert.equal(resolved.address, "127.0.0.1");
    });
  });
});
