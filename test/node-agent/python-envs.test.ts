/**
 * Python environments per package (src/node-agent/python-envs.ts), built with the real interpreter and real
 * pip from wheels written by the test into a local wheelhouse: no registry, no network.
 */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync } from "node:fs";
import { mkdir, mkdtemp, readdir, rm, stat, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { silentLogger } from "../../src/node-agent/logger.ts";
import {
  PythonEnvError,
  createPythonEnvCache,
  customerMessage,
  normalizeRequirements,
  prepareUnitPython,
  pythonVersionMatches,
  runBuildCommand,
} from "../../src/node-agent/python-envs.ts";
import type { EnvBuildCommand, EnvLease, PackageSources, PythonEnvCacheOptions } from "../../src/node-agent/python-envs.ts";
import { SYSTEM_PATH } from "../../src/node-agent/sandbox.ts";
import { systemClock } from "../../src/platform/clock.ts";
import { wheelOf, writeWheelhouse } from "./wheels.ts";

const run = promisify(execFile);

/** What a unit sees when it imports `modules` with the environment's interpreter. */
async function importWith(lease: EnvLease, modules: string[]): Promise<Record<string, { version: string; file: string }>> {
  const code = `import importlib, json; print(json.dumps({m: {"version": importlib.import_module(m).VERSION, "file": importlib.import_module(m).__file__} for m in ${JSON.stringify(modules)}}))`;
  const { stdout } = await run(lease.pythonPath, ["-c", code], { env: { PATH: SYSTEM_PATH, ...lease.envVars } });
  return JSON.parse(stdout) as Record<string, { version: string; file: string }>;
}

function expectEnvError(fault: "customer" | "node", pattern: RegExp) {
  return (err: unknown) => {
    assert.ok(err instanceof PythonEnvError, `expected a PythonEnvError, got ${String(err)}`);
    assert.equal(err.fault, fault);
    assert.match(err.message, pattern);
    return true;
  };
}

describe("python environments per package", function () {
  // A cold build runs pip (about a second); the fallback with its own pip takes a few.
  this.timeout(60_000);

  let root: string;
  let wheelhouse: string;
  let commands: EnvBuildCommand[];

  const newCache = (overrides: Partial<PythonEnvCacheOptions> = {}, sources: PackageSources = { findLinks: [wheelhouse] }) =>
    createPythonEnvCache({
      dir: path.join(root, "envs"),
      maxBytes: 1 << 30,
      python: "python3",
      path: SYSTEM_PATH,
      sources,
      // The real child process, recorded, so a test can count what ran.
      runBuild: (cmd) => {
        commands.push(cmd);
        return runBuildCommand(cmd);
      },
      clock: systemClock,
      logger: silentLogger,
      ...overrides,
    });
  const venvsCreated = () => commands.filter((c) => c.args.includes("venv")).length;
  const signal = () => new AbortController().signal;

  beforeEach(async () => {
    root = await mkdtemp(path.join(os.tmpdir(), "python-envs-"));
    wheelhouse = path.join(root, "wheelhouse");
    await mkdir(wheelhouse);
    commands = [];
    await writeWheelhouse(wheelhouse, [
      { name: "alpha_util", version: "1.0.0" },
      { name: "beta_tools", version: "2.1.0", requires: ["alpha_util>=1"] },
      { name: "gamma_lib", version: "0.3.0" },
      { name: "delta_kit", version: "4.0.0" },
      { name: "echo_cli", version: "1.2.0", source: "def main():\n    print('echo_cli says hi')\n", scripts: { "echo-cli": "echo_cli:main" } },
    ]);
  });
  afterEach(async () => {
    await rm(root, { recursive: true, force: true });
  });

  it("builds an environment from requirements.txt with its dependencies, and the unit imports them from it", async () => {
    const cache = newCache();
    const lease = await cache.acquire("beta_tools==2.1.0\n", signal());
    assert.equal(lease.built, true);
    assert.ok(lease.seconds > 0);
    const envDir = path.join(root, "envs", lease.key);
    assert.deepEqual(lease.bindDirs, [envDir]);
    assert.equal(lease.pythonPath, path.join(envDir, "bin", "python"));
    const seen = await importWith(lease, ["beta_tools", "alpha_util"]);
    assert.equal(seen["beta_tools"]?.version, "2.1.0");
    assert.ok(seen["alpha_util"]?.file.startsWith(`${envDir}/`), "the dependency comes from the environment");
    // Units of other users read it; nothing but the finished environment carries a name in the cache.
    assert.equal((await stat(envDir)).mode & 0o777, 0o755);
    assert.deepEqual((await readdir(path.join(root, "envs"))).sort(), [lease.key]);
    await lease.release();
  });

  it("runs the commands a package installs from the environment's bin/, though it was built elsewhere", async () => {
    const lease = await newCache().acquire("echo_cli==1.2.0", signal());
    const { stdout } = await run("echo-cli", [], { env: { PATH: `${lease.binDir}:${SYSTEM_PATH}`, ...lease.envVars } });
    assert.equal(stdout, "echo_cli says hi\n");
    await lease.release();
  });

  it("uses the cached environment for the same requirements written differently, without running pip again", async () => {
    const cache = newCache();
    const first = await cache.acquire("alpha_util==1.0.0\ngamma_lib\n", signal());
    await first.release();
    const commandsAfterBuild = commands.length;
    const second = await cache.acquire("# same, reordered\ngamma_lib   # no pin\n\nalpha_util==1.0.0\n", signal());
    assert.equal(second.key, first.key);
    assert.equal(second.built, false);
    assert.equal(commands.length, commandsAfterBuild);
    assert.equal((await importWith(second, ["gamma_lib"]))["gamma_lib"]?.version, "0.3.0");
    await second.release();
  });

  it("builds once when several units want the same environment at the same time", async () => {
    const cache = newCache();
    const leases = await Promise.all([1, 2, 3].map(() => cache.acquire("delta_kit==4.0.0", signal())));
    assert.equal(venvsCreated(), 1);
    assert.deepEqual(leases.map((l) => l.built).sort(), [false, false, true]);
    assert.equal(new Set(leases.map((l) => l.key)).size, 1);
    await Promise.all(leases.map((l) => l.release()));
  });

  it("fails a requirement no source satisfies with pip's message, which names no path of the node, and keeps nothing", async () => {
    const cache = newCache();
    const err: unknown = await cache.acquire("alpha_util==9.9\n", signal()).then(
      () => undefined,
      (e: unknown) => e,
    );
    expectEnvError("customer", /No matching distribution found for alpha_util==9\.9/)(err);
    const text = (err as Error).message;
    assert.ok(!text.includes(root) && !text.includes(os.tmpdir()), text);
    assert.deepEqual(await readdir(path.join(root, "envs")), []);
    assert.deepEqual(await cache.entries(), []);
  });

  it("fails requirements that cannot all be satisfied together with the resolver's conflict", async () => {
    const cache = newCache();
    await assert.rejects(cache.acquire("beta_tools==2.1.0\nalpha_util<1\n", signal()), expectEnvError("customer", /alpha_util/));
  });

  it("installs only what the node's interpreter lacks, with no package source at all", async () => {
    // Debian's python3 has pip itself among its packages: a requirement it already satisfies needs no source.
    const cache = newCache({}, { findLinks: [] });
    const lease = await cache.acquire("pip\n", signal());
    assert.equal(lease.built, true);
    await lease.release();
    await assert.rejects(
      cache.acquire("alpha_util\n", signal()),
      expectEnvError("customer", /No matching distribution found for alpha_util[\s\S]*this node has no package index/),
    );
  });

  it("checks pinned hashes: the right one installs, a wrong one fails with pip's hash mismatch", async () => {
    const wheel = await wheelOf({ name: "alpha_util", version: "1.0.0" });
    const good = createHash("sha256").update(wheel.bytes).digest("hex");
    const cache = newCache();
    const lease = await cache.acquire(`alpha_util==1.0.0 --hash=sha256:${good}\n`, signal());
    assert.ok(commands.some((c) => c.args.includes("--require-hashes")));
    await lease.release();
    await assert.rejects(
      cache.acquire(`gamma_lib==0.3.0 --hash=sha256:${"0".repeat(64)}\n`, signal()),
      expectEnvError("customer", /HASH|hash/),
    );
  });

  it("evicts the least recently used environments past its bound, never one a unit holds", async () => {
    const sizes = newCache();
    for (const req of ["alpha_util", "gamma_lib"]) await (await sizes.acquire(req, signal())).release();
    const [newer, older] = await sizes.entries();
    assert.ok(newer !== undefined && older !== undefined);
    // Room for two environments of this size, not three.
    const cache = newCache({ maxBytes: newer.sizeBytes + older.sizeBytes + Math.floor(older.sizeBytes / 2) });
    const alpha = await cache.acquire("alpha_util", signal());
    await alpha.release(); // alpha is now the most recent, gamma the least
    const delta = await cache.acquire("delta_kit", signal());
    await delta.release();
    assert.deepEqual((await cache.entries()).map((e) => e.key).sort(), [alpha.key, delta.key].sort());

    const none = newCache({ maxBytes: 0 });
    const held = await none.acquire("alpha_util", signal());
    await (await none.acquire("beta_tools", signal())).release();
    assert.deepEqual((await none.entries()).map((e) => e.key), [held.key], "the held environment stays; the released one goes");
    assert.ok(existsSync(held.pythonPath));
    await held.release();
    assert.deepEqual(await none.entries(), []);
  });

  it("removes what an interrupted build left behind and never hands it out", async () => {
    const envs = path.join(root, "envs");
    const half = path.join(envs, "a".repeat(64));
    await mkdir(path.join(half, "bin"), { recursive: true });
    await mkdir(path.join(envs, `.build-${"b".repeat(64)}-0`), { recursive: true });
    const cache = newCache();
    assert.deepEqual(await cache.entries(), []);
    assert.deepEqual(await readdir(envs), []);
  });

  it("builds with a pip of the environment's own when the node's interpreter has none, and sees that interpreter's packages", async () => {
    // The owner's interpreter: a venv without pip (as `uv venv` makes), holding alpha_util.
    const owner = path.join(root, "owner-venv");
    await run("/usr/bin/python3", ["-m", "venv", "--without-pip", owner]);
    await run("/usr/bin/python3", ["-m", "pip", "--python", path.join(owner, "bin", "python"), "install", "-q", "--no-index", "--find-links", wheelhouse, "--root-user-action=ignore", "alpha_util==1.0.0"]);
    const cache = newCache({ python: path.join(owner, "bin", "python") });
    const lease = await cache.acquire("beta_tools==2.1.0\n", signal());
    const seen = await importWith(lease, ["beta_tools", "alpha_util"]);
    assert.ok(seen["alpha_util"]?.file.startsWith(`${owner}/`), "alpha_util is the owner's copy, not a second one");
    assert.ok(seen["beta_tools"]?.file.startsWith(path.join(root, "envs", lease.key)));
    await lease.release();
  });

  it("stops waiting when the unit is cancelled, and the build still lands for the next unit", async () => {
    const cache = newCache();
    const cancel = new AbortController();
    const waiting = cache.acquire("gamma_lib", cancel.signal);
    cancel.abort(new Error("cancelled"));
    await assert.rejects(waiting, /cancelled/);
    const next = await cache.acquire("gamma_lib", signal());
    assert.equal(venvsCreated(), 1);
    await next.release();
  });

  describe("a package's requirements and Python version", () => {
    let pkg: string;
    beforeEach(async () => {
      pkg = path.join(root, "package");
      await mkdir(pkg);
    });

    it("asks nothing of the interpreter for a package with neither requirements.txt nor a python version", async () => {
      assert.equal(await prepareUnitPython(pkg, newCache(), signal()), undefined);
      assert.equal(commands.length, 0);
    });

    it("fails a package that needs another Python than the node's, saying both", async () => {
      await writeFile(path.join(pkg, "gpu-agent.json"), JSON.stringify({ python: "3.0" }));
      await assert.rejects(prepareUnitPython(pkg, newCache(), signal()), expectEnvError("customer", /needs Python 3\.0 .*this node runs Python 3\.\d+\.\d+/));
    });

    it("runs a package whose python matches the node's with its requirements' environment", async () => {
      const { stdout } = await run("python3", ["-c", "import sys; print('%d.%d' % sys.version_info[:2])"], { env: { PATH: SYSTEM_PATH } });
      await writeFile(path.join(pkg, "gpu-agent.json"), JSON.stringify({ python: stdout.trim() }));
      await writeFile(path.join(pkg, "requirements.txt"), "alpha_util==1.0.0\n");
      const prepared = await prepareUnitPython(pkg, newCache(), signal());
      assert.ok(prepared?.lease !== undefined);
      assert.equal((await importWith(prepared.lease, ["alpha_util"]))["alpha_util"]?.version, "1.0.0");
      await prepared.lease.release();
    });

    it("refuses a requirements.txt that is not a regular file", async () => {
      await mkdir(path.join(pkg, "requirements.txt"));
      await assert.rejects(prepareUnitPython(pkg, newCache(), signal()), expectEnvError("customer", /requirements\.txt must be a regular file/));
    });
  });

  describe("requirements.txt as the agent reads it", () => {
    const accepted: { name: string; text: string; lines: string[]; allHashed: boolean }[] = [
      { name: "comments, blank lines and repeated spaces do not count", text: "# deps\n\nnumpy  ==1.26.4   # pinned\n", lines: ["numpy ==1.26.4"], allHashed: false },
      { name: "order and duplicates do not count", text: "b\na\nb\n", lines: ["a", "b"], allHashed: false },
      { name: "extras and markers are kept", text: 'torch[cuda]>=2; platform_machine == "x86_64"\n', lines: ['torch[cuda]>=2; platform_machine == "x86_64"'], allHashed: false },
      { name: "a backslash continues a line", text: "alpha==1 \\\n  --hash=sha256:ABCDEF\n", lines: ["alpha==1 --hash=sha256:abcdef"], allHashed: true },
      { name: "hash-checking needs a hash on every requirement", text: "a==1 --hash=sha256:aa\nb==2\n", lines: ["a==1 --hash=sha256:aa", "b==2"], allHashed: false },
      { name: "an empty file asks for nothing", text: "\n# nothing\n", lines: [], allHashed: false },
    ];
    for (const tc of accepted) {
      it(tc.name, () => {
        assert.deepEqual(normalizeRequirements(tc.text), { lines: tc.lines, allHashed: tc.allHashed });
      });
    }

    // The rules are finalize's (test/platform covers them line by line); the agent applies them before pip runs.
    const refused: { name: string; text: string; why: RegExp }[] = [
      { name: "a direct URL reference", text: "alpha @ https://example.com/alpha.whl", why: /line 1: .* names a URL/ },
      { name: "a VCS URL", text: "ok\ngit+https://github.com/x/y.git", why: /line 2: .* version-control/ },
      { name: "a local path", text: "./wheels/alpha.whl", why: /line 1: .* local path/ },
      { name: "another index", text: "--extra-index-url https://evil.example/simple\nalpha", why: /chooses where packages come from/ },
      { name: "an included file", text: "-r other.txt", why: /includes another file/ },
      { name: "an editable install", text: "-e .", why: /editable install/ },
      { name: "building from source", text: "alpha --no-binary :all:", why: /pip option --no-binary/ },
    ];
    for (const tc of refused) {
      it(`refuses ${tc.name}`, () => {
        assert.throws(() => normalizeRequirements(tc.text), expectEnvError("customer", tc.why));
      });
    }
  });

  describe("which Python a package's version names", () => {
    const cases: [string, string, boolean][] = [
      ["3.11", "3.11.2", true],
      ["3.11", "3.11.10", true],
      ["3.12", "3.11.2", false],
      ["3.1", "3.11.2", false],
      ["3.11", "3.1.1", false],
    ];
    for (const [requested, actual, matches] of cases) {
      it(`"${requested}" ${matches ? "names" : "does not name"} Python ${actual}`, () => {
        assert.equal(pythonVersionMatches(requested, actual), matches);
      });
    }
  });

  describe("what the customer reads of pip's output", () => {
    it("replaces the node's paths, masks credentials, drops pip's notices and keeps the end", () => {
      const output = [
        "Looking in links: /var/lib/gpu-agent/wheels",
        "Processing /var/lib/gpu-agent/envs/.build-abc/x.whl",
        "ERROR: Could not open /root/secret/file",
        "Looking in indexes: https://owner:s3cret@pypi.example/simple",
        "[notice] A new release of pip is available",
        "ERROR: No matching distribution found for alpha==2",
      ].join("\n");
      const text = customerMessage(output, [
        ["/var/lib/gpu-agent/envs/.build-abc", "<env>"],
        ["/var/lib/gpu-agent/wheels", "<wheelhouse>"],
      ]);
      assert.equal(
        text,
        [
          "Looking in links: <wheelhouse>",
          "Processing <env>/x.whl",
          "ERROR: Could not open <path>",
          "Looking in indexes: https://***@pypi.example/simple",
          "ERROR: No matching distribution found for alpha==2",
        ].join("\n"),
      );
    });
  });
});
