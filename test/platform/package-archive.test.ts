/**
 * The one set of archive rules (src/platform/package-archive.ts) that the control plane applies at
 * finalize and every agent applies when it unpacks: which zips pass, which are refused and in what
 * words. The zips are built here, byte by byte where no honest tool would write them.
 */
import assert from "node:assert/strict";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { PackageArchiveLimits } from "../../src/platform/package-archive.ts";
import { PackageArchiveError, openPackageArchive } from "../../src/platform/package-archive.ts";
import { zipOf } from "../node-agent/helpers.ts";
import { craftZip } from "../support/crafted-zip.ts";

/** Every file of the zip read through the rules: path → content; directories → null. */
let zips = 0;
async function readAll(dir: string, zip: Buffer, limits?: PackageArchiveLimits): Promise<Map<string, string | null>> {
  const file = join(dir, `${++zips}.zip`);
  await writeFile(file, zip);
  const archive = await openPackageArchive(file, limits);
  try {
    const seen = new Map<string, string | null>();
    for (const entry of archive.entries) {
      if (entry.kind === "directory") {
        seen.set(entry.path, null);
        continue;
      }
      const chunks: Buffer[] = [];
      for await (const chunk of await archive.read(entry)) chunks.push(chunk as Buffer);
      seen.set(entry.path, Buffer.concat(chunks).toString("latin1"));
    }
    return seen;
  } finally {
    archive.close();
  }
}

const big = "x".repeat(50_000);

