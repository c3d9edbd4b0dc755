// Makes sure the machine has what the test suite starts for real: PostgreSQL
// server binaries, Python 3 with venv and pip, etcd (failover tests), Prometheus with promtool
// (metrics test), curl and jq (seed 001's curl examples), and Chromium (the
// portal's browser tests, driven by playwright-core), and bubblewrap with util-linux's setpriv/prlimit/
// taskset (the node agent's sandbox around every unit). On Debian as
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
// Python environments per package (src/node-agent/python-envs.ts) are venvs filled by the units' python3's pip
// (Debian's /usr/bin/python3 when the agent runs as root): Debian ships venv and pip apart from python3.
const unitPython = existsSync("/usr/bin/python3") ? "/usr/bin/python3" : "python3";
const pythonHas = (code: string) => spawnSync(unitPython, ["-c", code], { stdio: "ignore" }).status === 0;
if (!pythonHas("import venv, ensurepip")) missing.push("python3-venv");
if (!pythonHas("import pip")) missing.push("python3-pip");
// Debian names the server package etcd-server; etcd-client brings etcdctl, handy when a failover test fails.
if (!onPath("etcd")) missing.push("etcd-server", "etcd-client");
if (!onPath("prometheus") || !onPath("promtool")) missing.push("prometheus");
// test/integration/seed-curl.test.ts runs seed 001's curl examples as written (curl … | jq).
if (!onPath("curl")) missing.push("curl");
if (!onPath("jq")) missing.push("jq");
// test/portal drives Debian's Chromium through playwright-core (no browser download).
if (!existsSync("/usr/bin/chromium")) missing.push("chromium");
// The node agent runs every unit in a bubblewrap sandbox (src/node-agent/unit-sandbox.ts); its tests start real ones.
if (!onPath("bwrap")) missing.push("bubblewrap");
if (!onPath("setpriv") || !onPath("prlimit") || !onPath("taskset")) missing.push("util-linux");
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
