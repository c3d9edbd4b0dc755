/**
 * `gpuctl completion bash|zsh`: the scripts name the commands, and the bash one, sourced into a
 * real bash, completes what a user would type.
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { runCli } from "../../src/cli/program.ts";
import { captureIo, depsFor, startFakeApi, type FakeApi } from "./fake-api.ts";

describe("gpuctl completion", () => {
  let api: FakeApi;
  before(async () => {
    api = await startFakeApi();
  });
  after(async () => {
    await api.close();
  });

  const script = async (shell: string) => {
    const cap = captureIo();
    const code = await runCli(["completion", shell], depsFor(api, cap));
    return { code, out: cap.out(), err: cap.err() };
  };

  for (const shell of ["bash", "zsh"]) {
    it(`prints a ${shell} script naming the commands and their flags`, async () => {
      const r = await script(shell);
      assert.equal(r.code, 0, r.err);
      for (const word of ["login", "logout", "api-keys", "datasets", "jobs", "logs", "credits", "statement", "completion", "--follow", "--quiet", "--profile"]) {
        assert.ok(r.out.includes(word), `${shell} script lacks ${word}`);
      }
      assert.equal(api.calls.length, 0);
    });
  }

  it("refuses a shell it has no script for", async () => {
    const r = await script("fish");
    assert.equal(r.code, 2);
    assert.match(r.err, /value 'fish' is invalid for argument 'shell'. Allowed choices are bash, zsh/);
  });

  /** What bash offers for the words typed so far (the last one is completed). */
  const complete = (bashScript: string, words: string[]): string[] => {
    const probe = `${bashScript}\nCOMP_WORDS=(${words.map((w) => `'${w}'`).join(" ")}); COMP_CWORD=${words.length - 1}; _gpuctl; printf '%s\\n' "\${COMPREPLY[@]}"`;
    const r = spawnSync("bash", ["--norc", "--noprofile", "-c", probe], { encoding: "utf8" });
    assert.equal(r.status, 0, r.stderr);
    return r.stdout.split("\n").filter((l) => l !== "").sort();
  };

  const cases: { typed: string[]; offers: string[] | ((got: string[]) => boolean) }[] = [
    { typed: ["gpuctl", "jobs", "c"], offers: ["cancel", "create"] },
    { typed: ["gpuctl", "api"], offers: ["api-keys"] },
    { typed: ["gpuctl", "jobs", "create", "--sens"], offers: ["--sensitivity"] },
    { typed: ["gpuctl", "jobs", "create", "--sensitivity", ""], offers: ["high_sensitive", "low_sensitive", "public"] },
    { typed: ["gpuctl", "--url", "http://127.0.0.1:1", "jobs", "l"], offers: ["list", "logs"] },
    { typed: ["gpuctl", "jobs", "logs", "job_1", "--f"], offers: ["--follow"] },
    { typed: ["gpuctl", "completion", ""], offers: ["bash", "zsh"] },
    { typed: ["gpuctl", ""], offers: (got) => ["login", "logout", "datasets", "jobs", "usage", "credits", "completion"].every((c) => got.includes(c)) },
  ];
  for (const tc of cases) {
    it(`bash completes "${tc.typed.slice(1).join(" ")}"`, async () => {
      const got = complete((await script("bash")).out, tc.typed);
      if (typeof tc.offers === "function") assert.ok(tc.offers(got), got.join(" "));
      else assert.deepEqual(got, tc.offers);
    });
  }
});