describe("the package archive rules", () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), "package-archive-"));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  const accepted: { name: string; zip: () => Promise<Buffer> | Buffer; limits?: PackageArchiveLimits; read: Record<string, string | null> }[] = [
    {
      name: "files and directories as an ordinary tool writes them",
      zip: () => zipOf({ "train.py": "print(1)\n", "lib/util.py": big }),
      read: { "train.py": "print(1)\n", "lib/util.py": big },
    },
    {
      name: "stored and deflated entries, with explicit directory entries",
      zip: () => craftZip([{ name: "src/" }, { name: "src/a.py", content: "a" }, { name: "src/b.txt", content: big, deflate: true }]),
      read: { src: null, "src/a.py": "a", "src/b.txt": big },
    },
    {
      name: "names with ./ segments and a ./ root entry, read as the paths they land on",
      zip: () => craftZip([{ name: "./" }, { name: "./train.py", content: "t" }, { name: "pkg/./m.py", content: "m" }]),
      read: { "": null, "train.py": "t", "pkg/m.py": "m" },
    },
    {
      name: "Windows separators, read as /",
      zip: () => craftZip([{ name: "train.py", content: "t" }, { name: "lib\\util.py", content: "u" }]),
      read: { "train.py": "t", "lib/util.py": "u" },
    },
    {
      name: "sizes in a data descriptor (bit 3), which the local header leaves at zero",
      zip: () => craftZip([{ name: "train.py", content: "t", flags: 0x808, localSize: 0 }]),
      read: { "train.py": "t" },
    },
    {
      name: "exactly as many entries and bytes as the limits allow",
      zip: () => craftZip([{ name: "a", content: "12345" }, { name: "b", content: "12345" }]),
      limits: { maxEntries: 2, maxUncompressedBytes: 10 },
      read: { a: "12345", b: "12345" },
    },
  ];
  for (const tc of accepted) {
    it(`accepts ${tc.name}`, async () => {
      const seen = await readAll(dir, await tc.zip(), tc.limits);
      assert.deepEqual(Object.fromEntries(seen), tc.read);
    });
  }

  const small: PackageArchiveLimits = { maxEntries: 4, maxUncompressedBytes: 1000 };
  const refused: { name: string; zip: () => Buffer; message: RegExp }[] = [
    { name: "a file that is not a zip", zip: () => Buffer.from("print('not a zip')\n"), message: /not a readable zip file/ },
    { name: "a duplicate entry", zip: () => craftZip([{ name: "train.py", content: "a" }, { name: "train.py", content: "b" }]), message: /entry "train.py" appears twice/ },
    { name: "two names for one path", zip: () => craftZip([{ name: "train.py" }, { name: "./train.py" }]), message: /entry "\.\/train.py" lands on the same path as entry "train.py"/ },
    { name: "a directory and a file of one name", zip: () => craftZip([{ name: "lib/" }, { name: "lib" }]), message: /entry "lib" lands on the same path as entry "lib\/"/ },
    { name: "a file where a later entry needs a directory", zip: () => craftZip([{ name: "lib" }, { name: "lib/util.py" }]), message: /entry "lib\/util.py" needs "lib" to be a directory/ },
    { name: "a file where an earlier entry needed a directory", zip: () => craftZip([{ name: "lib/pkg/util.py" }, { name: "lib" }]), message: /entry "lib\/pkg\/util.py" needs "lib" to be a directory/ },
    { name: "a symbolic link", zip: () => craftZip([{ name: "train.py" }, { name: "data", content: "/etc", mode: 0o120777 }]), message: /entry "data" is a symbolic link; a package holds only regular files and directories/ },
    { name: "a character device", zip: () => craftZip([{ name: "tty", mode: 0o020644 }]), message: /entry "tty" is a character device/ },
    { name: "a block device", zip: () => craftZip([{ name: "sda", mode: 0o060644 }]), message: /entry "sda" is a block device/ },
    { name: "a named pipe", zip: () => craftZip([{ name: "fifo", mode: 0o010644 }]), message: /entry "fifo" is a named pipe/ },
    { name: "a socket", zip: () => craftZip([{ name: "sock", mode: 0o140644 }]), message: /entry "sock" is a socket/ },
    { name: "a directory mode on a file name", zip: () => craftZip([{ name: "lib", mode: 0o040755 }]), message: /entry "lib" is marked as a directory/ },
    { name: "a directory with content", zip: () => craftZip([{ name: "lib/", content: "x", mode: 0o040755 }]), message: /entry "lib\/" is a directory with content/ },
    { name: "a path climbing out with ..", zip: () => craftZip([{ name: "../evil.py", content: "x" }]), message: /entry "\.\.\/evil.py" has a "\.\." segment/ },
    { name: "a path climbing out with Windows separators", zip: () => craftZip([{ name: "a\\..\\..\\evil.py" }]), message: /entry "a\/\.\.\/\.\.\/evil.py" has a "\.\." segment/ },
    { name: "an absolute path", zip: () => craftZip([{ name: "/etc/cron.d/x" }]), message: /entry "\/etc\/cron.d\/x" is an absolute path/ },
    { name: "a drive letter", zip: () => craftZip([{ name: "C:/x.py" }]), message: /entry "C:\/x.py" is an absolute path/ },
    { name: "an empty path segment", zip: () => craftZip([{ name: "a//b.py" }]), message: /entry "a\/\/b.py" has an empty path segment/ },
    { name: "a control character in a name", zip: () => craftZip([{ name: "a\nb.py" }]), message: /entry "a\\nb.py" has a control character/ },
    { name: "a path segment longer than a file system takes", zip: () => craftZip([{ name: `${"a".repeat(256)}.py` }]), message: /path segment longer than 255 bytes/ },
    { name: "too many entries", zip: () => craftZip(["a", "b", "c", "d", "e"].map((name) => ({ name }))), message: /the package has 5 entries; at most 4 are allowed/ },
    { name: "more bytes than the uncompressed limit", zip: () => craftZip([{ name: "a", content: "x".repeat(600) }, { name: "b", content: "x".repeat(600) }]), message: /unpacks to more than 1000 bytes/ },
    {
      name: "a declared size that hides a bigger file (a zip bomb)",
      zip: () => craftZip([{ name: "bomb", content: "\0".repeat(100_000), deflate: true, declaredSize: 10 }]),
      message: /entry "bomb" inflates to more than the 10 bytes the zip declares/,
    },
    { name: "a declared size bigger than the data", zip: () => craftZip([{ name: "short", content: "abc", deflate: true, declaredSize: 500 }]), message: /entry "short" inflates to 3 bytes, not the 500 the zip declares/ },
    { name: "a stored entry whose sizes disagree", zip: () => craftZip([{ name: "a", content: "abc", declaredSize: 2 }]), message: /entry "a" is stored uncompressed but declares 2 bytes in 3/ },
    { name: "a local header with other sizes than the directory", zip: () => craftZip([{ name: "a", content: "abc", deflate: true, localSize: 999 }]), message: /entry "a" declares other sizes in its local header/ },
    { name: "a local header with another name than the directory", zip: () => craftZip([{ name: "a.py", content: "abc", localName: "../x.py" }]), message: /entry "a.py" has another name in its local header/ },
    { name: "deflated data that is damaged", zip: () => craftZip([{ name: "a.py", content: "\xff\xff\xff not deflate", method: 8 }]), message: /entry "a.py" has damaged data/ },
    { name: "content that does not match its CRC-32", zip: () => craftZip([{ name: "a", content: "abc", declaredCrc: 1234 }]), message: /entry "a" does not match its CRC-32/ },
    { name: "entries that share their bytes", zip: () => craftZip([{ name: "outer.bin", content: "x" }, { name: "inner.txt", content: "hi", insideOf: 0 }]), message: /entry "(inner.txt|outer.bin)" shares its bytes with entry "(outer.bin|inner.txt)"/ },
    { name: "an encrypted entry", zip: () => craftZip([{ name: "a", content: "abc", flags: 0x801 }]), message: /entry "a" is encrypted/ },
    { name: "an unsupported compression method", zip: () => craftZip([{ name: "a", content: "abc", method: 12 }]), message: /entry "a" uses compression method 12/ },
  ];
  for (const tc of refused) {
    it(`refuses ${tc.name}`, async () => {
      const error = await readAll(dir, tc.zip(), small).then(
        () => assert.fail("the zip was accepted"),
        (e: unknown) => e,
      );
      assert.ok(error instanceof PackageArchiveError, `expected a PackageArchiveError, got ${String(error)}`);
      assert.match(error.message, tc.message);
      assert.ok(!error.message.includes(dir), `the message shows the machine's path: ${error.message}`);
    });
  }

  // Small files are read and inflated at once, large ones streamed: the same checks, the same words.
  for (const [how, size] of [
    ["read whole", 3000],
    ["streamed", 9 * 1024 ** 2],
  ] as const) {
    const content = Buffer.alloc(size, 0x61);
    const contentCases: { name: string; zip: () => Buffer; message?: RegExp }[] = [
      { name: "its content intact", zip: () => craftZip([{ name: "w.bin", content, deflate: true }]) },
      { name: "more bytes than declared", zip: () => craftZip([{ name: "w.bin", content, deflate: true, declaredSize: size - 1 }]), message: new RegExp(`entry "w.bin" inflates to more than the ${size - 1} bytes`) },
      { name: "fewer bytes than declared", zip: () => craftZip([{ name: "w.bin", content, deflate: true, declaredSize: size + 1 }]), message: new RegExp(`entry "w.bin" inflates to ${size} bytes, not the ${size + 1}`) },
      { name: "another CRC-32", zip: () => craftZip([{ name: "w.bin", content, deflate: true, declaredCrc: 1 }]), message: /entry "w.bin" does not match its CRC-32/ },
      { name: "damaged deflate data", zip: () => craftZip([{ name: "w.bin", content: Buffer.alloc(size, 0xff), method: 8 }]), message: /entry "w.bin" has damaged data/ },
    ];
    for (const tc of contentCases) {
      it(`checks a file ${how} (${size} bytes): ${tc.message === undefined ? "accepts" : "refuses"} ${tc.name}`, async () => {
        const read = readAll(dir, tc.zip());
        if (tc.message === undefined) {
          assert.equal((await read).get("w.bin"), content.toString("latin1"));
          return;
        }
        await assert.rejects(read, (e: unknown) => e instanceof PackageArchiveError && tc.message!.test(e.message));
      });
    }
  }

  it("reports a zip it cannot read as the machine's fault, without the path", async () => {
    const missing = join(dir, "missing.zip");
    const error = await openPackageArchive(missing).then(
      () => assert.fail("a missing file opened"),
      (e: unknown) => e as Error,
    );
    assert.ok(!(error instanceof PackageArchiveError));
    assert.equal(error.message, "reading the package failed on this machine (ENOENT)");
  });
});
