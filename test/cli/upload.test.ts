import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { mkdir, mkdtemp, readFile, rm, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { zipDirectory } from "../../src/cli/files.ts";
import { runCli } from "../../src/cli/program.ts";
import { callsOf, captureIo, depsFor, startFakeApi, type FakeApi } from "./fake-api.ts";

/** Names in a zip's central directory, read without unzipping. */
function zipEntryNames(zip: Buffer): string[] {
  const eocd = zip.lastIndexOf(Buffer.from([0x50, 0x4b, 0x05, 0x06]));
  assert.ok(eocd >= 0, "zip has an end-of-central-directory record");
  const count = zip.readUInt16LE(eocd + 10);
  let at = zip.readUInt32LE(eocd + 16);
  const names: string[] = [];
  for (let i = 0; i < count; i++) {
    assert.equal(zip.readUInt32LE(at), 0x02014b50);
    const nameLen = zip.readUInt16LE(at + 28);
    const extraLen = zip.readUInt16LE(at + 30);
    const commentLen = zip.readUInt16LE(at + 32);
    names.push(zip.subarray(at + 46, at + 46 + nameLen).toString("utf8"));
    at += 46 + nameLen + extraLen + commentLen;
  }
  return names;
}

describe("gpuctl uploads", () => {
  let api: FakeApi;
  let dir: string;
  beforeEach(async () => {
    api = await startFakeApi();
    dir = await mkdtemp(path.join(tmpdir(), "gpuctl-test-"));
  });
  afterEach(async () => {
    await api.close();
    await rm(dir, { recursive: true, force: true });
  });

  it("uploads a dataset by declaring its sha256, putting the exact bytes and finalizing it", async () => {
    const file = path.join(dir, "train.csv");
    const content = Buffer.from("x,y\n".repeat(50_000));
    await writeFile(file, content);
    const cap = captureIo();

    const code = await runCli(["datasets", "upload", file, "--json"], depsFor(api, cap));

    assert.equal(code, 0, cap.err());
    const [create] = callsOf(api, "CreateDataset");
    assert.ok(create);
    assert.deepEqual(create.body, {
      name: "train.csv",
      size_bytes: String(content.length),
      sha256: createHash("sha256").update(content).digest("hex"),
      format: "csv",
    });
    const up = [...api.uploads.values()][0];
    assert.ok(up?.bytes);
    assert.ok(up.bytes.equals(content), "the PUT carried the file's bytes");
    assert.equal(up.putHeaders?.["content-type"], "application/octet-stream");
    assert.equal(up.putHeaders?.["content-length"], String(content.length));
    const printed = JSON.parse(cap.out()) as { id: string; status: string };
    assert.equal(printed.status, "ready");
    assert.equal(printed.id, up.id);
  });

  it("prints the dataset id and status for humans", async () => {
    const file = path.join(dir, "d.jsonl");
    await writeFile(file, "{}\n");
    const cap = captureIo();
    const code = await runCli(["datasets", "upload", file, "--name", "tiny"], depsFor(api, cap));
    assert.equal(code, 0, cap.err());
    assert.match(cap.out(), /^id\s+ds_1$/m);
    assert.match(cap.out(), /^status\s+ready$/m);
  });

  it("feeds the progress bars from the SDK's progress callbacks: hashing, then uploading", async () => {
    const file = path.join(dir, "big.csv");
    await writeFile(file, Buffer.alloc(300_000, "x"));
    const cap = captureIo({ tty: true });
    assert.equal(await runCli(["datasets", "upload", file], depsFor(api, cap)), 0, cap.err());
    const bars = cap.bars();
    const hashing = bars.indexOf("sha256 big.csv");
    const uploading = bars.lastIndexOf("big.csv [");
    assert.ok(hashing >= 0, bars);
    assert.ok(uploading > hashing, "the upload bar follows the hashing bar");
    assert.match(bars.slice(uploading), /100% \| 293\.0 KiB\/293\.0 KiB/);
    assert.match(cap.out(), /^status\s+ready$/m);
  });

  it("reports a missing file as a usage error without calling the API", async () => {
    const cap = captureIo();
    const code = await runCli(["datasets", "upload", path.join(dir, "nope.csv")], depsFor(api, cap));
    assert.equal(code, 2);
    assert.match(cap.err(), /FILE_NOT_FOUND/);
    assert.equal(api.calls.length + api.transfers.length, 0);
  });

  it("zips a directory with relative names, skipping caches and symlinks, and uploads it as a package", async () => {
    const pkg = path.join(dir, "pkg");
    await mkdir(path.join(pkg, "lib", "__pycache__"), { recursive: true });
    await writeFile(path.join(pkg, "train.py"), "print('hi')\n");
    await writeFile(path.join(pkg, "lib", "model.py"), "X = 1\n");
    await writeFile(path.join(pkg, "lib", "model.pyc"), "bytecode");
    await writeFile(path.join(pkg, "lib", "__pycache__", "model.cpython-312.pyc"), "bytecode");
    await symlink("/etc/passwd", path.join(pkg, "leak"));
    const cap = captureIo();

    const code = await runCli(["packages", "upload", pkg, "--json"], depsFor(api, cap));

    assert.equal(code, 0, cap.err());
    const up = [...api.uploads.values()][0];
    assert.ok(up?.bytes);
    assert.ok(up.bytes.subarray(0, 4).equals(Buffer.from("PK\x03\x04", "latin1")), "the body is a zip");
    assert.deepEqual(zipEntryNames(up.bytes), ["lib/model.py", "train.py"]);
    const [create] = callsOf(api, "CreateTrainingPackage");
    assert.ok(create);
    const sent = create.body;
    assert.equal(sent["entrypoint"], "train.py");
    assert.equal(sent["name"], "pkg");
    assert.equal(sent["sha256"], createHash("sha256").update(up.bytes).digest("hex"));
    assert.equal((JSON.parse(cap.out()) as { status: string }).status, "ready");
  });

  it("zips the same directory to the same bytes every time", async () => {
    const pkg = path.join(dir, "pkg");
    await mkdir(path.join(pkg, "b"), { recursive: true });
    await writeFile(path.join(pkg, "train.py"), "pass\n");
    await writeFile(path.join(pkg, "b", "data.txt"), "1\n");
    await zipDirectory(pkg, path.join(dir, "one.zip"));
    await new Promise((r) => setTimeout(r, 20));
    await writeFile(path.join(pkg, "train.py"), "pass\n"); // new mtime, same content
    await zipDirectory(pkg, path.join(dir, "two.zip"));
    assert.ok((await readFile(path.join(dir, "one.zip"))).equals(await readFile(path.join(dir, "two.zip"))));
  });

  it("refuses a directory without the entry point before uploading anything", async () => {
    const pkg = path.join(dir, "pkg");
    await mkdir(pkg);
    await writeFile(path.join(pkg, "main.py"), "pass\n");
    const cap = captureIo();
    const code = await runCli(["packages", "upload", pkg], depsFor(api, cap));
    assert.equal(code, 2);
    assert.match(cap.err(), /ENTRYPOINT_NOT_FOUND/);
    assert.equal(api.calls.length + api.transfers.length, 0);
  });

  it("uploads an existing zip file as it is", async () => {
    const zip = path.join(dir, "ready.zip");
    const src = path.join(dir, "src");
    await mkdir(src);
    await writeFile(path.join(src, "run.py"), "pass\n");
    await zipDirectory(src, zip);
    const cap = captureIo();
    const code = await runCli(["packages", "upload", zip, "--entrypoint", "run.py", "--json"], depsFor(api, cap));
    assert.equal(code, 0, cap.err());
    const up = [...api.uploads.values()][0];
    assert.ok(up?.bytes);
    assert.ok(up.bytes.equals(await readFile(zip)));
    assert.equal(up.entrypoint, "run.py");
    assert.equal(up.name, "ready");
  });
});
