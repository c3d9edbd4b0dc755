// Makes sure the machine has what the test suite starts for real: PostgreSQL
// server binaries, Python 3, etcd (failover tests), Prometheus with promtool
// (metrics test), curl and jq (seed 001's curl examples), and Chromium (the
// portal's browser tests, driven by playwright-core). On Debian as
// root it installs what is missing with apt-get; elsewhere it says what to
// install and fails.
import { execFileSync, spawnSync } from "node:child_process";
import { existsSync, readdirSync } from "node:fs";

function onPath(command: string): boolean {
  return spawnSync("sh", ["-c", `command -v ${command}`], { stdio: "ignore" }).status === 0;
}

function hasPostgres(): boolean {
  if (onPath("initdb") && onPath("pg_ctl")) return true;
  const base = "/usr/lib/postgresql";
  return existsSync(base) && readdirSync(base).some((v) => existsSync(`${base}/${v}/bin/initdb`));
}

const missing: string[] = [];
if (!hasPostgres()) missing.push("postgresql");
if (!onPath("python3")) missing.push("python3");
// Debian names the server package etcd-server; etcd-client brings etcdctl, handy when a failover test fails.
if (!onPath("etcd")) missing.push("etcd-server", "etcd-client");
if (!onPath("prometheus") || !onPath("promtool")) missing.push("prometheus");
// test/integration/seed-curl.test.ts runs seed 001's curl examples as written (curl … | jq).
if (!onPath("curl")) missing.push("curl");
if (!onPath("jq")) missing.push("jq");
// test/portal drives Debian's Chromium through playwright-core (no browser download).
if (!existsSync("/usr/bin/chromium")) missing.push("chromium");
if (missing.length > 0) {
  const isRoot = process.getuid?.() === 0;
  if (!isRoot || !onPath("apt-get")) {
    process.stderr.write(`The tests need: ${missing.join(", ")}. Install them (Debian: apt-get install -y ${missing.join(" ")}).\n`);
    process.exit(1);
  }
  process.stdout.write(`installing ${missing.join(", ")} with apt-get…\n`);
  execFileSync("apt-get", ["update", "-q"], { stdio: "inherit" });
  execFileSync("apt-get", ["install", "-y", "-q", "--no-install-recommends", ...missing], {
    stdio: "inherit",
    env: { ...process.env, DEBIAN_FRONTEND: "noninteractive" },
  });
}
process.stdout.write("system prerequisites: ok\n");
