/**
 * The agent unpacking a package onto its own disk (src/node-agent/unzip.ts): by the shared archive
 * rules, writing nothing from a zip it refuses, and never showing the node's paths in what it reports
 * (the customer reads "package refused: …").
 */
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { mkdir, mkdtemp, readFile, readdir, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { PackageUnpackError, UnsafeZipError, extractZipSafely } from "../../src/node-agent/unzip.ts";
import { craftZip } from "../support/crafted-zip.ts";
import { zipOf } from "./helpers.ts";

describe("the agent unpacking a package", () => {
  let dir: string;
  let count = 0;
  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), "unzip-"));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  /** A path in the node's data directory of this test. */
  const within = (name: string): string => path.join(dir, name);

  /** Writes `zip` to the node's download directory and names a fresh destination. */
  async function placed(zip: Buffer): Promise<{ zipFile: string; dest: string }> {
    count += 1;
    const zipFile = within(`download-${count}/package.zip`);
    await mkdir(path.dirname(zipFile));
    await writeFile(zipFile, zip);
    return { zipFile, dest: within(`work-${count}/package`) };
  }

  it("writes every file and directory byte for byte, files 0644", async () => {
    const data = Buffer.alloc(70_000, 0x5a);
    const { zipFile, dest } = await placed(await zipOf({ "train.py": "print(1)\n", "lib/data.bin": data }));
    const result = await extractZipSafely(zipFile, dest);
    assert.deepEqual(result, { entries: 2, bytes: 9 + data.length });
    assert.equal(await readFile(path.join(dest, "train.py"), "utf8"), "print(1)\n");
    assert.deepEqual(await readFile(path.join(dest, "lib/data.bin")), data);
    assert.equal((await stat(path.join(dest, "train.py"))).mode & 0o777, 0o644);
  });

  it("writes nothing from a package the rules refuse, even its good entries", async () => {
    const { zipFile, dest } = await placed(craftZip([{ name: "train.py", content: "print(1)" }, { name: "data", content: "/etc", mode: 0o120777 }]));
    await assert.rejects(extractZipSafely(zipFile, dest), UnsafeZipError);
    assert.equal(existsSync(dest), false);
  });

  const refusals: { name: string; zip: () => Buffer; limits?: { maxEntries: number; maxUncompressedBytes: number }; message: RegExp }[] = [
    { name: "a duplicate entry", zip: () => craftZip([{ name: "train.py" }, { name: "train.py" }]), message: /entry "train.py" appears twice/ },
    { name: "a lying size", zip: () => craftZip([{ name: "train.py", content: "\0".repeat(10_000), deflate: true, declaredSize: 8 }]), message: /entry "train.py" inflates to more than the 8 bytes/ },
    { name: "a symbolic link", zip: () => craftZip([{ name: "link", mode: 0o120777, content: "../../credential" }]), message: /entry "link" is a symbolic link/ },
    { name: "a path escape", zip: () => craftZip([{ name: "../../node.key", content: "x" }]), message: /entry "\.\.\/\.\.\/node.key" has a "\.\." segment/ },
    { name: "too many entries", zip: () => craftZip([{ name: "a" }, { name: "b" }, { name: "c" }]), limits: { maxEntries: 2, maxUncompressedBytes: 100 }, message: /3 entries; at most 2/ },
    { name: "more than the size limit", zip: () => craftZip([{ name: "a", content: "x".repeat(101) }]), limits: { maxEntries: 2, maxUncompressedBytes: 100 }, message: /more than 100 bytes/ },
  ];
  for (const tc of refusals) {
    it(`refuses ${tc.name} without showing any path of the node`, async () => {
      const { zipFile, dest } = await placed(tc.zip());
      const error = await extractZipSafely(zipFile, dest, tc.limits).then(
        () => assert.fail("the package was unpacked"),
        (e: unknown) => e,
      );
      assert.ok(error instanceof UnsafeZipError, String(error));
      assert.match(error.message, tc.message);
      for (const nodePath of [dir, zipFile, dest]) assert.ok(!error.message.includes(nodePath), `shows ${nodePath}: ${error.message}`);
    });
  }

  it("reports the node's own disk failing as the node's fault, without its paths", async () => {
    const { zipFile } = await placed(await zipOf({ "train.py": "print(1)\n" }));
    // The destination's parent is a file: the node's fault, not the package's.
    const blocker = within("blocker");
    await writeFile(blocker, "");
    const cases = [
      { zipFile, dest: path.join(blocker, "package"), code: "ENOTDIR" },
      { zipFile: within("no-such-download/package.zip"), dest: within("elsewhere"), code: "ENOENT" },
    ];
    for (const c of cases) {
      const error = await extractZipSafely(c.zipFile, c.dest).then(
        () => assert.fail("the package was unpacked"),
        (e: unknown) => e,
      );
      assert.ok(error instanceof PackageUnpackError && !(error instanceof UnsafeZipError), String(error));
      assert.match(error.message, new RegExp(`\\(${c.code}\\)`));
      assert.ok(!error.message.includes(dir), `shows the node's path: ${error.message}`);
    }
    assert.deepEqual(await readdir(path.dirname(zipFile)), ["package.zip"]);
  });
});
