/**
 * The config file that holds the keys `gpuctl login` makes: where it is, and that it is never
 * readable by others, whatever the umask or the directory it lands in.
 */
import assert from "node:assert/strict";
import { chmod, mkdir, mkdtemp, readFile, readdir, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import type { ConfigFile } from "../../src/cli/config.ts";
import { configFilePath, configStore } from "../../src/cli/config.ts";

const profile = { url: "http://127.0.0.1:8080", email: "a@b.c", api_key: "sk_live_x", api_key_id: "k1", api_key_name: "gpuctl@h" };

describe("gpuctl config file", () => {
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(path.join(tmpdir(), "gpuctl-cfg-"));
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  const places: { name: string; env: Record<string, string>; file: (home: string) => string }[] = [
    { name: "XDG_CONFIG_HOME when absolute", env: { XDG_CONFIG_HOME: "/x/conf" }, file: () => "/x/conf/gpuctl/config.json" },
    { name: "~/.config when XDG_CONFIG_HOME is relative (as the XDG spec says)", env: { XDG_CONFIG_HOME: "conf" }, file: (h) => `${h}/.config/gpuctl/config.json` },
    { name: "~/.config without XDG_CONFIG_HOME", env: {}, file: (h) => `${h}/.config/gpuctl/config.json` },
  ];
  for (const tc of places) {
    it(`lives under ${tc.name}`, () => assert.equal(configFilePath(tc.env, "/home/u"), tc.file("/home/u")));
  }

  it("writes 0600 in a 0700 directory, even into an existing open directory under a lax umask", async () => {
    const file = path.join(dir, "gpuctl", "config.json");
    await mkdir(path.dirname(file), { mode: 0o755 });
    await chmod(path.dirname(file), 0o755);
    const old = process.umask(0o000);
    try {
      await configStore(file, () => "t1").write({ profiles: { default: profile } });
    } finally {
      process.umask(old);
    }
    assert.equal((await stat(file)).mode & 0o777, 0o600);
    assert.equal((await stat(path.dirname(file))).mode & 0o777, 0o700);
    assert.deepEqual(JSON.parse(await readFile(file, "utf8")) as ConfigFile, { profiles: { default: profile } });
    assert.deepEqual(await readdir(path.dirname(file)), ["config.json"], "no temporary file left");
  });

  it("reads no profiles from a missing file, and warns when the file is readable by others", async () => {
    const file = path.join(dir, "gpuctl", "config.json");
    const store = configStore(file, () => "t2");
    assert.deepEqual(store.read(), { profiles: {} });
    await store.write({ profiles: { default: profile } });
    await chmod(file, 0o644);
    const warnings: string[] = [];
    assert.deepEqual(store.read((w) => warnings.push(w)).profiles["default"], profile);
    assert.match(warnings.join(""), /readable by others \(mode 0644\).*chmod 600/);
  });

  const broken: { name: string; text: string; err: RegExp }[] = [
    { name: "not JSON", text: "{", err: /is not valid JSON/ },
    { name: "no profiles object", text: "[]", err: /has no "profiles" object/ },
    { name: "a profile without its key", text: JSON.stringify({ profiles: { work: { url: "u" } } }), err: /profile "work" lacks url, email or api_key/ },
  ];
  for (const tc of broken) {
    it(`names the file when it is ${tc.name}`, async () => {
      const file = path.join(dir, "config.json");
      await writeFile(file, tc.text, { mode: 0o600 });
      assert.throws(() => configStore(file, () => "t3").read(), (e: Error & { code?: string }) => tc.err.test(e.message) && e.message.includes(file) && e.code === "CONFIG_INVALID");
    });
  }
});
