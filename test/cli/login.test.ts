/**
 * `gpuctl login`, profiles, `logout` and `api-keys` against a real control plane: the server's
 * Login, its session-only key rpcs and its refusal of revoked keys are what these commands lean
 * on, so nothing here is faked. The config file lives in a temporary XDG_CONFIG_HOME.
 */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { randomUUID } from "node:crypto";
import { mkdtemp, readFile, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import type { ConfigFile } from "../../src/cli/config.ts";
import type { CliDeps } from "../../src/cli/program.ts";
import { runCli } from "../../src/cli/program.ts";
import { systemClock } from "../../src/platform/clock.ts";
import { createGpuAgentAdminClient } from "../../src/sdk/index.ts";
import type { TestControlPlane } from "../support/control-plane.ts";
import { startTestControlPlane } from "../support/control-plane.ts";
import { NO_HOME, captureIo, scriptedStdin } from "./fake-api.ts";

const repoRoot = path.join(import.meta.dirname, "..", "..");
const password = "correct horse battery";

describe("gpuctl login, profiles, logout and api-keys (real control plane)", function () {
  this.timeout(60_000);
  let cp: TestControlPlane;
  let configHome: string;
  let email: string;

  before(async () => {
    cp = await startTestControlPlane();
  });
  after(async () => {
    await cp?.stop();
  });
  beforeEach(async () => {
    configHome = await mkdtemp(path.join(tmpdir(), "gpuctl-config-"));
    email = `u-${randomUUID()}@example.com`;
    await createGpuAgentAdminClient({ baseUrl: cp.url, adminToken: cp.adminToken }).customers.create({ email, password, credits: 100n });
  });
  afterEach(async () => {
    await rm(configHome, { recursive: true, force: true });
  });

  const configFile = () => path.join(configHome, "gpuctl", "config.json");
  const readConfig = async () => JSON.parse(await readFile(configFile(), "utf8")) as ConfigFile;

  /** Runs gpuctl in-process: the URL from the environment unless `env` says otherwise, no API key unless given. */
  async function gpuctl(args: string[], options: { env?: Record<string, string | undefined>; stdin?: string; tty?: { typed: string } } = {}) {
    const cap = captureIo();
    const stdin = options.tty === undefined ? scriptedStdin(options.stdin ?? "") : scriptedStdin("", { tty: true, typed: options.tty.typed });
    const deps: CliDeps = {
      env: { GPU_AGENT_URL: cp.url, XDG_CONFIG_HOME: configHome, ...options.env },
      io: cap.io,
      stdin,
      clock: systemClock,
      randomUUID,
      tmpDir: tmpdir(),
      homeDir: NO_HOME,
      hostname: "laptop",
      version: "0.0.0-test",
    };
    const code = await runCli(args, deps);
    return { code, out: cap.out(), err: cap.err(), prompts: stdin.prompts };
  }
  const login = (...extra: string[]) => gpuctl(["login", "--email", email, "--password-stdin", ...extra], { stdin: `${password}\n` });

  it("stores a key named gpuctl@<hostname> and the URL in a 0600 file in a 0700 directory", async () => {
    const r = await login();
    assert.equal(r.code, 0, r.err);
    assert.match(r.out, /Logged in to .* as .* \(profile default\)/);
    assert.equal((await stat(configFile())).mode & 0o777, 0o600);
    assert.equal((await stat(path.dirname(configFile()))).mode & 0o777, 0o700);
    const profile = (await readConfig()).profiles["default"];
    assert.equal(profile?.url, cp.url);
    assert.equal(profile?.email, email);
    assert.equal(profile?.api_key_name, "gpuctl@laptop");
    assert.match(profile?.api_key ?? "", /^sk_/);
    assert.doesNotMatch(await readFile(configFile(), "utf8"), new RegExp(password), "the password is never stored");
  });

  it("lets later commands use the profile's URL and key when neither flag nor environment gives them", async () => {
    assert.equal((await login()).code, 0);
    const r = await gpuctl(["usage", "summary", "--json"], { env: { GPU_AGENT_URL: undefined } });
    assert.equal(r.code, 0, r.err);
    assert.equal((JSON.parse(r.out) as { credits_balance: string }).credits_balance, "100");
  });

  it("picks a profile with --profile or GPUCTL_PROFILE, and lets GPU_AGENT_API_KEY win over any", async () => {
    assert.equal((await login("--profile", "work")).code, 0);
    assert.ok((await readConfig()).profiles["work"]);
    const cases: { name: string; args: string[]; env?: Record<string, string>; code: number; err?: RegExp }[] = [
      { name: "--profile", args: ["--profile", "work", "usage", "summary"], code: 0 },
      { name: "GPUCTL_PROFILE", args: ["usage", "summary"], env: { GPUCTL_PROFILE: "work" }, code: 0 },
      { name: "the default profile, never logged in", args: ["usage", "summary"], code: 2, err: /API_KEY_MISSING/ },
      { name: "a profile that does not exist", args: ["--profile", "nope", "usage", "summary"], code: 2, err: /PROFILE_NOT_FOUND/ },
      { name: "the environment's key over the profile", args: ["--profile", "work", "usage", "summary"], env: { GPU_AGENT_API_KEY: "sk_live_not_a_key" }, code: 1, err: /API_KEY_INVALID/ },
    ];
    for (const tc of cases) {
      const r = await gpuctl(tc.args, { env: tc.env ?? {} });
      assert.equal(r.code, tc.code, `${tc.name}: ${r.err}`);
      if (tc.err !== undefined) assert.match(r.err, tc.err, tc.name);
    }
  });

  it("tells, after logging in, when GPU_AGENT_API_KEY will keep winning over the key just stored", async () => {
    const r = await gpuctl(["login", "--email", email, "--password-stdin"], { stdin: password, env: { GPU_AGENT_API_KEY: "sk_live_old" } });
    assert.equal(r.code, 0, r.err);
    assert.match(r.err, /note: GPU_AGENT_API_KEY is set and wins over the profile: unset it/);
  });

  it("revokes the key a new login replaces, so logging in again does not pile up keys", async () => {
    assert.equal((await login()).code, 0);
    const first = (await readConfig()).profiles["default"];
    const again = await login();
    assert.equal(again.code, 0, again.err);
    assert.match(again.out, /previous key .* was revoked/);
    const second = (await readConfig()).profiles["default"];
    assert.notEqual(second?.api_key, first?.api_key);
    const old = await gpuctl(["--api-key", first?.api_key ?? "", "usage", "summary"]);
    assert.equal(old.code, 1);
    assert.match(old.err, /API_KEY_REVOKED/);
    assert.equal((await gpuctl(["usage", "summary"])).code, 0);
  });

  it("creates, lists and revokes API keys by signing in, and says so when a revoke does nothing", async () => {
    assert.equal((await login()).code, 0);
    const created = await gpuctl(["api-keys", "create", "--name", "ci", "--scope", "usage:read", "-q", "--password-stdin"], { stdin: password });
    assert.equal(created.code, 0, created.err);
    const key = created.out.trim();
    assert.match(key, /^sk_[\w-]+$/);
    assert.equal((await gpuctl(["--api-key", key, "usage", "summary"])).code, 0, "the new key works");
    assert.match((await gpuctl(["--api-key", key, "datasets", "list"])).err, /API_KEY_SCOPE_DENIED/, "within its scopes only");

    const listed = await gpuctl(["api-keys", "list", "--json", "--password-stdin"], { stdin: password });
    assert.equal(listed.code, 0, listed.err);
    const names = (JSON.parse(listed.out) as { data: { name: string }[] }).data.map((k) => k.name).sort();
    assert.deepEqual(names, ["ci", "default", "gpuctl@laptop"]);

    const revoked = await gpuctl(["api-keys", "revoke", "ci", "--password-stdin"], { stdin: password });
    assert.equal(revoked.code, 0, revoked.err);
    assert.match(revoked.out, /^revoked_at\s+\S+/m);
    assert.match((await gpuctl(["--api-key", key, "usage", "summary"])).err, /API_KEY_REVOKED/);
    const id = /^id\s+(\S+)$/m.exec(revoked.out)?.[1] ?? "";
    const twice = await gpuctl(["api-keys", "revoke", id, "--password-stdin"], { stdin: password });
    assert.equal(twice.code, 1);
    assert.match(twice.err, /already revoked.*nothing to do \(code ALREADY_REVOKED\)/);
  });

  it("logs out: revokes the key on the server and removes the profile; a second logout has nothing to do", async () => {
    assert.equal((await login()).code, 0);
    const key = (await readConfig()).profiles["default"]?.api_key ?? "";
    const out = await gpuctl(["logout", "--password-stdin"], { stdin: password });
    assert.equal(out.code, 0, out.err);
    assert.deepEqual((await readConfig()).profiles, {});
    assert.match((await gpuctl(["--api-key", key, "usage", "summary"])).err, /API_KEY_REVOKED/);
    const again = await gpuctl(["logout", "--password-stdin"], { stdin: password });
    assert.equal(again.code, 1);
    assert.match(again.err, /NOT_LOGGED_IN/);
  });

  it("logs out --local without signing in: the key is forgotten here and stays valid", async () => {
    assert.equal((await login()).code, 0);
    const key = (await readConfig()).profiles["default"]?.api_key ?? "";
    const out = await gpuctl(["logout", "--local"]);
    assert.equal(out.code, 0, out.err);
    assert.match(out.out, /is still valid: revoke it in the portal or with gpuctl api-keys revoke/);
    assert.deepEqual((await readConfig()).profiles, {});
    assert.equal((await gpuctl(["--api-key", key, "usage", "summary"])).code, 0);
  });

  it("asks for the password on a terminal, and refuses to wait for one without a terminal", async () => {
    const prompted = await gpuctl(["login", "--email", email], { tty: { typed: password } });
    assert.equal(prompted.code, 0, prompted.err);
    assert.deepEqual(prompted.prompts, [`Password for ${email}: `]);
    const piped = await gpuctl(["login", "--email", email]);
    assert.equal(piped.code, 2);
    assert.match(piped.err, /--password-stdin \(code PASSWORD_MISSING\)/);
  });

  it("reports a wrong password as the server does and stores nothing", async () => {
    const r = await gpuctl(["login", "--email", email, "--password-stdin"], { stdin: "wrong password" });
    assert.equal(r.code, 1);
    assert.match(r.err, /e-mail or password is wrong \(code CUSTOMER_AUTH_REQUIRED/);
    await assert.rejects(stat(configFile()), { code: "ENOENT" });
  });

  it("admin create-customer --if-missing leaves an existing customer as it is and succeeds", async () => {
    const env = { GPU_AGENT_ADMIN_TOKEN: cp.adminToken };
    const args = ["admin", "create-customer", "--email", email, "--password", "whatever-else", "--credits", "5"];
    const plain = await gpuctl(args, { env });
    assert.equal(plain.code, 1);
    assert.match(plain.err, /STATE_CONFLICT/);
    const tolerant = await gpuctl([...args, "--if-missing", "-q"], { env });
    assert.equal(tolerant.code, 0, tolerant.err);
    assert.match(tolerant.out, /^[0-9a-f-]{36}\n$/);
    assert.match(tolerant.err, /already exists/);
    assert.equal((await login()).code, 0, "the password is still the first one");
  });

  it("reads the password from a real terminal with echo off", async () => {
    // `script` gives gpuctl a pseudo-terminal: what it echoes would show in the output.
    const cmd = `${process.execPath} ${path.join(repoRoot, "cmd", "gpuctl.ts")} login --email ${email}`;
    const child = spawn("script", ["-qec", cmd, "/dev/null"], { env: { ...process.env, GPU_AGENT_URL: cp.url, XDG_CONFIG_HOME: configHome, GPU_AGENT_API_KEY: "" } });
    let output = "";
    let typed = false;
    child.stdout.on("data", (c: Buffer) => {
      output += c.toString();
      if (!typed && output.includes("Password for")) {
        typed = true;
        child.stdin.write(`${password}\r`);
      }
    });
    const code = await new Promise<number | null>((resolve) => child.on("exit", resolve));
    assert.equal(code, 0, output);
    assert.match(output, /Password for .*: /);
    assert.match(output, /Logged in to /);
    assert.ok(!output.includes(password), `the password was echoed:\n${output}`);
  });
});
