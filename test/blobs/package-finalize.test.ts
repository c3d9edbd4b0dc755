/**
 * Finalize accepts exactly what agents can run (issue 14, point 3): a package that finalizes `ready`
 * is one the agent unpacks, and one the agent would refuse is refused at finalize with
 * PACKAGE_INVALID and the same reason, storing nothing. Requirements that name a source instead of
 * a distribution, and a manifest `python` that is not a version, are refused there too (point 2).
 */
import assert from "node:assert/strict";
import { createHash, randomUUID } from "node:crypto";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Readable } from "node:stream";
import { pino } from "pino";
import type { BlobStore } from "../../src/blobs/blob-store.ts";
import { createLocalBlobStore } from "../../src/blobs/blob-store.ts";
import type { UploadDeps } from "../../src/blobs/uploads.ts";
import { createUpload, finalizeUpload, findCustomerUpload, receiveUploadBytes } from "../../src/blobs/uploads.ts";
import { DEFAULT_ZIP_LIMITS, UnsafeZipError, extractZipSafely } from "../../src/node-agent/unzip.ts";
import { FakeClock } from "../../src/platform/clock.ts";
import type { LimitsConfig } from "../../src/platform/config.ts";
import { defaultLimits } from "../../src/platform/config.ts";
import { insertCustomer } from "../../src/store/customers.ts";
import { zipOf } from "../node-agent/helpers.ts";
import { describeOnEachBackend } from "../support/billing-rows.ts";
import { craftZip } from "../support/crafted-zip.ts";
import { refusedWith } from "../support/refusals.ts";

const sha256Of = (bytes: Buffer) => createHash("sha256").update(bytes).digest("hex");
const train = { name: "train.py", content: "print('hi')\n" };

