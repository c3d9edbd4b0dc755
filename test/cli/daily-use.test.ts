/**
 * What a person using gpuctl all day relies on: `--version`, `-q` on the create and list commands,
 * errors that name the flag that is really wrong, delete, a cancel that did nothing saying so,
 * and the usage export, credit ledger and statement.
 */
import assert from "node:assert/strict";
import { mkdir, mkdtemp, readFile, readdir, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { runCli } from "../../src/cli/program.ts";
import { callsOf, captureIo, depsFor, startFakeApi, type FakeApi } from "./fake-api.ts";

describe("gpuctl for daily use", () => {
  let api: FakeApi;
  let dir: string;
  beforeEach(async () => {
    api = await startFakeApi();
    dir = await mkdtemp(path.join(tmpdir(), "gpuctl-daily-"));
  });
  afterEach(async () => {
    await api.close();
    await rm(dir, { recursive: true, force: true });
  });

  const run = async (...args: string[]) => {
    const cap = captureIo();
    const code = await runCli(args, depsFor(api, cap));
    return { code, out: cap.out(), err: cap.err() };
  };

  it("prints its version for --version and -V", async () => {
    for (const flag of ["--version", "-V"]) {
      const r = await run(flag);
      assert.equal(r.code, 0, r.err);
      assert.equal(r.out, "0.0.0-test\n");
    }
  });

  describe("-q prints ids only, one per line", () => {
    const cases: { name: string; args: () => string[]; out: string }[] = [
      { name: "datasets upload", args: () => ["datasets", "upload", path.join(dir, "data.csv"), "-q"], out: "ds_1\n" },
      { name: "packages upload", args: () => ["packages", "upload", path.join(dir, "pkg"), "--quiet"], out: "pkg_1\n" },
      { name: "jobs create", args: () => ["jobs", "create", "--dataset", "d", "--package", "p", "-q"], out: "job_1\n" },
      { name: "jobs list", args: () => ["jobs", "list", "-q"], out: "job_a\n" },
      { name: "jobs units", args: () => ["jobs", "units", "job_a", "-q"], out: "cu_1\n" },
      { name: "datasets list (none)", args: () => ["datasets", "list", "-q"], out: "" },
      { name: "credits ledger", args: () => ["credits", "ledger", "-q"], out: "led_2\nled_1\n" },
      { name: "admin customers", args: () => ["admin", "customers", "-q"], out: "cus_1\n" },
      { name: "admin nodes", args: () => ["admin", "nodes", "-q"], out: "node_1\n" },
      { name: "artifacts list", args: () => ["artifacts", "list", "job_a", "-q"], out: "art_1\n" },
    ];
    for (const tc of cases) {
      it(tc.name, async () => {
        await writeFile(path.join(dir, "data.csv"), "a,b\n1,2\n");
        await mkdir(path.join(dir, "pkg"));
        await writeFile(path.join(dir, "pkg", "train.py"), "print('hi')\n");
        api.jobs.set("job_a", { id: "job_a", body: {}, script: api.nextJobScript, gets: 0 });
        api.artifacts.push({ id: "art_1", job_id: "job_a", name: "model.ckpt", content: Buffer.from("weights") });
        const r = await run(...tc.args());
        assert.equal(r.code, 0, r.err);
        assert.equal(r.out, tc.out);
      });
    }
    it("with --watch, prints the id and nothing else; the exit status tells how the job ended", async () => {
      const r = await run("jobs", "create", "--dataset", "d", "--package", "p", "--watch", "-q");
      assert.equal(r.code, 0, r.err);
      assert.equal(r.out, "job_1\n");
    });
    it("cannot be combined with --json", async () => {
      const r = await run("jobs", "list", "-q", "--json");
      assert.equal(r.code, 2);
      assert.match(r.err, /CONFLICTING_OPTIONS/);
      assert.equal(api.calls.length, 0);
    });
  });

  describe("usage errors name the flag that is really wrong", () => {
    const cases: { name: string; args: string[]; err: RegExp; not?: RegExp }[] = [
      {
        name: "a flag where a value belongs",
        args: ["jobs", "create", "--dataset", "--package", "pkg_1"],
        err: /option '--dataset <id>' argument '--package' is invalid\. --package is an option: --dataset needs a value before it\./,
        not: /required option '--package/,
      },
      { name: "a value missing at the end", args: ["jobs", "create", "--dataset", "d", "--package"], err: /option '--package <id>' argument missing/ },
      { name: "a required option left out", args: ["jobs", "create", "--package", "p"], err: /required option '--dataset <id>' not specified/ },
      { name: "a global flag swallowing a command's flag", args: ["jobs", "list", "--url", "--status", "running"], err: /option '--url <url>' argument '--status' is invalid/ },
      { name: "a short flag as a value", args: ["jobs", "list", "--limit", "-q"], err: /option '--limit <n>' argument '-q' is invalid/ },
      { name: "a bad day", args: ["usage", "export", "--from", "2026-13-45"], err: /option '--from <day>' argument '2026-13-45' is invalid\. expected a day as YYYY-MM-DD/ },
      { name: "an unreadable job file", args: ["jobs", "create", "-f", "/nonexistent/job.yaml"], err: /--file \/nonexistent\/job\.yaml: .*ENOENT.*\(code JOB_FILE_UNREADABLE\)/ },
    ];
    for (const tc of cases) {
      it(tc.name, async () => {
        const r = await run(...tc.args);
        assert.equal(r.code, 2, r.err);
        assert.match(r.err, tc.err);
        if (tc.not !== undefined) assert.doesNotMatch(r.err, tc.not);
        assert.equal(api.calls.length, 0, "nothing was sent");
      });
    }
    it("takes a value that only starts with a dash as it is", async () => {
      const r = await run("admin", "create-customer", "--email", "a@b.c", "--password", "-not-a-flag-", "--credits", "1");
      assert.equal(r.code, 0, r.err);
    });
  });

  describe("delete", () => {
    it("deletes each dataset given, goes on past one that fails, and exits 1 for it", async () => {
      await writeFile(path.join(dir, "d.csv"), "x\n");
      for (let i = 0; i < 2; i++) assert.equal((await run("datasets", "upload", path.join(dir, "d.csv"), "-q")).code, 0);
      const r = await run("datasets", "delete", "ds_1", "ds_missing", "ds_2");
      assert.equal(r.code, 1);
      assert.equal(r.out, "deleted dataset ds_1\ndeleted dataset ds_2\n");
      assert.match(r.err, /dataset ds_missing not found \(code DATASET_NOT_FOUND/);
      assert.equal(api.uploads.size, 0);
    });

    it("deletes a training package and reports each as JSON", async () => {
      await mkdir(path.join(dir, "p"));
      await writeFile(path.join(dir, "p", "train.py"), "\n");
      assert.equal((await run("packages", "upload", path.join(dir, "p"), "-q")).code, 0);
      const r = await run("packages", "delete", "pkg_1", "--json");
      assert.equal(r.code, 0, r.err);
      assert.deepEqual(JSON.parse(r.out), { data: [{ id: "pkg_1", deleted: true }] });
    });
  });

  describe("cancel", () => {
    it("says a finished job had nothing to cancel and exits 1, without sending a cancel", async () => {
      api.jobs.set("job_done", { id: "job_done", body: {}, script: [{ status: "completed", progress: 1 }], gets: 0 });
      const r = await run("jobs", "cancel", "job_done");
      assert.equal(r.code, 1);
      assert.equal(r.out, "");
      assert.equal(r.err, "error: job job_done already completed: nothing to cancel (code JOB_ALREADY_ENDED)\n");
      assert.equal(callsOf(api, "CancelTrainingJob").length, 0);
    });

    it("says so when the job ended before the cancel reached it", async () => {
      api.jobs.set("job_r", { id: "job_r", body: {}, script: [{ status: "running", progress: 0.9 }, { status: "completed", progress: 1 }], gets: 0 });
      const r = await run("jobs", "cancel", "job_r", "--json");
      assert.equal(r.code, 1);
      assert.deepEqual(JSON.parse(r.err), { error: { code: "JOB_ALREADY_ENDED", message: "job job_r completed before the cancel reached it: nothing cancelled" } });
    });
  });

  describe("usage export, credit ledger and statement", () => {
    it("streams the usage CSV to stdout, whole, with the range asked for", async () => {
      // 2-byte characters split across chunks must come out whole.
      api.csv.usage = "date,note\n2026-01-01,café crème\n";
      api.csv.chunkBytes = 3;
      const r = await run("usage", "export", "--from", "2026-01-01", "--to", "2026-01-31");
      assert.equal(r.code, 0, r.err);
      assert.equal(r.out, api.csv.usage);
      assert.deepEqual(callsOf(api, "ExportUsageCsv")[0]?.body, { date_from: "2026-01-01", date_to: "2026-01-31" });
    });

    it("writes the statement to --out only once it is complete", async () => {
      const out = path.join(dir, "statement.csv");
      const r = await run("credits", "statement", "--out", out);
      assert.equal(r.code, 0, r.err);
      assert.equal(r.out, "");
      assert.equal(await readFile(out, "utf8"), api.csv.statement);
      assert.deepEqual(await readdir(dir), ["statement.csv"], "no partial file left beside it");
    });

    it("shows the ledger under the balance", async () => {
      const r = await run("credits", "ledger");
      assert.equal(r.code, 0, r.err);
      const lines = r.out.split("\n");
      assert.equal(lines[0], "balance 900");
      assert.match(lines[1] ?? "", /^ID\s+CREATED\s+KIND\s+AMOUNT\s+JOB\s+DESCRIPTION$/);
      assert.match(lines[2] ?? "", /^led_2\s+2026-01-01T00:00:00Z\s+debit\s+-100\s+job_1\s+compute unit train$/);
    });
  });
});
