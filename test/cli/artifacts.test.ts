import assert from "node:assert/strict";
import { mkdtemp, readdir, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { artifactPath } from "../../src/cli/artifacts.ts";
import { runCli } from "../../src/cli/program.ts";
import { callsOf, captureIo, depsFor, startFakeApi, type FakeApi } from "./fake-api.ts";

describe("gpuctl artifacts", () => {
  let api: FakeApi;
  let dir: string;
  beforeEach(async () => {
    api = await startFakeApi();
    dir = await mkdtemp(path.join(tmpdir(), "gpuctl-art-"));
    api.jobs.set("job_a", { id: "job_a", body: {}, script: [{ status: "completed", progress: 1 }], gets: 0 });
    api.artifacts.push(
      { id: "art_1", job_id: "job_a", name: "model.pt", content: Buffer.from("weights".repeat(1000)) },
      { id: "art_2", job_id: "job_a", name: "metrics.json", content: Buffer.from('{"loss":0.1}') },
    );
  });
  afterEach(async () => {
    await api.close();
    await rm(dir, { recursive: true, force: true });
  });

  it("downloads every artifact through a minted URL and verifies its sha256", async () => {
    const cap = captureIo();
    const out = path.join(dir, "out");
    const code = await runCli(["artifacts", "download", "job_a", "--out", out, "--json"], depsFor(api, cap));
    assert.equal(code, 0, cap.err());
    assert.ok((await readFile(path.join(out, "model.pt"))).equals(api.artifacts[0]?.content ?? Buffer.alloc(0)));
    assert.equal(await readFile(path.join(out, "metrics.json"), "utf8"), '{"loss":0.1}');
    const printed = JSON.parse(cap.out()) as { files: { artifact_id: string }[] };
    assert.deepEqual(printed.files.map((f) => f.artifact_id), ["art_1", "art_2"]);
    assert.equal(callsOf(api, "CreateArtifactDownloadUrl").length, 2);
  });

  it("reports a corrupted download as CHECKSUM_MISMATCH and leaves no file behind", async () => {
    const first = api.artifacts[0];
    assert.ok(first);
    first.served = Buffer.from("tampered");
    const cap = captureIo();
    const out = path.join(dir, "out");
    const code = await runCli(["artifacts", "download", "job_a", "--artifact", "art_1", "--out", out], depsFor(api, cap));
    assert.equal(code, 1);
    assert.match(cap.err(), /CHECKSUM_MISMATCH/);
    assert.equal(cap.out(), "");
    assert.deepEqual(await readdir(out), []);
  });

  it("lists artifacts with their sizes and digests", async () => {
    const cap = captureIo();
    assert.equal(await runCli(["artifacts", "list", "job_a"], depsFor(api, cap)), 0);
    assert.match(cap.out(), /art_1\s+model\.pt/);
  });

  const pathCases = [
    { name: "keeps a plain name", artifact: "model.pt", want: "model.pt" },
    { name: "keeps a nested relative name", artifact: "ckpt/epoch-1.pt", want: path.join("ckpt", "epoch-1.pt") },
    { name: "reduces a climbing name to its base name", artifact: "../../etc/passwd", want: "passwd" },
    { name: "reduces an absolute name to its base name", artifact: "/root/.ssh/id_rsa", want: "id_rsa" },
    { name: "falls back to the artifact id for an empty name", artifact: "", want: "art_x" },
  ];
  for (const tc of pathCases) {
    it(`artifact paths: ${tc.name}`, () => {
      assert.equal(artifactPath("/out", { id: "art_x", name: tc.artifact }), path.join("/out", tc.want));
    });
  }
});
