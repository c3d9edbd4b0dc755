/** The node's content-addressed cache of datasets and packages (src/node-agent/input-cache.ts). */
import assert from "node:assert/strict";
import { mkdtemp, readFile, rm, stat, utimes, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { InputCache } from "../../src/node-agent/input-cache.ts";
import { silentLogger } from "../../src/node-agent/logger.ts";
import { sha256 } from "./helpers.ts";

describe("input cache", () => {
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), "input-cache-"));
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  async function fileWith(name: string, content: string): Promise<{ file: string; hash: string; size: bigint }> {
    const file = path.join(dir, name);
    await writeFile(file, content);
    return { file, hash: sha256(Buffer.from(content)), size: BigInt(Buffer.byteLength(content)) };
  }

  it("gives back an exact copy of what it kept, in a directory only the agent can enter", async () => {
    const cache = new InputCache(path.join(dir, "cache"), 1 << 20, silentLogger);
    const { file, hash, size } = await fileWith("data.csv", "x1,x2,label\n1,2,0\n");
    assert.equal(await cache.copyTo(hash, size, path.join(dir, "before")), "miss");
    await cache.add(hash, file);
    const out = path.join(dir, "copy.csv");
    assert.equal(await cache.copyTo(hash, size, out), "hit");
    assert.equal(await readFile(out, "utf8"), "x1,x2,label\n1,2,0\n");
    assert.equal((await stat(path.join(dir, "cache"))).mode & 0o777, 0o700);
  });

  it("drops an entry whose bytes no longer match its sha256, and hands out nothing", async () => {
    const cache = new InputCache(path.join(dir, "cache"), 1 << 20, silentLogger);
    const { file, hash, size } = await fileWith("data.csv", "original");
    await cache.add(hash, file);
    await writeFile(path.join(dir, "cache", hash), "tampered");
    const out = path.join(dir, "copy");
    assert.equal(await cache.copyTo(hash, size, out), "corrupt");
    await assert.rejects(stat(out));
    assert.equal((await cache.entries()).length, 0);
  });

  it("evicts the least recently used entries past its bound and never keeps a file larger than the bound", async () => {
    const cache = new InputCache(path.join(dir, "cache"), 25, silentLogger);
    const a = await fileWith("a", "aaaaaaaaaa");
    const b = await fileWith("b", "bbbbbbbbbb");
    const c = await fileWith("c", "cccccccccc");
    await cache.add(a.hash, a.file);
    await cache.add(b.hash, b.file);
    // a was used more recently than b.
    await utimes(path.join(dir, "cache", b.hash), new Date(1000), new Date(1000));
    assert.equal(await cache.copyTo(a.hash, a.size, path.join(dir, "a-out")), "hit");
    await cache.add(c.hash, c.file);
    assert.deepEqual((await cache.entries()).map((e) => e.sha256).sort(), [a.hash, c.hash].sort());
    const big = await fileWith("big", "x".repeat(26));
    await cache.add(big.hash, big.file);
    assert.ok(!(await cache.entries()).some((e) => e.sha256 === big.hash));
  });

  it("ignores names that are not a sha256", async () => {
    const cache = new InputCache(path.join(dir, "cache"), 1 << 20, silentLogger);
    const { file } = await fileWith("f", "content");
    await cache.add("../../etc/passwd", file);
    assert.equal(await cache.copyTo("../../etc/passwd", 0n, path.join(dir, "out")), "miss");
    assert.equal((await cache.entries()).length, 0);
  });
});
