/**
 * The node's cache of unit inputs that do not change: datasets and training
 * packages, stored by sha256 under `<data-dir>/cache/`, so the stages of a job
 * (and later jobs on the same dataset) do not download the same bytes again.
 * The control plane prefers nodes that hold a unit's dataset
 * (src/scheduling/node-history.ts), which is what makes the cache pay.
 *
 * - Content-addressed: an entry is only ever the file whose sha256 is its name,
 *   and every use re-hashes it while copying it out, so a corrupted or tampered
 *   entry is dropped and downloaded again instead of reaching a unit.
 * - Copied, never linked, into work directories: work directories are handed
 *   to the unit's user, and a hard link would hand it the cache entry too.
 * - Bounded: least recently used entries (by mtime, touched on every use) go
 *   when the total passes `maxBytes`; a file larger than the bound is not kept.
 * - The directory is the agent's own (mode 0700), out of units' reach when they
 *   run as another user.
 */
import { createHash } from "node:crypto";
import { createReadStream, createWriteStream } from "node:fs";
import { chmod, copyFile, constants, mkdir, readdir, rename, rm, stat, utimes } from "node:fs/promises";
import path from "node:path";
import { Transform } from "node:stream";
import { pipeline } from "node:stream/promises";
import { systemClock } from "../platform/clock.ts";
import type { Clock } from "../platform/clock.ts";
import type { AgentLogger } from "./logger.ts";

const sha256Name = /^[0-9a-f]{64}$/;

/** What a lookup found. */
export type CacheLookup = "hit" | "miss" | "corrupt";

/** A bounded, content-addressed file cache. */
export class InputCache {
  readonly dir: string;
  readonly maxBytes: number;
  private readonly logger: AgentLogger;
  private readonly clock: Clock;
  private ready: Promise<void> | undefined;
  private tmpCounter = 0;

  /**
   * `clock` is the file system's time: it stamps entries' mtimes and is compared with the mtimes the
   * file system writes, so it stays the real clock (the default) unless a test controls both.
   */
  constructor(dir: string, maxBytes: number, logger: AgentLogger, clock: Clock = systemClock) {
    this.dir = dir;
    this.maxBytes = maxBytes;
    this.logger = logger;
    this.clock = clock;
  }

  private prepare(): Promise<void> {
    this.ready ??= (async () => {
      await mkdir(this.dir, { recursive: true, mode: 0o700 });
      await chmod(this.dir, 0o700);
    })();
    return this.ready;
  }

  private entry(sha256: string): string {
    return path.join(this.dir, sha256);
  }

  /**
   * Copies the entry for `sha256` to `dest`, hashing as it copies. "hit" when
   * the copy has exactly that sha256 and size; otherwise `dest` is removed, and
   * a bad entry is dropped ("corrupt").
   */
  async copyTo(sha256: string, sizeBytes: bigint, dest: string): Promise<CacheLookup> {
    const key = sha256.toLowerCase();
    if (!sha256Name.test(key)) return "miss";
    await this.prepare();
    const source = this.entry(key);
    const found = await stat(source).catch(() => undefined);
    if (found === undefined || !found.isFile()) return "miss";
    const hash = createHash("sha256");
    let size = 0;
    try {
      await pipeline(
        createReadStream(source),
        new Transform({
          transform(chunk: Buffer, _enc, cb) {
            hash.update(chunk);
            size += chunk.length;
            cb(null, chunk);
          },
        }),
        createWriteStream(dest, { mode: 0o644 }),
      );
    } catch (err) {
      await rm(dest, { force: true });
      this.logger.warn({ sha256: key, err: err instanceof Error ? err.message : String(err) }, "input cache: read failed; downloading instead");
      return "miss";
    }
    if (hash.digest("hex") !== key || (sizeBytes > 0n && BigInt(size) !== sizeBytes)) {
      await rm(dest, { force: true });
      await rm(source, { force: true });
      this.logger.warn({ sha256: key }, "input cache: entry does not match its sha256; dropped");
      return "corrupt";
    }
    const now = new Date(this.clock.now());
    await utimes(source, now, now).catch(() => {});
    return "hit";
  }

  /**
   * Keeps a copy of `file`, whose sha256 the caller has verified, then evicts
   * least recently used entries past the bound. Never throws: a cache that
   * cannot be written only costs downloads.
   */
  async add(sha256: string, file: string): Promise<void> {
    const key = sha256.toLowerCase();
    if (!sha256Name.test(key)) return;
    try {
      await this.prepare();
      const { size } = await stat(file);
      if (size > this.maxBytes) return;
      const tmp = path.join(this.dir, `.tmp-${process.pid}-${this.tmpCounter++}`);
      await copyFile(file, tmp, constants.COPYFILE_FICLONE);
      await chmod(tmp, 0o600);
      await rename(tmp, this.entry(key));
      await this.evict(key);
    } catch (err) {
      this.logger.warn({ sha256: key, err: err instanceof Error ? err.message : String(err) }, "input cache: could not keep a copy");
    }
  }

  /** Entries, most recently used first. */
  async entries(): Promise<{ sha256: string; sizeBytes: number; usedAtMs: number }[]> {
    await this.prepare();
    const out: { sha256: string; sizeBytes: number; usedAtMs: number }[] = [];
    for (const name of await readdir(this.dir)) {
      const full = path.join(this.dir, name);
      const s = await stat(full).catch(() => undefined);
      if (s === undefined || !s.isFile()) continue;
      if (!sha256Name.test(name)) {
        // A copy interrupted by a crash: no one will finish it.
        if (name.startsWith(".tmp-") && this.clock.now() - s.mtimeMs > 3600_000) await rm(full, { force: true });
        continue;
      }
      out.push({ sha256: name, sizeBytes: s.size, usedAtMs: s.mtimeMs });
    }
    return out.sort((a, b) => b.usedAtMs - a.usedAtMs || (a.sha256 < b.sha256 ? -1 : 1));
  }

  /** Drops least recently used entries until the total fits; `keep` (just added) goes last. */
  private async evict(keep: string): Promise<void> {
    const all = await this.entries();
    let total = all.reduce((n, e) => n + e.sizeBytes, 0);
    const victims = all.filter((e) => e.sha256 !== keep).reverse();
    for (const victim of victims) {
      if (total <= this.maxBytes) break;
      await rm(this.entry(victim.sha256), { force: true });
      total -= victim.sizeBytes;
      this.logger.info({ sha256: victim.sha256, size_bytes: victim.sizeBytes }, "input cache: evicted");
    }
  }
}
