import assert from "node:assert/strict";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { runCli } from "../../src/cli/program.ts";
import { FakeClock } from "../../src/platform/clock.ts";
import { signPayload } from "../../src/webhooks/signature.ts";
import { captureIo, scriptedStdin } from "./fake-api.ts";

describe("gpuctl webhooks verify", () => {
  let dir: string;
  const clock = new FakeClock(Date.UTC(2026, 10, 22, 12));
  const nowS = Math.floor(clock.now() / 1000);
  const body = JSON.stringify({ id: "evt", type: "job.completed", data: { job_id: "j" } });

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), "verify-"));
    await writeFile(join(dir, "body.json"), body);
  });
  after(() => rm(dir, { recursive: true, force: true }));

  const verify = async (header: string, secrets: string[]) => {
    const cap = captureIo();
    const deps = { env: {}, io: cap.io, clock, randomUUID: () => "x", tmpDir: dir, homeDir: dir, stdin: scriptedStdin(), version: "0.0.0-test" };
    const code = await runCli(["webhooks", "verify", "--body-file", join(dir, "body.json"), "--signature", header, "--secret", ...secrets, "--json"], deps);
    return { code, out: cap.out() };
  };

  const cases: { name: string; header: () => string; secrets: string[]; valid: boolean }[] = [
    { name: "accepts a body signed with the secret", header: () => signPayload(body, ["whsec_a"], nowS), secrets: ["whsec_a"], valid: true },
    { name: "accepts either secret during a rotation", header: () => signPayload(body, ["whsec_new", "whsec_old"], nowS), secrets: ["whsec_old"], valid: true },
    { name: "refuses another secret", header: () => signPayload(body, ["whsec_a"], nowS), secrets: ["whsec_b"], valid: false },
    { name: "refuses a stale timestamp", header: () => signPayload(body, ["whsec_a"], nowS - 3600), secrets: ["whsec_a"], valid: false },
  ];
  for (const tc of cases) {
    it(tc.name, async () => {
      const { code, out } = await verify(tc.header(), tc.secrets);
      assert.equal(code, tc.valid ? 0 : 1);
      assert.deepEqual(JSON.parse(out), { valid: tc.valid });
    });
  }
});