describeOnEachBackend("finalizing a training package", (on) => {
  let root: string;
  let blobs: BlobStore;
  let agentDir: string;
  let unpacked = 0;
  const clock = new FakeClock();

  before(async () => {
    root = await mkdtemp(join(tmpdir(), "package-finalize-"));
    blobs = createLocalBlobStore(join(root, "blobs"));
    agentDir = join(root, "agent");
  });
  after(async () => {
    await rm(root, { recursive: true, force: true });
  });

  function deps(limits: Partial<LimitsConfig> = {}): UploadDeps {
    return { db: on.db, clock, blobs, logger: pino({ level: "silent" }), config: { limits: { ...defaultLimits, ...limits } } };
  }

  /** A package created and its bytes received, awaiting finalize. */
  async function uploaded(zip: Buffer, limits: Partial<LimitsConfig> = {}) {
    const customerId = await insertCustomer(on.db, { id: randomUUID(), email: `${randomUUID()}@example.com`, passwordHash: "x" }, new Date(clock.now())).then((c) => c.id);
    const row = await createUpload(deps(limits), "training_packages", customerId, { name: "p", sizeBytes: zip.length, sha256: sha256Of(zip), extra: "train.py" });
    await receiveUploadBytes(deps(limits), row.blob_key, zip.length, Readable.from([zip]));
    return { customerId, row: await findCustomerUpload(on.db, "training_packages", customerId, row.id) };
  }

  /** What the agent makes of the same bytes under the same bounds: undefined when it unpacks them, else its refusal. */
  async function agentVerdict(zip: Buffer, limits: Partial<LimitsConfig>): Promise<string | undefined> {
    unpacked += 1;
    const file = join(root, `agent-${unpacked}.zip`);
    await writeFile(file, zip);
    const effective = { ...defaultLimits, ...limits };
    // The bounds finalize applies: the agent's own, tightened by the configured package limits.
    const bounds = {
      maxEntries: Math.min(effective.packageMaxEntries, DEFAULT_ZIP_LIMITS.maxEntries),
      maxUncompressedBytes: Math.min(effective.packageMaxBytes * 4, DEFAULT_ZIP_LIMITS.maxUncompressedBytes),
    };
    return extractZipSafely(file, join(agentDir, String(unpacked)), bounds).then(
      () => undefined,
      (e: unknown) => {
        assert.ok(e instanceof UnsafeZipError, String(e));
        return e.message;
      },
    );
  }

  const bad: { name: string; zip: () => Buffer; limits?: Partial<LimitsConfig>; message: RegExp }[] = [
    { name: "a duplicate entry", zip: () => craftZip([train, train]), message: /entry "train.py" appears twice/ },
    { name: "a lying size", zip: () => craftZip([train, { name: "bomb.bin", content: "\0".repeat(20_000), deflate: true, declaredSize: 16 }]), message: /entry "bomb.bin" inflates to more than the 16 bytes/ },
    { name: "a local header that disagrees with the directory", zip: () => craftZip([train, { name: "a.py", content: "a", localSize: 7 }]), message: /entry "a.py" declares other sizes in its local header/ },
    { name: "a symbolic link", zip: () => craftZip([train, { name: "data", content: "/home", mode: 0o120777 }]), message: /entry "data" is a symbolic link/ },
    { name: "a named pipe", zip: () => craftZip([train, { name: "pipe", mode: 0o010644 }]), message: /entry "pipe" is a named pipe/ },
    { name: "a path escape", zip: () => craftZip([train, { name: "../../.bashrc", content: "x" }]), message: /entry "\.\.\/\.\.\/.bashrc" has a "\.\." segment/ },
    { name: "entries that share their bytes", zip: () => craftZip([train, { name: "outer.bin", content: "x" }, { name: "inner.txt", content: "y", insideOf: 1 }]), message: /shares its bytes/ },
    { name: "damaged content", zip: () => craftZip([train, { name: "w.bin", content: "weights", declaredCrc: 7 }]), message: /entry "w.bin" does not match its CRC-32/ },
    { name: "too many entries", zip: () => craftZip([train, { name: "a" }, { name: "b" }, { name: "c" }]), limits: { packageMaxEntries: 3 }, message: /4 entries; at most 3 are allowed/ },
    {
      name: "more unpacked bytes than the limit",
      zip: () => craftZip([train, { name: "big.txt", content: "x".repeat(5000), deflate: true }]),
      limits: { packageMaxBytes: 1000 },
      message: /unpacks to more than 4000 bytes/,
    },
  ];
  for (const tc of bad) {
    it(`refuses a package with ${tc.name} (PACKAGE_INVALID, the agent's reason), storing nothing`, async () => {
      const zip = tc.zip();
      const { customerId, row } = await uploaded(zip, tc.limits);
      const error = await refusedWith(finalizeUpload(deps(tc.limits), "training_packages", customerId, row.id), "PACKAGE_INVALID");
      assert.match(error.message, tc.message);
      const agentRefusal = await agentVerdict(zip, tc.limits ?? {});
      assert.equal(error.message, `the package is refused: ${agentRefusal}`);
      assert.deepEqual(await findCustomerUpload(on.db, "training_packages", customerId, row.id), row);
      assert.equal(await blobs.exists(row.blob_key), true);
    });
  }

  const requirements: { name: string; text: string; refused?: RegExp }[] = [
    { name: "pinned names with extras, markers, hashes and comments", text: "# training\nnumpy==2.1.0 \\\n    --hash=sha256:" + "a".repeat(64) + "\ntorch[cuda]>=2.3,<3 ; python_version >= '3.10'  # the GPU build\n\n" },
    { name: "a URL", text: "numpy==2.1.0\nhttps://example.com/evil-1.0.tar.gz\n", refused: /requirements.txt line 2: "https:\/\/example.com\/evil-1.0.tar.gz" names a URL/ },
    { name: "a direct reference", text: "evil @ https://example.com/evil.whl\n", refused: /line 1: .* names a URL/ },
    { name: "a VCS checkout", text: "git+https://github.com/x/y.git#egg=y\n", refused: /line 1: .* names a version-control repository/ },
    { name: "a local path", text: "./vendor/lib\n", refused: /line 1: .* names a local path/ },
    { name: "an index of its own", text: "--extra-index-url https://pypi.example.com/simple\nnumpy\n", refused: /line 1: .* chooses where packages come from \(--extra-index-url\)/ },
  ];
  for (const tc of requirements) {
    it(`${tc.refused === undefined ? "accepts" : "refuses"} requirements.txt with ${tc.name}`, async () => {
      const zip = await zipOf({ "train.py": "print(1)\n", "requirements.txt": tc.text });
      const { customerId, row } = await uploaded(zip);
      if (tc.refused === undefined) {
        assert.equal((await finalizeUpload(deps(), "training_packages", customerId, row.id)).status, "ready");
        return;
      }
      const error = await refusedWith(finalizeUpload(deps(), "training_packages", customerId, row.id), "PACKAGE_INVALID");
      assert.match(error.message, tc.refused);
      assert.deepEqual(await findCustomerUpload(on.db, "training_packages", customerId, row.id), row);
    });
  }

  it("refuses requirements.txt that is not UTF-8 text", async () => {
    const zip = await zipOf({ "train.py": "", "requirements.txt": Buffer.from([0x6e, 0x75, 0xff, 0x0a]) });
    const { customerId, row } = await uploaded(zip);
    const error = await refusedWith(finalizeUpload(deps(), "training_packages", customerId, row.id), "PACKAGE_INVALID");
    assert.equal(error.message, "requirements.txt is not UTF-8 text");
  });

  const pythons: { value: unknown; ready: boolean }[] = [
    { value: "3.11", ready: true },
    { value: "3.12", ready: true },
    { value: "3", ready: false },
    { value: "3.11.4", ready: false },
    { value: "python3.11", ready: false },
    { value: 3.11, ready: false },
  ];
  for (const tc of pythons) {
    it(`${tc.ready ? "accepts" : "refuses"} a manifest naming python ${JSON.stringify(tc.value)}`, async () => {
      const zip = await zipOf({ "train.py": "", "gpu-agent.json": JSON.stringify({ python: tc.value }) });
      const { customerId, row } = await uploaded(zip);
      if (tc.ready) {
        const ready = await finalizeUpload(deps(), "training_packages", customerId, row.id);
        assert.deepEqual(ready.manifest, { python: tc.value });
        return;
      }
      const error = await refusedWith(finalizeUpload(deps(), "training_packages", customerId, row.id), "PACKAGE_INVALID");
      assert.equal(error.message, 'gpu-agent.json: "python" must be a Python 3 version as major.minor, like "3.11"');
    });
  }

  it("finalizes a package the agent then unpacks, with Windows separators and ./ names", async () => {
    const zip = craftZip([{ name: "./train.py", content: "print(1)\n" }, { name: "lib\\util.py", content: "u" }]);
    const { customerId, row } = await uploaded(zip);
    assert.equal((await finalizeUpload(deps(), "training_packages", customerId, row.id)).status, "ready");
    assert.equal(await agentVerdict(zip, {}), undefined);
  });
});
